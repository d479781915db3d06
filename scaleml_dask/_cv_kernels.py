"""Kernel of ``RidgeCV``'s pass: the raw Gram matrices of a block's rows grouped by membership pattern.

Rows are copied, as they come, into one cache-sized buffer per pattern (``[x | y | 1]``, as ``_tsqr._raw_gram``
copies them into one buffer), and a full buffer is folded into its pattern's Gram by one BLAS product: the
block is read once and the products cost what one Gram of the block costs, however many patterns there are.

>>> import numpy as np
>>> X = np.arange(12.0).reshape(6, 2); y = np.arange(6.0); p = np.array([0, 1, 0, 1, 1, 0])
>>> G, n = pattern_grams(X, y, p, 2)
>>> n.tolist(), bool(np.allclose(G[1], np.c_[X, y, np.ones(6)][p == 1].T @ np.c_[X, y, np.ones(6)][p == 1]))
([3, 3], True)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._folds import permute_one

#: Rows per buffer (as ``_tsqr.SUB_ROWS``: in cache, and enough rows for BLAS to run at speed).
SUB_ROWS = 2000


@njit(cache=True, nogil=True)
def _grams(X, y, pattern, n_patterns, sub_rows, G, counts):  # pragma: no cover - compiled
    n, d = X.shape
    q = d + 2
    buf = np.empty((n_patterns, sub_rows, q))
    fill = np.zeros(n_patterns, dtype=np.int64)
    for i in range(n):
        p = pattern[i]
        r = fill[p]
        for j in range(d):
            buf[p, r, j] = X[i, j]
        buf[p, r, d] = y[i]
        buf[p, r, d + 1] = 1.0
        r += 1
        if r == sub_rows:
            b = buf[p]
            G[p] += np.dot(b.T, b)
            counts[p] += r
            r = 0
        fill[p] = r
    for p in range(n_patterns):
        r = fill[p]
        if r:
            b = np.ascontiguousarray(buf[p, :r])
            G[p] += np.dot(b.T, b)
            counts[p] += r


@njit(cache=True, nogil=True)
def _fold_grams(X, y, row_start, n, bits, low_bits, keys, bounds, sub_rows, G, counts):  # pragma: no cover
    """``_grams`` where a row's pattern is its k-fold: the permuted row index's range in ``bounds``, computed
    here row by row (no index array)."""
    lo = np.uint64(low_bits)
    lo_mask = (np.uint64(1) << lo) - np.uint64(1)
    hi_mask = (np.uint64(1) << np.uint64(bits - low_bits)) - np.uint64(1)
    limit = np.uint64(n)
    k = bounds.shape[0]
    pattern = np.empty(X.shape[0], dtype=np.int64)
    for i in range(X.shape[0]):
        p = np.int64(permute_one(np.uint64(row_start + i), limit, lo, lo_mask, hi_mask, keys))
        f = 0
        while f < k - 1 and p >= bounds[f]:
            f += 1
        pattern[i] = f
    _grams(X, y, pattern, k, sub_rows, G, counts)
    return pattern


def fold_grams(X: np.ndarray, y: np.ndarray, row_start: int, perm: object, bounds: np.ndarray,
               sub_rows: int = SUB_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pattern_grams`` for k folds of a seeded permutation (``_folds.Permutation``) of the rows: the Grams,
    the rows of each fold, and each row's fold."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64).reshape(-1)
    k, q = len(bounds), X.shape[1] + 2
    G = np.zeros((k, q, q))
    counts = np.zeros(k, dtype=np.int64)
    pattern = _fold_grams(X, y, row_start, perm.n, *perm.bits, perm.keys, np.asarray(bounds, dtype=np.int64),
                          sub_rows, G, counts)
    return G, counts, pattern


def pattern_grams(X: np.ndarray, y: np.ndarray, pattern: np.ndarray, n_patterns: int,
                  sub_rows: int = SUB_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The raw Gram of ``[X | y | 1]`` of the rows of each pattern ``(n_patterns, d + 2, d + 2)``, and the rows
    of each (``pattern``: int64, ``0 <= pattern < n_patterns``)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64).reshape(-1)
    q = X.shape[1] + 2
    G = np.zeros((n_patterns, q, q))
    counts = np.zeros(n_patterns, dtype=np.int64)
    _grams(X, y, np.ascontiguousarray(pattern, dtype=np.int64), n_patterns, sub_rows, G, counts)
    return G, counts
