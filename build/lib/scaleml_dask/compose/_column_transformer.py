"""``ColumnTransformer``: scikit-learn's column-wise composition, fitted in one pass over a table larger than memory.

Every branch (a table transformer, or a ``Pipeline`` of them) says what statistics it needs of its columns; the
union is gathered in one pass (``preprocessing._base.gather``) and each branch is fitted from it, so a
``ColumnTransformer`` of any number of branches reads its data once. The transform of a chunk runs every branch
on the chunk's canonical columns and writes their outputs side by side into one float64 block (or CSR matrix).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import TransformerMixin, _fit_context, clone
from sklearn.compose import make_column_selector as _SkColumnSelector
from sklearn.utils import Bunch
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import check_is_fitted

from .._tabular import InputSchema, TableInputError, as_table
from ..preprocessing._base import (
    ColumnState,
    OneHot,
    OnnxPiece,
    Piece,
    StateList,
    TableNode,
    WideStates,
    as_affine,
    categorical_sources,
    fit_node,
    onnx_numbers,
    transform_node,
)

#: Kind names a column selector takes (besides pandas' ``select_dtypes`` values), as pandas dtypes.
_KIND_DTYPES = {"numeric": "number", "categorical": "category", "boolean": "bool", "datetime": "datetime",
                "text": "object"}


class make_column_selector(_SkColumnSelector):  # noqa: N801 - scikit-learn's name
    """Select columns by name ``pattern`` (a regular expression, ``re.search``) and / or kind: ``dtype_include``
    / ``dtype_exclude`` take the kinds ``"numeric"``, ``"categorical"``, ``"boolean"``, ``"datetime"`` as well
    as what pandas' ``select_dtypes`` takes (``np.number``, ``"category"``, ``object``, ``bool``...).

    >>> from scaleml_dask._tabular import InputSchema, Column
    >>> schema = InputSchema([Column("price"), Column("region", "categorical", levels=("n", "s")),
    ...                       Column("price_old")])
    >>> make_column_selector(dtype_include="categorical")(schema), make_column_selector("^price")(schema)
    (['region'], ['price', 'price_old'])
    """

    def __init__(self, pattern: str | None = None, *, dtype_include: Any = None, dtype_exclude: Any = None) -> None:
        super().__init__(pattern, dtype_include=dtype_include, dtype_exclude=dtype_exclude)

    def __call__(self, df: Any) -> list[str]:
        frame = df.empty_frame() if isinstance(df, InputSchema) else df
        selector = _SkColumnSelector(self.pattern, dtype_include=_as_dtypes(self.dtype_include),
                                     dtype_exclude=_as_dtypes(self.dtype_exclude))
        return [str(c) for c in selector(frame)]


def _as_dtypes(spec: Any) -> Any:
    if spec is None:
        return None
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    return [_KIND_DTYPES.get(s, s) if isinstance(s, str) else s for s in items]


class _Passthrough(TableNode):
    """The columns as they are (numbers; a category passed through is an error naming it)."""

    def __init__(self, role: str) -> None:
        self.role = role

    def _table_needs(self, schema: InputSchema) -> dict[str, set[str]]:
        return {c.name: set() for c in schema}

    def _table_fit(self, states: list[ColumnState]) -> list[ColumnState]:
        for s in states:
            if s.kind == "text":
                raise TableInputError(f"column {s.source or s.name!r} is text and is passed through ({self.role}): "
                                      "hash it (scaleml_dask.feature_extraction.text.HashingVectorizer)",
                                      column=s.source or s.name)
            if s.kind == "categorical":
                raise TableInputError(f"column {s.source or s.name!r} is categorical and is passed through "
                                      f"({self.role}): encode it (OneHotEncoder, OrdinalEncoder)",
                                      column=s.source or s.name)
        self._n_out = len(states)
        return states

    def _table_apply(self, pieces: list[Piece]) -> list[Piece]:
        return pieces

    def _onnx_apply(self, g: Any, pieces: list[OnnxPiece]) -> list[OnnxPiece]:
        return pieces


class ColumnTransformer(TableNode, TransformerMixin, _BaseComposition):
    """Apply transformers to columns of a table and put their outputs side by side, as scikit-learn's.

    ``transformers`` is a list of ``(name, transformer, columns)``: a table transformer of
    ``scaleml_dask.preprocessing`` (or a ``Pipeline`` of them), ``"passthrough"`` or ``"drop"``, and the columns by
    name, position, boolean mask, slice, or a callable such as ``make_column_selector``. ``remainder`` does the same
    for the columns no transformer selected. The output is sparse (CSR) when a transformer's is and the output's
    density is below ``sparse_threshold``; ``transformer_weights`` scale each transformer's output; output names
    follow ``verbose_feature_names_out`` (``"name__feature"``, unique names, or a format string). ``n_jobs`` and
    ``verbose`` are scikit-learn's parameters and have no effect: the work runs on the dask cluster.

    Fitting gathers the statistics of every transformer in one pass over the data. The fitted
    ``input_schema_`` lists the columns the transform needs (what a served row must hold); ``transform`` takes a
    stored table (chunk by chunk, inside the consuming estimator's tasks) or raw values (a pandas DataFrame, a dict
    of columns) through the same code.

    Attributes: ``transformers_``, ``named_transformers_``, ``output_indices_``, ``sparse_output_``,
    ``input_schema_``, ``feature_names_in_``, ``n_features_in_``.

    >>> import pandas as pd
    >>> from scaleml_dask.preprocessing import OneHotEncoder, StandardScaler
    >>> df = pd.DataFrame({"price": [1.0, 2.0, 3.0], "region": ["n", "s", "n"]})
    >>> ct = ColumnTransformer([("num", StandardScaler(), ["price"]),
    ...                         ("cat", OneHotEncoder(sparse_output=False), ["region"])]).fit(df)
    >>> ct.get_feature_names_out().tolist()
    ['num__price', 'cat__region_n', 'cat__region_s']
    >>> ct.transform(df).round(3).tolist()[0]
    [-1.225, 1.0, 0.0]
    """

    _parameter_constraints: ClassVar[dict] = {
        "transformers": [list, HasMethods(["get_params"])],
        "remainder": [StrOptions({"drop", "passthrough"}), HasMethods(["fit", "transform"])],
        "sparse_threshold": [Interval(Real, 0, 1, closed="both")],
        "n_jobs": [Integral, None],
        "transformer_weights": [dict, None],
        "verbose": ["verbose"],
        "verbose_feature_names_out": ["boolean", str, callable],
    }

    def __init__(self, transformers: list, *, remainder: Any = "drop", sparse_threshold: float = 0.3,
                 n_jobs: int | None = None, transformer_weights: dict | None = None, verbose: bool = False,
                 verbose_feature_names_out: Any = True) -> None:
        self.transformers = transformers
        self.remainder = remainder
        self.sparse_threshold = sparse_threshold
        self.n_jobs = n_jobs
        self.transformer_weights = transformer_weights
        self.verbose = verbose
        self.verbose_feature_names_out = verbose_feature_names_out

    @property
    def _transformers(self) -> list:
        try:
            return [(name, trans) for name, trans, _ in self.transformers]
        except (TypeError, ValueError):
            return self.transformers

    @_transformers.setter
    def _transformers(self, value: list) -> None:
        try:
            self.transformers = [(name, trans, col) for ((name, trans), (_, _, col)) in zip(value, self.transformers)]
        except (TypeError, ValueError):
            self.transformers = value

    def get_params(self, deep: bool = True) -> dict:
        return self._get_params("_transformers", deep=deep)

    def set_params(self, **kwargs: Any) -> ColumnTransformer:
        self._set_params("_transformers", **kwargs)
        return self

    # -- the node ------------------------------------------------------------------------------------------
    def _table_needs(self, schema: InputSchema) -> dict[str, set[str]]:
        """Resolve every transformer's columns on ``schema`` (kept for ``_table_fit``) and merge their needs."""
        self._validate_params()
        names = [name for name, _, _ in self.transformers]
        if len(set(names)) != len(names) or "remainder" in names:
            raise ValueError(f"ColumnTransformer: transformer names must be unique and not 'remainder': {names}")
        branches, used = [], set()
        for name, trans, columns in self.transformers:
            cols = _resolve(columns, schema, name)
            used.update(cols)
            branches.append((name, trans, cols))
        rest = [c for c in schema.names if c not in used]
        branches.append(("remainder", self.remainder, rest))
        self._branches = []
        needs: dict[str, set[str]] = {}
        for name, trans, cols in branches:
            node = _node(name, trans)
            if node is not None and cols:
                for c, wanted in node._table_needs(schema.select(cols)).items():
                    needs.setdefault(c, set()).update(wanted)
            self._branches.append((name, trans, cols, node))
        self.feature_names_in_ = np.array(schema.names, dtype=object)
        self.n_features_in_ = len(schema)
        self._schema_in = schema
        return {c: needs[c] for c in schema.names if c in needs}

    def _table_fit(self, states: list[ColumnState]) -> list[ColumnState]:
        by_name = {s.name: s for s in states}
        self.input_schema_ = InputSchema([self._schema_in[s.name] for s in states])
        self._positions = {s.name: i for i, s in enumerate(states)}
        fitted, out, indices, start, nnz, sparse_any = [], [], {}, 0, 0, False
        self._fitted_branches = []
        for name, trans, cols, node in self._branches:
            if node is None or not cols:
                fitted.append((name, trans if node is None or isinstance(node, _Passthrough) else node, cols))
                indices[name] = slice(start, start)
                continue
            weight = (self.transformer_weights or {}).get(name)
            states_out = node._table_fit([by_name[c] for c in cols])
            wide = isinstance(states_out, WideStates)  # hashed text: its states stay one segment
            if weight is not None:
                states_out = states_out.scaled(weight) if wide else [
                    ColumnState(s.name, s.kind, s.summary.affine(weight, 0.0), s.levels, s.source) for s in states_out]
            sparse = node._table_sparse()
            sparse_any |= sparse
            rows = states[0].summary.n if states else 0
            if wide:  # sparse by construction (a document has far fewer tokens than 2**k columns)
                out.append(states_out)
            else:
                nnz += sum(_ones(s) for s in states_out) if sparse else rows * len(states_out)
                out += [ColumnState(s.name, s.kind, s.summary, s.levels, s.source) for s in states_out]
            indices[name] = slice(start, start + len(states_out))
            start += len(states_out)
            self._fitted_branches.append((name, node, [self._positions[c] for c in cols], weight, len(states_out)))
            fitted.append((name, "passthrough" if isinstance(node, _Passthrough) else getattr(node, "vectorizer", node),
                           cols))
        self.transformers_ = [t for t in fitted if t[0] != "remainder" or t[2]]
        self.output_indices_ = indices
        total = (states[0].summary.n if states else 0) * start
        self.sparse_output_ = bool(sparse_any and total and nnz / total < self.sparse_threshold)
        self._n_out = start
        out = StateList(out) if any(isinstance(p, WideStates) for p in out) else out
        self._categorical_out = categorical_sources(out)
        return out

    def _table_apply(self, pieces: list[Piece]) -> list[Piece]:
        out: list[Piece] = []
        for _, node, positions, weight, _ in self._fitted_branches:
            got = node._table_apply([pieces[p] for p in positions])
            if weight is not None:
                got = [OneHot(p.index, p.width, p.value * weight) if isinstance(p, OneHot)
                       else p * weight if hasattr(p, "tocsr") else as_affine([p])[0].then(0.0, weight, 0.0)
                       for p in got]
            out += got
        return out

    def _table_sparse(self) -> bool:
        return self.sparse_output_

    def _onnx_apply(self, g: Any, pieces: list[OnnxPiece]) -> list[OnnxPiece]:
        out: list[OnnxPiece] = []
        for name, node, positions, weight, _ in self._fitted_branches:
            got = node._onnx_apply(g.scope(f"{name}/"), [pieces[p] for p in positions])
            if weight is not None:
                onnx_numbers(got, f"the weighted transformer {name!r}")
                got = [OnnxPiece(g.node("Mul", [p.name, g.const("weight", np.array(float(weight)))], "weighted"),
                                 p.width) for p in got]
            out += got
        return out

    # -- scikit-learn's API --------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: Any, y: Any = None) -> ColumnTransformer:
        """Fit every transformer on ``X`` (a stored table, an xarray Dataset, a pandas DataFrame...) in one pass."""
        fit_node(self, as_table(X))
        return self

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> Any:
        return self.fit(X, y).transform(X)

    def transform(self, X: Any) -> Any:
        """The transformed columns side by side: numpy / CSR for raw values, a lazy dask array for stored data."""
        check_is_fitted(self, "transformers_")
        return transform_node(self, X, self.input_schema_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "transformers_")
        per = []
        for name, node, positions, _, _ in self._fitted_branches:
            if isinstance(node, _Passthrough):
                inner = [self.input_schema_.names[p] for p in positions]
            else:
                inner = list(node.get_feature_names_out())
            per.append((name, inner))
        return _prefixed(per, self.verbose_feature_names_out)

    @property
    def named_transformers_(self) -> Bunch:
        return Bunch(**{name: trans for name, trans, _ in self.transformers_})


