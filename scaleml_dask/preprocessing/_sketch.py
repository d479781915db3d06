"""A mergeable quantile sketch for one-pass medians: a histogram on a fixed grid of the floats, the same whatever
the chunking, with its error bounds.

The grid is the floats' own: at resolution ``r`` a value ``x`` with ``|x| ≥ 2^-16`` falls in the bin of its sign,
its binary exponent and the top ``r`` bits of its mantissa (``[2^e (1 + k 2^-r), 2^e (1 + (k+1) 2^-r))``, of
relative width ``2^-r``); below ``2^-16`` the bins are of equal width, ``2^(-16-r)``. A bin keeps its count and
the least and greatest value in it. No value is sorted: a chunk's sketch is two compiled passes over its values
(the moments' pass gives the range; then the counts), a bin's key computed from the value's bits.

The resolution is the largest ``r ≤ 52`` at which the bins between the least and the greatest value number fewer
than ``BINS`` (any resolution when there are at most ``EXACT`` values). That depends on the values only, not on
how they were split: a chunk's resolution is never below the whole column's (its range is inside the column's),
and merging coarsens to the whole's (a bin at ``r - 1`` is two bins at ``r``). The final sketch is the histogram
of the column at that resolution: **the same, bit for bit, whatever the chunking and the order of merging.**

The median read from it is exact (numpy's: the mean of the two middle values) when each of its two middle
values' bins holds one distinct value — always for at most ``EXACT`` values above ``2^-16`` in magnitude, or at
resolution 52. Otherwise each middle value is interpolated in its bin between the bin's least and greatest value,
so ``|median - exact median| ≤ value_error`` (the width ``max - min`` of the widest of those bins, at most
``2^-r · max(|median|, 2^-16)``) and the true rank of the median is within ``rank_error`` (their counts) of the
middle. A column of one sign within one octave gets ``r ≥ 13`` (bins of relative width ``2^-13``), a column from
``-1`` to ``1`` ``r = 8`` (finer near zero); a bin holds about ``n · density · width`` values.

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
"""

from __future__ import annotations

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


@njit(cache=True, nogil=True)
def _key(v: float, bits: np.int64, r: int) -> np.int64:  # pragma: no cover - compiled
    """The bin of ``v`` (``bits``: its bits) at resolution ``r``, ordered as the values are: ``±g`` with ``g`` the
    exponent and the top ``r`` mantissa bits from ``2^E_LIN`` up, ``⌊|v| / 2^(E_LIN - r)⌋`` below."""
    g = ((bits & 0x7FFFFFFFFFFFFFFF) >> (52 - r)) - ((1023 + E_LIN - 1) << r)
    if g < (1 << r):
        g = np.int64(abs(v) * 2.0 ** (r - E_LIN))
    sign = bits >> 63
    return (g ^ sign) - sign


@njit(cache=True, nogil=True)
def _coarse(key: np.int64, shift: int) -> np.int64:  # pragma: no cover - compiled
    return -((-key) >> shift) if key < 0 else key >> shift


@njit(cache=True, nogil=True)
def _resolution(k_lo: np.int64, k_hi: np.int64, r: int, bins: int) -> int:  # pragma: no cover - compiled
    """The largest resolution ``≤ r`` (keys given at ``r``) at which ``k_lo..k_hi`` spans fewer than ``bins``."""
    while r > 0 and k_hi - k_lo >= bins:
        r -= 1
        k_lo, k_hi = _coarse(k_lo, 1), _coarse(k_hi, 1)
    return r


@njit(cache=True, nogil=True)
def _empty_bins(span: int) -> np.ndarray:  # pragma: no cover - compiled
    """Per bin its count, least and greatest value, side by side (one cache line per value added)."""
    acc = np.empty((span, 3))
    for j in range(span):
        acc[j, 0] = 0.0
        acc[j, 1] = np.inf
        acc[j, 2] = -np.inf
    return acc


@njit(cache=True, nogil=True, inline="always")
def _add_to_bin(acc: np.ndarray, j: np.int64, v: float) -> None:  # pragma: no cover - compiled
    acc[j, 0] += 1.0
    acc[j, 1] = min(acc[j, 1], v)
    acc[j, 2] = max(acc[j, 2], v)


