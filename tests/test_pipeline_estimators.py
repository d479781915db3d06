"""Every estimator at the end of a pipeline on a stored table: the preprocessing's statistics in one pass, then
each chunk transformed inside the estimator's own tasks (reads and tasks counted on the cluster), with the same
result as the estimator fitted on the transformed matrix; scikit-learn's predictions for LinearRegression with a
full (rank-deficient) one-hot design; online learners on raw table batches; refusals that name the column."""

from __future__ import annotations

import warnings
from collections import Counter

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from distributed import get_task_stream
from distributed.utils import key_split

import scaleml_dask as sm
from scaleml_dask.compose import make_column_selector, make_column_transformer
from scaleml_dask.io import read
from scaleml_dask.io.synthetic import make_table, table_chunk, table_frame, table_spec
from scaleml_dask.io.table import TableError
from scaleml_dask.linear import RankDeficientWarning
from scaleml_dask.pipeline import make_pipeline
from scaleml_dask.preprocessing import OneHotEncoder, SimpleImputer, StandardScaler

ROWS, CHUNK = 4_000, 1_000
N_CHUNKS = ROWS // CHUNK
SPEC = {"n_numeric": 4, "levels": (5, 12)}
N_FEATURES = 4 + 2 + 2  # numbers, categories, flag, ts


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_table(tmp_path_factory.mktemp("pipe") / "t.zarr", ROWS, chunk_rows=CHUNK, seed=1, **SPEC)


@pytest.fixture(scope="module")
def reg_store(tmp_path_factory):
    return make_table(tmp_path_factory.mktemp("pipe") / "r.zarr", ROWS, chunk_rows=CHUNK, seed=2, task="regression",
                      **SPEC)


def _pre(**onehot):
    numbers = make_column_selector(dtype_include=["numeric", "datetime"])
    return make_column_transformer((make_pipeline(SimpleImputer(), StandardScaler()), numbers),
                                   (OneHotEncoder(handle_unknown="ignore", **onehot),
                                    make_column_selector(dtype_include="categorical")),
                                   remainder="passthrough")


def _worker_reads(client) -> int:
    return sum(sum(c.values()) for c in client.run(lambda: dict(read.reads)).values())


def _run(client, fit):
    before = _worker_reads(client)
    with get_task_stream(client) as ts, warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        out = fit()
    return out, _worker_reads(client) - before, Counter(key_split(t["key"]) for t in ts.data)


def _matrix(pipe, path):
    """The estimator's input, materialised: the fitted preprocessing's output, chunked as the store."""
    Xt = pipe[:-1].transform(path)
    return da.from_array(np.asarray(Xt.compute()), chunks=(CHUNK, -1)), sm.open_dataset(path)["y"].data


@pytest.mark.parametrize("make", [
    lambda: sm.LinearRegression(), lambda: sm.Ridge(alpha=3.0), lambda: sm.PCA(n_components=3),
    lambda: sm.SGDClassifier(mode="local", rounds=2, batch_size=200), lambda: sm.SGDRegressor(mode="sync", epochs=2,
                                                                                            batch_size=200)],
    ids=["linear", "ridge", "pca", "sgd-local", "sgd-sync"])