def _ones(s: ColumnState) -> int:
    """Non-zeros of a 0 / 1 output column (its count of ones), for the output's density."""
    if s.summary.values is None:
        return s.summary.n
    values, counts = s.summary.values
    return int(counts[values != 0].sum())


def _node(name: str, trans: Any) -> TableNode | None:
    if isinstance(trans, str):
        if trans == "drop":
            return None
        if trans == "passthrough":
            return _Passthrough("remainder='passthrough'" if name == "remainder" else f"transformer {name!r}")
        raise ValueError(f"ColumnTransformer: transformer {name!r} is {trans!r}; expected an estimator, 'drop' or "
                         "'passthrough'")
    if not isinstance(trans, TableNode) and hasattr(trans, "_as_table_node"):  # HashingVectorizer
        return trans._as_table_node()
    if not isinstance(trans, TableNode):
        raise TypeError(f"ColumnTransformer: transformer {name!r} ({type(trans).__module__}.{type(trans).__name__}) is "
                        "not a table transformer: use those of scaleml_dask.preprocessing (or a scaleml_dask "
                        "Pipeline of them), which fit in one pass over data larger than memory")
    return clone(trans)


def _resolve(columns: Any, schema: InputSchema, name: str) -> list[str]:
    """A transformer's ``columns`` as names of ``schema``."""
    names = schema.names
    if callable(columns):
        columns = columns(schema.empty_frame())
    if isinstance(columns, str):
        columns = [columns]
    elif isinstance(columns, slice):
        if isinstance(columns.start, str) or isinstance(columns.stop, str):
            lo = 0 if columns.start is None else names.index(columns.start)
            hi = len(names) if columns.stop is None else names.index(columns.stop) + 1
            return names[lo:hi]
        return names[columns]
    elif isinstance(columns, (int, np.integer)):
        columns = [int(columns)]
    columns = list(columns.tolist() if hasattr(columns, "tolist") else columns)
    if columns and all(isinstance(c, (bool, np.bool_)) for c in columns):
        if len(columns) != len(names):
            raise ValueError(f"ColumnTransformer: transformer {name!r}: a boolean mask of {len(columns)} for "
                             f"{len(names)} columns")
        return [n for n, keep in zip(names, columns) if keep]
    out = []
    for c in columns:
        if isinstance(c, (int, np.integer)):
            out.append(names[int(c)])
        elif str(c) in schema:
            out.append(str(c))
        else:
            raise TableInputError(f"ColumnTransformer: transformer {name!r} selects column {c!r}, which the input "
                                  f"does not have (columns: {names})", column=str(c))
    return out


