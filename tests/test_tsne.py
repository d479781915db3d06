"""TSNE: calibration, sparse P, exact kNN, exact and FFT gradients against brute force, quality against
openTSNE, memory linear in n, reproducibility, callbacks, zarr in/out, in-memory vs dask path, clear errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from scaleml_dask.tsne import TSNE
from scaleml_dask.tsne.affinity import conditional_probabilities, joint_probabilities
from scaleml_dask.tsne.neighbors import nearest_neighbors
from scaleml_dask.tsne.optimize import (
    EXACT_REPULSION_MAX_SAMPLES,
    GridParams,
    _FFTRepulsion,
    choose_gradient_method,
    gradient,
    kl_divergence,
)


def _mixture(n, d, n_clusters, sep, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, sep, (n_clusters, d))
    y = rng.integers(0, n_clusters, n)
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def _knn(A, queries, k=10):
    return NearestNeighbors(n_neighbors=k + 1).fit(A).kneighbors(A[queries], return_distance=False)[:, 1:]


def _recall_and_accuracy(X, Y, y, n_queries=1000, seed=0):
    q = np.random.default_rng(seed).choice(len(X), n_queries, replace=False)
    a, b = _knn(X, q), _knn(Y, q)
    recall = np.mean([len(np.intersect1d(a[i], b[i])) for i in range(len(q))]) / 10
    votes = np.array([np.bincount(y[row]).argmax() for row in b])
    return recall, float(np.mean(votes == y[q]))


def _dense(P, n):
    return sp.csr_matrix((P[2].astype(np.float64), P[1], P[0]), shape=(n, n)).toarray()


@pytest.mark.parametrize("perplexity", [2.0, 10.0, 30.0])
def test_calibrated_rows_reach_the_perplexity(perplexity, rng):
    k = int(3 * perplexity)
    distances = np.sort(rng.gamma(2.0, 3.0, size=(500, k)), axis=1).astype(np.float32)
    p = conditional_probabilities(distances, perplexity).astype(np.float64)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
    assert np.abs(np.exp(entropy) - perplexity).max() < 1e-3
    assert np.all(np.diff(p, axis=1) <= 1e-7)  # nearer neighbours are more likely


@pytest.mark.parametrize("k", [15, 127, 130])  # positions in int8 up to k = 127, int16 above
@pytest.mark.slow
def test_joint_probabilities_are_the_symmetrised_conditionals(rng, k):
    X = rng.normal(size=(300, 4)).astype(np.float32)
    idx, dist = nearest_neighbors(X, k, method="exact")
    p = conditional_probabilities(dist, k / 3)
    P = joint_probabilities(idx, p)
    C = np.zeros((300, 300))
    C[np.repeat(np.arange(300), k), idx.ravel()] = p.ravel()
    expected = (C + C.T) / 600
    dense = _dense(P, 300)
    np.testing.assert_allclose(dense, expected, rtol=1e-6, atol=1e-12)
    assert P[0][-1] == np.count_nonzero(expected)  # exact nonzero count: no duplicates, no zeros
    assert abs(dense.sum() - 1.0) < 1e-6


def test_affinities_in_place_equal_affinities_in_copies(rng):
    """``overwrite_input`` (what the estimator uses, to save (n, k) arrays at the peak) changes nothing but
    the inputs."""
    X = rng.normal(size=(400, 5)).astype(np.float32)
    idx, dist = nearest_neighbors(X, 20, method="exact")
    idx0, dist0 = idx.copy(), dist.copy()
    p = conditional_probabilities(dist, 6.0)
    P = joint_probabilities(idx, p)
    np.testing.assert_array_equal(idx, idx0)  # copies: inputs untouched
    np.testing.assert_array_equal(dist, dist0)
    p_inplace = conditional_probabilities(dist, 6.0, overwrite_input=True)
    assert p_inplace is dist
    np.testing.assert_array_equal(p_inplace, p)
    P_inplace = joint_probabilities(idx, p_inplace, overwrite_input=True)
    for a, b in zip(P, P_inplace):
        np.testing.assert_array_equal(a, b)
    assert np.all(np.diff(idx, axis=1) > 0)  # the neighbour lists were sorted in place


def test_exact_neighbors_on_the_cluster_and_in_process_match_sklearn(client, rng, monkeypatch):
    from scaleml_dask.tsne import neighbors

    monkeypatch.setattr(neighbors, "_BLOCK_BYTES", 4 * 700 * 200)  # blocks of 200 rows: 4 tasks
    X = rng.normal(size=(700, 6)).astype(np.float32)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=13).fit(X).kneighbors(X)
    for local in (False, True):
        idx, dist = nearest_neighbors(X, 12, method="exact", local=local)
        np.testing.assert_array_equal(idx, ref_idx[:, 1:])
        np.testing.assert_allclose(dist, ref_dist[:, 1:], rtol=1e-5)


def test_drop_self_from_approximate_graphs():
    from scaleml_dask.tsne.neighbors import _drop_self

    graph = np.array([[0, 2, 1], [3, 1, 0], [1, 2, 3], [0, 1, 2]])  # row 3 misses itself
    np.testing.assert_array_equal(_drop_self(graph, 2), [[2, 1], [3, 0], [1, 3], [0, 1]])


@pytest.mark.slow
def test_recall_estimate_of_approximate_neighbors(rng):
    from scaleml_dask.tsne.neighbors import estimate_recall

    X, _ = _mixture(3000, 8, 5, 6.0)
    exact, _ = nearest_neighbors(X, 15, method="exact")
    assert estimate_recall(X, exact, n_queries=300, random_state=0) == 1.0
    damaged = exact.copy()
    damaged[:, 10:] = rng.integers(0, 3000, (3000, 5))  # a third of each row replaced by random rows
    assert abs(estimate_recall(X, damaged, n_queries=300, random_state=0) - 10 / 15) < 0.01
    approx, _ = nearest_neighbors(X, 15, method="approx", random_state=0)
    true_recall = np.mean([np.intersect1d(a, b).size for a, b in zip(exact, approx)]) / 15
    assert true_recall > 0.95
    assert abs(estimate_recall(X, approx, n_queries=600, random_state=1) - true_recall) < 0.02


@pytest.mark.slow
def test_locality_reorder_keeps_the_input_order_and_the_quality(mixture_2000, monkeypatch):
    from scaleml_dask.tsne import _tsne

    X, y = mixture_2000
    seen = []
    kwargs = dict(perplexity=15, n_iter=150, early_exaggeration_iter=100, random_state=0,
                  callbacks=[lambda it, kl, Y: seen.append(Y.copy()) and False], callbacks_every_iters=50)
    plain = TSNE(**kwargs).fit(X)
    monkeypatch.setattr(_tsne, "LOCALITY_MIN_SAMPLES", 1000)
    seen.clear()
    sorted_rows = TSNE(**kwargs).fit(X)
    assert "reorder" in sorted_rows.timings_ and "reorder" not in plain.timings_
    for fitted in (plain, sorted_rows):
        assert _recall_and_accuracy(X, fitted.embedding_, y)[1] >= 0.98
    # rows come back in the input's order, for the result and for callbacks
    for axis in (0, 1):  # the last callback saw the final embedding but for one step and the centring
        assert np.corrcoef(seen[-1][:, axis], sorted_rows.embedding_[:, axis])[0, 1] > 0.999
    # as good an optimum (the layout itself may differ: the start's jitter lands on other rows)
    assert abs(sorted_rows.kl_divergence_ - plain.kl_divergence_) < 0.02 * plain.kl_divergence_


def _exact_tsne_gradient(P, Y):
    diff = Y[:, None, :] - Y[None, :, :]
    W = 1.0 / (1.0 + (diff ** 2).sum(-1))
    np.fill_diagonal(W, 0.0)
    Q = W / W.sum()
    grad = 4.0 * (((P - Q) * W)[:, :, None] * diff).sum(axis=1)
    mask = P > 0
    return grad, W.sum(), float((P[mask] * np.log(P[mask] / Q[mask])).sum())


@pytest.fixture(scope="module")
def p_300():
    X, _ = _mixture(300, 8, 3, 4.0)
    idx, dist = nearest_neighbors(X, 30, method="exact")
    return joint_probabilities(idx, conditional_probabilities(dist, 10.0))


@pytest.mark.slow
def test_fft_gradient_matches_brute_force_exact_gradient(rng, p_300):
    P, Pd = p_300, _dense(p_300, 300)
    for scale, tol in [(1e-3, 1e-5), (1.0, 1e-3), (5.0, 2e-2)]:
        Y = rng.normal(size=(300, 2)) * scale
        exact, Z, kl = _exact_tsne_gradient(Pd, Y)
        g, z = gradient(Y, P, method="fft")
        assert np.linalg.norm(4 * g - exact) / np.linalg.norm(exact) < tol
        assert abs(z - Z) / Z < tol
        assert abs(kl_divergence(Y, P, method="fft") - kl) < 10 * tol * kl
    # a finer grid converges to the exact gradient
    g_fine, _ = gradient(Y, P, method="fft", params=GridParams(ints_in_interval=0.2))
    assert np.linalg.norm(4 * g_fine - exact) / np.linalg.norm(exact) < 2e-3
    # exaggeration scales the (exact) attraction only
    diff = Y[:, None, :] - Y[None, :, :]
    attraction = ((Pd / (1.0 + (diff ** 2).sum(-1)))[:, :, None] * diff).sum(axis=1)
    g_ex, _ = gradient(Y, P, exaggeration=4.0, method="fft")
    np.testing.assert_allclose(g_ex - g, 3.0 * attraction, rtol=1e-6, atol=1e-12)


def test_exact_gradient_and_kl_match_brute_force_to_rounding(rng, p_300):
    P, Pd = p_300, _dense(p_300, 300)
    for scale in (1e-4, 1.0, 5.0, 50.0):
        Y = rng.normal(size=(300, 2)) * scale + 7.0  # off-centre: both terms are translation invariant
        exact, Z, kl = _exact_tsne_gradient(Pd, Y)
        g, z = gradient(Y, P, method="exact")
        assert np.linalg.norm(4 * g - exact) / np.linalg.norm(exact) < 1e-10
        assert abs(z - Z) / Z < 1e-10
        assert abs(kl_divergence(Y, P, method="exact") - kl) < 1e-10 * kl
        g_ex, _ = gradient(Y, P, exaggeration=12.0, method="exact")
        diff = Y[:, None, :] - Y[None, :, :]
        attraction = ((Pd / (1.0 + (diff ** 2).sum(-1)))[:, :, None] * diff).sum(axis=1)
        np.testing.assert_allclose(g_ex - g, 11.0 * attraction, rtol=1e-9, atol=1e-14)


def test_exact_and_fft_repulsion_agree_to_the_interpolation_accuracy(rng, p_300):
    fine = GridParams(ints_in_interval=0.5, max_fine_intervals=1000)  # 0.5-wide boxes at every span
    for scale, params in [(1.0, GridParams()), (5.0, GridParams()), (20.0, fine)]:
        Y = rng.normal(size=(300, 2)) * scale
        repulsion, z_exact = gradient(Y, p_300, exaggeration=0.0, method="exact")
        g_exact, _ = gradient(Y, p_300, method="exact")
        g_fft, z_fft = gradient(Y, p_300, method="fft", params=params)
        assert np.linalg.norm(g_fft - g_exact) / np.linalg.norm(repulsion) < 1e-2, scale
        assert abs(z_fft - z_exact) / z_exact < 1e-2


def test_grid_boxes_are_fine_for_small_embeddings_and_grow_as_opentsne_for_large_ones():
    """Boxes 0.5 wide up to 200 per side; then widening to openTSNE's 1, so the grid's side grows as the
    span (not twice the span) and its area, the FFT's cost and memory, 4x slower than with fine boxes."""
    grid = _FFTRepulsion(GridParams(ints_in_interval=0.5), n_threads=1)
    layouts = {span: grid.layout(-span / 2, span / 2)[1:] for span in (10.0, 60.0, 99.0, 150.0, 240.0, 600.0)}
    assert layouts[10.0][1] == 50 and layouts[10.0][0] < 0.5  # min_num_intervals: narrower boxes
    assert layouts[60.0][0] == 0.5 and layouts[60.0][1] in (120, 121)  # ints_in_interval
    assert layouts[99.0][0] == 0.5 and layouts[99.0][1] in (198, 199)
    width, n_boxes = layouts[150.0]
    assert 0.5 < width <= 1.0 and 150 <= n_boxes * width < 152 and n_boxes <= 200
    assert layouts[240.0][0] == 1.0 and layouts[240.0][1] in (240, 241)  # openTSNE: span / 1
    assert layouts[600.0][0] == 1.0 and layouts[600.0][1] in (600, 601)
    assert all(n_boxes * width >= span for span, (width, n_boxes) in layouts.items())  # covers the span


