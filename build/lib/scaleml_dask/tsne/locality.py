"""A row order that keeps neighbours close in memory, for the optimisation's random accesses.

Each gradient step reads the embedding at every nonzero of P, i.e. at each point's neighbours. In the
input's row order those reads are scattered over the whole (n, 2) embedding; once the rows are sorted by
k-means cell (cells of ~``cell_rows`` rows, Lloyd on a sample, float32 GEMMs), a point's neighbours sit in
its own and a few nearby cells, and consecutive points share them, so the reads hit the cache
(measured at 1,000,000 points: benchmarks/README.md, "t-SNE").

>>> import numpy as np
>>> group = np.arange(600) % 3  # three far-apart groups, rows interleaved
>>> X = (group[:, None] * 100.0 + np.random.default_rng(0).normal(size=(600, 2))).astype(np.float32)
>>> cells = assign(X, kmeans_cells(X, 12, random_state=0))
>>> all(len(set(group[cells == c])) == 1 for c in range(12))  # a cell never mixes far-apart points
True
>>> order = cell_order(X, cell_rows=50, random_state=0)  # the same 12 cells
>>> bool(np.all(np.diff(cells[order]) >= 0))  # rows sorted by cell
True
"""

from __future__ import annotations

import numpy as np


def kmeans_cells(X: np.ndarray, n_cells: int, *, n_iter: int = 8, sample_per_cell: int = 40,
                 random_state: int | None = None) -> np.ndarray:
    """Centroids (n_cells, d) float32 of Lloyd's k-means on a sample of ``sample_per_cell`` rows per cell."""
    rng = np.random.default_rng(random_state)
    sample = X[np.sort(rng.choice(len(X), min(len(X), sample_per_cell * n_cells), replace=False))]
    centroids = sample[rng.choice(len(sample), n_cells, replace=False)].astype(np.float32)
    for _ in range(n_iter):
        label = assign(sample, centroids)
        counts = np.bincount(label, minlength=n_cells)
        sums = np.zeros(centroids.shape, dtype=np.float64)
        np.add.at(sums, label, sample)
        filled = counts > 0
        centroids[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    return centroids


def assign(X: np.ndarray, centroids: np.ndarray, rows: int = 65536) -> np.ndarray:
    """Index of the nearest centroid of each row (int32), by GEMM in blocks of ``rows``."""
    c_norms = np.einsum("ij,ij->i", centroids, centroids)
    out = np.empty(len(X), dtype=np.int32)
    for s in range(0, len(X), rows):
        out[s:s + rows] = np.argmin(c_norms - 2.0 * (X[s:s + rows] @ centroids.T), axis=1)
    return out


def cell_order(X: np.ndarray, *, cell_rows: int = 1000, random_state: int | None = None) -> np.ndarray:
    """A permutation of the rows of ``X`` that sorts them by k-means cell (stable within a cell)."""
    X = np.asarray(X, dtype=np.float32)
    n_cells = max(1, len(X) // max(1, cell_rows))
    label = assign(X, kmeans_cells(X, n_cells, random_state=random_state))
    return np.argsort(label, kind="stable")
