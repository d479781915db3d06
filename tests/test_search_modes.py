"""The fused searches beyond local-mode SGD: online learners, sync-mode SGD, and successive halving whose resource is
the samples seen (early rungs read only the chunks they need).

- Online learners: each fused candidate on each split equals a fresh learner fed that split's training rows in
  order by ``learn_many`` in batches of ``batch_size`` (``learn_rows``, the contract), to 1e-10 — weights, optimizer
  memory and counters; two reads of each chunk (the chain and the scoring pass), counted by the reader; divergent
  candidates stopped and reported.
- Sync-mode SGD: each fused candidate on each split equals a plain sync fit on that split's training rows (1e-10),
  each chunk read once for the whole search (counted on the workers); async mode is not fused and says why.
- Halving on samples: the rungs' chunk reads counted; each surviving candidate equals the plain estimator
  continued by ``partial_fit`` over the same chunks (1e-10).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.base import clone

import scaleml_dask as sm
from scaleml_dask._folds import TEST, TRAIN
from scaleml_dask.io import read
from scaleml_dask.io.catalog import open_dataset
from scaleml_dask.io.synthetic import make_logistic
from scaleml_dask.model_selection import GridSearchCV, HalvingRandomSearchCV, KFold, cross_validate
from scaleml_dask.model_selection._fused_online import learn_rows
from scaleml_dask.model_selection._split import select_rows

N = 2500


def _online_problem(kind: str):
    rng = np.random.default_rng({"logistic": 1, "perceptron": 2, "linear": 3}[kind])
    X = rng.normal(size=(N, 4))
    z = X @ np.array([1.5, -1.0, 0.5, 0.0]) + 0.3
    if kind == "linear":
        y, learner = z + 0.2 * rng.normal(size=N), sm.online.LinearRegression()
    else:
        y = (z + rng.logistic(size=N) > 0).astype(int)
        learner = sm.online.LogisticRegression() if kind == "logistic" else sm.online.Perceptron()
    return da.from_array(X, chunks=(600, 4)), da.from_array(y, chunks=600), learner


ONLINE_GRID = [{"optimizer": ["sgd", "adagrad"], "learning_rate": [0.05, 0.5], "l2": [0.0, 1e-3]},
               {"optimizer": ["adam"], "learning_rate": [0.02], "fit_intercept": [True, False], "beta1": [0.8]}]


@pytest.mark.parametrize("kind", ["logistic", "perceptron", "linear"])
def test_every_fused_online_candidate_equals_a_learner_fed_its_split_rows(kind):
    dX, dy, learner = _online_problem(kind)
    cv = KFold(3, random_state=4)
    search = GridSearchCV(learner, ONLINE_GRID, cv=cv).fit(dX, dy, batch_size=128)
    assert search.passes_ == 2  # the chain, then the scoring pass
    plan = cv.make_plan(N, dX.chunks[0])
    counts = plan.chunk_counts(dX.chunks[0])
    res = search.cv_results_
    assert not res["diverged"].any()
    for c, params in enumerate(res["params"]):
        for s, fused in enumerate(search.cv_estimators_[c]):
            X_train, y_train = (select_rows(a, plan, s, TRAIN, counts=counts) for a in (dX, dy))
            ref = learn_rows(clone(learner).set_params(**params), X_train, y_train, 128)
            np.testing.assert_allclose(fused.state_, ref.state_, rtol=0, atol=1e-10)  # weights, optimizer memory
            assert (fused.n_updates_, fused.n_seen_) == (ref.n_updates_, ref.n_seen_)
            if c == 0:  # the split's score is the learner's on the split's test rows
                X_test, y_test = (select_rows(a, plan, s, TEST, counts=counts).compute() for a in (dX, dy))
                pred = ref.predict_many(X_test)
                expected = (np.mean(pred == y_test) if kind != "linear" else
                            1 - np.sum((y_test - pred) ** 2) / np.sum((y_test - y_test.mean()) ** 2))
                assert res[f"split{s}_test_score"][c] == pytest.approx(expected, abs=1e-12)
    best = learn_rows(clone(learner).set_params(**search.best_params_), dX, dy, 128)
    np.testing.assert_allclose(search.best_estimator_.state_, best.state_, rtol=0, atol=0)
    assert search.predict(dX[:5].compute()).shape == (5,)


def test_an_online_search_reads_each_chunk_twice_and_stops_divergent_candidates(tmp_path):
    path = make_logistic(tmp_path / "l.zarr", 3000, 4, chunk_rows=1000, seed=2)
    grid = {"learning_rate": [0.1, 1.0, 1e6], "optimizer": ["sgd"]}
    before = sum(read.reads.values())
    search = GridSearchCV(sm.online.LinearRegression(), grid, cv=3, scoring="neg_mean_squared_error").fit(
        path, batch_size=50)
    assert sum(read.reads.values()) - before == 2 * 3 * 2 + 3 * 2  # (chain + scoring) x chunks x (X, y); refit
    res = search.cv_results_
    assert res["diverged"].tolist() == [False, False, True]
    assert "chunk 1" in res["diverged_reason"][2] and np.isnan(res["mean_test_score"][2])
    assert search.best_params_["learning_rate"] == 0.1
    with pytest.raises(ValueError, match="batch_size is the rows of each learn_many of an online learner"):
        GridSearchCV(sm.Ridge(), {"alpha": [1.0]}, cv=3).fit(path, batch_size=50)


def test_cross_validate_of_an_online_learner_on_the_cluster(client):
    dX, dy, learner = _online_problem("logistic")
    res = cross_validate(learner.set_params(learning_rate=0.5), dX, dy, cv=KFold(3, random_state=0),
                         scoring=["accuracy", "roc_auc"], return_estimator=True, batch_size=100)
    assert (res["test_accuracy"] > 0.7).all() and (res["test_roc_auc"] > 0.8).all()
    assert all(isinstance(e, sm.online.LogisticRegression) for e in res["estimator"])


# ------------------------------------------------------------------------------------------------------
# sync-mode SGD: every candidate takes each synchronous step from the same mini-batches, data read once
# ------------------------------------------------------------------------------------------------------


def test_every_fused_sync_candidate_equals_a_plain_sync_fit(client, tmp_path):
    path = make_logistic(tmp_path / "s.zarr", 3000, 4, chunk_rows=750, seed=6)
    est = sm.SGDClassifier(mode="sync", epochs=2, batch_size=100, classes=[0, 1], random_state=3)
    grid = [{"learning_rate": ["adam", "adagrad"], "alpha": [1e-4, 1e-2]},
            {"learning_rate": ["constant"], "eta0": [0.05, 1e4], "penalty": ["l1"]}]
    cv = KFold(3, random_state=5)
    def reads():
        return sum(read.reads.values())

    before = client.run(reads)
    search = GridSearchCV(est, grid, cv=cv, refit=False).fit(path)
    after = client.run(reads)
    assert search.passes_ == 1
    assert sum(after.values()) - sum(before.get(w, 0) for w in after) == 4 * 2  # each chunk of X, y read once
    res = search.cv_results_
    assert res["diverged"].tolist() == [False] * 5 + [True]  # eta0=1e4: stopped and reported
    ds = open_dataset(path)
    dX, dy = ds["X"].data, ds["y"].data
    plan = cv.make_plan(3000, dX.chunks[0])
    counts = plan.chunk_counts(dX.chunks[0])
    for c in range(5):
        for s, fused in enumerate(search.cv_estimators_[c]):
            X_train, y_train = (select_rows(a, plan, s, TRAIN, counts=counts) for a in (dX, dy))
            plain = clone(est).set_params(**res["params"][c]).fit(X_train, y_train)
            np.testing.assert_allclose(fused.coef_, plain.coef_, rtol=0, atol=1e-10)
            np.testing.assert_allclose(fused.intercept_, plain.intercept_, rtol=0, atol=1e-10)
    X_test, y_test = (select_rows(a, plan, 0, TEST, counts=counts).compute() for a in (dX, dy))
    assert res["split0_test_score"][0] == pytest.approx(search.cv_estimators_[0][0].score(X_test, y_test), abs=1e-12)


def test_a_search_never_reuses_another_searchs_targets(client):
    """Two searches over the same rows, every label flipped in the second: the second learns the negated weights,
    nothing of the first's pass carried over (the workers keep only memberships, keyed by the split plan)."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(1800, 3))
    y = (X @ [1.0, -2.0, 0.5] + rng.logistic(size=1800) > 0).astype(int)
    est = sm.SGDClassifier(mode="local", rounds=2, batch_size=50, classes=[0, 1])
    fits = [GridSearchCV(est, {"alpha": [1e-4, 1e-2]}, cv=KFold(3, random_state=0), refit=False).fit(
        da.from_array(X, chunks=600), da.from_array(labels, chunks=600)) for labels in (y, 1 - y)]
    for first, flipped in zip(*(f.cv_estimators_ for f in fits)):
        for a, b in zip(first, flipped):
            np.testing.assert_allclose(b.coef_, -a.coef_, rtol=0, atol=1e-9)
            np.testing.assert_allclose(b.intercept_, -a.intercept_, rtol=0, atol=1e-9)


