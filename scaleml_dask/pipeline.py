"""``Pipeline`` and ``make_pipeline``: preprocessing fitted in one pass, then fused into the estimator's own pass.

Fitting a pipeline on a table reads it once for the statistics of *every* table transformer at its head (scalers,
imputers, encoders, ``ColumnTransformer`` s of them; ``preprocessing._base``), then fits the estimator on a
``passes.derived`` array: each chunk is read, brought to the canonical form, transformed and handed to the
estimator's kernel inside the kernel's own task — no transformed copy is written or held (beyond what an
estimator holds by design: SGD's sync and async modes keep their blocks on the workers, KMeans holds input that
fits in memory), and a chunk is read once per pass of the estimator. A step after the estimator-like ones (a
``PCA`` feeding ``KMeans``) is fitted on the output of the steps before it, computed the same way, and applied in
the same task.

The output reaches the estimator dense or sparse (CSR) as the preprocessing gives it and the estimator takes it
(scikit-learn's ``input_tags.sparse``): sparse output is made dense for an estimator that takes dense input only,
unless a chunk would exceed ``preprocessing._base.MAX_DENSE_BLOCK_BYTES`` — then the fit is refused with the width.

Raw rows: ``predict`` / ``predict_proba`` / ``transform`` / ``preprocess`` of a pandas DataFrame, a dict of
columns or a list of row dicts run the same transform code in memory; ``input_schema_`` is what those rows must
hold (``_tabular.InputSchema``: names, kinds, dtypes, levels; ``to_dict()`` for JSON). Errors in them are
``TableInputError`` naming the column.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from sklearn.base import _fit_context
from sklearn.pipeline import Pipeline as _SkPipeline
from sklearn.pipeline import _final_estimator_has, _name_estimators
from sklearn.utils import get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._tabular import InputSchema, Table, TableInputError, as_table, refuse_unprepared, target_values
from .passes import given_distinct
from .preprocessing._base import (
    TABLE_BLOCKS,
    ColumnState,
    OnnxPiece,
    Piece,
    TableNode,
    TableTransformer,
    categorical_sources,
    derived_transform,
    fit_node,
    onnx_numbers,
    transform_node,
)

__all__ = ["Pipeline", "make_pipeline"]


def _skip(est: Any) -> bool:
    return est is None or (isinstance(est, str) and est == "passthrough")


class _Chain(TableNode):
    """Table nodes one after the other, as one node (what a pipeline's preprocessing head is)."""

    def __init__(self, nodes: list[TableNode]) -> None:
        self.nodes = nodes

    def _table_needs(self, schema: InputSchema) -> dict[str, set[str]]:
        needs = self.nodes[0]._table_needs(schema)
        for node in self.nodes[1:]:  # later leaf steps' needs asked of the raw columns (summaries carry them)
            for c in needs:
                kind = schema[c].kind
                needs[c] |= node._needs(kind) | node._needs("numeric")
        return needs

    def _table_fit(self, states: list[ColumnState]) -> list[ColumnState]:
        for node in self.nodes:
            states = node._table_fit(states)
        return states

    @property
    def _n_out(self) -> int:
        return self.nodes[-1]._n_out

    @property
    def _categorical_out(self) -> list[str]:
        return getattr(self.nodes[-1], "_categorical_out", [])

    def _table_apply(self, pieces: list[Piece]) -> list[Piece]:
        for node in self.nodes:
            pieces = node._table_apply(pieces)
        return pieces

    def _onnx_apply(self, g: Any, pieces: list[OnnxPiece]) -> list[OnnxPiece]:
        for k, node in enumerate(self.nodes):
            pieces = node._onnx_apply(g.scope(f"{k}/"), pieces)
        return pieces

    def _table_sparse(self) -> bool:
        return self.nodes[-1]._table_sparse()


class _Then:
    """The in-memory transforms of the steps after the preprocessing head, applied to an assembled block."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps

    def __call__(self, block: Any) -> Any:
        for step in self.steps:
            block = step.transform(block)
        return np.asarray(block) if not hasattr(block, "tocsr") else block


def _accepts_sparse(est: Any) -> bool:
    try:
        return bool(get_tags(est).input_tags.sparse)
    except (AttributeError, TypeError, ValueError):
        return False


def _width_after(step: Any, width: int) -> int:
    """Columns of ``step.transform``'s output (fitted), for a derived array's shape."""
    for attr in ("n_components_", "n_clusters"):
        if hasattr(step, attr):
            return int(getattr(step, attr))
    try:
        return len(step.get_feature_names_out())
    except (AttributeError, TypeError, ValueError):
        return width


def _online(est: Any) -> bool:
    return hasattr(est, "learn_many") and not hasattr(est, "fit")


class Pipeline(TableNode, _SkPipeline):
    """A sequence of steps, the last an estimator, fitted and applied as one (scikit-learn's ``Pipeline``).

    Steps at the head that are table transformers (``scaleml_dask.preprocessing``, ``compose.ColumnTransformer``)
    are fitted together in one pass over the data; the estimator then fits on their output computed inside its
    own pass (module docstring). The estimator may be any of this package's: ``LinearRegression``, ``Ridge``,
    ``PCA``, ``KMeans``, ``SGDClassifier`` / ``SGDRegressor`` (all modes), ``TSNE``, or an online learner (``fit``
    streams the data through its ``learn_many`` once; ``learn_many`` continues on raw batches). Input: a path, a
    catalog name, an ``xarray.Dataset`` (a table's target is ``y`` unless given), a dask or numpy array, or raw
    values (a pandas DataFrame, a dict of columns, a list of row dicts). A categorical target is encoded by its
    levels: ``classes_`` and ``predict`` give the levels.

    ``step__param`` names reach the steps' parameters (``get_params`` / ``set_params``, scikit-learn's ``clone``);
    fit parameters are routed the same way (``pipe.fit(X, y, sgdclassifier__...)``). ``memory`` and
    ``transform_input`` are scikit-learn's parameters and are not used here.

    Attributes: ``input_schema_`` (the raw columns a row must hold: ``_tabular.InputSchema``), ``named_steps``,
    ``classes_``, ``feature_names_in_``, ``n_features_in_``.

    >>> import numpy as np, pandas as pd
    >>> import scaleml_dask as sm
    >>> from scaleml_dask.compose import make_column_transformer
    >>> from scaleml_dask.preprocessing import OneHotEncoder, StandardScaler
    >>> df = pd.DataFrame({"x": np.arange(8.0), "g": list("abab" * 2)})
    >>> y = 2 * df["x"] + (df["g"] == "b") + 1
    >>> pipe = make_pipeline(make_column_transformer((StandardScaler(), ["x"]),
    ...                                              (OneHotEncoder(drop="first"), ["g"])),
    ...                      sm.LinearRegression()).fit(df, y)
    >>> pipe.predict(pd.DataFrame({"x": [10.0], "g": ["b"]})).round(6).tolist()
    [22.0]
    >>> pipe.input_schema_
    InputSchema([x: numeric, g: categorical (2 levels)])
    """

    def __init__(self, steps: list, *, transform_input: Any = None, memory: Any = None, verbose: bool = False) -> None:
        super().__init__(steps, transform_input=transform_input, memory=memory, verbose=verbose)

    def _validate_steps(self) -> None:
        final = self.steps[-1][1] if self.steps else None
        if final is not None and not _skip(final) and _online(final):
            names, estimators = zip(*self.steps)
            self._validate_names(names)
            return
        super()._validate_steps()

    # -- the steps' roles ----------------------------------------------------------------------------------
    def _head(self, with_final: bool) -> list[TableNode]:
        """The table transformers at the head of the steps (through the final one when ``with_final``)."""
        steps = self.steps if with_final else self.steps[:-1]
        head = []
        for _, est in steps:
            if _skip(est):
                continue
            if not isinstance(est, TableNode) or (head and not isinstance(est, TableTransformer)):
                break
            head.append(est)
        return head

    def _rest(self, head: list[TableNode], with_final: bool) -> list[Any]:
        steps = [est for _, est in (self.steps if with_final else self.steps[:-1]) if not _skip(est)]
        return steps[len(head):]

    def _is_chain(self) -> bool:
        """Whether every step is a table transformer (the pipeline is then a table node itself)."""
        real = [est for _, est in self.steps if not _skip(est)]
        return bool(real) and len(self._head(True)) == len(real)

    # -- as a table node (inside a ColumnTransformer, or a pipeline of transformers) -----------------------
    def _table_needs(self, schema: InputSchema) -> dict[str, set[str]]:
        return _Chain(self._head(True))._table_needs(schema)

    def _table_fit(self, states: list[ColumnState]) -> list[ColumnState]:
        out = _Chain(self._head(True))._table_fit(states)
        self._n_out = len(out)
        self._categorical_out = categorical_sources(out)
        return out

    def _table_apply(self, pieces: list[Piece]) -> list[Piece]:
        return _Chain(self._head(True))._table_apply(pieces)

    def _table_sparse(self) -> bool:
        return _Chain(self._head(True))._table_sparse()

    def _onnx_apply(self, g: Any, pieces: list[OnnxPiece]) -> list[OnnxPiece]:
        return _Chain(self._head(True))._onnx_apply(g, pieces)

    # -- deployment: the capability protocol (scaleml_dask._deployable) -----------------------------------------
    def _onnx_table_graph(self, g: Any) -> None:
        """The ONNX graph from one input per raw column (``deploy.onnx``): the preprocessing head's nodes
        (``_onnx_apply``), the later steps' and the final estimator's graphs (``_onnx_graph``), a string target's
        levels looked up from the predicted codes."""
        check_is_fitted(self)
        final = self._final_estimator
        if _skip(final) or not hasattr(final, "_onnx_graph"):
            raise ValueError(f"cannot export a pipeline ending in {type(final).__name__} to ONNX")
        pieces = [OnnxPiece(g.input(c.name, "STRING" if c.kind == "categorical" else "DOUBLE", ["N", 1]), 1,
                            c.levels if c.kind == "categorical" else None) for c in self.input_schema_]
        head = self._head(with_final=False)
        if head:
            pieces = _Chain(head)._onnx_apply(g.scope("pre/"), pieces)
        onnx_numbers(pieces, "the pipeline's output (a category reaches the estimator)")
        X = pieces[0].name if len(pieces) == 1 else g.node("Concat", [p.name for p in pieces], "pre/X", axis=1)
        for k, step in enumerate(self._rest(head, with_final=False)):
            if not hasattr(step, "_onnx_graph"):
                raise ValueError(f"cannot export a pipeline step {type(step).__name__} to ONNX")
            scope = g.scope(f"step{k}/", declare=False)
            step._onnx_graph(scope, X)
            X = scope.prefix + "transform"
        final._onnx_graph(g.scope("final/"), X)
        levels = getattr(self, "_target_levels", None)
        if levels is not None:  # the estimator predicts codes into the target's levels
            node = next(n for n in g.nodes if n.output[0] == "predict")
            node.output[0] = node.name = "final/predict_code"
            at = next(i for i, o in enumerate(g.outputs) if o.name == "predict")
            del g.outputs[at]
            g.names.discard("predict")
            index = g.node("Cast", ["final/predict_code"], "final/predict_index", to="INT64")
            g.node("Gather", [g.const("levels", np.array([str(v) for v in levels], dtype=object)), index], "predict",
                   axis=0)
            g.output("predict", "STRING", ["N"])
            g.outputs.insert(at, g.outputs.pop())

    # -- fitting -------------------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: Any, y: Any = None, **params: Any) -> Pipeline:
        """Fit on ``X`` (and ``y``; a table's target when omitted): the preprocessing in one pass, then each later
        step on the output of the steps before it, computed inside its own pass."""
        self._fit(X, y, params, "fit")
        return self

    def _fit(self, X: Any, y: Any, params: dict[str, Any], last: str) -> Any:
        """Fit every step; the final one by its method ``last`` ("fit" or "fit_transform"), whose result is
        returned."""
        self._validate_steps()
        routed = self._route(params)
        table = as_table(X)
        target = self._fit_target(table, y)
        head = self._head(with_final=self._is_chain())
        labels = None
        if head:
            labels = fit_node(_Chain(head), table, self._labels_wanted(table, y, target))
            self._input_schema = None
        else:
            final = self._final_estimator
            refuse_unprepared(table, table.schema.names, type(final).__name__ if not _skip(final) else "Pipeline")
            self._input_schema = table.schema
        rest = self._rest(head, with_final=True)
        with given_distinct({} if labels is None else {target.name: labels}):
            return self._fit_rest(table, target, head, rest, routed, last)

    def _labels_wanted(self, table: Table, y: Any, target: Any) -> Any:
        """The target, when the statistics pass should find its distinct values: a stored table's own target and
        a final estimator that would otherwise make a pass over it for its classes (``_classes_from_target``)."""
        final = self._final_estimator
        if (y is not None or not table.lazy or not hasattr(target, "dask") or _skip(final)
                or not getattr(final, "_classes_from_target", lambda: False)()
                or tuple(target.chunks[0]) != tuple(table.row_chunks)):
            return None
        return target

    def _fit_rest(self, table: Table, target: Any, head: list[TableNode], rest: list[Any],
                  routed: dict[str, dict[str, Any]], last: str) -> Any:
        """Fit the steps after the preprocessing head, each on the output of the steps before it."""
        result = None
        for k, step in enumerate(rest):
            Xt = self._features(table, head, rest[:k], step, fitting=True)
            kwargs = routed.get(self._name_of(step), {})
            if _online(step):
                self._learn_stream(step, Xt, target)
            elif k == len(rest) - 1 and last == "fit_transform":
                result = step.fit_transform(Xt, target, **kwargs)
            else:
                step.fit(Xt, target, **kwargs)
        return result

    def _name_of(self, step: Any) -> str:
        return next(name for name, est in self.steps if est is step)

    def _route(self, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
        routed: dict[str, dict[str, Any]] = {}
        names = {name for name, _ in self.steps}
        for key, value in params.items():
            step, sep, param = key.partition("__")
            if not sep or step not in names:
                raise ValueError(f"Pipeline.fit does not accept the {key!r} parameter. You can pass parameters to "
                                 "specific steps of your pipeline using the stepname__parameter format")
            routed.setdefault(step, {})[param] = value
        return routed

    def _fit_target(self, table: Table, y: Any) -> Any:
        """The target the estimator is given: ``y`` (labels that are not numbers encoded by their sorted levels),
        or the table's target (a categorical one by its codes)."""
        self._target_levels = None
        if y is None:
            values = target_values(table)
            col = table.target_column
            if col is not None and col.kind == "categorical":
                self._target_levels = np.array(col.levels, dtype=object)
            elif col is not None and col.kind == "boolean":
                self._target_levels = np.array([False, True], dtype=object)
            return values
        if hasattr(y, "dtype") and hasattr(y, "dask"):
            return y
        values = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        if values.dtype.kind in "OUS" or (hasattr(y, "dtype") and str(getattr(y, "dtype", "")) == "category"):
            import pandas as pd

            codes, levels = pd.factorize(pd.Series(values), sort=True)
            self._target_levels = np.asarray(levels, dtype=object)
            out = codes.astype(np.float64)
            out[codes < 0] = np.nan
            return out
        return values

    def _learn_stream(self, step: Any, Xt: Any, target: Any) -> None:
        """An online learner's fit: every row once, in order, through ``learn_many``, chunk by chunk."""
        from .online.streams import iter_batches

        if isinstance(Xt, np.ndarray) or hasattr(Xt, "tocsr"):
            self._learn(step, Xt, target)
            return
        rows = int(max(Xt.chunks[0]))
        for Xb, yb in iter_batches((Xt, target) if target is not None else (Xt, None), rows, scheduler=None):
            self._learn(step, Xb, yb)

    @staticmethod
    def _learn(step: Any, Xb: Any, yb: Any) -> None:
        if yb is None or "y" not in inspect.signature(step.learn_many).parameters:
            step.learn_many(Xb)
        else:
            step.learn_many(Xb, yb)

    # -- the features each step sees -----------------------------------------------------------------------
    def _features(self, X: Any, head: list[TableNode], before: list[Any], step: Any, fitting: bool = False) -> Any:
        """What ``step`` gets: ``X`` through the head and the fitted steps ``before``, dense unless ``step`` takes
        sparse input; numpy for raw values, a ``passes.derived`` dask array for stored data (``fitting`` an
        estimator that takes table blocks, SGD's local epochs: chunks of its parts, ``TableBlock``)."""
        consumer = before[0] if before else step
        what = f"the preprocessing of {type(step).__name__}" if not _skip(step) else "the pipeline's output"
        if not head:
            return self._plain(X if isinstance(X, Table) else as_table(X), before)
        chain = _Chain(head)
        sparse = chain._table_sparse() and (_skip(consumer) or _accepts_sparse(consumer))
        then = _Then(before) if before else None
        if isinstance(X, Table) and X.lazy:
            if fitting and not before and getattr(step, "_takes_table_blocks", lambda: False)():
                sparse = TABLE_BLOCKS  # the chunks reach the estimator's kernel as their parts, dense or sparse
            width = chain._n_out
            for b in before:
                width = _width_after(b, width)
            return derived_transform(chain, X, self.input_schema_, sparse, what, then=then, width=width)
        block = transform_node(chain, X, self.input_schema_, sparse=sparse, estimator=what)
        return then(block) if then is not None else block

    def _plain(self, table: Table, before: list[Any]) -> Any:
        """A table without preprocessing as the float matrix of its columns (the fit refused categorical columns
        and missing values), through the steps ``before``."""
        schema = self.input_schema_
        from .preprocessing._base import _check_width

        _check_width(table, schema, self._final_estimator)
        missing = [n for n in schema.names if n not in table.schema]
        if missing:
            raise TableInputError(f"column {missing[0]!r} is missing (the input columns are {table.schema.names})",
                                  column=missing[0])
        then = _Then(before) if before else None
        if not table.lazy:
            block = np.column_stack([table.data.columns[n] for n in schema.names]).astype(np.float64, copy=False)
            return then(block) if then is not None else block
        sources, where = table.sources(schema.names)
        if len(sources) == 1 and sources[0].ndim == 2 and [where[n] for n in schema.names] == [
                (0, j) for j in range(sources[0].shape[1])] and then is None:
            return sources[0]  # a matrix store: its X as it is
        from .passes import derived

        width = len(schema)
        for b in before:
            width = _width_after(b, width)
        return derived(_stack_then, *sources, n_columns=width, reader=table.reader(schema.names, schema),
                       names=schema.names, then=then)

    def preprocess(self, X: Any) -> Any:
        """The matrix the final estimator takes for ``X``: for raw values (a pandas DataFrame, a dict of column
        arrays or scalars, a list of row dicts — what a served request carries) numpy or CSR, computed by the
        same code as each chunk of a stored table (then a lazy dask array). A ``TableInputError`` names a missing
        column, a value of the wrong type or an unknown level under ``handle_unknown="error"``."""
        check_is_fitted(self)
        head = self._head(with_final=False)
        rest = self._rest(head, with_final=False)
        final = self._final_estimator
        data = X if _raw(X) else as_table(X)
        return self._features(data, head, rest, final)

    @property
    def input_schema_(self) -> InputSchema:
        """The raw input columns (names, kinds, dtypes, levels) the pipeline was fitted on and a row must hold."""
        head = self._head(with_final=True)
        if head:
            return head[0].input_schema_
        schema = getattr(self, "_input_schema", None)
        if schema is None:
            raise AttributeError("input_schema_: the pipeline is not fitted")
        return schema

    # -- prediction ----------------------------------------------------------------------------------------
    def _decode(self, labels: Any) -> Any:
        levels = getattr(self, "_target_levels", None)
        if levels is None:
            return labels
        if hasattr(labels, "map_blocks"):
            return labels.map_blocks(_take_levels, levels, dtype=object)
        return _take_levels(labels, levels)

    @available_if(_final_estimator_has("predict"))
    def predict(self, X: Any, **params: Any) -> Any:
        """Predictions of the final estimator (labels decoded to the target's levels)."""
        return self._decode(self._final_estimator.predict(self.preprocess(X), **params))

    @available_if(_final_estimator_has("predict_proba"))
    def predict_proba(self, X: Any, **params: Any) -> Any:
        return self._final_estimator.predict_proba(self.preprocess(X), **params)

    @available_if(_final_estimator_has("decision_function"))
    def decision_function(self, X: Any, **params: Any) -> Any:
        return self._final_estimator.decision_function(self.preprocess(X), **params)

    @available_if(_final_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X: Any, **params: Any) -> Any:
        return self._final_estimator.predict_log_proba(self.preprocess(X), **params)

    @available_if(_final_estimator_has("score"))
    def score(self, X: Any, y: Any = None, sample_weight: Any = None, **params: Any) -> float:
        table = as_table(X) if not _raw(X) else X
        if y is None:
            y = target_values(table) if isinstance(table, Table) else None
        elif getattr(self, "_target_levels", None) is not None:  # unseen labels are errors, as in scikit-learn
            levels = self._target_levels
            y = y.map_blocks(_score_codes, levels, dtype=np.float64) if hasattr(y, "map_blocks") \
                else _score_codes(y, levels)
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return self._final_estimator.score(self.preprocess(X), y, **kwargs)

    def _can_transform(self) -> bool:
        final = self._final_estimator
        return _skip(final) or hasattr(final, "transform")

    @available_if(_can_transform)
    def transform(self, X: Any, **params: Any) -> Any:
        """``X`` through every step (the last a transformer)."""
        check_is_fitted(self)
        if self._is_chain():
            return transform_node(_Chain(self._head(True)), X, self.input_schema_)
        final = self._final_estimator
        Xt = self.preprocess(X)
        return Xt if _skip(final) else final.transform(Xt)

    def _can_fit_transform(self) -> bool:
        final = self._final_estimator
        return _skip(final) or hasattr(final, "transform") or hasattr(final, "fit_transform")

    @available_if(_can_fit_transform)
    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> Any:
        """Fit, then transform ``X`` (the final step's ``fit_transform`` when it has no ``transform``: TSNE)."""
        final = self._final_estimator
        if not _skip(final) and not hasattr(final, "transform") and not self._is_chain():
            return self._fit(X, y, params, "fit_transform")
        return self.fit(X, y, **params).transform(X)

    @property
    def classes_(self) -> np.ndarray:
        """The final classifier's classes (the target's levels when it was categorical)."""
        classes = self.steps[-1][1].classes_
        levels = getattr(self, "_target_levels", None)
        return classes if levels is None else _take_levels(classes, levels)

    # -- online learners -----------------------------------------------------------------------------------
    @available_if(_final_estimator_has("learn_many"))
    def learn_many(self, X: Any, y: Any = None) -> None:
        """Preprocess a batch of raw rows (fitted preprocessing: ``pipe.fit`` or ``pipe[:-1].fit(data)``) and
        let the online learner learn from it."""
        if y is not None and getattr(self, "_target_levels", None) is not None:
            y = _encode_levels(y, self._target_levels)
        self._learn(self._final_estimator, self.preprocess(X), None if y is None else np.asarray(y, np.float64))

    @available_if(_final_estimator_has("predict_many"))
    def predict_many(self, X: Any) -> np.ndarray:
        return self._decode(self._final_estimator.predict_many(self.preprocess(X)))

    @available_if(_final_estimator_has("predict_proba_many"))
    def predict_proba_many(self, X: Any) -> np.ndarray:
        return self._final_estimator.predict_proba_many(self.preprocess(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        first = next((est for _, est in self.steps if not _skip(est)), None) if isinstance(self.steps, list) else None
        if first is not None:  # what the pipeline takes is what its first step takes (missing values, text)
            inner = get_tags(first).input_tags
            tags.input_tags.allow_nan = inner.allow_nan
            tags.input_tags.string = inner.string
            tags.input_tags.categorical = inner.categorical
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        final = self._final_estimator
        if _online(final):
            head = self._head(with_final=False)
            return all(hasattr(h, "input_schema_") for h in head)
        return super().__sklearn_is_fitted__()


def _raw(X: Any) -> bool:
    return not hasattr(X, "tocsr") and (hasattr(X, "iloc") or isinstance(X, dict)
                                        or (isinstance(X, list) and bool(X) and isinstance(X[0], dict)))


def _take_levels(codes: Any, levels: np.ndarray) -> np.ndarray:
    return levels[np.asarray(codes).astype(np.int64)]


def _level_codes(y: Any, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels as objects, their codes among the fitted target's ``levels``, -1 for a label never seen in fit)."""
    index = {v: i for i, v in enumerate(levels.tolist())}
    values = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y, dtype=object)
    return values, np.array([index.get(v, -1) for v in values], dtype=np.int64)


def _score_codes(y: Any, levels: np.ndarray) -> np.ndarray:
    """Labels as their codes for scoring: one never seen in fit is -1, a code never predicted (an error, as
    scikit-learn's ``score`` counts it)."""
    return _level_codes(y, levels)[1].astype(np.float64)


def _encode_levels(y: Any, levels: np.ndarray) -> np.ndarray:
    """Labels as their codes among the fitted target's ``levels``; a label never seen in fit is an error naming it."""
    values, codes = _level_codes(y, levels)
    if (codes < 0).any():
        unseen = list(dict.fromkeys(values[codes < 0].tolist()))
        raise ValueError(f"y has labels {unseen[:10]} that are not among the classes {levels.tolist()} of the fit "
                         f"(first at row {int(np.argmax(codes < 0))})")
    return codes.astype(np.float64)


def _stack_then(*blocks: np.ndarray, reader: Any, names: list[str], then: Any) -> np.ndarray:
    c = reader(blocks)
    block = np.column_stack([c.columns[n] for n in names]).astype(np.float64, copy=False)
    return then(block) if then is not None else block


def make_pipeline(*steps: Any, memory: Any = None, transform_input: Any = None, verbose: bool = False) -> Pipeline:
    """A ``Pipeline`` of ``steps`` named after their classes (as scikit-learn's ``make_pipeline``).

    >>> from scaleml_dask.preprocessing import SimpleImputer, StandardScaler
    >>> [name for name, _ in make_pipeline(SimpleImputer(), StandardScaler()).steps]
    ['simpleimputer', 'standardscaler']
    """
    return Pipeline(_name_estimators(steps), transform_input=transform_input, memory=memory, verbose=verbose)
