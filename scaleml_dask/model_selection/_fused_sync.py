"""The fused search of the SGD estimators in ``mode="sync"``: every candidate × split takes each synchronous step
from the same mini-batches, its gradients computed in the same task, from data read once.

What a plain sync fit does (``sgd._trainer``): every chunk is read once and held by a worker; each step, every
chunk contributes the gradient of its mini-batch ``step`` of the epoch (a seeded plan of its training ring) at the
current weights, the client averages them by rows and takes one optimizer step. Here the chunks are read once and
held as ``SyncPart``s — the rows, the encoded targets and, per *group* (a split and the parameters that fix the
rows and their order: seed, batch size, held-out fraction, loss; ``_fused.GROUP_PARAMS``) the split's training
rows and held-out range — and each step one task per worker computes, for every chunk it holds and every group,
the summed gradient of the group's mini-batch for **all** the group's members at once (two BLAS products,
``_fused_kernels.batch_gradient``); the client adds them up and steps every member by its own penalty, rate and
schedule (``members_step``). Each candidate on each split so equals a plain sync fit on that split's training
rows (1e-10 in the tests). The held-out loss after each epoch (divergence: as ``_fused``) is measured on the
client from the held-out rows, as the plain trainer does; scoring runs on the held chunks: the whole search reads
each chunk once.

Async mode (a parameter server applying pushes in arrival order) is not fused: see ``fusable``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import assert_finite
from .._folds import TRAIN
from ..metrics._scorer import Scorer, merge_scores
from ..sgd._blocks import checked_targets
from ..sgd._kernels import _PENALTY_CODE, _SCHEDULE_CODE, epoch_plan, holdout_range, n_batches
from ._fused import (
    GROUP_PARAMS,
    CandidateResult,
    _Pass,
    _score_block,
    record_heldout,
    score_jobs,
    score_keys,
    scores_by_candidate,
)
from ._fused_kernels import _gather, batch_gradient, loss_code, member_losses, members_step

log = logging.getLogger("scaleml_dask.model_selection")


@dataclass(frozen=True)
class _Layout:
    """Per group: split, seed, batch size, held-out fraction, loss (what the parts need to know of it)."""

    split: int
    seed: int
    batch_size: int
    validation_fraction: float
    loss: str


@dataclass
class SyncPart:
    """One chunk held by a worker: rows, encoded and raw targets, memberships, and per group the split's
    training rows, held-out range and ring."""

    index: int
    row_start: int
    X: np.ndarray
    T: np.ndarray
    y: np.ndarray
    M: np.ndarray
    rows: list  # per group: the split's training rows of the chunk
    holdout: list  # per group: (lo, hi) in those rows

    def n_train(self, g: int) -> int:
        lo, hi = self.holdout[g]
        return len(self.rows[g]) - (hi - lo)

    def start(self, g: int) -> int:
        n = len(self.rows[g])
        return self.holdout[g][1] % n if n else 0


def _sync_part(X: np.ndarray, y: np.ndarray, *, chunk_index: int, row_start: int, plan: Any, classes: Any,
               layouts: tuple) -> SyncPart:
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.asarray(y).ravel()
    assert_finite(X, "X", chunk_index, row_start)
    T = checked_targets(y, chunk_index, row_start, classes)
    M = plan.memberships(np.arange(row_start, row_start + len(X)), y)
    rows, holdout = [], []
    for lay in layouts:
        r = np.flatnonzero(M[lay.split] == TRAIN)
        rows.append(r)
        holdout.append(holdout_range(lay.seed, chunk_index, len(r), lay.validation_fraction))
    return SyncPart(chunk_index, row_start, X, T, y, M, rows, holdout)


def _held_out(part: SyncPart) -> list:
    """Per group the held-out rows of the part and their targets (run where the part is held)."""
    out = []
    for r, (lo, hi) in zip(part.rows, part.holdout):
        val = r[lo:hi]
        out.append((part.X[val], part.T[val]))
    return out


def _step_gradients(W: np.ndarray, groups: tuple, step: int, *parts: SyncPart) -> tuple[str, list]:
    """Mini-batch ``step`` of every group on every part this worker holds: per part, per group in ``groups``
    (``(g, columns, seed, tcol, loss code, batch size)``), the summed gradient of all the group's members and the
    batch's rows (None where the part has no such batch)."""
    from distributed import get_worker

    out = []
    for part in parts:
        per = []
        for g, cols, seed, tcol, code, bs in groups:
            n_train = part.n_train(g)
            if step * bs >= n_train:
                per.append(None)
                continue
            offset, order = epoch_plan(seed, part.index, n_train, bs)
            lo = int(order[step]) * bs
            b = min(lo + bs, n_train) - lo
            d, M = part.X.shape[1], len(cols)
            Xb1 = np.empty((b, d + 1))
            Xb1[:, d] = 1.0
            Tb = np.empty((b, part.T.shape[1]))
            _gather(part.X, part.T, part.rows[g], part.start(g), len(part.rows[g]), n_train, offset, lo, 0, b, Xb1,
                    Tb)
            Wg = np.ascontiguousarray(W[:, cols])
            G = np.empty((d + 1, M))
            active = np.ones(M, dtype=bool)
            batch_gradient(Xb1, Tb, tcol, code, Wg, active, G)
            G[:, ~active] = np.nan  # margins overflowed (the rows were checked when read): the member diverged
            per.append((G, b))
        out.append(per)
    return get_worker().address, out


