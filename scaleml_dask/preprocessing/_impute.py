"""``SimpleImputer``: scikit-learn's strategies on tables larger than memory, the median from a one-pass sketch."""

from __future__ import annotations

from numbers import Real
from typing import Any, ClassVar

import numpy as np
from sklearn.utils._param_validation import MissingValues, StrOptions

from ._base import (
    Codes,
    ColumnState,
    OnnxPiece,
    Piece,
    TableTransformer,
    as_affine,
    of_values,
    require_finite,
    require_kind,
)
from ._data import NUMBERS


def _is_nan(value: Any) -> bool:
    try:
        return value is None or bool(np.isnan(value))
    except TypeError:
        return value is getattr(__import__("pandas"), "NA", None)


class SimpleImputer(TableTransformer):
    """Replace missing values by a per-column statistic: ``"mean"``, ``"median"``, ``"most_frequent"`` or
    ``"constant"`` (``fill_value``), as scikit-learn's.

    Means come from the pass's exact moments, the most frequent value from exact counts (ties: the smallest,
    as scikit-learn), and the median from a mergeable quantile sketch (``_sketch.QuantileSketch``: a histogram on
    the floats' own grid, per bin a count and whether every value in it is the bin's edge, the same whatever the
    chunking) in the same one pass: exact up to 4,096 values, and beyond whenever the middle values' bins hold
    only their edge (integers, zeros, values of at most ``r`` significant bits); otherwise within
    ``median_error_`` of numpy's median (the middle values' bins' width: at most ``2^-r · max(|median|, 2^-16)``,
    twice that in the bin of zero; ``r ≥ 8`` for a column spanning ``-1..1``, ``r ≥ 13`` within one octave) and
    of rank within ``median_rank_error_`` of the middle (the values in those bins).
    Categorical columns take ``"most_frequent"`` or ``"constant"`` (default fill ``"missing_value"``, a new level
    if it is not one). A column with no value in fit is dropped from the output unless ``keep_empty_features``;
    ``add_indicator`` appends a 0 / 1 column ``missingindicator_<name>`` per column that had missing values in fit.
    ``missing_values`` is NaN: missing values are what ingest stored as missing (NaN, None and empty fields).
    ``copy`` has no effect (a transform never modifies its input).

    Attributes: ``statistics_``, ``median_error_`` and ``median_rank_error_`` (per column, 0 where exact or not a
    median),
    ``indicator_features_`` (indices of the columns given an indicator), ``n_features_in_``, ``feature_names_in_``,
    ``input_schema_``.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"a": [1.0, None, 3.0, 10.0], "c": ["x", "y", None, "y"]})
    >>> imp = SimpleImputer(strategy="most_frequent").fit(df)
    >>> imp.statistics_.tolist(), imp.transform(df).tolist()[1]
    ([1.0, 'y'], [1.0, 'y'])
    >>> SimpleImputer(strategy="median").fit(df[["a"]]).statistics_.tolist()
    [3.0]
    """

    _parameter_constraints: ClassVar[dict] = {
        "missing_values": [MissingValues()],
        "strategy": [StrOptions({"mean", "median", "most_frequent", "constant"})],
        "fill_value": "no_validation",
        "copy": ["boolean"],
        "add_indicator": ["boolean"],
        "keep_empty_features": ["boolean"],
    }

    def __init__(self, *, missing_values: Any = np.nan, strategy: str = "mean", fill_value: Any = None,
                 copy: bool = True, add_indicator: bool = False, keep_empty_features: bool = False) -> None:
        self.missing_values = missing_values
        self.strategy = strategy
        self.fill_value = fill_value
        self.copy = copy
        self.add_indicator = add_indicator
        self.keep_empty_features = keep_empty_features

    def _needs(self, kind: str) -> set[str]:
        if kind == "categorical":
            return set()
        return {"median": {"sketch"}, "most_frequent": {"values"}}.get(self.strategy, set())

    def _fit_columns(self, states: list[ColumnState]) -> list[ColumnState]:
        if not _is_nan(self.missing_values):
            raise ValueError(f"missing_values={self.missing_values!r}: in a table, missing values are the ones stored "
                             "as missing (NaN, None, empty fields); give missing_values=np.nan")
        stats, errors, out, keep, fills = [], [], [], [], []
        for j, s in enumerate(states):
            stat, err = self._statistic(s)
            stats.append(stat)
            errors.append(err)
            empty = s.summary.count == 0 and self.strategy != "constant"
            if empty and self.keep_empty_features:
                stat = 0 if s.kind != "categorical" else self._default_fill(s)
            if empty and not self.keep_empty_features:
                fills.append(None)
                continue
            keep.append(j)
            fills.append(self._fill_code(s, stat))
            out.append(self._imputed_state(s, fills[-1], stat))
        self.statistics_ = np.array(stats, dtype=object if any(isinstance(v, str) for v in stats) else np.float64)
        self.median_error_ = np.array([e[0] for e in errors], dtype=np.float64)
        self.median_rank_error_ = np.array([e[1] for e in errors], dtype=np.int64)
        self._keep, self._fills = keep, fills
        self.indicator_features_ = np.array([j for j, s in enumerate(states) if s.summary.n_missing > 0]
                                            if self.add_indicator else [], dtype=np.int64)
        for j in self.indicator_features_:
            m = states[j].summary
            out.append(ColumnState(f"missingindicator_{states[j].name}", "numeric",
                                   of_values(np.array([0.0, 1.0]), np.array([m.count, m.n_missing])),
                                   source=states[j].source))
        return out

    def _default_fill(self, s: ColumnState) -> Any:
        return "missing_value" if s.kind == "categorical" else 0

    def _statistic(self, s: ColumnState) -> tuple[Any, tuple[float, int]]:
        """The column's statistic (NaN for a column with no value), and the median's error bounds (value, rank)."""
        m = s.summary
        if self.strategy == "constant":
            fill = self._default_fill(s) if self.fill_value is None else self.fill_value
            if s.kind == "categorical":
                return str(fill), (0.0, 0)
            if not isinstance(fill, (Real, np.number)) or isinstance(fill, (bool, np.bool_)):
                raise ValueError(f"SimpleImputer: fill_value={fill!r} is invalid for column {s.source or s.name!r}: "
                                 "expected a numerical value when imputing numerical data")
            return float(fill), (0.0, 0)
        if self.strategy in ("mean", "median"):
            require_kind("SimpleImputer", s, NUMBERS,
                         f"strategy={self.strategy!r} needs numbers: use 'most_frequent' or 'constant'")
        if m.count == 0:
            return np.nan, (0.0, 0)
        if self.strategy == "mean":
            require_finite("SimpleImputer", s, "mean", m.mean)
            return float(m.mean), (0.0, 0)
        if self.strategy == "median":
            return m.quantile(0.5), (0.0, 0) if m.values is not None else m.sketch.median_error()
        if s.kind == "categorical":
            order = np.lexsort((np.array(s.levels, dtype=object).astype(str), -m.counts))  # ties: smallest level
            return s.levels[order[0]], (0.0, 0)
        values, counts = m.values
        return float(values[np.argmax(counts)]), (0.0, 0)  # values sorted: ties give the smallest

    def _fill_code(self, s: ColumnState, stat: Any) -> Any:
        """What replaces a missing value: a number, or a category's code (a new level's if it is not one)."""
        if s.kind != "categorical":
            return float(stat)
        levels = list(s.levels)
        return levels.index(stat) if stat in levels else len(levels)

    def _imputed_state(self, s: ColumnState, fill: Any, stat: Any) -> ColumnState:
        if s.kind != "categorical":
            return ColumnState(s.name, s.kind, s.summary.filled(fill), source=s.source)
        levels = tuple(s.levels) + (() if fill < len(s.levels) else (str(stat),))
        counts = np.zeros(len(levels), dtype=np.int64)
        counts[:len(s.levels)] = s.summary.counts
        counts[fill] += s.summary.n_missing
        summary = type(s.summary)(s.summary.n, 0, counts=counts)
        return ColumnState(s.name, "categorical", summary, levels, s.source)

    def _apply_columns(self, pieces: list[Piece]) -> list[Piece]:
        out: list[Piece] = []
        for j in self._keep:
            p, fill = pieces[j], self._fills[j]
            if isinstance(p, Codes):
                levels = p.levels if fill < len(p.levels) else p.levels + (str(self.statistics_[j]),)
                out.append(Codes(np.where(p.codes == -1, np.int32(fill), p.codes).astype(p.codes.dtype), p.unknown,
                                 levels))
            else:
                out.append(as_affine([p])[0].filled(fill))
        for j in self.indicator_features_:
            p = pieces[j]
            out.append((p.codes == -1).astype(np.float64) if isinstance(p, Codes)
                       else as_affine([p])[0].isnan().astype(np.float64))
        return out

    def _onnx_apply(self, g: Any, pieces: list[OnnxPiece]) -> list[OnnxPiece]:
        if sum(p.width for p in pieces) != len(pieces):
            raise ValueError("cannot export a SimpleImputer given one-hot columns to ONNX")
        def missing(p: OnnxPiece) -> str:
            if p.levels is None:
                return g.node("IsNaN", [p.name], "is_missing")
            empty = g.node("LabelEncoder", [p.name], "is_empty", domain="ai.onnx.ml", keys_strings=[""],
                           values_int64s=[1], default_int64=0)
            return g.node("Cast", [empty], "is_missing", to="BOOL")

        out = []
        for j in self._keep:
            p, fill = pieces[j], self._fills[j]
            if p.levels is not None:
                level = p.levels[fill] if fill < len(p.levels) else str(self.statistics_[j])
                value = g.const("fill", np.array([level], dtype=object))
                levels = p.levels if fill < len(p.levels) else p.levels + (level,)
                out.append(OnnxPiece(g.node("Where", [missing(p), value, p.name], "imputed"), 1, levels))
            else:
                value = g.const("fill", np.array(float(fill)))
                out.append(OnnxPiece(g.node("Where", [missing(p), value, p.name], "imputed")))
        for j in self.indicator_features_:
            out.append(OnnxPiece(g.node("Cast", [missing(pieces[j])], "indicator", to="DOUBLE")))
        return out

    def _names_out(self, names: list[str]) -> list[str]:
        return [names[j] for j in self._keep] + [f"missingindicator_{names[j]}" for j in self.indicator_features_]
