"""Searches and cross-validation over a pipeline that starts from raw table columns (missing values, categories),
against scikit-learn's ``GridSearchCV`` on the same pandas data and the same splits.

- In memory: our search over our pipeline equals scikit-learn's search over scikit-learn's preprocessing with the
  same final estimator (best parameters, every split's scores), a preprocessing parameter searched too.
- On the stored table (ingested from the same CSV): the same numbers with a final estimator whose fit does not
  depend on chunking (Ridge against scikit-learn's Ridge).
- No leakage: each fold's preprocessing statistics are those of its training rows only.
- Labels given as strings: the fold models and the refit predict the labels, and the scores are theirs.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sklearn.compose
import sklearn.impute
import sklearn.linear_model
import sklearn.pipeline
import sklearn.preprocessing
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV as SkGridSearchCV

import scaleml_dask as sm
from scaleml_dask import compose, pipeline, preprocessing
from scaleml_dask.io.ingest import ingest
from scaleml_dask.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_validate, train_test_split

N, CHUNK = 1200, 300
REGIONS = ["north", "south", "east", "west", "center"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    price = np.round(rng.lognormal(1, 0.5, n), 3)
    region = rng.choice(REGIONS, n, p=[0.4, 0.3, 0.2, 0.07, 0.03]).astype(object)
    city = np.array([f"c{int(i):02d}" for i in rng.zipf(1.6, n) % 12], dtype=object)
    qty = rng.integers(0, 9, n).astype(float)
    effect = pd.Series(region).map({"north": 1.0, "south": -1.0, "east": 0.5, "west": 0.0, "center": 2.0}).to_numpy()
    signal = price - 3 + 0.3 * qty + effect
    price[rng.random(n) < 0.06] = np.nan
    region[rng.random(n) < 0.04] = np.nan
    return pd.DataFrame({"price": price, "qty": qty, "region": region, "city": city,
                         "y": signal + rng.normal(size=n), "label": (signal + rng.logistic(size=n) > 0).astype(int)})


def _pre(m, sparse=False):
    return m.make_column_transformer(
        (m.make_pipeline(m.SimpleImputer(), m.StandardScaler()), ["price", "qty"]),
        (m.make_pipeline(m.SimpleImputer(strategy="most_frequent"),
                         m.OneHotEncoder(handle_unknown="infrequent_if_exist", sparse_output=sparse)),
         ["region", "city"]), sparse_threshold=0.9)


SK = SimpleNamespace(make_column_transformer=sklearn.compose.make_column_transformer,
                     make_pipeline=sklearn.pipeline.make_pipeline, SimpleImputer=sklearn.impute.SimpleImputer,
                     StandardScaler=sklearn.preprocessing.StandardScaler,
                     OneHotEncoder=sklearn.preprocessing.OneHotEncoder)
OURS = SimpleNamespace(make_column_transformer=compose.make_column_transformer, make_pipeline=pipeline.make_pipeline,
                       SimpleImputer=preprocessing.SimpleImputer, StandardScaler=preprocessing.StandardScaler,
                       OneHotEncoder=preprocessing.OneHotEncoder)
ENCODER = "columntransformer__pipeline-2__onehotencoder__max_categories"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    df = _frame(N, 0)
    d = tmp_path_factory.mktemp("tables")
    df.drop(columns="label").to_csv(d / "t.csv", index=False)
    return df, ingest(d / "t.csv", d / "t.zarr", target="y", chunk_rows=CHUNK)


def test_search_over_a_table_pipeline_equals_scikit_learns(table):
    """SGD after imputers, a scaler and an encoder, in memory: scikit-learn's GridSearchCV over scikit-learn's
    preprocessing with the same SGD estimator gives the same best parameters and every split's scores."""
    df, _ = table
    X, y = df.drop(columns=["y", "label"]), df["label"]
    sgd = sm.SGDClassifier(loss="log_loss", mode="local", rounds=3, batch_size=50, random_state=0)
    grid = {"sgdclassifier__alpha": [1e-4, 1e-1], ENCODER: [2, None]}
    cv = StratifiedKFold(3, random_state=1)
    scoring = ["accuracy", "neg_log_loss"]
    ours = GridSearchCV(pipeline.make_pipeline(_pre(OURS), sgd), grid, cv=cv, scoring=scoring, refit="neg_log_loss")
    ours.fit(X, y)
    ref = SkGridSearchCV(sklearn.pipeline.make_pipeline(_pre(SK), sgd), grid, cv=list(cv.split(X, y)),
                         scoring=scoring, refit="neg_log_loss").fit(X, y)
    assert ours.best_params_ == ref.best_params_
    for key in ("split0_test_accuracy", "split2_test_neg_log_loss", "mean_test_neg_log_loss", "rank_test_accuracy"):
        np.testing.assert_allclose(ours.cv_results_[key], ref.cv_results_[key], rtol=0, atol=1e-10)
    assert len(set(np.round(ours.cv_results_["mean_test_neg_log_loss"], 6))) == 4  # the encoder's setting matters
    np.testing.assert_allclose(ours.predict_proba(X.head(20)), ref.predict_proba(X.head(20)), atol=1e-10)


