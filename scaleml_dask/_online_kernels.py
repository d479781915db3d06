"""Numba kernels of ``scaleml_dask.online``: per-sample linear updates, RLS, ADWIN and Page-Hinkley.

Every kernel is a pure function on state arrays that the Python classes own, so one kernel serves
``learn_one`` / ``update`` (one value) and the ``*_many`` loops (compiled end to end). State layouts:

* linear learners: one packed float buffer (hyperparameters, counters, weights, optimizer memory; see
  ``make_buffer``), so that a ``learn_one`` call passes few arguments through numba's dispatcher.
* ADWIN: ``totals`` / ``variances`` (rows, max_buckets + 1) — the exponential histogram, row r holding
  buckets of 2**r values, oldest first; ``counts`` (rows,) buckets per row; ``s`` the scalars (``AD_*``).
* Page-Hinkley: ``s`` the scalars (``PH_*``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# loss codes
LOSS_LOG, LOSS_SQUARED, LOSS_PERCEPTRON = 0, 1, 2
# optimizer codes
OPT_SGD, OPT_ADAGRAD, OPT_ADAM = 0, 1, 2
# layout of the packed buffer of a gradient learner: hyperparameters, counters, then weights (intercept
# last) and the optimizer memory (AdaGrad: squared-gradient sums in M; Adam: moments in M and V).
HP_LOSS, HP_OPT, HP_LR, HP_L2, HP_INTERCEPT, HP_BETA1, HP_BETA2, HP_EPS, B_STEPS, B_SEEN, B_D = range(11)
B_HEAD = 11
# status codes of learn_one kernels (>= 0: index of a non-finite feature)
OK, BAD_LENGTH, BAD_LABEL, BAD_TARGET, DIVERGED = -1, -2, -3, -4, -5


def make_buffer(n_features: int) -> np.ndarray:
    return np.zeros(B_HEAD + 3 * (n_features + 1))


@njit(cache=True, inline="always")
def _dloss(loss: int, z: float, y: float) -> float:
    """d loss / d z for one sample, y in {0, 1} for the classifiers."""
    if loss == LOSS_LOG:
        if z >= 0.0:
            return 1.0 / (1.0 + math.exp(-z)) - y
        e = math.exp(z)
        return e / (1.0 + e) - y
    if loss == LOSS_SQUARED:
        return z - y
    s = 2.0 * y - 1.0  # perceptron: hinge at 0 on labels in {-1, +1}
    return -s if s * z <= 0.0 else 0.0


@njit(cache=True, inline="always")
def _step(buf, j, gj, opt, lr, c1, c2):
    """Optimizer update of coordinate ``j`` with gradient ``gj``."""
    p = int(buf[B_D]) + 1
    w = B_HEAD + j
    if opt == OPT_SGD:
        buf[w] -= lr * gj
    elif opt == OPT_ADAGRAD:
        g2 = buf[w + p] + gj * gj
        buf[w + p] = g2
        buf[w] -= lr * gj / (math.sqrt(g2) + buf[HP_EPS])
    else:
        b1, b2 = buf[HP_BETA1], buf[HP_BETA2]
        m = b1 * buf[w + p] + (1.0 - b1) * gj
        v = b2 * buf[w + 2 * p] + (1.0 - b2) * gj * gj
        buf[w + p] = m
        buf[w + 2 * p] = v
        buf[w] -= lr * (m / c1) / (math.sqrt(v / c2) + buf[HP_EPS])


@njit(cache=True, inline="always")
def _bias_corrections(buf):
    t = buf[B_STEPS] + 1.0
    buf[B_STEPS] = t
    return 1.0 - buf[HP_BETA1] ** t, 1.0 - buf[HP_BETA2] ** t


@njit(cache=True)
def apply_step(buf: np.ndarray, grad: np.ndarray) -> None:
    """One optimizer step with the gradient ``grad`` (d + 1,), intercept last."""
    d = int(buf[B_D])
    opt, lr = int(buf[HP_OPT]), buf[HP_LR]
    c1, c2 = _bias_corrections(buf)
    for j in range(d):
        _step(buf, j, grad[j], opt, lr, c1, c2)
    if buf[HP_INTERCEPT] != 0.0:
        _step(buf, d, grad[d], opt, lr, c1, c2)


@njit(cache=True)
def _first_nonfinite(x: np.ndarray) -> int:
    for j in range(x.shape[0]):
        if not math.isfinite(x[j]):
            return j
    return -1


@njit(cache=True)
def linear_learn_one(buf: np.ndarray, x: np.ndarray, y) -> int:
    """One optimizer step on one row; everything (checks included) in one compiled call. Returns ``OK`` or
    a status code (see above) and then leaves the model unchanged."""
    d = int(buf[B_D])
    if x.shape[0] != d:
        return BAD_LENGTH
    yv = float(y)
    loss = int(buf[HP_LOSS])
    if loss != LOSS_SQUARED and yv != 0.0 and yv != 1.0:
        return BAD_LABEL
    z = buf[B_HEAD + d]
    for j in range(d):
        z += buf[B_HEAD + j] * x[j]
    if not math.isfinite(z) or not math.isfinite(yv):
        j = _first_nonfinite(x)
        if j >= 0:
            return j
        return BAD_TARGET if not math.isfinite(yv) else DIVERGED
    g = _dloss(loss, z, yv)
    opt, lr, l2 = int(buf[HP_OPT]), buf[HP_LR], buf[HP_L2]
    c1, c2 = _bias_corrections(buf)
    for j in range(d):
        _step(buf, j, g * x[j] + l2 * buf[B_HEAD + j], opt, lr, c1, c2)
    if buf[HP_INTERCEPT] != 0.0:
        _step(buf, d, g, opt, lr, c1, c2)
    buf[B_SEEN] += 1.0
    return OK


@njit(cache=True, fastmath={"reassoc", "contract"})
def linear_learn_many(buf: np.ndarray, X: np.ndarray, y) -> tuple[int, int]:
    """One optimizer step on the batch's mean gradient, in a single pass over ``X`` (each row is read once:
    margin, loss derivative and gradient accumulation together). Returns ``(OK, -1)`` or a status code
    and the offending row; the model is unchanged then."""
    n, d = X.shape
    loss = int(buf[HP_LOSS])
    w = buf[B_HEAD:B_HEAD + d]
    b = buf[B_HEAD + d]
    grad = np.zeros(d + 1)
    for i in range(n):
        yi = float(y[i])
        if loss != LOSS_SQUARED and yi != 0.0 and yi != 1.0:
            return BAD_LABEL, i
        z = b
        for j in range(d):
            z += w[j] * X[i, j]
        if not math.isfinite(z) or not math.isfinite(yi):
            j = _first_nonfinite(X[i])
            if j >= 0:
                return j, i
            return (BAD_TARGET if not math.isfinite(yi) else DIVERGED), i
        g = _dloss(loss, z, yi)
        for j in range(d):
            grad[j] += g * X[i, j]
        grad[d] += g
    l2 = buf[HP_L2]
    for j in range(d):
        grad[j] = grad[j] / n + l2 * w[j]
    grad[d] /= n
    apply_step(buf, grad)
    buf[B_SEEN] += n
    return OK, -1


# ----------------------------------------------------------------------------------------------------------
# recursive least squares
# ----------------------------------------------------------------------------------------------------------


@njit(cache=True)
def rls_learn_one(w: np.ndarray, P: np.ndarray, x: np.ndarray, y: float, lam: float, intercept: bool) -> int:
    """Exponentially weighted RLS update of ``w`` (p,) and ``P`` (p, p) with one row; the intercept (when
    fitted) is the last coordinate, its feature the constant 1. Returns ``OK`` or a status code."""
    d = x.shape[0]
    p = w.shape[0]
    xa = np.empty(p)
    for j in range(d):
        xa[j] = x[j]
    if intercept:
        xa[d] = 1.0
    e = y
    for j in range(p):
        e -= w[j] * xa[j]
    if not math.isfinite(e):
        j = _first_nonfinite(x)
        if j >= 0:
            return j
        return BAD_TARGET if not math.isfinite(y) else DIVERGED
    Px = P @ xa
    denom = lam
    for j in range(p):
        denom += xa[j] * Px[j]
    for j in range(p):
        w[j] += Px[j] * e / denom
    inv_lam = 1.0 / lam
    for i in range(p):
        ki = Px[i] / denom
        for j in range(i, p):
            v = (P[i, j] - ki * Px[j]) * inv_lam
            P[i, j] = v
            P[j, i] = v
    return OK


# ----------------------------------------------------------------------------------------------------------
# ADWIN (adaptive windowing over an exponential histogram, Bifet & Gavaldà 2007)
# ----------------------------------------------------------------------------------------------------------

AD_WIDTH, AD_TOTAL, AD_VAR, AD_TICK, AD_ROWS, AD_DETECTIONS = range(6)
N_AD = 6
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


@njit(cache=True)
def _adwin_insert(totals, variances, counts, s, value, max_buckets):
    # new bucket of one value in row 0 (newest last)
    c = counts[0]
    totals[0, c] = value
    variances[0, c] = 0.0
    counts[0] = c + 1
    width = s[AD_WIDTH] + 1.0
    if width > 1.0:
        dm = value - s[AD_TOTAL] / (width - 1.0)
        s[AD_VAR] += (width - 1.0) * dm * dm / width
    s[AD_WIDTH] = width
    s[AD_TOTAL] += value
    # merge the two oldest buckets of a row that overflows into one of the next row
    r = 0
    while counts[r] > max_buckets:
        n = float(1 << r)
        t0, t1 = totals[r, 0], totals[r, 1]
        dm = (t0 - t1) / n
        v12 = variances[r, 0] + variances[r, 1] + 0.5 * n * dm * dm
        c = counts[r]
        for k in range(2, c):
            totals[r, k - 2] = totals[r, k]
            variances[r, k - 2] = variances[r, k]
        counts[r] = c - 2
        nxt = r + 1
        if nxt >= int(s[AD_ROWS]):
            s[AD_ROWS] = nxt + 1.0
        cn = counts[nxt]
        totals[nxt, cn] = t0 + t1
        variances[nxt, cn] = v12
        counts[nxt] = cn + 1
        r = nxt


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
def adwin_update(totals, variances, counts, s, value, delta, clock, max_buckets, min_len, grace, mode):
    """Add one value; on the clock, test for a change. ``mode`` 0 signals any change, 1 only increases of
    the mean, 2 only decreases; a change in the other direction just shrinks the window (drops the oldest
    buckets), as ADWIN does. On a detection the window is emptied (River resets its detector after a
    detection too) and the detection counter increases."""
    _adwin_insert(totals, variances, counts, s, value, max_buckets)
    tick = s[AD_TICK] + 1.0
    if tick < clock:
        s[AD_TICK] = tick
        return False
    s[AD_TICK] = 0.0
    if s[AD_WIDTH] <= grace:
        return False
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
def adwin_update_many(totals, variances, counts, s, values, delta, clock, max_buckets, min_len, grace, mode):
    """``adwin_update`` over an array; returns the indices of detections and the first non-finite index
    (-1 if none; processing stops there)."""
    out = np.empty(16, dtype=np.int64)
    n_out = 0
    for i in range(values.shape[0]):
        v = values[i]
        if not math.isfinite(v):
            return out[:n_out], i
        if adwin_update(totals, variances, counts, s, v, delta, clock, max_buckets, min_len, grace, mode):
            out = _append(out, n_out, i)
            n_out += 1
    return out[:n_out], -1


# ----------------------------------------------------------------------------------------------------------
# Page-Hinkley (two-sided cumulative sums of deviations from the running mean)
# ----------------------------------------------------------------------------------------------------------

PH_N, PH_MEAN, PH_UP, PH_DOWN, PH_MIN_UP, PH_MAX_DOWN, PH_DETECTIONS = range(7)
N_PH = 7


@njit(cache=True)
def ph_reset(s: np.ndarray) -> None:
    s[PH_N] = 0.0
    s[PH_MEAN] = 0.0
    s[PH_UP] = 0.0
    s[PH_DOWN] = 0.0
    s[PH_MIN_UP] = math.inf
    s[PH_MAX_DOWN] = -math.inf


@njit(cache=True)
def ph_update(s, value, delta, threshold, alpha, min_instances, mode) -> bool:
    """mode: 0 both, 1 up (increase of the mean), 2 down. Resets itself after a detection."""
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
        s[PH_DETECTIONS] += 1.0
    return hit


@njit(cache=True)
def ph_update_many(s, values, delta, threshold, alpha, min_instances, mode):
    out = np.empty(16, dtype=np.int64)
    n_out = 0
    for i in range(values.shape[0]):
        v = values[i]
        if not math.isfinite(v):
            return out[:n_out], i
        if ph_update(s, v, delta, threshold, alpha, min_instances, mode):
            out = _append(out, n_out, i)
            n_out += 1
    return out[:n_out], -1
