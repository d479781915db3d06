"""Kernel of ``RidgeCV``'s pass: the raw Gram matrices of a block's rows grouped by membership pattern.

Rows are copied, as they come, into one cache-sized buffer per pattern (``[x | y | 1]``, the ones column written
once), and a full buffer is folded into its pattern's Gram by one symmetric rank-k update (``b.T @ b``, which numpy
hands to BLAS's SYRK, as ``_tsqr._raw_gram`` does for all rows): the block is read once and the products cost what
one Gram of the block costs, however many patterns there are. The buffers are the thread's scratch
(``_scratch``), so a chunk's task maps no fresh memory for them.

A row's pattern comes from an array (``pattern_grams``: any split plan) or, for k folds (``fold_grams``), is
computed inside the copy loop: the test fold of the row's position in the seeded permutation of global row indices
(``_folds``), a tile of rows at a time — no permutation, fold or row-index array is ever made for the block.

>>> import numpy as np
>>> X = np.arange(12.0).reshape(6, 2); y = np.arange(6.0); p = np.array([0, 1, 0, 1, 1, 0])
>>> G, n = pattern_grams(X, y, p, 2)
>>> n.tolist(), bool(np.allclose(G[1], np.c_[X, y, np.ones(6)][p == 1].T @ np.c_[X, y, np.ones(6)][p == 1]))
([3, 3], True)
>>> from ._folds import Permutation, fold_bounds
>>> perm, bounds = Permutation.seeded(6, 0), fold_bounds(6, 2)
>>> H, m = fold_grams(X, y, 0, perm, bounds)
>>> bool(np.allclose(H, pattern_grams(X, y, perm.folds(np.arange(6), bounds), 2)[0]))
True
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from ._folds import TILE, Permutation, permute_tile, range_of
from ._scratch import scratch

#: Rows per fold's buffer: the k buffers stay in cache together, each full one enough rows for one SYRK at
#: speed (fewer than ``_tsqr.SUB_ROWS``, which has one buffer; the RidgeCV table of benchmarks/README.md).
SUB_ROWS = 1000
_IOTA = np.arange(TILE, dtype=np.int64)


@njit(cache=True, nogil=True, inline="always")
def _copy_row(X, y, i, p, bufs, fill, counts):  # pragma: no cover - compiled
    """Copy row ``i`` (x, then y) into pattern ``p``'s buffer; True when that filled it."""
    d = X.shape[1]
    r = fill[p]
    for j in range(d):
        bufs[p, r, j] = X[i, j]
    bufs[p, r, d] = y[i]
    fill[p] = r + 1
    counts[p] += 1
    return r + 1 == bufs.shape[1]


@njit(cache=True, nogil=True)
def _fill(X, y, pattern, start, bufs, fill, counts):  # pragma: no cover - compiled
    """Copy rows ``start, start + 1, ...`` into their pattern's buffer until one is full; returns ``(the next
    row, the full pattern)``, or ``(n, -1)`` at the end of the block."""
    n = X.shape[0]
    for i in range(start, n):
        if _copy_row(X, y, i, pattern[i], bufs, fill, counts):
            return i + 1, pattern[i]
    return n, -1


@njit(cache=True, nogil=True)
def _fill_folds(X, y, row_start, n, bits, low_bits, keys, tables, bounds, start, bufs, fill, counts, tile, x,
                pending, v):  # pragma: no cover - compiled
    """As ``_fill``, the pattern of row ``i`` being the fold of its position ``perm(row_start + i)`` (``keys``
    empty: the identity) among the ranges ending at ``bounds``. The folds of the ``TILE`` rows around ``i`` are
    computed together into ``tile`` (its first row in ``tile[TILE]``), kept for the next call."""
    m = X.shape[0]
    i = start
    while i < m:
        t0 = i - i % TILE
        t1 = min(m, t0 + TILE)
        if tile[TILE] != t0:
            if keys.shape[0]:
                permute_tile(_IOTA, 0, t1 - t0, row_start + t0, n, bits, low_bits, keys, tables, x, pending, v)
                for r in range(t1 - t0):
                    tile[r] = range_of(np.int64(x[r]), bounds)
            else:
                for r in range(t1 - t0):
                    tile[r] = range_of(row_start + t0 + r, bounds)
            tile[TILE] = t0
        for r in range(i, t1):
            p = tile[r - t0]
            if _copy_row(X, y, r, p, bufs, fill, counts):
                return r + 1, p
        i = t1
    return m, -1


def _grams(X: np.ndarray, y: np.ndarray, n_patterns: int, sub_rows: int,
           fill_until_full: Callable) -> tuple[np.ndarray, np.ndarray]:
    """Run a ``_fill``-like kernel over the block, folding each full buffer into its pattern's Gram, then the
    partly filled ones: the Grams and the rows of each pattern."""
    n, d = X.shape
    q = d + 2
    bufs = scratch("pattern_grams", (n_patterns, sub_rows, q))
    bufs[:, :, d + 1] = 1.0
    fill = np.zeros(n_patterns, dtype=np.int64)
    counts = np.zeros(n_patterns, dtype=np.int64)
    G = np.zeros((n_patterns, q, q))
    i = 0
    while i < n:
        i, p = fill_until_full(i, bufs, fill, counts)
        if p >= 0:
            b = bufs[p]
            G[p] += b.T @ b
            fill[p] = 0
    for p in range(n_patterns):
        if fill[p]:
            b = bufs[p, :fill[p]]
            G[p] += b.T @ b
    return G, counts


def _float_rows(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64).reshape(-1)


def pattern_grams(X: np.ndarray, y: np.ndarray, pattern: np.ndarray, n_patterns: int,
                  sub_rows: int = SUB_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The raw Gram of ``[X | y | 1]`` of the rows of each pattern ``(n_patterns, d + 2, d + 2)``, and the rows
    of each (``pattern``: int, ``0 <= pattern < n_patterns``)."""
    X, y = _float_rows(X, y)
    pattern = np.ascontiguousarray(pattern, dtype=np.int64)
    return _grams(X, y, n_patterns, sub_rows,
                  lambda i, bufs, fill, counts: _fill(X, y, pattern, i, bufs, fill, counts))


def fold_grams(X: np.ndarray, y: np.ndarray, row_start: int, perm: Permutation, bounds: np.ndarray,
               sub_rows: int = SUB_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """``pattern_grams`` of k folds: row ``i`` of the block (global row ``row_start + i``) is in the fold whose
    range of ``0..n-1`` (upper ``bounds``) holds ``perm(row_start + i)`` — ``perm.folds`` of the block's rows."""
    X, y = _float_rows(X, y)
    bounds = np.ascontiguousarray(bounds, dtype=np.int64)
    keys = np.zeros(0, dtype=np.uint64) if perm.keys is None else perm.keys
    bits, low_bits = perm.bits
    tables = perm.tables() if len(keys) else np.zeros((4, 0), dtype=np.uint64)
    tile = np.full(TILE + 1, -1, dtype=np.int64)
    x, v, pending = np.empty(TILE, dtype=np.uint64), np.empty(TILE, dtype=np.uint64), np.empty(TILE, dtype=np.int64)
    return _grams(X, y, len(bounds), sub_rows,
                  lambda i, bufs, fill, counts: _fill_folds(X, y, int(row_start), perm.n, bits, low_bits, keys,
                                                            tables, bounds, i, bufs, fill, counts, tile, x, pending,
                                                            v))
