"""LinearRegression and Ridge against known truth: planted coefficients, numpy, statsmodels, scikit-learn."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import scaleml_dask as sm
from scaleml_dask.io.synthetic import make_regression
from scaleml_dask.linear import LinearRegression, Ridge


def _small(rng, n=400, d=5, weights=False):
    X = rng.normal(size=(n, d)) * np.array([1, 10, 0.1, 5, 2])[:d] + np.array([3, -100, 0, 1e3, 5])[:d]
    y = 2.0 + X @ rng.normal(size=d) + rng.normal(size=n)
    return X, y, (rng.uniform(0.2, 3.0, n) if weights else None)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("linear") / "reg.zarr"
    return make_regression(path, 60_000, 8, chunk_rows=10_000, noise=1.0, seed=4)


@pytest.mark.parametrize("solver", ["tsqr", "gram", "auto"])
def test_planted_coefficients_recovered_from_zarr(client, store, solver):
    ds = sm.open_dataset(store)
    m = LinearRegression(solver=solver).fit(ds)  # y taken from the dataset
    coef, intercept = np.array(ds.attrs["coef"]), ds.attrs["intercept"]
    z = np.abs(m.coef_ - coef) / m.stderr_
    assert z.max() < 5 and abs(m.intercept_ - intercept) < 5 * m.intercept_stderr_
    assert np.all(m.stderr_ < 1.5 / np.sqrt(60_000))  # the noise floor, noise = 1
    assert m.n_samples_ == 60_000 and m.solver_ == ("gram" if solver == "auto" else solver)
    assert abs(m.rss_ / m.df_resid_ - 1.0) < 0.03


@pytest.mark.parametrize("solver", ["tsqr", "auto", "gram"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_matches_numpy_and_statsmodels(rng, solver, fit_intercept, weights):
    import statsmodels.api as smapi

    X, y, w = _small(rng, weights=weights)
    dX, dy = da.from_array(X, chunks=90), da.from_array(y, chunks=90)
    m = LinearRegression(fit_intercept=fit_intercept, solver=solver).fit(dX, dy, sample_weight=w)
    exog = smapi.add_constant(X) if fit_intercept else X
    ref = smapi.WLS(y, exog, weights=1.0 if w is None else w).fit()
    tol = 1e-7 if solver == "gram" else 1e-11  # gram squares cond([1 | X]) ~ 1e4
    params = np.r_[m.intercept_, m.coef_] if fit_intercept else m.coef_
    np.testing.assert_allclose(params, ref.params, rtol=tol, atol=tol * np.abs(ref.params).max())
    se = np.r_[m.intercept_stderr_, m.stderr_] if fit_intercept else m.stderr_
    np.testing.assert_allclose(se, ref.bse, rtol=1e-6 if solver == "gram" else 1e-10)
    np.testing.assert_allclose(m.r2_, ref.rsquared, rtol=1e-10)
    np.testing.assert_allclose(m.rss_, ref.ssr, rtol=1e-6 if solver == "gram" else 1e-10)
    np.testing.assert_allclose(m.condition_number_, ref.condition_number, rtol=1e-6)
    np.testing.assert_allclose(m.pvalues_, ref.pvalues[int(fit_intercept):], rtol=1e-4, atol=1e-300)
    np.testing.assert_allclose(m.conf_int(), ref.conf_int()[int(fit_intercept):], rtol=1e-6)
    if w is None:
        lstsq = np.linalg.lstsq(exog, y, rcond=None)[0]
        np.testing.assert_allclose(params, lstsq, rtol=tol, atol=tol * np.abs(lstsq).max())
    table = m.summary()
    assert "std err" in table and f"{ref.tvalues[-1]:.3f}" in table


@pytest.mark.parametrize("solver", ["tsqr", "auto"])
def test_ill_conditioned_polynomial_exact(rng, solver):
    x = rng.uniform(1.0, 2.0, 20_000)
    X = np.column_stack([x**j for j in range(1, 7)])
    y = 1.0 + X.sum(axis=1)  # every coefficient is exactly 1
    m = LinearRegression(solver=solver).fit(da.from_array(X, chunks=3000), y)
    assert m.condition_number_ >= 1e7
    lre = -np.log10(np.abs(np.r_[m.intercept_, m.coef_] - 1.0).max())
    assert lre >= 9, lre
    assert m.solver_ == "tsqr"  # auto saw that the normal equations would not be accurate


@pytest.mark.parametrize("solver", ["tsqr", "auto"])
def test_chunking_invariance(rng, solver):
    X, y, w = _small(rng, n=5000, weights=True)
    fits = [LinearRegression(solver=solver).fit(da.from_array(X, chunks=c), da.from_array(y, chunks=c),
                                                sample_weight=w)
            for c in (5000, 1000, 777, 250)]
    for f in fits[1:]:
        np.testing.assert_allclose(f.coef_, fits[0].coef_, rtol=1e-12)
        np.testing.assert_allclose(f.intercept_, fits[0].intercept_, rtol=1e-12)
        np.testing.assert_allclose(f.stderr_, fits[0].stderr_, rtol=1e-12)


@pytest.mark.slow
def test_worker_killed_while_running_a_block_gives_same_coefficients(process_client, tmp_path):
    """A worker SIGKILLs itself when its 2nd block_moments task starts; the scheduler recomputes, same result."""
    from faults import undisturbed_and_killed

    store = make_regression(tmp_path / "r.zarr", 200_000, 10, chunk_rows=5_000, noise=0.0, seed=7)

    def fit():
        ds = sm.open_dataset(store)
        return LinearRegression(solver="tsqr").fit(ds.X, ds.y)

    ref, killed, record = undisturbed_and_killed(process_client, fit, "block_moments", tmp_path / "killed")
    assert record.recomputed["block_moments"] >= 1
    # Same coefficients up to rounding: a recomputed chunk may run with another BLAS kernel (1 ulp apart).
    np.testing.assert_allclose(killed.coef_, ref.coef_, rtol=1e-14, atol=1e-15)
    assert killed.intercept_ == pytest.approx(ref.intercept_, rel=1e-14, abs=1e-15)
    np.testing.assert_allclose(ref.coef_, sm.open_dataset(store).attrs["coef"], atol=1e-10)


def test_errors_name_the_problem(rng):
    X, y, _ = _small(rng, n=300)
    bad = np.column_stack([X, X[:, 1] * 2 - X[:, 3]])
    from sklearn.linear_model import LinearRegression as SkLinearRegression

    from scaleml_dask.linear import RankDeficientWarning

    for design, problem in [(bad, r"rank 5 of 6\): column\(s\) \[5\] are linear combinations"),
                            (np.column_stack([X, np.full(300, 3.0)]), r"rank 5 of 6\): constant column\(s\) \[5\]")]:
        with pytest.warns(RankDeficientWarning, match=problem):  # scikit-learn's minimum-norm solution
            m = LinearRegression().fit(design, y)
        ref = SkLinearRegression().fit(design, y)
        np.testing.assert_allclose(m.coef_, ref.coef_, atol=1e-10)
        np.testing.assert_allclose(m.predict(design), ref.predict(design), rtol=1e-10)
        assert m.rank_ == 5 and m.df_resid_ == 300 - 6
    with pytest.raises(ValueError, match="4 samples but the model has 6 parameters"):
        LinearRegression().fit(X[:4], y[:4])
    Xn = X.copy()
    Xn[250, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN in chunk 2 \(rows 200-299\), first at row 250, column 2"):
        LinearRegression().fit(da.from_array(Xn, chunks=100), y)
    with pytest.raises(ValueError, match="X has 300 rows, y has 299"):
        LinearRegression().fit(X, y[:-1])
    with pytest.raises(ValueError, match="sample_weight has negative values in chunk 0"):
        LinearRegression().fit(X, y, sample_weight=np.r_[-1.0, np.ones(299)])
    with pytest.raises(ValueError, match=r"'solver' parameter of LinearRegression must be a str among .*Got 'qr'"):
        LinearRegression(solver="qr").fit(X, y)
    with pytest.raises(sm.validation.NotFittedError):
        LinearRegression().predict(X)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("alpha", [1e-3, 1.0, 100.0])
def test_ridge_matches_sklearn(rng, alpha, fit_intercept):
    from sklearn.linear_model import Ridge as SkRidge

    X, y, w = _small(rng, n=500, weights=True)
    X = X[:, :3]  # keep cond moderate so that scikit-learn's Cholesky is itself accurate to 1e-8
    ours = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(da.from_array(X, chunks=120), y, sample_weight=w)
    ref = SkRidge(alpha=alpha, fit_intercept=fit_intercept).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.to_sklearn().predict(X), ref.predict(X), rtol=1e-8)
    with pytest.raises(ValueError, match="'alpha' parameter of Ridge must be a float in the range \\[0.0, inf\\)"):
        Ridge(alpha=-1.0).fit(X, y)


def test_input_types_and_float32(rng, tmp_path):
    import xarray as xr
    import zarr

    X, y, _ = _small(rng, n=1000, d=4)
    X32 = X.astype(np.float32)
    ref = LinearRegression().fit(X32.astype(np.float64), y)
    z = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=X32.shape, chunks=(300, 4), dtype="f4")
    z[:] = X32
    inputs = [X32, da.from_array(X32, chunks=(250, 2)), xr.DataArray(X32, dims=("sample", "feature")), z]
    for inp in inputs:
        m = LinearRegression().fit(inp, y)
        np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-12)
    assert m.coef_.dtype == np.float64


def test_predict_score_and_sklearn_interop(rng, tmp_path):
    import joblib
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y, _ = _small(rng, n=800, d=4)
    dX = da.from_array(X, chunks=200)
    m = LinearRegression().fit(dX, y)
    lazy = m.predict(dX)
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), m.predict(X), rtol=1e-13)
    np.testing.assert_allclose(m.score(dX, y), r2_score(y, m.predict(X)), rtol=1e-12)
    sk = m.to_sklearn()
    np.testing.assert_allclose(sk.predict(X), m.predict(X), rtol=1e-13)
    pipe = make_pipeline(FunctionTransformer(), sk)
    joblib.dump(pipe, tmp_path / "p.joblib")
    np.testing.assert_allclose(joblib.load(tmp_path / "p.joblib").predict(X), m.predict(X), rtol=1e-13)
    assert LinearRegression(solver="gram").get_params() == {"fit_intercept": True, "solver": "gram"}


@pytest.mark.parametrize("cond", [1e0, 1e3, 1e5])
def test_cholesky_qr2_kernel_matches_householder(rng, cond):
    from scaleml_dask._tsqr import _cholqr2_r, _tsqr_r, block_moments

    n, d = 30_000, 6
    U, _ = np.linalg.qr(rng.normal(size=(n, d)))
    X = (U * np.logspace(0, np.log10(cond), d)) @ np.linalg.qr(rng.normal(size=(d, d)))[0] + 1e3
    y = X @ rng.normal(size=d) + rng.normal(size=n)
    m = block_moments(X, y, None, center=True, method="tsqr")
    householder = _tsqr_r(X, y, None, m.mean)
    # positive diagonals on both sides, then the whole R agrees to a few ulps of its largest entry
    signs = np.sign(np.diag(householder))
    np.testing.assert_allclose(m.r, householder * signs[:, None], rtol=0, atol=50 * 2.2e-16 * np.abs(m.r).max())
    assert np.all(np.diag(m.r) > 0) and np.any(signs < 0)  # the path taken: Cholesky's signs, not LAPACK's
    A = np.column_stack([X, y]) - m.mean
    assert _cholqr2_r(X, y, m.mean, A.T @ A, 1.0, None) is not None


def test_cholesky_qr2_declines_ill_conditioned_blocks(rng):
    from scaleml_dask._tsqr import _cholqr2_r

    x = rng.uniform(1.0, 2.0, 20_000)
    X = np.column_stack([x**j for j in range(1, 8)])  # Gram error bound ~0.08: CholeskyQR2 would lose digits
    A = X - X.mean(axis=0)
    assert _cholqr2_r(X, None, X.mean(axis=0), A.T @ A, 1.0, None) is None


@pytest.mark.parametrize("n_chunks", [1, 5, 8, 9, 20])
def test_last_combine_on_the_client_gives_the_same_bits_as_the_whole_tree_on_the_cluster(client, rng, n_chunks):
    """``reduce_here`` runs the tree's last ``combine_moments`` in this process: the same tree, the same answer,
    bit for bit, whatever the number of levels left on the cluster (none up to 8 chunks, one at 9 or 20)."""
    import dask

    from scaleml_dask._tsqr import block_moments, combine_moments
    from scaleml_dask.passes import map_row_chunks, reduce_here, tree_reduce
    from scaleml_dask.validation import as_dask_array

    X = as_dask_array(rng.normal(size=(50 * n_chunks, 4)) + 7.0, chunk_rows=50)
    parts = map_row_chunks(block_moments, X, None, None, center=True, method="tsqr")
    here = reduce_here(parts, combine_moments)
    (there,) = dask.compute(tree_reduce(parts, combine_moments))
    assert here.n == there.n == 50 * n_chunks and here.n_blocks == n_chunks
    np.testing.assert_array_equal(here.r, there.r)
    np.testing.assert_array_equal(here.mean, there.mean)
