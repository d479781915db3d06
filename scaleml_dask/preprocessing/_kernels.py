"""Compiled kernels of the table transforms: a chunk's output written row by row, and a column's moments.

A transformed chunk is a few affine columns (imputed, scaled: ``missing if x is NaN else a·x + b``) and one-hot
groups. Written column by column, a C-ordered block of a few hundred columns costs a cache miss per value
(strided stores); ``fill_dense`` / ``fill_csr`` write each row whole instead, reading the inputs column-major
(benchmarks/README.md, "Tables").

>>> import numpy as np
>>> X = np.array([[1.0, np.nan]]); H = np.array([[2, -1]])
>>> out = np.zeros((2, 5))
>>> fill_dense(out, X, np.array([0.0]), np.array([2.0]), np.array([1.0]), np.array([0.0]), np.array([0]), H,
...            np.array([1]), np.array([1.0]), np.empty((0, 2), np.int64), np.empty(0, np.int64))
>>> out.tolist()
[[3.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
>>> x = np.array([1.0, np.nan, 3.0])
>>> first_moments(x), second_moment(x, 2.0), level_counts(np.array([2, -1, 0, 2], np.int32), 3).tolist()
((2, 2.0, 1.0, 3.0), 2.0, [1, 0, 2])
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def fill_dense(out: np.ndarray, X: np.ndarray, c: np.ndarray, a: np.ndarray, b: np.ndarray, missing: np.ndarray,
               pos: np.ndarray, H: np.ndarray, offset: np.ndarray, value: np.ndarray, stale: np.ndarray,
               stale_offset: np.ndarray) -> None:
    """Into a block of zeros ``out`` but for the one-hot cells ``stale`` / ``stale_offset`` set there before (a
    reused block: cleared here, row by row, while the row is in cache), row by row:
    ``out[i, pos[j]] = missing[j] if X[j, i] is NaN else a[j]·(X[j, i] - c[j]) + b[j]`` and
    ``out[i, offset[g] + H[g, i]] = value[g]`` where ``H[g, i] >= 0``."""
    n = out.shape[0]
    for i in range(n):
        for g in range(stale.shape[0]):
            h = stale[g, i]
            if h >= 0:
                out[i, stale_offset[g] + h] = 0.0
        for j in range(X.shape[0]):
            x = X[j, i]
            out[i, pos[j]] = missing[j] if x != x else (x - c[j]) * a[j] + b[j]
        for g in range(H.shape[0]):
            h = H[g, i]
            if h >= 0:
                out[i, offset[g] + h] = value[g]


@njit(cache=True, nogil=True)
def fill_csr(X: np.ndarray, c: np.ndarray, a: np.ndarray, b: np.ndarray, missing: np.ndarray, pos: np.ndarray,
             H: np.ndarray, offset: np.ndarray, value: np.ndarray, order: np.ndarray) -> tuple:
    """The CSR arrays ``(data, indices, indptr)`` of the same rows as ``fill_dense`` (columns in the order
    ``order`` gives: dense columns ``0..k-1`` then groups ``k..``, sorted by output position), zeros left out."""
    k, m = X.shape[0], H.shape[0]
    n = X.shape[1] if k else H.shape[1]
    data = np.empty(n * (k + m))
    indices = np.empty(n * (k + m), dtype=np.int32)
    indptr = np.empty(n + 1, dtype=np.int64)
    nnz = 0
    indptr[0] = 0
    for i in range(n):
        nnz = fill_row(i, X, c, a, b, missing, pos, H, offset, value, order, data, indices, nnz)
        indptr[i + 1] = nnz
    return data[:nnz], indices[:nnz], indptr


@njit(cache=True, nogil=True, inline="always")
def fill_row(i: int, X: np.ndarray, c: np.ndarray, a: np.ndarray, b: np.ndarray, missing: np.ndarray,
             pos: np.ndarray, H: np.ndarray, offset: np.ndarray, value: np.ndarray, order: np.ndarray,
             data: np.ndarray, indices: np.ndarray, nnz: int) -> int:
    """Row ``i``'s non-zeros (``fill_csr``'s) written at ``data[nnz:]`` / ``indices[nnz:]``; the new ``nnz``."""
    k = X.shape[0]
    for t in order:
        if t < k:
            x = X[t, i]
            v = missing[t] if x != x else (x - c[t]) * a[t] + b[t]
            col = pos[t]
        else:
            g = t - k
            h = H[g, i]
            if h < 0:
                continue
            v = value[g]
            col = offset[g] + h
        if v != 0.0:
            data[nnz] = v
            indices[nnz] = col
            nnz += 1
    return nnz


#: Values summed plainly (in lanes) before the block's sum joins the compensated total: the moments' error is then
#: that of a sum of ``BLOCK`` values (a few ulps, as numpy's pairwise sum at its base) whatever the column's length.
BLOCK = 32


@njit(cache=True, nogil=True, inline="always")
def add_compensated(total: float, carry: float, v: float) -> tuple:
    """``total + v``, compensated (Neumaier): the running ``(total, carry)``."""
    t = total + v
    carry += (total - t) + v if abs(total) >= abs(v) else (v - t) + total
    return t, carry


@njit(cache=True, nogil=True, inline="always")
def _take(v: float, s: float, c: int, lo: float, hi: float) -> tuple:
    """One lane's running sum, count, least and greatest with ``v`` (NaN: left out), without a branch."""
    ok = v == v
    return s + (v if ok else 0.0), c + (1 if ok else 0), v if v < lo else lo, v if v > hi else hi


