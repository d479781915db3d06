"""Out-of-core linear regression and ridge from one pass over the data and one small R factor.

Each chunk of rows ``[X_b | y_b]`` is reduced on the cluster to its weight, column means and the R of a QR of
the centered chunk (``scaleml_dask._tsqr``); a deterministic tree of small QRs combines them into the R of
the whole centered ``[X | y]``. Everything else is arithmetic on that ``(d+1) x (d+1)`` matrix: the
coefficients (triangular solve), residual sum of squares (its last diagonal entry squared), classical
standard errors, R², the condition number, and ridge for any ``alpha`` (append ``sqrt(alpha) I`` rows).
``PCA`` reuses the same reduction (``scaleml_dask._moments``).

``solver="gram"`` sums centered Gram matrices instead (fastest; squares the condition number).
``solver="auto"`` forms each chunk's Gram, computes from it a bound on the error the normal equations
would make, and uses its Cholesky factor only where that bound is below ``1e-10``; other chunks get a
Householder QR in the same pass. The bound is checked again on the combined factor and, if the whole
problem turns out worse conditioned than its chunks, the fit is redone by QR -- so ``auto`` never loses
accuracy silently, and ``solver_`` records what was used.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import dask.array as da
import numpy as np
from scipy import linalg, stats
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ._deployable import LinearWeights
from ._math import small_blas
from ._moments import AUTO_TOL, check_sample_weight, fit_moments, last_reused, moments
from ._repr import FittedSummaryMixin
from ._tsqr import EPS, Moments
from .passes import shared
from .validation import (
    SparseInputMixin,
    as_dask_array,
    check_is_fitted,
    check_n_features,
    check_predict_input,
    check_X_y,
    finite_blocks,
    in_memory,
    is_sparse,
)

#: A column whose R diagonal is below this fraction of its (centered) norm is a linear combination of
#: the others (by QR); the normal equations resolve only sqrt(eps) of it.
RANK_RTOL = {"tsqr": 1e-12, "gram": 1e-7}


class _LinearBase(LinearWeights, FittedSummaryMixin, RegressorMixin, BaseEstimator):
    """Shared fitting for LinearRegression and Ridge: validation, the pass, fitted statistics."""

    _min_samples_per_parameter = True
    _parameter_constraints: ClassVar[dict] = {
        "fit_intercept": ["boolean"],
        "solver": [StrOptions({"auto", "tsqr", "gram"})],
    }

    def _fitted_summary(self) -> list[tuple[str, Any]]:
        return [("samples", self.n_samples_), ("features", self.n_features_in_), ("R²", self.r2_),
                ("condition number", self.condition_number_), ("solver used", self.solver_)]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> _LinearBase:
        """Fit from one pass over ``X`` and ``y`` (numpy, dask, xarray, zarr, or a dataset path/name)."""
        dX, dy = check_X_y(X, y)
        w = check_sample_weight(sample_weight, dX)
        n, d = dX.shape
        n_params = d + bool(self.fit_intercept)
        if self._min_samples_per_parameter and n < n_params:
            raise ValueError(
                f"X has {n} samples but the model has {n_params} parameters ({d} features"
                f"{' + intercept' if self.fit_intercept else ''}); fewer rows than columns leave the "
                "least-squares problem underdetermined")
        R, m, used = fit_moments(dX, dy, w, center=bool(self.fit_intercept), solver=self.solver,
                                 tol=AUTO_TOL, scale=True)
        self.statistics_reused_ = last_reused()  # inside sm.reuse_statistics(): no pass of its own
        if not m.weight > 0:
            raise ValueError("sample_weight: all weights are zero; at least one must be positive")
        self.n_features_in_ = d
        self.n_samples_ = int(m.n)
        self.solver_ = used
        self._set_fitted(R, m)
        rss = float(np.sum((R @ np.append(-self.coef_, 1.0)) ** 2))
        tss = float(np.sum(R[:, d] ** 2))
        self.rss_ = rss
        self.r2_ = 1.0 - rss / tss if tss > 0 else np.nan
        self.condition_number_ = _condition_number(R[:d, :d], m, bool(self.fit_intercept))
        return self

    def predict(self, X: Any) -> Any:
        """Predictions ``X @ coef_ + intercept_``: numpy for in-memory input (numpy, scipy.sparse), a lazy dask
        array otherwise."""
        check_is_fitted(self, "coef_")
        if in_memory(X):
            return np.asarray(check_predict_input(self, X, accept_sparse=True) @ self.coef_) + self.intercept_
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        check_n_features(self, dX.shape[1])
        if is_sparse(dX):
            return dX.map_blocks(_sparse_predict, shared(self.coef_), self.intercept_, drop_axis=1,  # once per worker
                                 dtype=np.float64, meta=np.empty((0,)))
        return finite_blocks(dX.astype(np.float64), "X") @ self.coef_ + self.intercept_

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Coefficient of determination R² of the predictions (as scikit-learn), in one pass."""
        dX, dy = check_X_y(X, y, accept_sparse=True)
        w = check_sample_weight(sample_weight, dX)
        resid = dy.astype(np.float64) - self.predict(dX)
        both = da.stack([resid, dy.astype(np.float64)], axis=1)
        m = moments(both, None, w, center=True, method="tsqr")
        ss_res = float(np.sum(m.r[:, 0] ** 2) + m.weight * m.mean[0] ** 2)
        ss_tot = float(np.sum(m.r[:, 1] ** 2))
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else np.nan

    def _intercept_from(self, coef: np.ndarray, m: Moments) -> float:
        d = len(coef)
        return float(m.mean[d] - m.mean[:d] @ coef) if self.fit_intercept else 0.0


