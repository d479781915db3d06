"""Drift on served traffic: this project's ADWIN on each feature and on the predictions, against the
training statistics stored with the model.

Each value is standardized by the training mean and standard deviation, so training-like traffic has mean 0.
Every detector starts from a reference window of that distribution (alternating +1/-1: mean 0, standard
deviation 1) and then sees the traffic, so a shift from *training* — not only a change within the traffic —
is a change of mean that ADWIN detects. After a detection the detector restarts from the reference, so a
persistent shift keeps counting (about once per ``chunk`` rows) while training-like traffic stays flat.
Rows are buffered and handed to the compiled detectors ``chunk`` rows at a time, off the per-request path.

>>> import numpy as np
>>> training = {"feature_mean": [0.0, 0.0], "feature_std": [1.0, 1.0],
...             "prediction_mean": 0.0, "prediction_std": 1.0}
>>> m = DriftMonitor(training, chunk=200)
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((2000, 2))
>>> m.observe(X, X[:, 0]); m.flush(); m.feature_detections.tolist()
[0, 0]
>>> X[:, 1] += 1.0
>>> m.observe(X, X[:, 0]); m.flush(); m.feature_detections.tolist()[0], m.feature_detections.tolist()[1] > 0
(0, True)
>>> round(float(m.feature_shift[1]), 1)
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

REFERENCE_LENGTH = 256


def _scale(std: Any, n: int) -> np.ndarray:
    s = np.asarray(std if std is not None else np.ones(n), dtype=np.float64).reshape(-1)
    return np.where(np.isfinite(s) & (s > 0), s, 1.0)


class DriftMonitor:
    """ADWIN per feature and on the prediction mean, in training standard deviations.

    ``training`` is the registry's ``training`` metadata (``feature_mean``, ``feature_std``,
    ``prediction_mean``, ``prediction_std``); without ``prediction_mean`` only the features are watched.
    ``feature_detections`` / ``prediction_detections`` count detections; ``feature_shift`` is the mean
    standardized shift of each feature over the last chunk.
    """

    def __init__(self, training: dict[str, Any], *, chunk: int = 256, delta: float = 0.002) -> None:
        self.mean = np.asarray(training["feature_mean"], dtype=np.float64).reshape(-1)
        self.std = _scale(training.get("feature_std"), self.mean.size)
        pm = training.get("prediction_mean")
        self.prediction_mean = None if pm is None else np.asarray(pm, dtype=np.float64).reshape(-1)
        self.prediction_std = (None if pm is None
                               else _scale(training.get("prediction_std"), self.prediction_mean.size))
        self.chunk = int(chunk)
        self.delta = float(delta)
        d = self.mean.size
        self.feature_detections = np.zeros(d, dtype=np.int64)
        self.prediction_detections = 0
        self.feature_shift = np.zeros(d)
        self.prediction_shift = 0.0
        self.n_observed = 0
        self._reference = np.tile([1.0, -1.0], REFERENCE_LENGTH // 2)
        self._features = [self._fresh() for _ in range(d)]
        self._prediction = self._fresh() if pm is not None else None
        self._rows: list[np.ndarray] = []
        self._preds: list[np.ndarray] = []
        self._buffered = 0

    def _fresh(self) -> Any:
        from ..online import ADWIN

        detector = ADWIN(delta=self.delta)
        detector.update_many(self._reference)
        return detector

    def observe(self, X: np.ndarray, prediction: np.ndarray | None = None) -> None:
        """Queue the rows of a request (and its main output); flush every ``chunk`` rows."""
        self._rows.append(X)
        if self._prediction is not None and prediction is not None and prediction.dtype.kind in "biuf":
            self._preds.append(prediction.reshape(len(X), -1))
        self._buffered += len(X)
        if self._buffered >= self.chunk:
            self.flush()

    def _feed(self, detector: Any, values: np.ndarray) -> tuple[Any, bool]:
        if len(detector.update_many(values)):
            return self._fresh(), True
        return detector, False

    def flush(self) -> None:
        """Hand the queued rows to the detectors."""
        if not self._buffered:
            return
        Z = (np.concatenate(self._rows) - self.mean) / self.std
        self.n_observed += len(Z)
        self.feature_shift = Z.mean(axis=0)
        for j in range(Z.shape[1]):
            self._features[j], hit = self._feed(self._features[j], np.ascontiguousarray(Z[:, j]))
            self.feature_detections[j] += hit
        if self._preds:
            P = (np.concatenate(self._preds).astype(np.float64) - self.prediction_mean) / self.prediction_std
            z = P.mean(axis=1)
            self.prediction_shift = float(z.mean())
            self._prediction, hit = self._feed(self._prediction, z)
            self.prediction_detections += hit
        self._rows.clear()
        self._preds.clear()
        self._buffered = 0
