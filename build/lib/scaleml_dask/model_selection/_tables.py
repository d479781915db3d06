"""Searches and cross-validation over a pipeline that starts from raw table columns.

A table (an ingested store — its ``xarray.Dataset``, path or catalog name — or a pandas DataFrame / dict of
columns in memory) is not a numeric matrix: it holds categories and missing values that only the pipeline's
preprocessing turns into numbers. So the search does not check it as a matrix; it splits the *table*:

- each split's training rows are a ``Table`` whose every column is a ``select_rows`` selection of the stored
  column (made inside the task that reads the chunk, no copy; numpy rows in memory), with the target selected
  the same way, and the candidate's pipeline is fitted on it as a user would fit it — its preprocessing
  (imputers, scalers, encoders: one statistics pass) sees that split's training rows only, never its test rows;
- every fitted pipeline is scored on its split's test rows in **one** pass over the table
  (``score_table_pass``): each chunk is read once, brought to the canonical form once, and each model's
  preprocessing and final estimator answer on their part's rows inside that task.

When only the final SGD step's parameters are searched on a stored table, the fused search (``_fused``) reads it:
each split's preprocessing is fitted once on its training rows, and each pass's task reads the chunk of every
column once (``TableChunks``), makes it canonical and transforms it by each split's fitted preprocessing before
the candidates train and are scored on it.

Targets are numbers throughout (a categorical target by its codes, labels given as strings by their sorted
levels), so stratification and the scorers see what the final estimator predicts; the fold pipelines and the
refit decode their predictions to the original labels as a plain fit does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._folds import TRAIN

__all__ = ["TableChunks", "decoded", "fit_rows", "own_target", "score_table_pass", "split_statistics", "table_input",
           "table_rows", "table_target"]


def table_input(estimator: Any, X: Any) -> Any:
    """``X`` as a ``_tabular.Table`` when ``estimator`` is a pipeline of this project (it takes raw columns) and
    ``X`` is a table — a pandas DataFrame, a dict of columns, an ingested table's Dataset, path or catalog name —
    else None (``X`` is then checked as a matrix)."""
    from .._tabular import as_table
    from ..pipeline import Pipeline

    if not isinstance(estimator, Pipeline):
        return None
    if isinstance(X, (str, Path)):
        from ..io.catalog import open_dataset

        X = open_dataset(X)
    from ..io.table import is_table

    in_memory = not hasattr(X, "tocsr") and (hasattr(X, "iloc") or isinstance(X, dict))
    return as_table(X) if in_memory or is_table(X) else None


def table_target(table: Any, y: Any) -> tuple[Any, np.ndarray | None]:
    """The target as numbers, row-chunked as the table (dask for a stored table, numpy in memory), and the
    levels its codes stand for (None for numeric targets): ``y`` (labels that are not numbers by their sorted
    levels, as ``Pipeline`` encodes them), or the table's own target (a categorical one by its codes)."""
    import dask.array as da

    from .._tabular import target_values

    levels = None
    if y is None:
        values = target_values(table)
        if values is None:
            return None, None
        col = table.target_column
        if col is not None and col.kind == "categorical":
            levels = np.array(col.levels, dtype=object)
        elif col is not None and col.kind == "boolean":
            levels = np.array([False, True], dtype=object)
    elif hasattr(y, "dask"):
        values = y
    else:
        values = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        if values.dtype.kind in "OUSb" or str(getattr(y, "dtype", "")) == "category":
            import pandas as pd

            codes, found = pd.factorize(pd.Series(values), sort=True)
            levels = np.asarray(found, dtype=object)
            values = np.where(codes < 0, np.nan, codes.astype(np.float64))
    values = getattr(values, "data", values)  # an xarray variable
    if len(values) != table.n_rows:
        raise ValueError(f"X and y have different lengths: X has {table.n_rows} rows, y has {len(values)}")
    if values.ndim != 1:
        raise ValueError(f"y must be a 1-d array (n_samples,); got shape {values.shape}")
    chunks = (table.row_chunks,)
    if not hasattr(values, "dask"):
        return da.from_array(np.asarray(values, dtype=np.float64), chunks=chunks), levels
    return (values if values.chunks[0] == table.row_chunks else values.rechunk(chunks)), levels


