"""Drift detectors: ADWIN and Page-Hinkley, River's semantics over compiled cores (``_drift_kernels``).

A detector reads one value at a time (``update(v) -> bool``, ``drift_detected``) or an array
(``update_many(values) -> indices of detections``, compiled end to end). Hyperparameters are read at update
time: a ``set_params`` between calls applies from the next value on.
"""

from __future__ import annotations

import math
from math import isfinite
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .._repr import FittedSummaryMixin
from ._drift_kernels import (
    AD_CLOCK,
    AD_DELTA,
    AD_DETECTIONS,
    AD_GRACE,
    AD_HIT,
    AD_MAX_BUCKETS,
    AD_MIN_LEN,
    AD_MODE,
    AD_ROWS,
    AD_TICK,
    AD_TOTAL,
    AD_VAR,
    AD_WIDTH,
    ADWIN_MAX_ROWS,
    N_AD,
    N_PH,
    PH_ALPHA,
    PH_DELTA,
    PH_DETECTIONS,
    PH_HIT,
    PH_MIN_INSTANCES,
    PH_MODE,
    PH_N,
    PH_THRESHOLD,
    adwin_reset,
    adwin_update_many,
    adwin_update_queued,
    ph_reset,
    ph_update,
    ph_update_many,
)
from .base import OnlineEstimator

_MODES = {"both": 0, "up": 1, "down": 2}


