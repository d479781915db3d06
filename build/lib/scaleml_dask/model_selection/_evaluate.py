"""Evaluating candidates on splits: the engine under ``cross_validate`` and the searches.

``prepare`` checks the input once and resolves the splits, the scorers and (for classifiers) the classes;
``evaluate`` trains and scores every candidate on every split, by one of two paths:

- **fused** (SGD estimators in local mode, scorer names): ``FusedSGD`` trains all candidates × splits in the same
  read of each chunk and scores them in the same passes (``_fused``);
- **generic** (any estimator with ``get_params`` / ``set_params`` / ``fit``): each candidate is cloned and fitted
  on each split's training rows — a ``passes.derived`` selection, no copy — and then every fitted model is scored
  on its split's test rows with every scorer in **one** pass (``metrics._scorer.score_pass``). Callable scorers
  (and ``score`` of estimators that are neither classifiers nor regressors) take a pass of their own per model.

A pipeline of this project given a table (a stored table, a DataFrame) takes either path on the table itself
(``_tables``): each split's rows are a table of selections, its preprocessing fitted on them only.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone, is_classifier

from .._folds import TEST, TRAIN
from ..metrics._scorer import Scorer, check_scoring, score_pass
from ._split import SplitPlan, check_cv, class_counts, select_rows
from ._tables import (
    decoded,
    fit_rows,
    own_target,
    score_table_pass,
    split_statistics,
    table_input,
    table_rows,
    table_target,
)

log = logging.getLogger("scaleml_dask.model_selection")


@dataclass
class Context:
    """The checked input of a search or a cross-validation: data, splits, scorers, classes."""

    X: Any
    y: Any
    dX: Any
    dy: Any
    plan: SplitPlan
    scorers: dict
    classes: np.ndarray | None
    counts: np.ndarray | None = None  # plan.chunk_counts for dX's chunks
    batch_size: int = 1000  # online learners: rows per learn_many (the search's fit parameter)
    table: Any = None  # a table a pipeline takes (``_tables``; dX is then None)
    levels: np.ndarray | None = None  # what the codes of a table search's target stand for

    @property
    def row_chunks(self) -> tuple[int, ...]:
        return tuple(self.table.row_chunks) if self.table is not None else tuple(self.dX.chunks[0])

    @property
    def n_rows(self) -> int:
        return int(sum(self.row_chunks))

    def split_counts(self) -> np.ndarray:
        """``plan.chunk_counts`` of the data's row chunks (computed once)."""
        if self.counts is None:
            self.counts = self.plan.chunk_counts(self.row_chunks, self.dy)
        return self.counts

    def fused_data(self) -> tuple[Any, Any]:
        """What a fused driver reads: ``(dX, dy)``, or ``(table, dy)`` for a table pipeline."""
        return (self.dX if self.table is None else self.table), self.dy

    def fused_options(self) -> dict:
        """The fused driver's options for a table pipeline (what its target's codes stand for)."""
        return {} if self.table is None else {"levels": self.levels}

    def rows(self, a: Any, split: int, code: int) -> Any:
        """The rows of ``a`` (``dX`` / ``dy``) that are ``code`` in ``split``: a selection, no copy."""
        return select_rows(a, self.plan, split, code, y=self.dy, counts=self.split_counts())


def prepare(estimator: Any, X: Any, y: Any, cv: Any, scoring: Any, batch_size: int | None = None) -> Context:
    """Check ``X`` / ``y`` once, make the split plan (one pass over ``y`` for stratified splits, which also gives
    a classifier's classes) and the scorers. ``batch_size``: the rows of each ``learn_many`` of an online
    learner (an error for other estimators)."""
    from ..validation import as_dask_array, check_X_y, take_y
    from ._fused_online import BATCH_SIZE, online_learner

    if batch_size is not None and not online_learner(estimator):
        raise ValueError(f"batch_size is the rows of each learn_many of an online learner; "
                         f"{type(estimator).__name__} is not one (set its own batch_size parameter, if it has one)")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")

    table, levels = table_input(estimator, X), None
    if table is not None:
        dX = None
        dy, levels = table_target(table, y)
    elif y is None and take_y(X) is None:
        dX, dy = as_dask_array(X, "X", ndim=2), None
    else:
        dX, dy = check_X_y(X, y, y_numeric=not is_classifier(estimator))
    classifier = is_classifier(estimator) and dy is not None
    n, chunks = (table.n_rows, table.row_chunks) if table is not None else (int(dX.shape[0]), dX.chunks[0])
    plan = check_cv(cv, dy, classifier=classifier).make_plan(n, chunks, dy)
    classes = None
    if classifier:
        declared = getattr(estimator, "classes", None)
        classes = (np.unique(np.asarray(declared)) if declared is not None else
                   plan.classes if getattr(plan, "classes", None) is not None else class_counts(dy)[0])
    if online_learner(estimator) and classifier:
        classes = np.array([0, 1])  # the online classifiers learn labels 0/1 (checked as each chunk is read)
    return Context(X, y, dX, dy, plan, check_scoring(estimator, scoring), classes,
                   batch_size=BATCH_SIZE if batch_size is None else int(batch_size), table=table, levels=levels)