def table_rows(table: Any, dy: Any, plan: Any, split: int, code: int, counts: np.ndarray | None,
               keep_target: bool) -> Any:
    """The rows of ``table`` that are ``code`` in ``split`` of ``plan``, as a ``Table``: stored columns as
    ``select_rows`` selections (no copy), in-memory columns as numpy rows. ``keep_target``: select the table's
    own target too (the pipeline then takes it, and its levels, as a plain fit does)."""
    from .._tabular import Canonical, Table
    from ._split import select_rows

    if not table.lazy:
        y = None if dy is None else np.asarray(dy.compute() if hasattr(dy, "dask") else dy)
        keep = plan.memberships(np.arange(table.n_rows), y)[split] == code
        data = Canonical({n: v[keep] for n, v in table.data.columns.items()}, int(keep.sum()),
                         dict(table.data.unknown))
        target = None if table.target is None or not keep_target else np.asarray(table.target)[keep]
        return Table(table.schema, data=data, target=target, target_column=table.target_column,
                     n_missing=table.n_missing)

    def take(a: Any) -> Any:
        return select_rows(a, plan, split, code, y=dy, counts=counts)

    target = take(table.target) if keep_target and table.target is not None else None
    return Table(table.schema, arrays=[take(a) for a in table.arrays], where=table.where, target=target,
                 target_column=table.target_column, n_missing=table.n_missing)


def score_table_pass(table: Any, dy: Any, jobs: list[tuple[Any, Any]], scorers: list, plan: Any) -> list[list]:
    """One pass over ``table``: the merged state of every scorer for every ``(pipeline, part)`` job, as
    ``[job][scorer]`` (``metrics._scorer.score_pass``'s layout; ``part`` is None or ``(split, code)``). Each
    chunk is read and made canonical once; each pipeline's preprocessing and final estimator answer on its
    part's rows there. The final estimator is asked directly, so its answers are in the target's numbers."""
    from ..metrics._scorer import merge_scores
    from ..passes import one_pass

    names = table.schema.names
    kwargs = {"schema": table.schema, "jobs": list(jobs), "scorers": list(scorers), "plan": plan}
    if not table.lazy:
        y = np.asarray(dy.compute() if hasattr(dy, "dask") else dy)
        return _score_canonical(table.data, y, chunk_index=0, row_start=0, **kwargs)
    sources, _ = table.sources(names)
    reader = table.reader(names, table.schema)
    return one_pass(_score_table_chunk, functools.partial(merge_scores, scorers=list(scorers)), *sources, dy,
                    reader=reader, n_sources=len(sources), **kwargs)


def _score_table_chunk(*blocks: np.ndarray, chunk_index: int, row_start: int, reader: Any, n_sources: int,
                       **kwargs: Any) -> list:
    return _score_canonical(reader(blocks[:n_sources]), np.asarray(blocks[n_sources]).ravel(),
                            chunk_index=chunk_index, row_start=row_start, **kwargs)


def _score_canonical(c: Any, y: np.ndarray, *, chunk_index: int, row_start: int, schema: Any, jobs: list,
                     scorers: list, plan: Any) -> list:
    """The states of ``jobs`` on canonical columns ``c`` (a chunk, or a whole table in memory)."""
    from .._tabular import Canonical, Table
    from ..metrics._scorer import _response

    parts: dict[Any, tuple] = {None: (c, y)}
    M = None
    for _, key in jobs:
        if key is None or key in parts:
            continue
        if M is None:
            M = plan.memberships(np.arange(row_start, row_start + c.n), y)
        keep = M[key[0]] == key[1]
        parts[key] = (Canonical({n: v[keep] for n, v in c.columns.items()}, int(keep.sum()), c.unknown), y[keep])
    out = []
    for model, key in jobs:
        rows, ys = parts[key]
        if rows.n == 0:
            out.append([None] * len(scorers))
            continue
        Xt = model.preprocess(Table(schema, data=rows))  # dense, or CSR as the preprocessing gives it
        cache: dict = {}
        out.append([sc.state(ys, _response(model._final_estimator, sc.response, Xt, cache), None) for sc in scorers])
    return out


def fit_rows(ctx: Any, sub: Any, est: Any, split: int, X_train: Any) -> None:
    """Fit the pipeline ``est`` on ``split``'s training rows ``X_train`` of ``ctx.table`` (``sub.plan``'s split;
    the table's own target among them when ``ctx.y`` is None: ``own_target``)."""
    if own_target(ctx) or ctx.dy is None:
        est.fit(X_train)
    else:
        y_train = sub.rows(ctx.dy, split, TRAIN)
        est.fit(X_train, y_train if ctx.table.lazy else np.asarray(y_train.compute()))
        est._target_levels = ctx.levels  # decode its predictions as a fit on the labels would


def own_target(ctx: Any) -> bool:
    """Whether the pipelines take the table's own target (and its levels) from the table, as a plain fit does."""
    return ctx.y is None


def decoded(codes: Any, levels: np.ndarray | None) -> Any:
    """Target codes as the labels they stand for (numpy), or the codes themselves for a numeric target."""
    if levels is None:
        return codes
    return levels[np.asarray(codes.compute() if hasattr(codes, "dask") else codes).astype(np.int64)]


