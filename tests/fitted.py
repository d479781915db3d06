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


def small_table():
    """300 raw rows of a table — ``region`` (4 levels), ``price`` (10 % missing), ``qty`` (integers), ``member``
    (booleans) — with a numeric target ``y`` and a label ``segment`` ("high" / "low")."""
    import pandas as pd

    rng = np.random.default_rng(3)
    n = 300
    region = rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1])
    price = rng.gamma(2.0, 10.0, n)
    qty = rng.integers(1, 6, n)
    member = rng.random(n) < 0.4
    effect = pd.Series(region).map({"north": 1.0, "south": -1.0, "east": 0.5, "west": 2.0}).to_numpy()
    y = 0.2 * price + 1.5 * qty + 2.0 * member + effect + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({"region": region, "price": np.where(rng.random(n) < 0.1, np.nan, price), "qty": qty,
                          "member": member})
    return frame, y, np.where(y > np.median(y), "high", "low")


def table_pipelines(table: tuple) -> dict:
    """Name → a pipeline of raw columns fitted on ``small_table()``: a regression (scaler, imputer + min-max,
    one-hot with handle_unknown="error", booleans passed through) and a classifier of string labels."""
    from scaleml_dask.compose import make_column_transformer
    from scaleml_dask.pipeline import make_pipeline
    from scaleml_dask.preprocessing import MinMaxScaler, OneHotEncoder, SimpleImputer, StandardScaler

    frame, y, labels = table
    reg = make_pipeline(make_column_transformer(
        (OneHotEncoder(drop="first"), ["region"]), (make_pipeline(SimpleImputer(), StandardScaler()), ["price"]),
        (MinMaxScaler(), ["qty"]), remainder="passthrough"), sm.LinearRegression()).fit(frame, y)
    clf = make_pipeline(make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["region"]), (SimpleImputer(strategy="median"), ["price"]),
        remainder="passthrough"), StandardScaler(), sm.SGDClassifier(mode="local", loss="log_loss", batch_size=50,
                                                                     epochs=3, random_state=0)).fit(frame, labels)
    return {"table-reg": reg, "table-clf": clf}
