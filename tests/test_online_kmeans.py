"""online.MiniBatchKMeans against planted clusters, scikit-learn's MiniBatchKMeans on the same stream, the
running mean (k = 1, closed form), and the reassignment rule of dying centres."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score

from scaleml_dask import online as ol
from scaleml_dask.io.synthetic import mixture_chunk

K, D = 5, 8
CENTERS = np.random.default_rng(7).normal(0.0, 6.0, (K, D))  # ~24 apart, noise radius ~2.8: separated


def _stream(n_batches=8, rows=400, seed=1):
    return [mixture_chunk(seed, i, rows, centers=CENTERS, cluster_std=1.0) for i in range(n_batches)]


def _inertia(X, C):
    return float((((X[:, None, :] - C[None]) ** 2).sum(-1)).min(1).sum())


def test_planted_clusters_recovered_as_well_as_scikit_learn():
    batches = _stream()
    m = ol.MiniBatchKMeans(K, random_state=0)
    sk = SkMiniBatchKMeans(K, random_state=0, batch_size=400, n_init=1)
    for Xb, _ in batches:
        m.learn_many(Xb)
        sk.partial_fit(Xb)
    X, y = mixture_chunk(1, 99, 2000, centers=CENTERS, cluster_std=1.0)
    assert adjusted_rand_score(y, m.predict_many(X)) >= 0.99
    ours, theirs = _inertia(X, m.cluster_centers_), _inertia(X, sk.cluster_centers_)
    assert ours <= 1.01 * theirs
    assert m.n_seen_ == 3200 and m.n_steps_ == 8 and m.counts_.sum() == 3200 and m.n_features_in_ == D
    np.testing.assert_allclose(m.transform_many(X[:3]), np.sqrt(((X[:3, None] - m.cluster_centers_) ** 2).sum(-1)))
    assert m.score_many(X) == pytest.approx(-ours)


def test_from_the_same_initial_centres_the_steps_equal_scikit_learns():
    batches = _stream(6, 300)
    C0 = batches[0][0][[np.flatnonzero(batches[0][1] == c)[0] for c in range(K)]]  # one row of each cluster
    m = ol.MiniBatchKMeans(K, init=C0)
    sk = SkMiniBatchKMeans(K, init=C0, batch_size=300, n_init=1)
    for Xb, _ in batches:
        m.learn_many(Xb)
        sk.partial_fit(Xb)
        np.testing.assert_allclose(m.cluster_centers_, sk.cluster_centers_, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(m.counts_, sk._counts)


def test_one_centre_is_the_running_mean(rng):
    m = ol.MiniBatchKMeans(1, random_state=0)
    seen = []
    for rows in (3, 50, 1, 200, 7):
        Xb = rng.normal(2.0, 3.0, (rows, 4))
        m.learn_many(Xb)
        seen.append(Xb)
        allrows = np.concatenate(seen)
        np.testing.assert_allclose(m.cluster_centers_[0], allrows.mean(axis=0), rtol=1e-13, atol=1e-13)
        assert m.counts_[0] == len(allrows)
    for x in rng.normal(size=(20, 4)):  # learn_one: the same running mean
        m.learn_one(x)
        seen.append(x[None])
    np.testing.assert_allclose(m.cluster_centers_[0], np.concatenate(seen).mean(axis=0), rtol=1e-13, atol=1e-13)


def test_learn_one_equals_one_row_batches_and_reads_dict_rows(rng):
    X = np.concatenate([b[0] for b in _stream(2, 100)])
    a, b = ol.MiniBatchKMeans(K, random_state=3), ol.MiniBatchKMeans(K, random_state=3)
    for x in X:
        a.learn_one(x)
        b.learn_many(x[None])
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(a.counts_, b.counts_)
    assert a.n_steps_ == b.n_steps_ == len(X) - K + 1  # the first K rows are buffered, then one initialisation
    names = [f"f{j}" for j in range(D)]
    c = ol.MiniBatchKMeans(K, random_state=3)
    for x in X:
        c.learn_one(dict(zip(names, x)))
    np.testing.assert_array_equal(c.cluster_centers_, a.cluster_centers_)
    assert c.feature_names_in_.tolist() == names
    assert c.predict_one(dict(zip(names, X[0]))) == a.predict_one(X[0])
    with pytest.raises(ValueError, match=r"lacks features \['f7'\] and has unknown features \[\]"):
        c.learn_one(dict(zip(names[:-1], X[0])))


def test_a_dying_centre_is_reassigned_to_a_row_of_the_batch_and_set_params_is_honoured():
    (X1, _), (X2, _), (X3, _) = _stream(3, 300)
    C0 = np.vstack([CENTERS, np.full(D, 1e3)])  # the last centre is far from every row: it attracts none
    m = ol.MiniBatchKMeans(K + 1, init=C0, reassignment_ratio=0.0, random_state=0)
    m.learn_many(X1)  # ratio 0: no reassignment
    np.testing.assert_array_equal(m.cluster_centers_[K], C0[K])
    assert m.counts_[K] == 0 and m.n_reassigned_ == 0
    m.set_params(reassignment_ratio=0.01)  # applies to the next batch: the empty centre moves onto one of its rows
    m.learn_many(X2)
    assert m.n_reassigned_ == 1
    assert (m.cluster_centers_[K] == X2).all(axis=1).sum() == 1
    assert m.counts_[K] == m.counts_[:K].min()
    m.set_params(n_clusters=3, init="k-means++")
    with pytest.raises(ValueError, match="n_clusters was changed to 3 .* reset"):
        m.learn_many(X3)
    m.reset()
    m.learn_many(X3)
    assert m.cluster_centers_.shape == (3, D) and m.n_seen_ == len(X3)


def test_bad_input_names_the_problem(rng):
    with pytest.raises(ValueError, match="n_clusters"):
        ol.MiniBatchKMeans(0).learn_many(rng.normal(size=(10, 2)))
    m = ol.MiniBatchKMeans(3, random_state=0)
    with pytest.raises(NotFittedError):
        m.predict_many(rng.normal(size=(2, 2)))
    m.learn_many(rng.normal(size=(2, 2)))  # fewer rows than centres: kept for the initialisation
    with pytest.raises(NotFittedError, match="holds 2 rows .* from 3"):
        m.predict_many(rng.normal(size=(2, 2)))
    X = rng.normal(size=(20, 2))
    X[13, 1] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN in this batch \(stream rows 2-21\), first at row 13, "
                                         r"column 1"):
        m.learn_many(X)
    m.learn_many(rng.normal(size=(20, 2)))
    before = m.cluster_centers_.copy()
    X = rng.normal(size=(20, 2))
    X[5, 0] = np.inf
    with pytest.raises(ValueError, match="X contains inf .* first at row 5, column 0"):
        m.learn_many(X)
    np.testing.assert_array_equal(m.cluster_centers_, before)  # a refused batch changes nothing
    with pytest.raises(ValueError, match="x contains NaN in column 1"):
        m.learn_one(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="X has 3 features, but MiniBatchKMeans is expecting 2"):
        m.learn_many(rng.normal(size=(4, 3)))
    with pytest.raises(ValueError, match="X has 3 features, but MiniBatchKMeans is expecting 2"):
        m.learn_one(np.zeros(3))
    with pytest.raises(ValueError, match="init has shape"):
        ol.MiniBatchKMeans(2, init=np.zeros((3, 2))).learn_many(rng.normal(size=(5, 2)))
    np.testing.assert_array_equal(m.cluster_centers_, before)
