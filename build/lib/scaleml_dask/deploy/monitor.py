"""Drift on served traffic: this project's ADWIN on the mean of each feature and of the predictions, against
the training statistics stored with the model.

Rows are standardized by the training mean and standard deviation, so training-like traffic has mean 0, and
averaged over blocks of ``block`` rows (standard deviation 1/sqrt(block) on training-like traffic): ADWIN sees
one value per block and feature — the per-feature means — which keeps monitoring at a few microseconds per
request whatever its size. Every detector starts from a reference window of the training distribution
(alternating ±1/sqrt(block): mean 0, the block means' spread) and then sees the traffic, so a shift from
*training*, not only a change within the traffic, is a change of mean that ADWIN detects. After a detection
the detector restarts from the reference, so a persistent shift keeps counting while training-like traffic
stays flat. Rows are buffered and handed to the compiled detectors ``chunk`` rows at a time.

Monitoring never fails what it watches: rows whose standardized values or prediction are not finite (or
beyond ``MAX_SHIFT``) are skipped and counted (``n_skipped``), and an error inside the monitor is logged,
counted (``n_errors``) and answered by restarting the detectors, never raised to the request or the scrape.

>>> import numpy as np
>>> training = {"feature_mean": [0.0, 0.0], "feature_std": [1.0, 1.0],
...             "prediction_mean": 0.0, "prediction_std": 1.0}
>>> m = DriftMonitor(training, chunk=256)
>>> rng = np.random.default_rng(0)
>>> def stream(X):
...     for i in range(0, len(X), 64):  # requests of 64 rows
...         m.observe(X[i:i + 64], X[i:i + 64, 0])
>>> X = rng.standard_normal((4096, 2))
>>> stream(X); m.flush(); m.feature_detections.tolist()
[0, 0]
>>> X[:, 1] += 1.0
>>> stream(X); m.flush(); m.feature_detections.tolist()[0], m.feature_detections.tolist()[1] >= 8
(0, True)
>>> round(float(m.feature_shift[1]), 1)
1.0
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np

log = logging.getLogger("scaleml_dask.serve")

#: Values in each detector's reference window (block means of training-like traffic).
REFERENCE_LENGTH = 256
#: Rows further than this many training standard deviations from the training mean are skipped (and counted),
#: as non-finite ones: the detectors' sums and variances of them would overflow.
MAX_SHIFT = 1e100


def _scale(std: Any, n: int) -> np.ndarray:
    s = np.asarray(std if std is not None else np.ones(n), dtype=np.float64).reshape(-1)
    return np.where(np.isfinite(s) & (s > 0), s, 1.0)


class DriftMonitor:
    """ADWIN on the block means of each feature and of the main prediction, in training standard deviations.

    ``training`` is the registry's ``training`` metadata (``feature_mean``, ``feature_std``,
    ``prediction_mean``, ``prediction_std``); without ``prediction_mean`` only the features are watched.
    ``feature_detections`` / ``prediction_detections`` count detections; ``feature_shift`` /
    ``prediction_shift`` are the mean standardized values over the last rows handed to the detectors.
    """

    def __init__(self, training: dict[str, Any], *, chunk: int = 1024, block: int = 16, delta: float = 0.002,
                 clock: int = 8) -> None:
        self.mean = np.asarray(training["feature_mean"], dtype=np.float64).reshape(-1)
        self.std = _scale(training.get("feature_std"), self.mean.size)
        pm = training.get("prediction_mean")
        self.prediction_mean = None if pm is None else float(pm)
        self.prediction_std = None if pm is None else float(_scale(training.get("prediction_std"), 1)[0])
        self.chunk, self.block, self.delta, self.clock = int(chunk), int(block), float(delta), int(clock)
        d = self.mean.size
        self.feature_detections = np.zeros(d, dtype=np.int64)
        self.prediction_detections = 0
        self.feature_shift = np.zeros(d)
        self.prediction_shift = 0.0
        self.n_observed = 0
        self.n_skipped = 0
        self.n_errors = 0
        from ..online import ADWIN

        self._primed = ADWIN(delta=self.delta, clock=self.clock)  # copied at every (re)start
        self._primed.update_many(np.tile([1.0, -1.0], REFERENCE_LENGTH // 2) / np.sqrt(self.block))
        self.reset()

    def reset(self) -> None:
        """Restart the detectors from the reference and drop the queued rows (the counts are kept)."""
        self._features = [self._fresh() for _ in range(self.mean.size)]
        self._prediction = self._fresh() if self.prediction_mean is not None else None
        self._rows: list[np.ndarray] = []
        self._preds: list[np.ndarray] = []
        self._buffered = 0

    def _fresh(self) -> Any:
        return copy.deepcopy(self._primed)

    def _failed(self) -> None:
        self.n_errors += 1
        if self.n_errors & (self.n_errors - 1) == 0:  # the 1st, 2nd, 4th, 8th... time, with its traceback
            log.exception("drift monitor error #%d; its detectors restart", self.n_errors)
        try:
            self.reset()
        except Exception:  # noqa: BLE001 - nothing is left to restart from; the detectors stay as they are
            log.exception("drift monitor cannot restart")

    def observe(self, X: np.ndarray, prediction: np.ndarray | None = None) -> None:
        """Queue the rows of a request (and its main output, first column); flush every ``chunk`` rows.
        Never raises (see the module docstring)."""
        try:
            self._observe(X, prediction)
        except Exception:  # noqa: BLE001 - monitoring must not fail the request it watches
            self._failed()

    def _observe(self, X: np.ndarray, prediction: np.ndarray | None) -> None:
        watch = self._prediction is not None and prediction is not None and prediction.dtype.kind in "biuf"
        with np.errstate(all="ignore"):  # NaN compares False: skipped with the rest
            keep = (np.abs((X - self.mean) / self.std) <= MAX_SHIFT).all(axis=1)
            if watch:
                p = prediction.reshape(len(X), -1)[:, 0]
                keep &= np.abs((p.astype(np.float64) - self.prediction_mean) / self.prediction_std) <= MAX_SHIFT
        if not keep.all():
            self.n_skipped += int(len(X) - keep.sum())
            X = X[keep]
            if watch:
                p = p[keep]
        if len(X) == 0:
            return
        if watch:
            self._preds.append(p)
        elif self._preds:  # keep rows and predictions aligned
            self._preds.clear()
        self._rows.append(X)
        self._buffered += len(X)
        self.n_observed += len(X)
        if self._buffered >= self.chunk:
            self.flush()

    def _feed(self, detector: Any, values: np.ndarray) -> tuple[Any, bool]:
        if len(detector.update_many(values)):
            return self._fresh(), True
        return detector, False

    def flush(self) -> None:
        """Hand the queued whole blocks of rows to the detectors (a partial block waits for more rows). Never
        raises (see the module docstring)."""
        try:
            self._flush()
        except Exception:  # noqa: BLE001 - monitoring must not fail the scrape or request that flushes it
            self._failed()

    def _flush(self) -> None:
        n = self._buffered // self.block * self.block
        if n == 0:
            return
        X = np.concatenate(self._rows) if len(self._rows) > 1 else self._rows[0]
        Z = (X[:n] - self.mean) / self.std
        means = Z.reshape(-1, self.block, Z.shape[1]).mean(axis=1)
        self.feature_shift = means.mean(axis=0)
        for j in range(means.shape[1]):
            self._features[j], hit = self._feed(self._features[j], np.ascontiguousarray(means[:, j]))
            self.feature_detections[j] += hit
        P = None
        if self._preds and sum(len(p) for p in self._preds) == len(X):
            P = np.concatenate(self._preds) if len(self._preds) > 1 else self._preds[0]
            z = ((P[:n].astype(np.float64) - self.prediction_mean) / self.prediction_std).reshape(-1, self.block)
            pm = z.mean(axis=1)
            self.prediction_shift = float(pm.mean())
            self._prediction, hit = self._feed(self._prediction, pm)
            self.prediction_detections += hit
        self._rows = [X[n:]] if n < len(X) else []
        self._preds = [P[n:]] if P is not None and n < len(P) else []
        self._buffered = len(X) - n