def test_async_mode_is_not_fused_and_says_why():
    from scaleml_dask.model_selection._fused import ASYNC_NOT_FUSED, fusable

    est = sm.SGDRegressor(mode="async")
    assert fusable(est, [{"alpha": 1e-4}]) == ASYNC_NOT_FUSED
    assert "not reproducible" in ASYNC_NOT_FUSED
    assert fusable(sm.SGDRegressor(mode="local"), [{"mode": "sync"}, {"mode": "local"}]) == "the candidates mix modes"


# ------------------------------------------------------------------------------------------------------
# successive halving on samples: early rungs read only the chunks they need, survivors continue
# ------------------------------------------------------------------------------------------------------


@pytest.fixture
def planned_rounds(monkeypatch):
    """The rounds (chunks and pieces) the halving searches of a test planned (``_search._sample_rounds``)."""
    from scaleml_dask.model_selection import _search

    rounds = []
    plan = _search._sample_rounds

    def spy(*args):
        out = plan(*args)
        rounds.extend(out[0])
        return out

    monkeypatch.setattr(_search, "_sample_rounds", spy)
    return rounds


def test_halving_on_samples_reads_only_what_a_rung_needs_and_survivors_equal_partial_fits(tmp_path, planned_rounds):
    rounds = planned_rounds
    path = make_logistic(tmp_path / "h.zarr", 4000, 4, chunk_rows=1000, seed=4)
    est = sm.SGDClassifier(mode="local", rounds=9, batch_size=100, classes=[0, 1])
    grid = {"alpha": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1], "eta0": [0.001, 0.01, 0.1]}
    cv = KFold(3, random_state=0)
    before = sum(read.reads.values())
    h = HalvingRandomSearchCV(est, grid, n_candidates=9, factor=3, cv=cv, random_state=0, refit=False,
                              min_resources=660).fit(path)  # one chunk's training samples: rungs of whole chunks
    res = h.cv_results_
    assert h.n_candidates_ == [9, 3, 1] and len(rounds[0]) == 1  # rung 0: one chunk of the four
    assert h.passes_ == len(rounds) + 1
    assert sum(read.reads.values()) - before == 2 * (sum(map(len, rounds)) + 4)  # + the last rung's scoring pass
    assert res["n_rounds"][:9].tolist() == [1] * 9 and res["n_rounds"][12] == len(rounds)
    first = res["mean_test_score"][:9]
    assert [res["params"][i] for i in range(9, 12)] == [res["params"][i] for i in np.argsort(-first, kind="stable")[:3]]
    ds = open_dataset(path)
    X, y = ds["X"].values, ds["y"].values
    plan = cv.make_plan(4000, ds["X"].data.chunks[0])
    for s, fused in enumerate(h.cv_estimators_[12]):
        plain = clone(est).set_params(**res["params"][12])
        for chunks in rounds:  # each round: the split's training rows of the round's chunks, one block each
            blocks = [np.arange(1000 * c, 1000 * (c + 1)) for c in chunks]
            blocks = [b[plan.memberships(b, y[b])[s] == TRAIN] for b in blocks]
            plain.partial_fit(da.concatenate([da.from_array(X[b]) for b in blocks]),
                              da.concatenate([da.from_array(y[b]) for b in blocks]))
        np.testing.assert_allclose(fused.coef_, plain.coef_, rtol=0, atol=1e-10)
        np.testing.assert_allclose(fused.intercept_, plain.intercept_, rtol=0, atol=1e-10)


