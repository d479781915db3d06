"""Compression where it matters: a model over 2**20 hashed features scored from its int8 codes (int8 kernel) and
from its pruned weights, stored sparse in the registry and loaded through its checks."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import scipy.sparse as sp

import scaleml_dask as sm
from scaleml_dask._compact_weights import DenseWeights, Int8Weights, SparseWeights
from scaleml_dask.deploy.compress import prune, quantize, tradeoff
from scaleml_dask.deploy.registry import RegistryError, _sha256, content_sha256, load_model, save_model
from scaleml_dask.feature_extraction.text import HashingVectorizer
from scaleml_dask.io.synthetic_text import TextModel

P = 2**20


@pytest.fixture(scope="module", params=[2, 3], ids=["binary", "3 topics"])
def hashed(request):
    """A fitted SGD model over 2**20 hashed features and held-out CSR rows with their labels."""
    text = TextModel.make(vocabulary=3000, n_classes=request.param, topic_words=40, topic_rate=0.3, seed=3)
    docs, y = text.documents(0, 900)
    X = HashingVectorizer(n_features=P).transform(docs.to_pylist())
    model = sm.SGDClassifier(mode="local", loss="log_loss", learning_rate="invscaling", eta0=1.0, alpha=1e-6,
                             batch_size=1, rounds=1, validation_fraction=0.0, random_state=0).fit(X[:600], y[:600])
    return model, X[600:], y[600:]


def _dequantized_scores(model, X):
    W = model._state.W
    return np.asarray(X @ W[:-1] + W[-1])


def test_int8_model_scores_by_the_int8_kernel_equal_to_dequantized_float(hashed, tmp_path):
    model, X, y = hashed
    q, rep = quantize(model, "int8", X_val=X, y_val=y)
    assert isinstance(q._scorer(), Int8Weights) and q._scorer().q.dtype == np.int8
    assert isinstance(model._scorer(), DenseWeights)
    ref = _dequantized_scores(q, X)
    assert np.abs(ref - _dequantized_scores(model, X)).max() > 0  # the quantization changed the scores
    S = q.decision_function(X)
    np.testing.assert_allclose(S.reshape(ref.shape), ref, rtol=0, atol=1e-12)
    loaded = load_model(save_model(q, tmp_path / "r").parent)
    assert isinstance(loaded._scorer(), Int8Weights)
    np.testing.assert_allclose(loaded.decision_function(X).reshape(ref.shape), ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(loaded.predict(X), q.predict(X))
    dense = X[:20].toarray()  # dense rows: the same scores
    np.testing.assert_allclose(q.decision_function(dense).reshape(-1), ref[:20].reshape(-1), rtol=0, atol=1e-12)
    assert rep["bytes_after"] < rep["bytes_before"] and rep["weight_bytes_after"] < rep["weight_bytes_before"] / 7


def test_pruned_weights_are_stored_sparse_and_load_equal(hashed, tmp_path):
    model, X, y = hashed
    kept = np.count_nonzero(model._state.W[:-1])
    pruned, rep = prune(model, 1 - kept / 4 / model._state.W[:-1].size, X_val=X, y_val=y)
    nnz = np.count_nonzero(pruned._state.W[:-1])
    assert abs(nnz - kept / 4) <= 1
    assert pruned.quantization_["_state.W"]["dtype"] == "sparse" and isinstance(pruned._scorer(), SparseWeights)
    path = save_model(pruned, tmp_path / "r")
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["compression"] == {"_state.W": "sparse", "coef_": "sparse"}
    stored = meta["arrays"]["_state.W"]
    assert stored["decode"]["dtype"] == "sparse" and stored["shape"] == [nnz]
    assert meta["arrays"]["_state.W.index"]["dtype"] == "<i4"
    loaded = load_model(path.parent)
    np.testing.assert_array_equal(loaded._state.W, pruned._state.W)
    np.testing.assert_array_equal(loaded.coef_, pruned.coef_)
    ref = _dequantized_scores(pruned, X)
    np.testing.assert_allclose(loaded.decision_function(X).reshape(ref.shape), ref, rtol=0, atol=1e-12)
    dense = X[:20].toarray()
    np.testing.assert_allclose(loaded.decision_function(dense).reshape(-1), ref[:20].reshape(-1), rtol=0, atol=1e-12)
    assert rep["bytes_after"] < rep["bytes_before"] and rep["weight_bytes_after"] == 12 * nnz


def _tamper(path, change):
    """Change the stored arrays and the metadata (``change(arrays, meta)``), resealing every checksum."""
    with np.load(path / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads((path / "metadata.json").read_text())
    change(arrays, meta)
    for name, a in arrays.items():
        meta["arrays"][name].update(sha256=_sha256(a), shape=list(a.shape), dtype=a.dtype.str)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    raw = buf.getvalue()
    (path / "arrays.npz").write_bytes(raw)
    meta["files"]["arrays.npz"].update(sha256=hashlib.sha256(raw).hexdigest(), bytes=len(raw))
    meta["content_sha256"] = content_sha256(meta)
    (path / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("change, problem", [
    (lambda a, m: a.__setitem__("_state.W.index", a["_state.W.index"] + 2**21), "not increasing inside"),
    (lambda a, m: a.__setitem__("_state.W.index", a["_state.W.index"][::-1].copy()), "not increasing inside"),
    (lambda a, m: a.__setitem__("_state.W.index", a["_state.W.index"].astype(np.float64)), "not one int32"),
    (lambda a, m: a.__setitem__("_state.W.index", a["_state.W.index"][:-1].copy()), "not one int32"),
    (lambda a, m: m["arrays"]["_state.W"]["decode"].update(shape=[2**40, 1]), "the limit is"),
    (lambda a, m: m["arrays"]["_state.W"]["decode"].update(index="nope"), "must be {dtype"),
], ids=["outside", "decreasing", "float index", "short index", "inflates past the limit", "no index"])
def test_a_tampered_sparse_array_is_refused_by_name(tmp_path, change, problem):
    X = sp.random(60, 500, density=0.05, format="csr", random_state=0)
    y = np.arange(60) % 2
    model = sm.SGDClassifier(mode="local", random_state=0).fit(X, y)
    pruned, _ = prune(model, 0.98, X_val=X, y_val=y)
    path = save_model(pruned, tmp_path / "r")
    _tamper(path, change)
    with pytest.raises(RegistryError, match="metadata.json") as err:
        load_model(path.parent)
    assert problem in str(err.value) and ("_state.W" in str(err.value) or "arrays" in str(err.value))


def test_small_model_compression_still_works(tmp_path):
    """The small dense path: a 20-feature regressor pruned (stored sparse once it pays) and quantized."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20))
    y = X @ np.r_[rng.normal(size=5), np.zeros(15)]
    model = sm.LinearRegression().fit(X, y)
    pruned, _ = prune(model, 0.75, X_val=X, y_val=y)
    assert pruned.quantization_["coef_"]["dtype"] == "sparse"
    loaded = load_model(save_model(pruned, tmp_path / "r").parent)
    np.testing.assert_array_equal(loaded.predict(X), pruned.predict(X))
    rows = tradeoff(model, X, y, fractions=(0.5, 0.9))
    assert [r["method"] for r in rows] == ["original", "int8", "float16", "prune 50%", "prune 90%"]


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("m", [0, 1, 5000, P], ids=["m=0", "m=1", "m=5000", "m=p"])
def test_the_masked_lookup_equals_the_dense_product(k, m):
    """The bitmap + rank lookup of the kept weights: every kept feature (the last one, p - 1, included) finds its
    weight, every other one the zero slot; empty rows score the intercept."""
    rng = np.random.default_rng(m + k)
    W = np.zeros((P + 1, k))
    kept = np.arange(P) if m == P else np.r_[rng.choice(P - 1, max(m - 1, 0), replace=False), P - 1][:m]
    W[kept] = rng.normal(size=(len(kept), k))
    W[-1] = rng.normal(size=k)
    X = sp.random(60, P, density=3e-4, format="csr", random_state=m, dtype=np.float64)
    X = sp.vstack([X, sp.csr_matrix(([2.0, -1.0], ([0, 0], [P - 1, kept[0] if m else 7])), shape=(1, P)),
                   sp.csr_matrix((1, P))], format="csr")
    sw = SparseWeights.of(W, csr_kernel="masked")
    assert sw.values.shape == (m + 1, k) and not sw.values[-1].any()  # the kept weights and the zero slot
    ref = np.asarray(X @ W[:-1] + W[-1])
    np.testing.assert_allclose(sw(X), ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sw(X)[-1], W[-1])
    np.testing.assert_allclose(SparseWeights.of(W)(X), ref, rtol=0, atol=1e-12)
    assert int(np.bitwise_count(sw.words).sum()) == m and sw.rank[-1] + np.bitwise_count(sw.words[-1]) == m
