"""Numba kernels of the gradient learners: one optimizer step per row (``learn_one``) or per batch mean
gradient (``learn_many``), the optimizer updates from ``scaleml_dask._optim`` (shared with ``sgd``).

A learner's whole state is one packed float buffer (hyperparameters, counters, weights, optimizer memory;
see ``make_buffer``), so that a ``learn_one`` call passes few arguments through numba's dispatcher. The
Python class re-packs the hyperparameters whenever one changes; until it has, the kernels return ``STALE``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._optim import adagrad_direction, adam_direction, bias_corrections
from ._status import BAD_LABEL, BAD_LENGTH, BAD_TARGET, DIVERGED, OK, STALE, first_nonfinite

# loss codes
LOSS_LOG, LOSS_SQUARED, LOSS_PERCEPTRON = 0, 1, 2
# optimizer codes
OPT_SGD, OPT_ADAGRAD, OPT_ADAM = 0, 1, 2
# layout of the packed buffer: hyperparameters, the stale flag, counters (optimizer steps in all, steps since
# the optimizer memory started -- Adam's t --, rows seen, feature count), then weights (intercept last) and
# the optimizer memory (AdaGrad: squared-gradient sums in M; Adam: moments in M and V), rows of d + 1.
HP_LOSS, HP_OPT, HP_LR, HP_L2, HP_INTERCEPT, HP_BETA1, HP_BETA2, HP_EPS, B_STALE, B_STEPS, B_T, B_SEEN, B_D = range(13)
B_HEAD = 13


def make_buffer(n_features: int) -> np.ndarray:
    """A zero state for ``n_features`` features, flagged stale (its hyperparameters are not packed yet)."""
    buf = np.zeros(B_HEAD + 3 * (n_features + 1))
    buf[B_D] = n_features
    buf[B_STALE] = 1.0
    return buf


@njit(cache=True, inline="always")
def _dloss(loss: int, z: float, y: float) -> float:
    """d loss / d z for one sample, y in {0, 1} for the classifiers."""
    if loss == LOSS_LOG:  # sigmoid(z) - y without overflow: 1 / (1 + e^-z) for z >= 0, e^z / (1 + e^z) below,
        e = math.exp(-abs(z))  # as a select rather than a branch (the sign of z is a coin flip: no prediction)
        return (1.0 if z >= 0.0 else e) / (1.0 + e) - y
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
        direction, g2 = adagrad_direction(gj, buf[w + p], buf[HP_EPS])
        buf[w + p] = g2
        buf[w] -= lr * direction
    else:
        direction, m, v = adam_direction(gj, buf[w + p], buf[w + 2 * p], buf[HP_BETA1], buf[HP_BETA2],
                                         buf[HP_EPS], c1, c2)
        buf[w + p] = m
        buf[w + 2 * p] = v
        buf[w] -= lr * direction


@njit(cache=True, inline="always")
def _count_step(buf):
    """Advance the step counters; returns Adam's bias corrections for this step."""
    buf[B_STEPS] += 1.0
    t = buf[B_T] + 1.0
    buf[B_T] = t
    return bias_corrections(t, buf[HP_BETA1], buf[HP_BETA2])


@njit(cache=True)
def linear_learn_one(buf: np.ndarray, x: np.ndarray, y) -> int:
    """One optimizer step on one row; everything (checks included) in one compiled call. Returns ``OK`` or
    a status code and then leaves the model unchanged."""
    if buf[B_STALE] != 0.0:
        return STALE
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
        j = first_nonfinite(x)
        if j >= 0:
            return j
        return BAD_TARGET if not math.isfinite(yv) else DIVERGED
    g = _dloss(loss, z, yv)
    opt, lr, l2 = int(buf[HP_OPT]), buf[HP_LR], buf[HP_L2]
    c1, c2 = _count_step(buf)
    for j in range(d):
        _step(buf, j, g * x[j] + l2 * buf[B_HEAD + j], opt, lr, c1, c2)
    if buf[HP_INTERCEPT] != 0.0:
        _step(buf, d, g, opt, lr, c1, c2)
    buf[B_SEEN] += 1.0
    return OK


@njit(cache=True, inline="always")
def _first_bad_target(y, loss) -> int:
    """Index of the first target the loss cannot take (a label other than 0/1, a non-finite target), or n."""
    n = y.shape[0]
    for i in range(n):
        yi = float(y[i])
        if (yi != 0.0 and yi != 1.0) if loss != LOSS_SQUARED else not math.isfinite(yi):
            return i
    return n


@njit(cache=True, inline="always")
def _row_status(X, i) -> int:
    """Status of row ``i`` whose margin is not finite: its first non-finite feature, or ``DIVERGED``."""
    j = first_nonfinite(X[i])
    return j if j >= 0 else DIVERGED


