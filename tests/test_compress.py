"""Quantization and pruning: the stated bounds hold, the registry stores int8, the reports measure truly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss, r2_score

import scaleml_dask as sm
from scaleml_dask.deploy.compress import plot_tradeoff, prediction_bound, prune, quantize, tradeoff, weights
from scaleml_dask.deploy.registry import load_model, read_metadata, save_model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 60)) * rng.uniform(0.5, 3.0, 60) + rng.normal(0, 2, 60)
    coef = np.r_[rng.normal(0, 3, 12), np.zeros(48)]
    y = X @ coef + 1.5 + rng.normal(0, 0.5, 2000)
    return X[:1500], y[:1500], X[1500:], y[1500:]


@pytest.fixture(scope="module")
def models(data):
    X, y, _, _ = data
    med = np.median(y)
    return {
        "LinearRegression": (sm.LinearRegression().fit(X, y), "reg"),
        "Ridge": (sm.Ridge(alpha=5.0).fit(X, y), "reg"),
        "PCA": (sm.PCA(n_components=8).fit(X), None),
        "PCA-whiten": (sm.PCA(n_components=8, whiten=True).fit(X), None),
        "SGDRegressor": (sm.SGDRegressor(mode="local", batch_size=100, epochs=3, eta0=0.05).fit(X, y), "reg"),
        "SGDClassifier": (sm.SGDClassifier(mode="local", batch_size=100, epochs=3).fit(X, y > med), "bin"),
        "SGDClassifier-3": (sm.SGDClassifier(mode="local", batch_size=100, epochs=3)
                            .fit(X, np.digitize(y, np.quantile(y, [0.33, 0.66]))), "3"),
    }


def _scores(model, X):
    if hasattr(model, "transform"):
        return model.transform(X)
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X)).reshape(len(X), -1)
    return model.predict(X).reshape(-1, 1)


def _val_y(kind, yv, y):
    """Held-out targets of the kind the model was trained on (thresholds from the training ``y``)."""
    if kind == "bin":
        return yv > np.median(y)
    if kind == "3":
        return np.digitize(yv, np.quantile(y, [0.33, 0.66]))
    return yv


NAMES = ["LinearRegression", "Ridge", "PCA", "PCA-whiten", "SGDRegressor", "SGDClassifier", "SGDClassifier-3"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["int8", "float16"])
def test_quantized_scores_within_the_stated_bound_and_round_trip(tmp_path, data, models, name, dtype):
    _, y, Xv, yv = data
    model, kind = models[name]
    q, rep = quantize(model, dtype, X_val=Xv, y_val=None if kind is None else _val_y(kind, yv, y))
    W, Wq = weights(model), weights(q)
    if dtype == "int8":  # one scale per output column, zero point 0, integers in [-127, 127]
        scale = np.abs(W).max(axis=0) / 127
        ints = Wq / scale
        assert np.all(np.abs(np.rint(ints) - ints) < 1e-9) and np.abs(np.rint(ints)).max() == 127
    else:
        assert np.array_equal(Wq, W.astype(np.float16).astype(np.float64))
    diff = np.abs(_scores(model, Xv) - _scores(q, Xv))
    bound = prediction_bound(q, Xv)
    assert np.all(diff <= bound) and diff.max() > 0
    assert np.mean(diff) < 0.5 * np.mean(bound)  # rounding errors cancel: far inside the worst case
    # the registry stores the compact dtype and gives back the quantized model bitwise
    path = save_model(q, tmp_path / "q")
    arrays = read_metadata(tmp_path / "q")["arrays"]
    stored = {"int8": "|i1", "float16": "<f2"}[dtype]
    assert any(a["dtype"] == stored for a in arrays.values())
    loaded = load_model(path.parent)
    assert np.array_equal(_scores(loaded, Xv), _scores(q, Xv))
    again = load_model(save_model(loaded, tmp_path / "q").parent)  # a loaded quantized model saves as such
    assert np.array_equal(_scores(again, Xv), _scores(q, Xv)) and read_metadata(tmp_path / "q")["compression"]
    assert rep["weight_bytes_after"] < rep["weight_bytes_before"] / (3.5 if dtype == "float16" else 7)
    if name.startswith("PCA") or name == "SGDClassifier-3":  # weights dominate the version's bytes
        assert rep["bytes_after"] < rep["bytes_before"]
    assert rep["max_abs_diff"] > 0 and rep["latency_ms_per_1000_rows_after"] > 0


def test_int8_report_measures_against_sklearn_metrics(data, models):
    _, _, Xv, yv = data
    model = models["SGDClassifier"][0]
    yb = yv > np.median(data[1])
    q, rep = quantize(model, "int8", X_val=Xv, y_val=yb)
    assert rep["compared_output"] == "predict_proba"
    d = np.abs(model.predict_proba(Xv) - q.predict_proba(Xv))
    assert rep["max_abs_diff"] == d.max() and rep["mean_abs_diff"] == pytest.approx(d.mean())
    assert rep["max_abs_diff"] <= (prediction_bound(q, Xv) / 4).max()  # sigmoid is 1/4-Lipschitz
    assert rep["metrics_after"]["accuracy"] == accuracy_score(yb, q.predict(Xv))
    assert rep["metrics_before"]["log_loss"] == pytest.approx(log_loss(yb, model.predict_proba(Xv)))
    assert rep["metric_change"]["accuracy"] == rep["metrics_after"]["accuracy"] - rep["metrics_before"]["accuracy"]


def test_pca_report_explained_variance(data):
    X, _, Xv, _ = data
    model = sm.PCA(n_components=60).fit(X)  # all components: reconstruction exact before quantizing
    q, rep = quantize(model, "int8", X_val=Xv)
    assert rep["metrics_before"]["explained_variance"] == pytest.approx(1.0, abs=1e-9)
    assert rep["metrics_after"]["explained_variance"] < 1.0 and rep["metric_change"]["explained_variance"] < 0


def test_prune_fraction_zeroes_the_smallest_weights(tmp_path, data, models):
    _, _, Xv, yv = data
    model = models["LinearRegression"][0]
    p, rep = prune(model, 0.5, X_val=Xv, y_val=yv)
    W, Wp = weights(model)[:, 0], weights(p)[:, 0]
    assert (Wp == 0).sum() == 30 and np.all(np.abs(W[Wp == 0]).max() <= np.abs(W[Wp != 0]).min())
    assert np.array_equal(Wp[Wp != 0], W[Wp != 0])
    assert rep["pruned_weights"] == 30 and rep["metrics_after"]["r2"] == pytest.approx(r2_score(yv, p.predict(Xv)))
    assert np.array_equal(load_model(save_model(p, tmp_path / "p").parent).predict(Xv), p.predict(Xv))


def test_prune_tolerance_prunes_the_irrelevant_features_and_no_more(data, models):
    _, _, Xv, yv = data
    model = models["LinearRegression"][0]
    p, rep = prune(model, tolerance=0.001, X_val=Xv, y_val=yv)
    r2 = rep["metrics_before"]["r2"]
    assert rep["metrics_after"]["r2"] >= r2 - 0.001
    k = rep["pruned_weights"]
    assert 48 <= k < 60  # the 48 planted zeros go; the 12 real coefficients (sd 3) carry the fit
    one_more, _ = prune(model, (k + 1) / 60, X_val=Xv, y_val=yv)
    assert r2_score(yv, one_more.predict(Xv)) < r2 - 0.001


def test_prune_tolerance_for_pca_and_classifier(data, models):
    _, _, Xv, yv = data
    pca, rep = prune(models["PCA"][0], tolerance=0.02, X_val=Xv)
    m0, m1 = rep["metrics_before"]["explained_variance"], rep["metrics_after"]["explained_variance"]
    assert m1 >= m0 - 0.02 and rep["pruned_weights"] > 0
    clf, kind = models["SGDClassifier"]
    _, rep = prune(clf, tolerance=0.01, X_val=Xv, y_val=_val_y(kind, yv, data[1]))
    m0, m1 = rep["metrics_before"]["accuracy"], rep["metrics_after"]["accuracy"]
    assert m1 >= m0 - 0.01 and rep["pruned_weights"] >= 20


def test_bad_requests_are_refused(data):
    X, y, Xv, _ = data
    model = sm.LinearRegression().fit(X, y)
    with pytest.raises(ValueError, match="dtype must be one of"):
        quantize(model, "int4")
    with pytest.raises(ValueError, match="cannot compress a ADWIN"):
        quantize(sm.online.ADWIN())
    with pytest.raises(ValueError, match="exactly one of"):
        prune(model, X_val=Xv)
    with pytest.raises(ValueError, match="y_val is required"):
        prune(model, tolerance=0.1, X_val=Xv)
    with pytest.raises(ValueError, match=r"X_val must be a non-empty \(n, 60\)"):
        quantize(model, X_val=Xv[:, :5])
    _, rep = quantize(model, "int8")  # without held-out data: synthetic rows, no metrics
    assert "metrics_after" not in rep and rep["n_rows"] == 1000


def test_tradeoff_table_and_plot(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 200))
    y = np.digitize(X[:, :50] @ rng.normal(size=50) + rng.normal(size=3000), [-3.0, 0.0, 3.0])
    model = sm.SGDClassifier(mode="local", batch_size=500, epochs=3).fit(X[:2000], y[:2000])
    rows = tradeoff(model, X[2000:], y[2000:], fractions=(0.5, 0.9))
    assert [r["method"] for r in rows] == ["original", "int8", "float16", "prune 50%", "prune 90%"]
    by = {r["method"]: r for r in rows}
    assert by["int8"]["bytes"] < by["float16"]["bytes"] < by["original"]["bytes"]
    assert by["int8"]["weight_bytes"] * 8 <= by["original"]["weight_bytes"] + 8 * 64  # int8 codes + per-row scales
    assert 2 * by["float16"]["weight_bytes"] <= by["original"]["weight_bytes"]
    assert by["prune 90%"]["bytes"] < by["prune 50%"]["bytes"] < by["original"]["bytes"]
    assert by["prune 90%"]["max_abs_diff"] > by["int8"]["max_abs_diff"] > 0
    assert by["original"]["accuracy_change"] == 0 and all(isinstance(r["accuracy_change"], float) for r in rows)
    png = plot_tradeoff(rows, tmp_path / "tradeoff.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
