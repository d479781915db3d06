"""Model selection at scale: splits without copies, cross-validation, the fused search and successive halving.

- Splits: the same rows whatever the chunking and the scheduler, disjoint and covering, scikit-learn's sizes.
- The fused search: every candidate on every split equals a separately fitted plain estimator with the same
  parameters and seed on that split's training rows (1e-10), binary / multiclass / regression; it reads each
  chunk once per round (+ one scoring pass), counted by the reader; divergent candidates are stopped at once and
  reported, never averaged or chosen.
- The generic path and ``cross_validate`` against scikit-learn's on the same splits.
"""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge as SkRidge
from sklearn.model_selection import GridSearchCV as SkGridSearchCV
from sklearn.model_selection import cross_validate as sk_cross_validate

import scaleml_dask as sm
from scaleml_dask._folds import NONE, TEST, TRAIN
from scaleml_dask.io import read
from scaleml_dask.io.synthetic import make_logistic
from scaleml_dask.model_selection import (
    GridSearchCV,
    HalvingRandomSearchCV,
    KFold,
    RandomizedSearchCV,
    ShuffleSplit,
    StratifiedKFold,
    cross_validate,
    train_test_split,
)
from scaleml_dask.model_selection._split import StratifiedShuffleSplit, select_rows
from scaleml_dask.passes import map_row_chunks

N = 2003


@pytest.fixture(scope="module")
def labels():
    return np.random.default_rng(0).choice([0, 1, 2], size=N, p=[0.6, 0.3, 0.1])


# ------------------------------------------------------------------------------------------------------
# splits
# ------------------------------------------------------------------------------------------------------


def _memberships(plan, y, chunks, scheduler):
    """Every row's membership, computed by tasks over ``y`` chunked as given."""
    dy = da.from_array(y, chunks=chunks)

    def block(b, *, chunk_index, row_start):
        return plan.memberships(np.arange(row_start, row_start + len(b)), b)

    return np.concatenate(dask.compute(*map_row_chunks(block, dy), scheduler=scheduler), axis=1)


SPLITTERS = [KFold(5, random_state=1), KFold(4, shuffle=False), StratifiedKFold(5, random_state=2),
             ShuffleSplit(3, test_size=0.2, train_size=0.5, random_state=3),
             StratifiedShuffleSplit(3, test_size=0.25, random_state=4)]


@pytest.mark.parametrize("cv", SPLITTERS, ids=lambda c: type(c).__name__)
def test_splits_are_the_same_whatever_the_chunking_disjoint_and_covering(cv, labels):
    ref = None
    for chunks in (N, 500, 137):
        dy = da.from_array(labels, chunks=chunks)
        plan = cv.make_plan(N, dy.chunks[0], dy)
        M = _memberships(plan, labels, chunks, "threads")
        ref = M if ref is None else ref
        np.testing.assert_array_equal(M, ref)
        counts = plan.chunk_counts(dy.chunks[0], dy)  # the counts selections are built on
        np.testing.assert_array_equal(counts.sum(axis=0), np.stack([(M == c).sum(axis=1) for c in (0, 1, 2)], 1))
    if isinstance(cv, KFold):  # a partition: every row in exactly one test fold, and trains in the others
        assert ((ref == TEST).sum(axis=0) == 1).all() and (ref != NONE).all()
    sizes = (ref == TEST).sum(axis=1)
    assert sizes.max() - sizes.min() <= (1 if "KFold" in type(cv).__name__ else 0)
    if isinstance(cv, StratifiedKFold):  # every class spread evenly (scikit-learn's guarantee)
        per_class = np.stack([np.bincount(labels[ref[s] == TEST], minlength=3) for s in range(5)])
        assert (per_class.max(axis=0) - per_class.min(axis=0) <= 1).all()