def _prefixed(per: Sequence[tuple[str, list[str]]], verbose: Any) -> np.ndarray:
    if verbose is True or isinstance(verbose, str) or callable(verbose):
        if callable(verbose):
            fmt: Callable[[str, str], str] = verbose
        else:
            pattern = "{transformer_name}__{feature_name}" if verbose is True else verbose
            fmt = lambda t, f: pattern.format(transformer_name=t, feature_name=f)  # noqa: E731
        return np.array([fmt(name, f) for name, inner in per for f in inner], dtype=object)
    flat = [f for _, inner in per for f in inner]
    dupes = sorted(n for n, k in Counter(flat).items() if k > 1)
    if dupes:
        raise ValueError(f"Output feature names: {dupes[:5]} are not unique. Please set verbose_feature_names_out=True "
                         "to add prefixes to feature names")
    return np.array(flat, dtype=object)


def make_column_transformer(*transformers: tuple, remainder: Any = "drop", sparse_threshold: float = 0.3,
                            n_jobs: int | None = None, verbose: bool = False,
                            verbose_feature_names_out: Any = True) -> ColumnTransformer:
    """A ``ColumnTransformer`` from ``(transformer, columns)`` pairs, named after their classes (as scikit-learn).

    >>> from scaleml_dask.preprocessing import StandardScaler
    >>> [n for n, _, _ in make_column_transformer((StandardScaler(), ["a"])).transformers]
    ['standardscaler']
    """
    from sklearn.pipeline import _name_estimators

    named = _name_estimators([t for t, _ in transformers])
    return ColumnTransformer([(name, t, cols) for (name, t), (_, cols) in zip(named, transformers)],
                             remainder=remainder, sparse_threshold=sparse_threshold, n_jobs=n_jobs, verbose=verbose,
                             verbose_feature_names_out=verbose_feature_names_out)
