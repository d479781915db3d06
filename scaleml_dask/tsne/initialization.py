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


def principal_axes(X: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and top principal axes (d, n_components) of the in-memory ``X``, in float64.

    Signs are fixed so that each axis's largest loading is positive (the convention of
    scikit-learn and ``sm.PCA``), which makes the result reproducible across BLAS builds.
    """
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    cov = np.cov(X - mean, rowvar=False).reshape(X.shape[1], X.shape[1])
    values, vectors = np.linalg.eigh(cov)
    axes = vectors[:, np.argsort(values)[::-1][:n_components]]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    return mean, axes


def pca(X: np.ndarray, n_components: int = 2, random_state: int | np.random.Generator | None = None,
        jitter: float = 0.01) -> np.ndarray:
    """Projection of the in-memory (already reduced) ``X`` on its top principal axes, rescaled."""
    mean, axes = principal_axes(X, n_components)
    Y = rescale((np.asarray(X, dtype=np.float64) - mean) @ axes)
    return _jitter(Y, random_state, jitter)


def random(n_samples: int, n_components: int = 2,
           random_state: int | np.random.Generator | None = None) -> np.ndarray:
    """Gaussian start with standard deviation ``TARGET_STD``."""
    rng = np.random.default_rng(random_state)
    return rng.normal(0.0, TARGET_STD, size=(n_samples, n_components))


def _jitter(Y: np.ndarray, random_state: int | np.random.Generator | None, scale: float) -> np.ndarray:
    rng = np.random.default_rng(random_state)
    return Y + rng.normal(0.0, scale * TARGET_STD, size=Y.shape)
