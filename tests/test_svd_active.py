"""TruncatedSVD in the space of the active columns: hashed-text-like data (2**20 columns, a few hundred touched,
each chunk touching its own share) fitted exactly as the SVD of the touched columns, with zero loadings elsewhere,
whatever the chunking; the per-chunk test matrix is the same rows of one Gaussian matrix in every chunk; a chunk
that touches a column the first pass did not see is refused by name."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
import scipy.sparse as sp

import scaleml_dask as sm
from scaleml_dask._sketch import gaussian_rows, sketch_block
from scaleml_dask.validation import as_dask_array

P = 2**20


@pytest.fixture(scope="module")
def hashed():
    """600 rows over 2**20 columns: a planted rank-5 part on 300 shared columns plus, per block of 200 rows,
    noise on 100 columns of its own (so each chunk touches columns no other chunk does)."""
    rng = np.random.default_rng(0)
    shared = np.sort(rng.choice(P, 300, replace=False))
    low = (rng.standard_normal((600, 5)) * [20.0, 10, 6, 4, 3]) @ rng.standard_normal((5, 300))
    A = sp.csr_matrix((low.ravel(), (np.repeat(np.arange(600), 300), np.tile(shared, 600))), shape=(600, P))
    rows, cols = [], []
    for b in range(3):
        own = rng.choice(np.setdiff1d(np.arange(P), shared), 100, replace=False)
        r = rng.integers(200 * b, 200 * (b + 1), 2000)
        rows.append(r)
        cols.append(rng.choice(own, 2000))
    noise = sp.csr_matrix((0.5 * rng.standard_normal(6000), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(600, P))
    A = (A + noise).tocsr()
    active = np.unique(A.indices)
    return A, active


def test_fit_is_the_svd_of_the_active_columns_whatever_the_chunking(hashed):
    A, active = hashed
    D = A[:, active].toarray()
    _, s, Vt = np.linalg.svd(D, full_matrices=False)
    total = D.var(axis=0).sum()  # the other columns are zero
    fits = [sm.TruncatedSVD(5, n_iter=6, n_oversamples=20, random_state=0).fit(
        as_dask_array(A, accept_sparse=True, chunk_rows=rows)) for rows in (200, 250, 600)]
    for f in fits:
        assert f.n_active_features_ == len(active) and f.components_.shape == (5, P)
        np.testing.assert_allclose(f.singular_values_, s[:5], rtol=1e-9)
        off = np.setdiff1d(np.arange(P), active)
        assert not f.components_[:, off].any()  # exactly zero where no row has a non-zero
        np.testing.assert_allclose(np.abs(f.components_[:, active] @ Vt[:5].T), np.eye(5), atol=1e-7)
        Z = D @ f.components_[:, active].T
        np.testing.assert_allclose(f.explained_variance_, Z.var(axis=0), rtol=1e-9)
        np.testing.assert_allclose(f.explained_variance_ratio_, Z.var(axis=0) / total, rtol=1e-9)
    for f in fits[1:]:  # the chunks draw the same test matrix: the same fit to rounding
        np.testing.assert_allclose(f.singular_values_, fits[0].singular_values_, rtol=1e-12)
        np.testing.assert_allclose(f.components_, fits[0].components_, atol=1e-10)
    np.testing.assert_allclose(fits[0].transform(A), A @ fits[0].components_.T, rtol=1e-12)
    dX = as_dask_array(A, accept_sparse=True, chunk_rows=250)
    lazy = fits[0].transform(dX)  # ships the active rows of components_.T only
    values = [getattr(v, "value", v) for v in dict(lazy.__dask_graph__()).values()]  # a task spec's DataNode
    shapes = {v.shape for v in values if isinstance(v, np.ndarray)}
    assert (len(active), 5) in shapes and (P, 5) not in shapes
    np.testing.assert_allclose(lazy.compute(), A @ fits[0].components_.T, rtol=1e-12, atol=1e-12)


def test_dense_input_equals_the_exact_svd():
    X = np.random.default_rng(1).normal(size=(300, 40)) @ np.diag(np.geomspace(10, 0.1, 40))
    f = sm.TruncatedSVD(4, n_iter=4, random_state=0).fit(as_dask_array(X, chunk_rows=70))
    np.testing.assert_allclose(f.singular_values_, np.linalg.svd(X, compute_uv=False)[:4], rtol=1e-10)
    assert f.n_active_features_ == 40


def test_no_active_column_gives_zero_components():
    f = sm.TruncatedSVD(2, random_state=0).fit(sp.csr_matrix((50, 30)))
    assert f.n_active_features_ == 0 and not f.components_.any() and not f.singular_values_.any()


def test_the_test_matrix_is_keyed_by_column():
    cols = np.array([3, 17, 2**20 - 1, 123_456])
    whole = gaussian_rows(7, np.arange(200_000), 9)
    some = gaussian_rows(7, cols, 9)
    np.testing.assert_array_equal(some[[0, 1, 3]], whole[cols[[0, 1, 3]]])
    assert not np.array_equal(gaussian_rows(8, cols, 9), some)
    assert abs(whole.mean()) < 5e-3 and abs(whole.std() - 1) < 5e-3  # 1.8e6 standard normal draws
    assert abs(np.corrcoef(whole[:, 0], whole[:, 1])[0, 1]) < 1e-2  # the Box–Muller pair is uncorrelated


def test_a_column_the_first_pass_did_not_see_is_refused_by_name(hashed):
    A, active = hashed
    extra = np.setdiff1d(np.arange(P), active)[:1]
    B = A[:10].tolil()
    B[4, int(extra[0])] = 1.0
    with pytest.raises(ValueError, match=rf"chunk 2 has a non-zero at row 504, column {int(extra[0])}"):
        sketch_block(B.tocsr(), np.ones((len(active), 3)), cols=active, chunk_index=2, row_start=500)


@pytest.mark.parametrize("sparse", [True, False], ids=["csr", "dense"])
def test_values_whose_products_overflow_are_refused_by_chunk(sparse):
    """A value near float64's limit makes X' X overflow: a clear error naming the chunk, not a LinAlgError from
    infinite sums (and no overflow warning on the way)."""
    X = sp.random(300, 50, density=0.1, format="csr", random_state=0)
    X.data[7] = 1e300
    data = as_dask_array(X if sparse else X.toarray(), accept_sparse=True, chunk_rows=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with dask.config.set(scheduler="synchronous"), pytest.raises(ValueError, match=r"chunk 0 .*1e\+300.*scale X"):
            sm.TruncatedSVD(3, random_state=0).fit(data)


def test_active_columns_found_once_at_fit_and_checked_when_restored(hashed, tmp_path, monkeypatch):
    """``active_features_`` (the columns some component loads on) is fitted state: saved and restored with the
    model, and a restored one that is not the non-zero columns of ``components_`` is refused by name. The first
    pass builds each chunk's CSR block once, and its sketch equals ``sketch_block``'s with the same test matrix."""
    from scaleml_dask import _sketch
    from scaleml_dask.deploy.registry import RegistryError, load_model, save_model

    A, active = hashed
    X = A[:, :300_000].tocsr()
    f = sm.TruncatedSVD(3, n_iter=2, random_state=0).fit(X)
    used = np.flatnonzero(np.any(f.components_ != 0, axis=0))
    assert f.active_features_.tolist() == used.tolist() and 0 < len(used) < len(active)
    save_model(f, tmp_path / "svd")
    back = load_model(tmp_path / "svd")
    dX = as_dask_array(X, accept_sparse=True, chunk_rows=200)
    np.testing.assert_array_equal(back.active_features_, used)
    np.testing.assert_array_equal(back.transform(dX).compute(), f.transform(dX).compute())
    del f.active_features_  # as saved before the attribute existed: derived from components_ on load
    save_model(f, tmp_path / "older")
    np.testing.assert_array_equal(load_model(tmp_path / "older").active_features_, used)
    f.active_features_ = used[1:]
    save_model(f, tmp_path / "altered")
    with pytest.raises(RegistryError, match="active_features_ are not the non-zero columns of components_"):
        load_model(tmp_path / "altered")
    built = []
    monkeypatch.setattr(_sketch, "csr_block", lambda B: built.append(1) or sp.csr_matrix(B))
    s = _sketch.range_block(A[:200], seed=5, l=4, moments=True)
    touched = np.unique(A[:200].indices)
    ref = sketch_block(A[:200], gaussian_rows(5, touched, 4), cols=touched, moments=True)
    assert len(built) == 2  # one for range_block, one for the reference's sketch_block
    for name in ("cols", "c", "r", "sums", "sumsq"):
        np.testing.assert_array_equal(getattr(s, name), getattr(ref, name))
