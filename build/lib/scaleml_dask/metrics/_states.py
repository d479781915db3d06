"""Mergeable metric states: what one block of rows contributes to a metric, and how two contributions combine.

Every metric here is a *state* computed per row chunk inside the pass that reads it, combined by the fixed tree
of ``passes.tree_reduce`` (merges are exact and do not depend on the order, up to float rounding in the sums),
and finished on the client:

- ``Confusion``: weighted counts of (true, predicted) label pairs — accuracy, precision / recall / F1 (binary,
  micro, macro, weighted), the confusion matrix;
- ``ScoreTable``: per label the weight of each distinct score (or score bin) — ROC AUC and average precision
  of any label against the rest (``ranking``). It holds the exact scores while there are at most ``max_bins``
  distinct ones; beyond that it drops the fewest low bits of the scores' order-preserving 64-bit keys that
  leave at most ``max_bins`` (bins of a fixed *relative* width, as floating point itself), so it stays bounded
  whatever the data. Only pairs of a positive and a negative row in the same coarse bin are uncertain, so
  ``Ranking.auc_bound`` = 0.5 Σ_bins pos·neg / (P·N) bounds the AUC's error (and ``ap_bound`` average
  precision's), computed from the state itself: 0 while it is exact;
- ``ProbaLoss``: per true label the summed −log of each class's clipped probability — log loss;
- ``Residuals``: weight, mean and centred sum of squares of y (Chan et al.'s pairwise update), the summed
  squared and absolute errors — R², MSE, RMSE, MAE.

>>> r = Ranking.from_block(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
>>> r.auc(), r.auc_bound()
(0.75, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Default bound on the distinct scores a ``Ranking`` keeps (65,536 bins: 1.5 MB per state).
MAX_BINS = 2**16


def _weights(w: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n) if w is None else np.asarray(w, dtype=np.float64).ravel()


# ------------------------------------------------------------------------------------------------------
# labels
# ------------------------------------------------------------------------------------------------------


def _small_int_codes(a: np.ndarray, b: np.ndarray, span_max: int = 64) -> tuple | None:
    """``(lo, span, a - lo, b - lo)`` as int64 codes when both hold integer values within ``span_max`` of each
    other (class labels), else None."""
    if a.dtype.kind not in "iub" and (a.dtype.kind != "f" or b.dtype.kind not in "iubf"):
        return None
    if b.dtype.kind not in "iubf" or len(a) == 0:
        return None
    lo = min(a.min(), b.min())
    hi = max(a.max(), b.max())
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo >= span_max:
        return None
    ca, cb = (np.asarray(x, dtype=np.float64) - lo for x in (a, b))
    ia, ib = ca.astype(np.int64), cb.astype(np.int64)
    if not (np.array_equal(ia, ca) and np.array_equal(ib, cb)):
        return None
    return lo, int(hi - lo) + 1, ia, ib


@dataclass
class Confusion:
    """Weighted counts of (true, predicted) labels over ``labels`` (sorted union of both)."""

    labels: np.ndarray
    counts: np.ndarray  # (L, L): rows true, columns predicted

    @classmethod
    def from_block(cls, y_true: np.ndarray, y_pred: np.ndarray, w: np.ndarray | None = None) -> Confusion:
        y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
        n = len(y_true)
        small = _small_int_codes(y_true, y_pred)
        if small is not None:  # labels that are small integers: counted without sorting
            lo, span, ct, cp = small
            counts = np.bincount(ct * span + cp, weights=_weights(w, n), minlength=span * span).reshape(span, span)
            seen = np.flatnonzero((counts.sum(axis=0) > 0) | (counts.sum(axis=1) > 0)
                                  | (np.bincount(ct, minlength=span) > 0) | (np.bincount(cp, minlength=span) > 0))
            labels = (seen + lo).astype(np.result_type(y_true, y_pred))
            return cls(labels, counts[np.ix_(seen, seen)])
        labels, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
        L = len(labels)
        counts = np.bincount(codes[:n] * L + codes[n:], weights=_weights(w, n), minlength=L * L)
        return cls(labels, counts.reshape(L, L))

    @classmethod
    def merge(cls, parts: list[Confusion]) -> Confusion:
        labels = np.unique(np.concatenate([p.labels for p in parts]))
        counts = np.zeros((len(labels), len(labels)))
        for p in parts:
            idx = np.searchsorted(labels, p.labels)
            counts[np.ix_(idx, idx)] += p.counts
        return cls(labels, counts)

    def matrix(self, labels: np.ndarray | None = None) -> np.ndarray:
        """The confusion matrix over ``labels`` (default: every label seen), rows true, columns predicted."""
        if labels is None:
            return self.counts.copy()
        labels = np.asarray(labels)
        out = np.zeros((len(labels), len(labels)))
        pos = np.searchsorted(self.labels, labels)
        known = (pos < len(self.labels)) & (self.labels[np.minimum(pos, len(self.labels) - 1)] == labels)
        k = np.flatnonzero(known)
        out[np.ix_(k, k)] = self.counts[np.ix_(pos[k], pos[k])]
        return out


# ------------------------------------------------------------------------------------------------------
# rankings (ROC AUC, average precision)
# ------------------------------------------------------------------------------------------------------

_SIGN = np.uint64(1 << 63)


def order_keys(scores: np.ndarray) -> np.ndarray:
    """uint64 keys whose order is the order of the float64 ``scores`` (NaN excluded; -0.0 == 0.0)."""
    s = np.asarray(scores, dtype=np.float64).ravel() + 0.0  # -0.0 + 0.0 is +0.0
    bits = s.view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def _scatter_rows(out: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
    """``out[rows[r], cols[j]] += values[r, j]`` (repeated columns summed)."""
    for r, row in enumerate(rows):
        out[row] += np.bincount(cols, weights=values[r], minlength=out.shape[1])


@dataclass
class ScoreTable:
    """Weight of each score key (``keys`` ascending, exact scores at ``level`` 0) per label (``labels``
    sorted): ``weights`` ``(n_labels, n_keys)``."""

    level: int
    labels: np.ndarray
    keys: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_block(cls, y: np.ndarray, scores: np.ndarray, w: np.ndarray | None = None,
                   max_bins: int = MAX_BINS) -> ScoreTable:
        y = np.asarray(y).ravel()
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if np.isnan(scores).any():
            raise ValueError("the scores contain NaN")
        labels, lab = np.unique(y, return_inverse=True)
        keys, key = np.unique(order_keys(scores), return_inverse=True)
        weights = np.bincount(lab * len(keys) + key, weights=_weights(w, len(y)), minlength=len(labels) * len(keys))
        return cls(0, labels, keys, weights.reshape(len(labels), len(keys)))._bounded(max_bins)

    @classmethod
    def merge(cls, parts: list[ScoreTable], max_bins: int = MAX_BINS) -> ScoreTable:
        level = max(p.level for p in parts)
        labels = np.unique(np.concatenate([p.labels for p in parts]))
        keys = [p.keys >> np.uint64(level - p.level) for p in parts]
        uk, inv = np.unique(np.concatenate(keys), return_inverse=True)
        weights = np.zeros((len(labels), len(uk)))
        start = 0
        for p, k in zip(parts, keys):
            _scatter_rows(weights, np.searchsorted(labels, p.labels), inv[start:start + len(k)], p.weights)
            start += len(k)
        return cls(level, labels, uk, weights)._bounded(max_bins)

    def _bounded(self, max_bins: int) -> ScoreTable:
        """The finest coarsening (fewest low bits dropped) that leaves at most ``max_bins`` keys: the keys are
        sorted, so a coarsening's key count is a count of changes, and the weights sum over runs."""
        if len(self.keys) <= max_bins:
            return self

        def distinct(shift: int) -> int:
            k = self.keys >> np.uint64(shift)
            return 1 + int(np.count_nonzero(k[1:] != k[:-1]))

        lo, hi = 1, 64 - self.level
        while lo < hi:  # the key count falls as more bits are dropped
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if distinct(mid) <= max_bins else (mid + 1, hi)
        k = self.keys >> np.uint64(lo)
        starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
        return ScoreTable(self.level + lo, self.labels, k[starts], np.add.reduceat(self.weights, starts, axis=1))

    def ranking(self, positive: object) -> Ranking:
        """The ranking of label ``positive`` against every other label."""
        i = np.searchsorted(self.labels, positive)
        pos = self.weights[i] if i < len(self.labels) and self.labels[i] == positive else np.zeros(len(self.keys))
        return Ranking(self.level, self.keys, pos, self.weights.sum(axis=0) - pos)


