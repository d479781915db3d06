"""``GridSearchCV``, ``RandomizedSearchCV`` and ``HalvingRandomSearchCV`` with scikit-learn's interface.

Candidates come from scikit-learn's ``ParameterGrid`` / ``ParameterSampler`` (pipeline parameters such as
``sgdclassifier__alpha`` included); each is ``clone(estimator).set_params(**params)``, so any estimator of this
project (or anything with scikit-learn's parameter contract) can be searched. How candidates are trained and
scored is ``_evaluate``'s business: for the SGD estimators in local mode, every candidate × split trains in the
same read of each chunk (``_fused``); otherwise each fit is its own pass and the scoring of all of them is one.

Results follow scikit-learn's layout (``cv_results_``, ``best_params_``, ``best_index_``, ``best_score_``,
``best_estimator_``, ``refit_time_``, ``scorer_``, ``n_splits_``, ``multimetric_``), plus what a search at scale
should report: ``diverged`` / ``diverged_round`` / ``diverged_reason`` per candidate (a diverged candidate's scores
are NaN, ranked last, never averaged), ``bound_test_<scorer>`` for ranking metrics computed from bounded
histograms, and for the fused path ``n_rounds``, ``samples_seen`` and ``heldout_loss``; ``passes_`` counts the
reads of the data the fused path made (None on the generic path; ``search_time_`` the search's time),
``cv_estimators_`` holds each candidate's fitted estimator per split when the fused path ran.

Successive halving (``HalvingRandomSearchCV``) follows scikit-learn's schedule (``factor``, ``min_resources``,
``max_resources``, ``aggressive_elimination``). Its resource is the number of samples seen: on the fused path the
survivors of a rung *continue* training (no refit from scratch; a rung of r samples is r / (samples per round)
rounds, on whole chunks, or on a piece of one where a rung is much smaller than a chunk); elsewhere, as in
scikit-learn, each iteration fits from scratch on a seeded subsample of that many rows. ``resource`` may also name
an integer parameter of the estimator (``rounds``, ``epochs``, ``n_estimators``...).
"""

from __future__ import annotations

import math
import time
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, MetaEstimatorMixin, _fit_context, clone
from sklearn.model_selection import ParameterGrid, ParameterSampler
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._evaluate import Context, Evaluation, evaluate, evaluate_generic, fused_evaluation, prepare

__all__ = ["GridSearchCV", "HalvingRandomSearchCV", "RandomizedSearchCV"]


