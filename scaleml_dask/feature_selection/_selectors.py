"""``SelectKBest``, ``SelectPercentile`` and ``VarianceThreshold`` for data larger than memory: the statistics from
one pass (``_univariate``, per-chunk moments), the selection as scikit-learn makes it, and ``transform`` chunk by
chunk (lazily on dask input; sparse stays sparse).

>>> import numpy as np
>>> X = np.array([[0.0, 1.0, 5.0], [0.0, 2.0, 5.0], [0.0, 3.0, 5.5]])
>>> VarianceThreshold().fit(X).get_support().tolist()
[False, True, True]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import sklearn.feature_selection as _sk_fs
from sklearn.feature_selection import SelectKBest as _SkSelectKBest
from sklearn.feature_selection import SelectPercentile as _SkSelectPercentile
from sklearn.feature_selection import VarianceThreshold as _SkVarianceThreshold

from ..passes import fold_row_chunks, reduce_here
from ..validation import (
    SparseInputMixin,
    as_dask_array,
    check_is_fitted,
    check_n_features,
    in_memory,
    restored_state_problem,
)
from . import _univariate

#: The score functions computed from one pass of per-chunk sums; any other callable runs on in-memory data only.
_ONE_PASS = {_univariate.f_classif: (_univariate.class_sums, _univariate.f_classif_from),
             _univariate.chi2: (_univariate.class_sums, _univariate.chi2_from),
             _univariate.f_regression: (_univariate.target_sums, _univariate.f_regression_from)}
# scikit-learn's own score functions (its selectors' default among them) compute the same statistics in one pass
_ONE_PASS.update({_sk_fs.f_classif: _ONE_PASS[_univariate.f_classif], _sk_fs.chi2: _ONE_PASS[_univariate.chi2],
                  _sk_fs.f_regression: _ONE_PASS[_univariate.f_regression]})


class _Lazy(SparseInputMixin):
    """``transform`` of dask input: the selected columns of every chunk, lazily."""

    #: The fitted per-feature statistics the selection is made from.
    _statistics: tuple[str, ...] = ("scores_", "pvalues_")

    def _check_restored_state(self) -> str | None:
        """What is wrong with a selector loaded from a registry (None if nothing): one float64 statistic per
        feature, so that the selection masks exactly ``n_features_in_`` columns."""
        d = self.__dict__.get("n_features_in_")
        if d is None:
            return None
        problem = restored_state_problem(type(self).__name__, [], [("n_features_in_", d, 1, 2**40)])
        layout = [(name, v, np.float64, (d,)) for name in self._statistics for v in [self.__dict__.get(name)]
                  if v is not None or name != "pvalues_"]  # a score function may give no p-values
        return problem or restored_state_problem(type(self).__name__, layout)

    def transform(self, X: Any) -> Any:
        if in_memory(X):
            return super().transform(X)
        check_is_fitted(self)
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        check_n_features(self, dX.shape[1])
        cols = np.flatnonzero(self.get_support())
        return dX.map_blocks(_columns, cols, chunks=(dX.chunks[0], (len(cols),)), dtype=dX.dtype,
                             meta=dX._meta[:0, :0])



def _columns(x: Any, cols: np.ndarray) -> Any:
    return x[:, cols]


class _Univariate(_Lazy):
    def fit(self, X: Any, y: Any = None) -> Any:
        """Score every feature in one pass over ``X`` and ``y`` (numpy, scipy.sparse, dask, xarray, zarr, path)."""
        self._validate_params()
        one_pass = _ONE_PASS.get(self.score_func)
        if one_pass is None:
            if not in_memory(X):
                raise ValueError(f"score_func={getattr(self.score_func, '__name__', self.score_func)!r} runs on "
                                 "in-memory data only; for data larger than memory use f_classif, chi2 or "
                                 "f_regression from scaleml_dask.feature_selection (one pass each)")
            return super().fit(X, y)
        sums, stats = one_pass
        self.scores_, self.pvalues_ = (np.asarray(a) for a in stats(sums(X, y)))
        self.n_features_in_ = len(self.scores_)
        self._check_params(np.empty((1, self.n_features_in_)), y)
        return self


class SelectKBest(_Univariate, _SkSelectKBest):
    """scikit-learn's ``SelectKBest`` (same selection, ties included) with the scores from one pass.

    Examples
    --------
    >>> import numpy as np
    >>> from scaleml_dask.feature_selection import f_classif
    >>> rng = np.random.default_rng(0); y = rng.integers(0, 2, 500)
    >>> X = np.column_stack([rng.normal(size=500), y + rng.normal(size=500), rng.normal(size=500)])
    >>> SelectKBest(f_classif, k=1).fit(X, y).get_support(indices=True).tolist()
    [1]
    """


class SelectPercentile(_Univariate, _SkSelectPercentile):
    """scikit-learn's ``SelectPercentile`` with the scores from one pass."""