@dataclass
class Evaluation:
    """Per candidate and split: test (and train) scores, times; per candidate: divergence and extras."""

    n_candidates: int
    n_splits: int
    test: dict = field(default_factory=dict)  # name -> (N, S)
    train: dict = field(default_factory=dict)
    bounds: dict = field(default_factory=dict)  # name -> (N,) ranking bound (0: exact)
    fit_time: np.ndarray | None = None
    score_time: np.ndarray | None = None
    diverged: list = field(default_factory=list)  # per candidate: None or (round, reason)
    extra: dict = field(default_factory=dict)  # e.g. heldout_loss, n_rounds
    estimators: list = field(default_factory=list)  # per candidate: fitted estimator per split
    fused: bool = False
    passes: int = 0


def evaluate(ctx: Context, estimator: Any, candidates: list[dict], *, return_train_score: bool = False,
             error_score: Any = np.nan, divergence_bound: float = 10.0, keep_estimators: bool = False) -> Evaluation:
    """Train and score every candidate on every split (fused where possible, see the module docstring)."""
    from ._fused import fusable
    from ._fused_online import online_fusable, online_learner

    online = online_learner(estimator)
    reason = ("no y" if ctx.dy is None else "a table in memory" if ctx.table is not None and not ctx.table.lazy
              else "an online learner on a table" if ctx.table is not None and online
              else online_fusable(estimator) if online else fusable(estimator, candidates))
    if reason is None and not all(isinstance(s, Scorer) for s in ctx.scorers.values()):
        reason = "a scorer is a callable"
    if reason is None:
        return evaluate_fused(ctx, estimator, candidates, return_train_score=return_train_score,
                              divergence_bound=divergence_bound)
    log.info("model selection: generic path (%s)", reason)
    return evaluate_generic(ctx, estimator, candidates, return_train_score=return_train_score,
                            error_score=error_score, keep_estimators=keep_estimators)


def evaluate_fused(ctx: Context, estimator: Any, candidates: list[dict], *, return_train_score: bool,
                   divergence_bound: float) -> Evaluation:
    """The fused path: ``FusedSGD`` over all candidates, each trained for its own ``rounds`` / ``epochs``
    (``FusedOnline`` for the online learners: one chain pass, then the scoring pass)."""
    from ._fused_online import FusedOnline, online_learner

    if online_learner(estimator):
        f = FusedOnline(estimator, candidates, ctx.dX, ctx.dy, ctx.plan, ctx.scorers, classes=ctx.classes,
                        divergence_bound=divergence_bound, return_train_score=return_train_score,
                        batch_size=ctx.batch_size)
        stop = np.ones(len(candidates), dtype=np.int64)
    else:
        cls = fused_driver(estimator, candidates)
        f = cls(estimator, candidates, *ctx.fused_data(), ctx.plan, ctx.scorers, classes=ctx.classes,
                divergence_bound=divergence_bound, return_train_score=return_train_score, **ctx.fused_options())
        stop = np.array([e._n_epochs for e in f.estimators], dtype=np.int64)
    t0 = time.perf_counter()
    f.run(stop)
    total = time.perf_counter() - t0
    ev = fused_evaluation(f, [(c, int(stop[c])) for c in range(len(candidates))])
    share = total / max(len(candidates) * ctx.plan.n_splits, 1)
    ev.fit_time = np.full((len(candidates), ctx.plan.n_splits), share)
    ev.score_time = np.zeros((len(candidates), ctx.plan.n_splits))
    ev.extra["driver"] = f
    return ev