class _BaseSearchCV(MetaEstimatorMixin, BaseEstimator):
    """What the searches share: checking the input, evaluating candidates, results, refit, delegation."""

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"]), HasMethods(["learn_many"])],  # an online learner: learn_many
        "scoring": [str, callable, list, tuple, dict, None],
        "refit": ["boolean", str, callable],
        "cv": ["cv_object"],
        "error_score": [StrOptions({"raise"}), Real],
        "return_train_score": ["boolean"],
        "divergence_bound": [Interval(Real, 1, None, closed="neither")],
    }

    # -- fitting --------------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: Any, y: Any = None, *, batch_size: int | None = None) -> _BaseSearchCV:
        """Evaluate the candidates on every split, pick the best, refit it on all rows (``refit``).

        ``X``, ``y``: numpy / dask / xarray / zarr / a dataset path or name (then ``y`` may be omitted).
        ``batch_size``: for an online learner (``scaleml_dask.online``), the rows of each ``learn_many`` — a
        candidate learns a split's training rows in order, in batches of that many rows (default 1000), as
        ``iter_batches`` would feed them (``_fused_online``)."""
        t_start = time.perf_counter()
        ctx = prepare(self.estimator, X, y, self.cv, self.scoring, batch_size)
        self.multimetric_ = not (self.scoring is None or isinstance(self.scoring, str) or callable(self.scoring))
        self._check_refit()
        self.scorer_ = ctx.scorers if self.multimetric_ else ctx.scorers["score"]
        self.n_splits_ = ctx.plan.n_splits
        self.cv_results_, self.passes_, self.cv_estimators_ = self._run(ctx)
        self.search_time_ = time.perf_counter() - t_start
        refit_metric = self._refit_metric()
        if self.refit is False and self.multimetric_:  # scikit-learn: no best_* without a metric to pick by
            return self
        if callable(self.refit):
            self.best_index_ = int(self.refit(self.cv_results_))
        else:
            self.best_index_ = self._best_index(refit_metric)
        self.best_params_ = self.cv_results_["params"][self.best_index_]
        if not callable(self.refit):
            self.best_score_ = float(self.cv_results_[f"mean_test_{refit_metric}"][self.best_index_])
        if self.refit:
            from ._fused_online import learn_rows, online_learner

            est = clone(self.estimator).set_params(**self._refit_params())
            t0 = time.perf_counter()
            if online_learner(est):
                learn_rows(est, ctx.dX, ctx.dy, ctx.batch_size)
            elif ctx.table is not None:  # the pipeline on the table as given (its target and levels)
                est.fit(X) if y is None else est.fit(X, y)
            else:
                est.fit(X) if ctx.dy is None else est.fit(ctx.dX, ctx.dy)
            self.refit_time_ = time.perf_counter() - t0
            self.best_estimator_ = est
        return self

    def _check_refit(self) -> None:
        if self.multimetric_ and self.refit is not False and not callable(self.refit) and (
                not isinstance(self.refit, str) or self.refit not in self._scorer_names()):
            raise ValueError(f"For multi-metric scoring, the parameter refit must be set to a scorer key or a "
                             f"callable to refit an estimator with the best parameter setting on the whole data "
                             f"and make the best_* attributes available for that metric. refit={self.refit!r} "
                             f"is not among {self._scorer_names()}.")

    def _scorer_names(self) -> list[str]:
        s = self.scoring
        return list(s) if isinstance(s, (list, tuple, dict)) else ["score"]

    def _refit_metric(self) -> str:
        return self.refit if self.multimetric_ and isinstance(self.refit, str) else "score"

    def _best_index(self, metric: str) -> int:
        return int(np.argmin(self.cv_results_[f"rank_test_{metric}"]))

    def _refit_params(self) -> dict:
        return dict(self.best_params_)

    def _evaluate(self, ctx: Context, candidates: list[dict]) -> Evaluation:
        return evaluate(ctx, self.estimator, candidates, return_train_score=self.return_train_score,
                        error_score=self.error_score, divergence_bound=self.divergence_bound)

    def _run(self, ctx: Context) -> tuple[dict, int, list]:
        candidates = self._candidates(ctx)
        ev = self._evaluate(ctx, candidates)
        return format_results(candidates, ev, self.return_train_score), _passes(ev, ctx), ev.estimators

    def _candidates(self, ctx: Context) -> list[dict]:
        raise NotImplementedError

    # -- delegation to the best estimator ---------------------------------------------------------------
    def _best(self) -> Any:
        check_is_fitted(self, "best_estimator_", msg="This search was fitted with refit=False (or not at all): "
                                                     "best_estimator_ is not available.")
        return self.best_estimator_

    def predict(self, X: Any) -> Any:
        return _answer(self._best(), "predict", X)

    def predict_proba(self, X: Any) -> Any:
        return _answer(self._best(), "predict_proba", X)

    def decision_function(self, X: Any) -> Any:
        return _answer(self._best(), "decision_function", X)

    def transform(self, X: Any) -> Any:
        return self._best().transform(X)

    def score(self, X: Any, y: Any = None) -> float:
        """The refit metric of the best estimator on ``X`` (one pass)."""
        from ..metrics._scorer import Scorer, score_pass
        from ..pipeline import _encode_levels
        from ..validation import check_X_y
        from ._tables import score_table_pass, table_input, table_target

        scorer = self.scorer_[self._refit_metric()] if self.multimetric_ else self.scorer_
        if not isinstance(scorer, Scorer):
            return float(scorer(self._best(), X, y))
        from ._fused_online import StreamFitted, online_learner

        best = self._best()
        table = table_input(best, X)
        if table is not None:
            dy, _ = table_target(table, y if y is None or getattr(best, "_target_levels", None) is None else
                                 _encode_levels(y, best._target_levels))
            (row,) = score_table_pass(table, dy, [(best, None)], [scorer], None)
            return scorer.value(row[0])
        dX, dy = check_X_y(X, y, y_numeric=False)
        (row,) = score_pass(dX, dy, [(StreamFitted(best, 1) if online_learner(best) else best, None)], [scorer])
        return scorer.value(row[0])

    @property
    def classes_(self) -> np.ndarray:
        return self._best().classes_

    @property
    def n_features_in_(self) -> int:
        return self._best().n_features_in_


