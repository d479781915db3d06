"""What the online learners and detectors share.

* Hyperparameters are declared once, in ``_parameter_constraints``, and checked by scikit-learn's own
  ``_validate_params`` when learning starts and again after any of them changes -- never per row. Every
  assignment of one (``__init__``, ``set_params``, ``m.learning_rate = 0.1``) marks the packed copy the hot
  path reads as stale, so the next ``learn_*`` / ``update*`` call validates and re-packs: ``set_params``
  between calls is honoured. (The hot paths store no attributes, so the ``__setattr__`` hook costs them
  nothing; the instance ``__dict__`` is never touched directly, which would slow every attribute access.)
* Learners: feature-count bookkeeping, row / batch / target checks, the kernels' status codes turned into
  errors that name the offending input, and the tags that make ``sklearn.base.is_classifier`` /
  ``is_regressor`` right.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import ClassifierTags, RegressorTags

from .._checks import csr_block
from .._math import sigmoid
from .._repr import FittedSummaryMixin
from ..validation import (
    check_learned,
    check_n_features,
    is_sparse,
    nonfinite_error,
    restored_state_problem,
    sparse_refused,
)
from ._status import BAD_LABEL, BAD_LENGTH, BAD_TARGET

#: Target types a kernel takes as they are (numba types int64 and float64; str is refused by its typing, named by
#: the caller); ``OnlineLearner._compiled_target`` converts the others.
KERNEL_TARGETS = frozenset({int, float, np.int64, np.float64, str})


class OnlineEstimator(BaseEstimator):
    """Base of learners, detectors and ``DriftAdaptive``: scikit-learn's parameter contract for objects that
    learn without ``fit``.

    A subclass declares ``_parameter_constraints``, names the attribute that exists once learning has
    started (``_state_attribute``), creates that state in ``_init_state`` and copies the hyperparameters where
    its hot path reads them in ``_pack`` (which clears ``_stale``).

    >>> import numpy as np
    >>> from scaleml_dask.online import LinearRegression
    >>> m = LinearRegression(learning_rate=1.0); m.learn_one(np.array([1.0]), 1.0)
    >>> m.coef_.tolist(), m.intercept_
    ([1.0], 1.0)
    >>> m.set_params(learning_rate=0.25).learn_one(np.array([1.0]), 0.0)  # step 0.25 * (2 - 0) * [1, 1]
    >>> m.coef_.tolist(), m.intercept_
    ([0.5], 0.5)
    """

    _parameter_constraints: ClassVar[dict] = {}
    _state_attribute: ClassVar[str] = ""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in self._parameter_constraints:
            self._hyperparameter_changed(name)

    def _started(self) -> bool:
        return hasattr(self, self._state_attribute)

    def _hyperparameter_changed(self, name: str) -> None:
        """Hyperparameter ``name`` was assigned: once learning has started, the packed copy is stale."""
        if self._started():
            self._stale = True

    def _start(self, *shape: int) -> None:
        self._validate_params()
        self._init_state(*shape)
        self._pack()

    def _apply_hyperparameters(self) -> None:
        """Validate the hyperparameters (scikit-learn's rules) and pack them where the hot path reads them."""
        self._validate_params()
        self._pack()

    def _init_state(self, *shape: int) -> None:
        raise NotImplementedError

    def _pack(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ state read back from a file

    def _state_layout(self) -> list[tuple[str, Any, type, tuple]]:
        """(name, value, dtype, shape) of each state array as the compiled kernels index it (no bounds checks
        there); None in a shape is any length."""
        return []

    def _state_counts(self) -> list[tuple[str, Any, int, int]]:
        """(name, value, low, high) of each state number the kernels use as a count, size or index."""
        return []

    def _check_restored_state(self) -> str | None:
        """What is wrong with a state loaded from a registry (None if nothing): a state of another layout, or
        with counts out of range, would make the kernels read or write past their arrays, so it is refused.
        Accepted, it is marked stale: the hyperparameters are validated and packed again from the restored
        parameters at the next call (what the file says the kernels' packed copy holds is not trusted)."""
        if not self._started():
            return None
        problem = restored_state_problem(type(self).__name__, self._state_layout())
        problem = problem or restored_state_problem(type(self).__name__, [], self._state_counts())
        if problem is None:
            self._hyperparameters_untrusted()
        return problem

    def _hyperparameters_untrusted(self) -> None:
        self._stale = True


class OnlineLearner(FittedSummaryMixin, OnlineEstimator):
    """A linear online learner: weights with the intercept last (``_weights``), rows counted in ``n_seen_``.

    >>> import numpy as np
    >>> from scaleml_dask.online import RLS
    >>> r = RLS(); r.learn_one(np.array([1.0, 2.0]), 3.0)
    >>> r.n_features_in_, r.n_seen_
    (2, 1)
    >>> r.learn_one(np.array([1.0, 2.0, 3.0]), 3.0)
    Traceback (most recent call last):
    ...
    ValueError: X has 3 features, but RLS is expecting 2 features as input.
    """

    #: what to do when the weights stop being finite (the end of the FloatingPointError)
    _divergence_hint: ClassVar[str] = ""

    def _weights(self) -> np.ndarray:
        """The weights (d + 1,), intercept last: a view into the learner's state."""
        raise NotImplementedError

    @property
    def n_features_in_(self) -> int:
        return len(self._weights()) - 1

    @property
    def coef_(self) -> np.ndarray:
        """Weights (a copy)."""
        return self._weights()[:-1].copy()

    @property
    def intercept_(self) -> float:
        return float(self._weights()[-1])

    def _fitted_summary(self) -> list[tuple[str, Any]]:
        coef = self.coef_
        return [("samples seen", self.n_seen_), ("features", self.n_features_in_), ("intercept", self.intercept_),
                ("max |coef|", float(np.abs(coef).max())), ("‖coef‖₂", float(np.linalg.norm(coef)))]

    # -------------------------------------------------------------------------------------- input checks

    @staticmethod
    def _as_float(a: Any, name: str) -> np.ndarray:
        """``a`` as a C-ordered float64 array (a copy only if it is not one): the one layout the compiled kernels
        are specialised for, so no input compiles them again after the warm-up (``coldstart``)."""
        try:
            return np.asarray(a, dtype=np.float64, order="C")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric: {exc}") from None

    def _check_started(self, n_features: int, learn: bool) -> None:
        if self._started():
            return
        if not learn:
            check_learned(self, self._state_attribute)
        if n_features < 1:
            raise ValueError("rows must have at least one feature")
        self._start(n_features)

    def _check_row(self, x: Any, learn: bool = False) -> np.ndarray:
        """``x`` as a float row of the learned width; the first row to learn sets the width up."""
        if is_sparse(x):
            raise sparse_refused("x")
        if type(x) is not np.ndarray or x.dtype != np.float64:
            x = self._as_float(x, "x")
        if x.ndim != 1:
            raise ValueError(f"x must be a 1-d row (n_features,); got shape {x.shape}")
        self._check_started(x.shape[0], learn)
        check_n_features(self, x.shape[0])
        return x

    def _check_batch(self, X: Any, y: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``X`` (and ``y`` when learning) checked; the first batch to learn sets the width up."""
        if is_sparse(X):
            raise sparse_refused("X")
        X = self._as_float(X, "X")
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-d array (n_samples, n_features); got shape {X.shape}")
        self._check_started(X.shape[1], learn=y is not None)
        check_n_features(self, X.shape[1])
        if y is not None:
            if np.ndim(y) != 1 or len(y) != len(X):
                raise ValueError(f"y must be 1-d with one value per row of X ({len(X)}); got shape "
                                 f"{np.shape(y)}")
            y = self._targets(y, len(X))
        return X, y

    def _in_batch(self, m: int) -> str:
        """Where a batch of ``m`` rows about to be learned sits in the stream, for error messages."""
        return f"in this batch (stream rows {self.n_seen_}-{self.n_seen_ + m - 1})"

    @staticmethod
    def _compiled_target(y: Any) -> Any:
        """``y`` as the kernels take it: a type of ``KERNEL_TARGETS`` as it is (a Python or numpy int or float:
        the two types the warm-up compiles), anything else converted to a float here (True / False, other numpy
        scalars)."""
        if type(y) in KERNEL_TARGETS:
            return y
        try:
            return float(y)
        except (TypeError, ValueError):
            return y  # the kernel's typing refuses it; the caller names it

    def _target_one(self, y: Any) -> float:
        try:
            if type(y) is str:
                raise TypeError
            return float(y)
        except (TypeError, ValueError):
            raise ValueError(f"{type(self).__name__} needs a numeric target; got {y!r}") from None

    def _targets(self, y: Any, m: int) -> np.ndarray:
        """Targets as floats: numeric and finite (regressors), labels 0/1 (classifiers)."""
        y = np.asarray(y)
        name = type(self).__name__
        if self.__sklearn_tags__().estimator_type == "classifier":
            if y.dtype == bool:
                return y.astype(np.float64)
            if y.dtype.kind not in "iuf":
                raise ValueError(f"{name} learns binary labels 0/1 (or False/True); got labels of type {y.dtype}")
            bad = (y != 0) & (y != 1)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"{name} learns binary labels 0/1 (or False/True); got label {y[i].item()!r} "
                                 f"at row {i}")
            return y.astype(np.float64, copy=False)
        if y.dtype.kind not in "iufb":
            raise ValueError(f"{name} needs numeric targets; got y of type {y.dtype}")
        y = y.astype(np.float64, copy=False)
        if not np.isfinite(y).all():
            raise nonfinite_error("y", y, self._in_batch(m))
        return y

    def _raise_status(self, status: int, x: np.ndarray, y: Any) -> None:
        """Raise the error a learn_one kernel's status code stands for."""
        name = type(self).__name__
        if status >= 0:
            raise ValueError(f"x contains {'NaN' if math.isnan(x[status]) else 'inf'} in column {status} "
                             f"(sample {self.n_seen_} of the stream)")
        if status == BAD_LENGTH:
            self._check_row(x)
        if status == BAD_LABEL:
            raise ValueError(f"{name} learns binary labels 0/1 (or False/True); got {y!r}")
        if status == BAD_TARGET:
            raise ValueError(f"y is not finite ({y!r}) at sample {self.n_seen_} of the stream")
        raise FloatingPointError(f"{name} weights are no longer finite; {self._divergence_hint}")

    # --------------------------------------------------------------------------------------- predictions

    def _sparse_batch(self, X: Any, learn: bool = False) -> Any:
        """A sparse batch as a canonical CSR matrix of float64 (int32 indices) of the learned width."""
        X = csr_block(X)
        self._check_started(X.shape[1], learn)
        check_n_features(self, X.shape[1])
        return X

    def _decision_many(self, X: Any) -> np.ndarray:
        X = self._sparse_batch(X) if is_sparse(X) else self._check_batch(X)[0]
        w = self._weights()
        return X @ w[:-1] + w[-1]

    def _decision_one(self, x: Any) -> float:
        if is_sparse(x):
            return float(self._decision_many(x)[0])
        x = self._check_row(x)
        w = self._weights()
        return float(x @ w[:-1]) + float(w[-1])


class BinaryClassifier:
    """Mixin of a linear binary classifier with labels 0/1: its predictions and its scikit-learn tags.

    >>> from sklearn.base import is_classifier
    >>> from scaleml_dask.online import LogisticRegression
    >>> is_classifier(LogisticRegression())
    True
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        tags.target_tags.required = True
        return tags

    def predict_one(self, x: Any) -> int:
        """Label 0 or 1 of one row."""
        return int(self._decision_one(x) > 0.0)

    def predict_many(self, X: Any) -> np.ndarray:
        """Labels (int 0/1) of the rows of ``X``."""
        return (self._decision_many(X) > 0.0).astype(np.int64)

    def predict_proba_one(self, x: Any) -> np.ndarray:
        """``[P(y=0), P(y=1)]`` of one row."""
        p = sigmoid(self._decision_one(x))
        return np.array([1.0 - p, p])

    def predict_proba_many(self, X: Any) -> np.ndarray:
        """Probabilities (n, 2): columns P(y=0), P(y=1)."""
        p = sigmoid(self._decision_many(X))
        return np.column_stack([1.0 - p, p])


class Regressor:
    """Mixin of a linear regressor: its predictions and its scikit-learn tags.

    >>> from sklearn.base import is_regressor
    >>> from scaleml_dask.online import RLS
    >>> is_regressor(RLS())
    True
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        tags.regressor_tags = RegressorTags()
        tags.target_tags.required = True
        return tags

    def predict_one(self, x: Any) -> float:
        """Prediction for one row."""
        return self._decision_one(x)

    def predict_many(self, X: Any) -> np.ndarray:
        """Predictions for the rows of ``X``."""
        return self._decision_many(X)
