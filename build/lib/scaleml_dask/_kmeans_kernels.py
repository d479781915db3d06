"""Pure numpy kernels of k-means, shared by ``kmeans.KMeans`` (batch) and ``online.MiniBatchKMeans`` (streams).

Squared distances by one GEMM, ``‖x‖² − 2 x·c + ‖c‖²``, clipped at zero (the expansion can go slightly
negative by rounding).

>>> import numpy as np
>>> X = np.array([[0.0, 0.0], [10.0, 0.0], [9.0, 1.0]]); C = np.array([[0.0, 0.0], [10.0, 0.0]])
>>> labels, d2 = nearest(X, C)
>>> labels.tolist(), d2.tolist()
([0, 1, 1], [0.0, 0.0, 2.0])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from ._checks import assert_finite_rows, checked_weights, csr_block


def row_norms_sq(X: np.ndarray) -> np.ndarray:
    """``‖x‖²`` of every row of ``X`` (dense or CSR)."""
    if hasattr(X, "indptr"):
        return np.add.reduceat(np.append(X.data * X.data, 0.0), X.indptr[:-1]) * (np.diff(X.indptr) > 0)
    return np.einsum("ij,ij->i", X, X)


def dense_rows(X: Any) -> np.ndarray:
    """Rows of ``X`` (dense or CSR) as a float64 numpy array."""
    return X.toarray().astype(np.float64, copy=False) if hasattr(X, "indptr") else np.asarray(X, dtype=np.float64)


def sq_distances(X: np.ndarray, C: np.ndarray, x_sq: np.ndarray | None = None,
                 c_sq: np.ndarray | None = None) -> np.ndarray:
    """The ``(n, k)`` squared Euclidean distances between the rows of ``X`` and the centres ``C``."""
    x_sq = row_norms_sq(X) if x_sq is None else x_sq
    c_sq = row_norms_sq(C) if c_sq is None else c_sq
    D = np.asarray(X @ C.T)
    D *= -2.0
    D += x_sq[:, None]
    D += c_sq[None, :]
    np.maximum(D, 0.0, out=D)
    return D


def nearest(X: np.ndarray, C: np.ndarray, x_sq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The index of the nearest centre of every row (int64) and the squared distance to it (float64)."""
    D = sq_distances(X, C, x_sq)
    labels = D.argmin(axis=1)
    return labels.astype(np.int64, copy=False), D[np.arange(X.shape[0]), labels]


# ------------------------------------------------------------------------------------------------------
# The fused assignment pass of KMeans: GEMM distances, argmin and accumulation, block by block
# ------------------------------------------------------------------------------------------------------

#: Rows per GEMM sub-block: the ``(rows, k)`` products of a sub-block stay in cache while the compiled loop
#: reads them, instead of a ``(chunk rows, k)`` matrix written to and read back from memory.
SUB_ROWS = 4096
_NO_WEIGHTS = np.empty(0)
_NO_ROWS = np.empty((0, 0))
_NO_INDICES = np.empty(0, np.int32)


class Assignment(NamedTuple):
    """One block assigned to its nearest centres: per-centre weight (count) and sums, and the cost."""

    labels: np.ndarray   # (n,) int64
    d2: np.ndarray       # (n,) squared distance to the nearest centre
    weights: np.ndarray  # (k,) total sample weight assigned to each centre
    sums: np.ndarray     # (k, d) weighted sum of the rows of each centre
    inertia: float       # sum of weight * d2, accumulated in float64


