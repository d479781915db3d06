"""Numba kernels of the drift detectors: ADWIN and Page-Hinkley.

Every kernel is a pure function on state arrays that the Python classes own (``drift.py``), so one kernel
serves ``update`` (one value) and ``update_many`` (compiled end to end). State layouts:

* ADWIN: ``totals`` / ``variances`` (rows, columns >= max_buckets + 2) -- the exponential histogram, row r
  holding buckets of 2**r values, oldest first; ``counts`` (rows,) buckets per row; ``s`` the scalars and the
  hyperparameters (``AD_*``).
* Page-Hinkley: ``s`` the scalars and the hyperparameters (``PH_*``).

The hyperparameters live in ``s`` (the Python classes pack them there when one changes), so that a call from
Python passes few arguments: numba's dispatch costs per argument, and ``update`` calls these kernels often.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ----------------------------------------------------------------------------------------------------------
# ADWIN (adaptive windowing over an exponential histogram, Bifet & Gavaldà 2007)
# ----------------------------------------------------------------------------------------------------------

# AD_HIT: 1 if the last value was a detection (``drift_detected``); then the hyperparameters
(AD_WIDTH, AD_TOTAL, AD_VAR, AD_TICK, AD_ROWS, AD_DETECTIONS, AD_HIT,
 AD_DELTA, AD_CLOCK, AD_MAX_BUCKETS, AD_MIN_LEN, AD_GRACE, AD_MODE) = range(13)
N_AD = 13
ADWIN_MAX_ROWS = 64


@njit(cache=True)
def adwin_reset(totals: np.ndarray, variances: np.ndarray, counts: np.ndarray, s: np.ndarray) -> None:
    totals[:] = 0.0
    variances[:] = 0.0
    counts[:] = 0
    s[AD_WIDTH] = 0.0
    s[AD_TOTAL] = 0.0
    s[AD_VAR] = 0.0
    s[AD_TICK] = 0.0
    s[AD_ROWS] = 1.0


@njit(cache=True, inline="always")
def _adwin_insert(totals, variances, counts, value, max_buckets, width, total, var, rows):
    """Add a bucket of one value to row 0 (newest last) and merge the two oldest buckets of each row that
    overflows into one of the next row. The window's width, total, variance and row count travel in
    registers (returned), not in ``s``: between clock ticks nothing else reads them."""
    c = counts[0]
    totals[0, c] = value
    variances[0, c] = 0.0
    c += 1
    counts[0] = c
    width += 1.0
    if width > 1.0:
        dm = value - total / (width - 1.0)
        var += (width - 1.0) * dm * dm / width
    total += value
    r = 0
    while c > max_buckets:
        n = float(1 << r)
        t0, t1 = totals[r, 0], totals[r, 1]
        dm = (t0 - t1) / n
        v12 = variances[r, 0] + variances[r, 1] + 0.5 * n * dm * dm
        for k in range(2, c):
            totals[r, k - 2] = totals[r, k]
            variances[r, k - 2] = variances[r, k]
        counts[r] = c - 2
        r += 1
        if r >= rows:
            rows = r + 1
        c = counts[r]
        totals[r, c] = t0 + t1
        variances[r, c] = v12
        c += 1
        counts[r] = c
    return width, total, var, rows


@njit(cache=True)
def adwin_check(totals, variances, counts, s, delta, min_len) -> int:
    """Scan the cuts between buckets, oldest first, for an older part W0 and a newer part W1 whose means
    differ by more than the ADWIN bound. Returns +1 (W1 higher), -1 (W1 lower) or 0 (no change)."""
    width = s[AD_WIDTH]
    total = s[AD_TOTAL]
    var_window = s[AD_VAR] / width
    delta_prime = math.log(2.0 * math.log(width) / delta)
    n0 = 0.0
    u0 = 0.0
    two_vd = 2.0 * var_window * delta_prime
    third_d = 2.0 / 3.0 * delta_prime
    for r in range(int(s[AD_ROWS]) - 1, -1, -1):
        n2 = float(1 << r)
        for k in range(counts[r]):
            n0 += n2
            u0 += totals[r, k]
            n1 = width - n0
            if n1 < min_len:
                return 0
            if n0 >= min_len:
                # |diff| > sqrt(2 m v δ') + 2/3 δ' m, with m = 1/(n0 - min + 1) + 1/(n1 - min + 1)
                m_recip = 1.0 / (n0 - min_len + 1.0) + 1.0 / (n1 - min_len + 1.0)
                diff = (total - u0) / n1 - u0 / n0
                excess = abs(diff) - third_d * m_recip
                if excess > 0.0 and excess * excess > two_vd * m_recip:
                    return 1 if diff > 0 else -1
    return 0


@njit(cache=True)
def _adwin_drop_oldest(totals, variances, counts, s) -> None:
    r = int(s[AD_ROWS]) - 1
    n = float(1 << r)
    u, v = totals[r, 0], variances[r, 0]
    c = counts[r]
    for k in range(1, c):
        totals[r, k - 1] = totals[r, k]
        variances[r, k - 1] = variances[r, k]
    counts[r] = c - 1
    if c == 1 and r > 0:
        s[AD_ROWS] = float(r)
    width = s[AD_WIDTH] - n
    s[AD_WIDTH] = width
    s[AD_TOTAL] -= u
    dm = u / n - s[AD_TOTAL] / width
    s[AD_VAR] = max(s[AD_VAR] - v - n * width * dm * dm / (n + width), 0.0)


@njit(cache=True)
def _adwin_test(totals, variances, counts, s, delta, min_len, mode) -> bool:
    """The test at a clock tick. ``mode`` 0 signals any change, 1 only increases of the mean, 2 only
    decreases; a change in the other direction just shrinks the window (drops the oldest buckets), as ADWIN
    does. On a detection the window is emptied (River resets its detector after a detection too) and the
    detection counter increases."""
    while True:
        change = adwin_check(totals, variances, counts, s, delta, min_len)
        if change == 0:
            return False
        if mode == 0 or (mode == 1 and change > 0) or (mode == 2 and change < 0):
            adwin_reset(totals, variances, counts, s)
            s[AD_DETECTIONS] += 1.0
            return True
        _adwin_drop_oldest(totals, variances, counts, s)


@njit(cache=True)
def _append(out, n_out, i):  # pragma: no cover - compiled
    """Store index ``i`` at ``out[n_out]``, doubling ``out`` when full; returns the (possibly new) array."""
    if n_out == out.shape[0]:
        bigger = np.empty(2 * n_out, dtype=np.int64)
        bigger[:n_out] = out
        out = bigger
    out[n_out] = i
    return out


@njit(cache=True)
def adwin_update_many(totals, variances, counts, s, values):
    """Add values in order, testing for a change every ``clock`` values once more than ``grace_period``
    have arrived (the hyperparameters packed in ``s``); returns the indices of detections and the first
    non-finite index (-1 if none; processing stops there)."""
    delta, clock, max_buckets = s[AD_DELTA], s[AD_CLOCK], int(s[AD_MAX_BUCKETS])
    min_len, grace, mode = s[AD_MIN_LEN], s[AD_GRACE], int(s[AD_MODE])
    width, total, var, rows, tick = s[AD_WIDTH], s[AD_TOTAL], s[AD_VAR], int(s[AD_ROWS]), s[AD_TICK]
    out = np.empty(16, dtype=np.int64)
    n_out = 0
    bad = -1
    for i in range(values.shape[0]):
        v = values[i]
        if not math.isfinite(v):
            bad = i
            break
        width, total, var, rows = _adwin_insert(totals, variances, counts, v, max_buckets, width, total, var,
                                                rows)
        tick += 1.0
        if tick < clock:
            continue
        tick = 0.0
        if width <= grace:
            continue
        s[AD_WIDTH], s[AD_TOTAL], s[AD_VAR], s[AD_ROWS], s[AD_TICK] = width, total, var, rows, tick
        if _adwin_test(totals, variances, counts, s, delta, min_len, mode):
            out = _append(out, n_out, i)
            n_out += 1
        width, total, var, rows, tick = s[AD_WIDTH], s[AD_TOTAL], s[AD_VAR], int(s[AD_ROWS]), s[AD_TICK]
    s[AD_WIDTH], s[AD_TOTAL], s[AD_VAR], s[AD_ROWS], s[AD_TICK] = width, total, var, rows, tick
    last = (bad if bad >= 0 else values.shape[0]) - 1
    if last >= 0:
        s[AD_HIT] = 1.0 if n_out and out[n_out - 1] == last else 0.0
    return out[:n_out], bad


@njit(cache=True)
def adwin_update_queued(totals, variances, counts, s, queue, k) -> tuple[bool, int]:
    """``adwin_update_many`` of the ``k`` values ``ADWIN.update`` queued (finite: checked one by one as they
    came); returns whether the last one was a detection and how many values away the next tick is."""
    adwin_update_many(totals, variances, counts, s, queue[:k])
    return s[AD_HIT] != 0.0, int(s[AD_CLOCK] - s[AD_TICK])


# ----------------------------------------------------------------------------------------------------------
# Page-Hinkley (two-sided cumulative sums of deviations from the running mean)
# ----------------------------------------------------------------------------------------------------------

# PH_HIT: 1 if the last value was a detection (``drift_detected``); then the detections (``n_detections``)
# and the hyperparameters
(PH_N, PH_MEAN, PH_UP, PH_DOWN, PH_MIN_UP, PH_MAX_DOWN, PH_HIT, PH_DETECTIONS,
 PH_DELTA, PH_THRESHOLD, PH_ALPHA, PH_MIN_INSTANCES, PH_MODE) = range(13)
N_PH = 13


@njit(cache=True)
def ph_reset(s: np.ndarray) -> None:
    s[PH_N] = 0.0
    s[PH_MEAN] = 0.0
    s[PH_UP] = 0.0
    s[PH_DOWN] = 0.0
    s[PH_MIN_UP] = math.inf
    s[PH_MAX_DOWN] = -math.inf


@njit(cache=True, inline="always")
def _ph_step(s, value, delta, threshold, alpha, min_instances, mode) -> bool:
    """mode: 0 both, 1 up (increase of the mean), 2 down. Resets itself after a detection."""
    s[PH_HIT] = 0.0
    n = s[PH_N] + 1.0
    s[PH_N] = n
    s[PH_MEAN] += (value - s[PH_MEAN]) / n
    dev = value - s[PH_MEAN]
    up = alpha * s[PH_UP] + dev - delta
    down = alpha * s[PH_DOWN] + dev + delta
    s[PH_UP] = up
    s[PH_DOWN] = down
    if up < s[PH_MIN_UP]:
        s[PH_MIN_UP] = up
    if down > s[PH_MAX_DOWN]:
        s[PH_MAX_DOWN] = down
    if n < min_instances:
        return False
    hit = ((mode != 2 and up - s[PH_MIN_UP] > threshold)
           or (mode != 1 and s[PH_MAX_DOWN] - down > threshold))
    if hit:
        ph_reset(s)
        s[PH_HIT] = 1.0
        s[PH_DETECTIONS] += 1.0
    return hit


@njit(cache=True)
def ph_update(s: np.ndarray, value: float) -> bool:
    """One value (finite: the caller checked it), with the hyperparameters packed in ``s``."""
    return _ph_step(s, value, s[PH_DELTA], s[PH_THRESHOLD], s[PH_ALPHA], s[PH_MIN_INSTANCES], int(s[PH_MODE]))


@njit(cache=True)
def ph_update_many(s, values):
    """``ph_update`` over an array; returns the indices of detections and the first non-finite index (-1 if
    none; processing stops there)."""
    delta, threshold, alpha = s[PH_DELTA], s[PH_THRESHOLD], s[PH_ALPHA]
    min_instances, mode = s[PH_MIN_INSTANCES], int(s[PH_MODE])
    out = np.empty(16, dtype=np.int64)
    n_out = 0
    for i in range(values.shape[0]):
        v = values[i]
        if not math.isfinite(v):
            return out[:n_out], i
        if _ph_step(s, v, delta, threshold, alpha, min_instances, mode):
            out = _append(out, n_out, i)
            n_out += 1
    return out[:n_out], -1
