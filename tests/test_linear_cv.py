"""RidgeCV and the deliberate reuse of a pass's statistics.

``RidgeCV`` equals scikit-learn's ``RidgeCV`` on small data — folds given as scikit-learn index splits, leave-one-out
(scikit-learn's default), sample weights — from one pass (two for leave-one-out); GCV equals its closed form.
Reuse: outside ``sm.reuse_statistics()`` two fits on the same data read it twice (each pass has keys of its own, so
dask cannot hand one the other's results); inside, the second reuses the first's pass and says so.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.linear_model import Ridge as SkRidge
from sklearn.linear_model import RidgeCV as SkRidgeCV

import scaleml_dask as sm
from scaleml_dask import RidgeCV
from scaleml_dask.io import read
from scaleml_dask.io.synthetic import make_regression
from scaleml_dask.model_selection import KFold, ShuffleSplit

ALPHAS = np.logspace(-3, 4, 50)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 6)) * [1, 10, 0.1, 1, 1, 5] + 3
    y = X @ rng.normal(size=6) + rng.normal(size=1500) * 2 + 7
    return X, y, rng.random(1500)


@pytest.mark.parametrize(("cv", "scoring", "weighted"),
                         [(KFold(5, random_state=0), None, False),
                          (ShuffleSplit(4, test_size=0.3, random_state=1), "neg_mean_squared_error", True),
                          (KFold(4, shuffle=False), "neg_root_mean_squared_error", False)],
                         ids=["kfold-r2", "shuffle-mse-weighted", "contiguous-kfold-rmse"])
def test_ridge_cv_equals_scikit_learns_on_the_same_splits(data, cv, scoring, weighted):
    X, y, w = data
    w = w if weighted else None
    ours = RidgeCV(ALPHAS, cv=cv, scoring=scoring).fit(da.from_array(X, chunks=(333, 6)), y, sample_weight=w)
    ref = SkRidgeCV(ALPHAS, cv=list(cv.split(X)), scoring=scoring).fit(X, y, sample_weight=w)
    assert ours.passes_ == 1
    assert ours.alpha_ == ref.alpha_
    assert ours.best_score_ == pytest.approx(ref.best_score_, rel=1e-10)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-9)
    assert ours.intercept_ == pytest.approx(ref.intercept_, rel=1e-10)


def test_ill_conditioned_folds_fall_back_to_a_qr_of_their_own_rows():
    """Two columns equal to 1e-9 of their scale: no fold's Gram is accurate enough, so each fold's rows of each
    chunk are gathered (found again from the permutation) and factored by QR, in the same single pass."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 1))
    X = np.c_[x, x + 1e-6 * rng.normal(size=(1500, 1)), rng.normal(size=(1500, 2))] * 1e3 + 1e4
    y = X @ [1.0, -1.0, 0.5, 0.2] + rng.normal(size=1500)
    cv = KFold(5, random_state=0)
    ours = RidgeCV(ALPHAS, cv=cv).fit(da.from_array(X, chunks=(333, 4)), y)
    ref = SkRidgeCV(ALPHAS, cv=list(cv.split(X))).fit(X, y)
    assert ours.solver_ == "tsqr" and ours.passes_ == 1
    assert ours.alpha_ == ref.alpha_
    assert ours.best_score_ == pytest.approx(ref.best_score_, rel=1e-10)
    # normwise: the two near-equal columns' coefficients are as accurate as the data let either solver be
    assert np.abs(ours.coef_ - ref.coef_).max() < 1e-8 * np.abs(ref.coef_).max()


@pytest.mark.parametrize("scale", [1e150, 1e300])
def test_values_whose_squares_overflow_give_the_least_squares_path_not_zeros(scale):
    """X of 1e150–1e300: the Grams overflow (the folds fall back to QR) and so would the squared singular values of
    the path; the alphas are then negligible, so every fold's fit is least squares — once zeros with a score of 0."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 4))
    y = X @ [1.0, 2.0, 3.0, 4.0] + rng.normal(size=1500)
    with np.errstate(over="ignore", invalid="ignore"):
        ours = RidgeCV(ALPHAS, cv=KFold(5, random_state=0)).fit(da.from_array(X * scale, chunks=(500, 4)), y)
    ols = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)[0][:4]
    np.testing.assert_allclose(ours.coef_ * scale, ols, rtol=1e-9)
    assert ours.best_score_ > 0.9


def test_leave_one_out_equals_scikit_learns_default_and_gcv_its_closed_form(data):
    X, y, _ = data
    loo = RidgeCV(ALPHAS, cv="loo").fit(da.from_array(X, chunks=(400, 6)), y)
    ref = SkRidgeCV(ALPHAS).fit(X, y)
    assert loo.passes_ == 2 and loo.alpha_ == ref.alpha_
    assert loo.best_score_ == pytest.approx(ref.best_score_, rel=1e-10)
    gcv = RidgeCV(ALPHAS).fit(X, y)
    Xc = X - X.mean(axis=0)
    s = np.linalg.svd(Xc, compute_uv=False)
    for i in (0, 25, 49):
        a = ALPHAS[i]
        m = SkRidge(alpha=a).fit(X, y)
        rss = np.sum((y - m.predict(X)) ** 2)
        df = np.sum(s**2 / (s**2 + a)) + 1
        assert gcv.cv_results_["gcv"][i] == pytest.approx(len(y) * rss / (len(y) - df) ** 2, rel=1e-9)
        np.testing.assert_allclose(gcv.coef_path_[i], m.coef_, rtol=1e-9)  # the path: every alpha, all rows
    assert gcv.passes_ == 1


def test_ridge_cv_needs_positive_alphas_and_one_output(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="alphas must be positive"):
        RidgeCV([0.0, 1.0]).fit(X, y)
    with pytest.raises(ValueError, match="y must be a 1-d"):
        RidgeCV().fit(X, np.column_stack([y, y]))


def test_statistics_are_reused_on_purpose_and_never_by_accident(tmp_path):
    path = make_regression(tmp_path / "r.zarr", 4000, 4, chunk_rows=1000, seed=2)
    ds = sm.open_dataset(path)
    before = sum(read.reads.values())
    a, b = sm.Ridge(alpha=1.0).fit(ds.X, ds.y), sm.Ridge(alpha=100.0).fit(ds.X, ds.y)
    assert sum(read.reads.values()) - before == 2 * 4 * 2  # two passes: X and y, 4 chunks each
    assert not a.statistics_reused_ and not b.statistics_reused_
    before = sum(read.reads.values())
    with sm.reuse_statistics() as stats:
        c, d = sm.Ridge(alpha=1.0).fit(ds.X, ds.y), sm.Ridge(alpha=100.0).fit(ds.X, ds.y)
        p = [sm.PCA(n_components=k).fit(ds.X) for k in (1, 2, 4)]  # n_components nest: one pass for all
    assert sum(read.reads.values()) - before == 4 * 2 + 4
    assert stats.log == ["computed", "reused", "computed", "reused", "reused"]
    assert not c.statistics_reused_ and d.statistics_reused_ and [q.statistics_reused_ for q in p] == [0, 1, 1]
    np.testing.assert_allclose(d.coef_, b.coef_, rtol=1e-12)
    np.testing.assert_allclose(p[0].components_, p[2].components_[:1], rtol=1e-12)
