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
>>> first_moments(x), second_moment(x, 2.0)
((2, 2.0, 1.0, 3.0), 2.0)
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


@njit(cache=True, nogil=True)
def first_moments(x: np.ndarray) -> tuple:
    """``(count, mean, min, max)`` of the non-NaN values of ``x``, the sum compensated (Neumaier): as accurate as
    numpy's pairwise one. The squared deviations from this mean are a second pass (``second_moment``, or fused
    with the median sketch's: ``_sketch.QuantileSketch.with_moments``)."""
    count = 0
    total = 0.0
    carry = 0.0
    lo = np.inf
    hi = -np.inf
    for v in x:
        if v == v:
            count += 1
            t = total + v
            carry += (total - t) + v if abs(total) >= abs(v) else (v - t) + total
            total = t
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    if count == 0:
        return 0, np.nan, np.nan, np.nan
    return count, (total + carry) / count, lo, hi


@njit(cache=True, nogil=True, inline="always")
def add_square(m2: float, carry: float, v: float, mean: float) -> tuple:
    """``m2 + (v - mean)²``, compensated (Neumaier): the running ``(m2, carry)``."""
    d = (v - mean) * (v - mean)
    t = m2 + d
    carry += (m2 - t) + d if m2 >= d else (d - t) + m2
    return t, carry


@njit(cache=True, nogil=True)
def second_moment(x: np.ndarray, mean: float) -> float:
    """The sum of squared deviations of the non-NaN values of ``x`` from ``mean``, compensated (Neumaier)."""
    m2 = 0.0
    carry = 0.0
    for v in x:
        if v == v:
            m2, carry = add_square(m2, carry, v, mean)
    return m2 + carry
