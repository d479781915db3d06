"""Prequential (test-then-train) evaluation, and a learner that adapts when a detector sees drift."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from .._repr import FittedSummaryMixin
from ..validation import check_learned
from .base import OnlineEstimator


@dataclass
class PrequentialResult:
    """Test-then-train curve, one point per scored batch.

    ``n_samples[i]``: samples seen when batch i was scored (its end); ``score[i]``: its accuracy
    (classifier) or mean squared error (regressor); ``loss[i]``: its log loss (classifier) or MSE;
    ``drifts``: sample indices where an adaptive learner detected a change.

    >>> import numpy as np
    >>> r = PrequentialResult("accuracy", np.array([100, 300]), np.array([100, 200]), np.array([0.5, 0.8]),
    ...                       np.array([0.7, 0.4]))
    >>> r.mean(), r.mean(100)
    (0.7, 0.8)
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


def prequential(learner: Any, stream: Iterable[tuple[np.ndarray, np.ndarray]], *,
                max_samples: int | None = None) -> PrequentialResult:
    """Prequential (test-then-train) evaluation: each batch is first predicted, then learned.

    The first batch is only learned (nothing to test yet). ``stream`` yields ``(X, y)`` batches, e.g.
    ``iter_batches(ds, 500)``; the batch size sets the curve's resolution. Classifiers
    (``sklearn.base.is_classifier``) are scored by accuracy and log loss, regressors by MSE.

    >>> import numpy as np
    >>> from scaleml_dask.online import LogisticRegression
    >>> X = np.random.default_rng(0).standard_normal((2000, 2)); y = (X[:, 0] > 0).astype(int)
    >>> res = prequential(LogisticRegression(learning_rate=1.0), zip(np.split(X, 20), np.split(y, 20)))
    >>> res.metric, len(res.score), res.mean(1000) > 0.9
    ('accuracy', 19, True)
    """
    clf = is_classifier(learner)
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


class DriftAdaptive(FittedSummaryMixin, OnlineEstimator):
    """A learner watched by a drift detector: the detector reads the learner's prequential errors (0/1
    mistakes of a classifier, absolute residuals of a regressor) and on a detection the learner either
    restarts from scratch (``strategy="reset"``) or keeps its weights but scales the weight of the past by
    ``forget_factor`` (``strategy="reweight"``: RLS and AdaGrad learners), then learns the rows after
    the detection. ``learner`` and ``detector`` are templates, cloned on the first call (``learner_``,
    ``detector_``); assigning another template starts again from it at the next call, and ``strategy`` /
    ``forget_factor`` apply from the next detection on. A classifier or a regressor as its learner is.

    >>> import numpy as np
    >>> from scaleml_dask.online import ADWIN, LogisticRegression
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

    _parameter_constraints = {
        "learner": [HasMethods(["learn_one", "learn_many", "predict_one", "predict_many"])],
        "detector": [HasMethods(["update", "update_many"])],
        "strategy": [StrOptions({"reset", "reweight"})],
        "forget_factor": [Interval(Real, 0, 1, closed="right")],
    }
    _state_attribute = "learner_"

    def __init__(self, learner: Any, detector: Any, strategy: str = "reset",
                 forget_factor: float = 0.01) -> None:
        self.learner = learner
        self.detector = detector
        self.strategy = strategy
        self.forget_factor = forget_factor

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        inner = get_tags(self.learner)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags, tags.regressor_tags = inner.classifier_tags, inner.regressor_tags
        tags.target_tags.required = inner.target_tags.required
        return tags

    def _init_state(self) -> None:
        self.learner_ = clone(self.learner)
        self.detector_ = clone(self.detector)
        self.drifts_: list[int] = []
        self.n_seen_ = 0

    def _fitted_summary(self) -> list[tuple[str, Any]]:
        last = self.drifts_[-1] if self.drifts_ else "none"
        return [("samples seen", self.n_seen_), ("detections", len(self.drifts_)), ("last change at sample", last),
                ("strategy", self.strategy), *self.learner_._fitted_summary()[1:]]

    def _pack(self) -> None:
        self._classifier = is_classifier(self.learner_)
        self._stale = False

    def _hyperparameter_changed(self, name: str) -> None:
        if name in ("learner", "detector") and hasattr(self, "learner_"):
            del self.learner_  # start again from the new template at the next call
        super()._hyperparameter_changed(name)

    def _ready(self) -> None:
        if not self._started():
            self._start()
        elif self._stale:
            self._apply_hyperparameters()

    def _adapt(self) -> None:
        if self.strategy == "reset":
            self.learner_.reset()
        else:
            self.learner_.forget(self.forget_factor)

    def _errors(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        pred = self.learner_.predict_many(X)
        if self._classifier:
            return (pred != np.asarray(y).astype(np.int64)).astype(np.float64)
        return np.abs(pred - np.asarray(y, dtype=np.float64))

    def learn_many(self, X: Any, y: Any) -> None:
        """Test the batch (errors to the detector), adapt on a detection, then learn the rows after it."""
        self._ready()
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
        self._ready()
        if hasattr(self.learner_, "n_features_in_"):
            pred = self.learner_.predict_one(x)
            err = float(pred != int(y)) if self._classifier else abs(pred - float(y))
            if self.detector_.update(err):
                self.drifts_.append(self.n_seen_)
                self._adapt()
        self.learner_.learn_one(x, y)
        self.n_seen_ += 1

    def _fitted(self) -> Any:
        check_learned(self, "learner_")
        return self.learner_

    def predict_one(self, x: Any) -> Any:
        """The learner's prediction for one row."""
        return self._fitted().predict_one(x)

    def predict_many(self, X: Any) -> np.ndarray:
        """The learner's predictions for the rows of ``X``."""
        return self._fitted().predict_many(X)

    def predict_proba_many(self, X: Any) -> np.ndarray:
        """The learner's probabilities (classifiers)."""
        return self._fitted().predict_proba_many(X)
