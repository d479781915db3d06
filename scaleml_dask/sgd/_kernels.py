"""Kernels of mini-batch SGD on numpy blocks: block layout and mini-batch plan, gradients, penalties,
step-size rules (compiled with numba; AdaGrad and Adam are the shared updates of ``scaleml_dask._optim``),
and compression of what workers send.

Parameters are one matrix ``W`` of shape ``(n_features + 1, n_outputs)``: the coefficients, then the
intercept row. Targets ``T`` are ``(n, n_outputs)``: the value for squared loss, 0/1 indicators (one
column per class, one-vs-rest; a single column for two classes) for logistic and hinge loss.
Optimizer state is a dict of numpy arrays only, so that it can be checkpointed as it is.

A block of ``n`` rows holds out one seeded contiguous range of rows (:func:`holdout_range`); the other
``n_train`` rows, read as a ring that starts just after it, are the training rows. An epoch cuts the ring,
rotated by a seeded offset, into contiguous mini-batches of ``batch_size`` rows and visits them in a
seeded order (:func:`epoch_plan`): every mini-batch is a sequential read, and the batches differ from
epoch to epoch. Rows inside a block are assumed to be exchangeable (not sorted by target).

>>> X = np.array([[1.0], [2.0]]); T = np.array([[1.0], [2.0]])
>>> G, rows = batch_gradient(np.zeros((2, 1)), X, T, start=0, n_train=2, seed=0, block=0, batch_size=2,
...                          step=0, loss="squared", fit_intercept=True)
>>> G.ravel().tolist(), rows  # mean of (x * (0 - t), 0 - t)
([-2.5, -1.5], 2)

The log loss's sigmoid takes ``exp`` by a polynomial that vectorises, within an ulp of libm's:

>>> z = np.array([-700.0, -2.0, 0.0, 0.5, 3.0])
>>> bool(np.allclose(exp_nonpositive(-np.abs(z)), np.exp(-np.abs(z)), rtol=1e-15, atol=0))
True
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .._optim import adagrad_direction, adam_direction, bias_corrections

PENALTIES = ("l2", "l1", None)
SCHEDULES = ("constant", "invscaling", "adagrad", "adam")
COMPRESSIONS = (None, "float16", "topk")
_EPS = 1e-8
_BETA1, _BETA2 = 0.9, 0.999  # Adam's moment decays (Kingma & Ba's defaults)
_LOSS_CODE = {"squared": 0, "log_loss": 1, "hinge": 2}
_PENALTY_CODE = {None: 0, "l2": 1, "l1": 2}
_SCHEDULE_CODE = {name: i for i, name in enumerate(SCHEDULES)}
_NONE = np.zeros((0, 0))  # stands for an optimizer moment the schedule does not use


# ------------------------------------------------------------------------------------------------------
# Targets and losses (numpy: prediction and held-out loss)
# ------------------------------------------------------------------------------------------------------


def unknown_labels(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels of ``y`` that are not in the sorted array ``classes`` (no sort of ``y``: a block is long)."""
    idx = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
    return np.unique(y[classes[idx] != y])