def test_halving_at_scikit_learns_smallest_has_its_schedule_and_trains_pieces_of_chunks(tmp_path, planned_rounds):
    """``min_resources="smallest"`` as scikit-learn defines it (2 x splits x classes samples): the same resources
    and candidates per iteration as scikit-learn's ``HalvingRandomSearchCV``; each rung smaller than a chunk trains
    on just its samples' rows of one chunk (one chunk read per rung), and the survivor equals partial fits on
    exactly those rows."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.linear_model import SGDClassifier as SkSGD
    from sklearn.model_selection import HalvingRandomSearchCV as SkHalving

    rounds = planned_rounds
    path = make_logistic(tmp_path / "s.zarr", 4000, 4, chunk_rows=1000, seed=4)
    ds = open_dataset(path)
    X, y = ds["X"].values, ds["y"].values
    grid = {"alpha": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1], "eta0": [0.001, 0.01, 0.1]}
    est = sm.SGDClassifier(mode="local", rounds=9, batch_size=10, classes=[0, 1])
    cv = KFold(3, random_state=0)
    for n, factor in ((9, 3), (15, 2)):
        rounds.clear()
        before = sum(read.reads.values())
        h = HalvingRandomSearchCV(est, grid, n_candidates=n, factor=factor, cv=cv, random_state=0,
                                  refit=False).fit(path)
        ref = SkHalving(SkSGD(max_iter=5, tol=None), grid, n_candidates=n, factor=factor, cv=3, random_state=0,
                        refit=False).fit(X, y)
        assert h.min_resources_ == ref.min_resources_ == 12
        assert h.n_resources_ == ref.n_resources_ and h.n_candidates_ == ref.n_candidates_
        assert (h.n_iterations_, h.n_required_iterations_) == (ref.n_iterations_, ref.n_required_iterations_)
        assert all(len(r) == 1 and len(r[0]) == 3 for r in rounds)  # every rung: a piece of one chunk
        assert sum(read.reads.values()) - before == 2 * (len(rounds) + 4)  # a chunk per rung + the scoring pass
    plan = cv.make_plan(4000, ds["X"].data.chunks[0])
    last = len(h.cv_results_["params"]) - 1
    for s, fused in enumerate(h.cv_estimators_[last]):
        plain = clone(est).set_params(**h.cv_results_["params"][last])
        for ((c, first, end),) in rounds:  # each round: those training rows of the split in the chunk
            rows = np.arange(1000 * c, 1000 * (c + 1))
            rows = rows[plan.memberships(rows, y[rows])[s] == TRAIN][first:end]
            plain.partial_fit(da.from_array(X[rows]), da.from_array(y[rows]))
        np.testing.assert_allclose(fused.coef_, plain.coef_, rtol=0, atol=1e-10)
        np.testing.assert_allclose(fused.intercept_, plain.intercept_, rtol=0, atol=1e-10)


def test_a_fused_search_without_held_out_rows_has_no_loss_curve_and_no_divergence():
    """``validation_fraction=0``: no held-out rows, so no held-out loss — not a NaN loss that stopped every
    candidate as diverged (it did); the candidates equal their plain fits."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1200, 3))
    y = (X @ [1.0, -2.0, 0.5] + rng.logistic(size=1200) > 0).astype(int)
    est = sm.SGDClassifier(mode="local", rounds=2, batch_size=50, validation_fraction=0.0, classes=[0, 1])
    cv = KFold(3, random_state=0)
    dX, dy = da.from_array(X, chunks=400), da.from_array(y, chunks=400)
    search = GridSearchCV(est, {"alpha": [1e-4, 1e-2]}, cv=cv, refit=False).fit(dX, dy)
    res = search.cv_results_
    assert not res["diverged"].any() and np.isfinite(res["mean_test_score"]).all()
    assert np.isnan(res["heldout_loss"]).all()
    plan = cv.make_plan(1200, dX.chunks[0])
    X_train, y_train = (select_rows(a, plan, 1, TRAIN, y=dy) for a in (dX, dy))
    for c, params in enumerate(res["params"]):
        plain = clone(est).set_params(**params).fit(X_train, y_train)
        np.testing.assert_allclose(search.cv_estimators_[c][1].coef_, plain.coef_, rtol=0, atol=1e-10)


