"""Recursive least squares with a forgetting factor: exact online least squares that can track change."""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval

from ..validation import check_learned, nonfinite_error
from ._rls_kernels import rls_learn_one
from ._status import OK
from .base import OnlineLearner, Regressor


class RLS(Regressor, OnlineLearner):
    """Recursive least squares with forgetting factor ``forgetting`` (λ): after t more rows an observation
    weighs λ^t, so with λ < 1 the model tracks changing coefficients (memory ≈ 1 / (1 - λ) rows).

    With λ = 1 it is ordinary least squares on everything seen (up to the tiny ridge ``regularization``
    that starts it: the initial inverse information matrix is ``I / regularization``, at the first row and
    at ``reset()``). ``learn_one`` is a rank-one update in O(d²); ``learn_many`` adds the batch's
    (λ-weighted) information in one block and equals the loop of ``learn_one`` up to rounding.
    Hyperparameters are read at learn time: ``set_params(forgetting=...)`` applies from the next row on;
    ``fit_intercept=False`` holds the intercept (the last coordinate of ``weights_`` and ``P_``) where it is.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 2)); y = X @ [1.0, -2.0] + 0.5
    >>> r = RLS(); r.learn_many(X, y)
    >>> r.coef_.round(6).tolist(), round(r.intercept_, 6)
    ([1.0, -2.0], 0.5)
    """

    _parameter_constraints = {
        "forgetting": [Interval(Real, 0, 1, closed="right")],
        "regularization": [Interval(Real, 0, None, closed="neither")],
        "fit_intercept": ["boolean"],
    }
    _state_attribute = "weights_"
    _divergence_hint = "raise regularization or forgetting"

    def __init__(self, forgetting: float = 1.0, regularization: float = 1e-6,
                 fit_intercept: bool = True) -> None:
        self.forgetting = forgetting
        self.regularization = regularization
        self.fit_intercept = fit_intercept

    def _init_state(self, n_features: int) -> None:
        self.n_seen_ = 0
        self.weights_ = np.zeros(n_features + 1)
        self.P_ = np.eye(n_features + 1) / self.regularization

    def _pack(self) -> None:
        intercept = bool(self.fit_intercept)
        was = self._packed[1] if hasattr(self, "_packed") else intercept
        P, d = self.P_, self.n_features_in_
        if was and not intercept:  # the intercept is now held fixed: condition the rest on it
            P[:d, :d] -= np.outer(P[:d, d], P[:d, d]) / P[d, d]
            P[:d, d] = P[d, :d] = 0.0
        elif intercept and not was:  # it is learned again, from its value with a fresh uncertainty
            P[:, d] = P[d, :] = 0.0
            P[d, d] = 1.0 / self.regularization
        self._packed = (float(self.forgetting), intercept)
        self._stale = False

    def _weights(self) -> np.ndarray:
        check_learned(self, "weights_")
        return self.weights_

    def _state_layout(self) -> list[tuple[str, Any, type, tuple]]:
        w = self.weights_
        p = len(w) if isinstance(w, np.ndarray) and w.ndim == 1 and len(w) >= 2 else 0
        return [("weights_", w, np.float64, (p,)), ("P_", getattr(self, "P_", None), np.float64, (p, p))]

    def _state_counts(self) -> list[tuple[str, Any, int, int]]:
        packed = getattr(self, "_packed", None)
        ok = isinstance(packed, tuple) and len(packed) == 2 and type(packed[1]) is bool \
            and isinstance(packed[0], float) and isinstance(getattr(self, "_stale", None), bool)
        return [("n_seen_", getattr(self, "n_seen_", None), 0, 2**62), ("_packed, _stale", 0 if ok else None, 0, 0)]

    def reset(self) -> None:
        """Forget what was learned; keep the feature count."""
        check_learned(self, "weights_")
        if self._stale:
            self._apply_hyperparameters()
        self.weights_[:] = 0.0
        self.P_[:] = np.eye(len(self.weights_)) / self.regularization

    def forget(self, factor: float) -> None:
        """Re-weight the past: multiply the weight of every observation seen so far by ``factor``."""
        check_learned(self, "weights_")
        self.P_ /= factor

    def learn_one(self, x: Any, y: Any) -> None:
        """Rank-one update with one row ``x`` and target ``y``."""
        x = self._check_row(x, learn=True)
        yv = self._target_one(y)
        if self._stale:
            self._apply_hyperparameters()
        status = rls_learn_one(self.weights_, self.P_, x, yv, *self._packed)
        if status != OK:
            self._raise_status(status, x, yv)
        self.n_seen_ += 1

    def learn_many(self, X: Any, y: Any) -> None:
        """Add the batch's λ-weighted information in one block (equal to the loop of ``learn_one``)."""
        X, y = self._check_batch(X, y)
        m = len(X)
        if m == 0:
            return
        if not np.isfinite(X).all():
            raise nonfinite_error("X", X, self._in_batch(m))
        if self._stale:
            self._apply_hyperparameters()
        lam, intercept = self._packed
        d = self.n_features_in_
        p = d + intercept
        if intercept:
            Xa = np.column_stack([X, np.ones(m)])
        else:
            Xa, y = X, y - self.weights_[d]
        decay = lam ** m
        row_w = lam ** np.arange(m - 1, -1, -1, dtype=np.float64) if lam < 1 else np.ones(m)
        A = np.linalg.inv(self.P_[:p, :p])
        b = decay * (A @ self.weights_[:p]) + Xa.T @ (row_w * y)
        A = decay * A + (Xa * row_w[:, None]).T @ Xa
        A = 0.5 * (A + A.T)
        self.weights_[:p] = np.linalg.solve(A, b)
        P = np.linalg.inv(A)
        self.P_[:p, :p] = 0.5 * (P + P.T)
        self.n_seen_ += m