def test_auto_gradient_method_is_exact_for_small_n(rng):
    assert choose_gradient_method("auto", EXACT_REPULSION_MAX_SAMPLES) == "exact"
    assert choose_gradient_method("auto", EXACT_REPULSION_MAX_SAMPLES + 1) == "fft"
    assert choose_gradient_method("fft", 10) == "fft"
    X = rng.normal(size=(200, 4))
    fit = dict(perplexity=10, n_iter=20, early_exaggeration_iter=20, random_state=0)
    assert TSNE(**fit).fit(X).negative_gradient_method_ == "exact"
    assert TSNE(negative_gradient_method="fft", **fit).fit(X).negative_gradient_method_ == "fft"


@pytest.fixture(scope="module")
def mixture_2000():
    return _mixture(2000, 10, 5, 5.0, seed=1)


@pytest.fixture(scope="module")
def fitted_2000(mixture_2000):
    X, y = mixture_2000
    model = TSNE(perplexity=30, random_state=0, n_jobs=2)
    return model, model.fit_transform(X, y)


@pytest.mark.slow
def test_clusters_stay_separated_and_recall_matches_opentsne(mixture_2000, fitted_2000):
    openTSNE = pytest.importorskip("openTSNE")
    X, y = mixture_2000
    model, Y = fitted_2000
    assert Y.shape == (2000, 2) and isinstance(Y, np.ndarray)
    assert model.n_iter_ == 750 and model.n_neighbors_ == 90 and model.neighbors_method_ == "exact"
    assert model.negative_gradient_method_ == "exact"
    recall, accuracy = _recall_and_accuracy(X, Y, y)
    Y_ref = np.asarray(openTSNE.TSNE(perplexity=30, n_jobs=2, random_state=0).fit(X))
    recall_ref, accuracy_ref = _recall_and_accuracy(X, Y_ref, y)
    assert accuracy >= 0.98
    assert recall >= recall_ref - 0.03, (recall, recall_ref)
    # same objective reached: KL within 2% of openTSNE's on the same P
    from openTSNE.affinity import PerplexityBasedNN
    P_ref = PerplexityBasedNN(X, perplexity=30, method="exact", n_jobs=1).P.tocsr()
    kl_ref = kl_divergence(Y_ref, (P_ref.indptr.astype(np.int64), P_ref.indices.astype(np.int32),
                                   P_ref.data.astype(np.float32)))
    assert model.kl_divergence_ < 1.02 * kl_ref, (model.kl_divergence_, kl_ref)