def test_kfold_counts_each_chunks_folds_as_its_memberships_do():
    """``KFold`` counts a chunk's folds straight from the rows' positions (in threads past 2**20 rows): per chunk
    and split, the counts of its memberships."""
    from scaleml_dask.model_selection._split import SplitPlan

    for n, chunks in ((1000, (137,) * 7 + (41,)), (2**20 + 5, (300_000,) * 3 + (2**20 - 899_995,))):
        plan = KFold(3, random_state=5).make_plan(n, chunks)
        np.testing.assert_array_equal(plan.chunk_counts(chunks), SplitPlan.chunk_counts(plan, chunks))


def test_splits_are_the_same_on_the_cluster(client, labels):
    """The memberships computed in tasks on 2 worker processes equal those of the threaded scheduler."""
    plan = StratifiedKFold(3, random_state=7).make_plan(N, (400,) * 5 + (3,), da.from_array(labels, chunks=400))
    np.testing.assert_array_equal(_memberships(plan, labels, 400, "dask.distributed"),
                                  _memberships(plan, labels, 400, "threads"))


def test_split_sizes_are_scikit_learns():
    from sklearn import model_selection as skms

    X = np.zeros((N, 1))
    for ours, ref in ((KFold(7, random_state=0), skms.KFold(7)),
                      (ShuffleSplit(4, test_size=0.15, train_size=0.6, random_state=0),
                       skms.ShuffleSplit(4, test_size=0.15, train_size=0.6))):
        assert [(len(a), len(b)) for a, b in ours.split(X)] == [(len(a), len(b)) for a, b in ref.split(X)]
    np.testing.assert_array_equal(np.concatenate([t for _, t in KFold(4, shuffle=False).split(X)]), np.arange(N))


def test_train_test_split_selects_without_copies_the_same_rows_for_any_chunking(tmp_path, labels):
    X = np.arange(2.0 * N).reshape(N, 2)
    ref = train_test_split(X, labels, test_size=0.3, random_state=5, stratify=labels)
    for chunks in (300, 1000):
        out = train_test_split(da.from_array(X, chunks=(chunks, 2)), da.from_array(labels, chunks=chunks),
                               test_size=0.3, random_state=5, stratify=labels)
        assert all(isinstance(a, da.Array) for a in out)
        for a, b in zip(out, ref):
            np.testing.assert_array_equal(a.compute(), b)
    X_train, X_test, y_train, y_test = ref
    assert len(X_test) == int(np.ceil(0.3 * N)) and len(X_train) + len(X_test) == N
    assert sorted(np.concatenate([X_train[:, 0], X_test[:, 0]]).tolist()) == X[:, 0].tolist()
    shares = [np.bincount(y, minlength=3) / len(y) for y in (y_train, y_test)]
    np.testing.assert_allclose(shares[0], shares[1], atol=0.01)
    path = make_logistic(tmp_path / "l.zarr", 1000, 3, chunk_rows=250, seed=1)
    train, test = train_test_split(sm.open_dataset(path), test_size=0.2, random_state=0, stratify="y")
    assert train.sizes["sample"] == 800 and test.sizes["sample"] == 200
    full = sm.open_dataset(path)
    assert sorted(np.concatenate([train.y.values, test.y.values]).tolist()) == sorted(full.y.values.tolist())
    with pytest.raises(ValueError, match="test_size=1.5"):
        train_test_split(X, test_size=1.5)


# ------------------------------------------------------------------------------------------------------
# the fused search equals separately fitted estimators
# ------------------------------------------------------------------------------------------------------


def _problem(kind: str):
    rng = np.random.default_rng({"binary": 1, "multiclass": 2, "regression": 3}[kind])
    X = rng.normal(size=(3000, 5))
    z = X @ rng.normal(size=5)
    if kind == "binary":
        y = (z + rng.logistic(size=3000) > 0).astype(int)
        est = sm.SGDClassifier(mode="local", rounds=3, batch_size=64, random_state=11)
    elif kind == "multiclass":
        y = np.digitize(z + rng.normal(size=3000) * 0.5, [-0.5, 0.7])
        est = sm.SGDClassifier(mode="local", rounds=2, batch_size=64, local_epochs=2, random_state=12)
    else:
        y = z + rng.normal(size=3000) * 0.3
        est = sm.SGDRegressor(mode="local", rounds=3, batch_size=64, random_state=13)
    return da.from_array(X, chunks=(700, 5)), da.from_array(y, chunks=700), est


