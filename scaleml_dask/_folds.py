"""Kernels of the row splits: a seeded permutation of ``0..n-1`` evaluated row by row, and fold boundaries.

A split never shuffles or copies rows: row ``i`` goes where its position ``p = perm(i)`` in a seeded, keyed
permutation of ``0..n-1`` says (``p < n_test``: test; the k folds of ``KFold``: equal ranges of ``p``). The
permutation is a 4-round alternating Feistel network on the bits that hold ``n`` (the two halves may differ by
a bit; each round XORs one half with a keyed multiply-xorshift hash of the other), walked until it lands below
``n`` (cycle walking: a bijection of ``0..n-1``, fewer than 2 walks a row on average), so ``perm(i)`` needs
nothing but ``i``, ``n`` and the keys — the same assignment whatever the chunking, on any worker, with exactly
the part sizes scikit-learn's splitters give. Rows are permuted a tile at a time (``permute_tile``); where the
halves are narrow (``n`` up to 2**32) each round's hash is looked up in a table of all its inputs
(``round_tables``), the same numbers as multiplying them out.

>>> p = Permutation.seeded(10, 0)
>>> sorted(p(np.arange(10)).tolist()) == list(range(10))
True
>>> fold_of(np.arange(10), fold_bounds(10, 3)).tolist()  # sizes 4, 3, 3 as KFold's
[0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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


@njit(cache=True, inline="always")
def _feistel_looked_up(x, lo, lo_mask, tables):  # pragma: no cover - compiled
    """``_feistel`` with each round's hash looked up in ``round_tables``."""
    high = x >> lo
    low = x & lo_mask
    low ^= tables[0, high]
    high ^= tables[1, low]
    low ^= tables[2, high]
    high ^= tables[3, low]
    return (high << lo) | low


#: Widest half of the network whose round hashes are tabulated (``round_tables``: 4 × 2**16 entries at most).
TABLE_BITS = 16


@njit(cache=True, nogil=True)
def round_tables(bits, low_bits, keys):  # pragma: no cover - compiled
    """Each round's hash of every value of the half it reads (rounds 0 and 2 the high half, 1 and 3 the low):
    a pass of the network is then four look-ups in tables that stay in cache instead of eight 64-bit multiplies.
    Shape ``(4, 0)`` when a half is wider than ``TABLE_BITS``."""
    high_bits = bits - low_bits
    if max(low_bits, high_bits) > TABLE_BITS:
        return np.zeros((4, 0), dtype=np.uint64)
    lo_mask = (np.uint64(1) << np.uint64(low_bits)) - np.uint64(1)
    hi_mask = (np.uint64(1) << np.uint64(high_bits)) - np.uint64(1)
    tables = np.zeros((4, 1 << max(low_bits, high_bits)), dtype=np.uint64)
    for v in range(1 << high_bits):
        tables[0, v] = _round(np.uint64(v), keys[0], lo_mask)
        tables[2, v] = _round(np.uint64(v), keys[2], lo_mask)
    for v in range(1 << low_bits):
        tables[1, v] = _round(np.uint64(v), keys[1], hi_mask)
        tables[3, v] = _round(np.uint64(v), keys[3], hi_mask)
    return tables


@njit(cache=True, inline="always")
def _network(v, count, lo, lo_mask, hi_mask, keys, tables):  # pragma: no cover - compiled
    """One pass of the network over ``v[:count]``, in place: by look-ups, or (no tables) by the vectorised
    multiplies."""
    if tables.shape[1]:
        for j in range(count):
            v[j] = _feistel_looked_up(v[j], lo, lo_mask, tables)
    else:
        for j in range(count):
            v[j] = _feistel(v[j], lo, lo_mask, hi_mask, keys)


@njit(cache=True, inline="always")
def range_of(position, bounds):  # pragma: no cover - compiled
    """The range holding ``position`` given the ranges' upper bounds (``fold_of`` of one position): a
    branch-free count for a few ranges, a bisection for many."""
    k = bounds.shape[0]
    if k <= 16:
        f = 0
        for j in range(k - 1):
            f += position >= bounds[j]
        return f
    lo, hi = 0, k - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if position >= bounds[mid]:
            lo = mid + 1
        else:
            hi = mid
    return lo


