"""Scorers (scikit-learn's names) and the engine that scores several models with several metrics in one pass.

A ``Scorer`` names the model output it needs (``predict``, ``decision_function`` / ``predict_proba``), the
mergeable state it builds from that output (``_states``) and how it turns the final state into a number
(greater is better, as scikit-learn's scorers: ``neg_log_loss``...). ``score_chunk`` is the per-chunk task body:
for every (model, split) job it takes the split's test rows once, asks each model for each output once, and
returns a state per scorer; ``score_pass`` runs it over every chunk and tree-reduces the states, so any number
of models × metrics (× folds) costs one read of the data. ``evaluate`` is the public form.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._functions import accuracy_from, prf_from, rankings
from ._states import MAX_BINS, Confusion, ProbaLoss, Residuals, ScoreTable

__all__ = ["Scorer", "check_scoring", "evaluate", "get_scorer", "get_scorer_names", "score_chunk", "score_pass"]


@dataclass(frozen=True)
class Scorer:
    """A metric as a scorer: the model ``response`` methods it can use (first available wins), the ``kind`` of
    state it builds, its ``options`` and ``sign`` (−1 for losses, so that greater is better)."""

    name: str
    response: tuple[str, ...]
    kind: str  # "labels" | "scores" | "proba" | "values"
    metric: str
    sign: int = 1
    options: dict = field(default_factory=dict)

    def state(self, y: np.ndarray, out: np.ndarray, w: np.ndarray | None) -> Any:
        if self.kind == "labels":
            return Confusion.from_block(y, out, w)
        if self.kind == "scores":
            return [ScoreTable.from_block(y, out[:, c] if out.ndim == 2 else out, w, MAX_BINS)
                    for c in range(out.shape[1] if out.ndim == 2 else 1)]
        if self.kind == "proba":
            return ProbaLoss.from_block(y, out, w)
        return Residuals.from_block(y, out, w)

    def merge(self, parts: list[Any]) -> Any:
        if self.kind == "scores":
            return [ScoreTable.merge([p[c] for p in parts], MAX_BINS) for c in range(len(parts[0]))]
        return {"labels": Confusion, "proba": ProbaLoss, "values": Residuals}[self.kind].merge(parts)

    def value(self, state: Any) -> float:
        """The score (signed: greater is better)."""
        m, o = self.metric, self.options
        if m == "accuracy":
            v = accuracy_from(state)
        elif m in ("precision", "recall", "f1"):
            p, r, f, _ = prf_from(state, average=o.get("average", "binary"), pos_label=o.get("pos_label", 1),
                                  zero_division=0.0)
            v = {"precision": p, "recall": r, "f1": f}[m]
        elif m in ("roc_auc", "average_precision"):
            ranks, weights = rankings(state, multi_class=o.get("multi_class", "raise"))
            vals = [r.auc() if m == "roc_auc" else r.average_precision() for r in ranks]
            v = float(np.average(vals, weights=weights if o.get("average") == "weighted" else None))
        elif m == "log_loss":
            v = state.loss()
        elif m == "r2":
            v = state.r2()
        elif m == "mse":
            v = state.mse()
        elif m == "rmse":
            v = float(np.sqrt(state.mse()))
        else:
            v = state.mae()
        return self.sign * float(v)

    def bound(self, state: Any) -> float:
        """How far ``value`` can be from that of exact scores (ranking metrics; 0 for the others)."""
        if self.kind != "scores":
            return 0.0
        ranks, _ = rankings(state, multi_class=self.options.get("multi_class", "raise"))
        return max(r.auc_bound() if self.metric == "roc_auc" else r.ap_bound() for r in ranks)


def _scorers() -> dict[str, Scorer]:
    out: dict[str, Scorer] = {"accuracy": Scorer("accuracy", ("predict",), "labels", "accuracy")}
    for m in ("precision", "recall", "f1"):
        out[m] = Scorer(m, ("predict",), "labels", m, options={"average": "binary"})
        for avg in ("micro", "macro", "weighted"):
            out[f"{m}_{avg}"] = Scorer(f"{m}_{avg}", ("predict",), "labels", m, options={"average": avg})
    ranked = ("decision_function", "predict_proba")
    out["roc_auc"] = Scorer("roc_auc", ranked, "scores", "roc_auc")
    out["roc_auc_ovr"] = Scorer("roc_auc_ovr", ("predict_proba",), "scores", "roc_auc", options={"multi_class": "ovr"})
    out["roc_auc_ovr_weighted"] = Scorer("roc_auc_ovr_weighted", ("predict_proba",), "scores", "roc_auc",
                                         options={"multi_class": "ovr", "average": "weighted"})
    out["average_precision"] = Scorer("average_precision", ranked, "scores", "average_precision")
    out["neg_log_loss"] = Scorer("neg_log_loss", ("predict_proba",), "proba", "log_loss", -1)
    out["r2"] = Scorer("r2", ("predict",), "values", "r2")
    out["neg_mean_squared_error"] = Scorer("neg_mean_squared_error", ("predict",), "values", "mse", -1)
    out["neg_root_mean_squared_error"] = Scorer("neg_root_mean_squared_error", ("predict",), "values", "rmse", -1)
    out["neg_mean_absolute_error"] = Scorer("neg_mean_absolute_error", ("predict",), "values", "mae", -1)
    return out


SCORERS = _scorers()


def get_scorer_names() -> list[str]:
    """The scorer names computed in one pass here."""
    return sorted(SCORERS)


def get_scorer(name: str | Scorer) -> Scorer:
    """The scorer named ``name`` (scikit-learn's names; ``get_scorer_names()`` lists them)."""
    if isinstance(name, Scorer):
        return name
    if name not in SCORERS:
        raise ValueError(f"{name!r} is not a valid scoring value here; use one of {get_scorer_names()} (or a "
                         "callable(estimator, X, y), which is scored in a pass of its own)")
    return SCORERS[name]


def _default_scorer(estimator: Any) -> Scorer | Callable:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return SCORERS["accuracy"]
    if is_regressor(estimator):
        return SCORERS["r2"]
    if hasattr(estimator, "score"):
        return _EstimatorScore()
    raise TypeError(f"If no scoring is specified, the estimator passed should have a 'score' method. The "
                    f"estimator {estimator!r} does not.")


class _EstimatorScore:
    """``estimator.score(X, y)`` on the test rows, for estimators that are neither classifiers nor regressors."""

    name = "score"

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        return float(estimator.score(X) if y is None else estimator.score(X, y))


def check_scoring(estimator: Any, scoring: Any = None) -> dict[str, Scorer | Callable]:
    """``scoring`` as ``{name: scorer}``: None → the estimator's default (``"score"``), a name, a list / tuple of
    names, a dict of names or callables; a callable ``(estimator, X, y) -> float`` is kept as it is."""
    if scoring is None:
        return {"score": _default_scorer(estimator)}
    if isinstance(scoring, (str, Scorer)) or callable(scoring):
        return {"score": get_scorer(scoring) if isinstance(scoring, (str, Scorer)) else scoring}
    if isinstance(scoring, dict):
        return {k: get_scorer(v) if isinstance(v, (str, Scorer)) else v for k, v in scoring.items()}
    if isinstance(scoring, (list, tuple, set)):
        names = list(scoring)
        if len(set(names)) != len(names):
            raise ValueError(f"scoring has duplicate names: {names}")
        return {n: get_scorer(n) for n in names}
    raise ValueError(f"scoring must be None, a name, a list of names, a dict or a callable; got {scoring!r}")


# ------------------------------------------------------------------------------------------------------
# the engine
# ------------------------------------------------------------------------------------------------------


def _response(model: Any, methods: Sequence[str], X: np.ndarray, cache: dict) -> np.ndarray:
    """The first of ``methods`` the model answers (cached per block), as scikit-learn picks a scorer's response:
    for two classes the positive class's column of ``predict_proba``."""
    for m in methods:
        if m in cache:
            return cache[m]
        fn = getattr(model, m, None)
        if fn is None:
            continue
        try:
            out = np.asarray(fn(X))
        except AttributeError:  # e.g. predict_proba of a hinge-loss classifier
            continue
        if m == "predict_proba" and out.ndim == 2 and out.shape[1] == 2:
            out = out[:, 1]
        cache[m] = out
        return out
    raise AttributeError(f"{type(model).__name__} has none of {list(methods)} for this scorer")


def score_rows(jobs: Sequence[tuple[Any, Any]], rows: dict, scorers: Sequence[Scorer]) -> list:
    """For each job ``(model, key)`` the states of ``scorers`` on the rows ``rows[key] = (X, y, w)`` (None where
    there are none); each model output is computed once per job."""
    out = []
    for model, key in jobs:
        Xs, ys, ws = rows[key]
        cache: dict = {}
        out.append([None if len(Xs) == 0 else sc.state(ys, _response(model, sc.response, Xs, cache), ws)
                    for sc in scorers])
    return out


def score_chunk(X: np.ndarray, y: np.ndarray | None, w: np.ndarray | None, *, chunk_index: int, row_start: int,
                jobs: Sequence[tuple[Any, Any]], scorers: Sequence[Scorer], plan: Any = None) -> list:
    """Per chunk: for each job ``(model, part)`` the states of ``scorers`` on the rows of ``part``: None for every
    row, or ``(split, code)`` for the rows whose membership in ``split`` of ``plan`` is ``code`` (``TEST``, or
    ``TRAIN`` for training scores). Rows are taken once per part."""
    X = np.asarray(X)
    y = None if y is None else np.asarray(y).ravel()
    w = None if w is None else np.asarray(w).ravel()
    rows: dict[Any, tuple] = {None: (X, y, w)}
    parts = {key for _, key in jobs if key is not None}
    if parts:
        M = plan.memberships(np.arange(row_start, row_start + len(X)), y)
        for split, code in parts:
            keep = M[split] == code
            rows[(split, code)] = (X[keep], None if y is None else y[keep], None if w is None else w[keep])
    return score_rows(jobs, rows, scorers)


def merge_scores(parts: list[list], scorers: Sequence[Scorer]) -> list:
    """Combine per-chunk ``score_chunk`` results (chunks without test rows give None)."""
    out = []
    for j in range(len(parts[0])):
        row = []
        for k, sc in enumerate(scorers):
            states = [p[j][k] for p in parts if p[j][k] is not None]
            row.append(sc.merge(states) if states else None)
        out.append(row)
    return out


def score_pass(X: Any, y: Any, jobs: Sequence[tuple[Any, Any]], scorers: Sequence[Scorer], *,
               plan: Any = None, sample_weight: Any = None) -> list[list[Any]]:
    """One pass over ``X`` (and ``y``, weights): the merged state of every scorer for every ``(model, part)``
    job (``score_chunk``), as ``[job][scorer]``."""
    from ..passes import one_pass

    return one_pass(score_chunk, functools.partial(merge_scores, scorers=list(scorers)), X, y, sample_weight,
                    jobs=list(jobs), scorers=list(scorers), plan=plan)


def evaluate(estimators: Any, X: Any, y: Any = None, *, scoring: Any = None, sample_weight: Any = None,
             return_bounds: bool = False) -> dict:
    """Score several fitted models with several metrics in **one pass** over ``X`` (and ``y``).

    ``estimators``: a dict ``{name: model}`` or a list (named by position); ``scoring``: scorer names (default:
    each model's ``score`` metric, accuracy or R²). Returns ``{name: {metric: value}}`` (losses negated, as
    scikit-learn's scorers), with ``{metric}_bound`` entries for ranking metrics when ``return_bounds``.

    >>> import numpy as np, scaleml_dask as sm
    >>> X = np.random.default_rng(0).normal(size=(500, 3)); y = X @ [1.0, 2.0, 0.0] + 0.1
    >>> res = evaluate({"ols": sm.LinearRegression().fit(X, y)}, X, y, scoring=["r2", "neg_mean_absolute_error"])
    >>> round(res["ols"]["r2"], 6), abs(res["ols"]["neg_mean_absolute_error"]) < 1e-9
    (1.0, True)
    """
    from ..validation import as_dask_array, check_X_y, take_y

    named = estimators if isinstance(estimators, dict) else {str(i): m for i, m in enumerate(estimators)}
    first = next(iter(named.values()))
    scorers = check_scoring(first, scoring)
    if not all(isinstance(s, Scorer) for s in scorers.values()):
        raise ValueError("evaluate computes scorer names in one pass; callables are not supported here")
    if y is None and take_y(X) is None:
        raise ValueError("evaluate needs y (or a dataset with a variable 'y')")
    dX, dy = check_X_y(X, y, y_numeric=False)
    w = None if sample_weight is None else as_dask_array(sample_weight, "sample_weight", ndim=1).rechunk(
        (dX.chunks[0],))
    names, sc = list(scorers), list(scorers.values())
    states = score_pass(dX, dy, [(m, None) for m in named.values()], sc, sample_weight=w)
    out = {}
    for (label, _), row in zip(named.items(), states):
        out[label] = {n: s.value(st) for n, s, st in zip(names, sc, row)}
        if return_bounds:
            out[label].update({f"{n}_bound": s.bound(st) for n, s, st in zip(names, sc, row) if s.kind == "scores"})
    return out
