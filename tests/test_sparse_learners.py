"""Learners, reductions and selection on sparse and wide data, against dense fits of the same data, numpy and
scikit-learn: SGD (every mode; to 1e-10 of the same data densified), the online linear learners, KMeans, Ridge
(dual, conjugate gradients), TruncatedSVD, wide and sparse PCA, random projections, feature selection, t-SNE."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import feature_selection as skfs
from sklearn.decomposition import PCA as SkPCA
from sklearn.decomposition import TruncatedSVD as SkTruncatedSVD
from sklearn.linear_model import Ridge as SkRidge
from sklearn.random_projection import GaussianRandomProjection as SkGaussian
from sklearn.random_projection import SparseRandomProjection as SkSparse

import scaleml_dask as sm
from scaleml_dask import feature_selection as fs
from scaleml_dask import random_projection as rp
from scaleml_dask.io.store import DatasetWriter
from scaleml_dask.validation import as_dask_array


@pytest.fixture(scope="module")
def data():
    """2,000 × 300 non-negative sparse rows (a planted rank-8 part plus sparse noise), 3 classes, a target."""
    rng = np.random.default_rng(0)
    n, p = 2000, 300
    U = sp.random(n, 8, density=0.3, random_state=1) @ sp.diags(np.geomspace(8, 1, 8))
    low_rank = U @ sp.random(8, p, density=0.1, random_state=2)
    A = sp.csr_matrix(low_rank + 0.05 * sp.random(n, p, density=0.02, random_state=3))
    W = rng.standard_normal((p, 3))
    y3 = np.asarray(A @ W).argmax(axis=1)
    yr = np.asarray(A @ W[:, 0]) + 0.1 * rng.standard_normal(n)
    return A, A.toarray(), y3, yr


def _rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300))


@pytest.mark.parametrize("kw", [{"learning_rate": "constant", "eta0": 0.05, "penalty": "l2", "alpha": 1e-3},
                                {"learning_rate": "invscaling", "eta0": 0.2, "penalty": None},
                                {"learning_rate": "adam", "penalty": "l1", "alpha": 1e-4}],
                         ids=["constant-l2-lazy", "invscaling", "adam-l1"])
def test_sparse_sgd_equals_dense_sgd_local(data, kw):
    A, D, y3, yr = data
    common = {"mode": "local", "rounds": 2, "local_epochs": 2, "batch_size": 40, "random_state": 1, **kw}
    with dask.config.set(scheduler="synchronous"):
        clf = sm.SGDClassifier(**common).fit(A, y3), sm.SGDClassifier(**common).fit(D, y3)
        reg = sm.SGDRegressor(**common).fit(A, yr), sm.SGDRegressor(**common).fit(D, yr)
    for a, b in (clf, reg):
        assert _rel(a.coef_, b.coef_) < 1e-10 and _rel(a.intercept_, b.intercept_) < 1e-10
        assert np.abs(a.coef_).max() > 1e-3  # it learned something
    np.testing.assert_array_equal(clf[0].predict(A), clf[1].predict(D))
    np.testing.assert_allclose(clf[0].predict_proba(A), clf[1].predict_proba(D), rtol=1e-10)


def _peak_bytes(func):
    """The most memory (numpy arrays among it) allocated at once while ``func`` runs, above what was before."""
    import tracemalloc

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        func()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("schedule", ["constant", "adam"])
def test_sparse_kernels_copy_a_wide_multiclass_weight_matrix_once_at_most(schedule):
    """A CSR chunk's local epochs write into one copy of the weights and hand it back (the kernel takes it as a
    transposed view: no transposed copy, none back), with the buffers the rule needs; a mini-batch gradient reads
    the weights as a view and returns its one array. The results are those of the dense kernel on the densified
    chunk (``test_sparse_sgd_equals_dense_sgd_local``: to 1e-10)."""
    from scaleml_dask.sgd import _kernels as k

    p, C = 1 << 15, 8
    X = sp.random(64, p, density=0.002, random_state=0, format="csr")
    T = (np.random.default_rng(0).random((64, C)) > 0.5).astype(np.float64)
    W = np.zeros((p + 1, C))
    args = {"start": 0, "n_train": 64, "block": 0, "batch_size": 16, "loss": "log_loss", "fit_intercept": True}
    kw = {"seeds": [0], "penalty": "l2", "alpha": 1e-4, "schedule": schedule, "eta0": 0.01, "power_t": 0.5, "t0": 0.0}
    k.local_epochs(W, X, T, **args, **kw)  # both compiled (or loaded from the cache) before measuring
    k.batch_gradient(W, X, T, seed=0, step=0, **args)
    buffers = 3 if schedule == "adam" else 0  # its moments m, v, and the gradient a step of every weight sums
    assert _peak_bytes(lambda: k.local_epochs(W, X, T, **args, **kw)) < (1.25 + buffers) * W.nbytes
    assert _peak_bytes(lambda: k.batch_gradient(W, X, T, seed=0, step=0, **args)) < 1.25 * W.nbytes


def test_a_local_round_sends_the_rows_a_chunk_touched(monkeypatch):
    """Hashed text touches few of its columns per chunk: a local round's weight changes travel as their non-zero
    rows (lossless), far fewer bytes than the dense matrix, and the fit is the one the dense messages give."""
    from scaleml_dask.sgd import _kernels

    rng = np.random.default_rng(0)
    n, p, chunk = 2000, 1 << 16, 500
    cols = (np.arange(n)[:, None] // chunk) * 4096 + rng.integers(0, 4096, (n, 6))  # chunk c: columns of block c
    A = sp.csr_matrix((rng.random(n * 6), (np.repeat(np.arange(n), 6), cols.ravel())), shape=(n, p))
    y = rng.integers(0, 3, n)
    kw = {"mode": "local", "rounds": 2, "local_epochs": 1, "batch_size": 50, "learning_rate": "constant",
          "eta0": 0.5, "penalty": None, "validation_fraction": 0.0}

    def fit():
        with dask.config.set(scheduler="synchronous"):
            return sm.SGDClassifier(**kw).fit(as_dask_array(A, accept_sparse=True, chunk_rows=chunk), y)

    rows = fit()
    dense_bytes = (p + 1) * 3 * 8  # one chunk's dense message
    monkeypatch.setattr(_kernels, "ROWS_AT", 1 << 62)  # every message dense
    dense = fit()
    assert dense.bytes_exchanged_ - rows.bytes_exchanged_ > 2 * 4 * 0.9 * dense_bytes  # 2 rounds x 4 chunks
    np.testing.assert_array_equal(rows.coef_, dense.coef_)
    np.testing.assert_array_equal(rows.intercept_, dense.intercept_)
    assert np.count_nonzero(rows.coef_) > 1000  # it learned something


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sparse_sgd_on_the_cluster(data, client, mode):
    A, D, y3, _ = data
    X = as_dask_array(A, accept_sparse=True, chunk_rows=500)
    kw = {"mode": mode, "epochs": 2, "batch_size": 50, "learning_rate": "constant", "eta0": 0.1, "random_state": 2}
    a, b = sm.SGDClassifier(**kw).fit(X, y3), sm.SGDClassifier(**kw).fit(as_dask_array(D, chunk_rows=500), y3)
    if mode == "sync":  # deterministic: the same steps
        assert _rel(a.coef_, b.coef_) < 1e-10
    assert a.score(A, y3) > 0.6 and np.asarray(a.predict(X).compute()).shape == (2000,)


def test_online_linear_learners_on_csr_equal_dense(data):
    A, D, y3, yr = data
    yb = (y3 == 0).astype(int)
    for cls, target, kw in [(sm.online.LogisticRegression, yb, {"learning_rate": 0.5, "l2": 1e-3}),
                            (sm.online.LinearRegression, yr, {"optimizer": "adam", "learning_rate": 0.05})]:
        a, b = cls(**kw), cls(**kw)
        for s in range(0, 2000, 250):
            a.learn_many(A[s:s + 250], target[s:s + 250])
            b.learn_many(D[s:s + 250], target[s:s + 250])
        for i in range(50):
            a.learn_one(A[i], target[i])
            b.learn_one(D[i], target[i])
        assert _rel(a.coef_, b.coef_) < 1e-12 and abs(a.intercept_ - b.intercept_) < 1e-12
        np.testing.assert_allclose(a.predict_many(A), b.predict_many(D), rtol=1e-10, atol=1e-12)
    bad = A[:3].copy()
    bad.data[1] = np.nan
    with pytest.raises(ValueError, match=r"NaN in this batch.*column"):
        sm.online.LogisticRegression().learn_many(bad, [0, 1, 0])


def test_sparse_kmeans_equals_dense(data):
    A, D, _, _ = data
    init = D[[0, 5, 9, 17]]
    a = sm.KMeans(4, init=init, max_iter=30).fit(A)
    b = sm.KMeans(4, init=init, max_iter=30).fit(D)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-10, atol=1e-12)
    assert a.n_iter_ == b.n_iter_ and abs(a.inertia_ / b.inertia_ - 1) < 1e-10
    np.testing.assert_array_equal(a.predict(A), b.predict(D))
    np.testing.assert_allclose(a.transform(A), b.transform(D), rtol=1e-9)
    parallel = sm.KMeans(4, random_state=0).fit(as_dask_array(A, accept_sparse=True, chunk_rows=500))
    assert parallel.cluster_centers_.shape == (4, 300) and np.isfinite(parallel.inertia_)


def test_ridge_dual_and_cg_equal_scikit_learn(data, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((150, 4000)) + 3.0  # p >> n, shifted
    y = X[:, :5] @ np.arange(1.0, 6.0) + rng.standard_normal(150)
    w = rng.uniform(0.5, 2.0, 150)
    for fit_intercept in (True, False):
        ours = sm.Ridge(alpha=2.0, fit_intercept=fit_intercept).fit(X, y, sample_weight=w)
        ref = SkRidge(alpha=2.0, fit_intercept=fit_intercept).fit(X, y, sample_weight=w)
        assert ours.solver_ == "dual" and _rel(ours.coef_, ref.coef_) < 1e-10
        assert abs(ours.intercept_ - ref.intercept_) < 1e-9
    with DatasetWriter(tmp_path / "wide.zarr", 4000, chunk_rows=40, y_dtype=np.float64) as wr:
        wr.append(X, y)
    stored = sm.Ridge(alpha=2.0).fit(tmp_path / "wide.zarr")  # panels read from the store
    assert _rel(stored.coef_, SkRidge(alpha=2.0).fit(X, y).coef_) < 1e-10
    A = sp.random(2000, 300, density=0.05, format="csr", random_state=5)
    D = A.toarray()
    yr = D[:, :20] @ rng.standard_normal(20) + 1.0
    cg = sm.Ridge(alpha=0.5, tol=1e-12).fit(A, yr)
    exact = SkRidge(alpha=0.5, solver="cholesky").fit(D, yr)
    assert cg.solver_ == "cg" and 0 < cg.n_iter_ < 100
    assert _rel(cg.coef_, exact.coef_) < 1e-9 and abs(cg.intercept_ - exact.intercept_) < 1e-9
    np.testing.assert_allclose(cg.predict(A), exact.predict(D), rtol=1e-8)
    with pytest.raises(TypeError, match="sparse.*TruncatedSVD"):
        sm.LinearRegression().fit(A, yr)


def test_truncated_svd_equals_exact_svd(data):
    A, D, _, _ = data
    ours = sm.TruncatedSVD(6, n_iter=8, random_state=0).fit(A)
    exact = np.linalg.svd(D, compute_uv=False)[:6]
    np.testing.assert_allclose(ours.singular_values_, exact, rtol=1e-9)
    ref = SkTruncatedSVD(6, algorithm="arpack").fit(D)
    np.testing.assert_allclose(np.abs(ours.components_ @ ref.components_.T), np.eye(6), atol=1e-6)
    Z = D @ ours.components_.T
    np.testing.assert_allclose(ours.explained_variance_, Z.var(axis=0), rtol=1e-9)
    np.testing.assert_allclose(ours.explained_variance_ratio_, Z.var(axis=0) / D.var(axis=0).sum(), rtol=1e-9)
    np.testing.assert_allclose(ours.transform(A), Z, rtol=1e-9, atol=1e-9)
    dask_in = as_dask_array(A, accept_sparse=True, chunk_rows=300)
    again = sm.TruncatedSVD(6, n_iter=8, random_state=0).fit(dask_in)  # another chunking: the same fit
    np.testing.assert_allclose(again.singular_values_, ours.singular_values_, rtol=1e-12)
    np.testing.assert_allclose(again.transform(dask_in).compute(), Z, rtol=1e-9, atol=1e-9)


def test_wide_pca_equals_scikit_learn(tmp_path, data):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((120, 20)) @ rng.standard_normal((20, 5000)) + 50.0 + 0.01 * rng.standard_normal(
        (120, 5000))
    ref = SkPCA(n_components=10, svd_solver="full").fit(X)
    with DatasetWriter(tmp_path / "w.zarr", 5000, chunk_rows=25) as w:
        w.append(X)
    for given in (X, tmp_path / "w.zarr"):
        ours = sm.PCA(n_components=10).fit(given)
        assert ours.solver_ == "dual"
        np.testing.assert_allclose(ours.singular_values_, ref.singular_values_, rtol=1e-10)
        np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-10)
        np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-10)
        np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), atol=1e-8)
    A, D, _, _ = data  # sparse input: centred implicitly by the randomized solver, never densified
    sparse = sm.PCA(n_components=4, iterated_power=8, random_state=0).fit(A)
    dense = SkPCA(n_components=4, svd_solver="full").fit(D)
    assert sparse.solver_ == "randomized"
    np.testing.assert_allclose(sparse.singular_values_, dense.singular_values_, rtol=1e-8)
    np.testing.assert_allclose(np.abs(sparse.transform(A)), np.abs(dense.transform(D)), atol=1e-6)
    with pytest.raises(TypeError, match="solver='randomized'"):
        sm.PCA(n_components=2, solver="tsqr").fit(A)


def test_random_projections_equal_scikit_learn(data):
    A, D, _, _ = data
    X = as_dask_array(A, accept_sparse=True, chunk_rows=700)
    s = rp.SparseRandomProjection(n_components=40, random_state=3).fit(X)
    ref = SkSparse(n_components=40, random_state=3).fit(A)
    out = s.transform(X)
    assert isinstance(out._meta, sp.csr_matrix)
    np.testing.assert_allclose(out.compute().toarray(), ref.transform(A).toarray(), rtol=1e-12, atol=1e-14)
    g = rp.GaussianRandomProjection(eps=0.9, random_state=3).fit(X)
    assert g.n_components_ == rp.johnson_lindenstrauss_min_dim(2000, eps=0.9)
    np.testing.assert_allclose(g.transform(X).compute(), SkGaussian(eps=0.9, random_state=3).fit(D).transform(D),
                               rtol=1e-10, atol=1e-12)


def test_feature_selection_scores_equal_scikit_learn(data):
    A, D, y3, yr = data
    X = as_dask_array(A, accept_sparse=True, chunk_rows=300)
    for ours, ref, y in [(fs.f_classif, skfs.f_classif, y3), (fs.chi2, skfs.chi2, y3),
                         (fs.f_regression, skfs.f_regression, yr)]:
        for given in (X, D):
            scores, pvalues = ours(given, y)
            s_ref, p_ref = ref(D, y)
            np.testing.assert_allclose(scores, s_ref, rtol=1e-10)
            np.testing.assert_allclose(pvalues, p_ref, rtol=1e-8, atol=1e-300)
    k = fs.SelectKBest(fs.chi2, k=12).fit(X, y3)
    np.testing.assert_array_equal(k.get_support(), skfs.SelectKBest(skfs.chi2, k=12).fit(D, y3).get_support())
    picked = k.transform(X)
    assert isinstance(picked._meta, sp.csr_matrix) and picked.shape == (2000, 12)
    np.testing.assert_array_equal(picked.compute().toarray(), D[:, k.get_support()])
    v = fs.VarianceThreshold(threshold=0.05).fit(X)
    np.testing.assert_allclose(v.variances_, skfs.VarianceThreshold(0.05).fit(A).variances_, rtol=1e-10)
    with pytest.raises(ValueError, match="non-negative"):
        fs.chi2(-D, y3)


def test_tsne_takes_sparse_input_through_truncated_svd():
    from scaleml_dask.feature_extraction.text import HashingVectorizer
    from scaleml_dask.io.synthetic_text import TextModel

    model = TextModel.make(vocabulary=2000, n_classes=3, topic_words=30, topic_rate=0.3, seed=4)
    docs, y = model.documents(0, 1500)
    X = HashingVectorizer(n_features=2**14).transform(docs)
    ts = sm.TSNE(random_state=0, n_iter=250, early_exaggeration_iter=100)
    Y = ts.fit_transform(as_dask_array(X, accept_sparse=True, chunk_rows=500))
    assert isinstance(ts.pca_, sm.TruncatedSVD) and ts.pca_.n_components == 50 and Y.shape == (1500, 2)
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(10).fit(Y[:1000], y[:1000])
    assert knn.score(Y[1000:], y[1000:]) > 0.8  # documents of a topic land together
