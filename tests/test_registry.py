"""The model registry: round trips for every estimator, versioning, atomicity, and refusing bad files."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from fitted import batch_models, small_data

import scaleml_dask as sm
from scaleml_dask import online
from scaleml_dask.deploy.registry import (
    RegistryError,
    content_sha256,
    list_versions,
    load_model,
    read_metadata,
    save_model,
)


@pytest.fixture(scope="module")
def data():
    return small_data()


@pytest.fixture(scope="module")
def fitted(data):
    X, _, yc, _ = data
    hinge = sm.SGDClassifier(mode="local", loss="hinge", batch_size=50, epochs=2).fit(X, yc)
    return {**batch_models(data), "sgd-clf-hinge": hinge}


@pytest.mark.parametrize("name", ["linear", "ridge", "pca", "sgd-reg", "sgd-clf", "sgd-clf3", "sgd-clf-hinge"])
def test_batch_estimators_round_trip_bitwise(tmp_path, data, fitted, name):
    X = data[0]
    model = fitted[name]
    path = save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    outputs = read_metadata(path.parent)["outputs"]
    assert outputs == {"pca": ["transform"], "sgd-clf": ["predict", "predict_proba"],
                       "sgd-clf3": ["predict", "predict_proba"]}.get(name, ["predict"])
    for method in ("predict", "predict_proba", "transform", "decision_function"):
        if method in outputs or (method == "decision_function" and hasattr(model, method)):
            a, b = getattr(model, method)(X), getattr(loaded, method)(X)
            assert a.dtype == b.dtype and np.array_equal(a, b), method


def test_sgd_partial_fit_continues_identically(tmp_path, data):
    X, _, yc, _ = data
    model = sm.SGDClassifier(mode="local", batch_size=50, epochs=1).fit(X[:300], yc[:300])
    loaded = load_model(save_model(model, tmp_path / "m").parent)
    model.partial_fit(X[300:], yc[300:])
    loaded.partial_fit(X[300:], yc[300:])
    assert np.array_equal(model.coef_, loaded.coef_) and np.array_equal(model.intercept_, loaded.intercept_)
    assert np.array_equal(model.loss_curve_[:, 1:], loaded.loss_curve_[:, 1:])


@pytest.mark.parametrize("cls", [online.LogisticRegression, online.LinearRegression, online.Perceptron, online.RLS])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_online_learner_continues_exactly_where_it_stopped(tmp_path, data, cls, optimizer):
    X, y, yc, _ = data
    target = y if cls in (online.LinearRegression, online.RLS) else yc
    model = cls() if cls is online.RLS else cls(optimizer=optimizer)
    model.learn_many(X[:200], target[:200])
    for i in range(200, 250):
        model.learn_one(X[i], target[i])
    loaded = load_model(save_model(model, tmp_path / "m").parent)
    for m in (model, loaded):
        m.learn_many(X[250:400], target[250:400])
        for i in range(400, 450):
            m.learn_one(X[i], target[i])
    assert np.array_equal(model.coef_, loaded.coef_) and model.intercept_ == loaded.intercept_
    assert model.n_seen_ == loaded.n_seen_ == 450
    assert np.array_equal(model.predict_many(X), loaded.predict_many(X))


@pytest.mark.parametrize("cls", [online.ADWIN, online.PageHinkley])
def test_drift_detector_continues_with_the_same_detections(tmp_path, cls):
    rng = np.random.default_rng(1)
    det = cls()
    assert len(det.update_many(rng.normal(0, 1, 1500))) == 0
    for v in rng.normal(0, 1, 7):  # leaves values pending between ADWIN's clock ticks
        det.update(v)
    loaded = load_model(save_model(det, tmp_path / "d").parent)
    later = np.r_[rng.normal(0, 1, 500), rng.normal(2.5, 1, 1000), rng.normal(-2.5, 1, 1000)]
    hits = det.update_many(later)
    assert len(hits) >= 2 and np.array_equal(hits, loaded.update_many(later))
    assert det.n_detections == loaded.n_detections


def test_a_detector_with_values_of_any_numeric_type_queued_loads_and_continues(tmp_path):
    det = online.ADWIN()
    det.update_many(np.random.default_rng(3).normal(0, 1, 300))
    for v in (1, 0, True, np.float32(0.5), np.int64(1)):  # queued as given, until the next tick
        det.update(v)
    loaded = load_model(save_model(det, tmp_path / "d").parent)
    later = np.r_[np.zeros(300), np.full(300, 3.0)]
    assert np.array_equal(det.update_many(later), loaded.update_many(later))


@pytest.mark.parametrize("cls", [online.ADWIN, online.PageHinkley])
def test_drift_detector_state_of_another_layout_is_refused_not_read(tmp_path, cls):
    det = cls()
    det.update_many(np.random.default_rng(1).normal(0, 1, 100))
    if cls is online.ADWIN:  # the scalars of an older kernel layout: shorter than this version's
        totals, variances, counts, scalars = det._state
        det._state = (totals, variances, counts, scalars[:-3])
        name = r"_state\[3\] \(scalars\) is float64\[\d+\] where this version's kernels need float64\[\d+\]"
    else:
        det._s = det._s[:-3]
        name = r"_s \(scalars\) is float64\[\d+\] where"
    save_model(det, tmp_path / "d")
    with pytest.raises(RegistryError, match=rf"metadata\.json: {cls.__name__} state {name}.*another scaleml_dask"):
        load_model(tmp_path / "d")


def test_metadata_documents_the_model_and_its_training_data(tmp_path, data):
    X, y, _, _ = data
    model = sm.LinearRegression().fit(X, y)
    save_model(model, tmp_path / "m", data=X, metrics={"r2": np.float64(0.9), "n": np.int64(3)})
    meta = read_metadata(tmp_path / "m")
    assert meta["format_version"] == 2 and meta["class"] == "scaleml_dask.linear.LinearRegression"
    assert meta["n_features"] == 5 and meta["outputs"] == ["predict"] and meta["version"] == 1
    assert meta["dtypes"] == {"input": "float64", "predict": "float64"}
    assert meta["metrics"] == {"r2": 0.9, "n": 3}
    t = meta["training"]
    assert t["n_samples"] == 600
    np.testing.assert_allclose(t["feature_mean"], X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(t["feature_std"], X.std(axis=0), rtol=1e-12)
    pred = model.predict(X)
    assert t["prediction_mean"] == pytest.approx(pred.mean(), rel=1e-12)
    assert t["prediction_std"] == pytest.approx(pred.std(), rel=1e-12)
    assert set(meta["versions"]) >= {"python", "numpy", "scaleml_dask"}
    info = meta["arrays"]["coef_"]
    assert info["shape"] == [5] and info["sha256"] == hashlib.sha256(model.coef_.tobytes()).hexdigest()


def test_versions_latest_and_explicit(tmp_path, data):
    X, y, _, _ = data
    a, b = sm.Ridge(alpha=1.0).fit(X, y), sm.Ridge(alpha=100.0).fit(X, y)
    assert save_model(a, tmp_path / "m").name == "1"
    assert save_model(b, tmp_path / "m").name == "2"
    (tmp_path / "m" / "7").mkdir()  # no metadata: not a complete version
    assert list_versions(tmp_path / "m") == [1, 2]
    assert load_model(tmp_path / "m").alpha == 100.0
    assert load_model(tmp_path / "m", version=1).alpha == 1.0 and load_model(tmp_path / "m", "2").alpha == 100.0
    with pytest.raises(RegistryError, match="no such model version"):
        load_model(tmp_path / "m", version=3)
    with pytest.raises(RegistryError, match="no saved model versions"):
        load_model(tmp_path / "empty")


def test_concurrent_saves_do_not_collide(tmp_path, data):
    X, y, _, _ = data
    models = [sm.Ridge(alpha=float(k)).fit(X, y) for k in range(1, 7)]
    threads = [threading.Thread(target=save_model, args=(m, tmp_path / "m")) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list_versions(tmp_path / "m") == [1, 2, 3, 4, 5, 6]
    assert sorted(load_model(tmp_path / "m", v).alpha for v in range(1, 7)) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert [p.name for p in (tmp_path / "m").iterdir() if p.name.startswith(".")] == []


def test_unsupported_state_is_refused_naming_the_attribute_and_leaves_nothing(tmp_path, data):
    X, y, _, _ = data
    model = sm.LinearRegression().fit(X, y)
    model.extra_ = {"ok": [1, 2], "bad": object()}
    with pytest.raises(RegistryError, match=r"extra_\.bad"):
        save_model(model, tmp_path / "m")
    assert not (tmp_path / "m").exists() or list((tmp_path / "m").iterdir()) == []
    with pytest.raises(RegistryError, match="cannot save a"):
        save_model(object(), tmp_path / "m")


def test_callback_param_saved_as_null_with_a_note(tmp_path, data):
    X, y, _, _ = data
    model = sm.SGDRegressor(mode="local", epochs=1, callback=lambda info: None).fit(X, y)
    save_model(model, tmp_path / "m")
    assert load_model(tmp_path / "m").callback is None
    assert any("callback" in n for n in read_metadata(tmp_path / "m")["notes"])


# -- refusals ---------------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path, data):
    X, y, _, _ = data
    return save_model(sm.LinearRegression().fit(X, y), tmp_path / "m")


def _edit_metadata(path: Path, change, reseal=True) -> None:
    """Change the metadata document; ``reseal`` recomputes its content checksum, as a careful tamperer would."""
    meta = json.loads((path / "metadata.json").read_text())
    change(meta)
    if reseal:
        meta["content_sha256"] = content_sha256(meta)
    (path / "metadata.json").write_text(json.dumps(meta))


def test_an_edited_or_corrupted_metadata_value_is_caught_by_the_content_checksum(saved, data):
    _edit_metadata(saved, lambda m: m["state"]["$dict"].__setitem__(
        [k for k, _ in m["state"]["$dict"]].index("intercept_"), ["intercept_", 0.5]), reseal=False)
    with pytest.raises(RegistryError, match=r"metadata\.json: content checksum mismatch"):
        load_model(saved.parent)
    _edit_metadata(saved, lambda m: None)  # resealed: the edit loads (the checksum is no signature)
    assert load_model(saved.parent).intercept_ == 0.5


def test_corrupted_npz_is_refused(saved):
    raw = bytearray((saved / "arrays.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (saved / "arrays.npz").write_bytes(bytes(raw))
    with pytest.raises(RegistryError, match=r"arrays\.npz: sha256 checksum mismatch"):
        load_model(saved.parent)


def test_truncated_npz_is_refused(saved):
    raw = (saved / "arrays.npz").read_bytes()
    (saved / "arrays.npz").write_bytes(raw[: len(raw) - 40])
    with pytest.raises(RegistryError, match=r"arrays\.npz: \d+ bytes, expected \d+ \(truncated"):
        load_model(saved.parent)


def _rewrite_arrays_with_valid_checksum(saved, arrays):
    """Replace arrays.npz and update its file checksum in the metadata, as a careful tamperer would."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    (saved / "arrays.npz").write_bytes(raw)
    _edit_metadata(saved, lambda m: m["files"]["arrays.npz"].update(
        sha256=hashlib.sha256(raw).hexdigest(), bytes=len(raw)))


