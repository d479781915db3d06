"""Kernel of ``RidgeCV``'s pass: the raw Gram matrices of a block's rows grouped by membership pattern.

Rows are copied, as they come, into one cache-sized buffer per pattern (``[x | y | 1]``, the ones column written
once), and a full buffer is folded into its pattern's Gram by one symmetric rank-k update (``b.T @ b``, which numpy
hands to BLAS's SYRK, as ``_tsqr._raw_gram`` does for all rows): the block is read once and the products cost what
one Gram of the block costs, however many patterns there are. The buffers are the thread's scratch
(``_scratch``), so a chunk's task maps no fresh memory for them.

>>> import numpy as np
>>> X = np.arange(12.0).reshape(6, 2); y = np.arange(6.0); p = np.array([0, 1, 0, 1, 1, 0])
>>> G, n = pattern_grams(X, y, p, 2)
>>> n.tolist(), bool(np.allclose(G[1], np.c_[X, y, np.ones(6)][p == 1].T @ np.c_[X, y, np.ones(6)][p == 1]))
([3, 3], True)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._scratch import scratch

#: Rows per buffer (as ``_tsqr.SUB_ROWS``: in cache, and enough rows for BLAS to run at speed).
SUB_ROWS = 2000


@njit(cache=True, nogil=True)
def _fill(X, y, pattern, start, bufs, fill):  # pragma: no cover - compiled
    """Copy rows ``start, start + 1, ...`` (x, then y) into their pattern's buffer until one is full; returns
    ``(the next row, the full pattern)``, or ``(n, -1)`` at the end of the block."""
    n, d = X.shape
    sub_rows = bufs.shape[1]
    for i in range(start, n):
        p = pattern[i]
        r = fill[p]
        for j in range(d):
            bufs[p, r, j] = X[i, j]
        bufs[p, r, d] = y[i]
        fill[p] = r + 1
        if r + 1 == sub_rows:
            return i + 1, p
    return n, -1


def pattern_grams(X: np.ndarray, y: np.ndarray, pattern: np.ndarray, n_patterns: int,
                  sub_rows: int = SUB_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The raw Gram of ``[X | y | 1]`` of the rows of each pattern ``(n_patterns, d + 2, d + 2)``, and the rows
    of each (``pattern``: int, ``0 <= pattern < n_patterns``)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64).reshape(-1)
    pattern = np.ascontiguousarray(pattern, dtype=np.int64)
    n, d = X.shape
    q = d + 2
    bufs = scratch("pattern_grams", (n_patterns, sub_rows, q))
    bufs[:, :, d + 1] = 1.0
    fill = np.zeros(n_patterns, dtype=np.int64)
    G = np.zeros((n_patterns, q, q))
    i = 0
    while i < n:
        i, p = _fill(X, y, pattern, i, bufs, fill)
        if p >= 0:
            b = bufs[p]
            G[p] += b.T @ b
            fill[p] = 0
    for p in range(n_patterns):
        if fill[p]:
            b = bufs[p, :fill[p]]
            G[p] += b.T @ b
    return G, np.bincount(pattern, minlength=n_patterns).astype(np.int64)