class _Spread(NamedTuple):
    n: int
    mean: np.ndarray
    m2: np.ndarray  # sum of squared deviations from the mean
    low: np.ndarray
    high: np.ndarray


def _spread_block(X: Any, *, acc: _Spread | None = None, chunk_index: int = -1, row_start: int = 0) -> _Spread:
    X = _univariate._rows(X, chunk_index, row_start)
    n = X.shape[0]
    if hasattr(X, "indptr"):
        sx = np.bincount(X.indices, weights=X.data, minlength=X.shape[1])
        sxx = np.bincount(X.indices, weights=X.data * X.data, minlength=X.shape[1])
        mean = sx / n
        m2 = np.maximum(sxx - n * mean**2, 0.0)
        nnz = np.bincount(X.indices, minlength=X.shape[1])
        low, high = np.zeros(X.shape[1]), np.zeros(X.shape[1])
        np.minimum.at(low, X.indices, X.data)
        np.maximum.at(high, X.indices, X.data)
        full = nnz == n  # a column stored in every row has no implicit zero
        if full.any():
            lo_f, hi_f = np.full(X.shape[1], np.inf), np.full(X.shape[1], -np.inf)
            np.minimum.at(lo_f, X.indices, X.data)
            np.maximum.at(hi_f, X.indices, X.data)
            low[full], high[full] = lo_f[full], hi_f[full]
    else:
        mean = X.mean(axis=0)
        m2 = ((X - mean) ** 2).sum(axis=0)
        low, high = X.min(axis=0), X.max(axis=0)
    part = _Spread(n, mean, m2, low, high)
    return part if acc is None else _combine_spread([acc, part])


def _combine_spread(parts: list[_Spread]) -> _Spread:
    """Chan et al.'s pairwise combination of means and squared deviations (no cancellation), in order."""
    out = parts[0]
    for p in parts[1:]:
        n = out.n + p.n
        delta = p.mean - out.mean
        out = _Spread(n, out.mean + delta * p.n / n, out.m2 + p.m2 + delta**2 * out.n * p.n / n,
                      np.minimum(out.low, p.low), np.maximum(out.high, p.high))
    return out


class VarianceThreshold(_Lazy, _SkVarianceThreshold):
    """scikit-learn's ``VarianceThreshold`` with the variances (and, for ``threshold=0``, the ranges) from one pass.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
    >>> VarianceThreshold(threshold=0.3).fit(X).get_support(indices=True).tolist()
    [2]
    """

    _statistics = ("variances_",)

    def fit(self, X: Any, y: Any = None) -> VarianceThreshold:
        """Compute every feature's variance in one pass (numpy, scipy.sparse, dask, xarray, zarr, path)."""
        self._validate_params()
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        g = _univariate._group(dX.shape[1], max(dX.chunks[0]), not isinstance(dX._meta, np.ndarray), 2)
        s = reduce_here(fold_row_chunks(_spread_block, dX, group=g), _combine_spread, split_every=4)
        self.variances_ = s.m2 / s.n
        if self.threshold == 0:
            self.variances_ = np.nanmin([self.variances_, s.high - s.low], axis=0)
        self.n_features_in_ = dX.shape[1]
        if np.all(~np.isfinite(self.variances_) | (self.variances_ <= self.threshold)):
            msg = "No feature in X meets the variance threshold {0:.5f}"
            if dX.shape[0] == 1:
                msg += " (X contains only one sample)"
            raise ValueError(msg.format(self.threshold))
        return self