def test_tampered_array_with_recomputed_file_checksum_is_refused(saved):
    with np.load(saved / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["coef_"] = arrays["coef_"] * 2
    _rewrite_arrays_with_valid_checksum(saved, arrays)
    with pytest.raises(RegistryError, match=r"arrays\.npz: array 'coef_' fails its sha256 checksum"):
        load_model(saved.parent)


def test_pickled_object_array_is_refused(saved):
    with np.load(saved / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["coef_"] = np.array([object()], dtype=object)
    _rewrite_arrays_with_valid_checksum(saved, arrays)
    with pytest.raises(RegistryError, match=r"arrays\.npz: array 'coef_' is \|O \[1\] in the file, the metadata "
                                            r"declares <f8 \[5\]"):
        load_model(saved.parent)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update({"class": "os.system"}), "unknown model class 'os.system'"),
    (lambda m: m.update(format_version=3), "format_version 3 is newer"),
    (lambda m: m.update(n_features=4), "n_features is 4 but array 'coef_' has 5 features"),
    (lambda m: m["arrays"]["coef_"].update(shape=[6]),
     r"array 'coef_' is <f8 \[5\] in the file, the metadata declares <f8 \[6\]"),
    (lambda m: m.pop("state"), r"missing \['state'\]"),
    (lambda m: m.update(files=[]), r"files: must map file names"),
    (lambda m: m["arrays"]["coef_"].update(file=None), "which has no checksum"),
    (lambda m: m["state"]["$dict"].append(["x_", {"$pickle": "..."}]), "unknown tag '\\$pickle'"),
    (lambda m: m["state"]["$dict"].append(["x_", {"$dataclass": "os:PathLike", "fields": {}}]),
     "dataclass 'os:PathLike' is not one of"),
    # the view of the issue: an object dtype over bytes of the file (dereferenced at predict time: SIGBUS)
    (lambda m: (m["views"].update(v={"of": "coef_", "offset": 0, "shape": [5], "strides": [8], "dtype": "|O"}),
                m["state"]["$dict"].append(["x_", {"$array": "v"}])), r"views\.v: needs a plain scalar dtype"),
    (lambda m: m["views"].update(v={"of": "coef_", "offset": 8, "shape": [5], "strides": [8], "dtype": "<f8"}),
     r"views\.v: bytes 8-48 lie outside its array 'coef_' of 40 bytes"),
    (lambda m: m["views"].update(v={"of": "coef_", "offset": 0, "shape": [2**40], "strides": [0], "dtype": "<f8"}),
     r"arrays: declare \d+ bytes; the limit is"),
    (lambda m: m["arrays"]["coef_"].update(dtype="|V8"), r"arrays\.coef_: dtype '\|V8' and shape"),
    (lambda m: m["arrays"]["coef_"].update(shape=[2**31, 2**31]), r"arrays: declare \d+ bytes; the limit is"),
    (lambda m: m.update(n_features="5"), "n_features: must be a positive integer or null; got '5'"),
    (lambda m: m.update(outputs={"predict": 1}), "outputs: must be distinct names"),
    (lambda m: m.update(training={"feature_mean": "abc"}), "training.feature_mean: must be null or 5 numbers"),
    (lambda m: m["files"]["arrays.npz"].update(bytes="big"), "files.arrays.npz: must be"),
    (lambda m: m["files"].update({"../x.npz": m["files"]["arrays.npz"]}), "is not a file name inside the version"),
    (lambda m: m.update(params={"$dict": [["fit_intercept", "maybe"]]}), "params: The 'fit_intercept' parameter"),
    (lambda m: m.update(params={"$dict": [["shell", "rm -rf"]]}), r"params \['shell'\] are not parameters"),
    (lambda m: m["state"]["$dict"].append(["predict", 1]), "state: 'predict' is not a fitted attribute"),
    (lambda m: m["state"]["$dict"].append(["__class__", 1]), "state: '__class__' is not a fitted attribute"),
    (lambda m: m["state"]["$dict"].append(["x_", {"$scalar": "|O", "value": 1}]), "is not a plain scalar dtype"),
    (lambda m: m["state"]["$dict"].append(["x_", {"$generator": "os", "state": {}}]), "bit generator 'os'"),
    (lambda m: m.update(outputs=["predict", "transform"]), r"outputs \['predict', 'transform'\] declared; the "
                                                           r"model computes \['predict'\]"),
])
def test_incompatible_metadata_is_refused(saved, change, message):
    _edit_metadata(saved, change)
    with pytest.raises(RegistryError, match=message) as info:
        load_model(saved.parent)
    assert "metadata.json" in str(info.value) or "arrays.npz" in str(info.value)


