"""Input similarities: perplexity calibration and the symmetric sparse P (numba, parallel).

Each row's Gaussian bandwidth is found by bisection on its precision so that the entropy of
``p_{j|i}`` over the row's k nearest neighbours equals ``log(perplexity)``. The joint
``P = (p_{j|i} + p_{i|j}) / (2n)`` is built straight into CSR with an exact nonzero count, so the
only arrays are O(n·k): no dense matrix and no COO temporaries.

>>> import numpy as np
>>> d = np.tile(np.arange(1.0, 31.0), (3, 1))
>>> p = conditional_probabilities(d, perplexity=10.0)
>>> bool(abs(np.exp(-(p[0] * np.log(p[0])).sum()) - 10.0) < 1e-3)
True
"""

from __future__ import annotations

import numba
import numpy as np

_TOL = 1e-10
_MAX_STEPS = 200


@numba.njit(parallel=True, cache=True)
def _calibrate(distances: np.ndarray, target_entropy: float, out: np.ndarray) -> None:
    n, k = distances.shape
    for i in numba.prange(n):
        sq = np.empty(k)
        d0 = np.inf
        for j in range(k):
            sq[j] = np.float64(distances[i, j]) ** 2
            d0 = min(d0, sq[j])
        for j in range(k):
            sq[j] -= d0
        beta, lo, hi = 1.0, 0.0, np.inf
        for _ in range(_MAX_STEPS):
            total = 0.0
            weighted = 0.0
            for j in range(k):
                w = np.exp(-beta * sq[j])
                total += w
                weighted += w * sq[j]
            entropy = np.log(total) + beta * weighted / total
            if abs(entropy - target_entropy) < _TOL:
                break
            if entropy > target_entropy:  # too flat: sharpen
                lo = beta
                beta = beta * 2.0 if hi == np.inf else 0.5 * (beta + hi)
            else:
                hi = beta
                beta = 0.5 * (beta + lo)
        total = 0.0
        for j in range(k):
            sq[j] = np.exp(-beta * sq[j])
            total += sq[j]
        for j in range(k):
            out[i, j] = sq[j] / total


def conditional_probabilities(distances: np.ndarray, perplexity: float, *,
                              overwrite_input: bool = False) -> np.ndarray:
    """Row-stochastic ``p_{j|i}`` (n, k, float32) whose rows have the given perplexity.

    ``distances`` are Euclidean distances to each row's k nearest neighbours (self excluded).
    The bisection runs in float64 to an entropy tolerance of 1e-10. ``overwrite_input`` writes the
    result over a float32 ``distances`` (one (n, k) array less at the peak).
    """
    distances = np.ascontiguousarray(distances)
    reuse = overwrite_input and distances.dtype == np.float32 and distances.flags.writeable
    out = distances if reuse else np.empty(distances.shape, dtype=np.float32)
    _calibrate(distances, float(np.log(perplexity)), out)  # each row is read before it is written
    return out


@numba.njit(parallel=True, cache=True)
def _sort_by_index(indices: np.ndarray, p_cond: np.ndarray) -> None:
    """Sort each row's neighbours (and their probabilities) by neighbour index, in place."""
    n, k = indices.shape
    for i in numba.prange(n):
        o = np.argsort(indices[i])
        cols = indices[i][o]
        vals = p_cond[i][o]
        indices[i] = cols
        p_cond[i] = vals


@numba.njit(parallel=True, cache=True)
def _reverse_positions(indices: np.ndarray, out: np.ndarray) -> None:
    """For each edge i->j, the position of i in j's (sorted) row, or -1 where j does not list i."""
    n, k = indices.shape
    for i in numba.prange(n):
        for a in range(k):
            j = indices[i, a]
            pos = np.searchsorted(indices[j], i)
            out[i, a] = pos if pos < k and indices[j, pos] == i else -1


@numba.njit(cache=True)
def _row_lengths(indices: np.ndarray, rev: np.ndarray) -> np.ndarray:
    """Nonzeros per row of P: the row's own k neighbours plus the one-way edges that point at it."""
    n, k = indices.shape
    lengths = np.full(n, k, dtype=np.int64)
    for i in range(n):
        for a in range(k):
            if rev[i, a] < 0:
                lengths[indices[i, a]] += 1
    return lengths


@numba.njit(cache=True)
def _build_csr(indices, p_cond, rev, scale, indptr, col, val):
    n, k = indices.shape
    # row i holds its own k neighbours first, then the reverse edges j->i that i did not list
    fill = indptr[:-1] + k
    for i in range(n):
        start = indptr[i]
        for a in range(k):
            j = indices[i, a]
            p = np.float64(p_cond[i, a])
            col[start + a] = j
            if rev[i, a] >= 0:
                val[start + a] = (p + p_cond[j, rev[i, a]]) * scale
            else:
                val[start + a] = p * scale
                col[fill[j]] = i
                val[fill[j]] = p * scale
                fill[j] += 1


def joint_probabilities(indices: np.ndarray, p_cond: np.ndarray, *, overwrite_input: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric ``P = (p_{j|i} + p_{i|j}) / (2n)`` in CSR form ``(indptr, indices, data)``.

    ``indices`` (n, k) are the neighbour lists, ``p_cond`` (n, k) their conditional probabilities.
    P sums to 1; data are float32, column indices int32, row pointers int64. Besides P, the only
    temporary is one (n, k) array of positions, in the smallest integer type that holds k (int8 up to
    the default k = 90); ``overwrite_input`` lets the rows of int32 ``indices`` / float32 ``p_cond`` be
    sorted in place instead of in copies.
    """
    copy = not overwrite_input
    indices = np.array(indices, dtype=np.int32, order="C", copy=copy or None)
    p_cond = np.array(p_cond, dtype=np.float32, order="C", copy=copy or None)
    n, k = indices.shape
    _sort_by_index(indices, p_cond)
    rev = np.empty((n, k), dtype=np.int8 if k < 2**7 else np.int16 if k < 2**15 else np.int32)
    _reverse_positions(indices, rev)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(_row_lengths(indices, rev), out=indptr[1:])
    col = np.empty(indptr[-1], dtype=np.int32)
    val = np.empty(indptr[-1], dtype=np.float32)
    _build_csr(indices, p_cond, rev, 1.0 / (2.0 * n), indptr, col, val)
    return indptr, col, val