def _score_part(part: SyncPart, spec: _Pass) -> list:
    return _score_block(spec, lambda s: part.X, part.M, part.y, part.T, part.index, part.row_start)


def _by_holder(client: Any, parts: list) -> dict[str | None, list[int]]:
    """Indices of the held parts (in order) grouped by a worker holding each (None while a lost part has none)."""
    from ..sgd._trainer import _holders

    groups: dict[str | None, list[int]] = {}
    for i, where in _holders(client, parts).items():
        groups.setdefault(min(where, default=None), []).append(i)
    return groups


class FusedSync:
    """Trains ``candidates`` of a sync-mode SGD estimator on every split of ``plan`` from chunks read once;
    results as ``FusedSGD``'s (``results``, ``passes_``, ``cv_estimators``, ``run(stop, keep, next_stop)``)."""

    def __init__(self, estimator: Any, candidates: Sequence[dict], dX: Any, dy: Any, plan: Any,
                 scorers: dict[str, Scorer], *, classes: np.ndarray | None, divergence_bound: float = 10.0,
                 return_train_score: bool = False) -> None:
        from sklearn.base import clone

        from ..sgd._trainer import distributed_client

        self.client = distributed_client("sync")
        self.dX, self.dy, self.plan = dX, dy, plan
        self.scorer_names, self.scorers = list(scorers), tuple(scorers.values())
        self.classes = classes
        self.divergence_bound = float(divergence_bound)
        self.return_train_score = return_train_score
        self.estimators = [clone(estimator).set_params(**p) for p in candidates]
        self.results = [CandidateResult(dict(p)) for p in candidates]
        self.n_out = 1 if classes is None or len(classes) == 2 else len(classes)
        S, K, N = plan.n_splits, self.n_out, len(candidates)
        self.S = S
        d = int(dX.shape[1])
        self.W = np.zeros((d + 1, N * S * K))  # member (c, s, k) -> column c * S * K + s * K + k
        self.m, self.v, self.g2 = (np.zeros((N * S * K, d + 1)) for _ in range(3))
        keys: dict[tuple, list[int]] = {}
        for c, est in enumerate(self.estimators):
            p = est.get_params()
            for s in range(S):
                keys.setdefault((s, *(p[name] for name in GROUP_PARAMS)), []).append(c)
        self.layouts, self.members = [], []
        for key, cands in keys.items():
            p = dict(zip(GROUP_PARAMS, key[1:]))
            self.layouts.append(_Layout(key[0], int(p["random_state"]), int(p["batch_size"]),
                                        float(p["validation_fraction"]), str(p["loss"])))
            self.members.append(np.array([c * S * K + key[0] * K + k for c in cands for k in range(K)]))
        self.rngs = [np.random.default_rng(lay.seed) for lay in self.layouts]
        self.t = np.zeros(len(self.layouts))
        self.done = np.zeros(N, dtype=np.int64)  # epochs trained
        self.alive = np.ones(N, dtype=bool)
        self.zero_loss: dict[int, float] = {}
        self.passes_ = 0
        self.parts: list = []
        self.val: list = []

    # -- reading -------------------------------------------------------------------------------------------
    def _read(self) -> None:
        """Read every chunk once into a held ``SyncPart``; gather the held-out rows of every group."""
        from ..passes import map_row_chunks
        from ..sgd._trainer import _raise_first_error

        parts = self.client.compute(map_row_chunks(_sync_part, self.dX, self.dy, plan=self.plan,
                                                   classes=self.classes, layouts=tuple(self.layouts)))
        _raise_first_error(parts)
        self.parts = parts
        self.passes_ += 1
        held = self.client.gather(self.client.map(_held_out, parts, pure=False))
        self.val = [(np.concatenate([h[g][0] for h in held]), np.concatenate([h[g][1] for h in held]))
                    for g in range(len(self.layouts))]
        counts = self.plan.chunk_counts(self.dX.chunks[0], self.dy)[:, :, TRAIN]
        self.n_train = np.array([[n - (round(lay.validation_fraction * n) if lay.validation_fraction > 0 else 0)
                                  for lay, n in zip(self.layouts, row.tolist())]
                                 for row in counts[:, [lay.split for lay in self.layouts]]], dtype=np.int64)

    def _params(self, cols: np.ndarray) -> tuple:
        S, K = self.S, self.n_out
        ps = [self.estimators[c].get_params() for c in cols // (S * K)]
        return (np.array([bool(p["fit_intercept"]) for p in ps]),
                np.array([_PENALTY_CODE[p["penalty"]] for p in ps], dtype=np.int64),
                np.array([float(p["alpha"]) for p in ps]),
                np.array([_SCHEDULE_CODE[p["learning_rate"]] for p in ps], dtype=np.int64),
                np.array([float(p["eta0"]) for p in ps]), np.array([float(p["power_t"]) for p in ps]))

    # -- one epoch of the training candidates -----------------------------------------------------------------
    def _epoch(self, train: np.ndarray) -> None:
        S, K = self.S, self.n_out
        groups, active_cols = [], {}
        for g, (lay, cols) in enumerate(zip(self.layouts, self.members)):
            cols = cols[train[cols // (S * K)]]
            if not len(cols):
                continue
            seed = int(self.rngs[g].integers(0, 2**62))
            groups.append((g, cols, seed, cols % K, loss_code(lay.loss), lay.batch_size))
            active_cols[g] = np.ones(len(cols), dtype=bool)
        if not groups:
            return
        steps = max(n_batches(int(self.n_train[i, g]), bs) for i in range(len(self.parts))
                    for g, _, _, _, _, bs in groups)
        holders = _by_holder(self.client, self.parts)
        params = {g: self._params(cols) for g, cols, *_ in groups}
        for step in range(steps):
            live = tuple(gr for gr in groups if any(step * gr[5] < self.n_train[i, gr[0]]
                                                    for i in range(len(self.parts))))
            futures = [self.client.submit(_step_gradients, self.W, live, step, *(self.parts[i] for i in blocks),
                                          workers=addr and [addr], allow_other_workers=addr is not None, pure=False)
                       for addr, blocks in holders.items()]
            replies = self.client.gather(futures)
            by_part = {i: per for (_, blocks), (_, out) in zip(holders.items(), replies) for i, per in zip(blocks, out)}
            for k, (g, cols, *_rest) in enumerate(live):
                got = [by_part[i][k] for i in sorted(by_part) if by_part[i][k] is not None]
                G = sum(gr for gr, _ in got)
                rows = sum(n for _, n in got)
                self.t[g] += 1.0
                W = np.ascontiguousarray(self.W[:, cols])
                m, v, g2 = (np.ascontiguousarray(a[cols]) for a in (self.m, self.v, self.g2))
                act = active_cols[g]
                members_step(W, G, rows, *params[g], self.t[g], m, v, g2, act)
                self.W[:, cols], self.m[cols], self.v[cols], self.g2[cols] = W, m, v, g2
            if any(ran != addr for addr, (ran, _) in zip(holders, replies)):
                holders = _by_holder(self.client, self.parts)
        for g, cols, *_ in groups:
            r = int(self.done[cols[0] // (S * K)]) + 1
            for c in np.unique(cols[~active_cols[g]] // (S * K)):
                self._diverge(int(c), r, "weights stopped being finite")
        trained = np.unique(np.concatenate([cols // (S * K) for _, cols, *_ in groups]))
        for c in trained:
            self.done[c] += 1
            self.results[c].rounds = int(self.done[c])
            self.results[c].samples_seen += int(self.n_train[:, [g for g, cols, *_ in groups
                                                                  if c in cols // (S * K)]].sum())

    def _heldout(self, cands: np.ndarray) -> None:
        """The held-out loss of ``cands`` at their current weights (the plain trainer's curve point), checked for
        divergence against ``divergence_bound`` × the zero model's."""
        S, K = self.S, self.n_out
        for g, (lay, cols) in enumerate(zip(self.layouts, self.members)):
            Xv, Tv = self.val[g]
            cand = cols // (S * K)
            sel = np.isin(cand, cands) & self.alive[cand]
            if not sel.any() or not len(Xv):  # no held-out rows (validation_fraction=0): no curve
                continue
            with np.errstate(over="ignore", invalid="ignore"):
                per = member_losses(Xv, Tv, self.W[:, cols[sel]], cols[sel] % K, lay.loss) / len(Xv)
            for c in np.unique(cand[sel]):
                record_heldout(self, int(c), float(per[cand[sel] == c].sum()))

    def _diverge(self, c: int, r: int, reason: str) -> None:
        if self.results[c].diverged is None:
            self.results[c].diverged = (r, reason)
            log.info("fused sync search: candidate %d %s diverged at epoch %d: %s", c, self.results[c].params, r,
                     reason)
        self.alive[c] = False

    def _score(self, cands: np.ndarray) -> None:
        """Score ``cands`` at their current weights on the held chunks (no read)."""
        S, K = self.S, self.n_out
        keys = score_keys(cands, S, self.return_train_score)
        if not keys:
            return
        spec = _Pass(self.plan, self.classes, self.W.copy(), (), (), score_jobs(
            keys, S, K, self.classes, [e.loss for e in self.estimators]), self.scorers)
        parts = self.client.gather(self.client.map(_score_part, self.parts, spec=spec, pure=False))
        states = merge_scores(parts, list(self.scorers))
        from .._folds import TEST

        nan = [math.nan] * S
        for c, entry in scores_by_candidate(keys, states, self.scorer_names, self.scorers, S).items():
            res, r = self.results[c], int(self.done[c])
            ok = res.diverged is None
            for name in self.scorer_names:
                res.scores[(r, name)] = entry[TEST][name] if ok else nan
                res.bounds[(r, name)] = entry["bound"].get(name, 0.0)
                if self.return_train_score:
                    res.train_scores[(r, name)] = entry[TRAIN][name] if ok else nan
            res.weights = [self.W[:, c * S * K + s * K: c * S * K + (s + 1) * K].copy() for s in range(S)]
            res.t = [float(self.t[self._group(c, s)]) for s in range(S)]
            res.evaluated_at = r

    def _group(self, c: int, s: int) -> int:
        col = c * self.S * self.n_out + s * self.n_out
        return next(g for g, cols in enumerate(self.members) if col in cols)

    # -- the schedule ----------------------------------------------------------------------------------------
    def run(self, stop: np.ndarray, keep: Callable[[list[int], int], list[int]] | None = None,
            next_stop: Callable[[int], int | None] | None = None) -> None:
        """Train each candidate to ``stop[c]`` epochs and score it there; with ``keep`` (successive halving) the
        candidates scored at a rung of ``R`` epochs go through ``keep(candidates, R)`` and the survivors train on
        to ``next_stop(R)``."""
        stop = np.asarray(stop, dtype=np.int64).copy()
        try:
            self._read()
            self._heldout(np.arange(len(stop)))
            while True:
                train = self.alive & (self.done < stop)
                if train.any():
                    self._epoch(train)
                    self._heldout(np.flatnonzero(train))
                scoring = self.alive & (self.done == stop)
                if scoring.any():
                    self._score(np.flatnonzero(scoring))
                    rung = int(stop[scoring].max())
                    more = next_stop(rung) if keep is not None and next_stop is not None else None
                    ok = [int(c) for c in np.flatnonzero(scoring) if self.results[c].diverged is None]
                    survivors = set(keep(ok, rung)) if keep is not None and ok and more is not None else set()
                    for c in np.flatnonzero(scoring):
                        if c in survivors:
                            stop[c] = more
                        else:
                            self.alive[c] = False
                if not (self.alive & (self.done < stop)).any():
                    break
        finally:
            self.parts = []  # releases the held chunks
        log.info("fused sync search: %d read(s) of the data", self.passes_)

    def model(self, c: int, s: int) -> Any:
        from sklearn.base import clone

        res = self.results[c]
        S, K = self.S, self.n_out
        est = clone(self.estimators[c])
        state = est._fresh_state(self.W.shape[0] - 1, self.classes)
        state.W = res.weights[s].copy()
        state.opt["t"] = np.array(res.t[s])
        cols = slice(c * S * K + s * K, c * S * K + (s + 1) * K)
        for k, a in (("m", self.m), ("v", self.v), ("g2", self.g2)):
            if k in state.opt:
                state.opt[k] = a[cols].T.copy()
        state.epoch = res.evaluated_at
        est._set_fitted(state, self.classes, self.W.shape[0] - 1)
        return est

    def cv_estimators(self, c: int) -> list:
        res = self.results[c]
        if not res.weights:
            return []
        return [self.model(c, s) for s in range(self.S)]