def test_many_exact_duplicates_give_a_finite_reproducible_embedding_with_copies_together():
    """Rows repeated more often than the k = 3·perplexity neighbours (as in statsmodels' randhie: up to 90
    copies of a row): distances of zero, rows whose neighbours are all copies, P with blocks that no edge
    leaves. The embedding stays finite, each row's copies land together, and it is equal given random_state."""
    rng = np.random.default_rng(5)
    distinct = rng.normal(0.0, 3.0, (60, 4))
    copies = rng.integers(1, 40, 60)
    copies[:6] = 45  # more copies than k + 1 = 31: all neighbours at distance 0
    group = np.repeat(np.arange(60), copies)
    X = distinct[group]
    fit = dict(perplexity=10, n_iter=250, random_state=4)
    Y = TSNE(**fit).fit_transform(X)
    assert np.isfinite(Y).all()
    centres = np.array([Y[group == g].mean(axis=0) for g in range(60)])
    spread = np.array([np.linalg.norm(Y[group == g] - centres[g], axis=1).max() for g in range(60)])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2) + np.diag(np.full(60, np.inf))
    assert np.median(spread) < 0.25 * np.median(gaps.min(axis=1)), (np.median(spread), np.median(gaps))
    np.testing.assert_array_equal(Y, TSNE(**fit).fit_transform(X))


