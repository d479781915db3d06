"""The fused search's compiled kernels against the arithmetic they replace, on small blocks.

- ``fused_epochs``: every member of a group — log, squared and hinge loss, one target column or one per class,
  every penalty and schedule, with and without intercept, more members than a panel — ends with the weights the
  plain kernel (``sgd._kernels.local_epochs``) gives that member's parameters on the same rows, to 1e-10; a
  divergent member is switched off and the others are not disturbed; a NaN row is named.
- ``_sigmoid_into``: each sigmoid equals the plain estimator's (``sgd._kernels.loss_gradient``, libm's ``exp``)
  to a few ulps, margins from -800 to 800, and a NaN / inf margin is reported.
- ``panel_width``: members per panel (a power of two from 4 to 16, smaller for few members or large batches).
- ``label_counts``: the two-class confusion counts of every member of every disjoint part, in one read of the
  rows through each part's cached tile, equal those of the margins ``X[part] @ W`` (the product the scoring pass
  used to form), partial last tiles included; a non-finite margin (a NaN row, a diverged member) is reported for
  that part's members only.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from scaleml_dask.model_selection._fused_kernels import (
    _SMALL_GEMM,
    _TILE,
    fused_epochs,
    label_counts,
    panel_width,
)
from scaleml_dask.sgd._kernels import (
    _LOSS_CODE,
    _PENALTY_CODE,
    _SCHEDULE_CODE,
    _sigmoid_into,
    epoch_plan,
    holdout_range,
    local_epochs,
    loss_gradient,
)

#: Members of a group: (penalty, schedule, alpha, eta0, fit_intercept) — every penalty and schedule, twice over
#: so that the block is wider than one panel; the last one divergent (a constant step of 1e7 on squared loss)
#: where ``diverge``.
_MEMBERS = [(p, s, a, e, fi) for p in ("l2", "l1", None) for s in ("constant", "invscaling", "adagrad", "adam")
            for a, e, fi in ((1e-4, 0.05, True), (1e-2, 0.01, False))]


def _group(loss: str, columns: int, n_members: int, diverge: bool):
    rng = np.random.default_rng(columns * 7 + len(loss))
    n, d = 1500, 6
    X = rng.normal(size=(n, d))
    z = X @ rng.normal(size=(d, columns))
    if loss == "squared":
        T = z + rng.normal(size=z.shape)
    elif columns == 1:
        T = (z + rng.logistic(size=z.shape) > 0).astype(np.float64)
    else:
        T = (z.argmax(axis=1)[:, None] == np.arange(columns)).astype(np.float64)
    rows = np.flatnonzero(rng.random(n) < 0.65)  # the split's training rows of the chunk
    members = [_MEMBERS[i % len(_MEMBERS)] for i in range(n_members)]
    if diverge:
        members[-1] = ("l2", "constant", 1e-4, 1e7, True)  # squared loss: the weights blow up
    return X, T, rows, members


@pytest.mark.parametrize("loss,columns", [("log_loss", 1), ("log_loss", 3), ("squared", 1), ("hinge", 2)])
def test_every_member_equals_the_plain_kernel_on_its_rows(loss, columns):
    diverge = loss == "squared"
    X, T, rows, members = _group(loss, columns, 21 if columns == 1 else 9, diverge)
    d, K = X.shape[1], T.shape[1]
    seed, block, batch_size, seeds, t0 = 5, 3, 32, [11, 12], 4.0
    lo, hi = holdout_range(seed, block, len(rows), 0.1)
    start, n_train = hi % len(rows), len(rows) - (hi - lo)
    plans = [epoch_plan(s, block, n_train, batch_size) for s in seeds]
    offsets = np.array([o for o, _ in plans], dtype=np.int64)
    orders = np.stack([order for _, order in plans])
    # member i trains output column i % K, from weights of its own
    M = len(members)
    tcol = np.arange(M, dtype=np.int64) % K
    W0 = np.random.default_rng(0).normal(scale=0.1, size=(d + 1, M))
    W = W0.copy()
    moments = [np.zeros((M, d + 1)) for _ in range(3)]
    active = np.ones(M, dtype=bool)
    steps, bad = fused_epochs(
        X, T, rows, start, n_train, offsets, orders, batch_size, _LOSS_CODE[loss], W, tcol,
        np.array([m[4] for m in members]), np.array([_PENALTY_CODE[m[0]] for m in members], dtype=np.int64),
        np.array([m[2] for m in members]), np.array([_SCHEDULE_CODE[m[1]] for m in members], dtype=np.int64),
        np.array([m[3] for m in members]), np.full(M, 0.3), t0, *moments, active)
    assert (steps, bad) == (orders.size, -1)
    assert active.tolist() == [not (diverge and c == M - 1) for c in range(M)]
    Xs, Ts = X[rows], T[rows]
    for c, (penalty, schedule, alpha, eta0, fit_intercept) in enumerate(members):
        if not active[c]:
            continue
        W_plain = np.zeros((d + 1, K))
        W_plain[:, tcol[c]] = W0[:, c]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the other outputs of the plain fit are not this member's
            plain, plain_steps, _ = local_epochs(
                W_plain, Xs, Ts, start=start, n_train=n_train, seeds=seeds, block=block, batch_size=batch_size,
                loss=loss, penalty=penalty, alpha=alpha, fit_intercept=fit_intercept, schedule=schedule, eta0=eta0,
                power_t=0.3, t0=t0)
        assert plain_steps == steps
        np.testing.assert_allclose(W[:, c], plain[:, tcol[c]], rtol=0, atol=1e-10)
        assert not np.array_equal(W[:, c], W0[:, c])  # it trained
    if diverge:
        assert np.isfinite(W[:, :-1]).all()


def test_a_nan_row_is_named_by_its_row_of_the_chunk():
    X, T, rows, members = _group("log_loss", 1, 3, False)
    X[rows[40], 2] = np.nan
    plan = epoch_plan(0, 0, len(rows), 16)
    M = 3
    steps, bad = fused_epochs(X, T, rows, 0, len(rows), np.array([plan[0]]), plan[1][None, :], 16, 1,
                              np.zeros((X.shape[1] + 1, M)), np.zeros(M, np.int64), np.ones(M, bool),
                              np.ones(M, np.int64), np.full(M, 1e-4), np.zeros(M, np.int64), np.full(M, 0.1),
                              np.full(M, 0.5), 0.0, *(np.zeros((M, X.shape[1] + 1)) for _ in range(3)),
                              np.ones(M, bool))
    assert (steps, bad) == (0, rows[40])


def test_sigmoid_equals_the_plain_estimators_and_reports_non_finite_margins():
    rng = np.random.default_rng(3)
    z = rng.normal(scale=6.0, size=4001)
    z[:7] = [-800.0, 800.0, 0.0, -708.2, 37.5, -1e-300, -36.0]
    s = np.full_like(z, np.nan)
    assert _sigmoid_into(z, s)
    plain = np.array([loss_gradient(v, 0.0, 1) for v in z])
    np.testing.assert_allclose(s, plain, rtol=1e-14, atol=1e-300)
    assert (s[z > 0] >= 0.5).all() and (s[z <= 0] <= 0.5).all()
    for bad in (np.nan, np.inf, -np.inf):
        z2 = z.copy()
        z2[1234] = bad
        assert not _sigmoid_into(z2, s)


def test_panel_width():
    assert [panel_width(m, 1000, 33) for m in (1, 4, 5, 8, 9, 16, 17, 64)] == [4, 4, 8, 8, 16, 16, 16, 16]
    assert 16 * 1000 * 33 <= _SMALL_GEMM < 16 * 2000 * 33
    assert panel_width(64, 2000, 33) == 8 and panel_width(64, 10 ** 6, 33) == 4


def test_label_counts_equal_the_counts_of_the_margins_of_each_part_and_report_non_finite_ones():
    rng = np.random.default_rng(0)
    n, d = 4 * _TILE + 37, 7
    X = rng.normal(size=(n, d))
    T = (rng.random((n, 1)) > 0.4).astype(np.float64)
    part = rng.integers(-1, 3, n)  # three disjoint parts and rows in none; parts of 3, 5 and 2 members
    bounds = np.array([0, 3, 8, 10])
    W = rng.normal(size=(d + 1, 10))

    def count(X, W):
        Wp = np.full((3, d + 1, 5), np.nan)  # padding: never counted
        for p in range(3):
            Wp[p, :, :bounds[p + 1] - bounds[p]] = W[:, bounds[p]:bounds[p + 1]]
        predicted, hits, finite, sizes = np.zeros((3, 5)), np.zeros((3, 5)), np.zeros((3, 5), dtype=bool), np.zeros(
            (3, 2))
        label_counts(X, part, Wp, T, predicted, hits, finite, sizes)
        assert sizes.tolist() == [[(part == p).sum(), T[part == p, 0].sum()] for p in range(3)]
        return [np.concatenate([a[p, :bounds[p + 1] - bounds[p]] for p in range(3)]) for a in (predicted, hits, finite)]

    predicted, hits, finite = count(X, W)
    for p in range(3):
        keep, at = part == p, slice(bounds[p], bounds[p + 1])
        positive = (X[keep] @ W[:-1, at] + W[-1, at]) > 0
        assert predicted[at].tolist() == positive.sum(axis=0).tolist()
        assert hits[at].tolist() == (T[keep, 0] @ positive).tolist()
    assert finite.all()
    assert 0 < hits.sum() < predicted.sum() < 10 * (part >= 0).sum() / 2  # the counts are not trivial

    diverged = W.copy()
    diverged[:, 4] = 1e308  # a member whose margins overflow: reported; the others counted as before
    predicted2, _, finite = count(X, diverged)
    assert finite.tolist() == [c != 4 for c in range(10)]
    assert np.delete(predicted2, 4).tolist() == np.delete(predicted, 4).tolist()

    bad = X.copy()
    r = np.flatnonzero(part == 1)[-1]
    bad[r, 3] = np.nan  # a NaN row of part 1, in its last, partial tile: that part's members only
    assert count(bad, W)[2].tolist() == [not 3 <= c < 8 for c in range(10)]
    part[r] = -1  # the row in no part: all finite
    assert count(bad, W)[2].all()


