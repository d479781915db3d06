"""``kmeans_sweep``: k-means for a list of ``n_clusters`` sharing every pass over the data.

- **One initialisation for all k**: the k-means|| candidates are sampled once, for the largest k
  (``oversampling_factor × k_max`` per round); each k takes its initial centres from them by weighted
  k-means++ and weighted Lloyd in memory (``kmeans.reduce_candidates``), as ``KMeans`` does for one k.
- **Shared Lloyd passes**: each pass reads a chunk once and assigns its rows to the centres of every k still
  iterating (``_sweep_block``: the compiled Lloyd kernel per k on the same block); a k leaves the passes when
  it has converged by ``KMeans``'s rule.
- **How many clusters**: the inertia of every k (its elbow by the largest distance below the chord of the
  normalised curve, ``elbow_``), and the silhouette of each k on a uniform sample of rows taken in the first
  pass (a seeded permutation of the row index: exactly ``silhouette_sample`` rows, whatever the chunking).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.vstack([rng.normal(c, 0.3, size=(300, 2)) for c in ([0, 0], [6, 0], [0, 6], [6, 6])])
>>> sweep = kmeans_sweep(X, [2, 3, 4, 5, 6], random_state=0)
>>> sweep.best_silhouette_k_, sweep.elbow_, sweep.inertia_.round().astype(int).tolist()[2]
(4, 4, 215)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._folds import Permutation
from .._kmeans_kernels import LloydPart, combine_lloyd, lloyd_block

__all__ = ["KMeansSweep", "kmeans_sweep"]


def _sweep_block(x: np.ndarray, w: np.ndarray | None, *, chunk_index: int, row_start: int,
                 centers: Sequence[np.ndarray], n_far: Sequence[int], with_moments: bool,
                 sample: Permutation | None, sample_size: int) -> tuple[list[LloydPart], np.ndarray | None]:
    """One chunk of a shared Lloyd pass: the Lloyd part of every k, and the chunk's rows of the sample."""
    parts = [lloyd_block(x, w, chunk_index=chunk_index, row_start=row_start, centers=C, n_far=f,
                         with_moments=with_moments and i == 0) for i, (C, f) in enumerate(zip(centers, n_far))]
    rows = None
    if sample is not None:
        keep = sample(np.arange(row_start, row_start + len(x))) < sample_size
        rows = np.asarray(x[keep], dtype=np.float64)
    return parts, rows


def _combine_sweep(parts: list[tuple[list[LloydPart], np.ndarray | None]]) -> tuple[list[LloydPart], Any]:
    lloyd = [combine_lloyd([p[0][i] for p in parts]) for i in range(len(parts[0][0]))]
    rows = [p[1] for p in parts if p[1] is not None]
    return lloyd, (np.concatenate(rows) if rows else None)


@dataclass
class KMeansSweep:
    """The result of ``kmeans_sweep``: a fitted ``KMeans`` per k and what helps choose k."""

    n_clusters_: np.ndarray
    models_: list
    inertia_: np.ndarray
    n_iter_: np.ndarray
    silhouette_: np.ndarray
    silhouette_sample_: int
    elbow_: int
    best_silhouette_k_: int
    passes_: int
    history_: list = field(default_factory=list)  # inertia of every pass, per k

    def model(self, k: int) -> Any:
        """The fitted ``KMeans`` with ``k`` clusters."""
        return self.models_[int(np.flatnonzero(self.n_clusters_ == k)[0])]


def elbow(ks: np.ndarray, inertia: np.ndarray) -> int:
    """The k of largest distance below the chord from the first to the last point of the normalised inertia
    curve (the "kneedle" elbow)."""
    if len(ks) < 3:
        return int(ks[0])
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    span = inertia[0] - inertia[-1]
    y = (inertia - inertia[-1]) / span if span > 0 else np.zeros(len(ks))
    return int(ks[int(np.argmax((1 - x) - y))])


