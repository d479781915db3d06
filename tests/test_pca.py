"""PCA against scikit-learn and planted structure; chunking invariance; a worker killed mid-fit."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPCA

import scaleml_dask as sm
from scaleml_dask.pca import PCA


def _data(rng, n=2000, d=12, scales=None):
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 10
    return X * (scales if scales is not None else 1.0)


def _low_rank(rng, n=3000, d=150, rank=4, noise=1e-2):
    V = np.linalg.qr(rng.normal(size=(d, rank)))[0]
    X = (rng.normal(size=(n, rank)) * [10.0, 6.0, 4.0, 2.0][:rank]) @ V.T + noise * rng.normal(size=(n, d)) + 3.0
    return X, V


@pytest.mark.parametrize("solver", ["tsqr", "auto"])
def test_matches_sklearn(client, rng, solver):
    X = rng.normal(size=(2000, 12)) * np.linspace(1, 3, 12) + rng.normal(size=12)  # well conditioned
    ours = PCA(n_components=6, solver=solver).fit(da.from_array(X, chunks=(300, 5)))  # chunked both ways
    ref = SkPCA(n_components=6, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-10)
    np.testing.assert_allclose(ours.singular_values_, ref.singular_values_, rtol=1e-10)
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.noise_variance_, ref.noise_variance_, rtol=1e-9)
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-9)  # same signs, as scikit-learn
    assert ours.solver_ == ("gram" if solver == "auto" else "tsqr")


def _jacobi_singular_values(A, sweeps=30):
    """One-sided Jacobi: singular values to high relative accuracy for column-graded A (the reference)."""
    A = A.copy()
    for _ in range(sweeps):
        off = 0.0
        for i in range(A.shape[1] - 1):
            for j in range(i + 1, A.shape[1]):
                a, b, c = A[:, i] @ A[:, i], A[:, j] @ A[:, j], A[:, i] @ A[:, j]
                if abs(c) <= 1e-17 * np.sqrt(a * b):
                    continue
                off = max(off, abs(c) / np.sqrt(a * b))
                zeta = (b - a) / (2 * c)
                t = (np.sign(zeta) / (abs(zeta) + np.sqrt(1 + zeta * zeta))) if zeta != 0 else 1.0
                cs = 1 / np.sqrt(1 + t * t)
                A[:, i], A[:, j] = cs * A[:, i] - cs * t * A[:, j], cs * t * A[:, i] + cs * A[:, j]
        if off < 1e-16:
            break
    return np.sort(np.linalg.norm(A, axis=0))[::-1]


def test_badly_scaled_columns_as_accurate_as_sklearn(rng):
    X = _data(rng, n=3000, d=13, scales=np.logspace(-6, 6, 13))
    exact = _jacobi_singular_values(X - X.mean(axis=0)) ** 2 / (len(X) - 1)
    err_ref = np.abs(SkPCA(svd_solver="full").fit(X).explained_variance_ / exact - 1)
    assert err_ref[-1] > 1e-9  # the smallest variances are hard for scikit-learn too
    for solver in ("tsqr", "auto"):
        ours = PCA(solver=solver).fit(da.from_array(X, chunks=500))
        err_ours = np.abs(ours.explained_variance_ / exact - 1)
        assert np.all(err_ours <= 10 * err_ref + 1e-12), (solver, err_ours, err_ref)
        assert ours.solver_ == "tsqr"  # auto saw that the Gram matrix would lose the small variances


@pytest.mark.parametrize("solver", ["tsqr", "randomized"])
def test_planted_low_rank_recovered(rng, solver):
    X, V = _low_rank(rng)
    p = PCA(n_components=4, solver=solver, random_state=0).fit(da.from_array(X, chunks=700).persist())
    cosines = np.linalg.svd(p.components_ @ V, compute_uv=False)  # principal angles with the planted space
    assert cosines.min() > 1 - 1e-6
    np.testing.assert_allclose(p.explained_variance_, np.var(X @ V, axis=0, ddof=1)[np.argsort(
        -np.var(X @ V, axis=0))], rtol=0.02)
    ref = SkPCA(n_components=4, svd_solver="full").fit(X)
    np.testing.assert_allclose(p.explained_variance_, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(p.components_, ref.components_, atol=1e-8)
    assert p.solver_ == solver


@pytest.mark.slow
def test_auto_picks_randomized_for_wide_data(rng):
    X, _ = _low_rank(rng, n=1200, d=1100)
    p = PCA(n_components=4, random_state=0).fit(da.from_array(X, chunks=600).persist())
    assert p.solver_ == "randomized"
    ref = SkPCA(n_components=4, svd_solver="covariance_eigh").fit(X)
    np.testing.assert_allclose(p.explained_variance_, ref.explained_variance_, rtol=1e-10)


def test_chunking_invariance(rng):
    X = _data(rng, n=4000)
    fits = [PCA(n_components=5, solver="tsqr").fit(da.from_array(X, chunks=c))
            for c in ((4000, 12), (1000, 12), (613, 5), (250, 3))]
    for f in fits[1:]:
        np.testing.assert_allclose(f.explained_variance_, fits[0].explained_variance_, rtol=1e-12)
        np.testing.assert_allclose(f.components_, fits[0].components_, atol=1e-12)
        np.testing.assert_allclose(f.mean_, fits[0].mean_, rtol=1e-12, atol=1e-12)


def test_transform_inverse_whiten(rng):
    X = _data(rng, n=1000, d=6)
    dX = da.from_array(X, chunks=300)
    for whiten in (False, True):
        ours = PCA(n_components=4, whiten=whiten).fit(dX)
        ref = SkPCA(n_components=4, whiten=whiten, svd_solver="full").fit(X)
        Z = ours.transform(dX)
        assert isinstance(Z, da.Array)
        np.testing.assert_allclose(Z.compute(), ref.transform(X), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ours.inverse_transform(Z).compute(), ref.inverse_transform(ref.transform(X)),
                                   rtol=1e-9, atol=1e-9)
    full = PCA().fit(X)
    np.testing.assert_allclose(full.inverse_transform(full.fit_transform(X)), X, rtol=1e-10, atol=1e-9)


def test_to_zarr_writes_a_dataset(client, rng, tmp_path):
    from scaleml_dask.io.synthetic import make_regression

    src = make_regression(tmp_path / "src.zarr", 5000, 6, chunk_rows=1200, seed=1)
    ds = sm.open_dataset(src)
    p = PCA(n_components=3).fit(ds["X"])
    out = p.to_zarr(src, tmp_path / "proj.zarr")
    proj = sm.open_dataset(out)
    assert proj["X"].shape == (5000, 3) and proj["X"].data.chunks[0][0] == 1200
    np.testing.assert_allclose(proj["X"].values, p.transform(ds["X"].values), rtol=1e-12)
    np.testing.assert_array_equal(proj["y"].values, ds["y"].values)
    assert proj.attrs["feature_names"] == ["pc0", "pc1", "pc2"]
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temporary left behind


def test_errors(rng):
    X = _data(rng, n=50, d=8)
    with pytest.raises(ValueError, match=r"n_components=9 must be between 1 and .* = 8"):
        PCA(n_components=9).fit(X)
    with pytest.raises(ValueError, match=r"min\(20, 8\)"):
        PCA(n_components=10).fit(X[:20])
    Xn = X.copy()
    Xn[33, 4] = np.inf
    with pytest.raises(ValueError, match="X contains inf in chunk 1"):
        PCA(n_components=2).fit(da.from_array(Xn, chunks=25))
    with pytest.raises(ValueError, match=r"'solver' parameter of PCA must be a str among"):
        PCA(solver="arpack").fit(X)
    with pytest.raises(ValueError, match=r"X has 3 features, but PCA is expecting 8 features as input"):
        PCA(n_components=2).fit(X).transform(X[:, :3])


@pytest.mark.slow
def test_worker_killed_while_running_a_block_gives_same_result(process_client, tmp_path):
    from faults import undisturbed_and_killed

    from scaleml_dask.io.store import DatasetWriter

    rng = np.random.default_rng(3)
    with DatasetWriter(tmp_path / "p.zarr", 12, chunk_rows=5_000) as w:
        for _ in range(40):
            w.append(rng.standard_normal((5_000, 12)) * np.arange(1, 13))

    def fit():
        return PCA(n_components=4, solver="tsqr").fit(sm.open_dataset(tmp_path / "p.zarr").X)

    ref, killed, record = undisturbed_and_killed(process_client, fit, "block_moments", tmp_path / "killed")
    np.testing.assert_allclose(killed.components_, ref.components_, rtol=1e-13, atol=1e-14)  # up to rounding
    np.testing.assert_allclose(killed.explained_variance_, ref.explained_variance_, rtol=1e-13)
    np.testing.assert_allclose(ref.explained_variance_, np.arange(12, 8, -1.0) ** 2, rtol=0.02)
