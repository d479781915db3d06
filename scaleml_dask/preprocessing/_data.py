"""Scalers: ``StandardScaler`` and ``MinMaxScaler``, scikit-learn's semantics on tables larger than memory."""

from __future__ import annotations

from numbers import Real
from typing import Any, ClassVar

import numpy as np
from sklearn.preprocessing._data import _handle_zeros_in_scale, _is_constant_feature

from ._base import (
    ColumnState,
    OnnxPiece,
    Piece,
    TableTransformer,
    as_affine,
    as_floats,
    onnx_affine,
    require_finite,
    require_kind,
)

#: What a scaler takes (booleans as 0 / 1, date-times as seconds since the epoch).
NUMBERS = ("numeric", "boolean", "datetime")
_FIX = "scale numbers; encode a category first (OneHotEncoder, OrdinalEncoder)"


def _seen(states: list[ColumnState]) -> Any:
    """scikit-learn's ``n_samples_seen_``: an int, or per column when some values were missing."""
    counts = np.array([s.summary.count for s in states], dtype=np.int64)
    return int(states[0].summary.n) if all(s.summary.n_missing == 0 for s in states) else counts


class StandardScaler(TableTransformer):
    """Standardize columns to zero mean and unit variance (population variance), as scikit-learn's.

    Missing values are ignored by ``fit`` and kept by ``transform``; a constant column is left unscaled
    (``scale_`` 1). Fitted from one pass over the data (or from the statistics a pipeline gathered for every
    step at once). ``copy`` has no effect: a transform never modifies its input.

    Attributes: ``mean_``, ``var_``, ``scale_``, ``n_samples_seen_``, ``n_features_in_``, ``feature_names_in_``,
    ``input_schema_``.

    >>> import pandas as pd
    >>> s = StandardScaler().fit(pd.DataFrame({"a": [1.0, 2.0, None, 3.0]}))
    >>> s.mean_.tolist(), s.var_.round(4).tolist(), s.transform(pd.DataFrame({"a": [2.0, None]})).ravel().tolist()
    ([2.0], [0.6667], [0.0, nan])
    """

    _parameter_constraints: ClassVar[dict] = {"copy": ["boolean"], "with_mean": ["boolean"], "with_std": ["boolean"]}

    def __init__(self, *, copy: bool = True, with_mean: bool = True, with_std: bool = True) -> None:
        self.copy = copy
        self.with_mean = with_mean
        self.with_std = with_std

    def _fit_columns(self, states: list[ColumnState]) -> list[ColumnState]:
        for s in states:
            require_kind("StandardScaler", s, NUMBERS, _FIX)
            require_finite("StandardScaler", s, "mean and variance", s.summary.mean, s.summary.var)
        mean = np.array([s.summary.mean for s in states])
        var = np.array([s.summary.var for s in states])
        self.n_samples_seen_ = _seen(states)
        self.mean_ = mean if self.with_mean or self.with_std else None
        self.var_ = var if self.with_std else None
        if self.with_std:
            seen = np.array([s.summary.count for s in states])
            self.scale_ = _handle_zeros_in_scale(np.sqrt(var), copy=False,
                                                 constant_mask=_is_constant_feature(var, mean, seen))
        else:
            self.scale_ = None
        self._shift = mean if self.with_mean else np.zeros(len(states))
        self._divide = self.scale_ if self.with_std else np.ones(len(states))
        return [ColumnState(s.name, "numeric", s.summary.affine(1 / d, -m / d), source=s.source)
                for s, m, d in zip(states, self._shift, self._divide)]

    def _apply_columns(self, pieces: list[Piece]) -> list[Piece]:
        return [p.then(m, 1.0 / d, 0.0) for p, m, d in zip(as_affine(pieces), self._shift, self._divide)]

    def _onnx_apply(self, g: Any, pieces: list[OnnxPiece]) -> list[OnnxPiece]:
        return onnx_affine(g, pieces, self._shift, 1.0 / self._divide, None, "StandardScaler")


class MinMaxScaler(TableTransformer):
    """Scale columns to ``feature_range`` by their minimum and maximum, as scikit-learn's.

    Missing values are ignored by ``fit`` and kept by ``transform``; ``clip`` clips transformed values to the
    range. ``copy`` has no effect (a transform never modifies its input).

    Attributes: ``data_min_``, ``data_max_``, ``data_range_``, ``scale_``, ``min_``, ``n_samples_seen_``,
    ``n_features_in_``, ``feature_names_in_``, ``input_schema_``.

    >>> import pandas as pd
    >>> MinMaxScaler().fit_transform(pd.DataFrame({"a": [1.0, 3.0, 5.0]})).ravel().tolist()
    [0.0, 0.5, 1.0]
    """

    _parameter_constraints: ClassVar[dict] = {"feature_range": [tuple], "copy": ["boolean"], "clip": ["boolean"]}

    def __init__(self, feature_range: tuple[float, float] = (0, 1), *, copy: bool = True, clip: bool = False) -> None:
        self.feature_range = feature_range
        self.copy = copy
        self.clip = clip

    def _fit_columns(self, states: list[ColumnState]) -> list[ColumnState]:
        lo, hi = self.feature_range
        if not (isinstance(lo, Real) and isinstance(hi, Real)) or lo >= hi:
            raise ValueError(f"Minimum of desired feature range must be smaller than maximum. Got "
                             f"{self.feature_range!r}.")
        for s in states:
            require_kind("MinMaxScaler", s, NUMBERS, _FIX)
            require_finite("MinMaxScaler", s, "range", s.summary.max - s.summary.min)
        self.data_min_ = np.array([s.summary.min for s in states])
        self.data_max_ = np.array([s.summary.max for s in states])
        self.data_range_ = self.data_max_ - self.data_min_
        self.scale_ = (hi - lo) / _handle_zeros_in_scale(self.data_range_, copy=True)
        self.min_ = lo - self.data_min_ * self.scale_
        self.n_samples_seen_ = _seen(states)
        return [ColumnState(s.name, "numeric", s.summary.affine(a, b), source=s.source)
                for s, a, b in zip(states, self.scale_, self.min_)]

    def _apply_columns(self, pieces: list[Piece]) -> list[Piece]:
        out = [p.then(0.0, a, b) for p, a, b in zip(as_affine(pieces), self.scale_, self.min_)]
        if not self.clip:
            return out
        lo, hi = self.feature_range
        return [np.clip(x, lo, hi) for x in as_floats(out)]

    def _onnx_apply(self, g: Any, pieces: list[OnnxPiece]) -> list[OnnxPiece]:
        out = onnx_affine(g, pieces, np.zeros(len(self.scale_)), self.scale_, self.min_, "MinMaxScaler")
        if not self.clip:
            return out
        lo, hi = (g.const(n, np.array(float(v))) for n, v in zip(("lo", "hi"), self.feature_range))
        return [OnnxPiece(g.node("Clip", [p.name, lo, hi], "clipped"), p.width) for p in out]
