"""``OneHotEncoder`` and ``OrdinalEncoder``: scikit-learn's semantics (categories, infrequent grouping by
``min_frequency`` / ``max_categories``, ``drop``, ``handle_unknown``, missing values) on tables larger than memory.

Each input column is compiled at fit into a lookup from its canonical codes (or, for numbers, its sorted
categories) to an output code, so a transform is one gather per column: a one-hot group (``OneHot``: written
into the output block, or a CSR matrix, without a dense intermediate) or an ordinal column.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .._tabular import TableInputError
from ._base import Affine, Codes, ColumnState, OneHot, OnnxPiece, Piece, TableTransformer, of_values

#: Output codes with a meaning of their own.
NONE = -1  # no one-hot column (dropped, or an ignored unknown)
RAISE = -3  # an unknown value under handle_unknown="error"
MISSING = -4  # ordinal: encoded_missing_value
UNKNOWN = -5  # ordinal: unknown_value
INFREQUENT_NAME = "infrequent_sklearn"


@dataclass
class _Compiled:
    """One input column's transform: ``lookup`` from level codes (last entry: missing) to output codes, or for
    numbers ``cats`` (sorted) with ``cat_out``, ``missing_out``; ``unknown_out`` for anything else."""

    name: str
    levels: tuple[str, ...] | None
    lookup: np.ndarray | None
    cats: np.ndarray | None
    cat_out: np.ndarray | None
    missing_out: int
    unknown_out: int
    width: int

    def problem(self, positions: bool) -> str | None:
        """What is inconsistent in a restored column transform, else None: the model registry asks before the
        transform runs. With ``positions`` (one-hot) the codes are where a kernel writes: below ``width``."""
        bound = self.width if positions else 2**31
        if type(self.width) is not int or not 0 <= self.width < 2**31 or type(self.missing_out) is not int \
                or type(self.unknown_out) is not int or max(self.missing_out, self.unknown_out) >= bound:
            return f"column {self.name!r}: width and codes must be integers, codes below the width"
        for what, a, n in (("lookup", self.lookup, None if self.levels is None else len(self.levels) + 1),
                           ("cat_out", self.cat_out, None if self.cats is None else len(self.cats))):
            if a is None:
                continue
            if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind not in "iu" or (n is not None and
                                                                                          len(a) != n):
                return f"column {self.name!r}: {what} must be {n} integer codes"
            if a.size and int(a.max()) >= bound:
                return f"column {self.name!r}: {what} holds a code beyond the width {self.width}"
        if (self.lookup is None) == (self.cats is None or self.cat_out is None) or (
                self.cats is not None and (not isinstance(self.cats, np.ndarray) or self.cats.dtype.kind != "f")):
            return f"column {self.name!r}: needs a lookup of levels or float categories with their codes"
        return None

    def codes(self, piece: Piece) -> np.ndarray:
        if isinstance(piece, Codes):
            c = piece.codes
            unknown = c < -1
            idx = self.lookup[np.where(unknown, -1, c)] if unknown.any() else self.lookup[c]
            if unknown.any():
                idx[unknown] = self.unknown_out
        else:
            x = piece.values() if isinstance(piece, Affine) else piece
            k = len(self.cats)
            pos = np.minimum(np.searchsorted(self.cats, x), k - 1)
            found = self.cats[pos] == x if k else np.zeros(len(x), dtype=bool)
            idx = np.where(found, self.cat_out[pos] if k else 0, self.unknown_out)
            idx[np.isnan(x)] = self.missing_out
        if (idx == RAISE).any():
            self._raise(piece, idx)
        return idx

    def _raise(self, piece: Piece, idx: np.ndarray) -> None:
        r = int(np.flatnonzero(idx == RAISE)[0])
        if isinstance(piece, Codes):
            c = int(piece.codes[r])
            value = (self.levels[c] if c >= 0 else "a missing value (none in fit)" if c == -1
                     else piece.unknown[-2 - c])
        else:
            x = piece.values() if isinstance(piece, Affine) else piece
            value = "a missing value (none in fit)" if np.isnan(x[r]) else x[r]
        raise TableInputError(f"column {self.name!r}: unknown category {value!r} (not seen in fit; "
                              "handle_unknown='error')", column=self.name)


def _onnx_levels(c: _Compiled, p: OnnxPiece, what: str) -> tuple[str, ...]:
    if p.levels is None or c.lookup is None or c.levels is None:
        raise ValueError(f"cannot export a {what} of numbers (column {c.name!r}) to ONNX: encode categories")
    if not np.array_equal(c.lookup.astype(np.float32).astype(np.int64), c.lookup):
        raise ValueError(f"cannot export a {what} to ONNX: codes of column {c.name!r} exceed float32")
    return tuple(c.levels)


def _identify_infrequent(counts: np.ndarray, n_samples: int, min_frequency: Any, max_categories: Any) -> np.ndarray:
    """scikit-learn's rule: a mask of the infrequent categories among ``counts``."""
    if isinstance(min_frequency, Integral):
        mask = counts < min_frequency
    elif isinstance(min_frequency, Real):
        mask = counts < n_samples * min_frequency
    else:
        mask = np.zeros(counts.shape[0], dtype=bool)
    n_current = counts.size - mask.sum() + 1
    if max_categories is not None and max_categories < n_current:
        frequent = max_categories - 1
        if frequent == 0:
            mask[:] = True
        else:
            mask[np.argsort(counts, kind="mergesort")[:-frequent]] = True
    return mask


