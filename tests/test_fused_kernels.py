"""The fused search's compiled kernels against the arithmetic they replace, on small blocks.

- ``_residuals``: each member's loss derivative equals the plain estimator's (``sgd._kernels.loss_gradient``,
  libm's ``exp``) to a few ulps, for every loss, one target column or one per member, margins from -800 to 800.
- ``label_counts``: the two-class confusion counts of every member, read through cached tiles, equal those of
  the margins ``X[keep] @ W`` (the product the scoring pass used to form), a partial last tile included; a
  non-finite margin (a NaN row, a diverged member) is reported.
"""

from __future__ import annotations

import numpy as np
import pytest

from scaleml_dask.model_selection._fused_kernels import _TILE, _residuals, label_counts
from scaleml_dask.sgd._kernels import loss_gradient


@pytest.mark.parametrize("loss_code", [0, 1, 2])
@pytest.mark.parametrize("columns", [1, 3])
def test_residuals_equal_the_plain_estimators_loss_gradient(loss_code, columns):
    rng = np.random.default_rng(loss_code * 10 + columns)
    b, M = 257, 6
    Z = rng.normal(scale=6.0, size=(b, M))
    Z[0] = [-800.0, 800.0, 0.0, -708.2, 37.5, -1e-300]
    Tb = (rng.random((b, columns)) > 0.5).astype(np.float64)
    tcol = np.arange(M, dtype=np.int64) % columns
    E = np.full((b, M), np.nan)
    _residuals(Z, Tb, tcol, loss_code, E, np.empty((b, M)), np.empty(b * M, dtype=np.int64))
    plain = np.array([[loss_gradient(Z[q, c], Tb[q, tcol[c]], loss_code) for c in range(M)] for q in range(b)])
    np.testing.assert_allclose(E, plain, rtol=1e-14, atol=1e-16)


def test_label_counts_equal_the_counts_of_the_margins_and_report_non_finite_ones():
    rng = np.random.default_rng(0)
    n, d, m = 3 * _TILE + 37, 7, 5
    X = rng.normal(size=(n, d))
    T = (rng.random((n, 1)) > 0.4).astype(np.float64)
    W = rng.normal(size=(d + 1, m))
    keep = np.sort(rng.choice(n, size=2 * _TILE + 91, replace=False))
    predicted, hits = np.zeros(m), np.zeros(m)
    assert label_counts(X, keep, W, T, predicted, hits)
    positive = (X[keep] @ W[:-1] + W[-1]) > 0
    assert predicted.tolist() == positive.sum(axis=0).tolist()
    assert hits.tolist() == (T[keep, 0] @ positive).tolist()
    assert 0 < hits.sum() < predicted.sum() < m * len(keep)  # the counts are not trivial

    diverged = W.copy()
    diverged[:, 2] = 1e308  # a member whose margins overflow: reported; the others counted as before
    predicted, hits = np.zeros(m), np.zeros(m)
    assert not label_counts(X, keep, diverged, T, predicted, hits)
    positive = (X[keep] @ W[:-1] + W[-1]) > 0
    others = [0, 1, 3, 4]
    assert predicted[others].tolist() == positive[:, others].sum(axis=0).tolist()

    bad = X.copy()
    bad[keep[-1], 3] = np.nan  # a NaN row in the last, partial tile
    assert not label_counts(bad, keep, W, T, np.zeros(m), np.zeros(m))
    assert label_counts(bad, keep[:-1], W, T, np.zeros(m), np.zeros(m))  # the row left out: all finite