GRIDS = {
    "binary": [{"learning_rate": ["adam"], "alpha": [1e-4, 1e-2], "eta0": [0.01, 0.05]},
               {"learning_rate": ["constant", "invscaling", "adagrad"], "penalty": ["l1", None], "eta0": [0.05]},
               {"loss": ["hinge"], "eta0": [0.02], "fit_intercept": [False, True]}],
    "multiclass": {"alpha": [1e-4, 1e-3], "learning_rate": ["adam", "adagrad"]},
    "regression": {"alpha": [1e-4, 1e-2], "learning_rate": ["adam", "invscaling"], "eta0": [0.01, 0.05]},
}


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_every_fused_candidate_equals_a_separately_fitted_estimator(kind):
    dX, dy, est = _problem(kind)
    cv = StratifiedKFold(3, random_state=21) if kind != "regression" else KFold(3, random_state=21)
    search = GridSearchCV(est, GRIDS[kind], cv=cv, refit=False).fit(dX, dy)
    assert search.passes_ == est._n_epochs + 1  # rounds + the scoring pass
    plan = cv.make_plan(3000, dX.chunks[0], dy)
    counts = plan.chunk_counts(dX.chunks[0], dy)
    for c, params in enumerate(search.cv_results_["params"]):
        assert not search.cv_results_["diverged"][c]
        for s, fused in enumerate(search.cv_estimators_[c]):
            X_train, y_train = (select_rows(a, plan, s, TRAIN, y=dy, counts=counts) for a in (dX, dy))
            plain = clone(est).set_params(**params).fit(X_train, y_train)
            np.testing.assert_allclose(fused.coef_, plain.coef_, rtol=0, atol=1e-10)
            np.testing.assert_allclose(fused.intercept_, plain.intercept_, rtol=0, atol=1e-10)
            assert fused.t_ == plain.t_
        # the score is the plain estimator's on the test rows
    s = 0
    X_test, y_test = (select_rows(a, plan, s, TEST, y=dy, counts=counts).compute() for a in (dX, dy))
    last = search.cv_estimators_[-1][s]
    assert search.cv_results_[f"split{s}_test_score"][-1] == pytest.approx(last.score(X_test, y_test), abs=1e-12)


@pytest.mark.parametrize("cv", [StratifiedKFold(3, random_state=5), ShuffleSplit(3, test_size=0.3, random_state=6)],
                         ids=["k-fold", "shuffle: test parts overlap"])
def test_every_fused_accuracy_is_its_estimators_on_its_split_rows(cv):
    """Two classes, a label metric only: every candidate's counts in one read of each chunk (disjoint parts; the
    training parts and a shuffle split's overlapping test parts take reads of their own)."""
    dX, dy, est = _problem("binary")
    search = GridSearchCV(est, {"alpha": [1e-4, 1e-2], "eta0": [0.01, 0.05, 1e4]}, cv=cv, refit=False,
                          return_train_score=True).fit(dX, dy)
    plan = cv.make_plan(3000, dX.chunks[0], dy)
    counts = plan.chunk_counts(dX.chunks[0], dy)
    scored = 0
    for c in range(len(search.cv_results_["params"])):
        for s, fused in enumerate(search.cv_estimators_[c]):
            for code, name in ((TEST, "test"), (TRAIN, "train")):
                X_part, y_part = (select_rows(a, plan, s, code, y=dy, counts=counts).compute() for a in (dX, dy))
                got = search.cv_results_[f"split{s}_{name}_score"][c]
                if search.cv_results_["diverged"][c]:
                    assert np.isnan(got)
                    continue
                assert got == pytest.approx(fused.score(X_part, y_part), abs=1e-12)
                scored += 1
    assert search.cv_results_["diverged"].sum() == 2 and scored == 4 * 3 * 2


