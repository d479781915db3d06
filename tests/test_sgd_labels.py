"""String class labels, as scikit-learn takes them: the SGD classifiers in every mode (dense, sparse, a stored table's
categorical target, ``partial_fit``), the fused search and its scorers, the pipeline, the registry (no pickle), the
HTTP server and ONNX. A fit on labels equals the fit on their integer codes, mapped back to the labels."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.linear_model import SGDClassifier as SkSGD
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline as SkPipeline
from sklearn.preprocessing import StandardScaler as SkScaler

from scaleml_dask.deploy.registry import load_model, save_model
from scaleml_dask.io.synthetic import mixture_chunk
from scaleml_dask.io.table import TableError, TableWriter
from scaleml_dask.model_selection import GridSearchCV
from scaleml_dask.pipeline import make_pipeline
from scaleml_dask.preprocessing import StandardScaler
from scaleml_dask.sgd import SGDClassifier

LEVELS = np.array(["high", "low", "mid"])  # sorted: codes 0, 1, 2 are these labels
CENTERS = np.array([[0.0, 2.0, 0.0], [2.0, -1.0, 0.0], [-2.0, -1.0, 1.0]])


@pytest.fixture(scope="module")
def data():
    X, codes = mixture_chunk(5, 0, 1_200, centers=CENTERS, cluster_std=1.0)
    return X, codes.astype(np.int64), LEVELS[codes.astype(np.int64)]


@pytest.mark.parametrize("mode", ["local", "sync", "async"])
def test_labels_give_the_fit_of_their_codes_in_every_mode(client, data, mode):
    X, codes, labels = data
    client.wait_for_workers(2, timeout=120)  # sync and async hold their blocks on the workers (an earlier test may
    kw = {"mode": mode, "epochs": 2, "rounds": 2, "batch_size": 100, "eta0": 0.05}  # have had one restarted)
    dX = da.from_array(X, chunks=400)
    for Xin, y in [(dX, da.from_array(labels, chunks=400)), (sp.csr_matrix(X), pd.Series(labels).astype("category")),
                   (X, pd.Series(labels, dtype=object))]:
        m = SGDClassifier(**kw).fit(Xin, y)
        assert m.classes_.tolist() == SkSGD().fit(X, labels).classes_.tolist() == LEVELS.tolist()
        ref = SGDClassifier(**kw).fit(Xin, codes)
        pred = m.predict(X)
        if mode != "async":  # the same steps: the same weights (async pushes race)
            np.testing.assert_array_equal(m.coef_, ref.coef_)
            np.testing.assert_array_equal(pred, LEVELS[ref.predict(X)])
        assert np.mean(pred == SkSGD(random_state=0).fit(X, labels).predict(X)) > 0.9
        assert m.score(X, labels) > 0.9 and m.predict(dX).compute().tolist() == pred.tolist()


def test_partial_fit_and_refusals_name_the_labels(data):
    X, codes, labels = data
    m = SGDClassifier(mode="local", batch_size=100)
    for part in np.array_split(np.arange(len(X)), 3):
        m.partial_fit(X[part], labels[part], classes=["mid", "high", "low"])
    ref = SGDClassifier(mode="local", batch_size=100)
    for part in np.array_split(np.arange(len(X)), 3):
        ref.partial_fit(X[part], codes[part], classes=[0, 1, 2])
    np.testing.assert_array_equal(m.coef_, ref.coef_)
    assert m.classes_.tolist() == LEVELS.tolist()
    unseen = np.where(labels == "mid", "other", labels)
    with pytest.raises(ValueError, match=r"labels \['other'\] that are not among the classes \['high', 'low', 'mid'\] "
                                         r"\(chunk 0, rows 0-399\)"):
        m.partial_fit(X[:400], unseen[:400])
    with pytest.raises(ValueError, match=r"y holds a missing label \(None / NaN\) in chunk 1 \(row 401\)"):
        SGDClassifier(mode="local").fit(da.from_array(X, chunks=400), pd.Series(labels).mask(np.arange(1200) == 401))
    with pytest.raises(ValueError, match=r"y holds string labels where the classes are numbers in chunk 0 \(row 0\)"):
        SGDClassifier(mode="local").partial_fit(X, pd.Series(labels, dtype=object), classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"classes mixes string labels with \[1\]"):
        SGDClassifier(mode="local").partial_fit(X[:3], ["a", "b", "a"], classes=np.array(["a", 1, "b"], dtype=object))
    with pytest.raises(ValueError, match="not of the kind of the classes"):
        SGDClassifier(mode="local", classes=["a", "b"]).fit(X[:4], [0, 1, 0, 1])


@pytest.fixture(scope="module")
def table(tmp_path_factory, data):
    X, codes, _ = data
    path = os.path.join(tmp_path_factory.mktemp("labels"), "t.zarr")
    with TableWriter(path, [("a", "numeric"), ("b", "numeric"), ("c", "numeric"), ("kind", "categorical")],
                     chunk_rows=400, target="kind") as w:
        w.append_columns({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "kind": codes.astype(np.int32)})
        w.set_levels("kind", LEVELS.tolist())
    return path


def test_a_stored_categorical_target_searched_and_scored_by_its_labels(data, table):
    X, codes, labels = data
    search = GridSearchCV(SGDClassifier(mode="local", rounds=2, batch_size=100, eta0=0.05),
                          {"alpha": [1e-4, 1e-2]}, cv=3, scoring=["f1_macro", "accuracy"], refit="accuracy")
    search.fit(table)
    by_codes = GridSearchCV(SGDClassifier(mode="local", rounds=2, batch_size=100, eta0=0.05),
                            {"alpha": [1e-4, 1e-2]}, cv=3, scoring=["f1_macro", "accuracy"], refit="accuracy")
    by_codes.fit(da.from_array(X, chunks=400), da.from_array(codes, chunks=400))
    for key in ("mean_test_f1_macro", "mean_test_accuracy"):
        np.testing.assert_array_equal(search.cv_results_[key], by_codes.cv_results_[key])
    assert search.classes_.tolist() == LEVELS.tolist()
    np.testing.assert_array_equal(search.predict(X), LEVELS[by_codes.predict(X)])
    direct = SGDClassifier(mode="local", rounds=2, batch_size=100, eta0=0.05).fit(table)
    np.testing.assert_array_equal(direct.coef_, SGDClassifier(mode="local", rounds=2, batch_size=100, eta0=0.05).fit(
        da.from_array(X, chunks=400), labels).coef_)
    missing = os.path.join(os.path.dirname(table), "missing.zarr")
    with TableWriter(missing, [("a", "numeric"), ("kind", "categorical")], chunk_rows=4, target="kind") as w:
        w.append_columns({"a": X[:8, 0], "kind": np.array([0, 1, 2, 0, -1, 1, 2, 0], np.int32)})
        w.set_levels("kind", LEVELS.tolist())
    with pytest.raises(TableError, match="column 'kind' has 1 missing value"):
        SGDClassifier(mode="local").fit(missing)


def test_labels_saved_loaded_served_and_exported(tmp_path, data):
    from test_serve import running, v2

    from scaleml_dask.deploy.serve import make_app

    X, _, labels = data
    m = SGDClassifier(mode="local", rounds=2, batch_size=100).fit(X, pd.Series(labels, dtype=object))
    save_model(m, tmp_path / "clf")
    loaded = load_model(tmp_path / "clf")
    assert loaded.classes_.dtype.kind == "U" and loaded.predict(X).tolist() == m.predict(X).tolist()
    with running(make_app([tmp_path / "clf"])) as client:
        r = client.post("/v2/models/clf/infer", json={"inputs": [v2(X[:5])]})
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == m.predict(X[:5]).tolist()
    ort = pytest.importorskip("onnxruntime")
    from scaleml_dask.deploy.onnx import to_onnx

    sess = ort.InferenceSession(to_onnx(m).SerializeToString(), providers=["CPUExecutionProvider"])
    assert sess.run(["predict"], {"X": X})[0].tolist() == m.predict(X).tolist()


def test_pipeline_labels_and_an_unseen_label_at_score(data):
    X, _, labels = data
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    clf = SGDClassifier(mode="local", rounds=2, batch_size=100, eta0=0.05)
    pipe = make_pipeline(StandardScaler(), clf).fit(frame, labels)
    assert pipe.classes_.tolist() == LEVELS.tolist() and pipe.score(frame, labels) > 0.9
    # a label the fit never saw is an error of the prediction, as scikit-learn's Pipeline.score (and our
    # classifier's own score) count it, for in-memory and dask inputs alike
    unseen = np.where(labels == "mid", "other", labels)
    sk_pipe = SkPipeline([("s", SkScaler()), ("c", SkSGD(random_state=0))]).fit(X, labels)
    assert sk_pipe.score(X, unseen) == accuracy_score(unseen, sk_pipe.predict(X)) < sk_pipe.score(X, labels)
    expected = accuracy_score(unseen, pipe.predict(frame))
    assert 0.5 < expected < pipe.score(frame, labels)
    assert pipe.score(frame, unseen) == expected == pipe.score(frame, da.from_array(unseen, chunks=400))
    dX, dy = da.from_array(X, chunks=400), da.from_array(unseen, chunks=400)
    dpipe = make_pipeline(StandardScaler(), SGDClassifier(mode="local", rounds=2, batch_size=100, eta0=0.05))
    dpipe.fit(dX, da.from_array(labels, chunks=400))
    assert dpipe.score(dX, dy) == accuracy_score(unseen, dpipe.predict(dX).compute()) == dpipe.score(X, unseen)


def test_string_labels_in_memory_reach_the_tasks_as_integer_codes(data, monkeypatch):
    """Labels given in memory (numpy strings, a list, pandas objects or categories) are encoded on the client once:
    the tasks' y and the classes they check against are integer codes, never Python objects or strings; the fit is
    the fit of the labels (their codes' fit, read back as labels), for fit and partial_fit."""
    import dask

    from scaleml_dask.sgd._trainer import Trainer

    X, codes, labels = data
    seen = []
    run = Trainer.run

    def spy(self, dX, dy, *args, **kwargs):
        graph = dict(dy.__dask_graph__())
        arrays = [v for v in graph.values() if isinstance(v, np.ndarray)]
        seen.append((self.config.problem.classes.dtype.kind, dy.dtype.kind, [a.dtype.kind for a in arrays]))
        return run(self, dX, dy, *args, **kwargs)

    monkeypatch.setattr(Trainer, "run", spy)
    kw = {"mode": "local", "rounds": 2, "batch_size": 100, "eta0": 0.05}
    with dask.config.set(scheduler="sync"):
        ref = SGDClassifier(**kw).fit(X, codes)
        part_ref = SGDClassifier(mode="local", batch_size=100).partial_fit(X[:600], codes[:600], classes=[0, 1, 2])
        part_ref.partial_fit(X[600:], codes[600:])
        for y in (labels, labels.tolist(), pd.Series(labels, dtype=object), pd.Series(labels).astype("category")):
            m = SGDClassifier(**kw).fit(X, y)
            assert m.classes_.tolist() == LEVELS.tolist() and m.classes_.dtype.kind == "U"
            np.testing.assert_array_equal(m.coef_, ref.coef_)
            part = SGDClassifier(mode="local", batch_size=100, classes=["mid", "low", "high"])
            part.partial_fit(X[:600], y[:600]).partial_fit(X[600:], y[600:])
            np.testing.assert_array_equal(part.coef_, part_ref.coef_)
            assert part.predict(X).tolist() == LEVELS[part_ref.predict(X)].tolist()
    assert len(seen) == 3 + 4 * 3  # the references' fit and partial fits, then each kind of labels' three
    for classes_kind, y_kind, array_kinds in seen:
        assert classes_kind in "iu" and y_kind in "iu" and not set(array_kinds) & set("OUS"), seen
