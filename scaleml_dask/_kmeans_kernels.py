"""Pure numpy kernels of k-means, shared by ``kmeans.KMeans`` (batch) and ``online.MiniBatchKMeans`` (streams).

Squared distances by one GEMM, ``‖x‖² − 2 x·c + ‖c‖²``, clipped at zero (the expansion can go slightly
negative by rounding).

>>> import numpy as np
>>> X = np.array([[0.0, 0.0], [10.0, 0.0], [9.0, 1.0]]); C = np.array([[0.0, 0.0], [10.0, 0.0]])
>>> labels, d2 = nearest(X, C)
>>> labels.tolist(), d2.tolist()
([0, 1, 1], [0.0, 0.0, 2.0])
"""

from __future__ import annotations

import numpy as np


def row_norms_sq(X: np.ndarray) -> np.ndarray:
    """``‖x‖²`` of every row of ``X``."""
    return np.einsum("ij,ij->i", X, X)


def sq_distances(X: np.ndarray, C: np.ndarray, x_sq: np.ndarray | None = None,
                 c_sq: np.ndarray | None = None) -> np.ndarray:
    """The ``(n, k)`` squared Euclidean distances between the rows of ``X`` and the centres ``C``."""
    x_sq = row_norms_sq(X) if x_sq is None else x_sq
    c_sq = row_norms_sq(C) if c_sq is None else c_sq
    D = X @ C.T
    D *= -2.0
    D += x_sq[:, None]
    D += c_sq[None, :]
    np.maximum(D, 0.0, out=D)
    return D


def nearest(X: np.ndarray, C: np.ndarray, x_sq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The index of the nearest centre of every row (int64) and the squared distance to it (float64)."""
    D = sq_distances(X, C, x_sq)
    labels = D.argmin(axis=1)
    return labels.astype(np.int64, copy=False), D[np.arange(len(X)), labels]
