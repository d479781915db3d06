"""ONNX export: the graph run by onnxruntime equals the model on float64 data."""

from __future__ import annotations

import numpy as np
import pytest

import scaleml_dask as sm
from scaleml_dask.deploy.compress import quantize
from scaleml_dask.deploy.onnx import to_onnx

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 6)) * [1, 10, 0.1, 1, 100, 1] + [0, 5, 0, -3, 0, 1]
    z = (X - X.mean(0)) / X.std(0)
    y = z @ np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0]) + 0.3 * rng.normal(size=800)
    return X, z, y


def _run(model):
    proto = to_onnx(model)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return lambda X: dict(zip(names, sess.run(names, {"X": X}))), names


def _close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    assert np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)) <= 1e-6
    assert np.max(np.abs(a - b)) <= 1e-12 * max(1.0, np.abs(b).max())


@pytest.mark.parametrize("make", [
    lambda X, z, y: sm.LinearRegression().fit(X, y),
    lambda X, z, y: sm.Ridge(alpha=10.0, fit_intercept=False).fit(X, y),
    lambda X, z, y: sm.SGDRegressor(mode="local", batch_size=50, epochs=2).fit(z, y),
    lambda X, z, y: quantize(sm.LinearRegression().fit(X, y), "int8")[0],
], ids=["LinearRegression", "Ridge", "SGDRegressor", "int8-LinearRegression"])
def test_regressors(data, make):
    X, z, y = data
    model = make(X, z, y)
    run, names = _run(model)
    assert names == ["predict"]
    _close(run(X)["predict"], model.predict(X))


@pytest.mark.parametrize("whiten", [False, True])
def test_pca(data, whiten):
    X = data[0]
    model = sm.PCA(n_components=3, whiten=whiten).fit(X)
    run, names = _run(model)
    assert names == ["transform"]
    _close(run(X)["transform"], model.transform(X))


@pytest.mark.parametrize("labels, loss", [("binary", "log_loss"), ("three", "log_loss"), ("binary", "hinge"),
                                          ("float", "log_loss")])
def test_sgd_classifier(data, labels, loss):
    _, z, y = data
    target = {"binary": y > 0, "three": np.digitize(y, [-1.0, 1.0]) + 10,
              "float": np.where(y > 0, 2.0, -1.0)}[labels]  # float labels (integer-valued: not continuous)
    model = sm.SGDClassifier(mode="local", loss=loss, batch_size=50, epochs=2).fit(z, target)
    run, names = _run(model)
    got = run(z)
    assert names == (["predict", "predict_proba"] if loss == "log_loss" else ["predict"])
    assert np.array_equal(got["predict"], model.predict(z).astype(got["predict"].dtype))
    if loss == "log_loss":
        _close(got["predict_proba"], model.predict_proba(z))


def test_unsupported_models_are_refused():
    with pytest.raises(ValueError, match="cannot export a RLS to ONNX"):
        to_onnx(sm.online.RLS())
    with pytest.raises(ValueError, match="not fitted"):
        to_onnx(sm.LinearRegression())