def fused_driver(estimator: Any, candidates: list[dict]) -> type:
    """The fused driver of a fusable SGD search: ``FusedSync`` for sync mode, else ``FusedSGD`` (local mode)."""
    from ._fused import FusedSGD, final_step
    from ._fused_sync import FusedSync

    _, final, _, stripped = final_step(estimator, candidates)
    mode = {**final.get_params(), **(stripped[0] if stripped else {})}["mode"]
    return FusedSync if mode == "sync" else FusedSGD


def fused_evaluation(f: Any, rows: list[tuple[int, int]]) -> Evaluation:
    """An ``Evaluation`` of the fused driver's results: one row per ``(candidate, rounds)``."""
    S = f.S
    ev = Evaluation(len(rows), S, fused=True, passes=f.passes_)
    names = f.scorer_names
    for name in names:
        ev.test[name] = np.full((len(rows), S), np.nan)
        ev.bounds[name] = np.zeros(len(rows))
        if f.return_train_score:
            ev.train[name] = np.full((len(rows), S), np.nan)
    ev.extra["n_rounds"] = np.array([min(r, f.results[c].rounds) for c, r in rows], dtype=np.int64)
    ev.extra["heldout_loss"] = np.full(len(rows), np.nan)
    ev.extra["samples_seen"] = np.array([f.results[c].samples_seen for c, _ in rows], dtype=np.int64)
    for i, (c, r) in enumerate(rows):
        res = f.results[c]
        div = res.diverged if res.diverged is not None and res.diverged[0] <= r else None
        ev.diverged.append(div)
        for name in names:
            if (r, name) in res.scores and div is None:
                ev.test[name][i] = res.scores[(r, name)]
                ev.bounds[name][i] = res.bounds[(r, name)]
                if f.return_train_score:
                    ev.train[name][i] = res.train_scores[(r, name)]
        if r < len(res.heldout_loss) and res.heldout_loss[r] and div is None:
            ev.extra["heldout_loss"][i] = float(np.mean(res.heldout_loss[r]))
        ev.estimators.append(f.cv_estimators(c) if res.evaluated_at == r and div is None else [])
    return ev


def evaluate_generic(ctx: Context, estimator: Any, candidates: list[dict], *, return_train_score: bool,
                     error_score: Any, keep_estimators: bool, plan: SplitPlan | None = None) -> Evaluation:
    """The generic path: a fit per candidate and split on the split's training rows, then one scoring pass.

    The fits run inside ``reuse_statistics()``: estimators made of one moments pass (``Ridge``,
    ``LinearRegression``, ``PCA``) fitted on the same split's rows share that pass, deliberately —
    ``cv_results_["statistics_reused"]`` counts, per candidate, the splits it did not read."""
    plan = plan or ctx.plan
    S, N = plan.n_splits, len(candidates)
    ev = Evaluation(N, S)
    ev.fit_time = np.zeros((N, S))
    ev.score_time = np.zeros((N, S))
    ev.diverged = [None] * N
    models: list[list[Any]] = [[None] * S for _ in range(N)]
    sub = ctx if plan is ctx.plan else Context(ctx.X, ctx.y, ctx.dX, ctx.dy, plan, ctx.scorers, ctx.classes,
                                               table=ctx.table, levels=ctx.levels)
    from .._moments import reuse_statistics
    from ..preprocessing._base import given_summaries

    trains, given = [], {}
    if ctx.table is not None and candidates:  # every split's training statistics in one pass
        trains, given = split_statistics(clone(estimator).set_params(**candidates[0]), ctx.table, ctx.dy, plan,
                                         sub.split_counts(), own_target(ctx))
    with reuse_statistics(), given_summaries(given):  # shared passes: one moments pass, the statistics pass
        for c, params in enumerate(candidates):
            for s in range(S):
                _fit_one(ctx, sub, estimator, params, c, s, ev, models, error_score, trains)
    reused = [[getattr(m, "statistics_reused_", None) for m in row] for row in models]
    if any(r is not None for row in reused for r in row):
        ev.extra["statistics_reused"] = np.array([sum(bool(r) for r in row) for row in reused], dtype=np.int64)
    _score_generic(ctx, sub, plan, ev, models, return_train_score, error_score)
    if keep_estimators:
        ev.estimators = [[getattr(m, "learner", m) for m in row] for row in models]
    return ev


