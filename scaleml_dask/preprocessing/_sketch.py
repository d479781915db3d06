"""A mergeable quantile sketch for one-pass medians: a histogram on a fixed grid of the floats, the same whatever
the chunking, with its error bounds.

The grid is the floats' own: at resolution ``r`` a value ``x`` with ``|x| ≥ 2^-16`` falls in the bin of its sign,
its binary exponent and the top ``r`` bits of its mantissa (``[2^e (1 + k 2^-r), 2^e (1 + (k+1) 2^-r))``, of
relative width ``2^-r``); below ``2^-16`` the bins are of equal width, ``2^(-16-r)`` (the bin of zero holds both
signs). A bin's *edge* is its bound nearest zero. The resolution is the largest ``r ≤ 52`` at which the bins
between the least and the greatest value number fewer than ``BINS``. That depends on the values only, not on how
they were split: a chunk's resolution is never below the whole column's (its range is inside the column's), and
merging coarsens to the whole's (a bin at ``r - 1`` is two bins at ``r``).

A sketch of at most ``EXACT`` values keeps, per bin, its count and its least and greatest value (found by sorting
them: few), at ``r = 52``: every value its own bin above ``2^-16``. Beyond, a bin keeps its count and one bit:
whether every value in it *is* its edge (integers, zeros, values with few digits in binary). That is one word per
bin, one read-modify-write per value in the compiled pass that also sums the squared deviations (after the
moments' pass, which gives the range); merging adds counts, and a bin coarsened by ``s`` keeps the bit when its
key's ``s`` low bits are zero (its edge is then the coarse bin's). The final sketch is the histogram of the column
at its resolution: **the same, bit for bit, whatever the chunking and the order of merging.**

The median is read as numpy's (the mean of the two middle values), each middle value interpolated in its bin:
evenly between the bin's least and greatest value, which are the value itself for a bin of one distinct value
(a small sketch's) or of its edge only, and otherwise (a large sketch's bin holding values off its edge) the
bin's bounds. So the median is exact when each middle value's bin holds one distinct value (always for at most
``EXACT`` values above ``2^-16`` in magnitude, and for a column whose values near the middle are on their bins'
edges: integers, say, or values with at most ``r`` significant bits); otherwise
``|median - exact median| ≤ value_error``, the width of the widest of those bins: at most
``2^-r · max(|median|, 2^-16)`` (twice that in the bin of zero). The true rank of the median is within
``rank_error`` (their counts) of the middle. A column of one sign within one octave gets ``r ≥ 13`` (bins of
relative width ``2^-13``), a column from ``-1`` to ``1`` ``r = 8`` (finer near zero); a bin holds about
``n · density · width`` values.

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal(100_000) + 3
>>> s = QuantileSketch.merge([QuantileSketch.of(x[i:i + 10_000]) for i in range(0, 100_000, 10_000)])
>>> s == QuantileSketch.merge([QuantileSketch.of(x[:50_000]), QuantileSketch.of(x[50_000:])])
True
>>> m, (value_error, rank_error) = s.median(), s.median_error()
>>> bool(abs(m - np.median(x)) <= value_error < 0.01), rank_error < 500
(True, True)
>>> QuantileSketch.of(np.array([3.0, 1.0, 4.0, 2.0])).median()
2.5
>>> ages = np.random.default_rng(0).integers(18, 90, 100_000).astype(float)  # on their bins' edges: exact
>>> bool(QuantileSketch.of(ages).median() == np.median(ages)), QuantileSketch.of(ages).median_error()
(True, (0.0, 0))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ._kernels import BLOCK, add_compensated, first_moments, square

#: Bins a sketch spans at most (between its least and greatest value), unless it holds at most ``EXACT`` values.
BINS = 1 << 14
#: Values a sketch may hold at any resolution (their bins are found by sorting them: few).
EXACT = 4096
#: The finest resolution: every float of magnitude at least ``2^E_LIN`` its own bin.
R_MAX = 52
#: Below ``2^E_LIN`` in magnitude the bins are of equal width (``2^(E_LIN - r)``), above of equal relative width.
E_LIN = -16


@njit(cache=True, nogil=True, inline="always")
def _bin(v: float, bits: np.int64, r: int, scale: float) -> tuple:  # pragma: no cover - compiled
    """The bin of ``v`` (``bits``: its bits) at resolution ``r`` (``scale = 2^(r - E_LIN)``), ordered as the values
    are: ``±g`` with ``g`` the exponent and the top ``r`` mantissa bits from ``2^E_LIN`` up, ``⌊|v| / 2^(E_LIN -
    r)⌋`` below; and 1 if ``v`` is off the bin's edge (its bound nearest zero), else 0. Without a branch: the
    histogram's block loop vectorises it (a NaN's bin is meaningless, and never read)."""
    g = ((bits & 0x7FFFFFFFFFFFFFFF) >> (52 - r)) - ((1023 + E_LIN - 1) << r)
    s = min(abs(v) * scale, 9.0e18)  # (only read below 2^E_LIN, where it is below 2^52)
    g_linear = np.int64(s)
    linear = g < (np.int64(1) << r)
    off = np.int64(g_linear != s) if linear else np.int64((bits & ((np.int64(1) << (52 - r)) - 1)) != 0)
    g = g_linear if linear else g
    sign = bits >> 63
    return (g ^ sign) - sign, off


@njit(cache=True, nogil=True)
def _key(v: float, bits: np.int64, r: int) -> np.int64:  # pragma: no cover - compiled
    return _bin(v, bits, r, 2.0 ** (r - E_LIN))[0]


@njit(cache=True, nogil=True)
def _coarse(key: np.int64, shift: int) -> np.int64:  # pragma: no cover - compiled
    return -((-key) >> shift) if key < 0 else key >> shift


@njit(cache=True, nogil=True)
def _resolution(k_lo: np.int64, k_hi: np.int64, r: int, bins: int) -> int:  # pragma: no cover - compiled
    """The largest resolution ``≤ r`` (keys given at ``r``) at which ``k_lo..k_hi`` spans fewer than ``bins``."""
    while r > 0 and k_hi > k_lo + (bins - 1):  # not ``k_hi - k_lo``: keys of ±1e308 differ by more than 2^63
        r -= 1
        k_lo, k_hi = _coarse(k_lo, 1), _coarse(k_hi, 1)
    return r


@njit(cache=True, nogil=True)
def _histogram(x: np.ndarray, lo: float, hi: float, mean: float, bins: int) -> tuple:  # pragma: no cover
    """The bins of the non-NaN values of ``x`` (``lo``, ``hi``, ``mean``: their least, greatest and mean) at the
    finest resolution where they span fewer than ``bins``, and in the same pass their squared deviations from the
    mean (as ``_kernels.second_moment``, to the bit: the same blocks, lanes and order): (resolution, keys, counts,
    whether each bin holds only its edge, m2). A bin is one word, twice its count plus 1 once a value off its edge
    fell in it: per block of ``BLOCK`` values their bins first, without a branch (a NaN's a bin past the end),
    then one read-modify-write each."""
    bits = x.view(np.int64)
    ends = np.array([lo, hi])
    ends_bits = ends.view(np.int64)
    r = _resolution(_key(lo, ends_bits[0], R_MAX), _key(hi, ends_bits[1], R_MAX), R_MAX, bins)
    k0 = _key(lo, ends_bits[0], r)
    span = _key(hi, ends_bits[1], r) - k0 + 1
    acc = np.zeros(span + 1, np.int64)
    scale = 2.0 ** (r - E_LIN)
    words = np.empty(BLOCK, np.int64)
    n = x.shape[0]
    m = n - n % BLOCK
    m2 = 0.0
    carry = 0.0
    for i0 in range(0, m, BLOCK):
        for k in range(BLOCK):  # each value's bin and edge flag, without a branch
            v = x[i0 + k]
            key, off = _bin(v, bits[i0 + k], r, scale)
            words[k] = ((key - k0 if v == v else span) << 1) | off
        s0 = s1 = 0.0
        for i in range(i0, i0 + BLOCK, 2):
            s0 += square(x[i], mean)
            s1 += square(x[i + 1], mean)
        m2, carry = add_compensated(m2, carry, s0 + s1)
        for k in range(BLOCK):
            j = words[k] >> 1
            acc[j] = (acc[j] + 2) | (words[k] & 1)
    for i in range(m, n):
        v = x[i]
        if v == v:
            m2, carry = add_compensated(m2, carry, square(v, mean))
            key, off = _bin(v, bits[i], r, scale)
            acc[key - k0] = (acc[key - k0] + 2) | off
    return (r, *_occupied(acc[:span], k0), m2 + carry)


@njit(cache=True, nogil=True)
def _occupied(acc: np.ndarray, k0: np.int64) -> tuple:  # pragma: no cover - compiled
    """The occupied bins of ``acc`` (``_histogram``'s words, the first at key ``k0``): keys, counts, and whether
    each holds only values on its edge."""
    n = 0
    for j in range(acc.shape[0]):
        if acc[j] > 0:
            n += 1
    keys = np.empty(n, np.int64)
    counts = np.empty(n, np.int64)
    on_edge = np.empty(n, np.bool_)
    n = 0
    for j in range(acc.shape[0]):
        if acc[j] > 0:
            keys[n] = k0 + j
            counts[n] = acc[j] >> 1
            on_edge[n] = (acc[j] & 1) == 0
            n += 1
    return keys, counts, on_edge


@njit(cache=True, nogil=True)
def _gathered(index: np.ndarray, counts: np.ndarray, on_edge: np.ndarray,
              span: int) -> tuple:  # pragma: no cover - compiled
    """Bins (``index``: their place among ``span``) added up, a bin on its edge while every part is: merging
    sketches. The occupied places, their counts and whether each holds only its edge."""
    total = np.zeros(span, np.int64)
    off = np.zeros(span, np.bool_)
    for i in range(index.shape[0]):
        j = index[i]
        total[j] += counts[i]
        off[j] |= not on_edge[i]
    keep = np.nonzero(total)[0]
    return keep, total[keep], ~off[keep]


def _keys(values: np.ndarray, r: int) -> np.ndarray:
    """``_key`` of each value (the few values of a small sketch, or a rekeyed one's bounds)."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    return _keys_of(x, x.view(np.int64), r)


@njit(cache=True, nogil=True)
def _keys_of(x: np.ndarray, bits: np.ndarray, r: int) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(x.shape[0], np.int64)
    scale = 2.0 ** (r - E_LIN)
    for i in range(x.shape[0]):
        out[i] = _bin(x[i], bits[i], r, scale)[0]
    return out


def _coarsened(keys: np.ndarray, shift: int) -> np.ndarray:
    return keys if shift == 0 else np.where(keys < 0, -((-keys) >> shift), keys >> shift)


@njit(cache=True, nogil=True)
def _bin_bounds(key: np.int64, r: int) -> tuple:  # pragma: no cover - compiled
    """Bin ``key``'s edge (its bound nearest zero), and the least and greatest value it can hold (bin 0 holds
    both signs)."""
    g = abs(key)
    if g < (1 << r):
        near, far = g * 2.0 ** (E_LIN - r), (g + 1) * 2.0 ** (E_LIN - r)
    else:
        e, m = (g >> r) + E_LIN - 1, g & ((1 << r) - 1)
        near, far = math.ldexp(1.0 + m * 2.0 ** -r, e), math.ldexp(1.0 + (m + 1) * 2.0 ** -r, e)
    far = np.nextafter(far, 0.0)
    if key > 0:
        return near, near, far
    if key < 0:
        return -near, -far, -near
    return 0.0, -far, far


@njit(cache=True, nogil=True)
def _bounds_of(keys: np.ndarray, r: int) -> np.ndarray:  # pragma: no cover - compiled
    """``_bin_bounds`` of each of ``keys``: one row each."""
    out = np.empty((keys.shape[0], 3))
    for i in range(keys.shape[0]):
        out[i, 0], out[i, 1], out[i, 2] = _bin_bounds(keys[i], r)
    return out


@dataclass(frozen=True, eq=False)
class QuantileSketch:
    """The histogram (module docstring) at resolution ``r``: occupied bins ``keys`` in order and their
    ``counts``; per bin, at most ``EXACT`` values in all, the ``least`` and ``greatest`` value in it, else
    whether it holds only its edge (``on_edge``); read through the affine map ``a·x + b`` (``affine``)."""

    r: int
    keys: np.ndarray
    counts: np.ndarray
    least: np.ndarray | None = None
    greatest: np.ndarray | None = None
    on_edge: np.ndarray | None = None
    a: float = 1.0
    b: float = 0.0
    _cum: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cum", np.cumsum(self.counts))

    def __reduce__(self) -> tuple:
        """Pickled without the cumulative counts (made again): a chunk's sketches travel to the pass's merges."""
        return QuantileSketch, (self.r, self.keys, self.counts, self.least, self.greatest, self.on_edge, self.a,
                                self.b)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, QuantileSketch) and (self.r, self.a, self.b) == (other.r, other.a, other.b)
                and all(_same(getattr(self, f), getattr(other, f))
                        for f in ("keys", "counts", "least", "greatest", "on_edge")))

    @property
    def n(self) -> int:
        return int(self._cum[-1]) if len(self._cum) else 0

    @classmethod
    def of(cls, x: np.ndarray) -> QuantileSketch:
        """The sketch of the non-NaN values of ``x``."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        count, mean, lo, hi = first_moments(x)
        return cls.of_points(x, count) if count <= EXACT else cls.with_moments(x, mean, lo, hi)[0]

    @classmethod
    def of_points(cls, x: np.ndarray, count: int) -> QuantileSketch:
        """The sketch of the ``count`` (few) non-NaN values of ``x``: every one kept."""
        obs = x[~np.isnan(x)] if count < len(x) else x
        return cls._of_points(obs, np.ones(len(obs), np.int64))

    @classmethod
    def with_moments(cls, x: np.ndarray, mean: float, lo: float, hi: float) -> tuple[QuantileSketch, float]:
        """The sketch of the more than ``EXACT`` non-NaN values of ``x`` (contiguous float64; their ``mean``,
        least and greatest from ``_kernels.first_moments``) and their squared deviations from the mean (equal to
        ``_kernels.second_moment``'s), in one pass."""
        r, keys, counts, on_edge, m2 = _histogram(x, lo, hi, mean, BINS)
        return cls(int(r), keys, counts, on_edge=on_edge), float(m2)

    @classmethod
    def of_counts(cls, values: np.ndarray, counts: np.ndarray) -> QuantileSketch:
        """The sketch of ``values`` repeated ``counts`` times (any order)."""
        values, counts = np.asarray(values, np.float64), np.asarray(counts, np.int64)
        keep = counts > 0
        return cls._of_points(values[keep], counts[keep])

    @classmethod
    def _of_points(cls, values: np.ndarray, counts: np.ndarray) -> QuantileSketch:
        """Points at the finest resolution, then as coarse as ``merge``'s rule makes a sketch of this size."""
        return cls._of_ranges(R_MAX, _keys(values, R_MAX), counts, values, values)

    @classmethod
    def _of_ranges(cls, r: int, keys: np.ndarray, counts: np.ndarray, least: np.ndarray,
                   greatest: np.ndarray) -> QuantileSketch:
        """Bins (keys at ``r``, any order, repeats allowed) given by the least and greatest value in each, at the
        finest resolution ``≤ r`` the rule allows."""
        if counts.sum() <= EXACT:
            u, inverse = np.unique(keys, return_inverse=True)
            out_least, out_greatest = np.full(len(u), np.inf), np.full(len(u), -np.inf)
            np.minimum.at(out_least, inverse, least)
            np.maximum.at(out_greatest, inverse, greatest)
            return cls(r, u, np.bincount(inverse, weights=counts, minlength=len(u)).astype(np.int64), out_least,
                       out_greatest)
        return cls._gather(r, keys, counts, (least == greatest) & (least == _bounds_of(keys, r)[:, 0]))

    @classmethod
    def _gather(cls, r: int, keys: np.ndarray, counts: np.ndarray, on_edge: np.ndarray) -> QuantileSketch:
        """Bins of more than ``EXACT`` values (keys at ``r``, any order, repeats allowed; whether each holds only
        its edge) at the finest resolution ``≤ r`` where they span fewer than ``BINS``. A bin coarsened by
        ``s`` keeps its edge when the ``s`` low bits of its key are zero."""
        r2 = _resolution(keys.min(), keys.max(), r, BINS)
        if r2 < r:
            on_edge = on_edge & (np.abs(keys) & ((1 << (r - r2)) - 1) == 0)
            keys = _coarsened(keys, r - r2)
        k0 = keys.min()
        index, counts, on_edge = _gathered(keys - k0, counts, on_edge, int(keys.max() - k0) + 1)
        return cls(r2, index + k0, counts, on_edge=on_edge)

    def _edges(self) -> np.ndarray:
        """Whether each bin holds only its edge."""
        if self.on_edge is not None:
            return self.on_edge
        return (self.least == self.greatest) & (self.least == _bounds_of(self.keys, self.r)[:, 0])

    @classmethod
    def merge(cls, parts: Sequence[QuantileSketch]) -> QuantileSketch:
        """The sketch of the union of the parts' values (read through the first part's affine map)."""
        first = parts[0]
        parts = [p if (p.a, p.b) == (first.a, first.b) else p._rekeyed(first.a, first.b) for p in parts]
        r = min(p.r for p in parts)
        keys = np.concatenate([_coarsened(p.keys, p.r - r) for p in parts])
        counts = np.concatenate([p.counts for p in parts])
        if sum(p.n for p in parts) <= EXACT:
            merged = cls._of_ranges(r, keys, counts, np.concatenate([p.least for p in parts]),
                                    np.concatenate([p.greatest for p in parts]))
        else:
            on_edge = np.concatenate([p._edges() & (np.abs(p.keys) & ((1 << (p.r - r)) - 1) == 0) for p in parts])
            merged = cls._gather(r, keys, counts, on_edge)
        return merged if (first.a, first.b) == (1.0, 0.0) else merged._through(first.a, first.b)

    def _through(self, a: float, b: float) -> QuantileSketch:
        return QuantileSketch(self.r, self.keys, self.counts, self.least, self.greatest, self.on_edge, a, b)

    def _range(self, j: int) -> tuple[float, float]:
        """The least and greatest value in bin ``j``: stored, or the bin's edge when it holds only its edge, else
        its bounds."""
        if self.least is not None:
            return self.least[j], self.greatest[j]
        edge, least, greatest = _bin_bounds(self.keys[j], self.r)
        return (edge, edge) if self.on_edge[j] else (least, greatest)

    def _rekeyed(self, a: float, b: float) -> QuantileSketch:
        """This sketch's values as seen through ``a·x + b`` instead (exact up to rounding), binned afresh at the
        finest resolution where each bin still falls in one."""
        if self.least is None:
            bounds = _bounds_of(self.keys, self.r)
            least = np.where(self.on_edge, bounds[:, 0], bounds[:, 1])
            greatest = np.where(self.on_edge, bounds[:, 0], bounds[:, 2])
        else:
            least, greatest = self.least, self.greatest
        x0, x1 = (self.a * least + self.b - b) / a, (self.a * greatest + self.b - b) / a
        x0, x1 = np.minimum(x0, x1), np.maximum(x0, x1)
        r = R_MAX
        while r > 0 and np.any(_keys(x0, r) != _keys(x1, r)):
            r -= 1
        return QuantileSketch._of_ranges(r, _keys(x0, r), self.counts, x0, x1)._through(a, b)

    def affine(self, a: float, b: float) -> QuantileSketch:
        """The sketch of ``a·x + b``."""
        return self._through(a * self.a, a * self.b + b)

    def _order_statistic(self, i: int) -> tuple[float, int]:
        """The ``i``-th smallest value (0-based) of the stored values, interpolated in its bin (evenly from its
        least to its greatest value; a bin's one value in the middle of its bounds), and the bin."""
        j = int(np.searchsorted(self._cum, i, side="right"))
        (lo, hi), c = self._range(j), int(self.counts[j])
        if lo == hi:
            return float(lo), j
        return float(lo + (hi - lo) * ((i - (self._cum[j] - c)) / (c - 1) if c > 1 else 0.5)), j

    def quantile(self, q: float) -> float:
        """The value at rank ``q·(n - 1)`` (numpy's linear interpolation), through the affine map."""
        if self.n == 0:
            return np.nan
        at = (q if self.a >= 0 else 1 - q) * (self.n - 1)
        i = int(np.floor(at))
        v0 = self._order_statistic(i)[0]
        v = v0 if at == i else v0 + (at - i) * (self._order_statistic(i + 1)[0] - v0)
        return float(self.a * v + self.b)

    def median(self) -> float:
        return self.quantile(0.5)

    def median_error(self) -> tuple[float, int]:
        """Bounds on the median's distance to the exact one: in value, and in rank (module docstring)."""
        if self.n == 0:
            return 0.0, 0
        widths = {j: float(np.subtract(*self._range(j)[::-1]))
                  for j in (self._order_statistic((self.n - 1) // 2)[1], self._order_statistic(self.n // 2)[1])}
        bins = [j for j, w in widths.items() if w > 0]
        return (abs(self.a) * max((widths[j] for j in bins), default=0.0),
                int(sum(self.counts[j] for j in bins)))


def _same(x: np.ndarray | None, y: np.ndarray | None) -> bool:
    return x is None and y is None or x is not None and y is not None and np.array_equal(x, y)
