"""Synthetic generators: deterministic per (seed, chunk), same data on a cluster as in-process, known truth."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import scaleml_dask as sm
from scaleml_dask.io.synthetic import drift_chunk, make_drift, make_logistic, make_mixture, make_regression


@pytest.mark.slow
def test_chunks_identical_on_cluster_and_in_process(tmp_path, client):
    make_regression(tmp_path / "local.zarr", 10_000, 4, chunk_rows=1_500, seed=7)
    make_regression(tmp_path / "cluster.zarr", 10_000, 4, chunk_rows=1_500, seed=7, client=client)
    a, b = sm.open_dataset(tmp_path / "local.zarr"), sm.open_dataset(tmp_path / "cluster.zarr")
    np.testing.assert_array_equal(a["X"].values, b["X"].values)
    np.testing.assert_array_equal(a["y"].values, b["y"].values)
    make_regression(tmp_path / "other.zarr", 10_000, 4, chunk_rows=1_500, seed=8)
    assert not np.array_equal(sm.open_dataset(tmp_path / "other.zarr")["X"].values, a["X"].values)


def test_regression_planted_coefficients(tmp_path):
    ds = sm.open_dataset(make_regression(tmp_path / "r.zarr", 20_000, 5, chunk_rows=4_000, noise=0.5, seed=1))
    X, y = ds["X"].values, ds["y"].values
    A = np.column_stack([np.ones(len(X)), X])
    beta = np.linalg.lstsq(A, y, rcond=None)[0]
    se = 0.5 / np.sqrt(len(X))
    assert np.max(np.abs(beta[1:] - ds.attrs["coef"])) < 5 * se
    assert abs(beta[0] - ds.attrs["intercept"]) < 5 * se
    assert np.std(y - A @ np.r_[ds.attrs["intercept"], ds.attrs["coef"]]) == pytest.approx(0.5, rel=0.03)


def test_logistic_labels_follow_planted_weights(tmp_path):
    ds = sm.open_dataset(make_logistic(tmp_path / "l.zarr", 40_000, 6, chunk_rows=10_000, seed=2))
    X, y = ds["X"].values, ds["y"].values
    assert set(np.unique(y)) == {0.0, 1.0}
    coef = np.asarray(ds.attrs["coef"])
    bayes_pred = (X @ coef + ds.attrs["intercept"]) > 0
    assert np.mean(bayes_pred == y) == pytest.approx(ds.attrs["bayes_accuracy"], abs=0.01)
    fitted = LogisticRegression(C=1e6).fit(X, y)
    cos = fitted.coef_[0] @ coef / np.linalg.norm(fitted.coef_[0]) / np.linalg.norm(coef)
    assert cos > 0.995


def test_mixture_clusters_and_labels(tmp_path):
    ds = sm.open_dataset(make_mixture(tmp_path / "m.zarr", 6_000, 3, 4, cluster_std=0.5, chunk_rows=1_000, seed=3))
    X, y = ds["X"].values, ds["y"].values
    centers = np.asarray(ds.attrs["centers"])
    assert ds["y"].dtype == np.int64 and set(np.unique(y)) == {0, 1, 2, 3}
    for k in range(4):
        np.testing.assert_allclose(X[y == k].mean(axis=0), centers[k], atol=0.1)
        assert np.std(X[y == k] - centers[k]) == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize("kind", ["abrupt", "gradual"])
def test_drift_concept_changes(tmp_path, kind):
    path = make_drift(tmp_path / "d.zarr", 40_000, 4, kind=kind, change_at=20_000, width=2_000, chunk_rows=3_000,
                      seed=4)
    ds = sm.open_dataset(path)
    X, y = ds["X"].values, ds["y"].values
    before, after = np.asarray(ds.attrs["coef_before"]), np.asarray(ds.attrs["coef_after"])
    for sl, truth in ((slice(0, 15_000), before), (slice(25_000, 40_000), after)):
        w = LogisticRegression(C=1e6).fit(X[sl], y[sl]).coef_[0]
        assert w @ truth / np.linalg.norm(w) / np.linalg.norm(truth) > 0.98
    # the same rows come out of the pure chunk function, chunk by chunk
    Xc, yc = drift_chunk(4, 2, 3_000, coef_before=before, coef_after=after, start=6_000, change_at=20_000,
                         width=2_000, kind=kind)
    np.testing.assert_array_equal(Xc, X[6_000:9_000])
    np.testing.assert_array_equal(yc, y[6_000:9_000])


@pytest.mark.slow
def test_worker_killed_while_writing_a_chunk_gives_the_same_store(process_client, tmp_path):
    """A worker SIGKILLs itself when its 2nd chunk task starts; the rerun chunks are the same bytes."""
    from faults import undisturbed_and_killed

    paths = iter(tmp_path / f"run{i}.zarr" for i in range(2))

    def generate():
        return sm.open_dataset(make_logistic(next(paths), 60_000, 6, chunk_rows=2_000, seed=5, client=process_client))

    ref, killed, record = undisturbed_and_killed(process_client, generate, "make_chunk_task", tmp_path / "killed")
    local = sm.open_dataset(make_logistic(tmp_path / "local.zarr", 60_000, 6, chunk_rows=2_000, seed=5))
    for var in ("X", "y"):
        np.testing.assert_array_equal(killed[var].values, ref[var].values)
        np.testing.assert_array_equal(killed[var].values, local[var].values)
    assert killed.attrs["bayes_accuracy"] == pytest.approx(local.attrs["bayes_accuracy"], rel=1e-12)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary store left
