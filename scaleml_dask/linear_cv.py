"""``RidgeCV``: every alpha × every fold from one pass, and the regularisation path from the same small matrices.

One pass over the data reduces each chunk to the moments (``_tsqr``: weight, means, R factor of the centred
``[X | y]``) of its rows *per membership pattern* — the rows that are in the same part (train / test / none) of
every split: for k folds, the k folds themselves, so the pass costs what one ``LinearRegression`` pass costs.
Combining patterns gives each split's training and test moments; from them, for every alpha:

- the ridge solution of the training moments, through one SVD per split of its ``d x d`` R block
  (``beta(alpha) = V diag(s / (s² + alpha)) U' r``, intercept from the means), and
- the test rows' squared error, exactly, from the test moments (``||R_test [-beta; 1]||² + w (ybar - b0 -
  xbar'beta)²``) — so R² / MSE per fold need no second pass.

``cv=None`` chooses alpha by generalised cross-validation (Golub, Heath & Wahba) on all rows:
``GCV(alpha) = n RSS(alpha) / (n - df(alpha))²`` with ``df = sum s² / (s² + alpha) + 1`` — one pass.
(scikit-learn's ``cv=None`` is exact leave-one-out; ``cv="loo"`` gives that here, with a second pass for the
leverages.) The path of every alpha on all rows (``coef_path_``) comes from the same pass.

>>> import numpy as np
>>> from sklearn.linear_model import RidgeCV as SkRidgeCV
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 4)); y = X @ [1.0, 0.0, -2.0, 0.5] + rng.normal(size=300)
>>> ours = RidgeCV(alphas=np.logspace(-2, 3, 20), cv="loo").fit(X, y)
>>> ref = SkRidgeCV(alphas=np.logspace(-2, 3, 20)).fit(X, y)
>>> bool(ours.alpha_ == ref.alpha_ and np.allclose(ours.coef_, ref.coef_))
True
"""

from __future__ import annotations

from numbers import Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils._param_validation import StrOptions

from ._cv_kernels import fold_grams, pattern_grams
from ._deployable import LinearWeights
from ._folds import TEST, TRAIN
from ._moments import AUTO_TOL, check_sample_weight
from ._repr import FittedSummaryMixin
from ._tsqr import Moments, block_moments, combine_moments, gram_error_bound
from .linear import _LinearBase
from .validation import check_X_y

__all__ = ["RidgeCV"]

_SCORINGS = ("r2", "neg_mean_squared_error", "neg_root_mean_squared_error")


# ------------------------------------------------------------------------------------------------------
# the pass: moments per membership pattern
# ------------------------------------------------------------------------------------------------------


def pattern_moments(X: np.ndarray, y: np.ndarray, w: np.ndarray | None, *, chunk_index: int, row_start: int,
                    plan: Any, method: str, tol: float) -> dict[bytes, Moments]:
    """The moments of a chunk's rows grouped by their membership in every split of ``plan`` (pattern → moments);
    without a plan, one pattern: all rows. Unweighted float64 rows under ``auto`` / ``gram`` take the Gram of
    each pattern from one pass over the block (``_cv_kernels``), without gathering them; for k folds each row's
    fold is computed as the row is copied (``fold_grams``), so no fold array is made either."""
    X = np.asarray(X)
    y = np.asarray(y).ravel()
    common = dict(center=True, method=method, tol=tol, chunk_index=chunk_index, row_start=row_start)
    if plan is None:
        return {b"": block_moments(X, y, w, **common)}
    out = {}
    rule = plan.fold_rule()
    if w is None and X.dtype == np.float64 and method in ("auto", "gram"):
        if rule is None:
            index, patterns = plan.patterns(np.arange(row_start, row_start + len(X)), y)
            grams, counts = pattern_grams(X, y, index, len(patterns))
            indices = _Index(lambda: index)
        else:  # k folds: each row's fold computed as it is copied
            _, patterns = plan.patterns(np.zeros(0, dtype=np.int64))
            grams, counts = fold_grams(X, y, row_start, *rule)
            indices = _Index(lambda: rule[0].folds(np.arange(row_start, row_start + len(X)), rule[1]))
        for p, key in enumerate(patterns):
            if counts[p]:
                rows = _Rows(indices, p)  # gathered only if a QR is needed
                out[key.tobytes()] = block_moments(_Lazy(X, rows, counts[p]), _Lazy(y, rows, counts[p]), None,
                                                   gram=grams[p], **common)
        return out
    index, patterns = plan.patterns(np.arange(row_start, row_start + len(X)), y)
    for p, key in enumerate(patterns):
        rows = np.flatnonzero(index == p)
        if len(rows):
            out[key.tobytes()] = block_moments(X[rows], y[rows], None if w is None else np.asarray(w).ravel()[rows],
                                               **common)
    return out