def test_search_on_the_stored_table_and_no_leakage(table):
    """The same search on the ingested store (a Ridge at the end: its fit does not depend on chunking) against
    scikit-learn's on the DataFrame; cross_validate's fold models hold their training rows' statistics only."""
    df, store = table
    X, y = df.drop(columns=["y", "label"]), df["y"]
    grid = {"ridge__alpha": [0.1, 30.0], ENCODER: [3, None]}
    cv = KFold(4, random_state=2)
    ours = GridSearchCV(pipeline.make_pipeline(_pre(OURS), sm.Ridge()), grid, cv=cv,
                        scoring=["r2", "neg_mean_absolute_error"], refit="r2").fit(store)
    ref = SkGridSearchCV(sklearn.pipeline.make_pipeline(_pre(SK), sklearn.linear_model.Ridge()), grid,
                         cv=list(cv.split(X)), scoring=["r2", "neg_mean_absolute_error"], refit="r2").fit(X, y)
    assert ours.best_params_ == ref.best_params_
    for key in ("split1_test_r2", "mean_test_r2", "mean_test_neg_mean_absolute_error", "rank_test_r2"):
        np.testing.assert_allclose(ours.cv_results_[key], ref.cv_results_[key], rtol=1e-9)
    np.testing.assert_allclose(ours.score(store), ref.score(X, y), rtol=1e-9)

    res = cross_validate(pipeline.make_pipeline(_pre(OURS), sm.Ridge()), sm.open_dataset(store), cv=cv,
                         return_estimator=True)
    for (train, _), est in zip(cv.split(X), res["estimator"]):
        scaler = est[0].named_transformers_["pipeline-1"][-1]
        mean = X[["price", "qty"]].iloc[train].mean()  # imputed by the training mean: the mean is unchanged
        np.testing.assert_allclose(scaler.mean_, mean.to_numpy(), rtol=1e-12)
        assert not np.allclose(scaler.mean_, X[["price", "qty"]].mean().to_numpy(), rtol=1e-6)
    sk_folds = [sklearn.pipeline.make_pipeline(_pre(SK), sklearn.linear_model.Ridge()).fit(X.iloc[tr], y.iloc[tr])
                .score(X.iloc[te], y.iloc[te]) for tr, te in cv.split(X)]
    np.testing.assert_allclose(res["test_score"], sk_folds, rtol=1e-9)


def test_train_test_split_of_a_stored_table_and_labels_as_strings(table):
    """train_test_split of the store (and of the DataFrame) gives the rows ShuffleSplit gives (a pipeline fitted on
    them predicts as scikit-learn's); labels given as strings come back as strings from every fold model and the
    refit, and the scores are those of their predictions."""
    df, store = table
    X, y = df.drop(columns=["y", "label"]), df["y"]
    train, test = train_test_split(store, test_size=0.25, random_state=3)
    (tr, te), = sm.model_selection.ShuffleSplit(1, test_size=0.25, random_state=3).split(X)
    assert train.sizes["sample"] == len(tr) and test.sizes["sample"] == len(te)
    ours = pipeline.make_pipeline(_pre(OURS), sm.Ridge()).fit(train)
    ref = sklearn.pipeline.make_pipeline(_pre(SK), sklearn.linear_model.Ridge()).fit(X.iloc[tr], y.iloc[tr])
    np.testing.assert_allclose(ours.predict(test).compute(), ref.predict(X.iloc[te]), rtol=1e-9)
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=3)  # pandas in, pandas out
    assert X_test.index.tolist() == te.tolist() and X_train.index.tolist() == tr.tolist()
    assert X_train.dtypes.equals(X.dtypes)

    words = np.where(df["label"] == 1, "buy", "pass").astype(object)
    sgd = sm.SGDClassifier(mode="local", rounds=2, batch_size=50, random_state=0)
    cv = StratifiedKFold(3, random_state=4)
    res = cross_validate(pipeline.make_pipeline(_pre(OURS, sparse=True), sgd), X, words, cv=cv,
                         return_estimator=True)  # the encoder's output sparse
    for (_, te), est, score in zip(cv.split(X, words), res["estimator"], res["test_score"]):
        predicted = est.predict(X.iloc[te])
        assert set(predicted) <= {"buy", "pass"}
        assert score == pytest.approx(accuracy_score(words[te], predicted), abs=1e-12)
    search = GridSearchCV(pipeline.make_pipeline(_pre(OURS), sgd), {"sgdclassifier__alpha": [1e-4, 1e-2]}, cv=cv).fit(
        X, words)
    assert search.score(X, words) == pytest.approx(accuracy_score(words, search.predict(X)), abs=1e-12)