def test_files_that_are_not_regular_files_are_refused_without_blocking(saved):
    import os

    npz = saved / "arrays.npz"
    npz.unlink()
    os.mkfifo(npz)  # opening a FIFO for reading would wait for a writer forever
    with pytest.raises(RegistryError, match=r"arrays\.npz: is not a regular file"):
        load_model(saved.parent)
    npz.unlink()
    npz.symlink_to("/dev/zero")
    with pytest.raises(RegistryError, match=r"arrays\.npz: is not a regular file"):
        load_model(saved.parent)


def test_metadata_nested_too_deeply_is_refused(saved):
    (saved / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RegistryError, match=r"metadata\.json: not valid JSON: nested too deeply"):
        load_model(saved.parent)


def test_a_file_naming_a_module_never_imports_it(saved):
    """A ``$dataclass`` or ``class`` naming any module of the package (or elsewhere) imports nothing: the
    names are looked up in the fixed table only (checked in a fresh process, where the module is not loaded)."""
    import subprocess
    import sys

    _edit_metadata(saved, lambda m: m["state"]["$dict"].append(
        ["x_", {"$dataclass": "scaleml_dask.tsne._tsne:TSNE", "fields": {}}]))
    code = ("import sys; from scaleml_dask.deploy.registry import load_model, RegistryError\n"
            "try:\n    load_model(sys.argv[1])\nexcept RegistryError as e:\n    print(e)\n"
            "print('scaleml_dask.tsne._tsne' in sys.modules, 'scaleml_dask.tsne' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(saved.parent)], capture_output=True, text=True,
                         timeout=120).stdout
    assert "dataclass 'scaleml_dask.tsne._tsne:TSNE' is not one of" in out and out.endswith("False False\n"), out