@dataclass
class Ranking:
    """Positive and negative weight per distinct score key (exact scores at ``level`` 0; else keys with their
    ``level`` low bits dropped), keys ascending."""

    level: int
    keys: np.ndarray
    pos: np.ndarray
    neg: np.ndarray

    @classmethod
    def from_block(cls, positive: np.ndarray, scores: np.ndarray, w: np.ndarray | None = None,
                   max_bins: int = MAX_BINS) -> Ranking:
        """The ranking of the rows where ``positive`` is true against the others."""
        return ScoreTable.from_block(np.asarray(positive).ravel().astype(bool), scores, w, max_bins).ranking(True)

    def _totals(self) -> tuple[float, float]:
        P, N = float(self.pos.sum()), float(self.neg.sum())
        if P == 0 or N == 0:
            raise ValueError("Only one class is present in y_true. ROC AUC score is not defined in that case.")
        return P, N

    def auc(self) -> float:
        """Area under the ROC curve (ties in a bin count one half, as scikit-learn counts tied scores)."""
        P, N = self._totals()
        below = np.cumsum(self.neg) - self.neg
        return float(np.sum(self.pos * (below + 0.5 * self.neg)) / (P * N))

    def auc_bound(self) -> float:
        """Largest possible difference to the AUC of the exact scores (0 for an exact state)."""
        if self.level == 0:
            return 0.0
        P, N = self._totals()
        return float(0.5 * np.sum(self.pos * self.neg) / (P * N))

    def _descending(self) -> tuple[np.ndarray, ...]:
        pos, neg = self.pos[::-1], self.neg[::-1]
        return pos, neg, np.cumsum(pos), np.cumsum(neg)

    def average_precision(self) -> float:
        """Average precision: Σ (R_k − R_k−1) P_k over the distinct scores, as scikit-learn's."""
        pos, neg, tp, fp = self._descending()
        P = float(tp[-1]) if len(tp) else 0.0
        if P == 0:
            return 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        return float(np.sum(pos / P * precision))

    def ap_bound(self) -> float:
        """Largest possible difference to the average precision of the exact scores (0 for an exact state):
        within a bin, the precision at any order of its rows lies between the two extremes below."""
        if self.level == 0:
            return 0.0
        pos, neg, tp, fp = self._descending()
        P = float(tp[-1]) if len(tp) else 0.0
        if P == 0:
            return 0.0
        tp0, fp0 = tp - pos, fp - neg  # before the bin
        with np.errstate(invalid="ignore", divide="ignore"):
            before = np.where(tp0 + fp0 > 0, tp0 / (tp0 + fp0), 1.0)
            hi = np.maximum((tp0 + pos) / (tp0 + fp0 + pos), before)
            lo = np.minimum(tp / (tp + fp), np.where(tp0 + fp0 + neg > 0, tp0 / (tp0 + fp0 + neg), 0.0))
        return float(np.sum(np.where(pos > 0, pos / P * (hi - lo), 0.0)))