@njit(cache=True, inline="always")
def _mean_gradient_step(buf, grad, gsum, n, d):
    """One optimizer step on the batch mean of the summed gradient ``grad`` (intercept: ``gsum``) plus L2."""
    w = buf[B_HEAD:B_HEAD + d]
    grad[d] = gsum
    l2 = buf[HP_L2]
    for j in range(d):
        grad[j] = grad[j] / n + l2 * w[j]
    grad[d] /= n
    opt, lr = int(buf[HP_OPT]), buf[HP_LR]
    c1, c2 = _count_step(buf)
    for j in range(d):
        _step(buf, j, grad[j], opt, lr, c1, c2)
    if buf[HP_INTERCEPT] != 0.0:
        _step(buf, d, grad[d], opt, lr, c1, c2)
    buf[B_SEEN] += n


@njit(cache=True, fastmath={"reassoc", "contract"})
def linear_learn_many(buf: np.ndarray, X: np.ndarray, y) -> tuple[int, int]:
    """One optimizer step on the batch's mean gradient, in a single pass over ``X`` (each row is read once:
    margin, loss derivative and gradient accumulation together, four rows at a time so that the 4 x d
    multiply-adds and the four ``exp`` are independent work). Returns ``(OK, -1)`` or a status code and the
    offending row; the model is unchanged then. The targets are checked first (they are small); the rows are
    checked through their margins, which are finite exactly when the row is (weights finite)."""
    if buf[B_STALE] != 0.0:
        return STALE, -1
    n, d = X.shape
    if d != int(buf[B_D]):
        return BAD_LENGTH, -1
    loss = int(buf[HP_LOSS])
    m = _first_bad_target(y, loss)  # a bad row before the first bad target is reported first
    w = buf[B_HEAD:B_HEAD + d]
    b = buf[B_HEAD + d]
    grad = np.zeros(d + 1)
    gsum = 0.0
    m4 = m - m % 4
    for i in range(0, m4, 4):
        z0 = z1 = z2 = z3 = 0.0
        for j in range(d):
            wj = w[j]
            z0 += wj * X[i, j]
            z1 += wj * X[i + 1, j]
            z2 += wj * X[i + 2, j]
            z3 += wj * X[i + 3, j]
        z0 += b
        z1 += b
        z2 += b
        z3 += b
        if not math.isfinite(z0 + z1 + z2 + z3):  # the first bad row (if any: finite margins may sum to inf)
            for k, z in enumerate((z0, z1, z2, z3)):
                if not math.isfinite(z):
                    return _row_status(X, i + k), i + k
        g0 = _dloss(loss, z0, float(y[i]))
        g1 = _dloss(loss, z1, float(y[i + 1]))
        g2 = _dloss(loss, z2, float(y[i + 2]))
        g3 = _dloss(loss, z3, float(y[i + 3]))
        for j in range(d):
            grad[j] += g0 * X[i, j] + g1 * X[i + 1, j] + g2 * X[i + 2, j] + g3 * X[i + 3, j]
        gsum += g0 + g1 + g2 + g3
    for i in range(m4, m):
        z = b
        for j in range(d):
            z += w[j] * X[i, j]
        if not math.isfinite(z):
            return _row_status(X, i), i
        g = _dloss(loss, z, float(y[i]))
        for j in range(d):
            grad[j] += g * X[i, j]
        gsum += g
    if m < n:
        if loss == LOSS_SQUARED and first_nonfinite(X[m]) >= 0:  # the row's own NaN / inf is named first
            return first_nonfinite(X[m]), m
        return (BAD_TARGET if loss == LOSS_SQUARED else BAD_LABEL), m
    _mean_gradient_step(buf, grad, gsum, n, d)
    return OK, -1


@njit(cache=True)
def linear_learn_many_csr(buf: np.ndarray, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
                          d: int, y) -> tuple[int, int]:
    """``linear_learn_many`` on a CSR batch (``d`` columns): the margins and the mean gradient touch only the
    non-zeros; the step is the dense one (the L2 term and the adaptive rules change every weight)."""
    if buf[B_STALE] != 0.0:
        return STALE, -1
    if d != int(buf[B_D]):
        return BAD_LENGTH, -1
    n = indptr.shape[0] - 1
    loss = int(buf[HP_LOSS])
    m = _first_bad_target(y, loss)
    w = buf[B_HEAD:B_HEAD + d]
    b = buf[B_HEAD + d]
    grad = np.zeros(d + 1)
    gsum = 0.0
    for i in range(m):
        z = b
        for k in range(indptr[i], indptr[i + 1]):
            z += w[indices[k]] * data[k]
        if not math.isfinite(z):
            for k in range(indptr[i], indptr[i + 1]):
                if not math.isfinite(data[k]):
                    return indices[k], i
            return DIVERGED, i
        g = _dloss(loss, z, float(y[i]))
        for k in range(indptr[i], indptr[i + 1]):
            grad[indices[k]] += g * data[k]
        gsum += g
    if m < n:
        return (BAD_TARGET if loss == LOSS_SQUARED else BAD_LABEL), m
    _mean_gradient_step(buf, grad, gsum, n, d)
    return OK, -1