@njit(cache=True, nogil=True)
def _histogram(x: np.ndarray, lo: float, hi: float, mean: float, bins: int) -> tuple:  # pragma: no cover
    """The bins of the non-NaN values of ``x`` (``lo``, ``hi``, ``mean``: their least, greatest and mean) at the
    finest resolution where they span fewer than ``bins``, and in the same pass their squared deviations from the
    mean (as ``_kernels.second_moment``, to the bit: the same blocks, lanes and order): (resolution, keys, counts,
    least, greatest, m2)."""
    bits = x.view(np.int64)
    ends = np.array([lo, hi])
    ends_bits = ends.view(np.int64)
    r = _resolution(_key(lo, ends_bits[0], R_MAX), _key(hi, ends_bits[1], R_MAX), R_MAX, bins)
    k0 = _key(lo, ends_bits[0], r)
    acc = _empty_bins(_key(hi, ends_bits[1], r) - k0 + 1)
    n = x.shape[0]
    m = n - n % BLOCK
    m2 = 0.0
    carry = 0.0
    for i0 in range(0, m, BLOCK):
        s0 = s1 = 0.0
        for i in range(i0, i0 + BLOCK, 2):
            for k in range(2):
                v = x[i + k]
                if v == v:
                    _add_to_bin(acc, _key(v, bits[i + k], r) - k0, v)
            s0 += square(x[i], mean)
            s1 += square(x[i + 1], mean)
        m2, carry = add_compensated(m2, carry, s0 + s1)
    for i in range(m, n):
        v = x[i]
        if v == v:
            m2, carry = add_compensated(m2, carry, square(v, mean))
            _add_to_bin(acc, _key(v, bits[i], r) - k0, v)
    return (r, *_occupied(acc, k0), m2 + carry)


@njit(cache=True, nogil=True)
def _occupied(acc: np.ndarray, k0: np.int64) -> tuple:  # pragma: no cover - compiled
    """The occupied bins of ``acc`` (the first at key ``k0``): keys, counts, least and greatest values."""
    n = 0
    for j in range(acc.shape[0]):
        if acc[j, 0] > 0:
            n += 1
    keys = np.empty(n, np.int64)
    counts = np.empty(n, np.int64)
    least = np.empty(n)
    greatest = np.empty(n)
    n = 0
    for j in range(acc.shape[0]):
        if acc[j, 0] > 0:
            keys[n] = k0 + j
            counts[n] = np.int64(acc[j, 0])
            least[n] = acc[j, 1]
            greatest[n] = acc[j, 2]
            n += 1
    return keys, counts, least, greatest


@njit(cache=True, nogil=True)
def _gathered(index: np.ndarray, counts: np.ndarray, least: np.ndarray, greatest: np.ndarray,
              span: int) -> np.ndarray:  # pragma: no cover - compiled
    """Bins (``index``: their place among ``span``) added up: merging sketches."""
    acc = _empty_bins(span)
    for i in range(index.shape[0]):
        j = index[i]
        acc[j, 0] += counts[i]
        acc[j, 1] = min(acc[j, 1], least[i])
        acc[j, 2] = max(acc[j, 2], greatest[i])
    return acc