class LinearRegression(_LinearBase):
    """Ordinary (or weighted) least squares from one pass over out-of-core data.

    Parameters
    ----------
    fit_intercept : fit an intercept (columns are centered inside each chunk, which also gains digits).
    solver : ``"auto"`` (Gram where provably accurate, QR elsewhere), ``"tsqr"`` (Householder QR, most
        accurate) or ``"gram"`` (normal equations; fastest, squares the condition number).

    Attributes
    ----------
    coef_, intercept_, stderr_ (classical OLS standard errors of ``coef_``), intercept_stderr_, tvalues_,
    pvalues_, r2_ (centered if ``fit_intercept``, else uncentered, as statsmodels), rss_, n_samples_,
    df_resid_, condition_number_ (of ``[1 | X]``, as statsmodels), solver_ (what was used), cov_params_
    (covariance of ``[intercept, coef...]`` or of ``coef`` without intercept), rank_ (of the centered X),
    statistics_reused_ (the pass's moments came from an earlier fit on the same data, inside
    ``sm.reuse_statistics()``).

    An exactly rank-deficient X (full one-hot columns with an intercept, a duplicated column) gets scikit-learn's
    answer: the minimum-norm least-squares coefficients, from the SVD of the small R factor (a
    ``RankDeficientWarning`` names the columns); predictions on rows like the training rows are the same as for
    any least-squares solution. Standard errors then come from the pseudo-inverse (as statsmodels), with
    ``df_resid_`` counting ``rank_`` parameters.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> y = 1.5 + X @ np.array([2.0, -1.0])
    >>> m = LinearRegression().fit(X, y)
    >>> np.round(m.coef_, 6).tolist(), round(m.intercept_, 6), m.solver_
    ([2.0, -1.0], 1.5, 'tsqr')
    """

    def __init__(self, fit_intercept: bool = True, solver: str = "auto") -> None:
        self.fit_intercept = fit_intercept
        self.solver = solver

    def _set_fitted(self, R: np.ndarray, m: Moments) -> None:
        d = R.shape[0] - 1
        Rx = R[:d, :d]
        rinv, self.rank_ = _inverse_or_pinv(Rx, RANK_RTOL["gram" if m.gram else "tsqr"], bool(self.fit_intercept))
        with small_blas(Rx.size):
            coef = rinv @ R[:d, d] if self.rank_ < d else linalg.solve_triangular(Rx, R[:d, d])
        self.coef_ = coef
        self.intercept_ = self._intercept_from(coef, m)
        n_params = self.rank_ + bool(self.fit_intercept)
        self.df_resid_ = int(m.n - n_params)
        rss = R[d, d] ** 2
        sigma2 = rss / self.df_resid_ if self.df_resid_ > 0 else np.nan
        cov = sigma2 * (rinv @ rinv.T)
        if self.fit_intercept:
            mx = m.mean[:d]
            var0 = sigma2 / m.weight + mx @ cov @ mx
            cov_b0 = -cov @ mx
            cov = np.block([[np.array([[var0]]), cov_b0[None, :]], [cov_b0[:, None], cov]])
        self.cov_params_ = cov
        se = np.sqrt(np.diag(cov))
        params = np.r_[self.intercept_, coef] if self.fit_intercept else coef
        with np.errstate(divide="ignore", invalid="ignore"):
            t = params / se
        p = 2 * stats.t.sf(np.abs(t), self.df_resid_) if self.df_resid_ > 0 else np.full_like(t, np.nan)
        k = int(bool(self.fit_intercept))
        self.stderr_, self.tvalues_, self.pvalues_ = se[k:], t[k:], p[k:]
        self.intercept_stderr_ = float(se[0]) if k else 0.0

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """Confidence intervals ``(n_features, 2)`` of ``coef_`` at level ``1 - alpha``."""
        check_is_fitted(self, "coef_")
        q = stats.t.ppf(1 - alpha / 2, self.df_resid_)
        return np.column_stack([self.coef_ - q * self.stderr_, self.coef_ + q * self.stderr_])

    def summary(self, feature_names: Sequence[str] | None = None, alpha: float = 0.05) -> str:
        """A readable table of coefficients, standard errors, t statistics, p-values and intervals."""
        check_is_fitted(self, "coef_")
        names = list(feature_names) if feature_names is not None else [
            f"x{j}" for j in range(self.n_features_in_)]
        if len(names) != self.n_features_in_:
            raise ValueError(f"{len(names)} feature names for {self.n_features_in_} features")
        if self.fit_intercept:
            names = ["const", *names]
        params = np.r_[self.intercept_, self.coef_] if self.fit_intercept else self.coef_
        se = np.sqrt(np.diag(self.cov_params_))
        t = params / se
        p = 2 * stats.t.sf(np.abs(t), self.df_resid_)
        q = stats.t.ppf(1 - alpha / 2, self.df_resid_)
        lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
        width = max(8, *(len(s) for s in names))
        lines = [
            f"{type(self).__name__} (solver={self.solver_})",
            f"n_samples: {self.n_samples_}   df_resid: {self.df_resid_}   R²: {self.r2_:.6g}   "
            f"RSS: {self.rss_:.6g}   condition number: {self.condition_number_:.3g}",
            f"{'':{width}} {'coef':>12} {'std err':>12} {'t':>9} {'P>|t|':>9} {lo:>12} {hi:>12}",
        ]
        for name, b, s, tv, pv in zip(names, params, se, t, p):
            lines.append(f"{name:{width}} {b:12.6g} {s:12.6g} {tv:9.3f} {pv:9.3g} {b - q * s:12.6g} "
                         f"{b + q * s:12.6g}")
        return "\n".join(lines)

    def to_sklearn(self) -> Any:
        """An equivalent fitted ``sklearn.linear_model.LinearRegression`` (for pipelines, joblib, ONNX)."""
        check_is_fitted(self, "coef_")
        from sklearn.linear_model import LinearRegression as SkLinearRegression

        est = SkLinearRegression(fit_intercept=self.fit_intercept)
        _copy_fitted(self, est)
        return est