def test_the_fused_search_on_the_cluster_equals_the_threaded_one(client):
    dX, dy, est = _problem("binary")
    grid = {"alpha": [1e-4, 1e-2], "eta0": [0.01, 0.05]}
    on_cluster = GridSearchCV(est, grid, cv=3, scoring=["accuracy", "roc_auc"], refit="roc_auc").fit(dX, dy)
    with dask.config.set(scheduler="threads"):
        threaded = GridSearchCV(est, grid, cv=3, scoring=["accuracy", "roc_auc"], refit="roc_auc").fit(dX, dy)
    for key in ("mean_test_accuracy", "mean_test_roc_auc", "heldout_loss"):
        np.testing.assert_allclose(on_cluster.cv_results_[key], threaded.cv_results_[key], rtol=1e-12)
    assert on_cluster.best_params_ == threaded.best_params_
    np.testing.assert_allclose(on_cluster.best_estimator_.coef_, threaded.best_estimator_.coef_, rtol=1e-12)


# ------------------------------------------------------------------------------------------------------
# reads, divergence, halving
# ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_logistic(tmp_path_factory.mktemp("ms") / "log.zarr", 4000, 4, chunk_rows=1000, seed=4)


def test_a_search_reads_each_chunk_once_per_round(store):
    """16 candidates x 3 folds x 3 rounds: 4 passes (3 rounds + the scoring pass), each chunk of X and y read
    once per pass — counted by the reader, which every chunk read goes through."""
    est = sm.SGDClassifier(mode="local", rounds=3, batch_size=100, classes=[0, 1])
    grid = {"alpha": [1e-5, 1e-4, 1e-3, 1e-2], "eta0": [0.003, 0.01, 0.03, 0.1]}
    before = sum(read.reads.values())
    search = GridSearchCV(est, grid, cv=KFold(3, random_state=0), refit=False).fit(store)
    assert search.passes_ == 4
    assert sum(read.reads.values()) - before == 4 * 4 * 2  # passes x chunks x (X, y)
    before = sum(read.reads.values())
    halving = HalvingRandomSearchCV(est.set_params(rounds=4), grid, n_candidates=16, factor=2,
                                    cv=KFold(3, random_state=0), resource="rounds", refit=False,
                                    random_state=0).fit(store)
    assert halving.n_resources_ == [1, 2, 4] and halving.n_candidates_ == [16, 8, 4]
    assert halving.passes_ == 5 and sum(read.reads.values()) - before == 5 * 4 * 2


def test_divergent_candidates_are_stopped_and_reported(store):
    est = sm.SGDClassifier(mode="local", rounds=4, batch_size=100, learning_rate="constant", classes=[0, 1])
    search = GridSearchCV(est, {"eta0": [0.01, 1e5], "alpha": [1e-4, 1e-3]}, cv=3).fit(store)
    res = search.cv_results_
    diverged = res["diverged"]
    assert diverged.tolist() == [p["eta0"] == 1e5 for p in res["params"]] and diverged.sum() == 2
    assert (res["diverged_round"][diverged] == 1).all()  # the loss after round 1 is past the bound
    assert all("exceeds divergence_bound" in r for r in res["diverged_reason"][diverged])
    assert (res["n_rounds"][diverged] < 4).all() and (res["n_rounds"][~diverged] == 4).all()  # stopped at once
    assert np.isnan(res["mean_test_score"][diverged]).all() and (res["rank_test_score"][diverged] == 3).all()
    assert np.isfinite(res["mean_test_score"][~diverged]).all()
    assert search.best_params_["eta0"] == 0.01


def test_a_plain_fit_that_diverges_names_the_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3))
    y = X @ [1.0, 2.0, 3.0]
    with pytest.raises(sm.sgd.DivergenceError, match=r"diverged in epoch \d") as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sm.SGDRegressor(mode="local", learning_rate="constant", eta0=50.0, rounds=5, batch_size=50).fit(X, y)
    assert 1 <= info.value.epoch <= 5
    with pytest.warns(sm.sgd.DivergenceWarning, match="after epoch 1"):
        sm.SGDClassifier(mode="local", learning_rate="constant", eta0=1e5, rounds=2, batch_size=50).fit(X, y > 0)