_NO_BOUNDS = np.zeros(0, dtype=np.int64)
#: Rows whose positions ``_permute`` computes together (its temporaries stay in L1).
TILE = 1024


@njit(cache=True, inline="always")
def permute_tile(rows, t0, t1, offset, n, bits, low_bits, keys, tables, x, pending, v):  # pragma: no cover
    """``x[:t1 - t0] = perm(rows[t0:t1] + offset)``: the alternating Feistel network on ``bits`` bits (the low half
    ``low_bits`` of them; ``tables``: ``round_tables``), walked until below ``n`` (cycle walking). Every row's
    first pass is one branch-free loop; the rows that landed at or above ``n`` are gathered (into ``v``) and walk
    on together, loop by loop (``pending``, ``v``: ``TILE`` long)."""
    lo = np.uint64(low_bits)
    lo_mask = (np.uint64(1) << lo) - np.uint64(1)
    hi_mask = (np.uint64(1) << np.uint64(bits - low_bits)) - np.uint64(1)
    limit = np.uint64(n)
    m = t1 - t0
    for i in range(m):
        x[i] = np.uint64(rows[t0 + i] + offset)
    _network(x, m, lo, lo_mask, hi_mask, keys, tables)
    k = 0
    for i in range(m):
        pending[k] = i
        k += x[i] >= limit
    while k:
        for j in range(k):
            v[j] = x[pending[j]]
        _network(v, k, lo, lo_mask, hi_mask, keys, tables)
        left = 0
        for j in range(k):
            i = pending[j]
            x[i] = v[j]
            pending[left] = i
            left += v[j] >= limit
        k = left


@njit(cache=True, nogil=True)
def _permute(rows, n, bits, low_bits, keys, tables, bounds, out):  # pragma: no cover - compiled
    """``out[i] = perm(rows[i])`` — or, given ``bounds`` (non-empty), the range holding it — tile by tile."""
    x, v = np.empty(TILE, dtype=np.uint64), np.empty(TILE, dtype=np.uint64)
    pending = np.empty(TILE, dtype=np.int64)
    m = rows.shape[0]
    for t0 in range(0, m, TILE):
        t1 = min(m, t0 + TILE)
        permute_tile(rows, t0, t1, 0, n, bits, low_bits, keys, tables, x, pending, v)
        if bounds.shape[0]:
            for i in range(t1 - t0):
                out[t0 + i] = range_of(np.int64(x[i]), bounds)
        else:
            for i in range(t1 - t0):
                out[t0 + i] = np.int64(x[i])


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
        _permute(rows, self.n, *self.bits, self.keys, self.tables(), _NO_BOUNDS, out)
        return out

    def folds(self, rows: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """``fold_of(self(rows), bounds)`` without the positions' array: each row's range in one kernel."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if self.keys is None:
            return fold_of(rows, bounds)
        out = np.empty(len(rows), dtype=np.int64)
        _permute(rows, self.n, *self.bits, self.keys, self.tables(), np.ascontiguousarray(bounds, dtype=np.int64),
                 out)
        return out

    def tables(self) -> np.ndarray:
        """``round_tables`` of this permutation, made once per process (a split calls it chunk by chunk, class by
        class) and not carried when the permutation is sent to a worker."""
        return _tables(*self.bits, self.keys.tobytes())

    @property
    def bits(self) -> tuple[int, int]:
        """The network's bits and those of its low half."""
        bits = max(2, int(self.n - 1).bit_length())
        return bits, bits // 2


@lru_cache(maxsize=16)  # at most 2 MiB each (halves of TABLE_BITS bits)
def _tables(bits: int, low_bits: int, keys: bytes) -> np.ndarray:
    return round_tables(bits, low_bits, np.frombuffer(keys, dtype=np.uint64).copy())


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