def _products(X: np.ndarray, C: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, X[start:stop] C')`` for every sub-block of ``SUB_ROWS`` rows, all the products in one
    buffer: dask's workers set ``MALLOC_TRIM_THRESHOLD_``, which pins glibc's mmap threshold at 128 kB, so a
    fresh product per sub-block would be mapped, page-faulted and unmapped every time (benchmarks/README.md,
    "k-means")."""
    n = X.shape[0]
    Ct = np.ascontiguousarray(C.T)
    XC = np.empty((min(n, SUB_ROWS), len(C)))
    for s in range(0, n, SUB_ROWS):
        e = min(n, s + SUB_ROWS)
        if hasattr(X, "indptr"):
            _csr_rows_times_dense(X.data, X.indices, X.indptr, s, e, Ct, XC[:e - s])
            yield s, e, XC[:e - s]
        else:
            yield s, e, np.matmul(X[s:e], Ct, out=XC[:e - s])


def _prepared(X: np.ndarray, C: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = csr_block(X) if hasattr(X, "indptr") else np.ascontiguousarray(X, dtype=np.float64)
    w = _NO_WEIGHTS if w is None else np.ascontiguousarray(w, dtype=np.float64)
    return X, row_norms_sq(np.asarray(C, dtype=np.float64)), w


def assign(X: np.ndarray, C: np.ndarray, w: np.ndarray | None = None) -> Assignment:
    """Assign every row of ``X`` to its nearest centre of ``C`` in one fused pass over the block.

    Per sub-block of ``SUB_ROWS`` rows: ``X_s C'`` by one GEMM, then a compiled loop takes the argmin of
    ``‖c‖² − 2 x·c``, adds ``‖x‖²`` (computed in the same loop that adds the row to its centre's sum), and
    accumulates weights, sums and inertia in float64. A non-finite row gives a non-finite inertia (the
    caller's cheap NaN test).
    """
    X, c_sq, w = _prepared(X, C, w)
    n, d = X.shape
    labels, d2 = np.empty(n, np.int64), np.empty(n)
    weights, S = np.zeros(len(C)), np.zeros((len(C), d))
    inertia = 0.0
    rows = _csr_or_dense(X)  # a CSR block: sparse distances and sums over its non-zeros, dense centres
    for s, e, XC in _products(X, C):
        dense = rows[0][s:e] if not rows[4] else rows[0]
        inertia += _assign_rows(XC, c_sq, dense, *rows[1:], s, w[s:e] if len(w) else w, labels[s:e], d2[s:e],
                                weights, S)
    return Assignment(labels, d2, weights, S, inertia)


@njit(cache=True, nogil=True, inline="always")
def _nearest_of_row(XC, c_sq, i):  # pragma: no cover - compiled
    """(‖c‖² − 2 x·c of the nearest centre, its index) for row ``i`` of ``XC = X C'``; ties keep the first."""
    best, lab = np.inf, 0
    for j in range(XC.shape[1]):
        v = c_sq[j] - 2.0 * XC[i, j]
        if v < best:
            best, lab = v, j
    return best, lab


@njit(cache=True, nogil=True, inline="always")
def _row_sq_and_add(X, data, indices, indptr, i, sparse, sums, lab, wi):  # pragma: no cover - compiled
    """``‖x_i‖²`` of row ``i`` (dense ``X``, or over the non-zeros of CSR ``data / indices / indptr``), adding
    ``wi x_i`` to ``sums[lab]`` when ``lab >= 0``."""
    x_sq = 0.0
    if sparse:
        for q in range(indptr[i], indptr[i + 1]):
            x = data[q]
            x_sq += x * x
            if lab >= 0:
                sums[lab, indices[q]] += wi * x
    else:
        for f in range(X.shape[1]):
            x = X[i, f]
            x_sq += x * x
            if lab >= 0:
                sums[lab, f] += wi * x
    return x_sq


@njit(cache=True, nogil=True)
def _assign_rows(XC, c_sq, X, data, indices, indptr, sparse, s, w, labels, d2, weights, sums):  # pragma: no cover
    """Rows ``s..`` of the block (dense ``X``, or CSR: its non-zeros only) against ``XC = X C'``."""
    n = XC.shape[0]
    weighted = w.shape[0] > 0
    inertia = 0.0
    for i in range(n):
        best, lab = _nearest_of_row(XC, c_sq, i)
        wi = w[i] if weighted else 1.0
        dist = _row_sq_and_add(X, data, indices, indptr, s + i if sparse else i, sparse, sums, lab, wi) + best
        if dist < 0.0:  # rounding of the expansion; NaN stays NaN
            dist = 0.0
        labels[i] = lab
        d2[i] = dist
        weights[lab] += wi
        inertia += wi * dist
    return inertia


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _csr_rows_times_dense(data, indices, indptr, s, e, Ct, out):  # pragma: no cover - compiled
    """``out = X[s:e] C'`` for CSR ``X`` (``Ct = C'``, contiguous rows of ``k``)."""
    k = Ct.shape[1]
    for i in range(s, e):
        for c in range(k):
            out[i - s, c] = 0.0
        for q in range(indptr[i], indptr[i + 1]):
            v = data[q]
            j = indices[q]
            for c in range(k):
                out[i - s, c] += v * Ct[j, c]


def _csr_or_dense(X: Any) -> tuple:
    """The arguments the row kernels take for a block: (X, data, indices, indptr, sparse)."""
    if hasattr(X, "indptr"):
        return _NO_ROWS, X.data, X.indices, X.indptr, True
    return X, _NO_WEIGHTS, _NO_INDICES, _NO_INDICES, False


def update_nearest(X: np.ndarray, C: np.ndarray, w: np.ndarray | None, d2: np.ndarray, labels: np.ndarray,
                   offset: int) -> float:
    """Where a centre of ``C`` (numbered from ``offset``) is strictly nearer to a row than its ``d2``, set that
    row's ``d2`` and ``labels`` to it, in place (ties keep the earlier centre); the same sub-block GEMMs and
    compiled loop as ``assign``. Returns the weighted sum of the new distances (non-finite for a non-finite
    row: the caller's NaN test)."""
    X, c_sq, w = _prepared(X, C, w)
    total = 0.0
    rows = _csr_or_dense(X)
    for s, e, XC in _products(X, C):
        dense = rows[0][s:e] if not rows[4] else rows[0]
        total += _update_rows(XC, c_sq, dense, *rows[1:], s, w[s:e] if len(w) else w, d2[s:e], labels[s:e], offset)
    return total


@njit(cache=True, nogil=True)
def _update_rows(XC, c_sq, X, data, indices, indptr, sparse, s, w, d2, labels, offset):  # pragma: no cover
    n = XC.shape[0]
    weighted = w.shape[0] > 0
    total = 0.0
    for i in range(n):
        best, lab = _nearest_of_row(XC, c_sq, i)
        dist = _row_sq_and_add(X, data, indices, indptr, s + i if sparse else i, sparse, X[:0, :0], -1, 0.0) + best
        if dist < 0.0:  # rounding of the expansion; NaN stays NaN
            dist = 0.0
        if not d2[i] <= dist:
            d2[i] = dist
            labels[i] = lab + offset
        total += (w[i] if weighted else 1.0) * dist
    return total


# ------------------------------------------------------------------------------------------------------
# Block kernels of the two passes (pure functions of a block; combined by a fixed tree)
# ------------------------------------------------------------------------------------------------------


class Far(NamedTuple):
    """The rows farthest from their centres (decreasing ``d2``, ties by row): where empty clusters go."""

    d2: np.ndarray
    rows: np.ndarray
    x: np.ndarray
    w: np.ndarray
    labels: np.ndarray


class LloydPart(NamedTuple):
    """What one Lloyd pass needs from a block (or from several, once combined)."""

    weights: np.ndarray
    sums: np.ndarray
    inertia: float
    far: Far
    moments: np.ndarray | None  # (3, d): rows, column sums, column sums of squares (first pass only)


def _checked(x: np.ndarray, w: np.ndarray | None, chunk_index: int, row_start: int
             ) -> tuple[np.ndarray, np.ndarray | None]:
    x = csr_block(x) if hasattr(x, "indptr") else np.asarray(x)
    if w is not None:
        w = checked_weights(w, chunk_index, row_start)
    return x, w


def _nonfinite(x: np.ndarray, inertia: float, chunk_index: int, row_start: int) -> None:
    if not np.isfinite(inertia):
        assert_finite_rows(x, "X", chunk_index, row_start)
        raise ValueError("the squared distances overflow float64: X or the centres are too large")


def lloyd_block(x: np.ndarray, w: np.ndarray | None, *, centers: np.ndarray, n_far: int, with_moments: bool,
                chunk_index: int = -1, row_start: int = 0) -> LloydPart:
    """One Lloyd step on a block: per-centre weights and sums, inertia, the ``n_far`` farthest rows, and
    (``with_moments``) the column moments the variance-scaled tolerance needs."""
    x, w = _checked(x, w, chunk_index, row_start)
    a = assign(x, centers, w)
    _nonfinite(x, a.inertia, chunk_index, row_start)
    moments = None
    m = min(n_far, len(a.d2))
    top = np.argpartition(a.d2, len(a.d2) - m)[len(a.d2) - m:] if m else np.empty(0, np.int64)
    top = top[np.lexsort((top, -a.d2[top]))]
    xf = dense_rows(x[top])
    far = Far(a.d2[top], top + row_start, xf, np.ones(m) if w is None else w[top], a.labels[top])
    if with_moments:
        n = x.shape[0]
        if hasattr(x, "indptr"):
            sums = np.bincount(x.indices, weights=x.data, minlength=x.shape[1])
            sq = np.bincount(x.indices, weights=x.data * x.data, minlength=x.shape[1])
        else:
            x64 = np.asarray(x, dtype=np.float64)
            sums, sq = x64.sum(axis=0), np.einsum("ij,ij->j", x64, x64)
        moments = np.stack([np.full(x.shape[1], float(n)), sums, sq])
    return LloydPart(a.weights, a.sums, a.inertia, far, moments)


def _merge_far(fars: list[Far], m: int) -> Far:
    d2 = np.concatenate([f.d2 for f in fars])
    rows = np.concatenate([f.rows for f in fars])
    order = np.lexsort((rows, -d2))[:m]
    return Far(d2[order], rows[order], np.concatenate([f.x for f in fars])[order],
               np.concatenate([f.w for f in fars])[order], np.concatenate([f.labels for f in fars])[order])


def combine_lloyd(parts: list[LloydPart]) -> LloydPart:
    """Sum the parts in their order (deterministic) and keep the farthest rows of all."""
    moments = None if parts[0].moments is None else sum(p.moments for p in parts[1:]) + parts[0].moments
    return LloydPart(sum(p.weights for p in parts[1:]) + parts[0].weights,
                     sum(p.sums for p in parts[1:]) + parts[0].sums,
                     float(sum(p.inertia for p in parts)), _merge_far([p.far for p in parts], len(parts[0].weights)),
                     moments)


class CandidatePart(NamedTuple):
    """Weighted candidate centres standing for a block (or, once combined, for several): every row of the
    block counts towards its nearest candidate, so the weights sum to the block's weight; ``cost`` is the
    block's weighted squared distance to them."""

    x: np.ndarray
    weights: np.ndarray
    cost: float


#: k-means|| seeds a chunk on at most this many of its rows (a uniform sample, drawn in the same pass): the
#: rounds' cost stays that of a small block however large the chunk.
SEED_ROWS = 32_768
#: Combined candidates beyond this many rows (or ``MAX_CANDIDATE_BYTES``) are summarised again by the same
#: seeding (``reduce_candidates``), so that the client's final step stays small at any number of chunks.
MAX_CANDIDATE_ROWS = 200_000
MAX_CANDIDATE_BYTES = 256 * 2**20


def seed_candidates(x: np.ndarray, w: np.ndarray | None, ell: float, rounds: int, rng: np.random.Generator
                    ) -> CandidatePart:
    """k-means|| (Bahmani et al., 2012) within ``x``: a first row drawn ∝ weight, then ``rounds`` rounds each
    adding every row with probability ``min(1, ℓ w d² / cost)`` (d² to the nearest candidate so far, computed
    for the new candidates only), then the weight each candidate attracts. The block is in memory once for
    all rounds: no pass over the data per round."""
    n, d = x.shape
    total_w = float(n if w is None else w.sum())
    if n == 0 or total_w <= 0:
        return CandidatePart(np.empty((0, d)), np.empty(0), 0.0)
    first = int(rng.integers(n)) if w is None else int(np.searchsorted(np.cumsum(w), rng.random() * total_w,
                                                                        side="right"))
    cands = [dense_rows(x[[min(first, n - 1)]])]  # dense or CSR rows
    d2, labels = np.full(n, np.inf), np.zeros(n, np.int32)
    cost = update_nearest(x, cands[0], w, d2, labels, 0)
    count = 1
    for _ in range(rounds):
        if not cost > 0:
            break
        wd2 = d2 if w is None else w * d2
        new = np.flatnonzero(rng.random(n) * cost < ell * wd2)
        if not len(new):
            break
        cands.append(dense_rows(x[new]).reshape(len(new), d))
        cost = update_nearest(x, cands[-1], w, d2, labels, count)
        count += len(new)
    weights = np.bincount(labels, weights=w, minlength=count).astype(np.float64)
    return CandidatePart(np.concatenate(cands), weights, float(cost))


def candidate_block(x: np.ndarray, w: np.ndarray | None, *, ell: float, rounds: int, seed: int,
                    chunk_index: int = -1, row_start: int = 0) -> CandidatePart:
    """The k-means|| initialisation's only pass, on one block: ``seed_candidates`` on the block, or on a uniform
    sample of ``SEED_ROWS`` of its rows if it has more (the candidates' weights then scaled to the block's:
    they only weigh the candidates against each other). The draws come from a generator seeded by
    ``(seed, chunk_index)``, so the candidates do not depend on which worker runs the block."""
    x, w = _checked(x, w, chunk_index, row_start)
    rng = np.random.default_rng([seed, max(chunk_index, 0)])
    n = x.shape[0]  # (a CSR block has no len)
    if n > SEED_ROWS:
        rows = np.sort(rng.choice(n, SEED_ROWS, replace=False))
        ws = None if w is None else w[rows]
        part = seed_candidates(x[rows], ws, ell, rounds, rng)
        total = float(n if w is None else w.sum())
        sampled = float(SEED_ROWS if ws is None else ws.sum())
        if sampled > 0:  # the sample's weights stand for the block's
            _nonfinite(x, float(np.sum(x)), chunk_index, row_start)  # the rows the sample left out too
            scale = total / sampled
            return CandidatePart(part.x, part.weights * scale, part.cost * scale)
    part = seed_candidates(x, w, ell, rounds, rng)
    _nonfinite(x, part.cost, chunk_index, row_start)
    return part


def reduce_candidates(part: CandidatePart, ell: float, rounds: int, seed: int) -> CandidatePart:
    """Weighted candidates summarised by ``seed_candidates`` on themselves (their weights carried to the
    nearest new candidate), when there are more than ``MAX_CANDIDATE_ROWS`` / ``MAX_CANDIDATE_BYTES``:
    the composition of k-means|| summaries of Ailon, Jaiswal & Monteleoni (2009, streaming k-means)."""
    x = part.x
    if len(x) <= min(MAX_CANDIDATE_ROWS, MAX_CANDIDATE_BYTES // max(1, 8 * x.shape[1])):
        return part
    target = min(MAX_CANDIDATE_ROWS, MAX_CANDIDATE_BYTES // max(1, 8 * x.shape[1])) // 4
    small = seed_candidates(x, part.weights, max(ell, target / max(rounds, 1)), rounds,
                            np.random.default_rng([seed, len(x)]))
    return CandidatePart(small.x, small.weights, part.cost + small.cost)


def combine_candidates(parts: list[CandidatePart], ell: float = 0.0, rounds: int = 0, seed: int = 0
                       ) -> CandidatePart:
    """Concatenate the parts' candidates in block order (summarised again past the size limits)."""
    joined = CandidatePart(np.concatenate([p.x for p in parts]), np.concatenate([p.weights for p in parts]),
                           float(sum(p.cost for p in parts)))
    return reduce_candidates(joined, ell, rounds, seed) if rounds else joined
