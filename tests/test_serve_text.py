"""A text pipeline served: HashingVectorizer on a table's text column (+ tf-idf) and an SGD classifier, saved,
loaded and served by `scaleml serve` (a subprocess on a free 127.0.0.1 port), answering V2 (a BYTES input per
column) and V1 (instances as records) equal to the in-process pipeline; a document of the wrong type is a 4xx."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest
from test_hostile_requests import scaleml_serve

import scaleml_dask as sm
from scaleml_dask.compose import make_column_transformer
from scaleml_dask.deploy.registry import load_model, read_metadata, save_model
from scaleml_dask.feature_extraction.text import HashingVectorizer, TfidfTransformer
from scaleml_dask.io.text import load_chatterbot_corpus
from scaleml_dask.pipeline import make_pipeline
from scaleml_dask.preprocessing import OneHotEncoder

pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two pipelines fitted on a stored table with a text column (real text: the ChatterBot corpus): hashing only,
    and hashing + tf-idf beside a one-hot category; saved to a registry and served."""
    docs, _ = load_chatterbot_corpus(("english",))
    docs = docs[:240]
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"review": docs, "region": rng.choice(["north", "south"], len(docs)),
                          "y": np.array([" you" in d.lower() for d in docs], dtype=int)})  # words predict it
    d = tmp_path_factory.mktemp("serve-text")
    frame.to_csv(d / "r.csv", index=False)
    sm.ingest(d / "r.csv", d / "r.zarr", target="y", text=["review"], chunk_rows=80)
    sgd = dict(mode="local", loss="log_loss", learning_rate="constant", eta0=0.5, alpha=1e-6, batch_size=1,
               rounds=3, validation_fraction=0.0, random_state=0)
    pipes = {
        "hashed": make_pipeline(make_column_transformer((HashingVectorizer(n_features=2**16), "review")),
                                sm.SGDClassifier(**sgd)),
        "tfidf": make_pipeline(make_column_transformer((HashingVectorizer(n_features=2**16, alternate_sign=False),
                                                        "review"), (OneHotEncoder(), ["region"])),
                               TfidfTransformer(sublinear_tf=True), sm.SGDClassifier(**sgd)),
    }
    models = d / "models"
    for name, pipe in pipes.items():
        pipe.fit(d / "r.zarr")
        save_model(pipe, models / name)
    rows = {"review": ["How are you?", docs[4], None, "What is your favourite programming language?", docs[5],
                       "zzz qqq"],  # None: a missing document, hashed as the empty one
            "region": ["north", "south", "north", "south", "north", "south"]}
    with scaleml_serve(models) as (proc, base, _):
        yield base, pipes, models, rows


def test_the_saved_text_pipeline_loads_and_predicts_as_the_fitted_one(served):
    _, pipes, models, rows = served
    for name, pipe in pipes.items():
        loaded = load_model(models / name)
        np.testing.assert_array_equal(loaded.predict_proba(rows), pipe.predict_proba(rows))
        assert read_metadata(models / name)["dtypes"]["input"] == "table"


def test_v2_bytes_and_v1_instances_answer_as_in_process(served):
    base, pipes, _, rows = served
    with httpx.Client(base_url=base, timeout=30) as c:
        for name, pipe in pipes.items():
            expected, proba = pipe.predict(rows), pipe.predict_proba(rows)
            assert 0 < expected.sum() < len(expected)  # both classes among the answers: the comparison can fail
            meta = c.get(f"/v2/models/{name}").json()
            columns = {i["name"]: i["datatype"] for i in meta["inputs"]}
            assert columns == ({"review": "BYTES"} if name == "hashed" else {"review": "BYTES", "region": "BYTES"})
            inputs = [{"name": col, "shape": [len(rows[col])], "datatype": "BYTES", "data": rows[col]}
                      for col in columns]
            r = c.post(f"/v2/models/{name}/infer", json={"inputs": inputs, "outputs": [{"name": "predict"},
                                                                                   {"name": "predict_proba"}]})
            assert r.status_code == 200, r.text
            out = {o["name"]: o for o in r.json()["outputs"]}
            np.testing.assert_array_equal(out["predict"]["data"], expected)
            np.testing.assert_allclose(np.reshape(out["predict_proba"]["data"], proba.shape), proba, rtol=1e-12,
                                       atol=1e-15)
            records = [dict(zip(columns, values)) for values in zip(*(rows[col] for col in columns))]
            r = c.post(f"/v1/models/{name}:predict", json={"instances": records})
            assert r.status_code == 200, r.text
            np.testing.assert_array_equal(r.json()["predictions"], expected)


def test_a_document_of_the_wrong_type_is_a_4xx_naming_the_column(served):
    base, _, _, rows = served
    with httpx.Client(base_url=base, timeout=30) as c:
        bad = [{"name": "review", "shape": [1], "datatype": "BYTES", "data": [3.5]},
               {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["north"]}]
        r = c.post("/v2/models/tfidf/infer", json={"inputs": bad})
        assert 400 <= r.status_code < 500 and "review" in r.text
        good = [{"name": col, "shape": [1], "datatype": "BYTES", "data": values[:1]} for col, values in rows.items()]
        assert c.post("/v2/models/tfidf/infer", json={"inputs": good}).status_code == 200  # still served


def test_a_text_pipeline_quantizes_on_sparse_rows_and_saves_int8(served, tmp_path):
    """int8 of the final estimator, measured on the raw rows hashed to CSR (never densified), saved and loaded."""
    from scaleml_dask._compact_weights import Int8Weights
    from scaleml_dask.deploy.compress import prediction_bound, quantize

    _, pipes, _, rows = served
    pipe = pipes["tfidf"]
    q, rep = quantize(pipe, "int8", X_val=rows)
    assert rep["n_rows"] == 6 and isinstance(q._final_estimator._scorer(), Int8Weights)
    bound = prediction_bound(q, rows).max()
    diff = np.abs(q.decision_function(rows) - pipe.decision_function(rows)).max()
    assert 0 < diff <= bound
    loaded = load_model(save_model(q, tmp_path / "q").parent)
    np.testing.assert_allclose(loaded.decision_function(rows), q.decision_function(rows), rtol=0, atol=1e-12)