def test_halving_keeps_the_best_and_continues_them(store):
    est = sm.SGDClassifier(mode="local", rounds=9, batch_size=100, classes=[0, 1])
    grid = {"alpha": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1], "eta0": [0.001, 0.01, 0.1]}
    h = HalvingRandomSearchCV(est, grid, n_candidates=9, factor=3, cv=3, random_state=0,
                              min_resources=660).fit(store)  # one chunk's training samples: rungs of whole chunks
    res = h.cv_results_
    assert h.n_candidates_ == [9, 3, 1] and h.passes_ == 6  # rungs of 1, 3, 9 chunk visits: 5 rounds + scoring
    assert res["iter"].tolist() == [0] * 9 + [1] * 3 + [2]
    first = res["mean_test_score"][:9]
    kept = [res["params"][i] for i in range(9, 12)]
    best3 = [res["params"][i] for i in np.argsort(-first, kind="stable")[:3]]
    assert kept == best3
    assert h.best_index_ == 12 and h.best_params_ == res["params"][12]
    assert res["n_rounds"].tolist() == [1] * 9 + [2] * 3 + [5]  # a round: each chunk at most once
    assert h.n_resources_ == [660, 1980, 5939]  # samples seen: 1, 3, 9 chunks' training rows


# ------------------------------------------------------------------------------------------------------
# the generic path and cross_validate, against scikit-learn
# ------------------------------------------------------------------------------------------------------


def test_generic_search_equals_scikit_learns_on_the_same_splits():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1500, 4)) * [1.0, 3.0, 0.2, 1.0]
    y = X @ [1.0, 0.5, -3.0, 0.0] + rng.normal(size=1500) * 2
    cv = KFold(4, random_state=3)
    alphas = [0.01, 1.0, 100.0, 1e4]
    ours = GridSearchCV(sm.Ridge(), {"alpha": alphas}, cv=cv, scoring=["r2", "neg_mean_absolute_error"],
                        refit="r2").fit(da.from_array(X, chunks=(400, 4)), y)
    ref = SkGridSearchCV(SkRidge(), {"alpha": alphas}, cv=list(cv.split(X)),
                         scoring=["r2", "neg_mean_absolute_error"], refit="r2").fit(X, y)
    for key in ("mean_test_r2", "split2_test_r2", "mean_test_neg_mean_absolute_error", "rank_test_r2"):
        np.testing.assert_allclose(ours.cv_results_[key], ref.cv_results_[key], rtol=1e-10)
    assert ours.best_params_ == ref.best_params_
    np.testing.assert_allclose(ours.best_estimator_.coef_, ref.best_estimator_.coef_, rtol=1e-9)
    assert ours.cv_results_["statistics_reused"].tolist() == [0, 4, 4, 4]  # one moments pass per fold, shared


def test_cross_validate_has_scikit_learns_layout_and_numbers():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(1200, 3))
    y = (X @ [1.0, -1.0, 0.5] + rng.logistic(size=1200) > 0).astype(int)
    cv = StratifiedKFold(4, random_state=1)
    est = sm.SGDClassifier(mode="local", rounds=2, batch_size=50)
    ours = cross_validate(est, X, y, cv=cv, scoring=["accuracy", "roc_auc"], return_train_score=True,
                          return_estimator=True)
    ref = sk_cross_validate(est, X, y, cv=list(cv.split(X, y)), scoring=["accuracy", "roc_auc"],
                            return_train_score=True, return_estimator=True)
    assert set(ours) == set(ref)
    for key in ("test_accuracy", "test_roc_auc", "train_accuracy", "train_roc_auc"):
        np.testing.assert_allclose(ours[key], ref[key], atol=1e-10)
    for a, b in zip(ours["estimator"], ref["estimator"]):
        np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-10)
    lr = cross_validate(sm.LinearRegression(), X, X @ [1.0, 2.0, 3.0] + 1, cv=3, scoring="r2")
    np.testing.assert_allclose(lr["test_score"], 1.0)


