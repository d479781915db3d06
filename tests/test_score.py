"""Batch scoring on the real cluster: outputs equal the in-memory model's, atomic, unchanged by a lost worker."""

from __future__ import annotations

import sys

import dask.array as da
import numpy as np
import pytest
import zarr

import scaleml_dask as sm
from scaleml_dask.deploy.registry import save_model
from scaleml_dask.deploy.score import score
from scaleml_dask.io.store import DatasetWriter

N, D, ROWS = 2000, 5, 200


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.5 + rng.normal(0, 0.1, N)
    path = tmp_path_factory.mktemp("score") / "data.zarr"
    with DatasetWriter(path, D, chunk_rows=ROWS, y_dtype=np.float64) as w:
        w.append(X, y)
    return path, X, y


def _read(path):
    g = zarr.open_group(str(path), mode="r")
    return {k: g[k][:] for k in g.array_keys()}, dict(g.attrs)


def test_regressor_scores_equal_the_model(client, tmp_path, dataset):
    path, X, y = dataset
    model = sm.LinearRegression().fit(X, y)
    out = score(model, str(path), tmp_path / "s.zarr", client=client, progress=True)
    arrays, attrs = _read(out)
    np.testing.assert_allclose(arrays["y"], model.predict(X), rtol=1e-13, atol=1e-13)
    assert np.array_equal(arrays["X"][:, 0], arrays["y"])
    assert attrs["outputs"] == {"X": "predict", "y": "predict"}
    assert attrs["model"] == "scaleml_dask.linear.LinearRegression" and attrs["source"] == str(path)
    assert zarr.open_group(str(out), mode="r")["y"].chunks == (ROWS,)
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]  # no temporary left


def test_classifier_from_a_registry_directory_writes_labels_and_probabilities(client, tmp_path, dataset):
    path, X, y = dataset
    labels = np.digitize(y, [-1.0, 2.0])
    model = sm.SGDClassifier(mode="local", batch_size=100, epochs=2).fit(X, labels)
    save_model(model, tmp_path / "reg")
    out = score(str(tmp_path / "reg"), sm.open_dataset(str(path)), tmp_path / "s.zarr", client=client)
    arrays, attrs = _read(out)
    assert attrs["outputs"] == {"X": "predict_proba", "y": "predict"}
    assert attrs["feature_names"] == ["proba_0", "proba_1", "proba_2"]
    np.testing.assert_allclose(arrays["X"], model.predict_proba(X), rtol=1e-12)
    assert np.array_equal(arrays["y"], model.predict(X))


def test_pca_and_online_learner(client, tmp_path, dataset):
    path, X, y = dataset
    pca = sm.PCA(n_components=2).fit(X)
    arrays, attrs = _read(score(pca, str(path), tmp_path / "p.zarr", client=client))
    assert set(arrays) == {"X"} and attrs["outputs"] == {"X": "transform", "y": None}
    np.testing.assert_allclose(arrays["X"], pca.transform(X), rtol=1e-12, atol=1e-12)
    learner = sm.online.LogisticRegression(learning_rate=0.5)
    learner.learn_many(X, (y > 0).astype(int))
    arrays, _ = _read(score(learner, da.from_array(X, chunks=300), tmp_path / "o.zarr", client=client))
    assert np.array_equal(arrays["y"], learner.predict_many(X))
    np.testing.assert_allclose(arrays["X"], learner.predict_proba_many(X), rtol=1e-12)


def test_bad_inputs_are_refused_and_a_failed_run_leaves_the_old_output(client, tmp_path, dataset):
    path, X, y = dataset
    with pytest.raises(ValueError, match="has 5 features; the model was fitted with 3"):
        score(sm.LinearRegression().fit(X[:, :3], y), str(path), tmp_path / "s.zarr", client=client)
    with pytest.raises(ValueError, match="no outputs to score"):
        score(sm.online.ADWIN(), str(path), tmp_path / "s.zarr", client=client)
    model = sm.LinearRegression().fit(X, y)
    out = score(model, str(path), tmp_path / "s.zarr", client=client)
    before = _read(out)[0]["y"]
    broken = sm.LinearRegression().fit(X, y)
    broken.coef_ = np.array(["a"] * D)  # predict raises inside the tasks
    with pytest.raises(Exception):  # noqa: B017 - whatever numpy raises on the workers
        score(broken, str(path), tmp_path / "s.zarr", client=client)
    assert np.array_equal(_read(out)[0]["y"], before)
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]


def test_a_worker_killed_mid_scoring_does_not_change_the_output(process_client, tmp_path, dataset):
    """A worker process SIGKILLs itself as its 2nd scoring task starts; the scheduler saw it leave, the chunk
    was scored again elsewhere, and the output is the undisturbed one, bitwise."""
    from faults import undisturbed_and_killed

    path, X, y = dataset
    model = sm.LinearRegression().fit(X, y)
    outs = iter([tmp_path / "a.zarr", tmp_path / "b.zarr"])

    def run():
        return _read(score(model, str(path), next(outs), client=process_client))[0]

    undisturbed, disturbed, record = undisturbed_and_killed(process_client, run, "score_block", tmp_path / "killed")
    assert record.recomputed["score_block"] >= 1
    assert disturbed.keys() == undisturbed.keys()
    for k in undisturbed:
        assert np.array_equal(disturbed[k], undisturbed[k]), k


def test_cli_score(client, tmp_path, dataset, capsys):
    from scaleml_dask.cli import main

    path, X, y = dataset
    model = sm.Ridge(alpha=1.0).fit(X, y)
    save_model(model, tmp_path / "reg")
    code = main(["score", "--model", str(tmp_path / "reg"), "--dataset", str(path), "--out",
                 str(tmp_path / "s.zarr"), "--scheduler", client.scheduler.address, "-q"])
    assert code == 0 and f"wrote {tmp_path / 's.zarr'}" in capsys.readouterr().out
    np.testing.assert_allclose(_read(tmp_path / "s.zarr")[0]["y"], model.predict(X), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("problem, message", [
    ("no-model", "no saved model versions"),
    ("bad-dataset", "no-such-dataset"),
    ("corrupt", "sha256 checksum mismatch"),
])
def test_cli_score_user_mistakes_one_line_no_traceback(client, tmp_path, dataset, capsys, problem, message):
    import subprocess

    from scaleml_dask.cli import main

    path, X, y = dataset
    reg = tmp_path / "reg"
    if problem != "no-model":
        version = save_model(sm.LinearRegression().fit(X, y), reg)
        if problem == "corrupt":
            raw = bytearray((version / "arrays.npz").read_bytes())
            raw[100] ^= 1
            (version / "arrays.npz").write_bytes(bytes(raw))
    argv = ["score", "--model", str(reg), "--dataset", "no-such-dataset" if problem == "bad-dataset" else str(path),
            "--out", str(tmp_path / "s.zarr"), "--scheduler", client.scheduler.address]
    if problem == "corrupt":  # the real console entry point, in its own process
        proc = subprocess.run([sys.executable, "-m", "scaleml_dask.cli", *argv], capture_output=True, text=True,
                              timeout=120)
        code, err = proc.returncode, proc.stderr
    else:
        code, err = main(argv), capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("scaleml score: ") and message in lines[0]
    assert not (tmp_path / "s.zarr").exists()