class _BaseEncoder(TableTransformer):
    _missing_is_category: ClassVar[bool] = True
    #: whether output codes are one-hot positions (written at by the kernels) rather than ordinal values
    _codes_are_positions: ClassVar[bool] = True

    def _check_restored_state(self) -> str | None:
        """A restored encoder's compiled columns checked (``_Compiled.problem``), for the model registry."""
        compiled = getattr(self, "_compiled", [])
        if not isinstance(compiled, list) or not all(isinstance(c, _Compiled) for c in compiled):
            return "_compiled must be a list of compiled columns"
        return next((p for p in (c.problem(self._codes_are_positions) for c in compiled) if p), None)

    def _needs(self, kind: str) -> set[str]:
        return set() if kind == "categorical" else {"values"}

    def _fit_columns(self, states: list[ColumnState]) -> list[ColumnState]:
        if self.categories != "auto" and len(self.categories) != len(states):
            raise ValueError(f"Shape mismatch: if categories is an array, it has to be of shape (n_features,): "
                             f"{len(self.categories)} lists for {len(states)} columns")
        self._infrequent_enabled = (self.max_categories is not None and self.max_categories >= 1) \
            or self.min_frequency is not None
        self.categories_, self._infrequent, self._compiled, out = [], [], [], []
        self._drop_positions: list[Any] = []
        self._out_names: list[list[str]] = []
        for j, s in enumerate(states):
            out += self._fit_column(j, s)
        return out

    def _observed(self, j: int, s: ColumnState) -> tuple[list[Any], np.ndarray, np.ndarray | None]:
        """(categories in ``categories_`` order without missing, their counts, level -> category index)."""
        m = s.summary
        if s.kind == "categorical":
            present = np.flatnonzero(m.counts > 0).tolist()
            if self.categories == "auto":
                cats = sorted(s.levels[i] for i in present)
            else:
                cats = [str(v) for v in self.categories[j] if not _is_missing(v)]
            index = {c: k for k, c in enumerate(cats)}
            level_cat = np.array([index.get(level, -1) for level in s.levels], dtype=np.int64)
            counts = np.zeros(len(cats), dtype=np.int64)
            np.add.at(counts, level_cat[level_cat >= 0], m.counts[level_cat >= 0])
            unseen = [s.levels[i] for i in present if level_cat[i] < 0]
        else:
            values, value_counts = m.values
            if self.categories == "auto":
                cats_f = values
            else:
                cats_f = np.array([v for v in self.categories[j] if not _is_missing(v)], dtype=np.float64)
                if np.any(np.diff(cats_f) < 0):
                    raise ValueError(f"Unsorted categories are not supported for numerical column {s.source!r}")
            pos = np.searchsorted(cats_f, values)
            ok = (pos < len(cats_f)) & (cats_f[np.minimum(pos, max(len(cats_f) - 1, 0))] == values) \
                if len(cats_f) else np.zeros(len(values), bool)
            counts = np.zeros(len(cats_f), dtype=np.int64)
            np.add.at(counts, pos[ok], value_counts[ok])
            unseen = [float(v) for v in values[~ok]]
            cats = [bool(v) for v in cats_f] if s.kind == "boolean" else list(cats_f)
            level_cat = None
        if unseen and self.handle_unknown == "error":
            raise ValueError(f"Found unknown categories {unseen[:10]} in column {s.source or s.name!r} during fit")
        return cats, counts, level_cat

    def _fit_column(self, j: int, s: ColumnState) -> list[ColumnState]:
        cats, counts, level_cat = self._observed(j, s)
        explicit_missing = self.categories != "auto" and any(_is_missing(v) for v in self.categories[j])
        has_missing = self._missing_is_category and (s.summary.n_missing > 0 if self.categories == "auto"
                                                     else explicit_missing)
        n_cat = len(cats) + has_missing
        all_counts = np.append(counts, s.summary.n_missing) if has_missing else counts
        missing_cat = len(cats) if has_missing else None
        attribute = np.array(cats + ([np.nan] if has_missing or (not self._missing_is_category
                                                                 and s.summary.n_missing > 0) else []),
                             dtype=object if s.kind in ("categorical", "boolean") else np.float64)
        self.categories_.append(attribute)
        infrequent = (_identify_infrequent(all_counts, s.summary.n, self.min_frequency, self.max_categories)
                      if self._infrequent_enabled else np.zeros(n_cat, dtype=bool))
        self._infrequent.append(np.flatnonzero(infrequent) if infrequent.any() else None)
        grouped = np.empty(n_cat, dtype=np.int64)
        n_frequent = int((~infrequent).sum())
        grouped[~infrequent] = np.arange(n_frequent)
        grouped[infrequent] = n_frequent
        n_grouped = n_frequent + bool(infrequent.any())
        out_code, width, names = self._outputs(j, s, cats, grouped, n_grouped, infrequent, missing_cat)
        infrequent_out = out_code[np.flatnonzero(infrequent)[0]] if infrequent.any() else None
        unknown_out = self._unknown_code(infrequent_out)
        missing_out = (out_code[missing_cat] if missing_cat is not None
                       else (MISSING if not self._missing_is_category else unknown_out))
        lookup = None
        cats_f = cat_out = None
        if level_cat is not None:
            lookup = np.append(np.where(level_cat >= 0, out_code[np.maximum(level_cat, 0)], unknown_out), missing_out)
        else:
            cats_f = np.asarray(cats, dtype=np.float64)
            cat_out = out_code[:len(cats)]
        self._compiled.append(_Compiled(s.source or s.name, s.levels, lookup, cats_f, cat_out, int(missing_out),
                                        int(unknown_out), width))
        self._out_names.append(names)
        return self._out_states(s, all_counts, out_code, width, names)

    def _unknown_code(self, infrequent_out: int | None) -> int:
        raise NotImplementedError

    @property
    def infrequent_categories_(self) -> list[np.ndarray | None]:
        """The infrequent categories of each column (None where there are none)."""
        return [None if idx is None else cats[idx] for cats, idx in zip(self.categories_, self._infrequent)]

    def _names_out(self, names: list[str]) -> list[str]:
        return [self._combine(f, c) for f, cs in zip(names, self._out_labels) for c in cs]