@njit(cache=True, nogil=True)
def first_moments(x: np.ndarray) -> tuple:
    """``(count, mean, min, max)`` of the non-NaN values of ``x``: blocks of ``BLOCK`` values summed in four
    independent lanes without a branch (the processor overlaps them), the blocks' sums compensated (Neumaier).
    The squared deviations from this mean are a second pass (``second_moment``, or fused with the median
    sketch's: ``_sketch.QuantileSketch.with_moments``)."""
    n = x.shape[0]
    m = n - n % BLOCK
    total = 0.0
    carry = 0.0
    c0 = c1 = c2 = c3 = 0
    lo0 = lo1 = lo2 = lo3 = np.inf
    hi0 = hi1 = hi2 = hi3 = -np.inf
    for i0 in range(0, m, BLOCK):
        s0 = s1 = s2 = s3 = 0.0
        for i in range(i0, i0 + BLOCK, 4):
            s0, c0, lo0, hi0 = _take(x[i], s0, c0, lo0, hi0)
            s1, c1, lo1, hi1 = _take(x[i + 1], s1, c1, lo1, hi1)
            s2, c2, lo2, hi2 = _take(x[i + 2], s2, c2, lo2, hi2)
            s3, c3, lo3, hi3 = _take(x[i + 3], s3, c3, lo3, hi3)
        total, carry = add_compensated(total, carry, (s0 + s1) + (s2 + s3))
    for i in range(m, n):
        v = x[i]
        if v == v:
            c0 += 1
            total, carry = add_compensated(total, carry, v)
            lo0 = v if v < lo0 else lo0
            hi0 = v if v > hi0 else hi0
    count = c0 + c1 + c2 + c3
    if count == 0:
        return 0, np.nan, np.nan, np.nan
    return count, (total + carry) / count, min(min(lo0, lo1), min(lo2, lo3)), max(max(hi0, hi1), max(hi2, hi3))


@njit(cache=True, nogil=True, inline="always")
def square(v: float, mean: float) -> float:
    """``(v - mean)²``, 0 for a NaN ``v``."""
    d = v - mean
    return d * d if v == v else 0.0


@njit(cache=True, nogil=True)
def second_moment(x: np.ndarray, mean: float) -> float:
    """The sum of squared deviations of the non-NaN values of ``x`` from ``mean``: blocks of ``BLOCK`` squares
    in two lanes, the blocks' sums compensated (Neumaier) — the same sums in the same order as the median
    sketch's pass (``_sketch._histogram``), so equal to it to the bit."""
    n = x.shape[0]
    m = n - n % BLOCK
    m2 = 0.0
    carry = 0.0
    for i0 in range(0, m, BLOCK):
        s0 = s1 = 0.0
        for i in range(i0, i0 + BLOCK, 2):
            s0 += square(x[i], mean)
            s1 += square(x[i + 1], mean)
        m2, carry = add_compensated(m2, carry, s0 + s1)
    for i in range(m, n):
        if x[i] == x[i]:
            m2, carry = add_compensated(m2, carry, square(x[i], mean))
    return m2 + carry


@njit(cache=True, nogil=True)
def level_counts(codes: np.ndarray, n_levels: int) -> np.ndarray:
    """How many times each level ``0..n_levels-1`` occurs among ``codes`` (negative codes, missing or unknown,
    left out), in one pass."""
    counts = np.zeros(n_levels, np.int64)
    for c in codes:
        if c >= 0:
            if c >= n_levels:
                raise ValueError("a category code beyond the column's levels")
            counts[c] += 1
    return counts