def test_truncated_metadata_is_refused(saved):
    raw = (saved / "metadata.json").read_bytes()
    (saved / "metadata.json").write_bytes(raw[:100])
    with pytest.raises(RegistryError, match=r"metadata\.json: not valid JSON"):
        read_metadata(saved.parent)


def test_training_statistics_and_feature_names_from_a_dataset_path(tmp_path, data):
    from scaleml_dask.io.store import DatasetWriter

    X, y, _, _ = data
    names = [f"f{j}" for j in range(5)]
    with DatasetWriter(tmp_path / "d.zarr", 5, chunk_rows=128, y_dtype=np.float64, feature_names=names) as w:
        w.append(X, y)
    model = sm.PCA(n_components=2).fit(X)
    save_model(model, tmp_path / "m", data=str(tmp_path / "d.zarr"))
    meta = read_metadata(tmp_path / "m")
    assert meta["feature_names"] == names and meta["training"]["data"] == str(tmp_path / "d.zarr")
    np.testing.assert_allclose(meta["training"]["feature_std"], X.std(axis=0), rtol=1e-12)
    first = model.transform(X)[:, 0]
    assert meta["training"]["prediction_mean"] == pytest.approx(first.mean(), abs=1e-12)
    assert meta["training"]["prediction_std"] == pytest.approx(first.std(), rel=1e-12)