def _is_missing(v: Any) -> bool:
    try:
        return v is None or bool(np.isnan(v))
    except TypeError:
        return False


def _label(v: Any) -> str:
    if isinstance(v, float) and np.isnan(v):
        return "nan"
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(float(v))
    return str(v)


class OneHotEncoder(_BaseEncoder):
    """Encode categorical columns as one-hot numeric columns, as scikit-learn's.

    Categories are the sorted values seen in fit (``categories_``); a missing value seen in fit is a category of
    its own, last (named ``nan``). Rare categories are grouped into one ``infrequent_sklearn`` column by
    ``min_frequency`` (a count, or a fraction of the rows) and ``max_categories`` (scikit-learn's rule and tie
    order). ``drop`` (``"first"``, ``"if_binary"`` or one category per column) drops a column per feature.
    ``handle_unknown``: ``"error"`` (a ``TableInputError`` naming the column and value), ``"ignore"`` (all
    zeros), ``"infrequent_if_exist"`` / ``"warn"`` (the infrequent column if there is one, else zeros).
    ``sparse_output`` gives a CSR matrix (built directly, never dense first); inside a pipeline, the output
    reaches the estimator sparse or dense as ``ColumnTransformer`` and the estimator decide. Numeric columns
    are encoded by their distinct values (at most 10,000).

    Attributes: ``categories_``, ``drop_idx_``, ``infrequent_categories_``, ``n_features_in_``,
    ``feature_names_in_``, ``input_schema_``.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"region": ["north", "south", "north", "east", None]})
    >>> enc = OneHotEncoder(sparse_output=False, min_frequency=2, handle_unknown="infrequent_if_exist").fit(df)
    >>> enc.get_feature_names_out().tolist()
    ['region_north', 'region_infrequent_sklearn']
    >>> enc.transform(pd.DataFrame({"region": ["north", "west"]})).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """

    _parameter_constraints: ClassVar[dict] = {
        "categories": [StrOptions({"auto"}), list],
        "drop": [StrOptions({"first", "if_binary"}), "array-like", None],
        "dtype": "no_validation",
        "handle_unknown": [StrOptions({"error", "ignore", "infrequent_if_exist", "warn"})],
        "max_categories": [Interval(Integral, 1, None, closed="left"), None],
        "min_frequency": [Interval(Integral, 1, None, closed="left"), Interval(Real, 0, 1, closed="neither"), None],
        "sparse_output": ["boolean"],
        "feature_name_combiner": [StrOptions({"concat"}), callable],
    }

    def __init__(self, *, categories: Any = "auto", drop: Any = None, sparse_output: bool = True,
                 dtype: Any = np.float64, handle_unknown: str = "error", min_frequency: Any = None,
                 max_categories: int | None = None, feature_name_combiner: Any = "concat") -> None:
        self.categories = categories
        self.drop = drop
        self.sparse_output = sparse_output
        self.dtype = dtype
        self.handle_unknown = handle_unknown
        self.min_frequency = min_frequency
        self.max_categories = max_categories
        self.feature_name_combiner = feature_name_combiner

    def _fit_columns(self, states: list[ColumnState]) -> list[ColumnState]:
        if self.drop is not None and not isinstance(self.drop, str) and len(self.drop) != len(states):
            raise ValueError(f"`drop` should have length equal to the number of features ({len(states)}), got "
                             f"{len(self.drop)}")
        self._out_labels: list[list[str]] = []
        out = super()._fit_columns(states)
        self.drop_idx_ = None if self.drop is None else np.array(self._drop_positions, dtype=object)
        return out

    def _outputs(self, j: int, s: ColumnState, cats: list[Any], grouped: np.ndarray, n_grouped: int,
                 infrequent: np.ndarray, missing_cat: int | None) -> tuple[np.ndarray, int, list[str]]:
        labels = [_label(cats[k]) if k < len(cats) else "nan" for k in np.flatnonzero(~infrequent)] \
            + ([INFREQUENT_NAME] if infrequent.any() else [])  # (the frequent categories' only: thousands of levels)
        drop = self._drop_group(j, s, cats, grouped, n_grouped, missing_cat)
        if drop is None:
            self._drop_positions.append(None)
            out = grouped.copy()
        else:
            first = int(np.flatnonzero(grouped == drop)[0])
            self._drop_positions.append(first)
            out = np.where(grouped == drop, NONE, grouped - (grouped > drop))
            labels = labels[:drop] + labels[drop + 1:]
        self._out_labels.append(labels)
        return out, len(labels), labels

    def _drop_group(self, j: int, s: ColumnState, cats: list[Any], grouped: np.ndarray, n_grouped: int,
                    missing_cat: int | None) -> int | None:
        if self.drop is None:
            return None
        if self.drop == "first":
            return 0
        if self.drop == "if_binary":
            return 0 if n_grouped == 2 else None
        value = self.drop[j]
        if _is_missing(value):
            if missing_cat is None:
                raise ValueError(f"The following categories were supposed to be dropped, but were not found in the "
                                 f"training data.\nCategory: {value}, Feature: {j}")
            return int(grouped[missing_cat])
        key = str(value) if s.kind == "categorical" else float(value)
        matches = [k for k, c in enumerate(cats) if (str(c) if s.kind == "categorical" else float(c)) == key]
        if not matches:
            raise ValueError(f"The following categories were supposed to be dropped, but were not found in the "
                             f"training data.\nCategory: {value}, Feature: {j}")
        return int(grouped[matches[0]])

    def _unknown_code(self, infrequent_out: int | None) -> int:
        if self.handle_unknown == "error":
            return RAISE
        if self.handle_unknown in ("infrequent_if_exist", "warn") and infrequent_out is not None:
            return int(infrequent_out)
        return NONE

    def _out_states(self, s: ColumnState, all_counts: np.ndarray, out_code: np.ndarray, width: int,
                    names: list[str]) -> list[ColumnState]:
        per_out = np.bincount(out_code[out_code >= 0], weights=all_counts[out_code >= 0], minlength=width)
        n = s.summary.n
        return [ColumnState(f"{s.name}_{label}", "numeric", of_values(np.array([0.0, 1.0]), np.array([n - c, c])),
                            source=s.source) for label, c in zip(names, per_out.astype(np.int64))]

    def _combine(self, feature: str, label: str) -> str:
        if self.feature_name_combiner == "concat":
            return f"{feature}_{label}"
        name = self.feature_name_combiner(feature, label)
        if not isinstance(name, str):
            raise TypeError(f"When `feature_name_combiner` is a callable, it should return a Python string. Got "
                            f"{type(name)} instead.")
        return name

    def _apply_columns(self, pieces: list[Piece]) -> list[Piece]:
        return [OneHot(c.codes(p), c.width) for c, p in zip(self._compiled, pieces)]

    def _onnx_apply(self, g: Any, pieces: list[OnnxPiece]) -> list[OnnxPiece]:
        """ONNX-ML's OneHotEncoder over the fitted levels and ``""`` (missing), then a 0/1 MatMul placing each
        where ``_Compiled.lookup`` does; an unknown level (all zeros) is placed by an indicator row, or under
        handle_unknown="error" refused by the ONNX-ML operator itself."""
        out = []
        for c, p in zip(self._compiled, pieces):
            levels = _onnx_levels(c, p, "OneHotEncoder")
            raise_unknown = c.unknown_out == RAISE
            hot = g.node("OneHotEncoder", [p.name], "onehot", domain="ai.onnx.ml", cats_strings=[*levels, ""],
                         zeros=0 if raise_unknown else 1)
            hot = g.node("Reshape", [g.node("Cast", [hot], "onehot64", to="DOUBLE"),
                                     g.const("shape", np.array([-1, len(levels) + 1], dtype=np.int64))], "rows")
            M = np.zeros((len(levels) + 2, c.width))
            for i, code in enumerate(c.lookup):  # levels, then missing (the lookup's last entry)
                if code >= 0:
                    M[i, code] = 1.0
            if c.unknown_out >= 0:
                M[-1, c.unknown_out] = 1.0
                one = g.const("one", np.ones((1, 1)))
                total = g.node("ReduceSum", [hot, g.const("axis1", np.array([1], dtype=np.int64))], "seen",
                               keepdims=1)
                hot = g.node("Concat", [hot, g.node("Sub", [one, total], "unseen")], "rows_unknown", axis=1)
            else:
                M = M[:-1]
            out.append(OnnxPiece(g.node("MatMul", [hot, g.const("place", M)], "placed"), c.width))
        return out

    def _table_sparse(self) -> bool:
        return bool(self.sparse_output)

    def transform(self, X: Any) -> Any:
        out = super().transform(X)
        return out if np.dtype(self.dtype) == np.float64 else out.astype(self.dtype)