def test_digits_keep_their_label_accuracy():
    """The real data of the benchmark (benchmarks/README.md, "t-SNE"): scikit-learn's digits, 10-NN label
    accuracy in the embedding 0.9866 there (openTSNE 0.9878); bound with a margin for other BLAS builds."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    Y = TSNE(perplexity=30, random_state=0).fit_transform(X.astype(np.float32))
    _, accuracy = _recall_and_accuracy(X, Y, y, n_queries=len(X))
    assert accuracy >= 0.975, accuracy


def test_random_state_makes_it_reproducible(mixture_2000):
    X, _ = mixture_2000
    a = TSNE(perplexity=10, n_iter=50, early_exaggeration_iter=50, random_state=3).fit_transform(X[:600])
    b = TSNE(perplexity=10, n_iter=50, early_exaggeration_iter=50, random_state=3).fit_transform(X[:600])
    np.testing.assert_array_equal(a, b)


def test_callback_stops_early_and_verbose_logs_kl(mixture_2000, caplog):
    X, _ = mixture_2000
    seen = []

    def stop_at_100(iteration, kl, embedding):
        seen.append((iteration, kl, embedding.shape))
        return iteration >= 100

    with caplog.at_level(logging.INFO, logger="scaleml_dask.tsne"):
        model = TSNE(perplexity=10, callbacks=[stop_at_100], verbose=True, random_state=0).fit(X[:500])
    assert [s[0] for s in seen] == [50, 100] and seen[0][2] == (500, 2)
    assert model.n_iter_ == 100 and seen[1][1] < seen[0][1]
    assert model.embedding_.shape == (500, 2)
    assert sum("KL" in r.getMessage() for r in caplog.records) >= 2


@pytest.mark.slow
def test_memory_stays_linear_in_n(tmp_path):
    """Peak RSS growth of a 40,000-point fit stays under c·n·k; an n×n float32 array alone is 6.4 GB."""
    script = tmp_path / "mem.py"
    script.write_text(
        "import json, resource, numpy as np\n"
        "from scaleml_dask.tsne import TSNE\n"
        "rng = np.random.default_rng(0)\n"
        "X = (rng.normal(0, 4, (10, 20))[rng.integers(0, 10, 40000)] + rng.normal(size=(40000, 20)))"
        ".astype(np.float32)\n"
        "TSNE(perplexity=10, n_iter=20, early_exaggeration_iter=20, random_state=0).fit(X[:500])\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "m = TSNE(perplexity=30, n_iter=20, early_exaggeration_iter=20, neighbors='exact').fit(X)\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "print(json.dumps({'base': base, 'peak': peak, 'reported': m.peak_memory_, 'stages': list(m.timings_)}))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    mem = json.loads(out.stdout.strip().splitlines()[-1])
    n, k = 40_000, 90
    bound = 2 * 64 * 2**20 + 100 * n * k  # exact-kNN block scratch per thread + O(n·k) arrays
    assert mem["peak"] - mem["base"] < bound, mem
    # the fit reports the process's peak at the end of each stage: never decreasing, the last is the peak
    reported = [mem["reported"][s] for s in mem["stages"]]
    assert list(mem["reported"]) == mem["stages"] and reported == sorted(reported)
    assert mem["base"] <= reported[0] and reported[-1] == mem["peak"], mem


@pytest.mark.slow
def test_dataset_in_zarr_out_keeps_labels(client, tmp_path, mixture_2000):
    from scaleml_dask.io.store import DatasetWriter

    X, y = mixture_2000
    src = tmp_path / "mix.zarr"
    with DatasetWriter(src, X.shape[1], chunk_rows=500, dtype=np.float32, y_dtype=np.int64) as w:
        w.append(X[:1000], y[:1000])
        w.append(X[1000:], y[1000:])
    # from zarr: the dask path; the FFT repulsion, so it also runs end to end
    model = TSNE(perplexity=20, n_iter=200, random_state=0, negative_gradient_method="fft").fit(str(src))
    assert model.negative_gradient_method_ == "fft"
    _, accuracy = _recall_and_accuracy(X, model.embedding_, y, n_queries=400)
    assert accuracy >= 0.98
    np.testing.assert_array_equal(model.labels_, y)
    out = model.to_zarr(tmp_path / "emb.zarr")
    import zarr

    g = zarr.open_group(str(out), mode="r")
    np.testing.assert_allclose(g["X"][:], model.embedding_, rtol=1e-6)
    np.testing.assert_array_equal(g["y"][:], y)
    assert g.attrs["kl_divergence"] == pytest.approx(model.kl_divergence_)


def test_wide_input_is_reduced_by_pca(rng):
    import dask.array as da

    X, y = _mixture(800, 60, 4, 3.0, seed=2)
    model = TSNE(perplexity=15, n_iter=250, random_state=0).fit(da.from_array(X, chunks=(200, 60)), y)
    assert model.pca_.components_.shape == (50, 60)
    _, accuracy = _recall_and_accuracy(X, model.embedding_, y, n_queries=400)
    assert accuracy >= 0.98


def test_small_numpy_input_takes_the_in_memory_path_to_the_same_embedding():
    import dask.array as da

    from scaleml_dask.tsne.initialization import principal_axes

    X, _ = _mixture(400, 60, 4, 3.0, seed=3)
    fit = dict(perplexity=10, n_iter=0, early_exaggeration_iter=30, random_state=0)
    in_memory = TSNE(**fit).fit(X)
    via_dask = TSNE(**fit).fit(da.from_array(X, chunks=(150, 60)))
    assert in_memory.pca_ is None  # projected in memory, without sm.PCA
    _, axes = principal_axes(X, 50)
    np.testing.assert_allclose(axes.T, via_dask.pca_.components_, atol=1e-6)
    scale = np.abs(via_dask.embedding_).max()
    np.testing.assert_allclose(in_memory.embedding_, via_dask.embedding_, atol=1e-4 * scale)


@pytest.mark.slow
def test_small_numpy_input_never_imports_dask_array():
    code = ("import sys, numpy as np; from scaleml_dask.tsne import TSNE; "
            "X = np.random.default_rng(0).normal(size=(200, 8)); "
            "Y = TSNE(perplexity=10, n_iter=20, early_exaggeration_iter=20, random_state=0)"
            ".fit_transform(X, list(range(200))); "
            "print(Y.shape, 'dask.array' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "False" and "(200, 2)" in out


def test_bad_input_gives_clear_errors(rng):
    X = rng.normal(size=(40, 3))
    with pytest.raises(ValueError, match="perplexity=50.*less than n_samples - 1 = 39"):
        TSNE(perplexity=50).fit(X)
    with pytest.raises(ValueError, match="at least 4 samples; got n_samples = 3"):
        TSNE(perplexity=1).fit(X[:3])
    bad = X.copy()
    bad[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN .*row 17, column 2"):
        TSNE(perplexity=5).fit(bad)
    with pytest.raises(ValueError, match=r"'neighbors' parameter of TSNE must be a str among .*Got 'kd'"):
        TSNE(perplexity=5, neighbors="kd").fit(X)
    with pytest.raises(ValueError, match=r"'negative_gradient_method' parameter of TSNE .*Got 'bh'"):
        TSNE(perplexity=5, negative_gradient_method="bh").fit(X)
    with pytest.raises(ValueError, match="initialization array has shape"):
        TSNE(perplexity=5, initialization=np.zeros((3, 2))).fit(X)
    with pytest.raises(ValueError, match="different lengths"):
        TSNE(perplexity=5).fit(X, np.zeros(39))
    with pytest.raises(ValueError, match="different lengths: X has 12000 rows, y has 39"):
        TSNE(perplexity=5).fit(np.vstack([X] * 300), np.zeros(39))  # the dask path (12,000 rows)
    with pytest.raises(ValueError, match="y must be a 1-d array"):
        TSNE(perplexity=5).fit(X, np.zeros((40, 2)))
    from scaleml_dask.validation import NotFittedError

    with pytest.raises(NotFittedError):
        TSNE().to_zarr("never.zarr")
