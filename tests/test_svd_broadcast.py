"""TruncatedSVD on a dask.distributed cluster: its p × l basis scattered to the workers for each pass (a key of
its own, held for the pass), never sent inside the graph; repeated fits with the same seed (identical bases) agree."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
import scipy.sparse as sp

import scaleml_dask as sm
from scaleml_dask._sketch import combine_sketches, sketch_block
from scaleml_dask.passes import broadcast, fold_row_chunks, reduce_here
from scaleml_dask.random_projection import SparseRandomProjection
from scaleml_dask.validation import as_dask_array

P = 2**17  # with l = 12, a basis of all columns is 12.6 MB: above the 10 MB at which distributed warns of a large graph


@pytest.fixture(scope="module")
def wide():
    planted = np.r_[50.0, 30.0, np.geomspace(5, 1, 398)]  # singular values 50, 30, then 5 and below
    A = sp.csr_matrix((planted, (np.arange(400), np.arange(400) * 7)), shape=(400, P))
    A = sp.csr_matrix(A + 0.1 * sp.random(400, P, density=8e-3, format="csr", random_state=0))
    assert len(np.unique(A.indices)) * 12 * 8 > 11 * 2**20  # TruncatedSVD's basis of the active columns: > 11 MiB
    return A, as_dask_array(A, accept_sparse=True, chunk_rows=100)


def test_the_basis_sent_in_the_graph_is_what_distributed_warns_of(client, wide):
    """The fault this avoids, reproduced: the same pass with the basis embedded sends a large graph."""
    _, dX = wide
    C = np.random.default_rng(0).standard_normal((P, 12))
    parts = fold_row_chunks(sketch_block, dX, group=1, Z=dask.delayed(C, pure=True), M=None, moments=False)
    with pytest.warns(UserWarning, match="Sending large graph"):
        reduce_here(parts, combine_sketches)


def test_truncated_svd_scatters_its_basis_and_repeated_fits_agree(client, wide):
    A, dX = wide
    with dask.config.set(scheduler="synchronous"):
        local = sm.TruncatedSVD(2, n_iter=2, random_state=0).fit(dX)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*Sending large graph.*")
        fits = [sm.TruncatedSVD(2, n_iter=2, random_state=0).fit(dX) for _ in range(3)]  # identical bases
    for f in fits:
        np.testing.assert_allclose(f.singular_values_, local.singular_values_, rtol=1e-12)
        np.testing.assert_allclose(f.components_, local.components_, rtol=1e-10, atol=1e-14)
    exact = sp.linalg.svds(A, k=2, return_singular_vectors=False)[::-1]
    np.testing.assert_allclose(local.singular_values_, exact, rtol=1e-6)


def test_broadcast_holds_a_key_of_its_own_for_the_block(client):
    C = np.arange(12.0).reshape(4, 3)
    with broadcast(C) as a, broadcast(C) as b:  # equal values, two keys: releasing one never loses the other
        assert a.key != b.key and client.who_has(a)[a.key] and client.who_has(b)[b.key]
        np.testing.assert_array_equal(dask.delayed(np.sum)(a).compute(), C.sum())
    with dask.config.set(scheduler="synchronous"), broadcast(C) as d:  # no distributed scheduler: a delayed
        assert isinstance(d, dask.delayed(C).__class__)


def _own_graph_bytes(result, *inputs) -> int:
    """Pickled bytes of the tasks of ``result``'s graph that are not its inputs' (the data)."""
    import pickle

    theirs = set().union(*(dict(a.__dask_graph__()) for a in inputs))
    return sum(len(pickle.dumps(v)) for k, v in dict(result.__dask_graph__()).items() if k not in theirs)


def test_lazy_transforms_ship_their_matrix_once_not_in_the_graph(client, wide):
    """transform / inverse_transform of TruncatedSVD, PCA and a random projection (and the lazy scores of SGD and
    k-means) stay lazy, with graphs far smaller than the matrices they multiply by, and equal the in-memory
    results after the estimator is gone."""
    A, dX = wide
    svd = sm.TruncatedSVD(2, n_iter=1, random_state=0).fit(dX)
    dD = dask.array.random.default_rng(1).normal(3.0, 1.0, size=(120, 20_000), chunks=(40, 8_000))  # + panels
    D = dD.compute()
    pca = sm.PCA(3).fit(dD)
    rp = SparseRandomProjection(50, dense_output=True, random_state=0).fit(dX)
    Z = as_dask_array(np.random.default_rng(2).normal(size=(90, 3)), chunk_rows=30)
    y = (np.asarray(A[:, ::7].sum(axis=1)).ravel() > np.median(np.asarray(A[:, ::7].sum(axis=1)))).astype(float)
    sgd = sm.SGDClassifier(mode="local", rounds=1, validation_fraction=0.0, random_state=0).fit(A, y)
    km = sm.KMeans(2, random_state=0).fit(dD)
    cases = [(svd.transform(dX), svd.transform(A), dX, svd.components_.nbytes),
             (svd.inverse_transform(Z[:, :2]), svd.inverse_transform(Z[:, :2].compute()), Z, svd.components_.nbytes),
             (pca.transform(dD), pca.transform(D), dD, pca.components_.nbytes),
             (pca.inverse_transform(Z), pca.inverse_transform(Z.compute()), Z, pca.components_.nbytes),
             (rp.transform(dX), rp.transform(A), dX, rp.components_.data.nbytes),
             (sgd.decision_function(dX), sgd.decision_function(A), dX, sgd.coef_.nbytes),
             (km.transform(dD), km.transform(D), dD, km.cluster_centers_.nbytes)]
    del svd, pca, rp, sgd, km
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*Sending large graph.*")
        for lazy, expected, source, matrix_bytes in cases:
            assert isinstance(lazy, dask.array.Array)
            assert _own_graph_bytes(lazy, source) < matrix_bytes / 20
            np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-10, atol=1e-10)