def encode_targets(y: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """Target matrix for the kernels: ``y`` as a column (regression) or one-vs-rest 0/1 indicators."""
    if classes is None:
        return np.asarray(y, dtype=np.float64).reshape(-1, 1)
    idx = np.searchsorted(classes, y)
    if len(classes) == 2:
        return (idx == 1).astype(np.float64).reshape(-1, 1)
    return (idx[:, None] == np.arange(len(classes))).astype(np.float64)


@numba.njit(cache=True, nogil=True)
def _encode(y, classes, T):  # pragma: no cover - compiled
    """Fill the zeroed ``T`` from the labels ``y`` (binary search in the sorted ``classes``; two classes by two
    comparisons per label, a loop the compiler vectorises); returns how many labels are not among the classes."""
    n_classes = classes.shape[0]
    unknown = 0
    if n_classes == 2:
        c0, c1 = classes[0], classes[1]
        for i in range(y.shape[0]):
            v = y[i]
            T[i, 0] = 1.0 if v == c1 else 0.0
            unknown += 0 if v == c0 or v == c1 else 1
        return unknown
    for i in range(y.shape[0]):
        v = y[i]
        lo, hi = 0, n_classes
        while lo < hi:
            mid = (lo + hi) // 2
            if classes[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        if lo == n_classes or classes[lo] != v:
            unknown += 1
        elif n_classes == 2:
            T[i, 0] = float(lo)
        else:
            T[i, lo] = 1.0
    return unknown


def encode_checked(y: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """``encode_targets`` and whether every label is among ``classes``, in one compiled pass for numeric
    labels (the numpy path for others)."""
    if classes is None:
        return encode_targets(y, None), True
    if y.dtype.kind in "iuf" and classes.dtype.kind in "iuf":
        T = np.zeros((len(y), 1 if len(classes) == 2 else len(classes)))
        return T, _encode(y, classes, T) == 0
    return encode_targets(y, classes), unknown_labels(y, classes).size == 0


def decision(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Linear scores ``X @ coef + intercept``, shape ``(n, n_outputs)``."""
    return X @ W[:-1] + W[-1]


def mean_loss(W: np.ndarray, X: np.ndarray, T: np.ndarray, loss: str) -> float:
    """Mean per-sample loss (no penalty); NaN for an empty set."""
    n = X.shape[0]
    return math.nan if n == 0 else summed_loss(W, X, T, loss) / n


def summed_loss(W: np.ndarray, X: np.ndarray, T: np.ndarray, loss: str) -> float:
    """Summed per-sample loss (no penalty): a block's part of ``mean_loss``."""
    Z = decision(W, X)
    if loss == "squared":
        L = 0.5 * (Z - T) ** 2
    elif loss == "log_loss":
        L = np.logaddexp(0.0, Z) - T * Z
    else:  # hinge on labels in {-1, +1}
        L = np.maximum(1.0 - (2.0 * T - 1.0) * Z, 0.0)
    return float(L.sum())


# ------------------------------------------------------------------------------------------------------
# Block layout and mini-batch plan
# ------------------------------------------------------------------------------------------------------


def holdout_range(seed: int, block: int, n: int, fraction: float) -> tuple[int, int]:
    """Seeded contiguous range ``[lo, hi)`` of the ``n`` rows of ``block`` held out for validation
    (``round(fraction * n)`` rows); the training rows are the ring of the others, starting at ``hi % n``."""
    n_val = round(fraction * n) if fraction > 0 else 0
    lo = int(np.random.default_rng([seed, 0x5EED, block]).integers(0, n - n_val + 1))
    return lo, lo + n_val


def n_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


@lru_cache(maxsize=64)
def epoch_plan(seed: int, block: int, n_train: int, batch_size: int) -> tuple[int, np.ndarray]:
    """Seeded rotation of the training ring and order of its mini-batches in the epoch with seed ``seed``
    (cached, read-only): mini-batch ``step`` is ring rows ``order[step] * batch_size + offset`` onwards."""
    rng = np.random.default_rng([seed, block])
    offset = int(rng.integers(0, max(n_train, 1)))
    order = rng.permutation(n_batches(n_train, batch_size)).astype(np.int64)
    order.flags.writeable = False
    return offset, order


# ------------------------------------------------------------------------------------------------------
# The logistic function of a block of margins, in loops the compiler vectorises (the plain kernels and the
# fused search's share it)
# ------------------------------------------------------------------------------------------------------

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_TAIL = 700.0  # exp(-700) < 1e-304: the sigmoid's tails are taken as 0 and 1 beyond
_EXPONENT = 0x7FF0000000000000  # the exponent bits of a float64: all set for inf and NaN only

@intrinsic
def _as_float(typingctx, bits):
    """The float64 whose bits are the int64 ``bits`` (a bit cast in registers: unlike a view, it vectorises)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _as_bits(typingctx, x):
    """The bits of the float64 ``x`` as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@njit(cache=True, inline="always")
def _exp_poly(r):  # pragma: no cover - compiled
    """exp(r) for |r| <= ln2 / 2: Taylor to degree 13 (truncation below 1e-17 relative)."""
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    return p * r + 1.0


@njit(cache=True, nogil=True, inline="always")
def _exp_nonpositive(x):  # pragma: no cover - compiled
    """``exp(x)`` for ``x <= 0`` (clamped at -708: below, exp is under 3e-308 either way) by range reduction
    ``x = k ln2 + r``: the polynomial of ``r`` times ``2**k``, made from its exponent bits."""
    xq = x if x > -708.0 else -708.0
    k = np.floor(xq * _LOG2E + 0.5)
    r = (xq - k * _LN2_HI) - k * _LN2_LO
    return _exp_poly(r) * _as_float((np.int64(k) + 1023) << 52)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _exp_nonpositive_into(x, out):  # pragma: no cover - compiled
    for i in range(x.shape[0]):
        out[i] = _exp_nonpositive(x[i])


def exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """``exp(x)`` of non-positive ``x`` by the kernels' vectorisable evaluation (for tests and doctests)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _exp_nonpositive_into(x, out)
    return out


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath={"contract"})
def _sigmoid(v):  # pragma: no cover - compiled
    """``1 / (1 + exp(-v))`` formed as ``sgd._kernels.loss_gradient`` forms it (``exp`` of ``-|v|`` only: no
    overflow), free of calls and of branches the compiler cannot turn into selects (``error_model="numpy"`` in
    the loop that inlines it: a division is not checked for zero), so that a loop of it vectorises. Past
    ``|v| = _TAIL`` it is exactly 0 or 1 (off by less than 1e-304 — and no subnormal number reaches the
    gradient's product, where each costs a microcode assist: a diverging member's margins are huge)."""
    a = abs(v)
    e = _exp_nonpositive(-a) if a < _TAIL else 0.0
    return (1.0 if v > 0 else e) / (1.0 + e)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _sigmoid_into(z, s):  # pragma: no cover - compiled
    """``s = _sigmoid(z)`` of every entry in one loop that vectorises. Returns whether every ``z`` is finite (the
    largest exponent field seen, an integer max: a reduction that vectorises)."""
    top = 0
    for i in range(z.shape[0]):
        v = z[i]
        top = max(top, _as_bits(v) & _EXPONENT)
        s[i] = _sigmoid(v)
    return top != _EXPONENT


@njit(cache=True, nogil=True)
def _all_finite(z):  # pragma: no cover - compiled
    """Whether every entry of the flat ``z`` is finite (an integer max of the exponent fields: it vectorises)."""
    top = 0
    for i in range(z.shape[0]):
        top = max(top, _as_bits(z[i]) & _EXPONENT)
    return top != _EXPONENT


# ------------------------------------------------------------------------------------------------------
# Compiled gradient and update (weights transposed: one contiguous row of coefficients per output)
# ------------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def ring_row(v, offset, start, n_train, n):  # pragma: no cover - compiled
    """Row of the block holding ring row ``v`` of an epoch rotated by ``offset`` (the ring starts at ``start``)."""
    i = v + offset
    if i >= n_train:
        i -= n_train
    i += start
    if i >= n:
        i -= n
    return i


@numba.njit(cache=True, nogil=True, inline="always")
def loss_gradient(z, t, loss_code):  # pragma: no cover - compiled
    """d loss / d margin ``z`` for target ``t`` (squared, log loss without overflow, hinge on labels {-1, +1})."""
    if loss_code == 0:
        return z - t
    if loss_code == 1:
        if z > 0:
            return 1.0 / (1.0 + math.exp(-z)) - t
        e = math.exp(z)
        return e / (1.0 + e) - t
    return (1.0 - 2.0 * t) if (2.0 * t - 1.0) * z < 1.0 else 0.0


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _grad_batch(Wt, X, T, lo, hi, offset, start, n_train, loss_code, Gt):  # pragma: no cover - compiled
    """Add the summed gradient of ring rows ``lo..hi-1`` (rotated by ``offset``) to ``Gt``; reads the
    rows in place, sequentially. Returns False if a margin was not finite (NaN / inf in a row, as long
    as the weights are finite): the NaN check of the rows, in the pass that reads them. Log loss takes the
    batch's margins first and their sigmoids in one vectorised loop (``_sigmoid_into``: a call of libm's
    ``exp`` per row would cost more than the row's products), then the gradient; the batch's rows are in cache
    the second time."""
    n, d = X.shape
    finite = True
    if loss_code == 1:
        Z = np.empty(hi - lo)
        S = np.empty(hi - lo)
        for c in range(Wt.shape[0]):
            for v in range(lo, hi):
                i = ring_row(v, offset, start, n_train, n)
                z = Wt[c, d]
                for j in range(d):
                    z += X[i, j] * Wt[c, j]
                Z[v - lo] = z
            if not _sigmoid_into(Z, S):
                finite = False
            for v in range(lo, hi):
                i = ring_row(v, offset, start, n_train, n)
                g = S[v - lo] - T[i, c]
                if g != 0.0:
                    for j in range(d):
                        Gt[c, j] += g * X[i, j]
                    Gt[c, d] += g
        return finite
    for v in range(lo, hi):
        i = ring_row(v, offset, start, n_train, n)
        for c in range(Wt.shape[0]):
            z = Wt[c, d]
            for j in range(d):
                z += X[i, j] * Wt[c, j]
            if not math.isfinite(z):
                finite = False
            g = loss_gradient(z, T[i, c], loss_code)
            if g != 0.0:
                for j in range(d):
                    Gt[c, j] += g * X[i, j]
                Gt[c, d] += g
    return finite


@numba.njit(cache=True, nogil=True, inline="always")
def step_coordinate(w, g, penalized, penalty_code, alpha, schedule_code, rate, c1, c2, m, v, g2):  # pragma: no cover
    """One coordinate's step: the penalty's (sub)gradient added to ``g`` where ``penalized`` (not the intercept),
    then the schedule's direction (AdaGrad, Adam: ``_optim``) times ``rate``. Returns ``(w, m, v, g2)``, the
    optimizer memory as the schedule leaves it (the plain kernels and the fused search's share it)."""
    if penalized:
        if penalty_code == 1:
            g += alpha * w
        elif penalty_code == 2:
            g += alpha * np.sign(w)
    if schedule_code == 2:
        g, g2 = adagrad_direction(g, g2, _EPS)
    elif schedule_code == 3:
        g, m, v = adam_direction(g, m, v, _BETA1, _BETA2, _EPS, c1, c2)
    return w - rate * g, m, v, g2


@numba.njit(cache=True, nogil=True, inline="always")
def step_rate(schedule_code, eta0, power_t, t):  # pragma: no cover - compiled
    """The step size of step ``t``: ``eta0 / t**power_t`` (invscaling) or ``eta0``."""
    return eta0 / t**power_t if schedule_code == 1 else eta0


@numba.njit(cache=True, nogil=True)
def _update(Wt, Gt, penalty_code, alpha, schedule_code, eta0, power_t, t, m, v, g2):  # pragma: no cover
    """Add the penalty's (sub)gradient to ``Gt`` (not the intercept, the last column) and take step ``t``
    of the schedule, in place (``step_coordinate``; ``m``, ``v``, ``g2``: the moments the schedule uses)."""
    d = Wt.shape[1] - 1
    rate = step_rate(schedule_code, eta0, power_t, t)
    c1, c2 = bias_corrections(t, _BETA1, _BETA2)
    for c in range(Wt.shape[0]):
        for j in range(d + 1):
            mm = m[c, j] if schedule_code == 3 else 0.0
            vv = v[c, j] if schedule_code == 3 else 0.0
            gg = g2[c, j] if schedule_code == 2 else 0.0
            Wt[c, j], mm, vv, gg = step_coordinate(Wt[c, j], Gt[c, j], j < d, penalty_code, alpha, schedule_code,
                                                   rate, c1, c2, mm, vv, gg)
            if schedule_code == 2:
                g2[c, j] = gg
            elif schedule_code == 3:
                m[c, j] = mm
                v[c, j] = vv


@numba.njit(cache=True, nogil=True)
def _local_kernel(Wt, X, T, start, n_train, offsets, orders, batch_size, loss_code, fit_intercept,
                  penalty_code, alpha, schedule_code, eta0, power_t, t0, m, v, g2):  # pragma: no cover
    """Epochs of plain SGD over a block: epoch ``e`` visits the mini-batches ``orders[e]`` of the ring
    rotated by ``offsets[e]``; gradient, penalty and step per mini-batch, all in place. Returns whether
    every margin of the first epoch (which reads every training row) was finite."""
    Gt = np.empty_like(Wt)
    t = t0
    finite = True
    for e in range(orders.shape[0]):
        for b in range(orders.shape[1]):
            lo = orders[e, b] * batch_size
            hi = min(lo + batch_size, n_train)
            Gt[:] = 0.0
            ok = _grad_batch(Wt, X, T, lo, hi, offsets[e], start, n_train, loss_code, Gt)
            if e == 0 and not ok:
                finite = False
            Gt /= hi - lo
            if not fit_intercept:
                Gt[:, -1] = 0.0
            t += 1.0
            _update(Wt, Gt, penalty_code, alpha, schedule_code, eta0, power_t, t, m, v, g2)
    return finite


def _transposed(a: np.ndarray) -> np.ndarray:
    """A C-contiguous float64 copy of ``a.T`` (always a copy: the kernels write into it)."""
    return np.array(a.T, dtype=np.float64, order="C")


def batch_gradient(W: np.ndarray, X: np.ndarray, T: np.ndarray, *, start: int, n_train: int, seed: int,
                   block: int, batch_size: int, step: int, loss: str,
                   fit_intercept: bool) -> tuple[np.ndarray, int]:
    """Mean gradient (no penalty) of mini-batch ``step`` of the epoch with seed ``seed``, and its rows
    (``X``, ``T`` C-contiguous float64; the training ring starts at row ``start``)."""
    offset, order = epoch_plan(seed, block, n_train, batch_size)
    lo = int(order[step]) * batch_size
    hi = min(lo + batch_size, n_train)
    Gt = np.zeros((W.shape[1], W.shape[0]))
    if hasattr(X, "indptr"):  # a CSR block: the kernel that touches only its non-zeros reads the weights as a view
        from ._sparse import csr_parts, grad_batch_csr

        grad_batch_csr(np.asarray(W, dtype=np.float64).T, *csr_parts(X), T, lo, hi, offset, start, n_train,
                       _LOSS_CODE[loss], Gt, 1.0)
    else:  # the dense kernel runs along contiguous rows of the transposed weights (a copy for more than 1 column)
        _grad_batch(np.ascontiguousarray(np.asarray(W, dtype=np.float64).T), X, T, lo, hi, offset, start, n_train,
                    _LOSS_CODE[loss], Gt)
    Gt /= hi - lo
    if not fit_intercept:
        Gt[:, -1] = 0.0
    return Gt.T, hi - lo


def init_optimizer(schedule: str, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Fresh optimizer state: the step counter ``t`` and the moments the rule needs."""
    state = {"t": np.zeros(())}
    if schedule == "adagrad":
        state["g2"] = np.zeros(shape)
    elif schedule == "adam":
        state["m"] = np.zeros(shape)
        state["v"] = np.zeros(shape)
    return state


def _moments(state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The optimizer moments (m, v, g2), transposed like the weights, or placeholders."""
    return [_transposed(state[k]) if k in state else _NONE for k in ("m", "v", "g2")]


def _store_moments(state: dict[str, np.ndarray], moments: list[np.ndarray]) -> None:
    for k, a in zip(("m", "v", "g2"), moments):
        if k in state:
            state[k] = a.T.copy()


def descent_step(W: np.ndarray, G: np.ndarray, state: dict[str, np.ndarray], *, penalty: str | None,
                 alpha: float, schedule: str, eta0: float, power_t: float) -> np.ndarray:
    """One update along the gradient ``G`` plus the penalty (sub)gradient ``alpha * d penalty(coef)``
    (not the intercept) by the step-size rule (constant ``eta0``, ``eta0 / t**power_t``, AdaGrad or Adam);
    returns the new weights and advances ``state`` in place."""
    state["t"] += 1.0
    Wt, moments = _transposed(W), _moments(state)
    _update(Wt, _transposed(G), _PENALTY_CODE[penalty], alpha, _SCHEDULE_CODE[schedule], eta0, power_t,
            float(state["t"]), *moments)
    _store_moments(state, moments)
    return Wt.T.copy()


def local_epochs(W: np.ndarray, X: np.ndarray, T: np.ndarray, *, start: int, n_train: int, seeds: list[int],
                 block: int, batch_size: int, loss: str, penalty: str | None, alpha: float, fit_intercept: bool,
                 schedule: str, eta0: float, power_t: float, t0: float) -> tuple[np.ndarray, int, bool]:
    """Plain local SGD over the training ring of the block, one epoch per seed, from ``W`` with a fresh
    optimizer whose step counter starts at ``t0``, in one compiled loop. Returns the new weights, the
    steps taken, and whether every training row gave a finite margin in the first epoch."""
    plans = [epoch_plan(seed, block, n_train, batch_size) for seed in seeds]
    offsets = np.array([offset for offset, _ in plans], dtype=np.int64)
    orders = np.stack([order for _, order in plans])
    kernel, data = _local_kernel, (X,)
    from ._sparse import lazy_steps

    if hasattr(X, "indptr"):  # a CSR block: O(nnz) steps where the rule allows (sgd._sparse)
        from ._sparse import csr_parts, local_kernel_csr

        kernel, data = local_kernel_csr, csr_parts(X)
    elif hasattr(X, "table_parts"):  # a table chunk as its parts: rows made mini-batch by mini-batch (sgd._sparse)
        from ._sparse import local_kernel_table

        kernel, data = local_kernel_table, X.table_parts
    # the one copy of the weights the kernel writes into, as the transpose it indexes, handed back as a view. The
    # sparse kernels' O(nnz) steps (sgd._sparse) take a transposed view of a copy in W's own layout (a step touches
    # the classes of a row's non-zero features); steps of every weight (dense, AdaGrad, Adam, L1) run along the
    # contiguous rows of a transposed copy, the moments made zero in that layout
    in_place = kernel is not _local_kernel and lazy_steps(_SCHEDULE_CODE[schedule], _PENALTY_CODE[penalty])
    Wt = np.array(W, dtype=np.float64, order="C").T if in_place else _transposed(W)
    need = init_optimizer(schedule, (0,))
    moments = [np.zeros(Wt.shape) if k in need else _NONE for k in ("m", "v", "g2")]
    finite = kernel(Wt, *data, T, start, n_train, offsets, orders, batch_size, _LOSS_CODE[loss], fit_intercept,
                    _PENALTY_CODE[penalty], alpha, _SCHEDULE_CODE[schedule], eta0, power_t, t0, *moments)
    return Wt.T, orders.size, finite


# ------------------------------------------------------------------------------------------------------
# Compression of what workers send
# ------------------------------------------------------------------------------------------------------


#: A weight matrix (or change) at least this large is sent as its non-zero rows when fewer than half are non-zero.
ROWS_AT = 1 << 16


def compress(v: np.ndarray, method: str | None, fraction: float) -> tuple[Any, ...]:
    """Encode ``v`` for sending: as is (or, losslessly, its non-zero rows: the change a chunk of hashed text makes
    touches the features its documents hold), as float16, or its top-k entries (int32 index, float32 value)."""
    if method is None:
        if v.ndim == 2 and v.size >= ROWS_AT:
            rows = np.flatnonzero(v.any(axis=1))
            if 2 * len(rows) < v.shape[0]:
                return ("rows", rows.astype(np.int32), v[rows])
        return ("raw", v)
    if method == "float16":
        return ("float16", v.astype(np.float16))
    flat = v.ravel()
    k = max(1, math.ceil(fraction * flat.size))
    idx = np.sort(np.argpartition(np.abs(flat), flat.size - k)[flat.size - k:]).astype(np.int32)
    return ("topk", idx, flat[idx].astype(np.float32))


def decompress(msg: tuple[Any, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`compress` (up to the precision it dropped)."""
    if msg[0] == "topk":
        out = np.zeros(int(np.prod(shape)))
        out[msg[1]] = msg[2]
        return out.reshape(shape)
    if msg[0] == "rows":
        out = np.zeros(shape)
        out[msg[1]] = msg[2]
        return out
    return np.asarray(msg[1], dtype=np.float64).reshape(shape)


def message_nbytes(msg: tuple[Any, ...]) -> int:
    """Bytes of the arrays in a message."""
    return int(sum(a.nbytes for a in msg[1:]))


def compress_with_feedback(v: np.ndarray, residual: np.ndarray | None, method: str | None,
                           fraction: float) -> tuple[tuple[Any, ...], np.ndarray | None]:
    """Compress ``v`` plus the error carried over from earlier messages (error feedback); return the
    message and the new residual (what this message failed to carry)."""
    if method is None:
        return compress(v, None, fraction), None
    if residual is not None and residual.shape == v.shape:
        v = v + residual
    msg = compress(v, method, fraction)
    return msg, v - decompress(msg, v.shape)
