"""Small data and one fitted model of each batch estimator, shared by the registry and serving tests."""

from __future__ import annotations

import numpy as np

import scaleml_dask as sm


def small_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """600 × 5 rows: X, a linear target y, its binary split and a 3-class split."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.7 + rng.normal(0, 0.3, 600)
    return X, y, (y > 0.7).astype(np.int64), np.digitize(y, [-1.0, 2.0])


def batch_models(data: tuple) -> dict:
    """Name (also the served model's name) → a batch estimator fitted on ``small_data()``."""
    X, y, yc, y3 = data
    return {
        "linear": sm.LinearRegression().fit(X, y),
        "ridge": sm.Ridge(alpha=3.0).fit(X, y),
        "pca": sm.PCA(n_components=3).fit(X),
        "sgd-reg": sm.SGDRegressor(mode="local", batch_size=50, epochs=2, eta0=0.05).fit(X, y),
        "sgd-clf": sm.SGDClassifier(mode="local", batch_size=50, epochs=2).fit(X, yc),
        "sgd-clf3": sm.SGDClassifier(mode="local", batch_size=50, epochs=2).fit(X, y3),
    }
