"""The fused SGD kernel: a block of weight vectors — N candidates × their output columns — trained in one read of
a chunk, each member exactly as the plain local-mode estimator would train it on its own rows.

A *member* is one output column of one candidate on one split. Members of a *group* (same split, seed, batch
size, epochs per round, held-out fraction and loss) see the same rows in the same order — the training ring and
mini-batch plan of ``sgd._kernels`` on the split's training rows of the chunk — so one mini-batch serves them
all: its rows are gathered once, and per batch

1. the margins of every member are one matrix product ``Xb @ W`` (BLAS; ``Xb`` holds a ones column, so the
   intercepts come with it);
2. the log loss's ``sigmoid(z)`` of every member-row in one flat loop the compiler vectorises
   (``sgd._kernels._sigmoid_into``: ``exp`` by a polynomial, its ``2**k`` by a bit cast), which also finds a
   non-finite margin (an integer max of the exponent bits); squared loss takes the margins themselves, hinge
   one loop per member-row for its subgradient;
3. the targets taken off (``dloss/dz = s - t``, as the plain kernel forms it, in a loop over the members that
   vectorises), and the gradients are one product ``Xb' (S - T)``;
4. each member takes the plain estimator's own step (``sgd._kernels.step_coordinate``: its penalty, learning
   rate, schedule and optimizer memory, the same arithmetic coordinate by coordinate).

Weights are a ``(d + 1, M)`` block (intercept last row), members side by side; the kernel works on the active
members only (a member that diverges leaves the products at once).

What differs from the plain kernel is only the order of floating-point sums inside a margin and a gradient
(BLAS); the sigmoid is the plain kernel's own (``sgd._kernels._sigmoid_into``): the weights agree to ~1e-13
(tests: 1e-10). A member whose weights stop being finite is switched off at once; a non-finite margin from finite
weights means a NaN / inf row, reported to the caller.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._optim import adagrad_direction, adam_direction, bias_corrections
from ..sgd._kernels import (
    _BETA1,
    _BETA2,
    _EXPONENT,
    _all_finite,
    _as_bits,
    _sigmoid,
    ring_row,
    step_coordinate,
    step_rate,
)

_LOSS_CODE = {"squared": 0, "log_loss": 1, "hinge": 2}
#: The largest product ``rows × members × coefficients`` of a panel: OpenBLAS multiplies matrices up to this size
#: with its small-matrix kernels (no packing), several times faster per member at the batch sizes of SGD
#: (``benchmarks/README.md``, model selection).
_SMALL_GEMM = 1_000_000
#: Rows a gather asks the CPU for ahead of the one it copies (``_prefetch``).
_AHEAD = 16
#: float64 values per cache line (``_prefetch_row``).
_LINE = 8
#: Rows per tile of ``label_counts`` (a part's rows and margins stay in the L1 / L2 cache).
_TILE = 256


@intrinsic
def _prefetch(typingctx, X, r, j):
    """Ask the CPU to bring the cache line of ``X[r, j]`` in (LLVM's ``prefetch``: no effect on results). The
    rows a mini-batch gathers are a run of one fold's rows of the chunk, with gaps: the hardware prefetcher starts
    over at every page, so the kernels ask for rows a few ahead."""
    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], args[2]], wraparound=False)
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [i8p, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])  # read, keep, data
        return context.get_dummy_value()
    return types.none(X, types.intp, types.intp), codegen


@njit(cache=True, nogil=True, inline="always")
def _prefetch_row(X, r):  # pragma: no cover - compiled
    """``_prefetch`` of every cache line of row ``r`` of ``X``: a row of 32 float64 spans four lines, and whether
    the CPU fetches a line's neighbour by itself differs from machine to machine."""
    d = X.shape[1]
    for j in range(0, d, _LINE):
        _prefetch(X, r, j)
    _prefetch(X, r, d - 1)


@njit(cache=True, nogil=True)
def _hinge_into(Z, Tb, tcol, E):  # pragma: no cover - compiled
    """``E[q, c]`` = the hinge loss's subgradient of member ``c`` on batch row ``q`` (labels in {-1, +1}), as
    ``sgd._kernels.loss_gradient``."""
    for q in range(Z.shape[0]):
        for c in range(Z.shape[1]):
            t = Tb[q, tcol[c]]
            E[q, c] = (1.0 - 2.0 * t) if (2.0 * t - 1.0) * Z[q, c] < 1.0 else 0.0


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


@njit(cache=True, nogil=True, inline="always")
def _gather_row(X, T, rows, start, n_s, n_train, offset, lo, q, q1, Xb1, Tb):  # pragma: no cover - compiled
    """Ring row ``lo + q`` rotated by ``offset`` (the ring of ``n_train`` rows starts at ``start`` of the ``n_s`` rows
    that ``rows`` maps to rows of ``X``): features into ``Xb1[q, :d]``, targets into ``Tb[q]``; and a prefetch of
    the row ``_AHEAD`` further, up to row ``q1``."""
    d = X.shape[1]
    if q + _AHEAD < q1:
        _prefetch_row(X, rows[ring_row(lo + q + _AHEAD, offset, start, n_train, n_s)])
    r = rows[ring_row(lo + q, offset, start, n_train, n_s)]
    for k in range(T.shape[1]):
        Tb[q, k] = T[r, k]
    for j in range(d):
        Xb1[q, j] = X[r, j]


@njit(cache=True, nogil=True)
def _gather(X, T, rows, start, n_s, n_train, offset, lo, q0, q1, Xb1, Tb):  # pragma: no cover - compiled
    """Ring rows ``lo + q0 .. lo + q1 - 1`` (``_gather_row``) into ``Xb1[q0:q1, :d]`` (its last column holds ones)
    and ``Tb[q0:q1]``."""
    for q in range(q0, q1):
        _gather_row(X, T, rows, start, n_s, n_train, offset, lo, q, q1, Xb1, Tb)


@njit(cache=True, nogil=True)
def _minus_targets(R, Tb, tcol):  # pragma: no cover - compiled
    """``R[q, c] -= Tb[q, tcol[c]]``: ``dloss/dz = z - t`` of every member-row (one target column: a loop over the
    members that vectorises)."""
    if Tb.shape[1] == 1:
        for q in range(R.shape[0]):
            t = Tb[q, 0]
            for c in range(R.shape[1]):
                R[q, c] -= t
    else:
        for q in range(R.shape[0]):
            for c in range(R.shape[1]):
                R[q, c] -= Tb[q, tcol[c]]


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _log_residuals(Z, Tb, tcol, S, X, T, rows, start, n_s, n_train, offset, lo, q0, q1, Xn, Tn):  # pragma: no cover
    """``S = sigmoid(Z) - Tb[:, tcol]``, the log loss's ``dloss/dz`` of every member-row formed as the plain kernel
    forms it (``sgd._kernels._sigmoid``), row by row in a loop over the members that vectorises — and, in the same
    loop, the next mini-batch's rows ``q0 .. q1 - 1`` gathered into ``Xn`` / ``Tn`` (``_gather``'s arguments): their
    loads wait on memory while the sigmoids compute. Returns whether every margin is finite (the largest exponent
    field seen)."""
    b, M = Z.shape
    top = 0
    for q in range(max(b, q1 - q0)):
        if q0 + q < q1:
            _gather_row(X, T, rows, start, n_s, n_train, offset, lo, q0 + q, q1, Xn, Tn)
        if q < b:
            if Tb.shape[1] == 1:
                t = Tb[q, 0]
                for c in range(M):
                    v = Z[q, c]
                    top = max(top, _as_bits(v) & _EXPONENT)
                    S[q, c] = _sigmoid(v) - t
            else:
                for c in range(M):
                    v = Z[q, c]
                    top = max(top, _as_bits(v) & _EXPONENT)
                    S[q, c] = _sigmoid(v) - Tb[q, tcol[c]]
    return top != _EXPONENT


@njit(cache=True, nogil=True)
def _batch_gradient(Xb1, Tb, tcol, loss_code, W, active, Z, S, G, X, T, rows, start, n_s, n_train, offset, lo, q0,
                    q1, Xn, Tn):  # pragma: no cover - compiled
    """Summed gradient ``G`` ``(d + 1, M)`` (the intercept's in the last row, from the ones column) of every member
    on the batch ``Xb1`` ``(b, d + 1)`` / ``Tb`` ``(b, K)`` at the margins ``Z = Xb1 W`` (``Z``, ``S``: ``(b, M)``
    scratch): ``Xb1' S`` with ``S = dloss/dz`` of every member-row (log loss: sigmoid minus target; squared:
    margin minus target; hinge: its subgradient). Meanwhile the next mini-batch's rows ``q0 .. q1 - 1`` are
    gathered into ``Xn`` / ``Tn`` (``X`` .. ``lo``: ``_gather``'s arguments). Returns -1, or the batch row holding
    a NaN / inf (members whose margins overflowed are switched off)."""
    np.dot(Xb1, W, Z)
    if loss_code == 1:
        finite = _log_residuals(Z, Tb, tcol, S, X, T, rows, start, n_s, n_train, offset, lo, q0, q1, Xn, Tn)
    else:
        _gather(X, T, rows, start, n_s, n_train, offset, lo, q0, q1, Xn, Tn)
        finite = _all_finite(Z.ravel())
    if not finite:
        bad = _nonfinite_margins(Z, active, Xb1)
        if bad >= 0:
            return bad
    if loss_code == 2:
        _hinge_into(Z, Tb, tcol, S)
    elif loss_code == 0:
        S[:] = Z
        _minus_targets(S, Tb, tcol)
    np.dot(Xb1.T, S, G)
    return -1


@njit(cache=True, nogil=True)
def batch_gradient(Xb1, Tb, tcol, loss_code, W, active, G):  # pragma: no cover - compiled
    """``_batch_gradient`` of one mini-batch on its own (nothing to gather meanwhile: a step of the sync search)."""
    b, M = Xb1.shape[0], W.shape[1]
    return _batch_gradient(Xb1, Tb, tcol, loss_code, W, active, np.empty((b, M)), np.empty((b, M)), G, Xb1, Tb,
                           np.empty(0, dtype=np.int64), 0, 0, 0, 0, 0, 0, 0, Xb1, Tb)


@njit(cache=True, nogil=True)
def members_step(W, G, rows, fit_intercept, penalty, alpha, schedule, eta0, power_t, t, m, v, g2,
                 active):  # pragma: no cover - compiled
    """Every active member's step ``t`` along its mean gradient ``G[:, c] / rows`` (the intercept's zeroed without
    ``fit_intercept``) plus its penalty, by its own schedule — the plain estimator's arithmetic
    (``sgd._kernels._update``), coordinate by coordinate, in place; optimizer memory ``m``, ``v``, ``g2``
    ``(M, d + 1)``. A member whose weights stop being finite is switched off."""
    d = W.shape[0] - 1
    c1, c2 = bias_corrections(t, _BETA1, _BETA2)
    for c in range(W.shape[1]):
        if not active[c]:
            continue
        rate = step_rate(schedule[c], eta0[c], power_t[c], t)
        ok = 0.0
        for j in range(d + 1):
            g = G[j, c] / rows if j < d or fit_intercept[c] else 0.0
            w, m[c, j], v[c, j], g2[c, j] = step_coordinate(W[j, c], g, j < d, penalty[c], alpha[c], schedule[c],
                                                            rate, c1, c2, m[c, j], v[c, j], g2[c, j])
            W[j, c] = w
            ok += w - w  # 0 for finite weights, NaN otherwise
        if ok != 0.0:
            active[c] = False


@njit(cache=True, nogil=True)
def panel_width(n_members, batch_size, n_coef):  # pragma: no cover - compiled
    """Members per panel: 16, or 8 / 4 for fewer members (a panel is padded to its width) or when a panel of 16
    would pass ``_SMALL_GEMM``."""
    w = 16
    while w > 4 and (n_members <= w // 2 or batch_size * w * n_coef > _SMALL_GEMM):
        w //= 2
    return w


@njit(cache=True, nogil=True)
def _compact(W, cols, w, tcol, fit_intercept, penalty, alpha, schedule, eta0, power_t, m, v, g2):  # pragma: no cover
    """The members ``cols`` in panels of ``w`` side by side: weights ``(panels, d + 1, w)``, then per member (the
    last panel padded with members that never train: zero weights, switched off) the parameters and optimizer
    memory in ``fused_epochs``'s order, and which members train."""
    n = cols.shape[0]
    P = -(-n // w)
    Wp = np.zeros((P, W.shape[0], w))
    tc = np.zeros(P * w, dtype=tcol.dtype)
    fi = np.zeros(P * w, dtype=np.bool_)
    pen = np.zeros(P * w, dtype=penalty.dtype)
    al = np.zeros(P * w)
    sch = np.zeros(P * w, dtype=schedule.dtype)
    e0 = np.zeros(P * w)
    pt = np.zeros(P * w)
    mc, vc, gc = np.zeros((P * w, m.shape[1])), np.zeros((P * w, v.shape[1])), np.zeros((P * w, g2.shape[1]))
    on = np.zeros(P * w, dtype=np.bool_)
    for a in range(n):
        c = cols[a]
        for j in range(W.shape[0]):
            Wp[a // w, j, a % w] = W[j, c]
        tc[a], fi[a], pen[a], al[a], sch[a] = tcol[c], fit_intercept[c], penalty[c], alpha[c], schedule[c]
        e0[a], pt[a] = eta0[c], power_t[c]
        mc[a], vc[a], gc[a] = m[c], v[c], g2[c]
        on[a] = True
    return Wp, tc, fi, pen, al, sch, e0, pt, mc, vc, gc, on


@njit(cache=True, nogil=True)
def _release(W, cols, Wp, m, v, g2, mc, vc, gc):  # pragma: no cover - compiled
    """Write the members ``cols`` back from their panels."""
    w = Wp.shape[2]
    for a in range(cols.shape[0]):
        c = cols[a]
        for j in range(W.shape[0]):
            W[j, c] = Wp[a // w, j, a % w]
        m[c] = mc[a]
        v[c] = vc[a]
        g2[c] = gc[a]


@njit(cache=True, nogil=True)
def fused_epochs(X, T, rows, start, n_train, offsets, orders, batch_size, loss_code, W, tcol, fit_intercept,
                 penalty, alpha, schedule, eta0, power_t, t0, m, v, g2, active):  # pragma: no cover - compiled
    """Epochs of plain SGD for every member of a group over one chunk, in place.

    ``rows`` maps the group's training rows (the split's rows of the chunk, in order) to rows of ``X`` / ``T``;
    the ring (``start``, ``n_train``) and the epochs' plans (``offsets``, ``orders``) are those of
    ``sgd._kernels.local_epochs`` for these rows. ``W`` ``(d + 1, M)``; per member its target column ``tcol``,
    ``fit_intercept``, ``penalty`` / ``schedule`` codes, ``alpha``, ``eta0``, ``power_t``; optimizer memory
    ``m``, ``v``, ``g2`` ``(M, d + 1)``; ``active`` members train (cleared when a member diverges).

    The active members are worked on in compact panels (``panel_width``: the products BLAS takes fastest),
    rebuilt when a member is switched off, so that a diverged member costs nothing more. Returns ``(steps,
    bad)``: steps taken, and -1 or the row of ``X`` holding a NaN / inf."""
    n_s = rows.shape[0]
    d = X.shape[1]
    K = T.shape[1]
    Xb1, Xn = np.empty((batch_size, d + 1)), np.empty((batch_size, d + 1))  # this mini-batch and the next
    Xb1[:, d] = 1.0
    Xn[:, d] = 1.0
    Tb, Tn = np.empty((batch_size, K)), np.empty((batch_size, K))
    cols = np.flatnonzero(active)
    w = panel_width(cols.shape[0], batch_size, d + 1)
    Wp, tc, fi, pen, al, sch, e0, pt, mc, vc, gc, on = _compact(W, cols, w, tcol, fit_intercept, penalty, alpha,
                                                                schedule, eta0, power_t, m, v, g2)
    Z = np.empty(batch_size * w)
    S = np.empty(batch_size * w)
    G = np.empty((d + 1, w))
    t = t0
    if orders.size:
        lo = orders[0, 0] * batch_size
        _gather(X, T, rows, start, n_s, n_train, offsets[0], lo, 0, min(lo + batch_size, n_train) - lo, Xb1, Tb)
    for e_ in range(orders.shape[0]):
        offset = offsets[e_]
        for k in range(orders.shape[1]):
            if cols.shape[0] == 0:
                return orders.size, -1
            lo = orders[e_, k] * batch_size
            b = min(lo + batch_size, n_train) - lo
            e_n, k_n = (e_, k + 1) if k + 1 < orders.shape[1] else (e_ + 1, 0)
            lo_n, b_n, offset_n = 0, 0, 0
            if e_n < orders.shape[0]:  # the next mini-batch: gathered while this one computes, a part per panel
                lo_n = orders[e_n, k_n] * batch_size
                b_n = min(lo_n + batch_size, n_train) - lo_n
                offset_n = offsets[e_n]
            t += 1.0
            P = Wp.shape[0]
            for p in range(P):
                at = slice(p * w, (p + 1) * w)
                bad = _batch_gradient(Xb1[:b], Tb[:b], tc[at], loss_code, Wp[p], on[at], Z[:b * w].reshape((b, w)),
                                      S[:b * w].reshape((b, w)), G, X, T, rows, start, n_s, n_train, offset_n, lo_n,
                                      b_n * p // P, b_n * (p + 1) // P, Xn, Tn)
                if bad >= 0:
                    i = lo + bad + offset
                    i = i - n_train if i >= n_train else i
                    i += start
                    return 0, rows[i - n_s if i >= n_s else i]
                members_step(Wp[p], G, b, fi[at], pen[at], al[at], sch[at], e0[at], pt[at], t, mc[at], vc[at],
                             gc[at], on[at])
            Xb1, Xn = Xn, Xb1
            Tb, Tn = Tn, Tb
            if not on[:cols.shape[0]].all():  # members diverged: they leave the panels as they are
                _release(W, cols, Wp, m, v, g2, mc, vc, gc)
                active[cols[~on[:cols.shape[0]]]] = False
                cols = cols[on[:cols.shape[0]]]
                w = panel_width(cols.shape[0], batch_size, d + 1)
                Wp, tc, fi, pen, al, sch, e0, pt, mc, vc, gc, on = _compact(W, cols, w, tcol, fit_intercept, penalty,
                                                                            alpha, schedule, eta0, power_t, m, v, g2)
                G = np.empty((d + 1, w))
    _release(W, cols, Wp, m, v, g2, mc, vc, gc)
    return orders.size, -1


@njit(cache=True, nogil=True)
def place_part(membership, code, part, index):  # pragma: no cover - compiled
    """Mark the rows whose ``membership`` is ``code`` as part ``index`` in ``part`` (-1: no part yet) — unless one
    of them is already in a part: then nothing is marked and False returned (``label_counts`` takes disjoint
    parts)."""
    for r in range(membership.shape[0]):
        if membership[r] == code and part[r] >= 0:
            return False
    for r in range(membership.shape[0]):
        if membership[r] == code:
            part[r] = index
    return True


@njit(cache=True, nogil=True, inline="always")
def _count_tile(tile, W, b, t, Z, predicted, hits, top):  # pragma: no cover - compiled
    """``label_counts`` of the first ``b`` rows of ``tile`` (targets ``t``) for the members ``W``: their margins
    one BLAS product of the whole tile (the product as BLAS takes it fastest), counted in a loop over the members;
    ``top``: the largest exponent field per member (finiteness)."""
    np.dot(tile, W, Z)
    for q in range(b):
        tq = t[q]
        for c in range(W.shape[1]):
            z = Z[q, c]
            top[c] = max(top[c], _as_bits(z) & _EXPONENT)
            positive = 1.0 if z > 0 else 0.0
            predicted[c] += positive
            hits[c] += positive * tq


@njit(cache=True, nogil=True)
def label_counts(X, part, W, T, predicted, hits, finite, sizes):  # pragma: no cover - compiled
    """Two classes, disjoint parts of the rows of ``X`` (``part[r]``: the part of row ``r``, or -1), part ``p``
    scored by the members ``W[p]`` (``(parts, d + 1, width)``, intercept last; a part of fewer members padded):
    add to ``predicted[p, c]`` the rows of part ``p`` that its member ``c`` predicts positive, and to
    ``hits[p, c]`` those of them whose target ``T[r, 0]`` is 1; ``finite[p, c]``: whether every margin of that
    member was finite; ``sizes[p]``: the part's rows and those of them whose target is 1 (the rest of its
    confusion counts).

    Every part's confusion counts in one read of the chunk in row order (the CPU's prefetcher keeps ahead; each
    part's rows gathered apart would read the chunk once per part), with no copy of the rows and no matrix of
    margins: each row goes to a tile of its part that stays in cache, a full tile's margins one product."""
    d = X.shape[1]
    P, _, n = W.shape
    tiles = np.zeros((P, _TILE, d + 1))
    tiles[:, :, d] = 1.0
    t = np.empty((P, _TILE))
    fill = np.zeros(P, dtype=np.int64)
    Z = np.empty((_TILE, n))
    top = np.zeros((P, n), dtype=np.int64)
    for r in range(X.shape[0]):
        p = part[r]
        if p < 0:
            continue
        q = fill[p]
        t[p, q] = T[r, 0]
        sizes[p, 0] += 1.0
        sizes[p, 1] += T[r, 0]
        for j in range(d):
            tiles[p, q, j] = X[r, j]
        fill[p] = q + 1
        if q + 1 == _TILE:
            _count_tile(tiles[p], W[p], _TILE, t[p], Z, predicted[p], hits[p], top[p])
            fill[p] = 0
    for p in range(P):
        _count_tile(tiles[p], W[p], fill[p], t[p], Z, predicted[p], hits[p], top[p])
        for c in range(n):
            finite[p, c] = top[p, c] != _EXPONENT


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