def _fit_one(ctx: Context, sub: Context, estimator: Any, params: dict, c: int, s: int, ev: Evaluation,
             models: list, error_score: Any, trains: list) -> None:
    """Fit candidate ``c`` on split ``s``'s training rows (``trains[s]`` for a table); a failed fit scores
    ``error_score`` (a diverged one is reported as such)."""
    from ._fused_online import StreamFitted, online_learner

    est = clone(estimator).set_params(**params)
    if online_learner(est):
        est = StreamFitted(est, ctx.batch_size)
    t0 = time.perf_counter()
    try:
        if ctx.table is not None:
            fit_rows(ctx, sub, est, s, trains[s])
        else:
            X_train = sub.rows(ctx.dX, s, TRAIN)
            y_train = None if ctx.dy is None else sub.rows(ctx.dy, s, TRAIN)
            est.fit(X_train) if y_train is None else est.fit(X_train, y_train)
    except Exception as exc:  # noqa: BLE001 - scikit-learn's error_score contract
        if isinstance(error_score, str) and error_score == "raise":
            raise
        if isinstance(exc, FloatingPointError) and ev.diverged[c] is None:
            ev.diverged[c] = (getattr(exc, "epoch", -1), str(exc))
        warnings.warn(f"fit failed for candidate {params} on split {s}: {type(exc).__name__}: {exc}; its score is "
                      f"set to error_score={error_score!r}", _fit_failed_warning(), stacklevel=4)
        est = None
    ev.fit_time[c, s] = time.perf_counter() - t0
    models[c][s] = est


def _score_generic(ctx: Context, sub: Context, plan: SplitPlan, ev: Evaluation, models: list,
                   return_train_score: bool, error_score: Any) -> None:
    """Score every fitted model on its split's test (and training) rows: scorer names in one pass."""
    N, S = ev.n_candidates, ev.n_splits
    scorers = ctx.scorers
    one_pass = {n: s for n, s in scorers.items() if isinstance(s, Scorer)}
    for name in scorers:
        ev.test[name] = np.full((N, S), float(error_score) if not isinstance(error_score, str) else np.nan)
        ev.bounds[name] = np.zeros(N)
        if return_train_score:
            ev.train[name] = np.full((N, S), np.nan)
    codes = (TEST, TRAIN) if return_train_score else (TEST,)
    keys = [(c, s, code) for c in range(N) for s in range(S) for code in codes if models[c][s] is not None]
    if one_pass and keys and ctx.dy is not None:
        t0 = time.perf_counter()
        jobs = [(models[c][s], (s, code)) for c, s, code in keys]
        states = (score_table_pass(ctx.table, ctx.dy, jobs, list(one_pass.values()), plan) if ctx.table is not None
                  else score_pass(ctx.dX, ctx.dy, jobs, list(one_pass.values()), plan=plan))
        per = (time.perf_counter() - t0) / len({(c, s) for c, s, _ in keys})
        for (c, s, code), row in zip(keys, states):
            ev.score_time[c, s] = per
            for (name, sc), st in zip(one_pass.items(), row):
                value = sc.value(st) if st is not None else math.nan
                (ev.test if code == TEST else ev.train)[name][c, s] = value
                if code == TEST and st is not None:
                    ev.bounds[name][c] = max(ev.bounds[name][c], sc.bound(st))
    for name, fn in scorers.items():
        if name in one_pass:
            continue
        for c, s, code in keys:
            if ctx.table is not None:  # the part as a table, its labels as the pipeline predicts them
                X_part = table_rows(ctx.table, ctx.dy, plan, s, code, sub.split_counts(), keep_target=False)
                y_part = None if ctx.dy is None else decoded(sub.rows(ctx.dy, s, code), ctx.levels)
            else:
                X_part = sub.rows(ctx.dX, s, code)
                y_part = None if ctx.dy is None else sub.rows(ctx.dy, s, code)
            t0 = time.perf_counter()
            value = float(fn(models[c][s], X_part, y_part))
            ev.score_time[c, s] += time.perf_counter() - t0
            (ev.test if code == TEST else ev.train)[name][c, s] = value


def _fit_failed_warning() -> type:
    from sklearn.exceptions import FitFailedWarning

    return FitFailedWarning
