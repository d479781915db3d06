"""Deployment of the clusterers (KMeans, online.MiniBatchKMeans): registry round trip, int8 / float16 /
pruning with label agreement and inertia change reported, batch scoring on the cluster, serving over real
HTTP (labels and distances), ONNX under onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from test_serve import running, v2

import scaleml_dask as sm
from scaleml_dask import online
from scaleml_dask.deploy.compress import prediction_bound, prune, quantize
from scaleml_dask.deploy.registry import load_model, read_metadata, save_model
from scaleml_dask.io.synthetic import mixture_chunk

K, D = 4, 6
CENTERS = np.random.default_rng(3).normal(0.0, 5.0, (K, D))


@pytest.fixture(scope="module")
def data():
    X, y = mixture_chunk(5, 0, 1200, centers=CENTERS, cluster_std=1.0)
    return X[:900], y[:900], X[900:], y[900:]


@pytest.fixture(scope="module")
def models(data):
    X = data[0]
    mbk = online.MiniBatchKMeans(K, random_state=0)
    for Xb in np.split(X, 6):
        mbk.learn_many(Xb)
    return {"kmeans": sm.KMeans(K, random_state=0).fit(X), "minibatch": mbk}


def _labels(model, X):
    return model.predict(X) if hasattr(model, "predict") else model.predict_many(X)


def _distances(model, X):
    return model.transform(X) if hasattr(model, "transform") else model.transform_many(X)


@pytest.mark.parametrize("name", ["kmeans", "minibatch"])
def test_round_trip_and_compression_report_label_agreement(tmp_path, data, models, name):
    X, y, Xv, yv = data
    model = models[name]
    path = save_model(model, tmp_path / name, data=X)
    meta = read_metadata(tmp_path / name)
    assert meta["outputs"] == ["predict", "transform"] and meta["dtypes"]["predict"] == "int64"
    back = load_model(path.parent)
    np.testing.assert_array_equal(_labels(back, Xv), _labels(model, Xv))
    np.testing.assert_array_equal(_distances(back, Xv), _distances(model, Xv))
    if name == "minibatch":  # an online learner loaded back continues exactly where it stopped
        twin = online.MiniBatchKMeans(K, random_state=0)
        for Xb in np.split(X, 6):
            twin.learn_many(Xb)
        twin.learn_many(Xv)
        back.learn_many(Xv)
        np.testing.assert_array_equal(back.cluster_centers_, twin.cluster_centers_)
        np.testing.assert_array_equal(back.counts_, twin.counts_)
    for method in ("int8", "float16"):
        q, rep = quantize(model, method, X_val=Xv, y_val=yv)
        assert rep["compared_output"] == "transform"
        assert rep["max_abs_diff"] <= prediction_bound(q, Xv).max()
        agreement = float(np.mean(_labels(q, Xv) == _labels(model, Xv)))
        assert rep["metrics_after"]["label_agreement"] == agreement >= 0.99
        assert rep["metric_change"]["label_agreement"] == agreement - 1.0
        inertia = float((_distances(q, Xv) ** 2).min(axis=1).sum())
        assert rep["metrics_after"]["inertia"] == pytest.approx(inertia, rel=1e-9)
        before = rep["metrics_before"]["inertia"]
        assert rep["relative_inertia_change"] == pytest.approx(inertia / before - 1.0, rel=1e-6, abs=1e-12)
        assert abs(rep["relative_inertia_change"]) < 0.01 and rep["metrics_after"]["adjusted_rand"] >= 0.99
        stored = save_model(q, tmp_path / f"{name}-{method}")
        assert read_metadata(stored.parent)["compression"] == {"cluster_centers_": method}
        np.testing.assert_array_equal(load_model(stored.parent).cluster_centers_, q.cluster_centers_)
    p, rep = prune(model, tolerance=0.02, X_val=Xv)
    zeroed = p.cluster_centers_ == 0
    assert rep["metrics_after"]["label_agreement"] >= 0.98 and zeroed.sum() == rep["pruned_weights"] > 0
    assert np.abs(model.cluster_centers_[zeroed]).max() <= np.abs(model.cluster_centers_[~zeroed]).min()


def test_batch_scoring_writes_labels_and_distances(tmp_path, data, models, client):
    X = data[0]
    model = models["kmeans"]
    save_model(model, tmp_path / "km")
    out = sm.score(tmp_path / "km", X, tmp_path / "s.zarr", client=client)
    g = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(g["y"][:], model.predict(X))
    np.testing.assert_allclose(g["X"][:], model.transform(X), rtol=1e-12)
    assert g.attrs["outputs"] == {"X": "transform", "y": "predict"}
    assert g.attrs["feature_names"] == [f"distance_{i}" for i in range(K)]
    out = sm.score(models["minibatch"], X, tmp_path / "labels.zarr", client=client, transform=False)
    g = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(g["y"][:], models["minibatch"].predict_many(X))
    assert g["X"].shape == (len(X), 1) and g.attrs["outputs"] == {"X": "predict", "y": "predict"}


def test_served_labels_and_distances_equal_the_models(tmp_path, data, models):
    from scaleml_dask.deploy.serve import make_app

    Xv = data[2]
    for name, model in models.items():
        save_model(model, tmp_path / name, data=data[0])
    with running(make_app(sorted(tmp_path.iterdir()))) as http:
        for name, model in models.items():
            meta = http.get(f"/v2/models/{name}").json()
            assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                                       {"name": "transform", "datatype": "FP64", "shape": [-1, K]}]
            body = {"inputs": [v2(Xv[:50])], "outputs": [{"name": "predict"}, {"name": "transform"}]}
            got = {o["name"]: o for o in http.post(f"/v2/models/{name}/infer", json=body).json()["outputs"]}
            assert got["predict"]["datatype"] == "INT64"
            np.testing.assert_array_equal(got["predict"]["data"], _labels(model, Xv[:50]))
            np.testing.assert_array_equal(np.reshape(got["transform"]["data"], (50, K)), _distances(model, Xv[:50]))
            v1 = http.post(f"/v1/models/{name}:predict", json={"instances": Xv[:20].tolist()}).json()
            assert v1["predictions"] == _labels(model, Xv[:20]).tolist()


@pytest.mark.parametrize("name", ["kmeans", "minibatch"])
def test_onnx_graph_equals_the_model(data, models, name):
    ort = pytest.importorskip("onnxruntime")
    from scaleml_dask.deploy.onnx import to_onnx

    model, Xv = models[name], data[2]
    sess = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    labels, distances = sess.run(["predict", "transform"], {"X": Xv})
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, _labels(model, Xv))
    np.testing.assert_allclose(distances, _distances(model, Xv), rtol=1e-12, atol=1e-9)