def test_each_chunk_is_transformed_inside_the_estimators_tasks(client, store, reg_store, make):
    est = make()
    path = reg_store if isinstance(est, (sm.LinearRegression, sm.Ridge, sm.SGDRegressor)) else store
    pipe = make_pipeline(_pre(), est)
    _, reads, tasks = _run(client, lambda: pipe.fit(path))
    kernel = {"PCA": "block_moments", "LinearRegression": "block_moments", "Ridge": "block_moments"}.get(
        type(est).__name__, "local_block" if getattr(est, "mode", "") == "local" else "split_block")
    passes = tasks[kernel] // N_CHUNKS
    assert tasks["stats_block"] == N_CHUNKS  # every statistic of the preprocessing: one pass
    classes = isinstance(est, sm.SGDClassifier)  # its classes found in the statistics pass: no pass of their own
    assert set(tasks) - {"stats_block", kernel, "sync_gradients", "held_out_rows"} == set()
    with_y = type(est).__name__ != "PCA"
    assert reads == (N_CHUNKS * (N_FEATURES + classes) + passes * N_CHUNKS * (N_FEATURES + with_y))  # once a pass
    X, y = _matrix(pipe, path)
    ref = make().fit(X) if not with_y else make().fit(X, y)
    for attr in ("coef_", "intercept_", "components_", "explained_variance_", "mean_"):
        if hasattr(ref, attr):
            np.testing.assert_allclose(getattr(pipe[-1], attr), getattr(ref, attr), rtol=1e-10, atol=1e-12)
    if hasattr(est, "predict"):
        np.testing.assert_allclose(pipe.predict(path).compute(), ref.predict(X).compute(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("params", [
    {"learning_rate": "constant", "penalty": "l2", "alpha": 1e-3},  # lazy regularisation: O(nnz) steps
    {"learning_rate": "invscaling", "penalty": None, "validation_fraction": 0.1},
    {"learning_rate": "adagrad", "penalty": "l1", "alpha": 1e-4}], ids=["constant-l2", "invscaling-val", "adagrad-l1"])
def test_sgd_local_folds_the_preprocessing_into_its_kernel(store, monkeypatch, params):
    """Local SGD takes each stored chunk as its parts (imputed and scaled numbers, one-hot codes) and makes the rows
    inside the kernel (``local_kernel_table``): equal to SGD on the chunks' CSR blocks to 1e-10, for every rule."""
    import dask
    import scipy.sparse as sp

    from scaleml_dask.sgd import _sparse

    calls = Counter()

    def counted(name):
        kernel = getattr(_sparse, name)

        def wrapper(*args):
            calls[name] += 1
            return kernel(*args)
        return wrapper

    for name in ("local_kernel_table", "local_kernel_csr"):
        monkeypatch.setattr(_sparse, name, counted(name))
    make = lambda: sm.SGDClassifier(mode="local", rounds=2, batch_size=150, eta0=0.05, random_state=3,  # noqa: E731
                                    **params)
    with dask.config.set(scheduler="sync"):  # in this process, so the kernels' calls are counted
        pipe = make_pipeline(_pre(), make()).fit(store)
        assert calls == {"local_kernel_table": 2 * N_CHUNKS}  # every chunk of both rounds, no CSR block
        Xt = pipe[:-1].transform(store)  # the same rows as CSR blocks: the unfolded path
        Xt = Xt.map_blocks(sp.csr_matrix, meta=sp.csr_matrix((0, Xt.shape[1])))
        ref = make().fit(Xt, sm.open_dataset(store)["y"].data)
    assert calls["local_kernel_csr"] == 2 * N_CHUNKS
    np.testing.assert_allclose(pipe[-1].coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pipe[-1].intercept_, ref.intercept_, rtol=1e-10, atol=1e-12)
    assert np.abs(ref.coef_).max() > 0.01  # it learned something


def test_linear_regression_on_full_one_hot_predicts_as_scikit_learn(store):
    """drop=None with an intercept: X is exactly rank deficient; the minimum-norm solution, as scikit-learn."""
    from sklearn.compose import make_column_transformer as sk_ct
    from sklearn.linear_model import LinearRegression as SkLinearRegression
    from sklearn.pipeline import make_pipeline as sk_pipe
    from sklearn.preprocessing import OneHotEncoder as SkOneHot
    from sklearn.preprocessing import StandardScaler as SkScaler

    spec = table_spec(1, task="regression", **SPEC)
    frames = [table_frame(table_chunk(1, i, CHUNK, spec=spec)[0], spec) for i in range(3)]
    train, test = pd.concat(frames[:2], ignore_index=True), frames[2]
    train, test = train.dropna(), test.dropna()
    nums, cats = ["x00", "x01", "x02", "x03"], ["cat0", "cat1"]
    dense = {"handle_unknown": "ignore", "sparse_output": False}  # scikit-learn solves sparse input iteratively
    ours = make_pipeline(make_column_transformer((StandardScaler(), nums), (OneHotEncoder(**dense), cats)),
                         sm.LinearRegression())
    with pytest.warns(RankDeficientWarning, match=r"rank 19 of 21\)"):
        ours.fit(train, train["y"])
    ref = sk_pipe(sk_ct((SkScaler(), nums), (SkOneHot(**dense), cats)), SkLinearRegression())
    ref.fit(train, train["y"])
    for frame in (train, test):
        np.testing.assert_allclose(ours.predict(frame), ref.predict(frame), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours[-1].coef_, ref[-1].coef_, rtol=1e-8, atol=1e-9)  # the same minimum-norm one


def test_kmeans_and_tsne_at_the_end(client, store):
    pipe = make_pipeline(_pre(sparse_output=False), sm.KMeans(n_clusters=3, random_state=0))
    pipe.fit(store)
    X, _ = _matrix(pipe, store)
    ref = sm.KMeans(n_clusters=3, random_state=0).fit(X)
    np.testing.assert_allclose(pipe[-1].cluster_centers_, ref.cluster_centers_, rtol=1e-10)
    np.testing.assert_array_equal(pipe.predict(store).compute(), ref.predict(X).compute())
    tsne = make_pipeline(_pre(), sm.TSNE(perplexity=10, n_iter=60, early_exaggeration_iter=20, random_state=0))
    Y = tsne.fit_transform(store)
    ref = sm.TSNE(perplexity=10, n_iter=60, early_exaggeration_iter=20, random_state=0).fit_transform(X)
    np.testing.assert_allclose(Y, ref, rtol=1e-8, atol=1e-8)


def test_pca_after_the_preprocessing_two_passes_and_its_mean_in_its_own(client, store):
    """The scaler's statistics in the preprocessing pass; PCA's mean and R factor in PCA's one pass: two passes
    over the data in all, nothing computed twice."""
    pipe = make_pipeline(_pre(), sm.PCA(n_components=2))
    _, reads, tasks = _run(client, lambda: pipe.fit(store))
    assert tasks == {"stats_block": N_CHUNKS, "block_moments": N_CHUNKS}
    assert reads == 2 * N_CHUNKS * N_FEATURES
    np.testing.assert_allclose(pipe[-1].mean_[:5], 0.0, atol=1e-12)  # the scaled columns, centred by the scaler


def test_sgd_async_and_a_categorical_target(client, store, tmp_path):
    pipe = make_pipeline(_pre(), sm.SGDClassifier(mode="async", epochs=2, batch_size=200, eta0=0.05)).fit(store)
    assert pipe.score(store) > 0.65  # Bayes ~0.77 on these rows
    spec = table_spec(1, **SPEC)
    frame = table_frame(table_chunk(1, 0, 2_000, spec=spec)[0], spec)
    labels = np.where(frame.pop("y") == 1, "yes", "no")
    clf = make_pipeline(_pre(), sm.SGDClassifier(mode="local", rounds=3, batch_size=100)).fit(frame, labels)
    assert clf.classes_.tolist() == ["no", "yes"]
    assert set(clf.predict(frame.head(50))) <= {"no", "yes"} and clf.score(frame, labels) > 0.65


def test_online_learners_on_raw_table_batches(store):
    """``learn_many`` on raw DataFrame batches (what iter_batches gives for a table, and a served request holds)
    equals learning from the transformed matrix; ``fit`` streams every row once through ``learn_many``."""
    pipe = make_pipeline(_pre(), sm.online.LogisticRegression())
    pipe[:-1].fit(store)
    ref = sm.online.LogisticRegression()
    for batch, yb in sm.online.iter_batches(sm.open_dataset(store), 500):
        assert isinstance(batch, pd.DataFrame) and batch["cat0"].dtype == "category"
        pipe.learn_many(batch, yb)
        ref.learn_many(pipe[:-1].transform(batch), yb)
    np.testing.assert_allclose(pipe[-1].coef_, ref.coef_, rtol=1e-12)
    streamed = make_pipeline(_pre(), sm.online.LogisticRegression()).fit(store)
    assert streamed[-1].n_seen_ == ROWS
    by_chunk = sm.online.LogisticRegression()
    for batch, yb in sm.online.iter_batches(sm.open_dataset(store), CHUNK):
        by_chunk.learn_many(streamed[:-1].transform(batch), yb)
    np.testing.assert_allclose(streamed[-1].coef_, by_chunk.coef_, rtol=1e-12)
    km = make_pipeline(_pre(), sm.online.MiniBatchKMeans(n_clusters=3, random_state=0)).fit(store)
    assert km.predict_many(batch).shape == (len(batch),)


def test_refusals_name_the_column(store, monkeypatch):
    with pytest.raises(TableError, match=r"KMeans: column 'x00' has \d+ missing values"):
        make_pipeline(sm.KMeans(2)).fit(store)
    with pytest.raises(TableError, match="column 'cat0' is categorical"):
        make_pipeline(SimpleImputer(), sm.KMeans(2)).fit(sm.open_dataset(store)[["cat0", "x00", "y"]]).predict(store)
    from scaleml_dask.preprocessing import _base

    monkeypatch.setattr(_base, "MAX_DENSE_BLOCK_BYTES", 50_000)
    with pytest.raises(ValueError, match=r"the output of the preprocessing of LinearRegression is 23 columns wide: a "
                                         r"dense chunk of 1,000 rows would take 0.2 MiB \(limit 0.0 MiB\)"):
        make_pipeline(_pre(), sm.LinearRegression()).fit(store)
