"""A mergeable quantile sketch for one-pass medians, with a deterministic error bound it carries along.

A sketch is a sorted list of weighted points and ``error``, a bound on how far its rank estimate
``R̂(x) = Σ{wᵢ : vᵢ ≤ x}`` can be from the true rank ``R(x) = #{values ≤ x}``, for every ``x``:

- a chunk's sketch holds every value (weight 1, error 0) when it has at most ``size`` of them; otherwise its
  sorted values are cut into ``size`` consecutive buckets of (nearly) equal count, each kept as its largest value
  with the bucket's count as weight: ``R̂`` then misses at most the one bucket that straddles ``x``, so the
  error is at most the largest bucket, ``⌈n / size⌉``;
- merging sketches adds their points (errors add: ``R̂`` and ``R`` are sums over the parts), and compresses the
  union back to ``size`` buckets the same way when it holds more, which adds at most its largest bucket.

In a pass over ``n`` values in ``n_chunks`` chunks, tree-reduced ``split_every`` at a time (``passes.tree_reduce``;
each node merges its parts at once), a value passes through at most ``L + 1`` compressions (its chunk's, then one
per level, ``L = ⌈log_split_every(n_chunks)⌉``), each adding at most ``W/size + w_max`` for the ``W`` values of the
node compressed and its heaviest point, so the error of the final sketch is at most about
``(L + 1) · n / size + 2 · n_chunks`` ranks: ``n / 700`` for 40 chunks of 10,000 values (measured: ``n / 1100``).
``error`` records the bound actually reached (tests check
the true rank of every median against it), and data of at most ``size`` values give exact medians (numpy's: the
mean of the two middle values for an even count).

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal(100_000)
>>> s = QuantileSketch.merge([QuantileSketch.of(x[i:i + 10_000]) for i in range(0, 100_000, 10_000)])
>>> m = s.median(); rank = int((x <= m).sum())
>>> s.error < 100, abs(rank - 50_000) <= s.error
(True, True)
>>> QuantileSketch.of(np.array([3.0, 1.0, 4.0, 2.0])).median()
2.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Points a sketch keeps (buckets).
SIZE = 4096


@dataclass(frozen=True)
class QuantileSketch:
    """Sorted ``values`` with ``weights`` (counts), total ``n``, and the rank ``error`` bound (module docstring)."""

    values: np.ndarray
    weights: np.ndarray
    error: float = 0.0
    size: int = SIZE

    @property
    def n(self) -> float:
        return float(self.weights.sum())

    @classmethod
    def of(cls, x: np.ndarray, size: int = SIZE) -> QuantileSketch:
        """The sketch of the (finite) values ``x``."""
        v = np.sort(np.asarray(x, dtype=np.float64))
        if len(v) <= size:
            return cls(v, np.ones(len(v)), 0.0, size)
        # unit weights: bucket b ends at index ⌈(b + 1) n / size⌉ - 1, no cumulated weights to search
        ends = np.ceil(np.arange(1, size + 1) * (len(v) / size)).astype(np.int64) - 1
        ends = ends[np.r_[True, ends[1:] != ends[:-1]]]  # non-decreasing: drop the repeats
        bucket = np.diff(np.concatenate([[-1], ends])).astype(np.float64)
        return cls(v[ends], bucket, float(bucket.max()), size)

    @classmethod
    def of_counts(cls, values: np.ndarray, counts: np.ndarray, size: int = SIZE) -> QuantileSketch:
        """The exact sketch of ``values`` repeated ``counts`` times (distinct values, any order)."""
        order = np.argsort(values, kind="stable")
        keep = np.asarray(counts, dtype=np.float64)[order] > 0
        return cls(np.asarray(values, np.float64)[order][keep], np.asarray(counts, np.float64)[order][keep], 0.0,
                   size)._compressed()

    @classmethod
    def merge(cls, parts: Sequence[QuantileSketch]) -> QuantileSketch:
        """The sketch of the union of the parts' values."""
        parts = list(parts)
        v = np.concatenate([p.values for p in parts])
        w = np.concatenate([p.weights for p in parts])
        order = np.argsort(v, kind="stable")
        return cls(v[order], w[order], float(sum(p.error for p in parts)), parts[0].size)._compressed()

    def affine(self, a: float, b: float) -> QuantileSketch:
        """The sketch of ``a·x + b`` (a > 0 keeps the order; a < 0 reverses it, with the bucket values then
        their smallest instead of largest: the bound grows by the largest weight)."""
        if a >= 0:
            return QuantileSketch(a * self.values + b, self.weights, self.error, self.size)
        return QuantileSketch((a * self.values + b)[::-1], self.weights[::-1],
                              self.error + float(self.weights.max(initial=0.0)), self.size)

    def with_value(self, value: float, count: float) -> QuantileSketch:
        """The sketch with ``count`` more values equal to ``value`` (an imputation)."""
        if count <= 0:
            return self
        return QuantileSketch.merge([self, QuantileSketch(np.array([float(value)]), np.array([float(count)]), 0.0,
                                                          self.size)])

    def quantile(self, q: float) -> float:
        """The value at rank ``q·n``: numpy's linear interpolation when exact (every value kept), else the first
        point whose cumulated weight reaches ``q·n``."""
        if len(self.values) == 0:
            return np.nan
        if self.error == 0 and np.all(self.weights == 1):
            return float(np.quantile(self.values, q))
        cum = np.cumsum(self.weights)
        i = int(np.searchsorted(cum, q * cum[-1], side="left"))
        if self.error == 0 and q == 0.5 and cum[-1] % 2 == 0 and i < len(cum) and cum[i] == q * cum[-1]:
            return float((self.values[i] + self.values[min(i + 1, len(cum) - 1)]) / 2)  # exact even count
        return float(self.values[min(i, len(self.values) - 1)])

    def median(self) -> float:
        return self.quantile(0.5)

    def _compressed(self) -> QuantileSketch:
        if len(self.values) <= self.size:
            return self
        cum = np.cumsum(self.weights)
        total = cum[-1]
        # bucket b ends at the last point whose cumulated weight is <= (b + 1) * total / size
        ends = np.minimum(np.searchsorted(cum, np.arange(1, self.size + 1) * (total / self.size), side="right") - 1,
                          len(cum) - 1)
        ends = ends[(ends >= 0) & np.r_[True, ends[1:] != ends[:-1]]]  # sorted already: drop the repeats
        if ends[-1] != len(cum) - 1:
            ends = np.append(ends, len(cum) - 1)
        bucket = np.diff(np.concatenate([[0.0], cum[ends]]))
        return QuantileSketch(self.values[ends], bucket, self.error + float(bucket.max()), self.size)