def kmeans_sweep(X: Any, n_clusters: Sequence[int], *, sample_weight: Any = None, max_iter: int = 300,
                 tol: float = 1e-4, random_state: Any = None, oversampling_factor: float = 2.0, init_rounds: int = 5,
                 silhouette_sample: int = 2000) -> KMeansSweep:
    """K-means for every ``n_clusters`` at once: one k-means|| initialisation, Lloyd passes shared by every k.

    Returns a ``KMeansSweep`` with a fitted ``KMeans`` per k, their inertia (elbow) and silhouette on a sample.
    ``X``: numpy, dask, xarray, zarr or a dataset path / name."""
    from sklearn.metrics import silhouette_score
    from sklearn.utils import check_random_state

    from .. import kmeans as km
    from ..passes import one_pass
    from ..validation import as_dask_array

    ks = np.array(sorted({int(k) for k in n_clusters}), dtype=np.int64)
    if len(ks) == 0 or ks[0] < 1:
        raise ValueError(f"n_clusters must be positive ints; got {list(n_clusters)}")
    dX = as_dask_array(X, "X", ndim=2)
    w = km.check_sample_weight(sample_weight, dX)
    n = int(dX.shape[0])
    if n < ks[-1]:
        raise ValueError(f"n_samples={n} should be >= n_clusters={ks[-1]}")
    dX, w = km._held_in_cluster_memory(dX, w)
    rng = check_random_state(random_state)
    cands, weights = km.kmeans_parallel_candidates(dX, w, rng, oversampling_factor * ks[-1], init_rounds)
    centers = [km.reduce_candidates(dX, cands, weights, int(k), rng) for k in ks]
    passes = 1  # k-means|| reads the data once (kmeans.kmeans_parallel_candidates)
    sample = Permutation.seeded(n, int(rng.randint(2**31))) if silhouette_sample else None
    m = min(silhouette_sample, n)
    active = list(range(len(ks)))
    history: list[list[float]] = [[] for _ in ks]
    final: dict[int, tuple[np.ndarray, float, int]] = {}
    tol_shift, rows = 0.0, None
    for it in range(max_iter):
        parts, got = one_pass(_sweep_block, _combine_sweep, dX, w, centers=[centers[i] for i in active],
                              n_far=[int(ks[i]) for i in active], with_moments=it == 0 and tol > 0,
                              sample=sample if it == 0 else None, sample_size=m)
        passes += 1
        if it == 0:
            rows = got
            moments = parts[0].moments
            if moments is not None:
                cnt, s, ss = moments
                tol_shift = tol * float(np.mean(np.maximum(ss / cnt - (s / cnt) ** 2, 0.0)))
        still = []
        for i, p in zip(active, parts):
            history[i].append(p.inertia)
            new = km._updated_centers(p, centers[i])
            small = len(history[i]) > 1 and abs(history[i][-2] - p.inertia) <= km.INERTIA_RTOL * tol * p.inertia
            if float(np.sum((new - centers[i]) ** 2)) <= tol_shift or small or it + 1 == max_iter:
                final[i] = (centers[i], p.inertia, len(history[i]))
            else:
                centers[i] = new
                still.append(i)
        active = still
        if not active:
            break
    models = []
    for i, k in enumerate(ks):
        C, inertia, n_iter = final[i]
        model = km.KMeans(int(k), random_state=random_state, max_iter=max_iter, tol=tol,
                          oversampling_factor=oversampling_factor, init_rounds=init_rounds)
        model.cluster_centers_, model.inertia_, model.n_iter_ = C, inertia, n_iter
        model.inertia_history_ = np.asarray(history[i])
        model.n_features_in_ = int(dX.shape[1])
        model.labels_ = model._predict_dask(dX)
        models.append(model)
    inertia = np.array([final[i][1] for i in range(len(ks))])
    sil = np.full(len(ks), np.nan)
    if rows is not None and len(rows) > 2:
        for i, model in enumerate(models):
            labels = km.nearest(rows, model.cluster_centers_)[0]
            if 1 < len(np.unique(labels)) < len(rows):
                sil[i] = silhouette_score(rows, labels)
    best_sil = int(ks[int(np.nanargmax(sil))]) if np.isfinite(sil).any() else int(ks[0])
    return KMeansSweep(ks, models, inertia, np.array([final[i][2] for i in range(len(ks))]), sil,
                       0 if rows is None else len(rows), elbow(ks, inertia), best_sil, passes, history)
