"""Kernels of the row splits: a seeded permutation of ``0..n-1`` evaluated row by row, and fold boundaries.

A split never shuffles or copies rows: row ``i`` goes where its position ``p = perm(i)`` in a seeded, keyed
permutation of ``0..n-1`` says (``p < n_test``: test; the k folds of ``KFold``: equal ranges of ``p``). The
permutation is a 4-round alternating Feistel network on the bits that hold ``n`` (the two halves may differ by
a bit; each round XORs one half with a keyed multiply-xorshift hash of the other), walked until it lands below
``n`` (cycle walking: a bijection of ``0..n-1``, fewer than 2 walks a row on average), so ``perm(i)`` needs
nothing but ``i``, ``n`` and the keys — the same assignment whatever the chunking, on any worker, with exactly
the part sizes scikit-learn's splitters give.

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
def _round(v, key, mask):  # pragma: no cover - compiled
    """A keyed hash of ``v`` cut to ``mask``: multiply by a large odd constant, fold the high bits down."""
    h = (v ^ key) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    return (h ^ (h >> np.uint64(32))) & mask


@njit(cache=True, inline="always")
def _feistel(x, lo, lo_mask, hi_mask, keys):  # pragma: no cover - compiled
    """One pass of the 4-round network over ``x`` (uint64): no branch, so that a loop of it vectorises."""
    high = x >> lo
    low = x & lo_mask
    low ^= _round(high, keys[0], lo_mask)
    high ^= _round(low, keys[1], hi_mask)
    low ^= _round(high, keys[2], lo_mask)
    high ^= _round(low, keys[3], hi_mask)
    return (high << lo) | low


@njit(cache=True, nogil=True)
def _permute(rows, n, bits, low_bits, keys, out):  # pragma: no cover - compiled
    """``out[i] = perm(rows[i])``: the alternating Feistel network on ``bits`` bits (the low half ``low_bits``
    of them), walked until below ``n`` (cycle walking). Every row's first pass is one branch-free loop
    (vectorised); the rows that landed at or above ``n`` are gathered and walk on together, loop by loop."""
    lo = np.uint64(low_bits)
    lo_mask = (np.uint64(1) << lo) - np.uint64(1)
    hi_mask = (np.uint64(1) << np.uint64(bits - low_bits)) - np.uint64(1)
    limit = np.uint64(n)
    m = rows.shape[0]
    x = np.empty(m, dtype=np.uint64)
    for i in range(m):
        x[i] = _feistel(np.uint64(rows[i]), lo, lo_mask, hi_mask, keys)
    pending = np.empty(m, dtype=np.int64)
    k = 0
    for i in range(m):
        out[i] = np.int64(x[i])
        pending[k] = i
        k += x[i] >= limit
    while k:
        for j in range(k):
            x[j] = _feistel(np.uint64(out[pending[j]]), lo, lo_mask, hi_mask, keys)
        left = 0
        for j in range(k):
            i = pending[j]
            out[i] = np.int64(x[j])
            pending[left] = i
            left += x[j] >= limit
        k = left


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
        out = np.empty(len(rows), dtype=np.int64)
        _permute(rows, self.n, *self.bits, self.keys, out)
        return out

    @property
    def bits(self) -> tuple[int, int]:
        """The network's bits and those of its low half."""
        bits = max(2, int(self.n - 1).bit_length())
        return bits, bits // 2


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


@njit(cache=True, nogil=True)
def fold_counts(positions, bounds):  # pragma: no cover - compiled
    """How many ``positions`` fall in each range (fold) — ``np.bincount(fold_of(positions, bounds))`` in one
    loop, with no array of folds (positions below ``bounds[-1]``)."""
    k = bounds.shape[0]
    out = np.zeros(k, dtype=np.int64)
    for i in range(positions.shape[0]):
        v = positions[i]
        f = 0
        while f < k - 1 and v >= bounds[f]:
            f += 1
        out[f] += 1
    return out