def test_randomized_search_samples_scikit_learns_candidates():
    from scipy.stats import loguniform
    from sklearn.model_selection import ParameterSampler

    X = np.random.default_rng(0).normal(size=(600, 2))
    y = X[:, 0] + 0.1
    dist = {"alpha": loguniform(1e-3, 1e3)}
    s = RandomizedSearchCV(sm.Ridge(), dist, n_iter=5, cv=3, random_state=4).fit(X, y)
    assert s.cv_results_["params"] == list(ParameterSampler(dist, 5, random_state=4))
    assert s.best_score_ > 0.99 and s.predict(X).shape == (600,)


def test_kmeans_sweep_shares_every_pass_and_finds_the_clusters(tmp_path):
    """k = 2..6 on 4 planted clusters: one initialisation and shared Lloyd passes (the reader counts one read
    of each chunk per pass), each k's inertia as good as scikit-learn's best of 10 runs, the elbow and the
    silhouette at 4."""
    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.utils import check_random_state

    from scaleml_dask.io.synthetic import make_mixture
    from scaleml_dask.kmeans import kmeans_parallel_candidates
    from scaleml_dask.model_selection import kmeans_sweep

    path = make_mixture(tmp_path / "m.zarr", 4000, 3, 4, chunk_rows=1000, cluster_std=0.5, center_std=6.0, seed=1)
    before = sum(read.reads.values())
    kmeans_parallel_candidates(sm.open_dataset(path).X.data, None, check_random_state(0), 12.0, 5)
    init_reads = sum(read.reads.values()) - before
    before = sum(read.reads.values())
    sweep = kmeans_sweep(path, range(2, 7), random_state=0, silhouette_sample=500)
    lloyd_passes = int(sweep.n_iter_.max())  # every k in the same passes: as many as the slowest k needs
    assert sum(read.reads.values()) - before == init_reads + lloyd_passes * 4
    assert init_reads == 4 and sweep.passes_ == 1 + lloyd_passes and sweep.n_iter_.sum() > lloyd_passes
    assert sweep.elbow_ == 4 and sweep.best_silhouette_k_ == 4 and sweep.silhouette_sample_ == 500
    X = sm.open_dataset(path).X.values
    for k, inertia in zip(sweep.n_clusters_, sweep.inertia_):
        assert inertia <= 1.02 * SkKMeans(int(k), n_init=10, random_state=0).fit(X).inertia_
    assert sweep.model(4).predict(X[:5]).shape == (5,)


def test_a_pipeline_fuses_its_final_step_and_fits_its_preprocessing_once_per_split():
    """make_pipeline(PCA, SGDClassifier) searched over sgdclassifier__ parameters: PCA fitted once per split (its
    transform runs inside the fused pass's tasks), the candidates fused; each equals the plain pipeline fitted on
    that split's training rows."""
    from sklearn.pipeline import make_pipeline

    dX, dy, est = _problem("binary")
    pipe = make_pipeline(sm.PCA(n_components=3), est)
    cv = StratifiedKFold(3, random_state=2)
    grid = {"sgdclassifier__alpha": [1e-4, 1e-2], "sgdclassifier__eta0": [0.01, 0.05]}
    search = GridSearchCV(pipe, grid, cv=cv, refit=False).fit(dX, dy)
    assert search.passes_ == est._n_epochs + 1
    plan = cv.make_plan(3000, dX.chunks[0], dy)
    counts = plan.chunk_counts(dX.chunks[0], dy)
    for c, params in enumerate(search.cv_results_["params"]):
        for s, fused in enumerate(search.cv_estimators_[c]):
            X_train, y_train = (select_rows(a, plan, s, TRAIN, y=dy, counts=counts) for a in (dX, dy))
            plain = clone(pipe).set_params(**params).fit(X_train, y_train)
            np.testing.assert_allclose(fused[-1].coef_, plain[-1].coef_, rtol=0, atol=1e-10)
            np.testing.assert_allclose(fused[0].components_, plain[0].components_, rtol=1e-12)
    generic = GridSearchCV(pipe, {"pca__n_components": [2, 3]}, cv=cv, refit=False).fit(dX, dy)
    assert generic.passes_ is None and np.isfinite(generic.cv_results_["mean_test_score"]).all()  # not fused