def test_the_fused_search_trains_a_table_pipelines_candidates_in_shared_reads(table):
    """SGD candidates after the table preprocessing, on the store: one read of each column chunk per round plus
    the scoring pass; each fold's preprocessing fitted on its training rows, every fold's statistics from one
    pass; every candidate x fold equal to the plain pipeline fitted on that fold's rows (1e-10), and the scores
    to the generic path's (whose fits also take their statistics from one pass: counted)."""
    from sklearn.base import clone

    from scaleml_dask._folds import TRAIN
    from scaleml_dask._tabular import as_table
    from scaleml_dask.io import read
    from scaleml_dask.model_selection._tables import table_rows

    _, store = table
    sgd = sm.SGDRegressor(mode="local", rounds=2, batch_size=40, eta0=0.005, random_state=1)
    pipe = pipeline.make_pipeline(_pre(OURS), sgd)
    grid = {"sgdregressor__alpha": [1e-4, 1e-2], "sgdregressor__penalty": ["l2", "l1"]}
    cv = KFold(3, random_state=5)
    before = sum(read.reads.values())
    fused = GridSearchCV(pipe, grid, cv=cv, refit=False).fit(store)
    n_chunks, n_columns = -(-N // CHUNK), 4  # price, qty, region, city (and the target in the fused passes)
    assert fused.passes_ == 3  # two rounds and the scoring pass
    # 3 passes over the columns and the target, and one statistics pass for every fold's preprocessing
    assert sum(read.reads.values()) - before == n_chunks * ((n_columns + 1) * 3 + n_columns)
    t = as_table(store)
    dy = sm.open_dataset(store)["y"].data
    plan = cv.make_plan(N, t.row_chunks, dy)
    counts = plan.chunk_counts(t.row_chunks, dy)
    for c, params in enumerate(fused.cv_results_["params"]):
        for s, model in enumerate(fused.cv_estimators_[c]):
            plain = clone(pipe).set_params(**params).fit(table_rows(t, dy, plan, s, TRAIN, counts, keep_target=True))
            np.testing.assert_allclose(model[-1].coef_, plain[-1].coef_, rtol=0, atol=1e-10)
            np.testing.assert_allclose(model[0].named_transformers_["pipeline-1"][-1].mean_,
                                       plain[0].named_transformers_["pipeline-1"][-1].mean_, rtol=1e-13)
    before = sum(read.reads.values())
    generic = GridSearchCV(pipe, {**grid, ENCODER: [None]}, cv=cv, refit=False).fit(store)
    assert generic.passes_ is None
    # one statistics pass for the 12 fits' preprocessing, each fit's 2 rounds, one scoring pass
    assert sum(read.reads.values()) - before == n_chunks * (n_columns + 12 * 2 * (n_columns + 1) + n_columns + 1)
    np.testing.assert_allclose(fused.cv_results_["split1_test_score"], generic.cv_results_["split1_test_score"],
                               rtol=1e-9)


def _worker_reads(client) -> int:
    from scaleml_dask.io import read

    return sum(sum(c.values()) for c in client.run(lambda: dict(read.reads)).values())


def test_table_searches_on_the_cluster_equal_the_threaded_ones(client, table):
    """The fused and the generic table search run on worker processes (their readers, fitted pipelines and
    per-split statistics pickled to the workers) and give the threaded scheduler's numbers; the workers read."""
    import dask

    _, store = table
    sgd = sm.SGDRegressor(mode="local", rounds=1, batch_size=40, eta0=0.005, random_state=1)
    pipe = pipeline.make_pipeline(_pre(OURS), sgd)
    grids = [{"sgdregressor__alpha": [1e-4, 1e-2]}, {"sgdregressor__alpha": [1e-4], ENCODER: [2, None]}]
    reads = _worker_reads(client)
    on_cluster = [GridSearchCV(pipe, g, cv=KFold(3, random_state=6)).fit(store) for g in grids]
    assert _worker_reads(client) > reads
    with dask.config.set(scheduler="threads"):
        threaded = [GridSearchCV(pipe, g, cv=KFold(3, random_state=6)).fit(store) for g in grids]
    assert on_cluster[0].passes_ == 2 and on_cluster[1].passes_ is None
    for a, b in zip(on_cluster, threaded):
        np.testing.assert_allclose(a.cv_results_["split2_test_score"], b.cv_results_["split2_test_score"],
                                   rtol=1e-12)
        assert a.best_params_ == b.best_params_
