"""Gradient learners: online logistic regression, least squares and the perceptron, by SGD, AdaGrad or Adam.

The state is one packed buffer (``_linear_kernels``): ``learn_one`` is a single compiled call that checks
the row and takes the step. ``learn_many(X, y)`` takes **one optimizer step on the mean gradient of the
batch**, as River's ``learn_many`` does, so it differs from a loop of ``learn_one`` (use a larger
``learning_rate`` with large batches: the batch mean gradient has far less noise).
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from numba.core.errors import TypingError
from sklearn.utils._param_validation import Interval, StrOptions

from ..validation import check_learned, is_sparse, nonfinite_error
from ._linear_kernels import (
    B_D,
    B_HEAD,
    B_SEEN,
    B_STALE,
    B_STEPS,
    B_T,
    HP_BETA1,
    HP_BETA2,
    HP_EPS,
    HP_INTERCEPT,
    HP_L2,
    HP_LOSS,
    HP_LR,
    HP_OPT,
    LOSS_LOG,
    LOSS_PERCEPTRON,
    LOSS_SQUARED,
    OPT_ADAGRAD,
    OPT_ADAM,
    OPT_SGD,
    linear_learn_many,
    linear_learn_many_csr,
    linear_learn_one,
    make_buffer,
)
from ._status import BAD_LABEL, BAD_LENGTH, BAD_TARGET, OK, STALE
from .base import KERNEL_TARGETS, BinaryClassifier, OnlineLearner, Regressor

_OPTIMIZERS = {"sgd": OPT_SGD, "adagrad": OPT_ADAGRAD, "adam": OPT_ADAM}
_F8 = np.dtype(np.float64)


class _GradientLinear(OnlineLearner):
    """Linear model trained by SGD / AdaGrad / Adam, one row (``learn_one``) or one batch at a time.

    Every hyperparameter is read at learn time: a change (``set_params`` or assignment) is validated and
    packed into the buffer at the next call. A change of ``optimizer`` starts the new optimizer's memory
    from zero (Adam's bias correction included); ``fit_intercept=False`` holds the intercept where it is.
    """

    _parameter_constraints = {
        "optimizer": [StrOptions(set(_OPTIMIZERS))],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "l2": [Interval(Real, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "beta1": [Interval(Real, 0, 1, closed="left")],
        "beta2": [Interval(Real, 0, 1, closed="left")],
        "eps": [Interval(Real, 0, None, closed="neither")],
    }
    _state_attribute = "_buf"
    _divergence_hint = "lower learning_rate"
    _loss = LOSS_LOG

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

    # ------------------------------------------------------------------------------------- the buffer

    def _init_state(self, n_features: int) -> None:
        self._buf = make_buffer(n_features)

    def _pack(self) -> None:
        buf = self._buf
        opt = _OPTIMIZERS[self.optimizer]
        if opt != buf[HP_OPT]:  # the memory of one optimizer means nothing to another
            self._rows()[1:] = 0.0
            buf[B_T] = 0.0
        buf[HP_LOSS], buf[HP_OPT] = self._loss, opt
        buf[HP_LR], buf[HP_L2], buf[HP_INTERCEPT] = self.learning_rate, self.l2, float(self.fit_intercept)
        buf[HP_BETA1], buf[HP_BETA2], buf[HP_EPS] = self.beta1, self.beta2, self.eps
        buf[B_STALE] = 0.0

    def _hyperparameter_changed(self, name: str) -> None:
        buf = getattr(self, "_buf", None)
        if buf is not None:
            buf[B_STALE] = 1.0  # the kernels answer STALE until _pack has run

    @property
    def _stale(self) -> bool:
        return bool(self._buf[B_STALE])

    def _state_layout(self) -> list[tuple[str, Any, type, tuple]]:
        buf = self._buf
        d = buf[B_D] if isinstance(buf, np.ndarray) and buf.ndim == 1 and len(buf) > B_D else 0
        p = int(d) + 1 if np.isfinite(d) and d == int(d) and 1 <= d < 2**40 else 0
        return [("_buf", buf, np.float64, (B_HEAD + 3 * p,))]

    def _state_counts(self) -> list[tuple[str, Any, int, int]]:
        buf = self._buf
        return [("_buf[B_D] (features)", buf[B_D], 1, 2**40), ("_buf[B_SEEN] (rows seen)", buf[B_SEEN], 0, 2**53),
                ("_buf[B_STEPS]", buf[B_STEPS], 0, 2**53), ("_buf[B_T]", buf[B_T], 0, 2**53)]

    def _hyperparameters_untrusted(self) -> None:
        self._buf[B_STALE] = 1.0  # the kernels answer STALE until _pack has run

    def _rows(self) -> np.ndarray:
        """Weights (row 0, intercept last) and optimizer memory (rows 1-2): a view into the buffer."""
        check_learned(self, "_buf")
        return self._buf[B_HEAD:].reshape(3, -1)

    def _weights(self) -> np.ndarray:
        check_learned(self, "_buf")
        return self._buf[B_HEAD:B_HEAD + int(self._buf[B_D]) + 1]

    # ------------------------------------------------------------------------------------- attributes

    @property
    def state_(self) -> np.ndarray:
        """Weights (row 0, intercept last) and optimizer memory (rows 1-2), (3, d + 1): a copy."""
        return self._rows().copy()

    @property
    def n_seen_(self) -> int:
        """Rows learned so far."""
        check_learned(self, "_buf")
        return int(self._buf[B_SEEN])

    @property
    def n_updates_(self) -> int:
        """Optimizer steps taken (one per ``learn_one`` row, one per ``learn_many`` batch)."""
        check_learned(self, "_buf")
        return int(self._buf[B_STEPS])

    def reset(self) -> None:
        """Forget what was learned (weights and optimizer memory); keep the feature count."""
        self._rows()[:] = 0.0
        self._buf[B_STEPS] = self._buf[B_T] = 0.0

    def forget(self, factor: float) -> None:
        """Re-weight the past: scale AdaGrad's sum of past squared gradients by ``factor`` in (0, 1], so its
        steps grow again as after a restart while the weights are kept. (SGD and Adam steps do not shrink
        with the amount of past data, so there is nothing to re-weight: use ``reset``.)"""
        rows = self._rows()
        if self._stale:
            self._apply_hyperparameters()
        if self._buf[HP_OPT] != OPT_ADAGRAD:
            raise ValueError(f"forget() re-weights AdaGrad's gradient memory; optimizer={self.optimizer!r} "
                             "has none (use reset())")
        rows[1] *= factor

    # --------------------------------------------------------------------------------------- learning

    def learn_one(self, x: Any, y: Any) -> None:
        """One optimizer step on one row ``x`` (1-d NumPy array) with target ``y`` (checks are compiled in)."""
        if is_sparse(x):  # a one-row CSR matrix: one step on it is learn_many of that row
            return self._learn_many_csr(x, np.array([y]))
        if type(x) is not np.ndarray or x.dtype is not _F8:
            x = self._as_float(x, "x")
        if type(y) not in KERNEL_TARGETS:
            y = self._compiled_target(y)
        try:
            status = linear_learn_one(self._buf, x, y)
        except AttributeError:  # first row: set up, then learn it
            x = self._check_row(x, learn=True)
            status = linear_learn_one(self._buf, x, y)
        except TypingError:
            if self._loss != LOSS_SQUARED and x.dtype.kind in "iufb":
                raise ValueError(f"{type(self).__name__} learns binary labels 0/1 (or False/True); got {y!r} "
                                 f"of type {type(y).__name__}") from None
            raise ValueError(f"{type(self).__name__}.learn_one needs a numeric row and target; got x of "
                             f"dtype {x.dtype} and y of type {type(y).__name__}") from None
        if status != OK:
            if status != STALE:
                self._raise_status(status, x, y)
            self._apply_hyperparameters()  # a hyperparameter changed since the last call
            status = linear_learn_one(self._buf, x, y)
            if status != OK:
                self._raise_status(status, x, y)

    def learn_many(self, X: Any, y: Any) -> None:
        """One optimizer step on the mean gradient of the batch (River's ``learn_many`` semantics), computed
        in one compiled pass over ``X`` (a CSR batch: over its non-zeros); the checks ride along and only a
        failure takes the slow path."""
        if is_sparse(X):
            return self._learn_many_csr(X, y)
        X = self._as_float(X, "X")  # C-ordered float64 arrays as they are: no copy
        if X.ndim != 2 or not self._started() or np.ndim(y) != 1:
            X, y = self._check_batch(X, y)  # first batch, or a clear error
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"y must be 1-d with one value per row of X ({len(X)}); got shape {y.shape}")
        if len(X) == 0:
            return
        given = y  # as given, for the error messages
        if y.dtype is not _F8 or not y.flags.c_contiguous:  # one layout for the kernel (labels: a small copy)
            if y.dtype.kind not in "biuf":
                self._targets(y, len(X))  # raises the error naming the bad labels / targets
            y = np.ascontiguousarray(y, dtype=np.float64)
        status, _ = linear_learn_many(self._buf, X, y)
        if status == STALE:
            self._apply_hyperparameters()
            status, _ = linear_learn_many(self._buf, X, y)
        if status == OK:
            return
        if status == BAD_LENGTH:
            self._check_batch(X)  # raises, naming the feature counts
        if status >= 0:
            raise nonfinite_error("X", X, self._in_batch(len(X)))
        if status in (BAD_LABEL, BAD_TARGET):
            self._targets(given, len(X))  # raises, naming the row
        raise FloatingPointError(f"{type(self).__name__} weights are no longer finite; {self._divergence_hint}")


    def _learn_many_csr(self, X: Any, y: Any) -> None:
        X = self._sparse_batch(X, learn=True)
        y = self._targets(y, X.shape[0]) if np.ndim(y) == 1 and len(y) == X.shape[0] else self._check_batch(
            np.empty((X.shape[0], X.shape[1])), y)[1]
        if X.shape[0] == 0:
            return
        args = (X.data, X.indices, X.indptr, X.shape[1], y)
        status, row = linear_learn_many_csr(self._buf, *args)
        if status == STALE:
            self._apply_hyperparameters()
            status, row = linear_learn_many_csr(self._buf, *args)
        if status == OK:
            return
        if status >= 0:
            raise ValueError(f"X contains {'NaN' if np.isnan(X[row, status]) else 'inf'} {self._in_batch(X.shape[0])}, "
                             f"first at row {self.n_seen_ + row}, column {status}")
        raise FloatingPointError(f"{type(self).__name__} weights are no longer finite; {self._divergence_hint}")


class LogisticRegression(BinaryClassifier, _GradientLinear):
    """Online logistic regression (labels 0/1) trained by SGD, AdaGrad or Adam.

    Defaults are River's (``SGD(0.01)``, no regularisation). ``learn_many`` takes one step on the batch's
    mean gradient, so with batches of thousands of rows a ``learning_rate`` near 1 is appropriate.

    >>> import numpy as np
    >>> m = LogisticRegression(learning_rate=0.5)
    >>> m.learn_one(np.array([1.0, 0.0]), 1); m.learn_one(np.array([-1.0, 0.0]), 0)
    >>> m.predict_one(np.array([2.0, 0.0])), m.predict_proba_many(np.array([[2.0, 0.0]])).round(2).tolist()
    (1, [[0.27, 0.73]])
    """

    _loss = LOSS_LOG


class Perceptron(BinaryClassifier, _GradientLinear):
    """Rosenblatt's perceptron (labels 0/1): on a mistake, ``w += learning_rate * (2y - 1) * x``.

    ``predict_proba_many`` is the sigmoid of the margin (as River's), not a calibrated probability.

    >>> import numpy as np
    >>> p = Perceptron()
    >>> for x, y in [([1.0, 1.0], 1), ([-1.0, -1.0], 0), ([2.0, 0.5], 1)]:
    ...     p.learn_one(np.array(x), y)
    >>> p.predict_many(np.array([[3.0, 2.0], [-2.0, -3.0]])).tolist()
    [1, 0]
    """

    _loss = LOSS_PERCEPTRON

    def __init__(self, optimizer: str = "sgd", learning_rate: float = 1.0, l2: float = 0.0,
                 fit_intercept: bool = True, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        super().__init__(optimizer, learning_rate, l2, fit_intercept, beta1, beta2, eps)


class LinearRegression(Regressor, _GradientLinear):
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

    _loss = LOSS_SQUARED