class Ridge(SparseInputMixin, _LinearBase):
    """Ridge regression ``min ||y - X b - b0||² + alpha ||b||²`` (weighted), from the same single pass.

    The penalty is applied to the small R factor (``sqrt(alpha) I`` rows appended), so the result matches
    scikit-learn's ``Ridge`` (intercept unpenalized, sample weights as there) without a second pass.

    Where a ``p × p`` factor is out of reach (``_ridge``): ``solver="dual"`` solves the ``n × n`` system of wide
    dense data (p > n; two passes over column panels), ``solver="cg"`` runs conjugate gradients on sparse (or any)
    data, one pass per iteration, to a residual ``tol`` times the right-hand side (``n_iter_`` passes after the
    first). ``"auto"`` takes ``"cg"`` for sparse input and ``"dual"`` for dense input with more columns than rows
    (at most ``pca.DUAL_MAX_SAMPLES`` rows; ``"cg"`` beyond).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 3)); y = X @ np.array([1.0, 2.0, 3.0])
    >>> from sklearn.linear_model import Ridge as SkRidge
    >>> bool(np.allclose(Ridge(alpha=10.0).fit(X, y).coef_, SkRidge(alpha=10.0).fit(X, y).coef_))
    True
    """

    _min_samples_per_parameter = False
    _parameter_constraints: ClassVar[dict] = {
        **_LinearBase._parameter_constraints,
        "solver": [StrOptions({"auto", "tsqr", "gram", "dual", "cg"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, alpha: float = 1.0, fit_intercept: bool = True, solver: str = "auto", tol: float = 1e-10,
                 max_iter: int = 1000) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter


    def _fitted_summary(self) -> list[tuple[str, Any]]:
        if self.solver_ in ("dual", "cg"):
            rows = [("samples", self.n_samples_), ("features", self.n_features_in_), ("solver used", self.solver_)]
            return rows + ([("CG iterations", self.n_iter_)] if self.solver_ == "cg" else [])
        return super()._fitted_summary()

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> Ridge:
        """Fit from one pass (``tsqr`` / ``gram``), two (``dual``) or one per CG iteration (``cg``)."""
        from ._ridge import ridge_cg, ridge_dual

        dX, dy = check_X_y(X, y, accept_sparse=True)
        n, d = dX.shape
        solver = self.solver
        sparse = is_sparse(dX)
        if sparse and solver in ("tsqr", "gram"):
            raise TypeError(f"X is sparse: solver={solver!r} needs dense data; use solver='cg' (or 'auto')")
        if solver == "auto":
            from .pca import DUAL_MAX_SAMPLES

            solver = "cg" if sparse or (d > n > DUAL_MAX_SAMPLES) else "dual" if d > n else "auto"
        self.n_iter_ = None
        if solver not in ("dual", "cg"):
            return super().fit(dX, dy, sample_weight)
        w = check_sample_weight(sample_weight, dX)
        if solver == "cg":
            self.coef_, self.intercept_, self.n_iter_ = ridge_cg(dX, dy, w, alpha=float(self.alpha), tol=self.tol,
                                                                 max_iter=self.max_iter,
                                                                 fit_intercept=bool(self.fit_intercept))
        else:
            weights = None if w is None else np.asarray(w.compute(), dtype=np.float64)
            self.coef_, self.intercept_ = ridge_dual(dX, dy, weights, alpha=float(self.alpha),
                                                     fit_intercept=bool(self.fit_intercept))
        self.n_features_in_, self.n_samples_, self.solver_ = d, n, solver
        return self

    def _set_fitted(self, R: np.ndarray, m: Moments) -> None:
        d = R.shape[0] - 1
        if self.alpha == 0:
            rinv, rank = _inverse_or_pinv(R[:d, :d], RANK_RTOL["gram" if m.gram else "tsqr"], bool(self.fit_intercept))
            if rank < d:
                self.coef_ = rinv @ R[:d, d]
                self.intercept_ = self._intercept_from(self.coef_, m)
                return
        pen = np.hstack([np.sqrt(self.alpha) * np.eye(d), np.zeros((d, 1))])
        with small_blas(R.size):
            R2 = np.linalg.qr(np.vstack([R[:, :], pen]), mode="r")
            self.coef_ = linalg.solve_triangular(R2[:d, :d], R2[:d, d])
        self.intercept_ = self._intercept_from(self.coef_, m)

    def to_sklearn(self) -> Any:
        """An equivalent fitted ``sklearn.linear_model.Ridge``."""
        check_is_fitted(self, "coef_")
        from sklearn.linear_model import Ridge as SkRidge

        est = SkRidge(alpha=self.alpha, fit_intercept=self.fit_intercept)
        _copy_fitted(self, est)
        est.n_iter_ = None
        est.solver_ = "cholesky"
        return est


def _sparse_predict(x: Any, coef: np.ndarray, intercept: float) -> np.ndarray:
    from ._checks import assert_finite_rows

    assert_finite_rows(x, "X", -1, 0)
    return np.asarray(x @ coef).reshape(-1) + intercept


def _copy_fitted(src: _LinearBase, est: Any) -> None:
    est.coef_ = src.coef_.copy()
    est.intercept_ = float(src.intercept_) if src.fit_intercept else 0.0
    est.n_features_in_ = src.n_features_in_


class RankDeficientWarning(UserWarning):
    """The design matrix is (numerically) rank deficient: the minimum-norm solution was returned."""


def _inverse_or_pinv(Rx: np.ndarray, rtol: float, intercept: bool) -> tuple[np.ndarray, int]:
    """``(R⁻¹, d)`` for a full-rank ``Rx``; for a rank-deficient one ``(R⁺, rank)``, the pseudo-inverse from the SVD
    of ``Rx`` with singular values below ``rtol`` × the largest dropped, and a ``RankDeficientWarning`` naming the
    columns that are combinations of earlier ones. ``R⁺ r`` is then the minimum-norm least-squares solution,
    scikit-learn's (``lstsq`` on the centered X), whose predictions are the same for every least-squares
    solution on rows in the span of the training rows (one-hot columns with an intercept: every row)."""
    d = Rx.shape[0]
    problem = _rank_problem(Rx, rtol, intercept)
    with small_blas(Rx.size):
        if problem is not None:
            U, S, Vt = np.linalg.svd(Rx)
            keep = S > rtol * S[0] if d and S[0] > 0 else np.zeros(d, dtype=bool)
        if problem is None or keep.all():
            return linalg.solve_triangular(Rx, np.eye(d)), d
        pinv, rank = (Vt[keep].T / S[keep]) @ U[:, keep].T, int(keep.sum())
    warnings.warn(f"X is rank deficient (rank {rank} of {d}): {problem}. The minimum-norm least-squares solution is "
                  "returned (as scikit-learn's); these coefficients are not identifiable: drop or combine the columns "
                  "(OneHotEncoder(drop='first') for one-hot columns with an intercept), or use Ridge",
                  RankDeficientWarning, stacklevel=4)
    return pinv, rank


def _rank_problem(Rx: np.ndarray, rtol: float, intercept: bool) -> str | None:
    """What makes ``Rx`` rank deficient, naming the columns that are (numerically) combinations of earlier
    columns; None if it is not."""
    norms = np.sqrt(np.sum(Rx**2, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(np.diag(Rx)) / norms
    bad = [j for j in range(Rx.shape[1]) if not norms[j] > 0 or not rel[j] > rtol]
    if bad:
        const = [j for j in bad if not norms[j] > 0]
        what = (f"constant column(s) {const} (collinear with the intercept)" if const and intercept else "")
        rest = [j for j in bad if j not in const]
        if rest:
            what += ("; " if what else "") + (f"column(s) {rest} are linear combinations of earlier columns"
                                              + (" and the intercept" if intercept else ""))
        if const and not intercept:
            what += ("; " if what else "") + f"all-zero column(s) {const}"
        return what
    return None


def _condition_number(Rx: np.ndarray, m: Moments, intercept: bool) -> float:
    """2-norm condition number of ``sqrt(w) [1 | X]`` (or ``X``), from its R factor, as statsmodels reports."""
    if intercept:
        sw = np.sqrt(m.weight)
        d = Rx.shape[0]
        top = np.r_[sw, sw * m.mean[:d]]
        Rx = np.vstack([top, np.hstack([np.zeros((d, 1)), Rx])])
    s = np.linalg.svd(Rx, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > EPS * s[0] else np.inf
