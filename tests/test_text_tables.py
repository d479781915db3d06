"""Text columns of a table: kept as documents at ingest (or stored hashed), hashed inside a ColumnTransformer
equal to scikit-learn's ColumnTransformer with its HashingVectorizer, tf-idf after it, estimators refusing text."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import zarr
from sklearn.compose import ColumnTransformer as SkColumnTransformer
from sklearn.feature_extraction.text import HashingVectorizer as SkHashingVectorizer
from sklearn.feature_extraction.text import TfidfTransformer as SkTfidfTransformer
from sklearn.pipeline import make_pipeline as sk_make_pipeline
from sklearn.preprocessing import OneHotEncoder as SkOneHotEncoder
from sklearn.preprocessing import StandardScaler as SkStandardScaler

import scaleml_dask as sm
from scaleml_dask.compose import ColumnTransformer, make_column_transformer
from scaleml_dask.feature_extraction.text import HashingVectorizer, TfidfTransformer, ingest_hashed
from scaleml_dask.io.ingest import IngestError
from scaleml_dask.io.table import TableError
from scaleml_dask.io.text import load_chatterbot_corpus
from scaleml_dask.pipeline import make_pipeline
from scaleml_dask.preprocessing import OneHotEncoder, StandardScaler


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """A small table of real text (the ChatterBot corpus) with a category, a number with a missing value and a
    target, as CSV, and the same ingested with the text kept."""
    docs, topics = load_chatterbot_corpus(("english",))
    docs = docs[:300]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"review": docs, "region": rng.choice(["north", "south", "east"], len(docs)),
                          "price": rng.normal(10, 3, len(docs)), "y": (rng.random(len(docs)) < 0.5).astype(int)})
    frame.loc[[3, 50], "review"] = None  # missing documents: the empty document
    frame.loc[7, "price"] = np.nan
    d = tmp_path_factory.mktemp("reviews")
    frame.to_csv(d / "r.csv", index=False)
    sm.ingest(d / "r.csv", d / "r.zarr", target="y", text=["review"], chunk_rows=64)
    return frame, d


def _sk_frame(frame):
    return frame.assign(review=frame["review"].fillna(""))


def _dense(A):
    return A.toarray() if sp.issparse(A) else np.asarray(A)


def test_ingest_keeps_a_text_column_as_documents(reviews, tmp_path):
    frame, d = reviews
    with pytest.raises(IngestError, match=r"too diverse.*--text review"):
        sm.ingest(d / "r.csv", tmp_path / "no.zarr", target="y")
    ds = sm.open_dataset(d / "r.zarr")
    assert ds["review"].attrs["kind"] == "text" and ds["review"].attrs["n_missing"] == 2
    assert ds["review"].data.chunks[0][0] == 64
    np.testing.assert_array_equal(ds["review"].values.astype(object), _sk_frame(frame)["review"].to_numpy(object))
    info = {c["name"]: c for c in sm.io.catalog.describe(d / "r.zarr")["columns"]}
    assert info["review"]["kind"] == "text" and info["review"]["n_missing"] == 2
    with pytest.raises(TableError, match=r"column 'review' is text.*HashingVectorizer"):
        sm.SGDClassifier(mode="local").fit(d / "r.zarr")


@pytest.mark.parametrize("stored", [False, True])
def test_column_transformer_hashes_like_scikit_learn(reviews, stored):
    frame, d = reviews
    ours = ColumnTransformer([("text", HashingVectorizer(n_features=2**12), "review"),
                              ("cat", OneHotEncoder(), ["region"]), ("num", StandardScaler(), ["price"])])
    sk = SkColumnTransformer([("text", SkHashingVectorizer(n_features=2**12), "review"),
                              ("cat", SkOneHotEncoder(), ["region"]), ("num", SkStandardScaler(), ["price"])])
    expected = sk.fit_transform(_sk_frame(frame))
    X = d / "r.zarr" if stored else frame
    got = ours.fit(X).transform(X)
    if stored:  # lazy: CSR row chunks hashed inside the task that computes them
        assert isinstance(got.blocks[0].compute(), sp.csr_matrix) and got.chunks[0][0] == 64
        got = sp.vstack(list(got.to_delayed().ravel()[i].compute() for i in range(len(got.chunks[0]))))
    assert got.shape == expected.shape == (len(frame), 2**12 + 4)
    np.testing.assert_allclose(_dense(got), _dense(expected), rtol=0, atol=1e-12, equal_nan=True)
    assert ours.sparse_output_ and isinstance(ours.named_transformers_["text"], HashingVectorizer)


@pytest.mark.slow
def test_pipeline_of_hashing_tfidf_and_a_learner_on_a_stored_table(reviews, client):
    frame, d = reviews
    before = sorted(p.name for p in d.iterdir())
    head = make_column_transformer((HashingVectorizer(n_features=2**12), "review"), (OneHotEncoder(), ["region"]))
    pipe = make_pipeline(head, TfidfTransformer(), sm.SGDClassifier(mode="local", random_state=0, epochs=1))
    pipe.fit(d / "r.zarr")
    assert sorted(p.name for p in d.iterdir()) == before  # no hashed copy written
    sk = sk_make_pipeline(SkColumnTransformer([("t", SkHashingVectorizer(n_features=2**12), "review"),
                                               ("c", SkOneHotEncoder(), ["region"])]), SkTfidfTransformer())
    sk.fit(_sk_frame(frame))
    np.testing.assert_allclose(pipe.named_steps["tfidftransformer"].idf_, sk[-1].idf_, rtol=1e-12)
    np.testing.assert_allclose(_dense(pipe[:-1].transform(frame)), _dense(sk.transform(_sk_frame(frame))),
                               rtol=0, atol=1e-12)
    stored = np.asarray(pipe.predict(d / "r.zarr"))
    rows = frame.iloc[:40]
    np.testing.assert_array_equal(pipe.predict(rows), stored[:40])  # served rows answer as the stored chunks


def test_ingest_hashed_stores_the_sparse_matrix(reviews, tmp_path, capsys):
    frame, d = reviews
    out = tmp_path / "h.zarr"
    from scaleml_dask.cli import main

    args = ["ingest", str(d / "r.csv"), str(out), "--target", "y", "--text", "review", "-q"]
    assert main([*args, "--drop", "region", "--n-features", "2**10"]) == 0
    X = sm.open_dataset(out)["X"].data.compute()
    expected = sp.hstack([SkHashingVectorizer(n_features=2**10).transform(_sk_frame(frame)["review"]),
                          sp.csr_matrix(frame[["price"]].to_numpy())], format="csr")
    assert X.shape == (len(frame), 2**10 + 1) and np.isnan(X[7, 2**10])  # a missing number stays missing
    np.testing.assert_allclose(_dense(X), _dense(expected), rtol=0, atol=0, equal_nan=True)
    np.testing.assert_array_equal(sm.open_dataset(out)["y"].values, frame["y"].to_numpy(float))
    assert zarr.open_group(str(out), mode="r").attrs["hashing"]["text"] == {"review": [0, 2**10]}
    bad = subprocess.run([sys.executable, "-m", "scaleml_dask.cli", *args, "--overwrite", "--n-features", "2**10"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "column 'region' is categorical" in bad.stderr
    assert main([*args, "--overwrite", "--n-features", "two"]) == 2
    assert "--n-features takes an integer or 2**K" in capsys.readouterr().err
    with pytest.raises(IngestError, match="name the text column"):
        ingest_hashed(d / "r.csv", tmp_path / "e.zarr", text=[])


@pytest.mark.slow
def test_compression_of_a_hashed_text_model_keeps_the_rows_sparse(reviews):
    """quantize / prune of a model over 2**20 hashed features, measured on CSR held-out rows (never densified)."""
    from scaleml_dask.deploy.compress import prediction_bound, prune, quantize

    frame, _ = reviews
    X = HashingVectorizer(n_features=2**20).transform(_sk_frame(frame)["review"])
    y = frame["y"].to_numpy()
    model = sm.SGDClassifier(mode="local", random_state=0, epochs=1).fit(X, y)
    q, rep = quantize(model, "int8", X_val=X, y_val=y)
    assert rep["n_rows"] == len(frame) and rep["weight_bytes_after"] == 2**20 + 8
    assert rep["bytes_after"] < rep["bytes_before"]
    assert 0 < rep["max_abs_diff"] <= prediction_bound(q, X).max()
    np.testing.assert_allclose(q.predict_proba(X), model.predict_proba(X), atol=prediction_bound(q, X).max() / 4)
    kept = np.count_nonzero(model.coef_)  # the hashed buckets the documents touched: few of 2**20
    pruned, prep = prune(model, 1 - kept / 2 / 2**20, X_val=X, y_val=y)  # half of the non-zero weights go
    assert np.count_nonzero(pruned.coef_) == kept - kept // 2 and prep["bytes_after"] < prep["bytes_before"]
