"""Deployment of whole pipelines of raw columns: saved without pickle and loaded predicting identically, compressed
(the final estimator), scored on raw tables (a table store, CSV, Parquet, from the command line) and exported to
ONNX, checked with onnxruntime on raw rows against the pipeline's own predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import zarr
from fitted import small_table, table_pipelines

import scaleml_dask as sm
from scaleml_dask import cli
from scaleml_dask.compose import make_column_transformer
from scaleml_dask.deploy.compress import prediction_bound
from scaleml_dask.deploy.onnx import onnx_inputs, to_onnx
from scaleml_dask.deploy.registry import RegistryError, content_sha256, load_model, read_metadata, save_model
from scaleml_dask.linear_cv import RidgeCV
from scaleml_dask.pipeline import make_pipeline
from scaleml_dask.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, SimpleImputer, StandardScaler


@pytest.fixture(scope="module")
def table():
    return small_table()


@pytest.fixture(scope="module")
def pipes(table):
    return table_pipelines(table)


def _outputs(model, rows):
    return {name: getattr(model, name)(rows) for name in ("predict", "predict_proba") if hasattr(model, name)}


@pytest.mark.parametrize("name", ["table-reg", "table-clf"])
def test_saved_pipeline_loads_predicting_identically(tmp_path, table, pipes, name):
    frame = table[0]
    pipe = pipes[name]
    save_model(pipe, tmp_path / "m", data=frame)
    loaded, meta = load_model(tmp_path / "m", with_metadata=True)
    assert type(loaded) is type(pipe) and [n for n, _ in loaded.steps] == [n for n, _ in pipe.steps]
    for output, expected in _outputs(pipe, frame).items():
        got = getattr(loaded, output)(frame)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), output
    assert loaded.input_schema_ == pipe.input_schema_
    raw = (tmp_path / "m" / "1" / "metadata.json").read_text()
    assert "pickle" not in raw and meta["dtypes"]["input"] == "table"
    assert meta["feature_names"] == ["region", "price", "qty", "member"]
    training = meta["training"]  # the numeric columns, as drift monitoring watches them
    assert training["columns"] == ["price", "qty", "member"]
    np.testing.assert_allclose(training["feature_mean"], [np.nanmean(frame["price"]), frame["qty"].mean(),
                                                          frame["member"].mean()], rtol=1e-12)


@pytest.mark.parametrize("make", [StandardScaler, MinMaxScaler, lambda: SimpleImputer(strategy="median"),
                                  lambda: OneHotEncoder(min_frequency=40, sparse_output=False),
                                  lambda: OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)],
                         ids=["standard", "minmax", "imputer", "onehot-infrequent", "ordinal"])
def test_transformers_are_savable(tmp_path, table, make):
    frame = table[0]
    columns = ["region"] if "Encoder" in type(make()).__name__ else ["price", "qty"]
    t = make().fit(frame[columns])
    save_model(t, tmp_path / "t")
    rows = frame[columns].copy()
    if columns == ["region"]:
        rows.loc[0, "region"] = "north-east" if isinstance(t, OrdinalEncoder) else "west"
    np.testing.assert_array_equal(load_model(tmp_path / "t").transform(rows), t.transform(rows))


def test_ridgecv_is_savable(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    m = RidgeCV(alphas=(0.1, 1.0, 10.0)).fit(X, X @ [1.0, 2.0, 0.0, -1.0] + rng.normal(0, 0.1, 80))
    save_model(m, tmp_path / "r")
    loaded = load_model(tmp_path / "r")
    assert loaded.alpha_ == m.alpha_ and np.array_equal(loaded.predict(X), m.predict(X))


def _reseal(path, meta):
    meta["content_sha256"] = content_sha256(meta)
    (path / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("tag, replacement", [("$estimator", "os.system"), ("$estimator", "builtins.eval"),
                                              ("$value", "subprocess.Popen")])
def test_a_nested_name_outside_the_fixed_table_is_refused(tmp_path, pipes, tag, replacement):
    """Loading stays parsing: a nested estimator or value is looked up in deploy._loadable's tables only."""
    path = save_model(pipes["table-reg"], tmp_path / "m")
    meta = json.loads((path / "metadata.json").read_text())
    text = json.dumps(meta)
    first = text.index(f'"{tag}": "') + len(tag) + 5
    end = text.index('"', first)
    meta = json.loads(text[:first] + replacement + text[end:])
    _reseal(path, meta)
    with pytest.raises(RegistryError, match=rf"metadata.json: .*{replacement.split('.')[0]}"):
        load_model(tmp_path / "m")


def test_quantize_and_prune_act_on_the_final_estimator(tmp_path, table, pipes):
    frame, y, _ = table
    pipe = pipes["table-reg"]
    q, report = sm.quantize(pipe, "int8", X_val=frame, y_val=y)
    final = q.steps[-1][1]
    assert report["step"] == "linearregression" and set(final.quantization_) == {"coef_"}
    assert q.steps[0][1] is not pipe.steps[0][1] and not hasattr(pipe.steps[-1][1], "quantization_")
    diff = np.abs(q.predict(frame) - pipe.predict(frame))
    assert 0 < diff.max() and (diff <= prediction_bound(q, frame)[:, 0]).all()
    assert report["metrics_after"]["r2"] > report["metrics_before"]["r2"] - 0.01
    save_model(q, tmp_path / "q")
    assert np.array_equal(load_model(tmp_path / "q").predict(frame), q.predict(frame))
    pruned, rep = sm.prune(pipe, 0.5, X_val=frame, y_val=y)
    assert rep["pruned_weights"] == 3 and int((pruned.steps[-1][1].coef_ == 0).sum()) >= 3
    clf, rep = sm.quantize(pipes["table-clf"], "float16", X_val=frame, y_val=table[2])  # string labels
    assert rep["metrics_after"]["accuracy"] >= rep["metrics_before"]["accuracy"] - 0.02
    assert set(clf.predict(frame)) <= {"high", "low"}