@dataclass(frozen=True)
class TableChunks:
    """How the fused search (``_fused``) reads a stored table in each chunk's task: the ``reader`` that makes the
    blocks of the table's source arrays (``sources``) canonical columns; and how it makes the fitted splits'
    pipelines (``levels``: what the target's codes stand for). It holds no dask array (it travels in the task)."""

    reader: Any
    schema: Any
    levels: Any = None

    @classmethod
    def of(cls, X: Any, levels: np.ndarray | None = None) -> TableChunks | None:
        from .._tabular import Table

        if not isinstance(X, Table):
            return None
        if not X.lazy:
            raise ValueError("the fused search reads stored tables; a table in memory takes the generic path")
        return cls(X.reader(X.schema.names, X.schema), X.schema, levels)

    @staticmethod
    def sources(X: Any) -> tuple:
        """The dask arrays of the stored table ``X``, in the order the reader takes their blocks."""
        return tuple(X.sources(X.schema.names)[0])

    def rows(self, blocks: Any) -> Any:
        """A chunk's source blocks as an in-memory table (what a fitted pipeline transforms)."""
        from .._tabular import Table

        return Table(self.schema, data=self.reader(blocks))

    @staticmethod
    def fit_preprocessing(steps: list, table: Any, dy: Any, plan: Any, counts: np.ndarray) -> tuple:
        """A pipeline's steps before the last, fitted on each split's training rows of ``table`` (with their
        targets, for a step that takes them), every split's statistics from one pass (``split_statistics``).)"""
        from sklearn.base import clone

        from ..pipeline import Pipeline
        from ..preprocessing._base import given_summaries
        from ._split import select_rows

        pre = Pipeline([(n, clone(t)) for n, t in steps])
        trains, given = split_statistics(pre, table, dy, plan, counts, keep_target=False)
        with given_summaries(given):
            return tuple(clone(pre).fit(X_train, select_rows(dy, plan, s, TRAIN, y=dy, counts=counts))
                         for s, X_train in enumerate(trains))

    def pipeline(self, pre: Any, name: str, est: Any) -> Any:
        """A split's fitted preprocessing and fitted final step as one fitted pipeline."""
        from ..pipeline import Pipeline

        out = Pipeline([*pre.steps, (name, est)])
        out._target_levels = self.levels
        return out


def split_statistics(estimator: Any, table: Any, dy: Any, plan: Any, counts: np.ndarray,
                     keep_target: bool) -> tuple[list, dict]:
    """Every split's training rows of ``table`` (``table_rows``) and, for a stored table, the statistics the
    pipeline ``estimator``'s preprocessing asks of them — every split's in **one** pass, each chunk's training
    rows of every split summarised in the task that reads it — keyed for ``preprocessing._base.given_summaries``
    (a pipeline fitted on a split's table inside that block makes no statistics pass of its own)."""
    from ..passes import one_pass
    from ..pipeline import _Chain
    from ..preprocessing._base import needs_key

    trains = [table_rows(table, dy, plan, s, TRAIN, counts, keep_target) for s in range(plan.n_splits)]
    head = estimator._head(with_final=estimator._is_chain())
    if not head or not table.lazy:
        return trains, {}
    needs = _Chain(head)._table_needs(table.schema)
    names = [n for n in table.schema.names if n in needs]
    if not names:
        return trains, {}
    frozen = {n: frozenset(needs[n]) for n in names}
    levels = {n: len(table.schema[n].levels) for n in names if table.schema[n].kind == "categorical"}
    sources, _ = table.sources(names)
    per_split = one_pass(_split_stats_block, _merge_splits, *sources, dy if plan.needs_y else None,
                         reader=table.reader(names, table.schema), n_sources=len(sources), needs=frozen,
                         n_levels=levels, plan=plan)
    return trains, {needs_key(t, needs): summaries for t, summaries in zip(trains, per_split)}


def _split_stats_block(*blocks: np.ndarray, chunk_index: int, row_start: int, reader: Any, n_sources: int,
                       needs: dict, n_levels: dict, plan: Any) -> list[dict]:
    """A chunk's column summaries over each split's training rows (``preprocessing._base._stats_block`` per
    split)."""
    from ..preprocessing._base import summarize
    from ._split import chunk_memberships

    c = reader(blocks[:n_sources])
    y = blocks[n_sources]
    M = chunk_memberships(plan, row_start, np.zeros(c.n) if y is None else np.asarray(y).ravel())
    out = []
    for s in range(plan.n_splits):
        keep = M[s] == TRAIN
        out.append({name: summarize(c.columns[name][keep], kind, needs[name], n_levels.get(name, 0), name)
                    for name, (_, kind) in reader.where.items()})
    return out


def _merge_splits(parts: list[list[dict]]) -> list[dict]:
    from ..preprocessing._base import merge_summaries

    return [merge_summaries([p[s] for p in parts]) for s in range(len(parts[0]))]
