"""The fused search: N candidates × k splits of an SGD estimator (local mode) trained in the same read of each
chunk, scored in the same passes, with successive halving between rounds and divergent candidates stopped.

A pipeline whose last step is an SGD estimator fuses too, when the candidates set that step's parameters only:
its other steps are fitted once per split (``_fit_preprocessing``) and their transform runs inside each pass's
task, on the chunk just read, before the candidates train on the transformed block.

One *round* of a candidate is what one round of the plain ``mode="local"`` estimator does (federated averaging:
every chunk runs the round's local epochs from the current weights, the client averages the weight changes by
training rows), on the candidate's training rows of each split. A pass (``_fused_block``, one task per chunk,
reading the chunk itself) does, for every group of members that share rows and order (``_fused_kernels``):

1. score the weights the round starts from on the split's test rows (the scorers' states) and measure their
   held-out loss on the estimator's own held-out rows (its ``validation_fraction``) — the evaluation of the
   previous round, fused into this pass instead of costing a read of its own;
2. train every member of the group one round over the chunk, in one compiled kernel.

The driver (``FusedSGD``) keeps, per member, what the plain estimator keeps — weights, the step counter ``t``, the
generator drawing each round's epoch seeds — so that each candidate on each split ends with the weights a
separately fitted estimator with the same parameters and seed would have on that split's training rows
(``cv_estimators``). A search of R rounds reads each chunk R + 1 times (the last pass only scores).

Divergence: a member whose weights stop being finite inside a chunk is switched off there; after each pass a
candidate whose weight change is not finite, or whose held-out loss is not finite or exceeds ``divergence_bound``
× the loss of the zero model (where every candidate starts), is stopped and reported as diverged (round, reason);
its scores are NaN, never averaged into results.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import assert_finite
from .._folds import TEST, TRAIN
from .._scratch import scratch
from ..metrics._scorer import Scorer, merge_scores, score_rows
from ..sgd._blocks import checked_targets
from ..sgd._kernels import _PENALTY_CODE, _SCHEDULE_CODE, epoch_plan, holdout_range
from ._fused_kernels import fused_epochs, label_counts, loss_code, member_losses, place_part
from ._split import chunk_memberships

log = logging.getLogger("scaleml_dask.model_selection")

#: The parameters that must be equal within a group (members of a group see the same rows in the same order).
GROUP_PARAMS = ("random_state", "batch_size", "local_epochs", "validation_fraction", "loss")
#: Parameters a fused candidate may not set (the fused paths are uncompressed, without hooks).
_UNFUSABLE = {"compress": None, "checkpoint_dir": None, "callback": None}
#: Why async mode is not fused.
ASYNC_NOT_FUSED = ("mode='async' is not fused: its parameter server applies each push in the order pushes arrive, "
                   "so a fit is not reproducible and a fused candidate could not equal a separate fit; each "
                   "candidate x split is fitted on its own (use mode='sync' or 'local' to search in shared reads)")


def final_step(estimator: Any, candidates: Sequence[dict] = ()) -> tuple[list | None, Any, str, list[dict]]:
    """``(preprocessing steps or None, final estimator, its step name, candidates for it)``: a pipeline (anything
    with scikit-learn's ``steps``) is split before its last step, whose parameters the candidates name
    ``<step>__<param>``; any other estimator is its own final step."""
    steps = getattr(estimator, "steps", None)
    if not steps:
        return None, estimator, "", list(candidates)
    name, final = steps[-1]
    prefix = f"{name}__"
    stripped = [{k[len(prefix):] if k.startswith(prefix) else k: v for k, v in c.items()} for c in candidates]
    return list(steps[:-1]), final, name, stripped


def fusable(estimator: Any, candidates: Sequence[dict]) -> str | None:
    """None if ``estimator`` with each of ``candidates`` can be trained by a fused search, else the reason: SGD in
    local mode (``FusedSGD``) or sync mode (``_fused_sync.FusedSync``), all candidates in the same mode.

    A pipeline whose last step is an SGD estimator (local mode) is fusable when the candidates set parameters of
    that step only: its other steps are then fitted once per split, and their transform runs inside the fused
    pass's task on each chunk read."""
    from ..sgd import SGDClassifier, SGDRegressor

    prefix, final, name, stripped = final_step(estimator, candidates)
    if prefix is not None and any(not k.startswith(f"{name}__") for c in candidates for k in c):
        return "a candidate sets a parameter of a step before the last"
    if type(final) not in (SGDClassifier, SGDRegressor):
        return f"{type(final).__name__} is not an SGD estimator"
    base = final.get_params()
    modes = set()
    for params in stripped:
        merged = {**base, **params}
        for name, value in _UNFUSABLE.items():
            if merged[name] != value:
                return f"{name}={merged[name]!r} (the fused search trains {name}={value!r})"
        if "classes" in params:
            return "classes is searched"
        modes.add(merged["mode"])
    if "async" in modes:
        return ASYNC_NOT_FUSED
    if len(modes) > 1:
        return "the candidates mix modes"
    if prefix is not None and "sync" in modes:
        return "a pipeline in mode='sync' (its fused search is local mode's)"
    return None


@dataclass(frozen=True)
class _Group:
    """Members that share rows and order: a split and the parameters of ``GROUP_PARAMS``."""

    split: int
    seed: int
    batch_size: int
    local_epochs: int
    validation_fraction: float
    loss: str
    members: np.ndarray  # columns of the weight block


@dataclass(frozen=True)
class _GroupRound:
    """What a chunk's task needs of one group in one pass."""

    group: _Group
    train: np.ndarray  # members (positions in group.members) that train this pass
    seeds: tuple[int, ...]
    t0: float
    tcol: np.ndarray
    fit_intercept: np.ndarray
    penalty: np.ndarray
    alpha: np.ndarray
    schedule: np.ndarray
    eta0: np.ndarray
    power_t: np.ndarray
    measured: np.ndarray  # members (positions in group.members) whose held-out loss is measured: the live ones
    blocks: dict | None = None  # chunk index -> its block index in the round (None: every chunk, as itself)
    pieces: dict | None = None  # chunk index -> (first, end): the split's training rows of it the round trains on


@dataclass(frozen=True)
class _Pass:
    """Everything a chunk's task needs in one pass (pickled into each task)."""

    plan: Any
    classes: np.ndarray | None
    W: np.ndarray  # (d + 1, M) the weights the round starts from
    groups: tuple[_GroupRound, ...]
    loss_groups: tuple[int, ...]  # groups whose held-out loss is measured
    jobs: tuple  # (model, (split, code)) scored on the rows of that part
    scorers: tuple
    transforms: tuple | None = None  # per split: the fitted preprocessing of a pipeline, or None
    table: Any = None  # a table's chunk: (reader, number of source blocks, schema) (``_tables.TableChunks``)


def fused_pass(spec: _Pass, *arrays: Any) -> list:
    """The tasks of one fused pass over ``arrays`` (the chunks of X, or of a table's sources, then of y): one
    ``_fused_block`` per chunk."""
    from ..passes import map_row_chunks

    return map_row_chunks(_fused_block, *arrays, unique=True, spec=spec)  # passed to every task as is


def _fused_block(*blocks: np.ndarray, chunk_index: int, row_start: int, spec: _Pass) -> dict:
    """One chunk of a fused pass: score, measure the held-out loss, train every group's members one round.
    ``blocks``: the chunk of X and of y, or of a table's source arrays and of y (``spec.table``)."""
    raw = blocks[0] if spec.table is None else spec.table.rows(blocks[:-1])
    y = np.asarray(blocks[-1]).ravel()
    T = checked_targets(y, chunk_index, row_start, spec.classes)
    M = chunk_memberships(spec.plan, row_start, y)
    views: dict[int | None, np.ndarray] = {}

    def features(split: int) -> np.ndarray:
        """The chunk as the split's final step sees it: transformed by that split's fitted preprocessing (without
        preprocessing, one array every split shares)."""
        key = None if spec.transforms is None else split
        if key not in views:
            Z = raw if key is None else spec.transforms[split].transform(raw)
            views[key] = np.ascontiguousarray(Z.toarray() if hasattr(Z, "toarray") else Z, dtype=np.float64)
        return views[key]

    out: dict[str, Any] = {"n_train": {}, "steps": {}, "val_loss": {}, "val_rows": {}}
    if spec.jobs:
        out["scores"] = _score_block(spec, features, M, y, T, chunk_index, row_start)
    delta = np.zeros_like(spec.W)
    active = np.ones(spec.W.shape[1], dtype=bool)
    for k, gr in enumerate(spec.groups):
        g = gr.group
        X = features(g.split)
        rows_s = np.flatnonzero(M[g.split] == TRAIN)
        if gr.pieces is not None and chunk_index in gr.pieces:  # a rung smaller than the chunk: some of its rows
            rows_s = rows_s[slice(*gr.pieces[chunk_index])]
        n_s = len(rows_s)
        trains = len(gr.train) and (gr.blocks is None or chunk_index in gr.blocks)
        block = chunk_index if gr.blocks is None else gr.blocks.get(chunk_index, chunk_index)
        lo, hi = holdout_range(g.seed, block, n_s, g.validation_fraction)
        if k in spec.loss_groups:
            val = rows_s[lo:hi]
            Xv = X[val]
            assert_finite(Xv, "X", chunk_index, row_start)
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging member's loss: reported, not warned
                on = gr.measured  # the live candidates' members only (a stopped one's curve has ended)
                out["val_loss"][k] = member_losses(Xv, T[val], spec.W[:, g.members[on]], gr.tcol[on], g.loss)
            out["val_rows"][k] = hi - lo
        if not trains:
            continue
        cols = g.members[gr.train]
        n_train = n_s - (hi - lo)
        plans = [epoch_plan(seed, block, n_train, g.batch_size) for seed in gr.seeds]
        offsets = np.array([offset for offset, _ in plans], dtype=np.int64)
        orders = np.stack([order for _, order in plans])
        W = np.ascontiguousarray(spec.W[:, cols])
        moments = [np.zeros((len(cols), W.shape[0])) for _ in range(3)]
        act = np.ones(len(cols), dtype=bool)
        steps, bad = fused_epochs(X, T, rows_s, hi % n_s if n_s else 0, n_train, offsets, orders, g.batch_size,
                                  loss_code(g.loss), W, gr.tcol[gr.train], gr.fit_intercept[gr.train],
                                  gr.penalty[gr.train], gr.alpha[gr.train], gr.schedule[gr.train],
                                  gr.eta0[gr.train], gr.power_t[gr.train], gr.t0, *moments, act)
        if bad >= 0:
            assert_finite(X[bad:bad + 1], "X", chunk_index, row_start + bad)
        delta[:, cols] = W - spec.W[:, cols]
        active[cols] = act
        out["n_train"][k] = n_train
        out["steps"][k] = steps
    out["delta"] = delta
    out["active"] = active
    return out


def _score_block(spec: _Pass, features: Any, M: np.ndarray, y: np.ndarray, T: np.ndarray, chunk_index: int,
                 row_start: int) -> list:
    """The scorers' states of every (candidate, split) job on the chunk's rows of its part: every candidate's
    margins in one product per part; label metrics counted straight from the margins' classes and the encoded
    targets (no label arrays), the others through the scorers (``metrics._scorer.score_rows``). With two classes
    and label metrics only, the counts come from the rows in place (``_label_parts``): no copy, no margins."""
    from ..metrics._states import Confusion

    parts: dict[tuple, list[int]] = {}
    for j, (_, key) in enumerate(spec.jobs):
        parts.setdefault(key, []).append(j)
    labels = [k for k, sc in enumerate(spec.scorers) if sc.kind == "labels" and spec.classes is not None]
    others = [k for k in range(len(spec.scorers)) if k not in labels]
    two = labels and T.shape[1] == 1
    counted = _label_parts(spec, features, M, T, parts) if two and not others else {}
    rows, sizes, margins, counts = {}, {}, {}, {}
    for (split, code), members in parts.items():
        F = features(split)
        if (split, code) in counted:  # labels only: counted from the rows in place (no copy of them, no margins)
            predicted, hits, finite, (n, n1) = counted[(split, code)]
            Xs, S = None, None
        else:
            keep = np.flatnonzero(M[split] == code)
            cols = np.concatenate([spec.jobs[j][0].columns for j in members])
            Xs, S = _part_margins(spec, F, keep, cols, split, code)
            finite = np.isfinite(S).all()
            rows[(split, code)] = (Xs, y[keep], T[keep])
            n = len(keep)
            if two:  # two classes: every candidate's confusion counts at once
                positive = S > 0
                predicted = np.count_nonzero(positive, axis=0).astype(np.float64)
                hits = T[keep, 0] @ positive
                n1 = float(T[keep, 0].sum())
        if two:
            both = np.stack([[n - n1 - (predicted - hits), predicted - hits], [n1 - hits, hits]])
            for i, j in enumerate(members):
                counts[j] = both[:, :, i]
        sizes[(split, code)] = n
        if not finite and code == TEST:  # a NaN / inf row (named), or a diverged candidate's margins
            assert_finite(F[np.flatnonzero(M[split] == code)] if Xs is None else Xs, "X", chunk_index, row_start)
        if S is not None:
            at = 0
            for j in members:
                width = len(spec.jobs[j][0].columns)
                margins[j] = S[:, at:at + width]
                at += width
    out = []
    for j, (job, key) in enumerate(spec.jobs):
        Xs, ys, Ts = rows.get(key, (None, None, None))
        states = {}
        if others:
            model = job.with_scores(margins[j])
            states = dict(zip(others, score_rows([(model, key)], {key: (Xs, ys, None)},
                                                 [spec.scorers[k] for k in others])[0]))
        if labels:
            c = counts[j] if j in counts else job.with_scores(margins[j]).confusion(Ts)
            for k in labels:
                states[k] = None if sizes[key] == 0 else Confusion(spec.classes, c)
        out.append([states[k] for k in range(len(spec.scorers))])
    return out


def _label_parts(spec: _Pass, features: Any, M: np.ndarray, T: np.ndarray, parts: dict) -> dict:
    """Two classes, label metrics only: each part's ``(predicted, hits, finite)`` per member of its jobs and its
    ``(rows, rows whose target is 1)``, from ``label_counts``. Parts that see the same features and share no row
    (the test parts of a k-fold split) are counted in one read of the chunk; a part that overlaps them (a training
    part, when train scores are asked) starts another read."""
    layers: list[tuple[np.ndarray, np.ndarray, list]] = []  # (features, part of each row or -1, the parts' keys)
    for key in parts:
        split, code = key
        F = features(split)
        for layer in layers:  # the first layer of the same features where the part's rows are all free
            F_layer, part, keys = layer
            if F_layer is F and place_part(M[split], code, part, len(keys)):
                break
        else:  # none: a layer of its own (one more read of the chunk)
            layer = (F, np.full(len(F), -1, dtype=np.int32), [])
            place_part(M[split], code, layer[1], 0)
            layers.append(layer)
        layer[2].append(key)
    out = {}
    for F, part, keys in layers:
        cols = [np.concatenate([spec.jobs[j][0].columns for j in parts[key]]) for key in keys]
        width = max(len(c) for c in cols)
        W = np.zeros((len(keys), spec.W.shape[0], width))  # each part's members, padded to the widest
        for p, c in enumerate(cols):
            W[p, :, :len(c)] = spec.W[:, c]
        predicted, hits, finite = np.zeros((len(keys), width)), np.zeros((len(keys), width)), np.zeros(
            (len(keys), width), dtype=bool)
        sizes = np.zeros((len(keys), 2))
        label_counts(F, part, W, T, predicted, hits, finite, sizes)
        for p, (key, c) in enumerate(zip(keys, cols, strict=True)):
            out[key] = predicted[p, :len(c)], hits[p, :len(c)], bool(finite[p, :len(c)].all()), sizes[p]
    return out


def _part_margins(spec: _Pass, F: np.ndarray, keep: np.ndarray, cols: np.ndarray, split: int,
                  code: int) -> tuple[np.ndarray, np.ndarray]:
    """The part's rows and the margins of members ``cols`` on them, every candidate in one product, in buffers the
    thread keeps (``_scratch``: no fresh mmap per chunk)."""
    Xs = np.take(F, keep, axis=0, out=scratch("fused-score-rows", (len(keep), F.shape[1])))
    S = np.matmul(Xs, spec.W[:-1, cols], out=scratch(f"fused-score-{split}-{code}", (len(keep), len(cols))))
    S += spec.W[-1, cols]
    return Xs, S


@dataclass
class CandidateResult:
    """What the fused search learned of one candidate."""

    params: dict
    rounds: int = 0  # rounds trained (on every split)
    scores: dict = field(default_factory=dict)  # (rounds, scorer name) -> per-split scores
    bounds: dict = field(default_factory=dict)  # (rounds, scorer name) -> largest ranking bound over splits
    train_scores: dict = field(default_factory=dict)
    heldout_loss: list = field(default_factory=list)  # per round r (weights after r rounds): mean over splits
    diverged: tuple | None = None  # (round, reason)
    samples_seen: int = 0
    seen_after: list = field(default_factory=list)  # samples seen (summed over splits) after each round
    weights: list | None = None  # per split: (d + 1, n_outputs) at the last evaluation
    t: list | None = None  # per split: the step counter at that point
    evaluated_at: int = 0  # rounds at the last evaluation


class FusedSGD:
    """Trains ``candidates`` (parameter dicts over ``estimator``) on every split of ``plan`` in shared passes.

    ``run(stop, keep)``: every candidate trains until ``stop[c]`` rounds and is scored there; with ``keep``
    (successive halving) the survivors of each evaluation get their next ``stop``. Results in ``results``
    (``CandidateResult`` per candidate), the passes made in ``passes_``, pass times in ``pass_times_``.
    """

    def __init__(self, estimator: Any, candidates: Sequence[dict], dX: Any, dy: Any, plan: Any,
                 scorers: dict[str, Scorer], *, classes: np.ndarray | None, divergence_bound: float = 10.0,
                 return_train_score: bool = False, rounds: Sequence[Sequence] | None = None,
                 levels: np.ndarray | None = None) -> None:
        from sklearn.base import clone

        from ._tables import TableChunks

        self.dX, self.dy, self.plan = dX, dy, plan
        self.table = TableChunks.of(dX, levels)  # a stored table a pipeline takes (``levels``: its target's)
        self.row_chunks = tuple(dX.row_chunks) if self.table is not None else tuple(dX.chunks[0])
        self.n_chunks = len(self.row_chunks)
        # per round its visits (chunk, piece): a piece (first, end) of the split's training rows of the chunk, or None
        self.round_chunks = None if rounds is None else [
            tuple((int(v), None) if np.ndim(v) == 0 else (int(v[0]), (int(v[1]), int(v[2]))) for v in r)
            for r in rounds]
        self.scorer_names, self.scorers = list(scorers), tuple(scorers.values())
        self.classes = classes
        self.divergence_bound = float(divergence_bound)
        self.return_train_score = return_train_score
        prefix, final, self.final_name, stripped = final_step(estimator, candidates)
        self.estimators = [clone(final).set_params(**p) for p in stripped]
        self.results = [CandidateResult(dict(p)) for p in candidates]
        self.transforms = None if prefix is None else self._fit_preprocessing(prefix)
        d = (int(dX.shape[1]) if self.transforms is None else len(self.transforms[0].get_feature_names_out())
             if self.table is not None else
             int(self.transforms[0].transform(np.zeros((1, int(dX.shape[1])))).shape[1]))
        self.n_out = 1 if classes is None or len(classes) == 2 else len(classes)
        S, K, N = plan.n_splits, self.n_out, len(candidates)
        self.S = S
        # member (c, s, k) -> column c * S * K + s * K + k
        self.W = np.zeros((d + 1, N * S * K))
        self.groups: list[_Group] = []
        self.group_of = np.zeros((N, S), dtype=np.int64)
        keys: dict[tuple, list[int]] = {}
        self.params = [est.get_params() for est in self.estimators]  # (get_params walks the signature each time)
        for c, p in enumerate(self.params):
            for s in range(S):
                key = (s, *(p[name] for name in GROUP_PARAMS))
                keys.setdefault(key, []).append(c)
        for key, members_c in keys.items():
            s = key[0]
            cols = np.array([c * S * K + s * K + k for c in members_c for k in range(K)], dtype=np.int64)
            for c in members_c:
                self.group_of[c, s] = len(self.groups)
            self.groups.append(_Group(s, int(key[1]), int(key[2]), int(key[3]), float(key[4]), str(key[5]), cols))
        self.rngs = [np.random.default_rng(g.seed) for g in self.groups]
        self.seeds: list[list[tuple[int, ...]]] = [[] for _ in self.groups]  # per group, per round
        self.t = [[0.0] for _ in self.groups]  # per group, t after r rounds
        self.done = np.zeros(N, dtype=np.int64)  # rounds trained
        self.alive = np.ones(N, dtype=bool)
        self.zero_loss: dict[int, float] = {}
        self.passes_ = 0
        self.pass_times_: list[float] = []
        self.chunks_read_: list[int] = []  # per pass

    def _fit_preprocessing(self, steps: list) -> tuple:
        """A pipeline's steps before the last, fitted once per split on its training rows (selections, no copy;
        moments-pass steps share their pass across splits where the data are the same)."""
        from sklearn.base import clone
        from sklearn.pipeline import Pipeline

        from .._moments import reuse_statistics
        from ._split import select_rows

        counts = self.plan.chunk_counts(self.row_chunks, self.dy)
        if self.table is not None:  # the table's columns: this project's pipeline, on each split's rows
            return self.table.fit_preprocessing(steps, self.dX, self.dy, self.plan, counts)
        fitted = []
        with reuse_statistics():
            for s in range(self.plan.n_splits):
                X_train, y_train = (select_rows(a, self.plan, s, TRAIN, y=self.dy, counts=counts)
                                    for a in (self.dX, self.dy))
                fitted.append(Pipeline([(n, clone(t)) for n, t in steps]).fit(X_train, y_train))
        return tuple(fitted)

    # -- the members' parameters ----------------------------------------------------------------------
    def _member_params(self, g: _Group) -> dict[str, np.ndarray]:
        S, K = self.S, self.n_out
        cand = g.members // (S * K)
        tcol = g.members % K
        ps = [self.params[c] for c in cand]
        return {"tcol": tcol.astype(np.int64),
                "fit_intercept": np.array([bool(p["fit_intercept"]) for p in ps]),
                "penalty": np.array([_PENALTY_CODE[p["penalty"]] for p in ps], dtype=np.int64),
                "alpha": np.array([float(p["alpha"]) for p in ps]),
                "schedule": np.array([_SCHEDULE_CODE[p["learning_rate"]] for p in ps], dtype=np.int64),
                "eta0": np.array([float(p["eta0"]) for p in ps]),
                "power_t": np.array([float(p["power_t"]) for p in ps])}

    def _seeds(self, k: int, r: int) -> tuple[int, ...]:
        """The epoch seeds of round ``r`` (1-based) of group ``k``: drawn as the plain trainer draws them."""
        while len(self.seeds[k]) < r:
            self.seeds[k].append(tuple(int(self.rngs[k].integers(0, 2**62))
                                       for _ in range(self.groups[k].local_epochs)))
        return self.seeds[k][r - 1]

    def blocks_of_round(self, r: int) -> dict[int, int] | None:
        """Round ``r``'s (1-based) chunks, each mapped to its block index in the round — its position in the
        round's list, as ``partial_fit`` on those chunks concatenated would number them; None: every chunk, as
        itself (a round of the plain estimator)."""
        if self.round_chunks is None:
            return None
        return {c: b for b, (c, _) in enumerate(self.round_chunks[r - 1])}

    def pieces_of_round(self, r: int) -> dict[int, tuple[int, int]] | None:
        """Round ``r``'s (1-based) chunks of which it trains on some of the training rows only (a rung of fewer
        samples than a chunk holds), each with those rows ``(first, end)`` of the split's; None: none."""
        if self.round_chunks is None:
            return None
        return {c: p for c, p in self.round_chunks[r - 1] if p is not None} or None

    def model(self, c: int, s: int, W: np.ndarray | None = None, t: float | None = None,
              rounds: int | None = None) -> Any:
        """A fitted estimator of candidate ``c`` on split ``s``: what the plain estimator holds after ``rounds``
        rounds with weights ``W`` and step counter ``t`` (default: the current ones)."""
        S, K = self.S, self.n_out
        cols = slice(c * S * K + s * K, c * S * K + (s + 1) * K)
        rounds = int(self.done[c]) if rounds is None else rounds
        est = copy.deepcopy(self.estimators[c])  # a clone: the template is never fitted (and clone costs more)
        state = est._fresh_state(self.W.shape[0] - 1, self.classes)
        state.W = (self.W[:, cols] if W is None else W).copy()
        state.opt["t"] = np.array(self.t[self.group_of[c, s]][rounds] if t is None else t)
        state.epoch = state.rounds = rounds
        est._set_fitted(state, self.classes, self.W.shape[0] - 1)
        return est

    # -- one pass ---------------------------------------------------------------------------------------
    def _pass(self, train: np.ndarray, scoring: np.ndarray) -> tuple[list, list, np.ndarray]:
        """Train candidates ``train`` one round and score candidates ``scoring`` at their current weights, in one
        pass. Returns the scored jobs ``(c, s, code)``, their merged states and the weights the pass started
        from."""
        S, K = self.S, self.n_out
        groups, loss_groups = [], []
        for k, g in enumerate(self.groups):
            cand = g.members // (S * K)
            tr = np.flatnonzero(train[cand] & self.alive[cand])
            measured = np.flatnonzero(self.alive[cand])
            if not len(tr) and not len(measured):
                continue
            r = int(self.done[cand[tr[0]]]) + 1 if len(tr) else 0
            blocks = self.blocks_of_round(r) if len(tr) else None
            groups.append(_GroupRound(g, tr, self._seeds(k, r) if len(tr) else (),
                                      self.t[k][r - 1] if len(tr) else 0.0, **self._member_params(g),
                                      measured=measured, blocks=blocks,
                                      pieces=self.pieces_of_round(r) if len(tr) else None))
            if len(measured):
                loss_groups.append(len(groups) - 1)
        read = sorted({i for gr in groups if len(gr.train)
                       for i in (range(self.n_chunks) if gr.blocks is None else gr.blocks)}) or range(self.n_chunks)
        keys = score_keys(np.flatnonzero(scoring), S, self.return_train_score)
        jobs = score_jobs(keys, S, K, self.classes, [e.loss for e in self.estimators])
        W_in = self.W.copy()
        spec = _Pass(self.plan, self.classes, W_in, tuple(groups), tuple(loss_groups), jobs, self.scorers,
                     self.transforms, self.table)
        t0 = time.perf_counter()
        X = (self.dX,) if self.table is None else self.table.sources(self.dX)
        every = fused_pass(spec, *X, self.dy)
        parts = [every[i] for i in read]
        blocks, states = compute_pass(parts, self.scorers if jobs else None)
        self.pass_times_.append(time.perf_counter() - t0)
        self.passes_ += 1
        self.chunks_read_.append(len(read))
        self._apply(spec, blocks)
        return keys, states, W_in

    def _apply(self, spec: _Pass, blocks: list[dict]) -> None:
        """Average the round's weight changes (as the plain local mode does), advance counters, check divergence."""
        S, K = self.S, self.n_out
        W_in = spec.W
        active = np.logical_and.reduce([b["active"] for b in blocks])
        trained: dict[int, int] = {}  # candidate -> training rows this round (summed over splits)
        for k, gr in enumerate(spec.groups):
            g = gr.group
            gi = self.groups.index(g)
            if k in spec.loss_groups:
                sums = sum(b["val_loss"][k] for b in blocks)
                rows = sum(b["val_rows"][k] for b in blocks)
                if rows:  # (no held-out rows — validation_fraction=0, a rung of a few rows: no curve point)
                    self._record_loss(g, gr.measured, sums / rows)
            if not len(gr.train):
                continue
            cols = g.members[gr.train]
            ran = [b for b in blocks if k in b["n_train"]]
            rows = np.array([b["n_train"][k] for b in ran], dtype=np.float64)
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging member overflows: found just below
                delta = sum(n * b["delta"][:, cols] for n, b in zip(rows, ran)) / rows.sum()
                self.W[:, cols] = W_in[:, cols] + delta
            r = int(self.done[cols[0] // (S * K)]) + 1
            if len(self.t[gi]) == r:
                self.t[gi].append(self.t[gi][r - 1] + max(b["steps"][k] for b in ran))
            for c in np.unique(cols // (S * K)):
                trained[int(c)] = trained.get(int(c), 0) + int(rows.sum()) * g.local_epochs
            bad = ~active[cols] | ~np.isfinite(self.W[:, cols]).all(axis=0)
            for c in np.unique(cols[bad] // (S * K)):
                self._diverge(int(c), r, "weights stopped being finite")
        for c, n in trained.items():
            self.done[c] += 1
            self.results[c].rounds = int(self.done[c])
            self.results[c].samples_seen += n
            self.results[c].seen_after.append(self.results[c].samples_seen)

    def _record_loss(self, g: _Group, measured: np.ndarray, per_member: np.ndarray) -> None:
        """Held-out loss of the group's ``measured`` members at the weights the pass started from (summed over a
        candidate's outputs, as ``sgd._kernels.mean_loss``), appended to each candidate's curve; checked for
        divergence."""
        S, K = self.S, self.n_out
        cand = g.members[measured] // (S * K)
        for c in np.unique(cand):
            if not self.alive[c]:
                continue
            record_heldout(self, int(c), float(per_member[cand == c].sum()))

    def _diverge(self, c: int, r: int, reason: str) -> None:
        if self.results[c].diverged is None:
            self.results[c].diverged = (r, reason)
            log.info("fused search: candidate %d %s diverged at round %d: %s", c, self.results[c].params, r, reason)
        self.alive[c] = False

    def _record_scores(self, keys: list, states: list, W_in: np.ndarray, done: np.ndarray) -> None:
        S, K = self.S, self.n_out
        for c, entry in scores_by_candidate(keys, states, self.scorer_names, self.scorers, S).items():
            res, r = self.results[c], int(done[c])
            ok = res.diverged is None or res.diverged[0] > r  # (diverging in a round trained after r is not r's)
            nan = [math.nan] * S
            for name in self.scorer_names:
                res.scores[(r, name)] = entry[TEST][name] if ok else nan
                res.bounds[(r, name)] = entry["bound"].get(name, 0.0)
                if self.return_train_score:
                    res.train_scores[(r, name)] = entry[TRAIN][name] if ok else nan
            res.weights = [W_in[:, c * S * K + s * K: c * S * K + (s + 1) * K].copy() for s in range(S)]
            res.t = [self.t[self.group_of[c, s]][r] for s in range(S)]
            res.evaluated_at = r

    # -- the schedule -----------------------------------------------------------------------------------
    def run(self, stop: np.ndarray, keep: Callable[[list[int], int], list[int]] | None = None,
            next_stop: Callable[[int], int | None] | None = None) -> None:
        """Train each candidate to ``stop[c]`` rounds and score it there.

        With ``keep`` (successive halving) the candidates scored together at a rung of ``R`` rounds are passed
        to ``keep(candidates, R)``, which returns the survivors; they train on to ``next_stop(R)`` rounds (None:
        the last rung). A rung's scoring is fused into the pass that trains round ``R + 1`` of every candidate
        at the rung: the survivors keep that round, the others drop it (their results are those of round R)."""
        stop = np.asarray(stop, dtype=np.int64).copy()
        scored = np.zeros(len(stop), dtype=bool)
        while True:
            scoring = self.alive & (self.done == stop) & ~scored
            rung = int(stop[scoring].max()) if scoring.any() else 0
            more = next_stop(rung) if keep is not None and scoring.any() and next_stop is not None else None
            train = self.alive & ((self.done < stop) | (scoring & (more is not None)))
            if not train.any() and not scoring.any():
                break
            done = self.done.copy()
            keys, states, W_in = self._pass(train, scoring)
            if keys:
                self._record_scores(keys, states, W_in, done)
            scored |= scoring
            if keep is not None and scoring.any():
                ok = [int(c) for c in np.flatnonzero(scoring) if self.results[c].diverged is None]
                survivors = set(keep(ok, rung)) if ok else set()
                for c in np.flatnonzero(scoring):
                    if c in survivors and more is not None and self.alive[c]:
                        stop[c], scored[c] = more, False
                    else:
                        self.alive[c] = False
            else:
                self.alive &= ~scoring  # finished
        log.info("fused search: %d passes", self.passes_)

    def cv_estimators(self, c: int) -> list:
        """Candidate ``c``'s fitted estimator (pipeline) on each split, at its last evaluation."""
        from sklearn.pipeline import Pipeline

        res = self.results[c]
        if not res.weights:
            return []
        out = [self.model(c, s, res.weights[s], res.t[s], res.evaluated_at) for s in range(self.S)]
        if self.transforms is None:
            return out
        if self.table is not None:
            return [self.table.pipeline(pre, self.final_name, est) for pre, est in zip(self.transforms, out)]
        return [Pipeline([*pre.steps, (self.final_name, est)]) for pre, est in zip(self.transforms, out)]


def record_heldout(driver: Any, c: int, loss: float) -> None:
    """Append candidate ``c``'s held-out ``loss`` after the round (epoch) it has done to its curve (round 0: the
    zero model's, kept in ``driver.zero_loss``); a loss not finite, or past ``divergence_bound`` x the zero
    model's, stops the candidate (``driver._diverge``). ``driver``: a fused driver (``FusedSGD``, ``FusedSync``)."""
    res, r = driver.results[c], int(driver.done[c])
    while len(res.heldout_loss) <= r:
        res.heldout_loss.append([])
    res.heldout_loss[r].append(loss)
    if r == 0:
        driver.zero_loss[c] = max(driver.zero_loss.get(c, 0.0), loss)
    bound = driver.divergence_bound * driver.zero_loss.get(c, math.inf)
    if not (math.isfinite(loss) and loss <= bound):
        driver._diverge(c, r, f"held-out loss {loss:.4g} " + (
            "is not finite" if not math.isfinite(loss) else
            f"exceeds divergence_bound x the zero model's ({bound:.4g})"))


def score_keys(candidates: Sequence[int], S: int, train: bool) -> list[tuple[int, int, int]]:
    """The scoring jobs ``(candidate, split, TEST / TRAIN)`` of ``candidates`` on every split."""
    return [(int(c), s, code) for c in candidates for s in range(S) for code in ((TEST, TRAIN) if train else (TEST,))]


def score_jobs(keys: list, S: int, K: int, classes: np.ndarray | None, losses: Sequence[str]) -> tuple:
    """Each key's responses (``_Responses`` over the columns of member ``(c, s)`` in the weight block) and part."""
    return tuple((_Responses(np.arange(c * S * K + s * K, c * S * K + (s + 1) * K), classes, losses[c]), (s, code))
                 for c, s, code in keys)


def compute_pass(parts: list, scorers: tuple | None) -> tuple[list, list]:
    """Compute a pass's chunk results and, with ``scorers``, their score states merged by a fixed tree — here:
    every chunk's result comes back whole anyway, so the tree's tasks on the workers would only add hops."""
    import dask

    from ..passes import combine_here

    blocks = list(dask.compute(*parts))
    if scorers is None:
        return blocks, []
    return blocks, combine_here([b["scores"] for b in blocks], _ScoreMerge(scorers))


def scores_by_candidate(keys: list, states: list, names: list[str], scorers: tuple, S: int) -> dict[int, dict]:
    """Per candidate ``{TEST: {name: per-split values}, TRAIN: {...}, "bound": {name: largest ranking bound}}``."""
    per: dict[int, dict] = {}
    for (c, s, code), row in zip(keys, states):
        entry = per.setdefault(c, {TEST: {}, TRAIN: {}, "bound": {}})
        for name, sc, st in zip(names, scorers, row):
            entry[code].setdefault(name, [math.nan] * S)[s] = sc.value(st) if st is not None else math.nan
            if code == TEST and st is not None:
                entry["bound"][name] = max(entry["bound"].get(name, 0.0), sc.bound(st))
    return per


class _Responses:
    """What a fused candidate's estimator answers on a block, from its margins computed with every other
    candidate's in one product: ``decision_function``, ``predict`` and ``predict_proba`` exactly as
    ``SGDClassifier`` / ``SGDRegressor`` form them from their scores (the block argument is the scorer's, and the
    margins are already of its rows)."""

    def __init__(self, columns: np.ndarray, classes: np.ndarray | None, loss: str, S: np.ndarray | None = None):
        self.columns, self.classes, self.loss, self.S = columns, classes, loss, S

    def with_scores(self, S: np.ndarray) -> _Responses:
        return _Responses(self.columns, self.classes, self.loss, S)

    def decision_function(self, X: Any) -> np.ndarray:
        return self.S[:, 0] if self.S.shape[1] == 1 else self.S

    def predict(self, X: Any) -> np.ndarray:
        if self.classes is None:
            return self.S[:, 0]
        return self.classes[self._predicted()]

    def _predicted(self) -> np.ndarray:
        return (self.S[:, 0] > 0).astype(np.intp) if self.S.shape[1] == 1 else self.S.argmax(axis=1)

    def confusion(self, T: np.ndarray) -> np.ndarray:
        """Counts of (true, predicted) class indices, the truth given as the encoded targets ``T`` (one column
        of 0/1 for two classes, one-vs-rest indicators otherwise): what ``Confusion`` counts from labels."""
        K = len(self.classes)
        truth = T[:, 0].astype(np.intp) if T.shape[1] == 1 else T.argmax(axis=1)
        return np.bincount(truth * K + self._predicted(), minlength=K * K).reshape(K, K).astype(np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        from .._math import sigmoid

        if self.classes is None or self.loss != "log_loss":
            raise AttributeError(f"predict_proba is not available for loss={self.loss!r}")
        P = sigmoid(self.S)
        if self.S.shape[1] == 1:
            return np.concatenate([1.0 - P, P], axis=1)
        return P / P.sum(axis=1, keepdims=True)


class _ScoreMerge:
    """``merge_scores`` for the scorers of a pass (a picklable callable)."""

    def __init__(self, scorers: tuple) -> None:
        self.scorers = scorers

    def __call__(self, parts: list) -> list:
        return merge_scores(parts, self.scorers)