class _Index:
    """The pattern of each row of a block, made (once) only when asked for."""

    def __init__(self, make: Any) -> None:
        self.make, self._index = make, None

    def get(self) -> np.ndarray:
        if self._index is None:
            self._index = self.make()
        return self._index


class _Rows:
    """The indices of pattern ``p``'s rows, found only when asked for."""

    def __init__(self, index: _Index, p: int) -> None:
        self.index, self.p, self._rows = index, p, None

    def get(self) -> np.ndarray:
        if self._rows is None:
            self._rows = np.flatnonzero(self.index.get() == self.p)
        return self._rows


class _Lazy:
    """A pattern's rows of a block, gathered only if ``block_moments`` needs them (a QR of an ill-conditioned
    pattern, or naming a NaN); what it asks before that (dtype, shape) is answered without gathering."""

    def __init__(self, a: np.ndarray, rows: _Rows, n: int) -> None:
        self.a, self.rows, self._taken = a, rows, None
        self.dtype = a.dtype
        self.shape = (int(n),) + a.shape[1:]
        self.ndim = a.ndim

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self._taken is None:
            self._taken = self.a[self.rows.get()]
        return self._taken if dtype is None else self._taken.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> Any:
        return np.asarray(self)[key]


def combine_patterns(parts: list[dict[bytes, Moments]]) -> dict[bytes, Moments]:
    """Combine per-pattern moments of disjoint row sets (pattern by pattern, in the order given)."""
    keys: dict[bytes, list[Moments]] = {}
    for part in parts:
        for k, m in part.items():
            keys.setdefault(k, []).append(m)
    return {k: combine_moments(ms) if len(ms) > 1 else ms[0] for k, ms in keys.items()}


def _gather(patterns: dict[bytes, Moments], split: int, code: int) -> Moments | None:
    chosen = [m for k, m in patterns.items() if np.frombuffer(k, dtype=np.int8)[split] == code and m.n > 0]
    return combine_moments(chosen) if chosen else None


# ------------------------------------------------------------------------------------------------------
# the path from the small matrices
# ------------------------------------------------------------------------------------------------------


def _r_of(m: Moments) -> np.ndarray:
    if m.gram:
        from ._moments import gram_r

        return gram_r(m.r)
    return m.r