def _answer(model: Any, method: str, X: Any) -> Any:
    """``model.<method>(X)``; for an online learner its ``<method>_many`` (``_decision_many``)."""
    from ._fused_online import StreamFitted, online_learner

    if online_learner(model):
        return getattr(StreamFitted(model, 1), method)(X)
    return getattr(model, method)(X)


def _passes(ev: Evaluation, ctx: Context) -> int | None:
    return ev.passes if ev.fused else None


def format_results(candidates: list[dict], ev: Evaluation, return_train_score: bool,
                   more: dict | None = None) -> dict:
    """scikit-learn's ``cv_results_`` layout (plus divergence, bounds and the fused path's extras)."""
    N, S = len(candidates), ev.n_splits
    results: dict[str, Any] = {k: np.asarray(v) for k, v in (more or {}).items()}

    def store(key: str, array: np.ndarray, splits: bool = False, rank: bool = False) -> None:
        array = np.asarray(array, dtype=np.float64).reshape(N, S)
        if splits:
            for s in range(S):
                results[f"split{s}_{key}"] = array[:, s]
        with np.errstate(invalid="ignore"):
            means = array.mean(axis=1)
            results[f"mean_{key}"] = means
            results[f"std_{key}"] = np.sqrt(((array - means[:, None]) ** 2).mean(axis=1))
        if rank:
            if np.isnan(means).all():
                results[f"rank_{key}"] = np.ones(N, dtype=np.int32)
            else:
                filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
                results[f"rank_{key}"] = rankdata(-filled, method="min").astype(np.int32)

    store("fit_time", ev.fit_time)
    store("score_time", ev.score_time)
    names = sorted({k for p in candidates for k in p})
    for name in names:
        values = np.ma.MaskedArray(np.empty(N, dtype=object), mask=True)
        for i, p in enumerate(candidates):
            if name in p:
                values[i] = p[name]
        results[f"param_{name}"] = values
    results["params"] = list(candidates)
    diverged = np.array([d is not None for d in ev.diverged])
    for name, array in ev.test.items():
        array = np.where(diverged[:, None], np.nan, array)
        store(f"test_{name}", array, splits=True, rank=True)
        if return_train_score and name in ev.train:
            store(f"train_{name}", np.where(diverged[:, None], np.nan, ev.train[name]), splits=True)
        if ev.bounds.get(name) is not None and np.any(ev.bounds[name] > 0):
            results[f"bound_test_{name}"] = ev.bounds[name]
    results["diverged"] = diverged
    results["diverged_round"] = np.array([d[0] if d is not None else -1 for d in ev.diverged], dtype=np.int64)
    results["diverged_reason"] = np.array([d[1] if d is not None else "" for d in ev.diverged], dtype=object)
    for key, value in ev.extra.items():
        if isinstance(value, np.ndarray) and len(value) == N:
            results[key] = value
    return results


class GridSearchCV(_BaseSearchCV):
    """Exhaustive search over ``param_grid`` with cross-validation, scikit-learn's interface.

    For ``SGDClassifier`` / ``SGDRegressor`` in ``mode="local"`` every candidate × fold trains in the same read of
    each chunk (a search of R rounds reads the data R + 1 times); divergent candidates are stopped and reported.

    >>> import numpy as np, scaleml_dask as sm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(3000, 4)); y = (X @ [1.0, -2.0, 0.5, 0.0] + rng.logistic(size=3000) > 0).astype(int)
    >>> search = GridSearchCV(sm.SGDClassifier(mode="local", rounds=2, batch_size=100),
    ...                       {"alpha": [1e-4, 1e-1], "eta0": [0.01, 1e4]}, cv=3).fit(X, y)
    >>> search.best_params_, search.passes_, search.cv_results_["diverged"].tolist()
    ({'alpha': 0.1, 'eta0': 0.01}, 3, [False, True, False, True])
    """

    _parameter_constraints: dict = {**_BaseSearchCV._parameter_constraints, "param_grid": [dict, list]}

    def __init__(self, estimator: Any, param_grid: Any, *, scoring: Any = None, refit: Any = True, cv: Any = None,
                 error_score: Any = np.nan, return_train_score: bool = False,
                 divergence_bound: float = 10.0) -> None:
        self.estimator = estimator
        self.param_grid = param_grid
        self.scoring = scoring
        self.refit = refit
        self.cv = cv
        self.error_score = error_score
        self.return_train_score = return_train_score
        self.divergence_bound = divergence_bound

    def _candidates(self, ctx: Context) -> list[dict]:
        return list(ParameterGrid(self.param_grid))