class _Detector(FittedSummaryMixin, OnlineEstimator):
    """``update(v) -> bool`` per value, ``update_many(values) -> indices of detections`` compiled, and the
    read-only ``drift_detected`` (was the last value a detection), kept in the state so that the per-value
    path stores no attribute. Until the first value, and after a hyperparameter changed, ``_stale``."""

    _stale = True
    _detections_at: int  # where the state's scalars count the detections

    def _value(self, v: Any) -> float:
        try:
            v = float(v)
        except (TypeError, ValueError, OverflowError):
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

    def _check_many(self, bad: int, values: np.ndarray) -> None:
        if bad >= 0:
            raise ValueError(f"{type(self).__name__}.update_many got a non-finite value {values[bad].item()!r} at "
                             f"index {bad} (values before it were processed)")

    def _scalars(self) -> np.ndarray:
        raise NotImplementedError

    def _fitted_summary(self) -> list[tuple[str, Any]]:
        if not self._started():
            return []
        return [("detections", self.n_detections), ("values since the last change", self._since_change())]

    def _since_change(self) -> int:
        raise NotImplementedError

    @property
    def n_detections(self) -> int:
        """Detections since construction (the detector resets itself after each one)."""
        return int(self._scalars()[self._detections_at]) if self._started() else 0


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

    _parameter_constraints = {
        "delta": [Interval(Real, 0, 1, closed="neither")],
        "clock": [Interval(Integral, 1, None, closed="left")],
        "max_buckets": [Interval(Integral, 1, None, closed="left")],
        "min_window_length": [Interval(Integral, 1, None, closed="left")],
        "grace_period": [Interval(Integral, 0, None, closed="left")],
        "mode": [StrOptions(set(_MODES))],
    }
    _state_attribute = "_state"
    _detections_at = AD_DETECTIONS

    def __init__(self, delta: float = 0.002, clock: int = 32, max_buckets: int = 5,
                 min_window_length: int = 5, grace_period: int = 10, mode: str = "both") -> None:
        self.mode = mode
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period

    def _init_state(self) -> None:
        rows, cols = ADWIN_MAX_ROWS, self.max_buckets + 2
        self._state = (np.zeros((rows, cols)), np.zeros((rows, cols)), np.zeros(rows, dtype=np.int64),
                       np.zeros(N_AD))
        adwin_reset(*self._state)
        self._pending: list[float] = []
        self._queue = np.empty(self.clock)  # the pending values as float64, filled at the tick

    def _pack(self) -> None:
        totals, variances, counts, s = self._state
        grow = self.max_buckets + 2 - totals.shape[1]
        if grow > 0:  # room for the larger rows (a smaller max_buckets fits in the arrays as they are)
            totals, variances = (np.pad(a, ((0, 0), (0, grow))) for a in (totals, variances))
            self._state = (totals, variances, counts, s)
        s[AD_DELTA], s[AD_CLOCK], s[AD_MAX_BUCKETS] = self.delta, self.clock, self.max_buckets
        s[AD_MIN_LEN], s[AD_GRACE], s[AD_MODE] = self.min_window_length, self.grace_period, _MODES[self.mode]
        if len(self._queue) < self.clock:
            self._queue = np.empty(self.clock)
        self._due = int(self.clock - s[AD_TICK])
        self._stale = False

    def _hyperparameter_changed(self, name: str) -> None:
        if self._started():
            if not self._stale:
                self._flush()  # the values queued so far count under the hyperparameters they came with
            self._stale = True
            self._due = 0  # the next update applies the new ones

    def _scalars(self) -> np.ndarray:
        self._flush()
        return self._state[3]

    def _state_layout(self) -> list[tuple[str, Any, type, tuple]]:
        state = self._state if isinstance(self._state, tuple | list) and len(self._state) == 4 else [None] * 4
        hist = (ADWIN_MAX_ROWS, self.max_buckets + 2)
        return [("_state[0] (bucket totals)", state[0], np.float64, hist),
                ("_state[1] (bucket variances)", state[1], np.float64, hist),
                ("_state[2] (bucket counts)", state[2], np.int64, (ADWIN_MAX_ROWS,)),
                ("_state[3] (scalars)", state[3], np.float64, (N_AD,)),
                ("_queue", getattr(self, "_queue", None), np.float64, (None,))]

    def _state_counts(self) -> list[tuple[str, Any, int, int]]:
        """The histogram's shape as the kernels walk it: rows in use, buckets per row (at most max_buckets at
        rest), the window's width their sum (below 2**53, so no row past the last is ever reached), the clock."""
        _, _, counts, s = self._state
        rows = s[AD_ROWS]
        out = [("_state[3][AD_ROWS] (rows in use)", rows, 1, ADWIN_MAX_ROWS),
               ("_state[3][AD_TICK] (values since the tick)", s[AD_TICK], 0, self.clock - 1),
               ("_state[3][AD_DETECTIONS]", s[AD_DETECTIONS], 0, 2**53),
               ("_state[3][AD_HIT]", s[AD_HIT], 0, 1),
               ("_pending (values queued)", len(self._pending) if isinstance(self._pending, list) else None, 0,
                self.clock - 1),
               ("_due", getattr(self, "_due", None), 0, 2**53)]
        if 1 <= rows <= ADWIN_MAX_ROWS and rows == int(rows):
            used = int(rows)
            out += [(f"_state[2][{r}] (buckets of row {r})", int(c), 0, self.max_buckets if r < used else 0)
                    for r, c in enumerate(counts)]
            if used > 1:
                out.append((f"_state[2][{used - 1}] (buckets of the last row)", int(counts[used - 1]), 1,
                            self.max_buckets))
            width = float(np.sum(counts * 2.0 ** np.arange(ADWIN_MAX_ROWS)))
            out.append(("_state[3][AD_WIDTH] (the window's width)", s[AD_WIDTH] if s[AD_WIDTH] == width else None,
                        0, 2**53))
        if not (np.isfinite(s[AD_TOTAL]) and np.isfinite(s[AD_VAR]) and s[AD_VAR] >= 0
                and all(isinstance(v, (int, float, np.number)) and isfinite(v) for v in self._pending)):
            out.append(("_state[3] (window total and variance), _pending", None, 0, 0))
        return out

    def _hyperparameters_untrusted(self) -> None:
        self._stale = True
        self._due = 0  # the next update packs them before anything else

    def update(self, v: float) -> bool:
        """Add one value; True if a change was detected at it.

        Changes are only tested on the clock (every ``clock`` values), so values between two ticks are
        queued in Python and handed to the compiled kernel together at the tick: the detections are exactly
        those of a per-value update, with one compiled call per ``clock`` values. The per-value path is a
        finiteness check (which also refuses what is not a number) and an append.
        """
        try:
            pending = self._pending
        except AttributeError:  # the first value
            self._start()
            pending = self._pending
        try:
            ok = isfinite(v)  # one C call converts and checks: numbers that float() takes, finite
        except (TypeError, OverflowError):
            ok = False
        if not ok:
            self._value(v)  # raises the clear error
        pending.append(v)  # converted to float64 with the others at the tick
        if len(pending) < self._due:
            return False
        if self._stale:
            self._apply_hyperparameters()
        return self._flush()

    @property
    def drift_detected(self) -> bool:
        """True if the last value was a detection (a value still queued before the next tick is none)."""
        return self._started() and not self._pending and bool(self._state[3][AD_HIT])

    def _flush(self) -> bool:
        """Hand the queued values to the kernel (at a clock tick, or before the state is read); returns
        whether the last one was a detection."""
        pending = self._pending
        if not pending:
            return False
        k = len(pending)
        self._queue[:k] = pending  # converts to float64 (the values passed isfinite: they are numbers)
        pending.clear()
        hit, due = adwin_update_queued(*self._state, self._queue, k)
        if due != self._due:  # after a flush between two ticks
            self._due = due
        return hit

    def update_many(self, values: Any) -> np.ndarray:
        """Add values in order; returns the indices (into ``values``) where a change was detected."""
        if not self._started():
            self._start()
        self._flush()
        if self._stale:
            self._apply_hyperparameters()
        values = self._values(values)
        hits, bad = adwin_update_many(*self._state, values)
        self._due = int(self.clock - self._state[3][AD_TICK])
        self._check_many(bad, values)
        return hits

    def _since_change(self) -> int:
        return self.width  # the window restarts empty at a detection (and only shrinks between them)

    @property
    def width(self) -> int:
        """Number of values in the current window."""
        return int(self._scalars()[AD_WIDTH]) if self._started() else 0

    @property
    def estimation(self) -> float:
        """Mean of the current window."""
        return float(self._scalars()[AD_TOTAL] / self.width) if self.width else 0.0


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

    _parameter_constraints = {
        "min_instances": [Interval(Integral, 1, None, closed="left")],
        "delta": [Interval(Real, 0, None, closed="left")],
        "threshold": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, 1, closed="right")],
        "mode": [StrOptions(set(_MODES))],
    }
    _state_attribute = "_s"
    _detections_at = PH_DETECTIONS

    def __init__(self, min_instances: int = 30, delta: float = 0.25, threshold: float = 40.0,
                 alpha: float = 1.0, mode: str = "both") -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode

    def _init_state(self) -> None:
        self._s = np.zeros(N_PH)
        ph_reset(self._s)

    def _pack(self) -> None:
        s = self._s
        s[PH_DELTA], s[PH_THRESHOLD], s[PH_ALPHA] = self.delta, self.threshold, self.alpha
        s[PH_MIN_INSTANCES], s[PH_MODE] = self.min_instances, _MODES[self.mode]
        self._stale = False

    def _scalars(self) -> np.ndarray:
        return self._s

    def _state_layout(self) -> list[tuple[str, Any, type, tuple]]:
        return [("_s (scalars)", self._s, np.float64, (N_PH,))]

    def _state_counts(self) -> list[tuple[str, Any, int, int]]:
        s = self._s
        return [("_s[PH_N] (values since the restart)", s[PH_N], 0, 2**53),
                ("_s[PH_DETECTIONS]", s[PH_DETECTIONS], 0, 2**53), ("_s[PH_HIT]", s[PH_HIT], 0, 1)]

    def _since_change(self) -> int:
        return int(self._s[PH_N])  # the test restarts at a detection

    def _ready(self) -> None:
        if not self._started():
            self._start()
        elif self._stale:
            self._apply_hyperparameters()

    def update(self, v: float) -> bool:
        """Add one value; True if a change was detected at it (a finiteness check and one compiled call of
        two arguments)."""
        if self._stale:
            self._ready()
        try:
            ok = isfinite(v)
        except (TypeError, OverflowError):
            ok = False
        if not ok:
            self._value(v)  # raises the clear error
        return ph_update(self._s, float(v))

    @property
    def drift_detected(self) -> bool:
        """True if the last value was a detection."""
        return hasattr(self, "_s") and bool(self._s[PH_HIT])

    def update_many(self, values: Any) -> np.ndarray:
        """Add values in order; returns the indices (into ``values``) where a change was detected."""
        self._ready()
        values = self._values(values)
        hits, bad = ph_update_many(self._s, values)
        self._check_many(bad, values)
        return hits
