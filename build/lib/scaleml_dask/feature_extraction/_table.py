"""A ``HashingVectorizer`` as a branch of a ``ColumnTransformer``: one text column of a table hashed chunk by chunk.

In a ``ColumnTransformer`` (``make_column_transformer((HashingVectorizer(), "review"), (OneHotEncoder(), ["region"]))``)
the vectorizer is wrapped in ``HashedColumn``, a table node: it needs no statistics (the fit pass only counts the
column's missing documents), and its per-chunk transform hashes the chunk's documents into a CSR block that the
composition puts beside the other branches' outputs, inside whatever task consumes the chunk (an estimator's
pass, a served request): no hashed copy is written. Its ``2**k`` output columns are described by one
``WideStates`` segment, never expanded. A column stored as text (``scaleml ingest --text COL``) comes as Python
strings; a string column of a pandas DataFrame comes as categories, hashed once per distinct value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from .._tabular import InputSchema, TableInputError
from ..preprocessing._base import Codes, ColumnState, Piece, Summary, TableNode, WideStates, require_kind


class HashedColumn(TableNode):
    """The table node of a ``HashingVectorizer`` (``vectorizer``, cloned) on one text column."""

    def __init__(self, vectorizer: Any) -> None:
        self.vectorizer = clone(vectorizer)

    def _table_needs(self, schema: InputSchema) -> dict[str, set[str]]:
        if len(schema) != 1:
            raise TableInputError(f"HashingVectorizer hashes one text column; it was given {schema.names}: use one "
                                  "transformer per text column (and, as in scikit-learn, name the column by a string)",
                                  column=schema.names[0] if len(schema) else None)
        return {c.name: set() for c in schema}

    def _table_fit(self, states: list[ColumnState]) -> WideStates:
        (state,) = states
        require_kind("HashingVectorizer", state, ("text", "categorical"),
                     "it hashes documents (strings): ingest the column as text (scaleml ingest --text COL)")
        self.vectorizer.fit([])  # checks the parameters
        self._spec = self.vectorizer._spec()
        self._n_out = int(self.vectorizer.n_features)
        self._categorical_out: list[str] = []
        name = state.source or state.name
        return WideStates(f"{name}_hash", self._n_out, Summary(state.summary.n, 0), name)

    def _table_apply(self, pieces: list[Piece]) -> list[Piece]:
        from .text import hash_block

        (p,) = pieces
        if isinstance(p, Codes):  # each distinct value hashed once; missing: the empty document
            values = np.array([*p.levels, "", *p.unknown[::-1]], dtype=object)
            index = np.where(p.codes >= 0, p.codes, len(p.levels) + 1 + p.codes + len(p.unknown))
            return [hash_block(values, spec=self._spec)[index]]
        return [hash_block(p, spec=self._spec)]

    def _table_sparse(self) -> bool:
        return True

    def _saved_state(self) -> dict[str, Any]:
        """What the model registry stores of the node: its vectorizer (stateless: its parameters are all there
        is), and whether it was fitted; ``_from_saved_state`` rebuilds the rest from them."""
        return {"vectorizer": self.vectorizer, "fitted": hasattr(self, "_spec")}

    @classmethod
    def _from_saved_state(cls, state: Mapping[str, Any]) -> HashedColumn:
        from .text import HashingVectorizer

        if set(state) != {"vectorizer", "fitted"} or type(state["vectorizer"]) is not HashingVectorizer \
                or type(state["fitted"]) is not bool:
            raise ValueError("a hashed column is {vectorizer: a HashingVectorizer, fitted: a boolean}")
        node = cls(state["vectorizer"])
        if state["fitted"]:
            node.vectorizer.fit([])  # checks the parameters
            node._spec = node.vectorizer._spec()
            node._n_out = int(node.vectorizer.n_features)
            node._categorical_out = []
        return node

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        raise AttributeError("HashingVectorizer has no feature names: its columns are hash buckets")


def ingest_hashed(source: str | os.PathLike, dest: str | os.PathLike, *, text: str | Sequence[str],
                  n_features: int = 2**20, target: str | None = None, drop: Sequence[str] = (),
                  chunk_rows: int | None = None, codec: str | None = None, na: str | float = "keep",
                  kinds: Mapping[str, str] | None = None, overwrite: bool = False, progress: bool = False,
                  **params: Any) -> Path:
    """Ingest a CSV / Parquet file storing its ``text`` columns hashed: a sparse dataset (``io.sparse``) whose ``X``
    is, side by side, ``HashingVectorizer(n_features, **params)`` of each text column and the numeric / boolean
    columns (missing numbers kept as NaN: refused by the estimators, never read as zeros), with ``y`` the target.
    What ``scaleml ingest --text COL --n-features 2**20`` writes; read chunk by chunk, memory bounded by a chunk.
    Rows per chunk: ``chunk_rows``, or chosen from the first rows' non-zeros (``io.sparse.chunk_rows_for_nnz``).
    The group's ``hashing`` attribute records the vectorizer's parameters and where each column's features are.

    >>> import tempfile, os, pandas as pd
    >>> d = tempfile.mkdtemp(); src = os.path.join(d, "r.csv")
    >>> pd.DataFrame({"review": ["a fine cat", "the dog", ""], "stars": [5, 1, 3]}).to_csv(src, index=False)
    >>> out = ingest_hashed(src, os.path.join(d, "r.zarr"), text="review", n_features=2**10, target="stars")
    >>> import scaleml_dask as sm; ds = sm.open_dataset(out)
    >>> ds["X"].shape, int(ds["X"].data.compute().nnz), ds["y"].values.tolist()
    ((3, 1024), 4, [5.0, 1.0, 3.0])
    """
    from ..io.destination import claim
    from ..io.ingest import IngestError, encoded_chunks, na_policy, open_reader
    from ..io.sparse import SparseWriter, chunk_rows_for_nnz
    from ..io.table import canonical
    from .text import HashingVectorizer

    text = [text] if isinstance(text, str) else list(text)
    if not text:
        raise IngestError("ingest_hashed: name the text column(s) to hash (text=, --text)")
    source = Path(source)
    policy = na_policy(na)
    reader = open_reader(source, target=target, drop=drop, policy=policy, kinds=kinds, text=text)
    claim(Path(dest), "dataset", overwrite=overwrite)  # refused before any work (the writer claims it again)
    kinds = reader.kinds
    others = [c for c in reader.features if c not in text]
    for c in others + ([target] if target is not None else []):
        if kinds[c] not in ("numeric", "boolean"):
            raise IngestError(f"{source}: column {c!r} is {kinds[c]}: a hashed store holds the hashed text and "
                              f"numbers only; drop it (--drop {c}), or ingest the table keeping the text (--text "
                              "without --n-features) and encode the column in a pipeline")
    hv = HashingVectorizer(n_features=n_features, **params).fit([])
    spec = hv._spec()
    width = n_features * len(text) + len(others)
    layout = {"params": {k: v for k, v in hv.get_params().items() if k != "dtype" and _jsonable(v)},
              "text": {c: [j * n_features, (j + 1) * n_features] for j, c in enumerate(text)},
              "numeric": {c: len(text) * n_features + j for j, c in enumerate(others)}}
    position = {c: reader.used.index(c) for c in reader.used}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=reader.size_bytes, desc=f"ingest {source.name}", unit="B", unit_scale=True)
    encoders, chunks = encoded_chunks(reader, int(chunk_rows or 10_000), policy)
    writer, rows = None, 0
    try:
        for cols in chunks:
            X = _hashed_chunk(cols, text, others, position, kinds, spec)
            y = canonical(kinds[target], cols[position[target]]) if target is not None else None
            if writer is None:
                per_row = X.nnz / max(1, X.shape[0])
                writer = SparseWriter(dest, width, chunk_rows=int(chunk_rows or chunk_rows_for_nnz(per_row)),
                                      y_dtype=None if target is None else np.float64, codec=codec,
                                      attrs={"source": str(source), "target": target, "hashing": layout},
                                      overwrite=overwrite).__enter__()
            writer.append(X, y)
            rows += X.shape[0]
            if bar is not None:
                bar.update(reader.bytes_read - bar.n)
        if writer is None:
            raise IngestError(f"{source}: no data rows")
        writer.set_attrs(n_missing={c: e.n_missing for c, e in encoders.items()})
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, None)
        raise
    finally:
        if bar is not None:
            bar.close()
    writer.__exit__(None, None, None)
    return Path(dest)


def _hashed_chunk(cols: tuple, text: list[str], others: list[str], position: dict[str, int],
                  kinds: Mapping[str, str], spec: Any) -> Any:
    import scipy.sparse as sp

    from ..io.table import canonical
    from .text import hash_block

    parts = [hash_block(cols[position[c]], spec=spec) for c in text]
    if others:
        dense = np.column_stack([canonical(kinds[c], cols[position[c]]) for c in others])
        parts.append(sp.csr_matrix(dense))  # a missing number stays NaN (stored), never a zero
    return sp.hstack(parts, format="csr", dtype=np.float64) if len(parts) > 1 else parts[0].astype(np.float64)


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool, tuple, list))
