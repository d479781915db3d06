"""KMeans against planted clusters and scikit-learn's Lloyd; chunking and cluster invariance; empty clusters;
k-means|| candidates; bad input; a worker killed mid-fit."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.utils._param_validation import InvalidParameterError

import scaleml_dask as sm
from scaleml_dask.io.synthetic import make_mixture
from scaleml_dask.kmeans import KMeans


def _blobs(rng, n=3000, d=5, k=6, spread=3.0):
    return rng.normal(size=(n, d)) * spread + 3.0, k


def test_planted_clusters_recovered_from_a_zarr_store(client, tmp_path):
    path = make_mixture(tmp_path / "m.zarr", 20_000, 8, 10, chunk_rows=3_000, center_std=10.0, seed=2)
    ds = sm.open_dataset(path)
    km = KMeans(10, random_state=0).fit(path)
    truth = ds.y.values
    assert isinstance(km.labels_, da.Array)
    assert adjusted_rand_score(truth, km.labels_.compute()) >= 0.99
    planted = np.asarray(ds.attrs["centers"])
    dist = np.sqrt(((km.cluster_centers_[:, None, :] - planted[None]) ** 2).sum(-1))
    assert np.all(dist.min(axis=0) < 0.1)  # every planted centre found, to about 3 / sqrt(2000)
    exact = float(((ds.X.values - km.cluster_centers_[km.labels_.compute()]) ** 2).sum())
    assert km.inertia_ == pytest.approx(exact, rel=1e-10)  # the true inertia of the final centres
    assert km.score(ds.X) == pytest.approx(-exact, rel=1e-10)
    assert km.n_iter_ == len(km.inertia_history_) and km.n_features_in_ == 8


@pytest.mark.parametrize("weighted", [False, True])
def test_equal_to_sklearn_lloyd_from_the_same_centres(rng, weighted):
    X, k = _blobs(rng)
    w = rng.integers(1, 4, len(X)).astype(np.float64) if weighted else None
    C0 = X[rng.choice(len(X), k, replace=False)]
    ours = KMeans(k, init=C0, tol=0.0).fit(da.from_array(X, chunks=700), sample_weight=w)
    ref = SkKMeans(k, init=C0, n_init=1, algorithm="lloyd", tol=0.0).fit(X, sample_weight=w)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=0, atol=1e-10)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)
    assert ours.n_iter_ == ref.n_iter_ > 5
    np.testing.assert_array_equal(ours.labels_.compute(), ref.labels_)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-10, atol=1e-10)
    assert np.all(np.diff(ours.inertia_history_) <= 1e-9 * ours.inertia_)  # Lloyd never increases the cost
    if weighted:  # integer weights are repetitions
        repeated = KMeans(k, init=C0, tol=0.0).fit(np.repeat(X, w.astype(int), axis=0))
        np.testing.assert_allclose(repeated.cluster_centers_, ours.cluster_centers_, rtol=0, atol=1e-10)
        assert repeated.inertia_ == pytest.approx(ours.inertia_, rel=1e-10)


def test_empty_cluster_relocated_as_sklearn(rng):
    X, k = _blobs(rng)
    C0 = np.vstack([X[:k - 1], np.full(X.shape[1], 100.0)])  # the last centre attracts no point
    ours = KMeans(k, init=C0, tol=0.0).fit(X)
    ref = SkKMeans(k, init=C0, n_init=1, algorithm="lloyd", tol=0.0).fit(X)
    assert isinstance(ours.labels_, np.ndarray) and len(np.unique(ours.labels_)) == k
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=0, atol=1e-10)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)


def test_same_answer_for_any_chunking_and_on_the_cluster(client, rng):
    X = np.vstack([rng.normal(c, 1.0, size=(700, 4)) for c in rng.normal(0, 4, size=(5, 4))])
    C0 = X[rng.choice(len(X), 5, replace=False)]
    fits = [KMeans(5, init=C0, tol=0.0, max_iter=8).fit(da.from_array(X, chunks=c)) for c in (250, 1000, len(X))]
    for f in fits[1:]:
        np.testing.assert_allclose(f.cluster_centers_, fits[0].cluster_centers_, rtol=0, atol=1e-12)
        assert f.inertia_ == pytest.approx(fits[0].inertia_, rel=1e-12)
    seeded = da.from_array(X, chunks=500)
    on_cluster = KMeans(5, random_state=3).fit(seeded)  # held in cluster memory for the fit
    numpy_on_cluster = KMeans(5, random_state=3).fit(X)
    import dask

    with dask.config.set(scheduler="threads"):
        threads = KMeans(5, random_state=3).fit(seeded)
        numpy_threads = KMeans(5, random_state=3).fit(X)
    np.testing.assert_array_equal(on_cluster.cluster_centers_, threads.cluster_centers_)
    assert on_cluster.inertia_ == threads.inertia_
    np.testing.assert_array_equal(numpy_on_cluster.cluster_centers_, numpy_threads.cluster_centers_)
    np.testing.assert_array_equal(numpy_on_cluster.labels_, numpy_threads.labels_)


def test_kmeans_parallel_picks_one_initial_centre_per_planted_cluster(rng):
    planted = np.array([[20.0 * i, 20.0 * (i % 3)] for i in range(8)])
    X = np.vstack([rng.normal(c, 0.5, size=(400, 2)) for c in planted])
    rng.shuffle(X)
    for seed in range(5):
        init = KMeans(8, random_state=seed, max_iter=1).fit(da.from_array(X, chunks=500)).cluster_centers_
        owner = np.argmin(((init[:, None, :] - planted[None]) ** 2).sum(-1), axis=1)
        assert sorted(owner.tolist()) == list(range(8)), seed  # max_iter=1 keeps the initial centres
        pp = KMeans(8, init="k-means++", random_state=seed, n_init=2).fit(da.from_array(X, chunks=500))
        np.testing.assert_allclose(np.sort(pp.cluster_centers_[:, 0]), np.sort(planted[:, 0]), atol=0.2)


@pytest.mark.parametrize("seed_rows", [None, 500])
def test_kmeans_parallel_reads_the_data_once_and_finds_a_small_cluster(rng, monkeypatch, seed_rows):
    """The whole initialisation is one pass (one ``candidate_block`` task per chunk, nothing else reads the
    rows), d²-sampling within each chunk — on all its rows, or on a sample of ``SEED_ROWS`` of them — still
    gives a cluster of 0.4 % of the rows its own initial centre, and the fit is as good as the best of ten
    scikit-learn k-means++ restarts."""
    from dask.callbacks import Callback
    from dask.utils import key_split

    if seed_rows is not None:
        monkeypatch.setattr(sm._kmeans_kernels, "SEED_ROWS", seed_rows)

    planted = np.array([[12.0 * i, 0.0, 0.0] for i in range(6)] + [[30.0, 40.0, 40.0]])
    sizes = [4000] * 6 + [100]  # the last cluster: 100 of 24,100 rows
    X = np.vstack([rng.normal(c, 1.0, size=(m, 3)) for c, m in zip(planted, sizes)])
    X = X[rng.permutation(len(X))]
    tasks: list[str] = []

    class Count(Callback):
        def _pretask(self, key, dsk, state):
            tasks.append(key_split(key))

    with Count():
        km = KMeans(7, random_state=0, max_iter=1).fit(da.from_array(X, chunks=3000))  # 9 chunks
    assert tasks.count("candidate_block") == 9 and tasks.count("lloyd_block") == 9
    owner = np.argmin(((km.cluster_centers_[:, None, :] - planted[None]) ** 2).sum(-1), axis=1)
    assert sorted(owner.tolist()) == list(range(7))  # max_iter=1: these are the initial centres
    ref = SkKMeans(7, n_init=10, random_state=0).fit(X)
    full = KMeans(7, random_state=0).fit(da.from_array(X, chunks=3000))
    assert full.inertia_ <= ref.inertia_ * (1 + 1e-9)


def test_bad_input_is_named():
    X = np.random.default_rng(0).normal(size=(100, 3))
    Xn = X.copy()
    Xn[57, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN in chunk 2 \(rows 50-74\), first at row 57, column 2"):
        KMeans(3, random_state=0).fit(da.from_array(Xn, chunks=25))
    with pytest.raises(ValueError, match=r"n_samples=100 should be >= n_clusters=101"):
        KMeans(101).fit(X)
    for k in (0, -2):
        with pytest.raises(InvalidParameterError, match=r"'n_clusters' parameter of KMeans must be an int in the "
                                                        r"range \[1, inf\)"):
            KMeans(k).fit(X)
    with pytest.raises(ValueError, match=r"init has shape \(2, 3\), but n_clusters=3"):
        KMeans(3, init=X[:2]).fit(X)
    with pytest.raises(ValueError, match=r"sample_weight has negative values in chunk 0"):
        KMeans(3, random_state=0).fit(X, sample_weight=-np.ones(100))
    with pytest.raises(ValueError, match=r"X has 2 features, but KMeans is expecting 3 features"):
        KMeans(3, random_state=0).fit(X).predict(X[:, :2])


@pytest.mark.slow
def test_worker_killed_mid_fit_gives_same_centres(process_client, tmp_path):
    from faults import undisturbed_and_killed

    path = make_mixture(tmp_path / "k.zarr", 24_000, 6, 5, chunk_rows=3_000, center_std=4.0, seed=4)

    def fit():
        return KMeans(5, random_state=1).fit(sm.open_dataset(path).X)

    # killed in the k-means|| pass: the lost chunks' candidates are recomputed from lineage
    ref, killed, record = undisturbed_and_killed(process_client, fit, "candidate_block", tmp_path / "killed", after=3)
    np.testing.assert_array_equal(killed.cluster_centers_, ref.cluster_centers_)
    assert killed.inertia_ == ref.inertia_ and killed.n_iter_ == ref.n_iter_


def test_streamed_from_the_store_equals_held_and_reads_inside_the_tasks(client, tmp_path, monkeypatch):
    from distributed import get_task_stream

    path = make_mixture(tmp_path / "s.zarr", 12_000, 5, 4, chunk_rows=2_000, center_std=6.0, seed=3)
    held = KMeans(4, random_state=2).fit(path)
    monkeypatch.setattr(sm.kmeans, "PERSIST_FRACTION", 0.0)  # as for data larger than the cluster's memory
    with get_task_stream() as ts:
        streamed = KMeans(4, random_state=2).fit(path)
    np.testing.assert_array_equal(streamed.cluster_centers_, held.cluster_centers_)
    assert streamed.inertia_ == held.inertia_ and streamed.n_iter_ == held.n_iter_
    prefixes = {str(t["key"]).strip("('").split("-")[0] for t in ts.data}
    assert {"candidate_block", "lloyd_block"} <= prefixes
    assert not any(p.startswith("read") for p in prefixes), prefixes  # every chunk read in its round's task