def test_truncated_svd_round_trips_and_its_restored_components_are_checked(tmp_path):
    """TruncatedSVD of sparse rows saves without pickle and transforms identically once loaded; a resealed
    metadata whose ``n_features_in_`` disagrees with ``components_`` is refused by the class's check."""
    import scipy.sparse as sp

    X = sp.random(200, 500, density=0.02, format="csr", random_state=0)
    model = sm.TruncatedSVD(3, random_state=0).fit(X)
    path = save_model(model, tmp_path / "svd")
    loaded = load_model(tmp_path / "svd")
    assert read_metadata(path.parent)["outputs"] == ["transform"]
    assert loaded.get_params() == model.get_params() and loaded.n_active_features_ == model.n_active_features_
    assert np.array_equal(loaded.transform(X), model.transform(X))
    assert np.array_equal(loaded.transform(X.toarray()), model.transform(X.toarray()))

    def wider(meta):
        state = meta["state"]["$dict"]
        state[[k for k, _ in state].index("n_features_in_")][1] = 501

    _edit_metadata(path, wider)
    with pytest.raises(RegistryError, match=r"TruncatedSVD state components_ is float64\[3, 500\] where this "
                                            r"version's kernels need float64\[3, 501\]"):
        load_model(tmp_path / "svd")