def test_score_raw_tables_store_csv_parquet_and_cli(client, tmp_path, table, pipes):
    frame, y, labels = table
    frame.assign(y=y).to_csv(tmp_path / "t.csv", index=False)
    frame.assign(segment=labels).to_parquet(tmp_path / "t.parquet")
    store = sm.ingest(tmp_path / "t.csv", tmp_path / "t.zarr", target="y", chunk_rows=64)
    reg, clf = pipes["table-reg"], pipes["table-clf"]
    out = sm.score(reg, store, tmp_path / "s.zarr")
    g = zarr.open_group(str(out), mode="r")
    np.testing.assert_allclose(g["y"][:], reg.predict(frame), rtol=1e-12, atol=1e-12)
    assert g["y"].chunks == (64,) and g.attrs["model"] == "scaleml_dask.pipeline.Pipeline"
    out = sm.score(clf, tmp_path / "t.parquet", tmp_path / "p.zarr")
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["y_levels"] == ["high", "low"] and g.attrs["feature_names"] == ["proba_high", "proba_low"]
    assert np.array_equal(np.array(g.attrs["y_levels"])[g["y"][:].astype(int)], clf.predict(frame))
    np.testing.assert_allclose(g["X"][:], clf.predict_proba(frame), rtol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.zarr", "s.zarr", "t.csv", "t.parquet", "t.zarr"]
    save_model(reg, tmp_path / "models" / "reg", data=store)  # training statistics from the store, lazily
    training = read_metadata(tmp_path / "models" / "reg")["training"]
    np.testing.assert_allclose(training["feature_mean"], [np.nanmean(frame["price"]), frame["qty"].mean(),
                                                          frame["member"].mean()], rtol=1e-12)
    np.testing.assert_allclose(training["feature_std"], [np.nanstd(frame["price"]), frame["qty"].std(ddof=0),
                                                         frame["member"].std(ddof=0)], rtol=1e-12)
    code = cli.main(["score", "--model", str(tmp_path / "models" / "reg"), "--dataset", str(tmp_path / "t.csv"),
                     "--out", str(tmp_path / "c.zarr"), "--scheduler", client.scheduler.address, "-q"])
    assert code == 0
    np.testing.assert_allclose(zarr.open_group(str(tmp_path / "c.zarr"), mode="r")["y"][:], reg.predict(frame),
                               rtol=1e-12, atol=1e-12)


def _session(model):
    import onnxruntime as ort

    return ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])


def _rows_with_gaps(frame):
    rows = frame.head(40).copy()
    rows.loc[rows.index[:3], "region"] = None  # missing categories
    rows.loc[rows.index[3:6], "price"] = np.nan
    return rows


@pytest.mark.parametrize("name", ["table-reg", "table-clf"])
def test_onnx_of_pipelines_equals_the_pipeline_on_raw_rows(table, pipes, name):
    pipe = pipes[name]
    rows = _rows_with_gaps(table[0]) if name == "table-clf" else table[0]
    sess = _session(pipe)
    assert [i.name for i in sess.get_inputs()] == ["region", "price", "qty", "member"]
    assert sess.get_inputs()[0].type == "tensor(string)" and sess.get_inputs()[1].type == "tensor(double)"
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, onnx_inputs(pipe, rows))))
    expected = _outputs(pipe, rows)
    assert names == list(expected)
    for output, want in expected.items():
        if want.dtype.kind == "O":
            assert np.array_equal(got[output], want), output
        else:
            np.testing.assert_allclose(got[output], want, rtol=1e-12, atol=1e-12)


def test_onnx_encoders_imputers_unknown_levels(table):
    frame = table[0]
    pipe = make_pipeline(make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="most_frequent"),
                       OneHotEncoder(max_categories=3, handle_unknown="infrequent_if_exist")), ["region"]),
        (make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                       OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)), ["region"]),
        (SimpleImputer(add_indicator=True), ["price"]), (MinMaxScaler(clip=True), ["qty"]), remainder="drop"),
        sm.Ridge(alpha=1.0)).fit(frame, table[1])
    rows = _rows_with_gaps(frame)
    rows.loc[rows.index[7], "region"] = "atlantis"  # unknown: the infrequent column, the ordinal -1
    sess = _session(pipe)
    got = sess.run(["predict"], onnx_inputs(pipe, rows))[0]
    np.testing.assert_allclose(got, pipe.predict(rows), rtol=1e-12, atol=1e-12)
    strict = make_pipeline(make_column_transformer((OneHotEncoder(), ["region"]), remainder="drop"),
                           sm.LinearRegression()).fit(frame, table[1])
    with pytest.raises(Exception, match="Unknown Category"):  # handle_unknown="error": the ONNX-ML operator refuses
        _session(strict).run(["predict"], onnx_inputs(strict, pd.DataFrame({"region": ["atlantis"]})))
    lenient = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["region"]),
                                                    remainder="drop"), sm.LinearRegression()).fit(frame, table[1])
    unseen = pd.DataFrame({"region": ["atlantis", frame["region"].dropna().iloc[0]]})
    got = _session(lenient).run(["predict"], onnx_inputs(lenient, unseen))[0]
    assert lenient[:-1].transform(unseen)[0].sum() == 0  # the unknown level encodes as zeros, the known one not
    np.testing.assert_allclose(got, [lenient[-1].intercept_, lenient.predict(unseen)[1]], rtol=1e-12)
