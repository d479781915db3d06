"""One-pass metrics against scikit-learn on small data: each metric's mergeable per-chunk states, tree-reduced,
give scikit-learn's number (ROC AUC and average precision within the bound their binned state states), whatever
the chunking, with and without sample weights; several metrics of several models in one pass."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import sklearn.metrics as skm

import scaleml_dask as sm
from scaleml_dask import metrics
from scaleml_dask.metrics._states import Ranking, ScoreTable

N = 3000


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, N)
    score = rng.normal(size=N) + 1.2 * y
    score[::7] = np.round(score[::7], 1)  # ties
    y3 = rng.integers(0, 3, N)
    p3 = rng.dirichlet([1.0, 1.0, 1.0], N)
    p3[np.arange(N), y3] += 0.5
    p3 /= p3.sum(axis=1, keepdims=True)
    yr = rng.normal(size=N) * 3 + 1
    return {"y": y, "score": score, "proba": 1 / (1 + np.exp(-score)), "y3": y3, "p3": p3, "yr": yr,
            "pr": yr + rng.normal(size=N), "w": rng.random(N) * 2}


def _lazy(a, chunk=401):
    return da.from_array(a, chunks=(chunk,) + a.shape[1:])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("chunk", [N, 401])
def test_label_metrics_equal_scikit_learns(data, weighted, chunk):
    y, y_pred, y3 = data["y"], (data["score"] > 0.6).astype(int), data["y3"]
    y3_pred = data["p3"].argmax(axis=1)
    w = data["w"] if weighted else None
    lw = None if w is None else _lazy(w, chunk)
    assert metrics.accuracy_score(_lazy(y, chunk), y_pred, sample_weight=lw) == pytest.approx(
        skm.accuracy_score(y, y_pred, sample_weight=w), abs=1e-14)
    for avg in ("binary", "micro", "macro", "weighted"):
        for ours, ref in ((metrics.precision_score, skm.precision_score), (metrics.recall_score, skm.recall_score),
                          (metrics.f1_score, skm.f1_score)):
            assert ours(_lazy(y, chunk), _lazy(y_pred, chunk), average=avg, sample_weight=lw) == pytest.approx(
                ref(y, y_pred, average=avg, sample_weight=w), abs=1e-13)
    for avg in ("micro", "macro", "weighted", None):
        got = metrics.precision_recall_fscore_support(_lazy(y3, chunk), y3_pred, average=avg, sample_weight=lw)
        want = skm.precision_recall_fscore_support(y3, y3_pred, average=avg, sample_weight=w)
        for g, r in zip(got[:3], want[:3]):
            np.testing.assert_allclose(g, r, rtol=1e-13)
    np.testing.assert_allclose(metrics.confusion_matrix(_lazy(y3, chunk), y3_pred, sample_weight=lw),
                               skm.confusion_matrix(y3, y3_pred, sample_weight=w), rtol=1e-13)
    np.testing.assert_array_equal(metrics.confusion_matrix(y3, y3_pred, labels=[2, 0]),
                                  skm.confusion_matrix(y3, y3_pred, labels=[2, 0]))


@pytest.mark.parametrize("weighted", [False, True])
def test_probability_and_value_metrics_equal_scikit_learns(data, weighted):
    w = data["w"] if weighted else None
    lw = None if w is None else _lazy(w)
    assert metrics.log_loss(_lazy(data["y"]), _lazy(data["proba"]), sample_weight=lw) == pytest.approx(
        skm.log_loss(data["y"], data["proba"], sample_weight=w), rel=1e-13)
    assert metrics.log_loss(_lazy(data["y3"]), _lazy(data["p3"]), sample_weight=lw) == pytest.approx(
        skm.log_loss(data["y3"], data["p3"], sample_weight=w), rel=1e-13)
    yr, pr = _lazy(data["yr"]), _lazy(data["pr"])
    for ours, ref in ((metrics.r2_score, skm.r2_score), (metrics.mean_squared_error, skm.mean_squared_error),
                      (metrics.mean_absolute_error, skm.mean_absolute_error),
                      (metrics.root_mean_squared_error, skm.root_mean_squared_error)):
        assert ours(yr, pr, sample_weight=lw) == pytest.approx(ref(data["yr"], data["pr"], sample_weight=w),
                                                                rel=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_exact_rankings_equal_scikit_learns(data, weighted):
    """Fewer distinct scores than max_bins: the state keeps them exactly (bound 0), ties counted as scikit-learn."""
    y, s = data["y"], data["score"]
    w = data["w"] if weighted else None
    lw = None if w is None else _lazy(w)
    assert metrics.ranking_bound(_lazy(y), _lazy(s), sample_weight=lw) == {"roc_auc": 0.0, "average_precision": 0.0}
    assert metrics.roc_auc_score(_lazy(y), _lazy(s), sample_weight=lw) == pytest.approx(
        skm.roc_auc_score(y, s, sample_weight=w), abs=1e-14)
    assert metrics.average_precision_score(_lazy(y), _lazy(s), sample_weight=lw) == pytest.approx(
        skm.average_precision_score(y, s, sample_weight=w), abs=1e-14)
    for avg in ("macro", "weighted"):
        assert metrics.roc_auc_score(_lazy(data["y3"]), _lazy(data["p3"]), multi_class="ovr",
                                     average=avg) == pytest.approx(
            skm.roc_auc_score(data["y3"], data["p3"], multi_class="ovr", average=avg), abs=1e-14)
    assert metrics.average_precision_score(data["y3"], data["p3"]) == pytest.approx(
        skm.average_precision_score(data["y3"], data["p3"]), abs=1e-14)


@pytest.mark.parametrize("max_bins", [16, 256, 2048])
def test_binned_rankings_stay_within_their_stated_bound(data, max_bins):
    """More distinct scores than max_bins: the state coarsens (bounded memory) and the distance to scikit-learn's
    exact figure stays within the bound computed from the state; the bound shrinks as the bins grow."""
    y, s = data["y"], data["score"]
    bound = metrics.ranking_bound(_lazy(y), _lazy(s), max_bins=max_bins)
    auc = metrics.roc_auc_score(_lazy(y), _lazy(s), max_bins=max_bins)
    ap = metrics.average_precision_score(_lazy(y), _lazy(s), max_bins=max_bins)
    assert bound["roc_auc"] > 0  # really binned
    assert abs(auc - skm.roc_auc_score(y, s)) <= bound["roc_auc"]
    assert abs(ap - skm.average_precision_score(y, s)) <= bound["average_precision"]
    table = ScoreTable.from_block(y, s, max_bins=max_bins)
    assert len(table.keys) <= max_bins


def test_binned_bound_shrinks_with_more_bins(data):
    y, s = data["y"], data["score"]
    bounds = [metrics.ranking_bound(y, s, max_bins=b)["roc_auc"] for b in (16, 256, 2048)]
    assert bounds[0] > bounds[1] > bounds[2] > 0


def test_ranking_states_merge_like_one_block(data):
    """Merging per-chunk tables (different levels after coarsening) equals the table of all rows at that level."""
    y, s = data["y"], data["score"]
    parts = [ScoreTable.from_block(y[i:i + 500], s[i:i + 500], max_bins=64) for i in range(0, N, 500)]
    merged = ScoreTable.merge(parts, max_bins=64)
    whole = ScoreTable.from_block(y, s, max_bins=64)
    assert merged.level == whole.level
    np.testing.assert_array_equal(merged.keys, whole.keys)
    np.testing.assert_allclose(merged.weights, whole.weights)
    r = Ranking.from_block(y, s)
    assert r.auc() == pytest.approx(skm.roc_auc_score(y, s), abs=1e-14)


def test_bad_input_is_named(data):
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        metrics.accuracy_score(data["y"], data["y"][:-1])
    with pytest.raises(ValueError, match="Only one class"):
        metrics.roc_auc_score(np.zeros(10), np.arange(10.0))
    with pytest.raises(ValueError, match="NaN"):
        metrics.roc_auc_score(data["y"], np.where(np.arange(N) == 5, np.nan, data["score"]))
    with pytest.raises(ValueError, match="not a valid scoring"):
        metrics.get_scorer("accuracy_typo")
    with pytest.raises(ValueError, match="pos_label=2 is not a valid label"):
        metrics.f1_score(data["y"], data["y"], pos_label=2)


def test_several_metrics_of_several_models_in_one_pass(client, data):
    """``evaluate``: 2 models x 4 metrics from one pass on the cluster, each equal to scikit-learn's."""
    from dask.distributed import get_task_stream
    from distributed.utils import key_split

    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, 4))
    y = (X @ [1.0, -1.0, 0.5, 0.0] + rng.logistic(size=N) > 0).astype(int)
    m1 = sm.SGDClassifier(mode="local", rounds=2, batch_size=100).fit(X, y)
    m2 = sm.SGDClassifier(mode="local", rounds=1, batch_size=100, alpha=0.1).fit(X, y)
    scoring = ["accuracy", "roc_auc", "neg_log_loss", "f1_macro"]
    with get_task_stream(client) as ts:
        res = metrics.evaluate({"a": m1, "b": m2}, da.from_array(X, chunks=(500, 4)), da.from_array(y, chunks=500),
                               scoring=scoring)
    assert sum(key_split(t["key"]) == "score_chunk" for t in ts.data) == N // 500  # one task per chunk
    for name, m in (("a", m1), ("b", m2)):
        assert res[name]["accuracy"] == pytest.approx(skm.accuracy_score(y, m.predict(X)), abs=1e-14)
        assert res[name]["roc_auc"] == pytest.approx(skm.roc_auc_score(y, m.decision_function(X)), abs=1e-12)
        assert res[name]["neg_log_loss"] == pytest.approx(-skm.log_loss(y, m.predict_proba(X)), rel=1e-12)
        assert res[name]["f1_macro"] == pytest.approx(skm.f1_score(y, m.predict(X), average="macro"), abs=1e-14)