def ridge_path(m: Moments, alphas: np.ndarray, fit_intercept: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients ``(n_alphas, d)`` and intercepts of ridge for every alpha from the moments of ``[X | y]``,
    and the singular values of the (centred) X block."""
    R = _r_of(m)
    d = R.shape[0] - 1
    U, s, Vt = np.linalg.svd(R[:d, :d])
    proj = U.T @ R[:d, d]
    with np.errstate(divide="ignore", invalid="ignore"):  # s / (s² + alpha), without squaring s (1e200 overflows)
        shrink = 1.0 / (s[None, :] + np.asarray(alphas)[:, None] / s[None, :])
    shrink = np.where(np.isfinite(shrink), shrink, 0.0)
    coef = (shrink * proj[None, :]) @ Vt
    intercept = m.mean[d] - coef @ m.mean[:d] if fit_intercept else np.zeros(len(alphas))
    return coef, intercept, s


def squared_errors(m: Moments, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Weighted squared error of each ``(coef[a], intercept[a])`` on the rows the moments ``m`` summarise."""
    R = _r_of(m)
    d = R.shape[0] - 1
    V = np.vstack([-coef.T, np.ones((1, len(coef)))])
    centred = np.sum((R @ V) ** 2, axis=0)
    offset = m.mean[d] - intercept - coef @ m.mean[:d]
    return centred + m.weight * offset**2


# ------------------------------------------------------------------------------------------------------
# the estimator
# ------------------------------------------------------------------------------------------------------


class RidgeCV(LinearWeights, FittedSummaryMixin, RegressorMixin, BaseEstimator):
    """Ridge with the regularisation strength chosen by cross-validation, every alpha × fold from one pass.

    Parameters
    ----------
    alphas : array-like of positive floats
        The strengths tried (the path is computed for all of them).
    fit_intercept : bool
    cv : None, "loo", int or a splitter
        None: generalised cross-validation on all rows (one pass); "loo": exact leave-one-out (scikit-learn's
        ``cv=None``; a second pass for the leverages); an int or a splitter (``model_selection.KFold`` ...,
        default shuffled): every fold's training and test moments from one pass.
    scoring : None, "r2", "neg_mean_squared_error", "neg_root_mean_squared_error"
        How folds are scored (default R², as ``Ridge.score``); with ``cv=None`` / ``"loo"`` the (generalised)
        leave-one-out squared error is minimised.
    solver : "auto", "tsqr", "gram"
        How each chunk is reduced (as ``LinearRegression``'s solver).

    Attributes
    ----------
    alpha_, best_score_, coef_, intercept_ (refit on all rows at ``alpha_``: no extra pass), coef_path_
    ``(n_alphas, n_features)``, intercept_path_, cv_results_ (``alphas``, ``mean_test_score``, ``std_test_score``,
    ``split<k>_test_score``, ``rank_test_score``; ``gcv`` / ``loo_mse`` for ``cv=None`` / ``"loo"``),
    singular_values_ (of the centred X), n_features_in_, n_samples_, passes_, solver_.
    """

    _parameter_constraints: ClassVar[dict] = {
        "alphas": ["array-like", Real],
        "fit_intercept": ["boolean"],
        "cv": [None, StrOptions({"loo"}), "cv_object"],
        "scoring": [None, StrOptions(set(_SCORINGS))],
        "solver": [StrOptions({"auto", "tsqr", "gram"})],
    }

    def __init__(self, alphas: Any = (0.1, 1.0, 10.0), *, fit_intercept: bool = True, cv: Any = None,
                 scoring: str | None = None, solver: str = "auto") -> None:
        self.alphas = alphas
        self.fit_intercept = fit_intercept
        self.cv = cv
        self.scoring = scoring
        self.solver = solver

    def _fitted_summary(self) -> list[tuple[str, Any]]:
        return [("alpha_", self.alpha_), ("best score", self.best_score_), ("alphas tried", len(self.coef_path_)),
                ("passes", self.passes_), ("samples", self.n_samples_)]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> RidgeCV:
        """Choose alpha and fit, from one pass (two for ``cv="loo"``)."""
        from .passes import one_pass

        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        if alphas.ndim != 1 or not np.all(alphas > 0):
            raise ValueError(f"alphas must be positive; got {self.alphas!r}")
        dX, dy = check_X_y(X, y)
        w = check_sample_weight(sample_weight, dX)
        plan = None
        if self.cv is not None and not (isinstance(self.cv, str) and self.cv == "loo"):
            from .model_selection._split import check_cv

            plan = check_cv(self.cv).make_plan(int(dX.shape[0]), dX.chunks[0], None)
        if isinstance(self.cv, str) and self.cv == "loo" and w is not None:
            raise ValueError("cv='loo' does not support sample_weight (use cv=None for GCV, or folds)")
        method = self.solver
        patterns = one_pass(pattern_moments, combine_patterns, dX, dy, w, plan=plan, method=method, tol=AUTO_TOL)
        self.passes_ = 1
        full = combine_moments(list(patterns.values()))
        if method == "auto" and full.n_gram and gram_error_bound(full.r.T @ full.r, full.amp, True) > AUTO_TOL:
            patterns = one_pass(pattern_moments, combine_patterns, dX, dy, w, plan=plan, method="tsqr", tol=AUTO_TOL)
            self.passes_ += 1
            full = combine_moments(list(patterns.values()))
        if not full.weight > 0:
            raise ValueError("sample_weight: all weights are zero; at least one must be positive")
        from ._moments import solver_name

        self.solver_ = solver_name(full)
        fit_intercept = bool(self.fit_intercept)
        if not fit_intercept:
            raise ValueError("RidgeCV here centres each chunk; fit_intercept=False is not supported yet")
        self.coef_path_, self.intercept_path_, self.singular_values_ = ridge_path(full, alphas, fit_intercept)
        self.n_features_in_ = int(dX.shape[1])
        self.n_samples_ = int(full.n)
        results: dict[str, Any] = {"alphas": alphas}
        if plan is not None:
            scores = self._fold_scores(patterns, plan, alphas)
            for s, row in enumerate(scores):
                results[f"split{s}_test_score"] = row
            mean = scores.mean(axis=0)
            results["mean_test_score"] = mean
            results["std_test_score"] = scores.std(axis=0)
        elif self.cv is None:
            rss = squared_errors(full, self.coef_path_, self.intercept_path_)
            s2 = self.singular_values_**2
            df = np.sum(s2[None, :] / (s2[None, :] + alphas[:, None]), axis=1) + 1.0
            n = full.weight
            gcv = n * rss / (n - df) ** 2
            results["gcv"] = gcv
            mean = -gcv  # an estimate of the leave-one-out mean squared error
            results["mean_test_score"] = mean
        else:
            loo = self._loo(dX, dy, full, alphas)
            self.passes_ += 1
            results["loo_mse"] = loo
            mean = -loo
            results["mean_test_score"] = mean
        filled = np.where(np.isnan(mean), -np.inf, mean)
        best = int(np.argmax(filled))
        from scipy.stats import rankdata

        results["rank_test_score"] = rankdata(-filled, method="min").astype(np.int32)
        self.cv_results_ = results
        self.alpha_ = float(alphas[best])
        self.best_score_ = float(mean[best])
        self.coef_ = self.coef_path_[best].copy()
        self.intercept_ = float(self.intercept_path_[best])
        return self

    def _fold_scores(self, patterns: dict[bytes, Moments], plan: Any, alphas: np.ndarray) -> np.ndarray:
        scoring = self.scoring or "r2"
        out = np.full((plan.n_splits, len(alphas)), np.nan)
        for s in range(plan.n_splits):
            train, test = _gather(patterns, s, TRAIN), _gather(patterns, s, TEST)
            if train is None or test is None:
                continue
            coef, intercept, _ = ridge_path(train, alphas, True)
            sse = squared_errors(test, coef, intercept)
            if scoring == "r2":
                sst = float(np.sum(_r_of(test)[:, -1] ** 2))
                out[s] = 1.0 - sse / sst if sst > 0 else np.where(sse == 0, 1.0, 0.0)
            elif scoring == "neg_mean_squared_error":
                out[s] = -sse / test.weight
            else:
                out[s] = -np.sqrt(sse / test.weight)
        return out

    def _loo(self, dX: Any, dy: Any, full: Moments, alphas: np.ndarray) -> np.ndarray:
        """Exact leave-one-out mean squared error of every alpha: ``e_i / (1 - h_ii)`` with the leverages of the
        centred design (the intercept unpenalised), in one more pass."""
        from .passes import one_pass

        R = _r_of(full)
        d = R.shape[0] - 1
        _, s, Vt = np.linalg.svd(R[:d, :d])
        sums = one_pass(_loo_block, sum, dX, dy, mean=full.mean, V=Vt.T, s2=s**2, coef=self.coef_path_,
                        intercept=self.intercept_path_, alphas=alphas, n=full.weight)
        return sums / full.weight

    predict = _LinearBase.predict  # X @ coef_ + intercept_, as Ridge's
    score = _LinearBase.score  # R² in one pass, as Ridge's


def _loo_block(X: np.ndarray, y: np.ndarray, *, chunk_index: int, row_start: int, mean: np.ndarray, V: np.ndarray,
               s2: np.ndarray, coef: np.ndarray, intercept: np.ndarray, alphas: np.ndarray, n: float) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    P = (X - mean[:d]) @ V
    H = 1.0 / n + (P * P) @ (1.0 / (s2[:, None] + alphas[None, :]))
    E = np.asarray(y, dtype=np.float64).reshape(-1, 1) - (X @ coef.T + intercept[None, :])
    return np.sum((E / (1.0 - H)) ** 2, axis=0)