class RandomizedSearchCV(_BaseSearchCV):
    """``n_iter`` candidates sampled from ``param_distributions`` (lists or scipy distributions), with
    cross-validation; scikit-learn's interface, the fused path as ``GridSearchCV``.

    >>> import numpy as np, scaleml_dask as sm
    >>> from scipy.stats import loguniform
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 3)); y = X @ [1.0, 2.0, -1.0] + 0.1 * rng.normal(size=2000)
    >>> s = RandomizedSearchCV(sm.Ridge(), {"alpha": loguniform(1e-3, 1e3)}, n_iter=4, cv=3, random_state=0)
    >>> s.fit(X, y).best_score_ > 0.99
    True
    """

    _parameter_constraints: dict = {**_BaseSearchCV._parameter_constraints, "param_distributions": [dict, list],
                                    "n_iter": [Interval(Integral, 1, None, closed="left")],
                                    "random_state": ["random_state"]}

    def __init__(self, estimator: Any, param_distributions: Any, *, n_iter: int = 10, scoring: Any = None,
                 refit: Any = True, cv: Any = None, random_state: Any = None, error_score: Any = np.nan,
                 return_train_score: bool = False, divergence_bound: float = 10.0) -> None:
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.n_iter = n_iter
        self.scoring = scoring
        self.refit = refit
        self.cv = cv
        self.random_state = random_state
        self.error_score = error_score
        self.return_train_score = return_train_score
        self.divergence_bound = divergence_bound

    def _candidates(self, ctx: Context) -> list[dict]:
        return list(ParameterSampler(self.param_distributions, self.n_iter, random_state=self.random_state))


