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

from ..sgd._kernels import _update

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LOSS_CODE = {"squared": 0, "log_loss": 1, "hinge": 2}


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


@njit(cache=True, nogil=True)
def _exp_nonpositive_into(x, out, bits):  # pragma: no cover - compiled
    """``out = exp(x)`` for ``x <= 0`` (clamped at -708: below, exp is under 3e-308 either way), by range
    reduction ``x = k ln2 + r`` and ``2**k`` written as the exponent bits (``bits`` is ``out``'s int64 view's
    scratch): loops without calls, so that they vectorise."""
    n = x.shape[0]
    scale = bits.view(np.float64)
    for q in range(n):
        xq = max(x[q], -708.0)
        k = math.floor(xq * _LOG2E + 0.5)
        r = (xq - k * _LN2_HI) - k * _LN2_LO
        out[q] = _exp_poly(r)
        bits[q] = (np.int64(k) + 1023) << 52
    for q in range(n):
        out[q] *= scale[q]


def exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """``exp(x)`` of non-positive ``x`` by the kernels' vectorisable evaluation (for tests and doctests)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    _exp_nonpositive_into(x, out, np.empty(len(x), dtype=np.int64))
    return out


@njit(cache=True, nogil=True)
def _margins(Z, Wlast):  # pragma: no cover - compiled
    """``Z += Wlast`` row by row; returns whether every margin is finite (no branch: the loop vectorises)."""
    b, M = Z.shape
    ok = 0.0
    for q in range(b):
        for c in range(M):
            z = Z[q, c] + Wlast[c]
            Z[q, c] = z
            ok += z - z  # 0 for finite z, NaN otherwise
    return ok == 0.0


@njit(cache=True, nogil=True)
def _nonfinite_margins(Z, active, X, rows_b):  # pragma: no cover - compiled
    """After ``_margins`` found a non-finite margin: the batch row holding a NaN / inf if there is one (for an
    active member), else -1 with the members whose margins overflowed switched off."""
    b, M = Z.shape
    for q in range(b):
        for c in range(M):
            if not math.isfinite(Z[q, c]) and active[c]:
                row = rows_b[q]
                for j in range(X.shape[1]):
                    if not math.isfinite(X[row, j]):
                        return q
                active[c] = False
    return -1


@njit(cache=True, nogil=True)
def _residuals(Z, Tb, tcol, loss_code, E, sums, ex, bits):  # pragma: no cover - compiled
    """``E[q, c] = dloss/dz`` of member ``c`` on batch row ``q`` at margin ``Z[q, c]``, as
    ``sgd._kernels._grad_batch`` computes it, and each member's sum of them (``sums``: the intercept's
    gradient). The target of a row is read once when there is one target column (two classes, regression);
    the loops are split by loss, so that each vectorises."""
    b, M = Z.shape
    n = b * M
    zf, ef, xf = Z.ravel(), E.ravel()[:n], ex.ravel()[:n]
    T = np.empty(n)  # each element's target
    if Tb.shape[1] == 1:
        for q in range(b):
            t = Tb[q, 0]
            for c in range(M):
                T[q * M + c] = t
    else:
        for q in range(b):
            for c in range(M):
                T[q * M + c] = Tb[q, tcol[c]]
    if loss_code == 1:
        for i in range(n):
            xf[i] = -abs(zf[i])
        _exp_nonpositive_into(xf, ef, bits[:n])
        for i in range(n):
            e = ef[i]
            ef[i] = (1.0 if zf[i] > 0 else e) / (1.0 + e) - T[i]
    elif loss_code == 0:
        for i in range(n):
            ef[i] = zf[i] - T[i]
    else:
        for i in range(n):
            t = T[i]
            ef[i] = (1.0 - 2.0 * t) if (2.0 * t - 1.0) * zf[i] < 1.0 else 0.0
    for c in range(M):
        sums[c] = 0.0
    for q in range(b):
        for c in range(M):
            sums[c] += E[q, c]


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
    Xb = np.empty((batch_size, d))
    Tb = np.empty((batch_size, K))
    rows_b = np.empty(batch_size, dtype=np.int64)
    E = np.empty((batch_size, M))
    ex = np.empty((batch_size, M))
    bits = np.empty(batch_size * M, dtype=np.int64)
    sums = np.empty(M)
    G = np.empty((d + 1, M))
    Gt = G.T
    Wt = W.T
    t = t0
    for e_ in range(orders.shape[0]):
        offset = offsets[e_]
        for k in range(orders.shape[1]):
            lo = orders[e_, k] * batch_size
            hi = min(lo + batch_size, n_train)
            b = hi - lo
            for q in range(b):
                i = lo + q + offset
                if i >= n_train:
                    i -= n_train
                i += start
                if i >= n_s:
                    i -= n_s
                r = rows[i]
                rows_b[q] = r
                for j in range(d):
                    Xb[q, j] = X[r, j]
                for j in range(K):
                    Tb[q, j] = T[r, j]
            Z = np.dot(Xb[:b], W[:d])
            if not _margins(Z, W[d]):
                bad = _nonfinite_margins(Z, active, X, rows_b)
                if bad >= 0:
                    return 0, rows_b[bad]
            _residuals(Z, Tb[:b], tcol, loss_code, E[:b], sums, ex, bits)
            Gx = np.dot(Xb[:b].T, E[:b])
            for j in range(d):
                for c in range(M):
                    G[j, c] = Gx[j, c] / b
            for c in range(M):
                G[d, c] = sums[c] / b if fit_intercept[c] else 0.0
            t += 1.0
            for c in range(M):
                if not active[c]:
                    continue
                _update(Wt[c:c + 1], Gt[c:c + 1], penalty[c], alpha[c], schedule[c], eta0[c], power_t[c], t,
                        m[c:c + 1], v[c:c + 1], g2[c:c + 1])
                for j in range(d + 1):
                    if not math.isfinite(W[j, c]):
                        active[c] = False
                        break
    return orders.size, -1


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
