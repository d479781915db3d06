"""Online learning on never-ending, drifting streams: learners, drift detectors, stream reading, evaluation.

The API follows River (``learn_one`` / ``learn_many`` / ``predict_one`` / ``predict_many`` /
``predict_proba_many``, detectors with ``update``) over NumPy rows instead of dicts, with the per-sample
updates compiled by numba (``_online_kernels``) and the mini-batch updates vectorised with BLAS.

``learn_many(X, y)`` of the gradient learners takes **one optimizer step on the mean gradient of the
batch**, as River's ``learn_many`` does; a loop of ``learn_one`` takes ``len(X)`` steps. So the two differ
(use a larger ``learning_rate`` with large batches: the batch mean gradient has far less noise).
``RLS.learn_many`` is exact: it equals the loop of ``learn_one`` up to rounding.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((4000, 3)); y = (X @ [2.0, -1.0, 0.5] > 0).astype(int)
>>> model = LogisticRegression(learning_rate=1.0)
>>> for Xb, yb in zip(np.split(X, 40), np.split(y, 40)):
...     model.learn_many(Xb, yb)
>>> float((model.predict_many(X) == y).mean()) > 0.97
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba.core.errors import TypingError
from sklearn.base import BaseEstimator, clone

from . import _online_kernels as K
from .validation import NotFittedError
from .validation import check_learned as check_is_fitted

__all__ = [
    "ADWIN",
    "RLS",
    "BatchStream",
    "DriftAdaptive",
    "LinearRegression",
    "LogisticRegression",
    "PageHinkley",
    "Perceptron",
    "PrequentialResult",
    "iter_batches",
    "prequential",
]

_OPTIMIZERS = {"sgd": K.OPT_SGD, "adagrad": K.OPT_ADAGRAD, "adam": K.OPT_ADAM}


# ----------------------------------------------------------------------------------------------------------
# input checks shared by the learners
# ----------------------------------------------------------------------------------------------------------


def _nonfinite_error(name: str, block: np.ndarray, offset: int) -> ValueError:
    bad = np.argwhere(~np.isfinite(block))[0]
    where = f"row {int(bad[0])}" + (f", column {int(bad[1])}" if block.ndim == 2 else "")
    return ValueError(f"{name} contains {'NaN' if np.isnan(block[tuple(bad)]) else 'inf'} at {where} of this "
                      f"batch (sample {offset + int(bad[0])} of the stream)")


def _binary_labels(y: Any, owner: str) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype == bool:
        return y.astype(np.float64)
    if y.dtype.kind not in "iuf":
        raise ValueError(f"{owner} learns binary labels 0/1 (or False/True); got labels of type {y.dtype}")
    bad = (y != 0) & (y != 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{owner} learns binary labels 0/1 (or False/True); got label {y[i].item()!r} at row {i}")
    return y.astype(np.float64, copy=False)


def _float_targets(y: Any, owner: str, offset: int) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind not in "iufb":
        raise ValueError(f"{owner} needs numeric targets; got y of type {y.dtype}")
    y = y.astype(np.float64, copy=False)
    if not np.isfinite(y).all():
        raise _nonfinite_error("y", y, offset)
    return y


class _OnlineModel(BaseEstimator):
    """What all online learners share: feature-count bookkeeping and row / batch checks."""

    is_classifier = False

    def _check_row(self, x: Any) -> np.ndarray:
        if type(x) is not np.ndarray or x.dtype != np.float64:
            x = self._as_float(x, "x")
        if x.shape != self._row_shape:
            raise ValueError(f"x has shape {x.shape}; {type(self).__name__} was trained on rows of "
                             f"{self.n_features_in_} features")
        return x

    def _check_batch(self, X: Any, y: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        X = self._as_float(X, "X")
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-d array (n_samples, n_features); got shape {X.shape}")
        if not hasattr(self, "n_features_in_"):
            if y is None:
                raise NotFittedError(f"This {type(self).__name__} instance has not learned anything yet; "
                                     f"call 'learn_one' or 'learn_many' first.")
            self._init_state(X.shape[1])
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features; {type(self).__name__} was trained on "
                             f"{self.n_features_in_}")
        if y is not None:
            if np.ndim(y) != 1 or len(y) != len(X):
                raise ValueError(f"y must be 1-d with one value per row of X ({len(X)}); got shape "
                                 f"{np.shape(y)}")
            y = self._targets(y)
        return X, y

    def _first_row(self, x: Any) -> np.ndarray:
        if not hasattr(self, "n_features_in_"):
            x = self._as_float(x, "x")
            if x.ndim != 1:
                raise ValueError(f"x must be a 1-d row (n_features,); got shape {x.shape}")
            self._init_state(x.shape[0])
        return self._check_row(x)

    @staticmethod
    def _as_float(a: Any, name: str) -> np.ndarray:
        try:
            return np.asarray(a, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric: {exc}") from None

    def _target_one(self, y: Any) -> float:
        if type(y) is str:
            raise ValueError(f"{type(self).__name__} needs a numeric target; got {y!r}")
        try:
            return float(y)
        except (TypeError, ValueError):
            raise ValueError(f"{type(self).__name__} needs a numeric target; got {y!r}") from None

    def _targets(self, y: Any) -> np.ndarray:
        if self.is_classifier:
            return _binary_labels(y, type(self).__name__)
        return _float_targets(y, type(self).__name__, self.n_seen_)

    def _raise_status(self, status: int, x: np.ndarray, y: Any) -> None:
        name = type(self).__name__
        if status >= 0:
            raise ValueError(f"x contains {'NaN' if math.isnan(x[status]) else 'inf'} in column {status} "
                             f"(sample {self.n_seen_} of the stream)")
        if status == K.BAD_LENGTH:
            raise ValueError(f"x has shape {x.shape}; {name} was trained on rows of {self.n_features_in_} "
                             "features")
        if status == K.BAD_LABEL:
            raise ValueError(f"{name} learns binary labels 0/1 (or False/True); got {y!r}")
        if status == K.BAD_TARGET:
            raise ValueError(f"y is not finite ({y!r}) at sample {self.n_seen_} of the stream")
        raise FloatingPointError(f"{name} weights are no longer finite; lower learning_rate")


# ----------------------------------------------------------------------------------------------------------
# gradient learners
# ----------------------------------------------------------------------------------------------------------


class _GradientLinear(_OnlineModel):
    """Linear model trained by SGD / AdaGrad / Adam, one row (``learn_one``) or one batch at a time."""

    _loss = K.LOSS_LOG

    def __init__(self, optimizer: str = "sgd", learning_rate: float = 0.01, l2: float = 0.0,
                 fit_intercept: bool = True, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.l2 = l2
        self.fit_intercept = fit_intercept
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps

    def _init_state(self, n_features: int) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}; got {self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}")
        if not self.l2 >= 0:
            raise ValueError(f"l2 must be >= 0; got {self.l2}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.eps > 0):
            raise ValueError("need 0 <= beta1, beta2 < 1 and eps > 0")
        if n_features < 1:
            raise ValueError("rows must have at least one feature")
        self._row_shape = (int(n_features),)
        buf = K.make_buffer(n_features)
        buf[K.HP_LOSS], buf[K.HP_OPT] = self._loss, _OPTIMIZERS[self.optimizer]
        buf[K.HP_LR], buf[K.HP_L2], buf[K.HP_INTERCEPT] = self.learning_rate, self.l2, float(self.fit_intercept)
        buf[K.HP_BETA1], buf[K.HP_BETA2], buf[K.HP_EPS] = self.beta1, self.beta2, self.eps
        buf[K.B_D] = n_features
        self._buf = buf
        #: weights (row 0, intercept last) and optimizer memory (rows 1-2): a view into the packed buffer
        self.state_ = buf[K.B_HEAD:].reshape(3, n_features + 1)
        self._coef = self.state_[0, :n_features]

    @property
    def n_features_in_(self) -> int:
        check_is_fitted(self, "_buf")
        return int(self._buf[K.B_D])

    @property
    def n_seen_(self) -> int:
        """Rows learned so far."""
        check_is_fitted(self, "_buf")
        return int(self._buf[K.B_SEEN])

    @property
    def n_updates_(self) -> int:
        """Optimizer steps taken (one per ``learn_one`` row, one per ``learn_many`` batch)."""
        check_is_fitted(self, "_buf")
        return int(self._buf[K.B_STEPS])

    @property
    def coef_(self) -> np.ndarray:
        """Weights (a copy)."""
        check_is_fitted(self, "state_")
        return self._coef.copy()

    @property
    def intercept_(self) -> float:
        check_is_fitted(self, "state_")
        return float(self.state_[0, -1])

    def reset(self) -> None:
        """Forget what was learned (weights and optimizer memory); keep the feature count."""
        check_is_fitted(self, "state_")
        self.state_[:] = 0.0
        self._buf[K.B_STEPS] = 0.0

    def forget(self, factor: float) -> None:
        """Re-weight the past: scale AdaGrad's sum of past squared gradients by ``factor`` in (0, 1], so its
        steps grow again as after a restart while the weights are kept. (SGD and Adam steps do not shrink
        with the amount of past data, so there is nothing to re-weight: use ``reset``.)"""
        check_is_fitted(self, "state_")
        if self.optimizer != "adagrad":
            raise ValueError(f"forget() re-weights AdaGrad's gradient memory; optimizer={self.optimizer!r} "
                             "has none (use reset())")
        self.state_[1] *= factor

    def learn_one(self, x: Any, y: Any) -> None:
        """One optimizer step on one row ``x`` (1-d NumPy array) with target ``y`` (checks are compiled in)."""
        if type(x) is not np.ndarray:
            x = self._as_float(x, "x")
        try:
            status = K.linear_learn_one(self._buf, x, y)
        except AttributeError:  # first row: set up, then learn it
            self._first_row(x)
            status = K.linear_learn_one(self._buf, x, y)
        except TypingError:
            if self.is_classifier and x.dtype.kind in "iufb":
                raise ValueError(f"{type(self).__name__} learns binary labels 0/1 (or False/True); got {y!r} "
                                 f"of type {type(y).__name__}") from None
            raise ValueError(f"{type(self).__name__}.learn_one needs a numeric row and target; got x of "
                             f"dtype {x.dtype} and y of type {type(y).__name__}") from None
        if status != K.OK:
            self._raise_status(status, x, y)

    def learn_many(self, X: Any, y: Any) -> None:
        """One optimizer step on the mean gradient of the batch (River's ``learn_many`` semantics), computed
        in one compiled pass over ``X``; the checks ride along and only a failure takes the slow path."""
        X = self._as_float(X, "X")
        if X.ndim != 2 or not hasattr(self, "_buf") or X.shape[1] != self.n_features_in_ or np.ndim(y) != 1:
            X, y = self._check_batch(X, y)  # first batch, or a clear error
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"y must be 1-d with one value per row of X ({len(X)}); got shape {y.shape}")
        if len(X) == 0:
            return
        try:
            status, row = K.linear_learn_many(self._buf, X, y)
        except TypingError:
            self._targets(y)  # raises the error naming the bad labels / targets
            raise
        if status == K.OK:
            return
        if status >= 0:
            raise _nonfinite_error("X", X, self.n_seen_)
        if status in (K.BAD_LABEL, K.BAD_TARGET):
            self._targets(y)  # raises, naming the row
        raise FloatingPointError(f"{type(self).__name__} weights are no longer finite; lower learning_rate")

    def _decision_many(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "state_")
        X, _ = self._check_batch(X)
        return X @ self._coef + self.state_[0, -1]

    def _decision_one(self, x: Any) -> float:
        check_is_fitted(self, "state_")
        return float(self._check_row(x) @ self._coef) + self.state_[0, -1]


class _BinaryClassifier:
    """Predictions of a linear binary classifier with labels 0/1."""

    is_classifier = True

    def predict_one(self, x: Any) -> int:
        """Label 0 or 1 of one row."""
        return int(self._decision_one(x) > 0.0)

    def predict_many(self, X: Any) -> np.ndarray:
        """Labels (int 0/1) of the rows of ``X``."""
        return (self._decision_many(X) > 0.0).astype(np.int64)

    def predict_proba_one(self, x: Any) -> np.ndarray:
        """``[P(y=0), P(y=1)]`` of one row."""
        p = _sigmoid(np.array([self._decision_one(x)]))[0]
        return np.array([1.0 - p, p])

    def predict_proba_many(self, X: Any) -> np.ndarray:
        """Probabilities (n, 2): columns P(y=0), P(y=1)."""
        p = _sigmoid(self._decision_many(X))
        return np.column_stack([1.0 - p, p])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class LogisticRegression(_BinaryClassifier, _GradientLinear):
    """Online logistic regression (labels 0/1) trained by SGD, AdaGrad or Adam.

    Defaults are River's (``SGD(0.01)``, no regularisation). ``learn_many`` takes one step on the batch's
    mean gradient, so with batches of thousands of rows a ``learning_rate`` near 1 is appropriate.

    >>> import numpy as np
    >>> m = LogisticRegression(learning_rate=0.5)
    >>> m.learn_one(np.array([1.0, 0.0]), 1); m.learn_one(np.array([-1.0, 0.0]), 0)
    >>> m.predict_one(np.array([2.0, 0.0])), m.predict_proba_many(np.array([[2.0, 0.0]])).round(2).tolist()
    (1, [[0.27, 0.73]])
    """

    _loss = K.LOSS_LOG


class Perceptron(_BinaryClassifier, _GradientLinear):
    """Rosenblatt's perceptron (labels 0/1): on a mistake, ``w += learning_rate * (2y - 1) * x``.

    ``predict_proba_many`` is the sigmoid of the margin (as River's), not a calibrated probability.

    >>> import numpy as np
    >>> p = Perceptron()
    >>> for x, y in [([1.0, 1.0], 1), ([-1.0, -1.0], 0), ([2.0, 0.5], 1)]:
    ...     p.learn_one(np.array(x), y)
    >>> p.predict_many(np.array([[3.0, 2.0], [-2.0, -3.0]])).tolist()
    [1, 0]
    """

    _loss = K.LOSS_PERCEPTRON

    def __init__(self, optimizer: str = "sgd", learning_rate: float = 1.0, l2: float = 0.0,
                 fit_intercept: bool = True, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        super().__init__(optimizer, learning_rate, l2, fit_intercept, beta1, beta2, eps)


class LinearRegression(_GradientLinear):
    """Online least squares (loss ``(y - x·w - b)² / 2``) trained by SGD, AdaGrad or Adam.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((20_000, 2)); y = X @ [1.5, -2.0] + 3.0
    >>> m = LinearRegression(optimizer="adam", learning_rate=0.05)
    >>> for Xb, yb in zip(np.split(X, 400), np.split(y, 400)):
    ...     m.learn_many(Xb, yb)
    >>> m.coef_.round(2).tolist(), round(m.intercept_, 2)
    ([1.5, -2.0], 3.0)
    """

    _loss = K.LOSS_SQUARED

    def predict_one(self, x: Any) -> float:
        return self._decision_one(x)

    def predict_many(self, X: Any) -> np.ndarray:
        return self._decision_many(X)


# ----------------------------------------------------------------------------------------------------------
# recursive least squares
# ----------------------------------------------------------------------------------------------------------


class RLS(_OnlineModel):
    """Recursive least squares with forgetting factor ``forgetting`` (λ): after t more rows an observation
    weighs λ^t, so with λ < 1 the model tracks changing coefficients (memory ≈ 1 / (1 - λ) rows).

    With λ = 1 it is ordinary least squares on everything seen (up to the tiny ridge ``regularization``
    that starts it: the initial inverse information matrix is ``I / regularization``). ``learn_one`` is a
    rank-one update in O(d²); ``learn_many`` adds the batch's (λ-weighted) information in one block and
    equals the loop of ``learn_one`` up to rounding.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 2)); y = X @ [1.0, -2.0] + 0.5
    >>> r = RLS(); r.learn_many(X, y)
    >>> r.coef_.round(6).tolist(), round(r.intercept_, 6)
    ([1.0, -2.0], 0.5)
    """

    def __init__(self, forgetting: float = 1.0, regularization: float = 1e-6,
                 fit_intercept: bool = True) -> None:
        self.forgetting = forgetting
        self.regularization = regularization
        self.fit_intercept = fit_intercept

    def _init_state(self, n_features: int) -> None:
        if not 0 < self.forgetting <= 1:
            raise ValueError(f"forgetting must be in (0, 1]; got {self.forgetting}")
        if not self.regularization > 0:
            raise ValueError(f"regularization must be > 0; got {self.regularization}")
        if n_features < 1:
            raise ValueError("rows must have at least one feature")
        self.n_features_in_ = int(n_features)
        self._row_shape = (int(n_features),)
        self.n_seen_ = 0
        p = n_features + int(bool(self.fit_intercept))
        self._lam, self._intercept = float(self.forgetting), bool(self.fit_intercept)
        self.weights_ = np.zeros(p)
        self.P_ = np.eye(p) / self.regularization

    @property
    def coef_(self) -> np.ndarray:
        check_is_fitted(self, "weights_")
        return self.weights_[: self.n_features_in_].copy()

    @property
    def intercept_(self) -> float:
        check_is_fitted(self, "weights_")
        return float(self.weights_[-1]) if self.fit_intercept else 0.0

    def reset(self) -> None:
        """Forget what was learned; keep the feature count."""
        check_is_fitted(self, "weights_")
        self.weights_[:] = 0.0
        self.P_[:] = np.eye(len(self.weights_)) / self.regularization

    def forget(self, factor: float) -> None:
        """Re-weight the past: multiply the weight of every observation seen so far by ``factor``."""
        check_is_fitted(self, "weights_")
        self.P_ /= factor

    def learn_one(self, x: Any, y: Any) -> None:
        x = self._check_row(x) if hasattr(self, "_row_shape") else self._first_row(x)
        yv = self._target_one(y)
        status = K.rls_learn_one(self.weights_, self.P_, x, yv, self._lam, self._intercept)
        if status != K.OK:
            self._raise_status(status, x, yv)
        self.n_seen_ += 1

    def learn_many(self, X: Any, y: Any) -> None:
        X, y = self._check_batch(X, y)
        m = len(X)
        if m == 0:
            return
        if not np.isfinite(X).all():
            raise _nonfinite_error("X", X, self.n_seen_)
        Xa = np.column_stack([X, np.ones(m)]) if self.fit_intercept else X
        lam = float(self.forgetting)
        decay = lam ** m
        row_w = lam ** np.arange(m - 1, -1, -1, dtype=np.float64) if lam < 1 else np.ones(m)
        A = np.linalg.inv(self.P_)
        b = decay * (A @ self.weights_) + Xa.T @ (row_w * y)
        A = decay * A + (Xa * row_w[:, None]).T @ Xa
        A = 0.5 * (A + A.T)
        self.weights_[:] = np.linalg.solve(A, b)
        P = np.linalg.inv(A)
        self.P_[:] = 0.5 * (P + P.T)
        self.n_seen_ += m

    def predict_one(self, x: Any) -> float:
        check_is_fitted(self, "weights_")
        return float(self._check_row(x) @ self.weights_[: self.n_features_in_]) + self.intercept_

    def predict_many(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "weights_")
        X, _ = self._check_batch(X)
        return X @ self.weights_[: self.n_features_in_] + self.intercept_


# ----------------------------------------------------------------------------------------------------------
# drift detectors
# ----------------------------------------------------------------------------------------------------------


_MODES = {"both": 0, "up": 1, "down": 2}


class _Detector(BaseEstimator):
    """``update(v) -> bool`` per value, ``update_many(values) -> indices of detections`` compiled."""

    drift_detected = False

    def _value(self, v: Any) -> float:
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{type(self).__name__}.update needs a number; got {v!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"{type(self).__name__}.update got a non-finite value {v!r}")
        return v

    def _values(self, values: Any) -> np.ndarray:
        try:
            a = np.ascontiguousarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{type(self).__name__}.update_many needs numbers: {exc}") from None
        if a.ndim != 1:
            raise ValueError(f"{type(self).__name__}.update_many needs a 1-d array; got shape {a.shape}")
        return a

    def _finish_many(self, hits: np.ndarray, bad: int, values: np.ndarray) -> np.ndarray:
        if bad >= 0:
            raise ValueError(f"{type(self).__name__}.update_many got a non-finite value {values[bad].item()!r} at "
                             f"index {bad} (values before it were processed)")
        self.drift_detected = bool(len(hits)) and hits[-1] == len(values) - 1
        return hits

    @property
    def n_detections(self) -> int:
        """Detections since construction (the detector resets itself after each one)."""
        return int(self._scalars()[-1]) if self._started() else 0


class ADWIN(_Detector):
    """ADaptive WINdowing (Bifet & Gavaldà 2007), River's defaults and semantics.

    Keeps the stream in an exponential histogram (rows of at most ``max_buckets`` buckets of 2^r values)
    and, every ``clock`` values once more than ``grace_period`` have arrived, tests every split of the
    window into an older and a newer part (each at least ``min_window_length`` long) for a difference of
    means beyond the ADWIN bound at confidence ``delta``. After a detection the window restarts empty
    (River resets its detector on the next update; the result is the same). ``mode="up"`` (not in River)
    signals only increases of the mean — what to watch on an error stream, whose mean falls while a
    learner improves: a decrease then only shrinks the window, as in the original ADWIN.

    >>> import numpy as np
    >>> values = np.r_[np.zeros(1000), np.ones(1000)] + np.random.default_rng(0).normal(0, 0.1, 2000)
    >>> ADWIN().update_many(values).tolist()
    [1023]
    """

    def __init__(self, delta: float = 0.002, clock: int = 32, max_buckets: int = 5,
                 min_window_length: int = 5, grace_period: int = 10, mode: str = "both") -> None:
        self.mode = mode
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period

    def _started(self) -> bool:
        return hasattr(self, "_state")

    def _scalars(self) -> np.ndarray:
        self._flush()
        return self._state[3]

    def _start(self) -> tuple:
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1); got {self.delta}")
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}; got {self.mode!r}")
        if self.clock < 1 or self.max_buckets < 1 or self.min_window_length < 1 or self.grace_period < 0:
            raise ValueError("need clock >= 1, max_buckets >= 1, min_window_length >= 1, grace_period >= 0")
        rows = K.ADWIN_MAX_ROWS
        self._state = (np.zeros((rows, self.max_buckets + 2)), np.zeros((rows, self.max_buckets + 2)),
                       np.zeros(rows, dtype=np.int64), np.zeros(K.N_AD))
        K.adwin_reset(*self._state)
        self._pending: list[float] = []
        self._due = int(self.clock)
        self._args = (float(self.delta), float(self.clock), int(self.max_buckets),
                      float(self.min_window_length), float(self.grace_period), _MODES[self.mode])
        return self._state

    def update(self, v: float) -> bool:
        """Add one value; True if a change was detected at it.

        Changes are only tested on the clock (every ``clock`` values), so values between two ticks are
        queued in Python and handed to the compiled kernel together at the tick: the detections are exactly
        those of a per-value update, without a compiled call per value.
        """
        try:
            pending = self._pending
        except AttributeError:
            self._start()
            pending = self._pending
        try:
            v = float(v)
        except (TypeError, ValueError):
            v = self._value(v)  # raises the clear error
        if v - v != 0.0:  # NaN or inf
            self._value(v)
        pending.append(v)
        if len(pending) < self._due:
            self.drift_detected = False
            return False
        self._flush()
        return self.drift_detected

    def _flush(self) -> None:
        if self._pending:
            values = np.array(self._pending)
            self._pending.clear()
            hits, _ = K.adwin_update_many(*self._state, values, *self._args)
            self.drift_detected = bool(len(hits)) and hits[-1] == len(values) - 1
        self._due = int(self.clock - self._state[3][K.AD_TICK])

    def update_many(self, values: Any) -> np.ndarray:
        """Add values in order; returns the indices (into ``values``) where a change was detected."""
        if not hasattr(self, "_state"):
            self._start()
        self._flush()
        values = self._values(values)
        hits, bad = K.adwin_update_many(*self._state, values, *self._args)
        result = self._finish_many(hits, bad, values)
        self._due = int(self.clock - self._state[3][K.AD_TICK])
        return result

    @property
    def width(self) -> int:
        """Number of values in the current window."""
        return int(self._scalars()[K.AD_WIDTH]) if self._started() else 0

    @property
    def estimation(self) -> float:
        """Mean of the current window."""
        return float(self._scalars()[K.AD_TOTAL] / self.width) if self.width else 0.0



class PageHinkley(_Detector):
    """Page-Hinkley test: two-sided cumulative sums of deviations from the running mean, faded by ``alpha``;
    a change is signalled when a sum rises more than ``threshold`` above its running extreme.

    River's defaults (delta 0.005, threshold 50, fading alpha 1 - 1e-4) raise false alarms within a few
    thousand values of a standardised signal: the faded sums wander with a standard deviation of ~70. The
    defaults here are a CUSUM tuned to a 0.5σ shift of a unit-variance signal (delta 0.25 = half the shift,
    threshold 40, no fading): no false alarm on 10^6 stationary values, ~150 values of delay for a 0.5σ
    shift. Scale ``delta`` and ``threshold`` with the signal's σ. With River's parameters it makes River's
    detections.

    >>> import numpy as np
    >>> values = np.r_[np.zeros(1000), np.ones(1000)] + np.random.default_rng(0).normal(0, 1, 2000)
    >>> hits = PageHinkley().update_many(values); len(hits), 1000 <= int(hits[0]) < 1200
    (1, True)
    """

    def __init__(self, min_instances: int = 30, delta: float = 0.25, threshold: float = 40.0,
                 alpha: float = 1.0, mode: str = "both") -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode

    def _started(self) -> bool:
        return hasattr(self, "_s")

    def _scalars(self) -> np.ndarray:
        return self._s

    def _start(self) -> np.ndarray:
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}; got {self.mode!r}")
        if not (self.delta >= 0 and self.threshold > 0 and 0 < self.alpha <= 1 and self.min_instances >= 1):
            raise ValueError("need delta >= 0, threshold > 0, 0 < alpha <= 1 and min_instances >= 1")
        self._s = np.zeros(K.N_PH)
        K.ph_reset(self._s)
        self._args = (float(self.delta), float(self.threshold), float(self.alpha), float(self.min_instances),
                      _MODES[self.mode])
        return self._s

    def update(self, v: float) -> bool:
        """Add one value; True if a change was detected at it."""
        s = self._s if hasattr(self, "_s") else self._start()
        self.drift_detected = K.ph_update(s, self._value(v), *self._args)
        return self.drift_detected

    def update_many(self, values: Any) -> np.ndarray:
        """Add values in order; returns the indices (into ``values``) where a change was detected."""
        s = self._s if hasattr(self, "_s") else self._start()
        values = self._values(values)
        hits, bad = K.ph_update_many(s, values, *self._args)
        return self._finish_many(hits, bad, values)


# ----------------------------------------------------------------------------------------------------------
# streams
# ----------------------------------------------------------------------------------------------------------


class BatchStream:
    """Iterate a dataset as ``(X, y)`` NumPy batches of ``batch_size`` rows, reading one chunk at a time.

    Made by ``iter_batches``. While iterating it holds the chunk being cut into batches, the rows left over
    from the previous chunk (< ``batch_size``) and, with ``prefetch``, the next chunk being read in a
    background thread: ``bytes_held`` / ``max_bytes_held`` account for exactly that, ``chunks_read`` counts
    reads. ``y`` is None when the dataset has no target.
    """

    def __init__(self, X: Any, y: Any, batch_size: int, prefetch: bool, scheduler: str | None) -> None:
        self.X, self.y = X, y
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.scheduler = scheduler
        self.n_samples = int(X.shape[0])
        self.chunks_read = 0
        self.bytes_held = 0
        self.max_bytes_held = 0
        row_bytes = X.dtype.itemsize * X.shape[1] + (y.dtype.itemsize if y is not None else 0)
        self.chunk_bytes = [int(r) * row_bytes for r in X.chunks[0]]

    def __len__(self) -> int:
        return -(-self.n_samples // self.batch_size)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        import dask

        parts = (self.X.blocks[i],) if self.y is None else (self.X.blocks[i], self.y.blocks[i])
        out = dask.compute(*parts, scheduler=self.scheduler)
        return out[0], (out[1] if self.y is not None else None)

    def _hold(self, nbytes: int) -> None:
        self.bytes_held = nbytes
        self.max_bytes_held = max(self.max_bytes_held, nbytes)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        n_chunks = len(self.chunk_bytes)
        bs = self.batch_size
        rest_X: np.ndarray | None = None
        rest_y: np.ndarray | None = None
        with ThreadPoolExecutor(1) if self.prefetch else _NoPool() as pool:
            pending = pool.submit(self._read, 0)
            for i in range(n_chunks):
                Xc, yc = pending.result()
                self.chunks_read += 1
                ahead = 0
                if i + 1 < n_chunks:
                    pending = pool.submit(self._read, i + 1)
                    ahead = self.chunk_bytes[i + 1] if self.prefetch else 0
                if rest_X is not None:
                    Xc = np.concatenate([rest_X, Xc])
                    yc = None if yc is None else np.concatenate([rest_y, yc])
                self._hold(Xc.nbytes + (yc.nbytes if yc is not None else 0) + ahead)
                stop = len(Xc) - len(Xc) % bs if i + 1 < n_chunks else len(Xc)
                for s in range(0, stop, bs):
                    yield Xc[s:s + bs], (None if yc is None else yc[s:s + bs])
                rest_X = Xc[stop:] if stop < len(Xc) else None
                rest_y = None if (yc is None or rest_X is None) else yc[stop:]
                del Xc, yc
        self._hold(0)


class _NoPool:
    """Synchronous stand-in for a one-thread pool (``prefetch=False``): submit runs the call lazily."""

    def __enter__(self) -> _NoPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def submit(self, fn: Any, *args: Any) -> _Deferred:
        return _Deferred(fn, args)


@dataclass
class _Deferred:
    fn: Any
    args: tuple

    def result(self) -> Any:
        return self.fn(*self.args)


def iter_batches(ds: Any, batch_size: int = 1000, *, prefetch: bool = True,
                 scheduler: str | None = "synchronous") -> BatchStream:
    """Stream a dataset as NumPy ``(X, y)`` batches in bounded memory, one stored chunk at a time.

    ``ds`` is an ``xarray.Dataset`` from ``sm.open_dataset`` (``X`` and optional ``y`` chunked along
    ``sample``), a catalog name or path, or a tuple ``(X, y)`` of NumPy / dask arrays. Chunks are read by
    ``scheduler`` ("synchronous": in this process, straight from the store; None: dask's default, e.g. the
    cluster), the next one in a background thread while the current one is consumed (``prefetch``).

    >>> import numpy as np
    >>> [(Xb.shape, yb.tolist()) for Xb, yb in iter_batches((np.ones((5, 2)), np.arange(5)), 2)]
    [((2, 2), [0, 1]), ((2, 2), [2, 3]), ((1, 2), [4])]
    """
    from .validation import as_dask_array, check_X_y

    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if isinstance(ds, tuple):
        X, y = ds
        X, y = (check_X_y(X, y) if y is not None else (as_dask_array(X, "X", ndim=2), None))
    else:
        if not hasattr(ds, "data_vars"):
            from .io.catalog import open_dataset

            ds = open_dataset(ds)
        X, y = check_X_y(ds, None) if "y" in ds else (as_dask_array(ds, "X", ndim=2), None)
    return BatchStream(X, y, int(batch_size), prefetch, scheduler)


# ----------------------------------------------------------------------------------------------------------
# prequential evaluation and drift adaptation
# ----------------------------------------------------------------------------------------------------------


@dataclass
class PrequentialResult:
    """Test-then-train curve, one point per scored batch.

    ``n_samples[i]``: samples seen when batch i was scored (its end); ``score[i]``: its accuracy
    (classifier) or mean squared error (regressor); ``loss[i]``: its log loss (classifier) or MSE;
    ``drifts``: sample indices where an adaptive learner detected a change.
    """

    metric: str
    n_samples: np.ndarray
    batch_size: np.ndarray
    score: np.ndarray
    loss: np.ndarray
    drifts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def mean(self, start: int = 0, stop: int | None = None) -> float:
        """Sample-weighted mean score over the batches that end in (start, stop]."""
        sel = (self.n_samples > start) & (self.n_samples <= (stop if stop is not None else np.inf))
        return float(np.average(self.score[sel], weights=self.batch_size[sel])) if sel.any() else math.nan


def _is_classifier(learner: Any) -> bool:
    return bool(getattr(learner, "is_classifier", False))


def prequential(learner: Any, stream: Iterable[tuple[np.ndarray, np.ndarray]], *,
                max_samples: int | None = None) -> PrequentialResult:
    """Prequential (test-then-train) evaluation: each batch is first predicted, then learned.

    The first batch is only learned (nothing to test yet). ``stream`` yields ``(X, y)`` batches, e.g.
    ``iter_batches(ds, 500)``; the batch size sets the curve's resolution.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((2000, 2)); y = (X[:, 0] > 0).astype(int)
    >>> res = prequential(LogisticRegression(learning_rate=1.0), zip(np.split(X, 20), np.split(y, 20)))
    >>> res.metric, len(res.score), res.mean(1000) > 0.9
    ('accuracy', 19, True)
    """
    clf = _is_classifier(learner)
    n_seen, ns, sizes, scores, losses = 0, [], [], [], []
    fitted = False
    for Xb, yb in stream:
        if max_samples is not None and n_seen >= max_samples:
            break
        if yb is None:
            raise ValueError("prequential needs targets: the stream yields batches without y")
        yb = np.asarray(yb)
        if fitted and len(Xb):
            if clf:
                proba = np.clip(learner.predict_proba_many(Xb)[:, 1], 1e-15, 1 - 1e-15)
                yt = yb.astype(np.float64)
                scores.append(float(((proba > 0.5) == (yt == 1)).mean()))
                losses.append(float(-np.mean(yt * np.log(proba) + (1 - yt) * np.log1p(-proba))))
            else:
                mse = float(np.mean((learner.predict_many(Xb) - yb) ** 2))
                scores.append(mse)
                losses.append(mse)
            ns.append(n_seen + len(Xb))
            sizes.append(len(Xb))
        learner.learn_many(Xb, yb)
        fitted = True
        n_seen += len(Xb)
    return PrequentialResult(
        metric="accuracy" if clf else "mse", n_samples=np.asarray(ns, dtype=np.int64),
        batch_size=np.asarray(sizes, dtype=np.int64), score=np.asarray(scores), loss=np.asarray(losses),
        drifts=np.asarray(getattr(learner, "drifts_", []), dtype=np.int64))


class DriftAdaptive(BaseEstimator):
    """A learner watched by a drift detector: the detector reads the learner's prequential errors (0/1
    mistakes of a classifier, absolute residuals of a regressor) and on a detection the learner either
    restarts from scratch (``strategy="reset"``) or keeps its weights but scales the weight of the past by
    ``forget_factor`` (``strategy="reweight"``: RLS and AdaGrad learners), then learns the rows after
    the detection. ``learner`` and ``detector`` are cloned on the first call (``learner_``, ``detector_``).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((20_000, 2))
    >>> y = np.where(np.arange(20_000) < 10_000, X[:, 0] > 0, X[:, 0] < 0).astype(int)
    >>> m = DriftAdaptive(LogisticRegression(optimizer="adagrad", learning_rate=0.5), ADWIN(mode="up"))
    >>> for Xb, yb in zip(np.split(X, 200), np.split(y, 200)):
    ...     m.learn_many(Xb, yb)
    >>> [10_000 <= d < 10_300 for d in m.drifts_]
    [True]
    >>> float((m.predict_many(X[-1000:]) == y[-1000:]).mean()) > 0.95
    True
    """

    def __init__(self, learner: Any, detector: Any, strategy: str = "reset",
                 forget_factor: float = 0.01) -> None:
        self.learner = learner
        self.detector = detector
        self.strategy = strategy
        self.forget_factor = forget_factor

    @property
    def is_classifier(self) -> bool:
        return _is_classifier(self.learner)

    def _start(self) -> None:
        if self.strategy not in ("reset", "reweight"):
            raise ValueError(f"strategy must be 'reset' or 'reweight'; got {self.strategy!r}")
        if not 0 < self.forget_factor <= 1:
            raise ValueError(f"forget_factor must be in (0, 1]; got {self.forget_factor}")
        self.learner_ = clone(self.learner)
        self.detector_ = clone(self.detector)
        self.drifts_: list[int] = []
        self.n_seen_ = 0

    def _adapt(self) -> None:
        if self.strategy == "reset":
            self.learner_.reset()
        else:
            self.learner_.forget(self.forget_factor)

    def _errors(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        pred = self.learner_.predict_many(X)
        if self.is_classifier:
            return (pred != np.asarray(y).astype(np.int64)).astype(np.float64)
        return np.abs(pred - np.asarray(y, dtype=np.float64))

    def learn_many(self, X: Any, y: Any) -> None:
        """Test the batch (errors to the detector), adapt on a detection, then learn the rows after it."""
        if not hasattr(self, "learner_"):
            self._start()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if hasattr(self.learner_, "n_features_in_"):
            hits = self.detector_.update_many(self._errors(X, y))
            if len(hits):
                self.drifts_.extend(int(self.n_seen_ + h) for h in hits)
                self._adapt()
                k = int(hits[-1]) + 1
                self.n_seen_ += k
                X, y = X[k:], y[k:]
        if len(X):
            self.learner_.learn_many(X, y)
        self.n_seen_ += len(X)

    def learn_one(self, x: Any, y: Any) -> None:
        """Test one row (error to the detector), adapt on a detection, then learn it."""
        if not hasattr(self, "learner_"):
            self._start()
        if hasattr(self.learner_, "n_features_in_"):
            pred = self.learner_.predict_one(x)
            err = float(pred != int(y)) if self.is_classifier else abs(pred - float(y))
            if self.detector_.update(err):
                self.drifts_.append(self.n_seen_)
                self._adapt()
        self.learner_.learn_one(x, y)
        self.n_seen_ += 1

    def _fitted(self) -> Any:
        if not hasattr(self, "learner_"):
            raise NotFittedError("This DriftAdaptive instance has not learned anything yet")
        return self.learner_

    def predict_one(self, x: Any) -> Any:
        return self._fitted().predict_one(x)

    def predict_many(self, X: Any) -> np.ndarray:
        return self._fitted().predict_many(X)

    def predict_proba_many(self, X: Any) -> np.ndarray:
        return self._fitted().predict_proba_many(X)