class HalvingRandomSearchCV(RandomizedSearchCV):
    """Successive halving over sampled candidates: each iteration keeps the best ``1 / factor`` and gives them
    ``factor`` times the resource (scikit-learn's schedule and interface).

    The resource is the number of samples seen (``resource="n_samples"``) or an integer parameter of the
    estimator; ``min_resources="smallest"`` is scikit-learn's (2 x splits x classes samples), so that the
    resources and candidates of each iteration are scikit-learn's. On the fused path (SGD, local mode) survivors
    *continue* training, and a rung of r samples trains on whole chunks: rung 0 trains every candidate one round
    over the first chunks of a seeded chunk order (just enough for r_0 samples, at least one chunk), each later
    rung continues its survivors over the next chunks of that order (a new round at every full pass) — a rung
    that one more chunk would give at least twice its samples trains on just as many of the next chunk's
    training rows (a piece of it). A rung is scored in the pass that reads the next rung's chunks, on their test
    rows — rows no candidate on that split has trained on — and every candidate at the rung trains that round
    too (the survivors keep it): one read of a chunk per visit, so the early rungs read only the chunks they
    need. ``n_resources_`` is the samples seen at each rung. Elsewhere each iteration fits from scratch on a
    seeded subsample (scikit-learn's way).

    >>> import numpy as np, scaleml_dask as sm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(3000, 4)); y = (X @ [1.0, -2.0, 0.5, 0.0] + rng.logistic(size=3000) > 0).astype(int)
    >>> h = HalvingRandomSearchCV(sm.SGDClassifier(mode="local", rounds=4, batch_size=100),
    ...                           {"alpha": [1e-5, 1e-4, 1e-3, 1e-2], "eta0": [0.003, 0.01, 0.03, 0.1]},
    ...                           n_candidates=8, factor=2, cv=3, random_state=0).fit(X, y)
    >>> h.n_candidates_, h.n_resources_, h.passes_  # scikit-learn's smallest: 2 x 3 splits x 2 classes
    ([8, 4, 2, 1], [12, 24, 48, 96], 5)
    >>> exhaust = h.set_params(min_resources="exhaust").fit(X, y)  # the last rung: every round on every row
    >>> exhaust.n_candidates_, exhaust.n_resources_ == [exhaust.n_resources_[0] * 2 ** i for i in range(4)]
    ([8, 4, 2, 1], True)
    """

    _parameter_constraints: dict = {
        **{k: v for k, v in RandomizedSearchCV._parameter_constraints.items() if k != "n_iter"},
        "n_candidates": [Interval(Integral, 1, None, closed="left"), StrOptions({"exhaust"})],
        "factor": [Interval(Real, 0, None, closed="neither")],
        "resource": [str],
        "max_resources": [Interval(Integral, 0, None, closed="neither"), StrOptions({"auto"})],
        "min_resources": [Interval(Integral, 0, None, closed="neither"), StrOptions({"exhaust", "smallest"})],
        "aggressive_elimination": ["boolean"],
    }

    def __init__(self, estimator: Any, param_distributions: Any, *, n_candidates: Any = "exhaust",
                 factor: float = 3, resource: str = "n_samples", max_resources: Any = "auto",
                 min_resources: Any = "smallest", aggressive_elimination: bool = False, cv: Any = 5,
                 scoring: Any = None, refit: Any = True, error_score: Any = np.nan, return_train_score: bool = False,
                 random_state: Any = None, divergence_bound: float = 10.0) -> None:
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.n_candidates = n_candidates
        self.factor = factor
        self.resource = resource
        self.max_resources = max_resources
        self.min_resources = min_resources
        self.aggressive_elimination = aggressive_elimination
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.error_score = error_score
        self.return_train_score = return_train_score
        self.random_state = random_state
        self.divergence_bound = divergence_bound

    # -- the schedule (scikit-learn's) -----------------------------------------------------------------
    def _schedule(self, n_candidates: int, min_r: int, max_r: int) -> list[int]:
        """Resources of each iteration; sets ``min_resources_``, ``max_resources_`` and the iteration counts."""
        f = self.factor
        n_required = 1 + math.floor(math.log(n_candidates, f)) if n_candidates > 1 else 1
        if self.min_resources == "exhaust":
            min_r = max(min_r, max_r // f ** (n_required - 1))
        if min_r > max_r:
            raise ValueError(f"min_resources_={min_r} is greater than max_resources_={max_r}.")
        n_possible = 1 + math.floor(math.log(max(max_r // min_r, 1), f))
        n_iter = n_required if self.aggressive_elimination else min(n_possible, n_required)
        self.min_resources_, self.max_resources_ = int(min_r), int(max_r)
        self.n_required_iterations_, self.n_possible_iterations_, self.n_iterations_ = n_required, n_possible, n_iter
        out = []
        for itr in range(n_iter):
            power = max(0, itr - n_required + n_possible) if self.aggressive_elimination else itr
            out.append(int(min(f**power * min_r, max_r)))
        return out

    def _sampled(self, n: int) -> list[dict]:
        return list(ParameterSampler(self.param_distributions, n, random_state=self.random_state))

    def _run(self, ctx: Context) -> tuple[dict, int, list]:
        from ._fused import final_step, fusable

        est = self.estimator
        if self.resource != "n_samples" and self.resource not in est.get_params():
            raise ValueError(f"Cannot use resource={self.resource!r} which is not supported by estimator "
                             f"{type(est).__name__}")
        _, final, name, _ = final_step(est)
        rounds_params = {f"{name}__{p}" if name else p for p in ("rounds", "epochs")}
        fused = (fusable(est, [{}]) is None and ctx.dy is not None and (ctx.table is None or ctx.table.lazy)
                 and all(hasattr(s, "response") for s in ctx.scorers.values())
                 and (self.resource == "n_samples" or self.resource in rounds_params))
        per_round = _samples_per_round(ctx, final) if fused else 1
        sync = fused and final.mode == "sync"
        if self.resource == "n_samples":  # scikit-learn's smallest (sync: whole epochs, so one of them)
            smallest = per_round if sync else \
                2 * ctx.plan.n_splits * (len(ctx.classes) if ctx.classes is not None else 1)
            auto_max = final._n_epochs * per_round if fused else ctx.n_rows
        else:
            smallest, auto_max = 1, int(est.get_params()[self.resource])
        max_r = auto_max if self.max_resources == "auto" else int(self.max_resources)
        min_r = smallest if self.min_resources in ("smallest", "exhaust") else int(self.min_resources)
        n = (max_r // min_r if self.n_candidates == "exhaust" else int(self.n_candidates))
        candidates = self._sampled(max(n, 1))
        if self.resource != "n_samples" and any(self.resource in c for c in candidates):
            raise ValueError(f"Cannot use parameter {self.resource} as the resource since it is part of the searched "
                             "parameters.")
        resources = self._schedule(len(candidates), min_r, max_r)
        sizes = [len(candidates)]
        for _ in resources[1:]:
            sizes.append(math.ceil(sizes[-1] / self.factor))
        self.n_resources_, self.n_candidates_ = resources, sizes
        self.n_remaining_candidates_ = math.ceil(sizes[-1] / self.factor)
        metric = self._refit_metric()
        if fused:
            return self._run_fused(ctx, final, candidates, resources, metric)
        return self._run_generic(ctx, candidates, resources, metric)

    def _run_fused(self, ctx: Context, final: Any, candidates: list[dict], resources: list[int],
                   metric: str) -> tuple:
        """Successive halving on the fused path: survivors continue training. With ``n_samples`` a rung of r
        samples trains on whole chunks (``_sample_rounds``): the first rung reads only the chunks it needs."""
        from ._evaluate import fused_driver

        driver = fused_driver(self.estimator, candidates)
        options = {}
        if self.resource == "n_samples" and final.mode == "local":
            options["rounds"], rounds, seen = _sample_rounds(ctx, final, resources, self.random_state)
        else:  # whole rounds (epochs), strictly increasing
            unit = _samples_per_round(ctx, final) if self.resource == "n_samples" else 1
            rounds = []
            for r in resources:
                rounds.append(max(max(1, round(r / unit)), rounds[-1] + 1 if rounds else 1))
            seen = [r * unit for r in rounds]
        rung_of = {r: i for i, r in enumerate(rounds)}
        entered = [list(range(len(candidates)))] + [[] for _ in rounds[1:]]
        f = driver(self.estimator, candidates, *ctx.fused_data(), ctx.plan, ctx.scorers, classes=ctx.classes,
                   divergence_bound=self.divergence_bound, return_train_score=self.return_train_score, **options,
                   **ctx.fused_options())

        def keep(scored: list[int], rung: int) -> list[int]:
            i = rung_of[rung]
            if i + 1 >= len(rounds):
                return []
            means = np.array([np.mean(f.results[c].scores[(rung, metric)]) for c in scored])
            best = [scored[j] for j in np.argsort(-np.where(np.isnan(means), -np.inf, means), kind="stable")]
            entered[i + 1] = best[: self.n_candidates_[i + 1]]
            return entered[i + 1]

        def next_stop(rung: int) -> int | None:
            i = rung_of[rung]
            return rounds[i + 1] if i + 1 < len(rounds) else None

        t0 = time.perf_counter()
        f.run(np.full(len(candidates), rounds[0]), keep, next_stop)
        total = time.perf_counter() - t0
        rows = [(c, rounds[i]) for i, cands in enumerate(entered) for c in cands]
        ev = fused_evaluation(f, rows)
        S = ctx.plan.n_splits
        ev.fit_time = np.full((len(rows), S), total / max(len(rows) * S, 1))
        ev.score_time = np.zeros((len(rows), S))
        self.n_resources_ = _samples_at(f, entered, rounds, seen) if self.resource == "n_samples" else list(seen)
        self.n_candidates_ = [len(e) for e in entered]
        self._final_rows = [i for i, (_, r) in enumerate(rows) if r == rounds[-1]]
        more = {"iter": [rung_of[r] for _, r in rows],
                "n_resources": [self.n_resources_[rung_of[r]] for _, r in rows]}
        return (format_results([candidates[c] for c, _ in rows], ev, self.return_train_score, more), f.passes_,
                ev.estimators)

    def _run_generic(self, ctx: Context, candidates: list[dict], resources: list[int], metric: str) -> tuple:
        from ._split import _SubsamplePlan

        rows_params, evs, iters, res = [], [], [], []
        alive = list(range(len(candidates)))
        for itr, r in enumerate(resources):
            cands = [dict(candidates[c]) for c in alive]
            plan = ctx.plan
            if self.resource == "n_samples":
                plan = _SubsamplePlan.of(ctx.plan, r, self.random_state)
            else:
                for c in cands:
                    c[self.resource] = r
            ev = evaluate_generic(ctx, self.estimator, cands, return_train_score=self.return_train_score,
                                  error_score=self.error_score, keep_estimators=False, plan=plan)
            evs.append(ev)
            rows_params += cands
            iters += [itr] * len(cands)
            res += [r] * len(cands)
            means = np.nanmean(ev.test[metric], axis=1) if len(cands) else np.zeros(0)
            means = np.where(np.isnan(means), -np.inf, means)
            order = np.argsort(-means, kind="stable")
            alive = [alive[j] for j in order[: math.ceil(len(alive) / self.factor)]]
        ev = _concat(evs)
        self._final_rows = [i for i, it in enumerate(iters) if it == len(resources) - 1]
        return format_results(rows_params, ev, self.return_train_score, {"iter": iters, "n_resources": res}), None, []

    def _best_index(self, metric: str) -> int:
        rows = self._final_rows
        ranks = self.cv_results_[f"mean_test_{metric}"][rows]
        ranks = np.where(np.isnan(ranks), -np.inf, ranks)
        return int(rows[int(np.argmax(ranks))])

    def _refit_params(self) -> dict:
        params = dict(self.best_params_)
        if self.resource not in ("n_samples",) and self.resource in self.estimator.get_params():
            params[self.resource] = int(self.cv_results_["n_resources"][self.best_index_])
        return params


def _samples_at(f: Any, entered: list[list[int]], rounds: list[int], planned: list[int]) -> list[int]:
    """The samples seen at each rung (the mean over splits), as the passes counted them for a candidate that
    reached it; the planned count where none did (every one diverged)."""
    S = f.plan.n_splits
    out = []
    for cands, r, plan in zip(entered, rounds, planned):
        after = [f.results[c].seen_after for c in cands if len(f.results[c].seen_after) >= r]
        out.append(int(round(after[0][r - 1] / S)) if after else int(plan))
    return out


def _train_rows(ctx: Context) -> np.ndarray:
    """``(n_chunks, n_splits)`` training rows of each chunk in each split: counted if they were (the counts pass
    over the rows' folds), else, for k folds, each split's share of each chunk — the split's training rows are
    known without counting (``fold_rule``: its fold's range of positions), so the search plans its rungs from
    these and starts its first pass at once; the rungs' samples are then counted by the passes (``_samples_at``)."""
    from .._folds import TRAIN

    rule = ctx.plan.fold_rule()
    if ctx.counts is not None or rule is None:
        return ctx.split_counts()[:, :, TRAIN]
    n = ctx.plan.n
    train = n - np.diff(np.concatenate([[0], rule[1]]))  # the rows outside each split's test fold
    return np.outer(np.asarray(ctx.row_chunks, dtype=np.float64), train / n)


def _samples_per_round(ctx: Context, est: Any) -> int:
    """Training rows seen per round by a candidate on one split (the mean over splits), times local epochs."""
    per_split = _train_rows(ctx).sum(axis=0).mean()
    epochs = est.local_epochs if est.mode == "local" else 1
    return max(1, int(round(per_split * (1 - est.validation_fraction) * epochs)))


def _sample_rounds(ctx: Context, est: Any, resources: list[int], random_state: Any) -> tuple[list, list, list]:
    """Successive halving's rungs of ``resources`` samples as fused rounds over whole chunks.

    The chunks are visited in a seeded order (so that early rungs do not see only the first rows of data stored in
    time order), the order repeated for later passes; rung i ends at the visit whose cumulative training rows are
    nearest ``resources[i]`` (at least one visit more than rung i - 1) — unless one more visit would give it at
    least twice the samples it needs: then it trains on just the training rows of the next chunk that make up
    its samples (a *piece*, ``(chunk, first, end)`` of the split's training rows of the chunk, going on from where
    an earlier piece of the chunk ended; scikit-learn's ``min_resources="smallest"`` is a few rows), and the next
    rung goes on from the chunk after. The visits between two rung ends are cut into rounds at every
    full pass, so that a round trains on each chunk at most once. Returns the rounds (lists of chunks and pieces),
    the rounds done at each rung's end, and the samples seen there."""
    from ._split import _seed

    train = _train_rows(ctx)
    held = np.array([[_held(n, est.validation_fraction) for n in row] for row in train])
    per_chunk = (train - held).mean(axis=1) * est.local_epochs
    n_chunks = len(per_chunk)
    order = np.random.default_rng([_seed(random_state), 0xC4A]).permutation(n_chunks)
    ends: list[int] = []
    pieces: dict[int, tuple[int, int]] = {}  # visit -> the training rows of its piece (first, end)
    taken: dict[int, int] = {}  # chunk -> training rows its pieces took so far (the next piece goes on from there)
    short = 0.0  # samples the pieces so far fall short of their whole chunks
    seen: list[float] = []
    for r in resources:
        visits = ends[-1] + 1 if ends else 1
        cum = _visited(per_chunk, order, visits) - short
        whole = per_chunk[order[(visits - 1) % n_chunks]]
        before = seen[-1] if seen else 0.0  # (cum - whole, without its rounding)
        if 0 < 2 * (r - before) <= whole:  # a piece of the next chunk: the rows that make up the samples
            rows = _piece_rows(math.ceil((r - before) / est.local_epochs), est.validation_fraction)
            chunk = int(order[(visits - 1) % n_chunks])
            first = taken.get(chunk, 0)
            pieces[visits - 1] = (first, first + rows)
            taken[chunk] = first + rows
            got = (rows - _held(rows, est.validation_fraction)) * est.local_epochs
            short += whole - got
            ends.append(visits)
            seen.append(before + got)
            continue
        while True:  # the nearest cumulative count to r
            nxt = cum + per_chunk[order[visits % n_chunks]]
            if abs(nxt - r) >= abs(cum - r):
                break
            visits, cum = visits + 1, nxt
        ends.append(visits)
        seen.append(cum)
    rounds, done = [], []
    start = 0
    for end in ends:
        while start < end:
            stop = min(end, (start // n_chunks + 1) * n_chunks)
            rounds.append(tuple((int(order[v % n_chunks]), *pieces[v]) if v in pieces else int(order[v % n_chunks])
                                for v in range(start, stop)))
            start = stop
        done.append(len(rounds))
    return rounds, done, [int(round(v)) for v in seen]


def _held(n: int, fraction: float) -> int:
    """Rows of ``n`` held out for the held-out loss (as ``sgd._kernels.holdout_range``)."""
    return round(fraction * n) if fraction > 0 else 0


def _piece_rows(samples: int, fraction: float) -> int:
    """The fewest rows whose training rows (the rows less those held out) are ``samples``."""
    rows = samples
    while rows - _held(rows, fraction) < samples:
        rows += 1
    return rows


def _visited(per_chunk: np.ndarray, order: np.ndarray, visits: int) -> float:
    """Training samples of the first ``visits`` chunk visits in ``order`` (repeated)."""
    full, rest = divmod(visits, len(order))
    return float(full * per_chunk.sum() + per_chunk[order[:rest]].sum())


def _concat(evs: list[Evaluation]) -> Evaluation:
    S = evs[0].n_splits
    out = Evaluation(sum(e.n_candidates for e in evs), S)
    out.fit_time = np.vstack([e.fit_time for e in evs])
    out.score_time = np.vstack([e.score_time for e in evs])
    out.diverged = [d for e in evs for d in e.diverged]
    for name in evs[0].test:
        out.test[name] = np.vstack([e.test[name] for e in evs])
        out.bounds[name] = np.concatenate([e.bounds[name] for e in evs])
        if evs[0].train:
            out.train[name] = np.vstack([e.train[name] for e in evs])
    return out

