"""Kernels of the row splits: a seeded permutation of ``0..n-1`` evaluated row by row, and fold boundaries.

A split never shuffles or copies rows: row ``i`` goes where its position ``p = perm(i)`` in a seeded, keyed
permutation of ``0..n-1`` says (``p < n_test``: test; the k folds of ``KFold``: equal ranges of ``p``). The
permutation is a 4-round Feistel network on the smallest even number of bits that holds ``n``, walked until
it lands below ``n`` (cycle walking: a bijection of ``0..n-1``, on average fewer than 4 rounds of walking), so
``perm(i)`` needs nothing but ``i``, ``n`` and the keys — the same assignment whatever the chunking, on any
worker, with exactly the part sizes scikit-learn's splitters give.

>>> p = Permutation.seeded(10, 0)
>>> sorted(p(np.arange(10)).tolist()) == list(range(10))
True
>>> fold_of(np.arange(10), fold_bounds(10, 3)).tolist()  # sizes 4, 3, 3 as KFold's
[0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

#: Membership codes of a row in one split.
NONE, TRAIN, TEST = 0, 1, 2


@njit(cache=True, inline="always")
def _mix(x):  # pragma: no cover - compiled
    """splitmix64's finalizer: a bijective mix of the 64 bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True, nogil=True)
def _permute(rows, n, half, keys, out):  # pragma: no cover - compiled
    """``out[i] = perm(rows[i])``: the Feistel network on ``2 * half`` bits, walked until below ``n``."""
    h = np.uint64(half)
    mask = (np.uint64(1) << h) - np.uint64(1)
    limit = np.uint64(n)
    for i in range(rows.shape[0]):
        x = np.uint64(rows[i])
        while True:
            left = x >> h
            right = x & mask
            for r in range(4):
                left, right = right, left ^ (_mix(right ^ keys[r]) & mask)
            x = (left << h) | right
            if x < limit:
                break
        out[i] = np.int64(x)


@dataclass(frozen=True, eq=False)
class Permutation:
    """A seeded permutation of ``0..n-1`` (``keys`` None: the identity, i.e. no shuffle)."""

    n: int
    keys: np.ndarray | None

    @classmethod
    def seeded(cls, n: int, seed: int | None, *stream: int) -> Permutation:
        """The permutation of ``0..n-1`` for ``seed`` (None: the identity) and a stream (split, class...)."""
        if seed is None:
            return cls(int(n), None)
        keys = np.random.SeedSequence([int(seed), 0x5E1EC7, *(int(s) for s in stream)]).generate_state(4, np.uint64)
        return cls(int(n), keys)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if self.keys is None:
            return rows.copy()
        bits = max(2, int(self.n - 1).bit_length())
        out = np.empty(len(rows), dtype=np.int64)
        _permute(rows, self.n, (bits + 1) // 2, self.keys, out)
        return out


def fold_bounds(n: int, k: int, rotate: int = 0) -> np.ndarray:
    """Upper bounds of ``k`` consecutive ranges of ``0..n-1`` whose sizes differ by at most one; the ``n % k``
    one-larger ranges are those ``rotate, rotate + 1, ...`` (mod ``k``), so that per-class ranges can spread
    their remainders over the folds."""
    q, r = divmod(int(n), int(k))
    sizes = q + (((np.arange(k) - rotate) % k) < r)
    return np.cumsum(sizes).astype(np.int64)


def fold_of(positions: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The range (fold) each position falls in, given the ranges' upper bounds."""
    return np.searchsorted(bounds, positions, side="right").astype(np.int64)