def _keys(values: np.ndarray, r: int) -> np.ndarray:
    """``_key`` of each value, vectorised (the few values of a small sketch, or a rekeyed one's bounds)."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    bits = x.view(np.int64)
    g = ((bits & 0x7FFFFFFFFFFFFFFF) >> (52 - r)) - ((1023 + E_LIN - 1) << r)
    g = np.where(g < (1 << r), (np.minimum(np.abs(x), 2.0 ** E_LIN) * 2.0 ** (r - E_LIN)).astype(np.int64), g)
    sign = bits >> 63
    return (g ^ sign) - sign


def _coarsened(keys: np.ndarray, shift: int) -> np.ndarray:
    return np.where(keys < 0, -((-keys) >> shift), keys >> shift)


@dataclass(frozen=True, eq=False)
class QuantileSketch:
    """The histogram (module docstring) at resolution ``r``: occupied bins ``keys`` in order, their ``counts``,
    ``least`` and ``greatest`` values; read through the affine map ``a·x + b`` (``affine``)."""

    r: int
    keys: np.ndarray
    counts: np.ndarray
    least: np.ndarray
    greatest: np.ndarray
    a: float = 1.0
    b: float = 0.0
    _cum: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cum", np.cumsum(self.counts))

    def __reduce__(self) -> tuple:
        """Pickled without the cumulative counts (made again): a chunk's sketches travel to the pass's merges."""
        return QuantileSketch, (self.r, self.keys, self.counts, self.least, self.greatest, self.a, self.b)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, QuantileSketch) and (self.r, self.a, self.b) == (other.r, other.a, other.b)
                and all(np.array_equal(getattr(self, f), getattr(other, f))
                        for f in ("keys", "counts", "least", "greatest")))

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
        ``_kernels.moments``'), in one pass."""
        r, keys, counts, least, greatest, m2 = _histogram(x, lo, hi, mean, BINS)
        return cls(int(r), keys, counts, least, greatest), float(m2)

    @classmethod
    def of_counts(cls, values: np.ndarray, counts: np.ndarray) -> QuantileSketch:
        """The sketch of ``values`` repeated ``counts`` times (any order)."""
        values, counts = np.asarray(values, np.float64), np.asarray(counts, np.int64)
        keep = counts > 0
        return cls._of_points(values[keep], counts[keep])

    @classmethod
    def _of_points(cls, values: np.ndarray, counts: np.ndarray) -> QuantileSketch:
        """Points at the finest resolution, then as coarse as ``merge``'s rule makes a sketch of this size."""
        return cls._binned(R_MAX, _keys(values, R_MAX), counts, values, values)

    @classmethod
    def _binned(cls, r: int, keys: np.ndarray, counts: np.ndarray, least: np.ndarray,
                greatest: np.ndarray) -> QuantileSketch:
        """Bins (keys at ``r``, any order, repeats allowed) at the finest resolution ``≤ r`` the rule allows."""
        if counts.sum() <= EXACT:
            u, inverse = np.unique(keys, return_inverse=True)
            out_least, out_greatest = np.full(len(u), np.inf), np.full(len(u), -np.inf)
            np.minimum.at(out_least, inverse, least)
            np.maximum.at(out_greatest, inverse, greatest)
            return cls(r, u, np.bincount(inverse, weights=counts, minlength=len(u)).astype(np.int64), out_least,
                       out_greatest)
        r2 = _resolution(keys.min(), keys.max(), r, BINS)
        keys = _coarsened(keys, r - r2)
        k0 = keys.min()
        return cls(r2, *_occupied(_gathered(keys - k0, counts, least, greatest, int(keys.max() - k0) + 1), k0))

    @classmethod
    def merge(cls, parts: Sequence[QuantileSketch]) -> QuantileSketch:
        """The sketch of the union of the parts' values (read through the first part's affine map)."""
        first = parts[0]
        parts = [p if (p.a, p.b) == (first.a, first.b) else p._rekeyed(first.a, first.b) for p in parts]
        r = min(p.r for p in parts)
        merged = cls._binned(r, np.concatenate([_coarsened(p.keys, p.r - r) for p in parts]),
                             np.concatenate([p.counts for p in parts]), np.concatenate([p.least for p in parts]),
                             np.concatenate([p.greatest for p in parts]))
        return merged if (first.a, first.b) == (1.0, 0.0) else merged._through(first.a, first.b)

    def _through(self, a: float, b: float) -> QuantileSketch:
        return QuantileSketch(self.r, self.keys, self.counts, self.least, self.greatest, a, b)

    def _rekeyed(self, a: float, b: float) -> QuantileSketch:
        """This sketch's values as seen through ``a·x + b`` instead (exact up to rounding), binned afresh at the
        finest resolution where each bin still falls in one."""
        x0, x1 = (self.a * self.least + self.b - b) / a, (self.a * self.greatest + self.b - b) / a
        x0, x1 = np.minimum(x0, x1), np.maximum(x0, x1)
        r = R_MAX
        while r > 0 and np.any(_keys(x0, r) != _keys(x1, r)):
            r -= 1
        return QuantileSketch._binned(r, _keys(x0, r), self.counts, x0, x1)._through(a, b)

    def affine(self, a: float, b: float) -> QuantileSketch:
        """The sketch of ``a·x + b``."""
        return self._through(a * self.a, a * self.b + b)

    def _order_statistic(self, i: int) -> tuple[float, int]:
        """The ``i``-th smallest value (0-based) of the stored values, interpolated in its bin, and the bin."""
        j = int(np.searchsorted(self._cum, i, side="right"))
        lo, hi, c = self.least[j], self.greatest[j], int(self.counts[j])
        if lo == hi:
            return float(lo), j
        return float(lo + (hi - lo) * (i - (self._cum[j] - c)) / (c - 1)), j

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
        bins = [j for j in {self._order_statistic((self.n - 1) // 2)[1], self._order_statistic(self.n // 2)[1]}
                if self.least[j] < self.greatest[j]]
        return (abs(self.a) * max((float(self.greatest[j] - self.least[j]) for j in bins), default=0.0),
                int(sum(self.counts[j] for j in bins)))