# ------------------------------------------------------------------------------------------------------
# probabilities and values
# ------------------------------------------------------------------------------------------------------


@dataclass
class ProbaLoss:
    """Per true label (sorted ``labels``) the summed weighted −log of each column's clipped probability."""

    labels: np.ndarray
    sums: np.ndarray  # (L, K)
    weight: float

    @classmethod
    def from_block(cls, y_true: np.ndarray, proba: np.ndarray, w: np.ndarray | None = None) -> ProbaLoss:
        y_true = np.asarray(y_true).ravel()
        P = np.asarray(proba, dtype=np.float64)
        if P.ndim == 1:
            P = np.column_stack([1.0 - P, P])
        if P.min(initial=0.0) < 0 or P.max(initial=0.0) > 1:
            raise ValueError("y_prob contains values outside [0, 1]")
        eps = np.finfo(np.float64).eps
        nll = -np.log(np.clip(P, eps, 1 - eps))
        labels, codes = np.unique(y_true, return_inverse=True)
        w = _weights(w, len(y_true))
        sums = np.zeros((len(labels), P.shape[1]))
        np.add.at(sums, codes, w[:, None] * nll)
        return cls(labels, sums, float(w.sum()))

    @classmethod
    def merge(cls, parts: list[ProbaLoss]) -> ProbaLoss:
        labels = np.unique(np.concatenate([p.labels for p in parts]))
        sums = np.zeros((len(labels), parts[0].sums.shape[1]))
        for p in parts:
            sums[np.searchsorted(labels, p.labels)] += p.sums
        return cls(labels, sums, sum(p.weight for p in parts))

    def loss(self, labels: np.ndarray | None = None) -> float:
        """Mean log loss; the probability columns are the sorted ``labels`` (default: the labels seen)."""
        labels = self.labels if labels is None else np.unique(np.asarray(labels))
        K = self.sums.shape[1]
        if len(labels) != K:
            raise ValueError(f"y_true has {len(labels)} classes ({labels[:10].tolist()}) but y_prob has {K} "
                             "columns; pass labels=")
        col = np.searchsorted(labels, self.labels)
        if np.any(col >= K) or np.any(labels[np.minimum(col, K - 1)] != self.labels):
            raise ValueError(f"y_true has labels {self.labels.tolist()} not among labels {labels.tolist()}")
        return float(self.sums[np.arange(len(self.labels)), col].sum() / self.weight)


