"""Starting embeddings: the top two principal components, rescaled to a tiny spread.

A PCA start keeps the global layout of the data (Kobak & Linderman 2021); scaling it to standard
deviation 1e-4 in the first coordinate (as openTSNE does) lets early exaggeration form the clusters
before repulsion acts. A jitter of 1% of that spread separates duplicate rows.

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(100, 5)) * [5, 2, 1, 1, 1]
>>> Y = pca(X, random_state=0)
>>> Y.shape, bool(abs(Y[:, 0].std() - 1e-4) < 1e-6)
((100, 2), True)
"""

from __future__ import annotations

import numpy as np

TARGET_STD = 1e-4


def rescale(Y: np.ndarray, target_std: float = TARGET_STD) -> np.ndarray:
    """``Y`` scaled so that its first column has standard deviation ``target_std``."""
    std = float(np.std(Y[:, 0]))
    return Y * (target_std / std) if std > 0 else Y


#: Rows per float64 block: the in-memory reductions never hold a float64 copy of the whole input.
BLOCK_ROWS = 65_536


def principal_axes(X: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and top principal axes (d, n_components) of the in-memory ``X``, in float64.

    The covariance is summed over blocks of rows, so memory stays O(block · d) beyond ``X`` itself.
    Signs are fixed so that each axis's largest loading is positive (the convention of
    scikit-learn and ``sm.PCA``), which makes the result reproducible across BLAS builds.
    """
    X = np.asarray(X)
    n, d = X.shape
    mean = X.mean(axis=0, dtype=np.float64)
    cov = np.zeros((d, d))
    for s in range(0, n, BLOCK_ROWS):
        block = X[s:s + BLOCK_ROWS].astype(np.float64) - mean
        cov += block.T @ block
    values, vectors = np.linalg.eigh(cov / max(n - 1, 1))
    axes = vectors[:, np.argsort(values)[::-1][:n_components]]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    return mean, axes


def project(X: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """``(X - mean) @ axes`` in float64, block by block."""
    out = np.empty((len(X), axes.shape[1]))
    for s in range(0, len(X), BLOCK_ROWS):
        out[s:s + BLOCK_ROWS] = (X[s:s + BLOCK_ROWS].astype(np.float64) - mean) @ axes
    return out


def pca(X: np.ndarray, n_components: int = 2, random_state: int | np.random.Generator | None = None,
        jitter: float = 0.01) -> np.ndarray:
    """Projection of the in-memory (already reduced) ``X`` on its top principal axes, rescaled."""
    return _jitter(rescale(project(X, *principal_axes(X, n_components))), random_state, jitter)


def random(n_samples: int, n_components: int = 2,
           random_state: int | np.random.Generator | None = None) -> np.ndarray:
    """Gaussian start with standard deviation ``TARGET_STD``."""
    rng = np.random.default_rng(random_state)
    return rng.normal(0.0, TARGET_STD, size=(n_samples, n_components))


def _jitter(Y: np.ndarray, random_state: int | np.random.Generator | None, scale: float) -> np.ndarray:
    rng = np.random.default_rng(random_state)
    return Y + rng.normal(0.0, scale * TARGET_STD, size=Y.shape)