def test_an_rls_search_runs_unfused_each_candidate_a_learner_fed_its_split_rows():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(900, 3))
    y = X @ np.array([1.0, 2.0, -1.0]) + 0.5 + 0.1 * rng.normal(size=900)
    dX, dy = da.from_array(X, chunks=300), da.from_array(y, chunks=300)
    cv = KFold(3, random_state=1)
    search = GridSearchCV(sm.online.RLS(), {"forgetting": [0.9, 1.0]}, cv=cv).fit(dX, dy, batch_size=100)
    assert search.passes_ is None  # not fused: each candidate x split learned on its own
    plan = cv.make_plan(900, dX.chunks[0])
    for c, params in enumerate(search.cv_results_["params"]):
        X_train, y_train = (select_rows(a, plan, 0, TRAIN).compute() for a in (dX, dy))
        X_test, y_test = (select_rows(a, plan, 0, TEST).compute() for a in (dX, dy))
        ref = learn_rows(sm.online.RLS(**params), X_train, y_train, 100)
        pred = ref.predict_many(X_test)
        r2 = 1 - np.sum((y_test - pred) ** 2) / np.sum((y_test - y_test.mean()) ** 2)
        assert search.cv_results_["split0_test_score"][c] == pytest.approx(r2, abs=1e-10)
    assert search.best_params_ == {"forgetting": 1.0}