class OrdinalEncoder(_BaseEncoder):
    """Encode categorical columns as integer codes (as floats), as scikit-learn's.

    Categories are the sorted values seen in fit; missing values become ``encoded_missing_value`` (NaN), unknown
    ones an error naming the column (``handle_unknown="error"``) or ``unknown_value``
    (``"use_encoded_value"``). ``min_frequency`` / ``max_categories`` group rare categories into the last code.

    Attributes: ``categories_``, ``infrequent_categories_``, ``n_features_in_``, ``feature_names_in_``,
    ``input_schema_``.

    >>> import pandas as pd
    >>> enc = OrdinalEncoder().fit(pd.DataFrame({"size": ["M", "S", "L", None]}))
    >>> enc.transform(pd.DataFrame({"size": ["S", None, "L"]})).ravel().tolist()
    [2.0, nan, 0.0]
    """

    _codes_are_positions: ClassVar[bool] = False
    _missing_is_category: ClassVar[bool] = False
    _parameter_constraints: ClassVar[dict] = {
        "categories": [StrOptions({"auto"}), list],
        "dtype": "no_validation",
        "encoded_missing_value": [Integral, type(np.nan), Real],
        "handle_unknown": [StrOptions({"error", "use_encoded_value"})],
        "unknown_value": [Integral, Real, None],
        "max_categories": [Interval(Integral, 1, None, closed="left"), None],
        "min_frequency": [Interval(Integral, 1, None, closed="left"), Interval(Real, 0, 1, closed="neither"), None],
    }

    def __init__(self, *, categories: Any = "auto", dtype: Any = np.float64, handle_unknown: str = "error",
                 unknown_value: Any = None, encoded_missing_value: Any = np.nan, min_frequency: Any = None,
                 max_categories: int | None = None) -> None:
        self.categories = categories
        self.dtype = dtype
        self.handle_unknown = handle_unknown
        self.unknown_value = unknown_value
        self.encoded_missing_value = encoded_missing_value
        self.min_frequency = min_frequency
        self.max_categories = max_categories

    def _fit_columns(self, states: list[ColumnState]) -> list[ColumnState]:
        if self.handle_unknown == "use_encoded_value" and not (
                isinstance(self.unknown_value, Integral) or _is_missing(self.unknown_value)):
            raise TypeError(f"unknown_value should be an integer or np.nan when handle_unknown is "
                            f"'use_encoded_value', got {self.unknown_value}.")
        if self.handle_unknown == "error" and self.unknown_value is not None:
            raise TypeError("unknown_value should only be set when handle_unknown is 'use_encoded_value', got "
                            f"{self.unknown_value}.")
        return super()._fit_columns(states)

    def _outputs(self, j: int, s: ColumnState, cats: list[Any], grouped: np.ndarray, n_grouped: int,
                 infrequent: np.ndarray, missing_cat: int | None) -> tuple[np.ndarray, int, list[str]]:
        if self.handle_unknown == "use_encoded_value" and isinstance(self.unknown_value, Integral) \
                and 0 <= self.unknown_value < n_grouped:
            raise ValueError(f"The used value for unknown_value {self.unknown_value} is one of the values already "
                             "used for encoding the seen categories.")
        return grouped, 1, [s.name]

    def _unknown_code(self, infrequent_out: int | None) -> int:
        return RAISE if self.handle_unknown == "error" else UNKNOWN

    def _out_states(self, s: ColumnState, all_counts: np.ndarray, out_code: np.ndarray, width: int,
                    names: list[str]) -> list[ColumnState]:
        missing = s.summary.n_missing
        values, counts = out_code.astype(np.float64), all_counts
        if not _is_missing(self.encoded_missing_value):
            values = np.append(values, float(self.encoded_missing_value))
            counts, missing = np.append(counts, missing), 0
        return [ColumnState(s.name, "numeric", of_values(values, counts, missing), source=s.source)]

    def _apply_columns(self, pieces: list[Piece]) -> list[Piece]:
        out = []
        for c, p in zip(self._compiled, pieces):
            idx = c.codes(p)
            x = idx.astype(np.float64)
            x[idx == MISSING] = self.encoded_missing_value
            if self.handle_unknown == "use_encoded_value":
                x[idx == UNKNOWN] = self.unknown_value
            out.append(x)
        return out

    def _onnx_apply(self, g: Any, pieces: list[OnnxPiece]) -> list[OnnxPiece]:
        """ONNX-ML's LabelEncoder from the fitted levels (and ``""``, missing) to the codes ``_apply_columns`` gives
        (codes are small integers: exact in its float32 values); an unknown level gives ``unknown_value`` (NaN
        under handle_unknown="error", which the operator cannot raise)."""
        out = []
        unknown = float(self.unknown_value) if self.handle_unknown == "use_encoded_value" else np.nan
        for c, p in zip(self._compiled, pieces):
            levels = _onnx_levels(c, p, "OrdinalEncoder")
            codes = c.lookup.astype(np.float64)
            codes[c.lookup == MISSING] = self.encoded_missing_value
            codes[c.lookup == UNKNOWN] = unknown
            codes[c.lookup == RAISE] = np.nan
            flat = g.node("Reshape", [p.name, g.const("flat", np.array([-1], dtype=np.int64))], "flat")
            x = g.node("LabelEncoder", [flat], "ordinal", domain="ai.onnx.ml", keys_strings=[*levels, ""],
                       values_floats=codes.astype(np.float32).tolist(), default_float=float(unknown))
            x = g.node("Cast", [x], "ordinal64", to="DOUBLE")
            out.append(OnnxPiece(g.node("Reshape", [x, g.const("column", np.array([-1, 1], dtype=np.int64))],
                                        "ordinal_column")))
        return out

    def _names_out(self, names: list[str]) -> list[str]:
        return names

    def transform(self, X: Any) -> Any:
        out = super().transform(X)
        return out if np.dtype(self.dtype) == np.float64 else out.astype(self.dtype)