@dataclass
class Residuals:
    """Weight, weighted mean and centred sum of squares of ``y``, and the summed squared and absolute errors."""

    weight: float
    mean: float
    m2: float
    sse: float
    sae: float

    @classmethod
    def from_block(cls, y_true: np.ndarray, y_pred: np.ndarray, w: np.ndarray | None = None) -> Residuals:
        y = np.asarray(y_true, dtype=np.float64).ravel()
        e = y - np.asarray(y_pred, dtype=np.float64).ravel()
        w = _weights(w, len(y))
        W = float(w.sum())
        mean = float(w @ y / W) if W > 0 else 0.0
        return cls(W, mean, float(w @ (y - mean) ** 2), float(w @ (e * e)), float(w @ np.abs(e)))

    @classmethod
    def merge(cls, parts: list[Residuals]) -> Residuals:
        parts = [p for p in parts if p.weight > 0] or parts[:1]
        W = sum(p.weight for p in parts)
        mean = sum(p.weight * p.mean for p in parts) / W if W > 0 else 0.0
        m2 = sum(p.m2 + p.weight * (p.mean - mean) ** 2 for p in parts)
        return cls(W, mean, m2, sum(p.sse for p in parts), sum(p.sae for p in parts))

    def r2(self) -> float:
        """1 − SSE / SST as scikit-learn's ``r2_score`` (``force_finite``: 1.0 for a perfect fit of constant y, 0.0
        for an imperfect one)."""
        if self.m2 == 0:
            return 1.0 if self.sse == 0 else 0.0
        return 1.0 - self.sse / self.m2

    def mse(self) -> float:
        return self.sse / self.weight

    def mae(self) -> float:
        return self.sae / self.weight
