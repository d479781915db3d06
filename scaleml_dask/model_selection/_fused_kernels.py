"""The fused SGD kernel: a block of weight vectors — N candidates × their output columns — trained in one read of
a chunk, each member exactly as the plain local-mode estimator would train it on its own rows.

A *member* is one output column of one candidate on one split. Members of a *group* (same split, seed, batch
size, epochs per round, held-out fraction and loss) see the same rows in the same order — the training ring and
mini-batch plan of ``sgd._kernels`` on the split's training rows of the chunk — so one mini-batch serves them
all: its rows are gathered once, the margins of every member are one matrix product ``Xb @ W`` (BLAS), the loss
derivatives one vectorised loop, the gradients ``Xb' E`` another product, and each member then takes the plain
estimator's own update (``sgd._kernels._update``: its penalty, learning rate and schedule). Weights are a
``(d + 1, M)`` block (intercept last row), members side by side.

What differs from the plain kernel is only the order of floating-point sums inside a margin and a gradient (BLAS
instead of a sequential loop) and an ``exp`` evaluated by a vectorisable polynomial (within an ulp of libm's): the
weights agree to ~1e-13 (tests: 1e-10). A member whose weights stop being finite is switched off at once (its
column is left as it was); a non-finite margin from finite weights means a NaN / inf row, reported to the caller.

>>> import numpy as np
>>> z = np.array([-700.0, -2.0, 0.0, 0.5, 3.0])
>>> bool(np.allclose(exp_nonpositive(-np.abs(z)), np.exp(-np.abs(z)), rtol=1e-15, atol=0))
True
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._optim import adagrad_direction, adam_direction, bias_corrections
from ..sgd._kernels import _update

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LOSS_CODE = {"squared": 0, "log_loss": 1, "hinge": 2}
#: Rows per tile of ``label_counts`` (its rows and margins stay in the L1 / L2 cache).
_TILE = 256


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
def _exp_parts(x):  # pragma: no cover - compiled
    """``exp(x) = p * 2**k`` for ``x <= 0`` (clamped at -708: below, exp is under 3e-308 either way), by range
    reduction ``x = k ln2 + r``: returns ``p`` and the exponent bits of ``2**k``."""
    xq = x if x > -708.0 else -708.0
    k = np.floor(xq * _LOG2E + 0.5)
    r = (xq - k * _LN2_HI) - k * _LN2_LO
    return _exp_poly(r), (np.int64(k) + 1023) << 52


@njit(cache=True, nogil=True)
def _exp_nonpositive_into(x, out, bits):  # pragma: no cover - compiled
    """``out = exp(x)`` for ``x <= 0`` (``bits``: int64 scratch of ``x``'s length): ``p`` and the bits of ``2**k``
    (``_exp_parts``) in one loop, their product in another — loops without calls, so that they vectorise."""
    n = x.shape[0]
    for q in range(n):
        out[q], bits[q] = _exp_parts(x[q])
    scale = bits.view(np.float64)
    for q in range(n):
        out[q] *= scale[q]


def exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """``exp(x)`` of non-positive ``x`` by the kernels' vectorisable evaluation (for tests and doctests)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _exp_nonpositive_into(x, out, np.empty(len(x), dtype=np.int64))
    return out


@njit(cache=True, nogil=True)
def _finite(Z):  # pragma: no cover - compiled
    """Whether every entry of ``Z`` is finite (no branch: the loop vectorises)."""
    ok = 0.0
    for q in range(Z.shape[0]):
        for c in range(Z.shape[1]):
            z = Z[q, c]
            ok += z - z  # 0 for finite z, NaN otherwise
    return ok == 0.0


@njit(cache=True, nogil=True)
def _nonfinite_margins(Z, active, Xb1):  # pragma: no cover - compiled
    """After a non-finite margin: the batch row holding a NaN / inf if there is one (for an active member), else
    -1 with the members whose margins overflowed switched off."""
    b, M = Z.shape
    d = Xb1.shape[1] - 1
    for q in range(b):
        for c in range(M):
            if not math.isfinite(Z[q, c]) and active[c]:
                for j in range(d):
                    if not math.isfinite(Xb1[q, j]):
                        return q
                active[c] = False
    return -1


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _residuals(Z, Tb, tcol, loss_code, E, ex, bits):  # pragma: no cover - compiled
    """``E[q, c] = dloss/dz`` of member ``c`` on batch row ``q`` at margin ``Z[q, c]``, as
    ``sgd._kernels._grad_batch`` computes it (``ex``, ``bits``: scratch of ``Z``'s size). Each loop is free of
    calls and branches the compiler cannot turn into selects (``error_model="numpy"``: a division is not checked
    for zero), so that it vectorises: ``exp(-|z|)`` in two loops (``_exp_nonpositive_into``'s), the derivative
    in a third, the target of a row read once when there is one target column (two classes, regression)."""
    b, M = Z.shape
    n = b * M
    zf, ef, xf, bf = Z.ravel(), E.ravel(), ex.ravel()[:n], bits[:n]
    if loss_code == 1:
        for i in range(n):
            xf[i], bf[i] = _exp_parts(-abs(zf[i]))
        scale = bf.view(np.float64)
        for i in range(n):
            e = xf[i] * scale[i]
            ef[i] = (1.0 if zf[i] > 0 else e) / (1.0 + e)
        if Tb.shape[1] == 1:
            for q in range(b):
                t = Tb[q, 0]
                for c in range(M):
                    ef[q * M + c] -= t
        else:
            for q in range(b):
                for c in range(M):
                    ef[q * M + c] -= Tb[q, tcol[c]]
    elif loss_code == 0:
        for q in range(b):
            for c in range(M):
                ef[q * M + c] = zf[q * M + c] - Tb[q, tcol[c]]
    else:
        for q in range(b):
            for c in range(M):
                t = Tb[q, tcol[c]]
                ef[q * M + c] = (1.0 - 2.0 * t) if (2.0 * t - 1.0) * zf[q * M + c] < 1.0 else 0.0


@njit(cache=True, nogil=True)
def _gather(X, T, rows, start, n_s, n_train, offset, lo, b, Xb1, Tb):  # pragma: no cover - compiled
    """Ring rows ``lo .. lo + b - 1`` rotated by ``offset`` (the ring of ``n_train`` rows starts at ``start`` of the
    ``n_s`` rows that ``rows`` maps to rows of ``X``): features into ``Xb1[:, :d]`` (its last column holds ones),
    targets into ``Tb``."""
    d = X.shape[1]
    K = T.shape[1]
    for q in range(b):
        i = lo + q + offset
        if i >= n_train:
            i -= n_train
        i += start
        if i >= n_s:
            i -= n_s
        r = rows[i]
        for j in range(d):
            Xb1[q, j] = X[r, j]
        for j in range(K):
            Tb[q, j] = T[r, j]


@njit(cache=True, nogil=True)
def _batch_gradient(Xb1, Tb, b, tcol, loss_code, W, active, Z, E, ex, bits, G):  # pragma: no cover
    """Summed gradient ``G = Xb1' E`` (the intercept's in the last row, from the ones column) of every member at
    the margins ``Z = Xb1 W`` of the first ``b`` rows: two BLAS products and the loss derivatives between them.
    Returns -1, or the batch row holding a NaN / inf (members whose margins overflowed are switched off)."""
    Xb = Xb1[:b]
    Zb = Z[:b]
    np.dot(Xb, W, Zb)
    if not _finite(Zb):
        bad = _nonfinite_margins(Zb, active, Xb)
        if bad >= 0:
            return bad
    _residuals(Zb, Tb[:b], tcol, loss_code, E[:b], ex, bits)
    np.dot(Xb.T, E[:b], G)
    return -1


@njit(cache=True, nogil=True)
def members_step(W, G, rows, fit_intercept, penalty, alpha, schedule, eta0, power_t, t, m, v, g2,
                 active):  # pragma: no cover - compiled
    """Every active member's step ``t`` along its mean gradient ``G[:, c] / rows`` (the intercept's zeroed without
    ``fit_intercept``) plus its penalty, by its own schedule: ``sgd._kernels._update``, in place. A member whose
    weights stop being finite is switched off."""
    d = W.shape[0] - 1
    Wt, Gt = W.T, G.T
    for c in range(W.shape[1]):
        if not active[c]:
            continue
        for j in range(d):
            G[j, c] /= rows
        G[d, c] = G[d, c] / rows if fit_intercept[c] else 0.0
        _update(Wt[c:c + 1], Gt[c:c + 1], penalty[c], alpha[c], schedule[c], eta0[c], power_t[c], t,
                m[c:c + 1], v[c:c + 1], g2[c:c + 1])
        for j in range(d + 1):
            if not math.isfinite(W[j, c]):
                active[c] = False
                break


@njit(cache=True, nogil=True)
def fused_epochs(X, T, rows, start, n_train, offsets, orders, batch_size, loss_code, W, tcol, fit_intercept,
                 penalty, alpha, schedule, eta0, power_t, t0, m, v, g2, active):  # pragma: no cover - compiled
    """Epochs of plain SGD for every member of a group over one chunk, in place.

    ``rows`` maps the group's training rows (the split's rows of the chunk, in order) to rows of ``X`` / ``T``;
    the ring (``start``, ``n_train``) and the epochs' plans (``offsets``, ``orders``) are those of
    ``sgd._kernels.local_epochs`` for these rows. ``W`` ``(d + 1, M)``; per member its target column ``tcol``,
    ``fit_intercept``, ``penalty`` / ``schedule`` codes, ``alpha``, ``eta0``, ``power_t``; optimizer memory
    ``m``, ``v``, ``g2`` ``(M, d + 1)``; ``active`` members train (cleared when a member diverges).
    Returns ``(steps, bad)``: steps taken, and -1 or the row of ``X`` holding a NaN / inf."""
    n_s = rows.shape[0]
    d = X.shape[1]
    M = W.shape[1]
    K = T.shape[1]
    Xb1 = np.empty((batch_size, d + 1))
    Xb1[:, d] = 1.0
    Tb = np.empty((batch_size, K))
    Z = np.empty((batch_size, M))
    E = np.empty((batch_size, M))
    ex = np.empty((batch_size, M))
    bits = np.empty(batch_size * M, dtype=np.int64)
    G = np.empty((d + 1, M))
    t = t0
    for e_ in range(orders.shape[0]):
        offset = offsets[e_]
        for k in range(orders.shape[1]):
            lo = orders[e_, k] * batch_size
            b = min(lo + batch_size, n_train) - lo
            _gather(X, T, rows, start, n_s, n_train, offset, lo, b, Xb1, Tb)
            bad = _batch_gradient(Xb1, Tb, b, tcol, loss_code, W, active, Z, E, ex, bits, G)
            if bad >= 0:
                i = lo + bad + offset
                i = i - n_train if i >= n_train else i
                i += start
                return 0, rows[i - n_s if i >= n_s else i]
            t += 1.0
            members_step(W, G, b, fit_intercept, penalty, alpha, schedule, eta0, power_t, t, m, v, g2, active)
    return orders.size, -1


@njit(cache=True, nogil=True)
def label_counts(X, keep, W, T, predicted, hits):  # pragma: no cover - compiled
    """Two classes: add to ``predicted[c]`` the rows ``keep`` of ``X`` that member ``c`` (``W`` ``(d + 1, n)``,
    intercept last) predicts positive, and to ``hits[c]`` those of them whose target ``T[r, 0]`` is 1 — every
    candidate's confusion counts with no copy of the rows and no matrix of margins: the rows go through a tile
    of ``_TILE`` that stays in cache, its margins one BLAS product. Returns whether every margin was finite."""
    d = X.shape[1]
    n = W.shape[1]
    tile = np.empty((_TILE, d + 1))
    tile[:, d] = 1.0
    Z = np.empty((_TILE, n))
    ok = 0.0
    for lo in range(0, keep.shape[0], _TILE):
        b = min(_TILE, keep.shape[0] - lo)
        for q in range(b):
            r = keep[lo + q]
            for j in range(d):
                tile[q, j] = X[r, j]
        Zb = Z[:b]
        np.dot(tile[:b], W, Zb)
        for q in range(b):
            t = T[keep[lo + q], 0]
            for c in range(n):
                z = Zb[q, c]
                ok += z - z  # 0 for a finite margin, NaN otherwise
                p = 1.0 if z > 0 else 0.0
                predicted[c] += p
                hits[c] += p * t
    return ok == 0.0


def member_losses(X: np.ndarray, T: np.ndarray, W: np.ndarray, tcol: np.ndarray, loss: str) -> np.ndarray:
    """Summed per-row loss (no penalty) of every member on rows ``X`` / targets ``T``, as ``sgd._kernels.mean_loss``
    sums it (before dividing by the rows)."""
    Z = X @ W[:-1] + W[-1]
    Tm = T[:, tcol]
    if loss == "squared":
        L = 0.5 * (Z - Tm) ** 2
    elif loss == "log_loss":
        L = np.logaddexp(0.0, Z) - Tm * Z
    else:
        L = np.maximum(1.0 - (2.0 * Tm - 1.0) * Z, 0.0)
    return L.sum(axis=0)


def loss_code(loss: str) -> int:
    return _LOSS_CODE[loss]


# ------------------------------------------------------------------------------------------------------
# online gradient learners: learn_many over a stream of batches, every candidate of a split at once
# ------------------------------------------------------------------------------------------------------

#: Loss codes of the online gradient learners (``online._linear_kernels``).
ONLINE_LOG, ONLINE_SQUARED, ONLINE_PERCEPTRON = 0, 1, 2
#: Optimizer codes of the online gradient learners.
ONLINE_SGD, ONLINE_ADAGRAD, ONLINE_ADAM = 0, 1, 2


@njit(cache=True, nogil=True)
def _online_residuals(Z, yb, b, loss, E):  # pragma: no cover - compiled
    """``E = dloss/dz`` at the margins ``Z`` of the first ``b`` rows, as ``online._linear_kernels._dloss``."""
    K = Z.shape[1]
    for q in range(b):
        t = yb[q]
        for c in range(K):
            z = Z[q, c]
            if loss == ONLINE_LOG:
                e = math.exp(-abs(z))
                E[q, c] = (1.0 if z >= 0.0 else e) / (1.0 + e) - t
            elif loss == ONLINE_SQUARED:
                E[q, c] = z - t
            else:
                s = 2.0 * t - 1.0
                E[q, c] = -s if s * z <= 0.0 else 0.0


@njit(cache=True, nogil=True)
def _online_losses(Z, yb, b, loss, out):  # pragma: no cover - compiled
    """Mean loss of each member on the first ``b`` rows at margins ``Z`` (before learning them)."""
    K = Z.shape[1]
    for c in range(K):
        out[c] = 0.0
    for q in range(b):
        t = yb[q]
        for c in range(K):
            z = Z[q, c]
            if loss == ONLINE_LOG:
                v = math.log1p(math.exp(-abs(z))) + max(z, 0.0) - t * z
            elif loss == ONLINE_SQUARED:
                v = 0.5 * (z - t) ** 2
            else:
                v = max(0.0, -(2.0 * t - 1.0) * z)
            out[c] += v
    for c in range(K):
        out[c] /= b


@njit(cache=True, nogil=True)
def online_stream(X, y, rows, carry_X, carry_y, n_carry, last, loss, W, M1, M2, t, opt, lr, l2, fit_intercept,
                  beta1, beta2, eps, active, Xb, yb, Z, E, G, first_loss, zero_loss):  # pragma: no cover - compiled
    """``learn_many`` of every member on the stream ``carry rows, X[rows]`` cut into batches of
    ``len(carry_y)`` rows, in place: each batch is one optimizer step of every active member on the batch's mean
    gradient, as ``online._linear_kernels.linear_learn_many`` takes it (the margins and the gradients of all
    members by two BLAS products). Rows left over (fewer than a batch) go to ``carry_X`` / ``carry_y`` for the next
    chunk, unless ``last``: then they are the stream's last, shorter batch.

    ``W`` ``(d + 1, K)`` (intercept last), optimizer memory ``M1``, ``M2`` alike (AdaGrad: squared-gradient sums in
    ``M1``; Adam: moments in ``M1``, ``M2``), ``t`` the steps taken; per member ``opt`` / ``lr`` / ``l2`` /
    ``fit_intercept`` / ``beta1`` / ``beta2`` / ``eps``; ``active`` members learn (a member whose weights stop being
    finite is cleared). ``first_loss`` / ``zero_loss``: each member's mean loss on the first batch, before learning
    it, and the zero model's. Returns ``(rows carried, steps taken in all, batches, the row of X with a NaN / inf
    or -1)``."""
    d = X.shape[1]
    K = W.shape[1]
    bs = carry_y.shape[0]
    n_rows = rows.shape[0]
    pos = 0
    batches = 0
    while True:
        avail = n_carry + n_rows - pos
        if avail < bs and not (last and avail > 0):
            break
        b = min(bs, avail)
        for q in range(n_carry):
            for j in range(d):
                Xb[q, j] = carry_X[q, j]
            yb[q] = carry_y[q]
        for q in range(n_carry, b):
            r = rows[pos]
            pos += 1
            for j in range(d):
                Xb[q, j] = X[r, j]
            yb[q] = y[r]
        n_carry = 0
        Zb = Z[:b]
        np.dot(Xb[:b], W[:d], Zb)
        ok = 0.0
        for q in range(b):
            for c in range(K):
                z = Zb[q, c] + W[d, c]
                Zb[q, c] = z
                ok += z - z
        if ok != 0.0:  # a NaN / inf margin: a bad row (of this chunk: carried rows were checked), or a member's
            for q in range(b):  # weights (then it is switched off)
                for c in range(K):
                    if active[c] and not math.isfinite(Zb[q, c]):
                        for j in range(d):
                            if not math.isfinite(Xb[q, j]):
                                return 0, t, batches, rows[pos - b + q]
                        active[c] = False
        if batches == 0:
            _online_losses(Zb, yb, b, loss, first_loss)
            zero = np.zeros((b, 1))
            _online_losses(zero, yb, b, loss, zero_loss)
        _online_residuals(Zb, yb, b, loss, E)
        np.dot(Xb[:b].T, E[:b], G)
        t += 1.0
        for c in range(K):
            if not active[c]:
                continue
            o, rate = opt[c], lr[c]
            c1, c2 = bias_corrections(t, beta1[c], beta2[c])
            s = 0.0
            for q in range(b):
                s += E[q, c]
            for j in range(d + 1):
                if j < d:
                    g = G[j, c] / b + l2[c] * W[j, c]
                elif fit_intercept[c]:
                    g = s / b
                else:
                    break
                if o == ONLINE_SGD:
                    W[j, c] -= rate * g
                elif o == ONLINE_ADAGRAD:
                    direction, acc = adagrad_direction(g, M1[j, c], eps[c])
                    M1[j, c] = acc
                    W[j, c] -= rate * direction
                else:
                    direction, m, v = adam_direction(g, M1[j, c], M2[j, c], beta1[c], beta2[c], eps[c], c1, c2)
                    M1[j, c] = m
                    M2[j, c] = v
                    W[j, c] -= rate * direction
            for j in range(d + 1):
                if not math.isfinite(W[j, c]):
                    active[c] = False
                    break
        batches += 1
    left = n_rows - pos
    for q in range(left):
        r = rows[pos + q]
        for j in range(d):
            v = X[r, j]
            if not math.isfinite(v):
                return 0, t, batches, r
            carry_X[n_carry + q, j] = v
        carry_y[n_carry + q] = y[r]
    return n_carry + left, t, batches, -1
