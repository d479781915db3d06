"""Distributed mini-batch SGD: ``SGDRegressor`` and ``SGDClassifier`` in three modes.

- ``mode="sync"``: the blocks are persisted on the workers (data stay put). Each step is one task per
  worker holding blocks (pinned to it, but allowed elsewhere so that the blocks of a lost worker, once
  recomputed, still take part): the weights go out once per worker, and one reply brings back the mean
  gradient of one seeded mini-batch of each of its blocks. The client sums them row-weighted in block
  order, so the result does not depend on which worker holds which block, and updates the weights. The
  grouping comes from the scheduler (``who_has``) and is refreshed when a task ran on another worker.
- ``mode="local"``: federated averaging. Each round every partition runs ``local_epochs`` of plain SGD
  over its block (``map_blocks``) starting from the current weights; the client averages the returned
  weights (row-weighted). Few rounds, little traffic. The data are streamed: a round is one pass that
  reads every block once and trains on it in the same task (the held-out rows are taken in the first
  round's tasks too), so data larger than the cluster's memory work; to keep the blocks in memory across
  rounds, pass ``X.persist()``, ``y.persist()``.
- ``mode="async"``: a parameter server (a ``distributed`` Actor) holds the weights and the optimizer.
  Each partition's task pulls the weights, computes the gradients of ``push_every`` mini-batches of its
  block, and pushes their mean; the server applies pushes as they arrive and rejects those more than
  ``max_staleness`` versions behind (the worker then pulls and retries once). Staleness is reported in
  ``staleness_``.

What workers send back can be compressed (``compress="float16"``, or ``"topk"`` sparsification keeping
``topk_fraction`` of the entries), both with error feedback: each partition keeps, in its worker's
memory, what its messages failed to carry and adds it to the next one (sync mode compresses per block, not
per worker, so the error feedback does not depend on the grouping either).

Every mode records ``loss_curve_``, rows of (wall time s, samples seen, bytes exchanged, held-out loss).
Bytes are those of the arrays the protocol sends: weights out (sync: once per task, i.e. per worker and
step), gradients (sync: one per block, several in one reply) / weight deltas / pushes back (their
compressed size); the one-off collection of the held-out rows is not counted. The held-out loss
is the mean training loss (no penalty) on a seeded ``validation_fraction`` of every block (one contiguous
range of rows), which is then not trained on, or on ``validation_data=(X_val, y_val)`` passed to ``fit``.

Mini-batches are seeded and contiguous: each epoch draws a seed from a generator seeded by
``random_state``; by (epoch seed, block index) the training rows of every block are rotated and cut into
contiguous mini-batches, visited in a shuffled order (see ``_sgd_kernels``), so every mini-batch is a
sequential read. The held-out rows of a block are one seeded contiguous range. Same seed and chunking give
the same weights in ``sync`` and ``local`` mode, on any number of workers. With ``checkpoint_dir``, weights, optimizer
state, RNG state and progress are written atomically after every epoch (round); ``fit`` with the same
directory and configuration resumes from the last one (a different configuration raises
``CheckpointMismatchError``).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from . import _sgd_kernels as K
from .checkpoint import Checkpointer, fingerprint
from .validation import as_dask_array, assert_finite, check_is_fitted, check_X_y, row_offsets

log = logging.getLogger(__name__)

MODES = ("sync", "local", "async")
CURVE_COLUMNS = ("wall_time_s", "samples_seen", "bytes_exchanged", "heldout_loss")
_ASYNC_POLL_S = 0.2


# ------------------------------------------------------------------------------------------------------
# What travels to the workers
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    """The settings the block functions need (small, pickled into every task)."""

    loss: str
    penalty: str | None
    alpha: float
    fit_intercept: bool
    schedule: str
    eta0: float
    power_t: float
    batch_size: int
    classes: np.ndarray | None
    validation_fraction: float
    seed: int
    compress: str | None
    topk_fraction: float
    ef_key: str


@dataclass
class _Part:
    """One block held on a worker: its rows and targets, the held-out range ``[val_lo, val_hi)``, and the
    training ring of ``n_train`` rows from row ``start`` (so that splitting copies nothing)."""

    index: int
    X: np.ndarray
    T: np.ndarray
    val_lo: int
    val_hi: int

    @property
    def n_train(self) -> int:
        return len(self.X) - (self.val_hi - self.val_lo)

    @property
    def start(self) -> int:
        return self.val_hi % len(self.X)


_RESIDUALS: dict[tuple[str, int], np.ndarray] = {}  # error-feedback memory, per (fit, block), on each worker


def _send(v: np.ndarray, problem: _Problem, block: int) -> tuple[Any, ...]:
    key = (problem.ef_key, block)
    msg, residual = K.compress_with_feedback(v, _RESIDUALS.get(key), problem.compress, problem.topk_fraction)
    if residual is not None:
        _RESIDUALS[key] = residual
    return msg


def _clear_residuals(ef_key: str) -> None:
    for key in [k for k in _RESIDUALS if k[0] == ef_key]:
        del _RESIDUALS[key]


def _targets(y: np.ndarray, index: int, row0: int, classes: np.ndarray | None) -> np.ndarray:
    """``y`` of one block checked (finite, labels among the classes) and encoded for the kernels."""
    assert_finite(y, "y", index, row0)
    T, known = K.encode_checked(y, classes)
    if not known:
        bad = K.unknown_labels(y, classes)
        raise ValueError(f"y contains labels {bad.tolist()} that are not among the classes "
                         f"{classes.tolist()} (chunk {index}, rows {row0}-{row0 + len(y) - 1})")
    return T


def _split(X: np.ndarray, y: np.ndarray, index: int, row0: int, problem: _Problem, *,
           check_train: bool = True) -> _Part:
    """Check one block, encode its targets and split off its held-out rows. With ``check_train=False``
    only the held-out rows of X are checked here: the caller checks the training rows in the pass that
    reads them (``local_epochs`` reports non-finite margins)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.asarray(y).ravel()
    lo, hi = K.holdout_range(problem.seed, index, len(X), problem.validation_fraction)
    if check_train:
        assert_finite(X, "X", index, row0)
    else:
        assert_finite(X[lo:hi], "X", index, row0 + lo)
    return _Part(index, X, _targets(y, index, row0, problem.classes), lo, hi)


def _held_out(part: _Part) -> tuple[np.ndarray, np.ndarray]:
    return part.X[part.val_lo:part.val_hi].copy(), part.T[part.val_lo:part.val_hi].copy()


def _part_info(part: _Part) -> tuple[int, np.ndarray, np.ndarray]:
    return part.n_train, *_held_out(part)


def _gradient(part: _Part, W: np.ndarray, seed: int, step: int, problem: _Problem) -> tuple[np.ndarray, int]:
    return K.batch_gradient(W, part.X, part.T, start=part.start, n_train=part.n_train, seed=seed,
                            block=part.index, batch_size=problem.batch_size, step=step, loss=problem.loss,
                            fit_intercept=problem.fit_intercept)


def _sync_grads(W: np.ndarray, seed: int, step: int, problem: _Problem,
                *parts: _Part) -> tuple[str, list[tuple[Any, int]]]:
    """Mini-batch ``step`` of every persisted block one worker holds (sync mode), in one reply: per block
    its gradient message (compressed with that block's error feedback) and rows; and the address of the
    worker that ran the task, so the client can tell when the blocks have moved."""
    from distributed import get_worker

    replies = []
    for part in parts:
        G, rows = _gradient(part, W, seed, step, problem)
        replies.append((_send(G, problem, part.index), rows))
    return get_worker().address, replies


def _local_block(X: np.ndarray, y: np.ndarray, W: np.ndarray, seeds: list[int], t0: float, problem: _Problem,
                 with_val: bool, block_info: dict | None = None) -> np.ndarray:
    """Local epochs over one block (local mode); returns a 1×1 object array holding
    (message of the weight change, training rows, steps, held-out X, held-out T)."""
    index, row0 = block_info[0]["chunk-location"][0], block_info[0]["array-location"][0][0]
    part = _split(X, y, index, row0, problem, check_train=False)
    W_new, steps, finite = K.local_epochs(W, part.X, part.T, start=part.start, n_train=part.n_train, seeds=seeds,
                                  block=index, batch_size=problem.batch_size,
                                  loss=problem.loss, penalty=problem.penalty, alpha=problem.alpha,
                                  fit_intercept=problem.fit_intercept, schedule=problem.schedule,
                                  eta0=problem.eta0, power_t=problem.power_t, t0=t0)
    if not finite:  # NaN / inf in a training row (or diverged weights: then this finds nothing)
        assert_finite(part.X, "X", index, row0)
    out = np.empty((1, 1), dtype=object)
    val = _held_out(part) if with_val else (None, None)
    out[0, 0] = (_send(W_new - W, problem, index), part.n_train, steps, *val)
    return out


def _apply(W: np.ndarray, G: np.ndarray, opt: dict[str, np.ndarray], problem: _Problem) -> np.ndarray:
    """The weights after one optimizer step along ``G`` plus the penalty; advances ``opt``."""
    return K.apply_step(W, G, opt, penalty=problem.penalty, alpha=problem.alpha, schedule=problem.schedule,
                        eta0=problem.eta0, power_t=problem.power_t)


class _ParameterServer:
    """Holds the weights and optimizer state; applies pushed gradients as they arrive (async mode)."""

    def __init__(self, W: np.ndarray, opt: dict[str, np.ndarray], problem: _Problem,
                 max_staleness: int) -> None:
        self.W = W.copy()
        self.opt = {k: v.copy() for k, v in opt.items()}
        self.problem, self.max_staleness = problem, max_staleness
        self.version = 0
        self.samples = 0
        self.bytes = 0
        self.rejected = 0
        self.staleness = np.zeros(max_staleness + 1, dtype=np.int64)

    def pull(self) -> tuple[int, np.ndarray]:
        self.bytes += self.W.nbytes
        return self.version, self.W.copy()

    def push(self, msg: tuple[Any, ...], version: int, n: int) -> bool:
        self.samples += n
        self.bytes += K.message_nbytes(msg)
        stale = self.version - version
        if stale > self.max_staleness:
            self.rejected += 1
            return False
        self.W = _apply(self.W, K.decompress(msg, self.W.shape), self.opt, self.problem)
        self.version += 1
        self.staleness[stale] += 1
        return True

    def state(self) -> dict[str, Any]:
        """A snapshot (not counted as traffic): weights, optimizer state and counters."""
        return {"W": self.W.copy(), "opt": {k: v.copy() for k, v in self.opt.items()},
                "version": self.version, "samples": self.samples, "bytes": self.bytes,
                "rejected": self.rejected, "staleness": self.staleness.copy()}


def _async_part(part: _Part, server: Any, seed: int, problem: _Problem, push_every: int) -> None:
    """Pull, compute ``push_every`` mini-batch gradients at the pulled weights, push; over the whole block."""
    total = K.n_batches(part.n_train, problem.batch_size)
    for first in range(0, total, push_every):
        for _attempt in range(2):  # a push rejected as too stale is recomputed once from fresh weights
            version, W = server.pull().result()
            G = np.zeros_like(W)
            rows_seen = 0
            for step in range(first, min(first + push_every, total)):
                g, rows = _gradient(part, W, seed, step, problem)
                G += rows * g
                rows_seen += rows
            if server.push(_send(G / rows_seen, problem, part.index), version, rows_seen).result():
                break


# ------------------------------------------------------------------------------------------------------
# Training state on the client
# ------------------------------------------------------------------------------------------------------


@dataclass
class _State:
    W: np.ndarray
    opt: dict[str, np.ndarray]
    rng: np.random.Generator
    epoch: int = 0
    samples: int = 0
    bytes: int = 0
    rounds: int = 0
    elapsed: float = 0.0
    curve: list[tuple[float, float, float, float]] = field(default_factory=list)
    staleness: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rejected: int = 0

    def next_seed(self) -> int:
        return int(self.rng.integers(0, 2**62))

    def to_checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"W": self.W, "curve": np.asarray(self.curve, dtype=np.float64).reshape(-1, 4),
                  "staleness": self.staleness, **{f"opt_{k}": v for k, v in self.opt.items()}}
        meta = {"epoch": self.epoch, "samples": self.samples, "bytes": self.bytes, "rounds": self.rounds,
                "elapsed": self.elapsed, "rejected": self.rejected, "rng": self.rng.bit_generator.state}
        return arrays, meta

    @classmethod
    def from_checkpoint(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> _State:
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        opt = {k[4:]: v.copy() for k, v in arrays.items() if k.startswith("opt_")}
        return cls(W=arrays["W"].copy(), opt=opt, rng=rng, epoch=meta["epoch"], samples=meta["samples"],
                   bytes=meta["bytes"], rounds=meta["rounds"], elapsed=meta["elapsed"],
                   rejected=meta["rejected"], curve=[tuple(r) for r in arrays["curve"].tolist()],
                   staleness=arrays["staleness"].copy())


def _by_holder(client: Any, parts: list) -> dict[str | None, list[int]]:
    """Indices of the persisted blocks (in block order) grouped by the worker holding each (the first
    address if several do; None while a lost block has no holder yet)."""
    who = client.who_has(parts)
    groups: dict[str | None, list[int]] = {}
    for i, part in enumerate(parts):
        groups.setdefault(min(who.get(part.key, ()), default=None), []).append(i)
    return groups


def _distributed_client(mode: str) -> Any:
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError) as exc:
        raise RuntimeError(f"mode={mode!r} needs a dask.distributed Client; start one with sm.connect() "
                           "(mode='local' also runs on the local dask scheduler)") from exc


class _Trainer:
    """Runs epochs (rounds) of one mode from a ``_State``; records the curve; writes checkpoints."""

    def __init__(self, est: _BaseSGD, problem: _Problem, state: _State, validation: tuple | None,
                 checkpointer: Checkpointer | None) -> None:
        self.est, self.problem, self.st = est, problem, state
        self.X_val, self.T_val = validation if validation is not None else (None, None)
        self.checkpointer = checkpointer
        self.t_start = time.perf_counter() - state.elapsed

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _loss(self, W: np.ndarray) -> float:
        if self.X_val is None or len(self.X_val) == 0:
            return math.nan
        return K.mean_loss(W, self.X_val, self.T_val, self.problem.loss)

    def record(self, W: np.ndarray | None = None, *, at_start: bool = False) -> None:
        st = self.st
        st.elapsed = time.perf_counter() - self.t_start
        row = (0.0 if at_start else st.elapsed, float(st.samples), float(st.bytes),
               self._loss(st.W if W is None else W))
        if st.curve and st.curve[-1][1:3] == row[1:3]:  # nothing new since the last row: refresh it
            st.curve[-1] = row
        else:
            st.curve.append(row)

    def end_epoch(self) -> bool:
        """Record, checkpoint and call the callback after an epoch; True means stop."""
        st = self.st
        st.epoch += 1
        self.record()
        if self.checkpointer is not None:
            self.checkpointer.save(st.epoch, *st.to_checkpoint())
        log.info("sgd %s epoch %d: %d samples, %d bytes, held-out loss %.5g", self.est.mode, st.epoch,
                 st.samples, st.bytes, st.curve[-1][3])
        callback = self.est.callback
        if callback is None:
            return False
        info = dict(zip(CURVE_COLUMNS, st.curve[-1]), epoch=st.epoch, mode=self.est.mode, rounds=st.rounds,
                    weights=st.W.copy())
        return bool(callback(info))

    def _step(self, G: np.ndarray) -> None:
        self.st.W = _apply(self.st.W, G, self.st.opt, self.problem)

    # -- modes ----------------------------------------------------------------------------------------
    def run(self, dX: da.Array, dy: da.Array, target: int) -> None:
        if self.st.epoch >= target:
            return
        if self.est.mode == "local":
            self._run_local(dX, dy, target)
        else:
            self._run_persisted(dX, dy, target)

    def _run_persisted(self, dX: da.Array, dy: da.Array, target: int) -> None:
        client = _distributed_client(self.est.mode)
        offsets = row_offsets(dX.chunks[0])
        blocks = zip(dX.to_delayed().ravel(), dy.to_delayed().ravel(), offsets)
        tasks = [dask.delayed(_split)(x, y, i, int(o), self.problem) for i, (x, y, o) in enumerate(blocks)]
        parts = client.compute(tasks)
        info = client.gather(client.map(_part_info, parts))
        sizes = [n for n, _, _ in info]
        if self.X_val is None:
            self.X_val = np.concatenate([xv for _, xv, _ in info])
            self.T_val = np.concatenate([tv for _, _, tv in info])
        try:
            if not self.st.curve:
                self.record(at_start=True)
            if self.est.mode == "sync":
                self._sync_epochs(client, parts, sizes, target)
            else:
                self._async_epochs(client, parts, target)
        finally:
            if self.problem.compress is not None:
                client.run(_clear_residuals, self.problem.ef_key)

    def _sync_epochs(self, client: Any, parts: list, sizes: list[int], target: int) -> None:
        st, b = self.st, self.problem.batch_size
        groups = _by_holder(client, parts)
        while st.epoch < target:
            seed = st.next_seed()
            steps = max(K.n_batches(n, b) for n in sizes)
            every = max(1, steps // 8)
            for step in range(steps):
                tasks = [(addr, active) for addr, blocks in groups.items()
                         if (active := [i for i in blocks if step * b < sizes[i]])]
                futures = [client.submit(_sync_grads, st.W, seed, step, self.problem, *(parts[i] for i in active),
                                         workers=addr and [addr], allow_other_workers=addr is not None,
                                         pure=False) for addr, active in tasks]
                replies = client.gather(futures)
                by_block = {i: reply for (_, active), (_, msgs) in zip(tasks, replies)
                            for i, reply in zip(active, msgs)}
                results = [by_block[i] for i in sorted(by_block)]  # sum in block order: grouping-independent
                rows = sum(n for _, n in results)
                G = sum(n * K.decompress(msg, st.W.shape) for msg, n in results) / rows
                st.bytes += len(tasks) * st.W.nbytes + sum(K.message_nbytes(msg) for msg, _ in results)
                st.samples += rows
                st.rounds += 1
                self._step(G)
                if any(ran != addr for (addr, _), (ran, _) in zip(tasks, replies)):
                    groups = _by_holder(client, parts)  # a worker was lost (or blocks moved): regroup
                if (step + 1) % every == 0 and step + 1 < steps:
                    self.record()
            if self.end_epoch():
                return

    def _async_epochs(self, client: Any, parts: list, target: int) -> None:
        from distributed import wait

        st, est = self.st, self.est
        if len(st.staleness) != est.max_staleness + 1:
            st.staleness = np.zeros(est.max_staleness + 1, dtype=np.int64)
        while st.epoch < target:
            seed = st.next_seed()
            server = client.submit(_ParameterServer, st.W, st.opt, self.problem, est.max_staleness,
                                   actor=True).result()
            base = (st.samples, st.bytes, st.rounds, st.rejected, st.staleness.copy())
            futures = client.map(_async_part, parts, server=server, seed=seed, problem=self.problem,
                                 push_every=est.push_every, pure=False)
            while True:
                try:
                    wait(futures, timeout=_ASYNC_POLL_S)
                    done = True
                except TimeoutError:
                    done = False
                snap = server.state().result()
                st.W, st.opt = snap["W"], snap["opt"]
                st.samples, st.bytes = base[0] + snap["samples"], base[1] + snap["bytes"]
                st.rounds, st.rejected = base[2] + snap["version"], base[3] + snap["rejected"]
                st.staleness = base[4] + snap["staleness"]
                if done:
                    break
                self.record()
            client.gather(futures)  # raises the error of a failed partition
            del server
            if self.end_epoch():
                return

    def _run_local(self, dX: da.Array, dy: da.Array, target: int) -> None:
        st, est = self.st, self.est
        Y = dy[:, None]
        out_chunks = ((1,) * dX.numblocks[0], (1,))
        first = True
        try:
            while st.epoch < target:
                seeds = [st.next_seed() for _ in range(est.local_epochs)]
                with_val = first and self.X_val is None
                out = da.map_blocks(_local_block, dX, Y, W=st.W, seeds=seeds, t0=float(st.opt["t"]),
                                    problem=self.problem, with_val=with_val, dtype=object,
                                    chunks=out_chunks, meta=np.empty((0, 0), dtype=object))
                results = out.compute().ravel()
                if with_val:
                    self.X_val = np.concatenate([r[3] for r in results])
                    self.T_val = np.concatenate([r[4] for r in results])
                if first and not st.curve:
                    self.record(at_start=True)
                first = False
                rows = np.array([r[1] for r in results], dtype=np.float64)
                delta = sum(n * K.decompress(r[0], st.W.shape) for n, r in zip(rows, results)) / rows.sum()
                st.W = st.W + delta
                st.opt["t"] += max(r[2] for r in results)
                st.bytes += len(results) * st.W.nbytes + sum(K.message_nbytes(r[0]) for r in results)
                st.samples += int(rows.sum()) * est.local_epochs
                st.rounds += 1
                if self.end_epoch():
                    return
        finally:
            if self.problem.compress is not None:
                _clear_residuals(self.problem.ef_key)
                try:
                    _distributed_client("local").run(_clear_residuals, self.problem.ef_key)
                except RuntimeError:
                    pass


# ------------------------------------------------------------------------------------------------------
# Estimators
# ------------------------------------------------------------------------------------------------------


def _check_choice(name: str, value: Any, options: tuple) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}; got {value!r}")


def _check_number(name: str, value: Any, low: float, high: float = math.inf, *, integer: bool = False,
                  low_open: bool = False) -> None:
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    ok = ok and not isinstance(value, bool) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} {'>' if low_open else '>='} {low}"
                         + (f" and <= {high}" if high < math.inf else "") + f"; got {value!r}")


class _BaseSGD(BaseEstimator):
    """Shared machinery of ``SGDRegressor`` and ``SGDClassifier`` (see the module docstring)."""

    _losses: tuple[str, ...] = ()

    def _validate_params(self) -> None:
        _check_choice("mode", self.mode, MODES)
        _check_choice("loss", self.loss, self._losses)
        _check_choice("penalty", self.penalty, K.PENALTIES)
        _check_choice("learning_rate", self.learning_rate, K.SCHEDULES)
        _check_choice("compress", self.compress, K.COMPRESSIONS)
        _check_number("alpha", self.alpha, 0.0)
        _check_number("eta0", self.eta0, 0.0, low_open=True)
        _check_number("power_t", self.power_t, 0.0)
        _check_number("batch_size", self.batch_size, 1, integer=True)
        _check_number("epochs", self.epochs, 1, integer=True)
        if self.rounds is not None:
            _check_number("rounds", self.rounds, 1, integer=True)
        _check_number("local_epochs", self.local_epochs, 1, integer=True)
        _check_number("push_every", self.push_every, 1, integer=True)
        _check_number("max_staleness", self.max_staleness, 0, integer=True)
        _check_number("topk_fraction", self.topk_fraction, 0.0, 1.0, low_open=True)
        _check_number("validation_fraction", self.validation_fraction, 0.0, 0.5)
        _check_number("random_state", self.random_state, 0, integer=True)

    @property
    def _n_epochs(self) -> int:
        """Epochs (sync, async) or rounds (local) that ``fit`` runs."""
        if self.mode == "local" and self.rounds is not None:
            return self.rounds
        return self.epochs

    # -- targets --------------------------------------------------------------------------------------
    def _fit_classes(self, dy: da.Array, classes: Any) -> np.ndarray | None:
        return None

    def _n_outputs(self, classes: np.ndarray | None) -> int:
        return 1 if classes is None or len(classes) == 2 else len(classes)

    # -- fitting --------------------------------------------------------------------------------------
    def _problem(self, classes: np.ndarray | None, validation_fraction: float) -> _Problem:
        return _Problem(loss=self.loss, penalty=self.penalty, alpha=float(self.alpha),
                        fit_intercept=bool(self.fit_intercept), schedule=self.learning_rate,
                        eta0=float(self.eta0), power_t=float(self.power_t), batch_size=int(self.batch_size),
                        classes=classes, validation_fraction=float(validation_fraction),
                        seed=int(self.random_state), compress=self.compress,
                        topk_fraction=float(self.topk_fraction), ef_key=uuid.uuid4().hex)

    def _fresh_state(self, n_features: int, classes: np.ndarray | None) -> _State:
        shape = (n_features + 1, self._n_outputs(classes))
        return _State(W=np.zeros(shape), opt=K.init_optimizer(self.learning_rate, shape),
                      rng=np.random.default_rng(self.random_state))

    def _validation(self, validation_data: Any, classes: np.ndarray | None, n_features: int) -> tuple | None:
        if validation_data is None:
            return None
        Xv, yv = (np.asarray(a.compute() if hasattr(a, "compute") else a) for a in
                  check_X_y(*validation_data))
        if Xv.shape[1] != n_features:
            raise ValueError(f"validation_data X has {Xv.shape[1]} features; the training X has {n_features}")
        Xv = Xv.astype(np.float64)
        assert_finite(Xv, "validation_data X", 0, 0)
        return Xv, _targets(yv, 0, 0, classes)

    def _checkpoint_config(self, dX: da.Array, classes: np.ndarray | None) -> dict[str, Any]:
        params = {k: v for k, v in self.get_params().items() if k not in ("checkpoint_dir", "callback")}
        return {"estimator": type(self).__name__, **params, "n_samples": int(dX.shape[0]),
                "n_features": int(dX.shape[1]), "chunks": fingerprint(dX.chunks[0]),
                "classes": None if classes is None else classes.tolist()}

    def fit(self, X: Any, y: Any = None, *, validation_data: tuple[Any, Any] | None = None) -> _BaseSGD:
        """Fit from zero weights (or resume from ``checkpoint_dir``).

        ``X``, ``y``: numpy / dask / xarray / zarr / dataset path or name (then ``y`` may be omitted).
        ``validation_data``: optional ``(X_val, y_val)`` for the held-out loss; without it a seeded
        ``validation_fraction`` of every block is held out.
        """
        self._validate_params()
        dX, dy = check_X_y(X, y, y_numeric=True)
        classes = self._fit_classes(dy, getattr(self, "classes", None))
        validation = self._validation(validation_data, classes, dX.shape[1])
        problem = self._problem(classes, 0.0 if validation is not None else self.validation_fraction)
        state = self._fresh_state(dX.shape[1], classes)
        checkpointer = None
        if self.checkpoint_dir is not None:
            checkpointer = Checkpointer(self.checkpoint_dir, self._checkpoint_config(dX, classes))
            last = checkpointer.latest()
            if last is not None:
                state = _State.from_checkpoint(last.arrays, last.meta)
                log.info("sgd: resuming from %s after epoch %d", self.checkpoint_dir, state.epoch)
        _Trainer(self, problem, state, validation, checkpointer).run(dX, dy, self._n_epochs)
        self._set_fitted(state, classes, dX.shape[1])
        return self

    def _partial_fit(self, X: Any, y: Any, classes: Any) -> _BaseSGD:
        self._validate_params()
        dX, dy = check_X_y(X, y, y_numeric=True)
        fitted = hasattr(self, "coef_")
        if fitted:
            if dX.shape[1] != self.n_features_in_:
                self._check_width(dX.shape[1])
            known = getattr(self, "classes_", None)
            if classes is not None and known is not None and not np.array_equal(np.unique(classes), known):
                raise ValueError(f"classes {np.unique(classes).tolist()} differ from the classes of the "
                                 f"earlier fit {known.tolist()}")
            state = self._state
        else:
            known = self._first_partial_classes(classes)
            state = self._fresh_state(dX.shape[1], known)
        problem = self._problem(known, self.validation_fraction)
        _Trainer(self, problem, state, None, None).run(dX, dy, state.epoch + 1)
        self._set_fitted(state, known, dX.shape[1])
        return self

    def _first_partial_classes(self, classes: Any) -> np.ndarray | None:
        return None

    def _set_fitted(self, st: _State, classes: np.ndarray | None, n_features: int) -> None:
        self._state = st
        W = st.W
        if classes is None:
            self.coef_, self.intercept_ = W[:-1, 0].copy(), float(W[-1, 0])
        else:
            self.classes_ = classes
            self.coef_, self.intercept_ = W[:-1].T.copy(), W[-1].copy()
        self.n_features_in_ = n_features
        self.loss_curve_ = np.asarray(st.curve, dtype=np.float64).reshape(-1, 4)
        self.n_iter_ = st.epoch
        self.t_ = float(st.opt["t"])
        self.samples_seen_ = st.samples
        self.bytes_exchanged_ = st.bytes
        self.n_rounds_ = st.rounds
        if self.mode == "async" and st.staleness.size:
            hist = st.staleness
            total = max(int(hist.sum()), 1)
            self.staleness_ = {"bound": self.max_staleness, "max": int(np.flatnonzero(hist).max(initial=0)),
                               "mean": float((hist * np.arange(len(hist))).sum() / total),
                               "histogram": hist.tolist(), "rejected": st.rejected}

    # -- prediction -----------------------------------------------------------------------------------
    def _W(self) -> np.ndarray:
        return self._state.W

    def _scores(self, X: Any) -> Any:
        """Linear scores (n, n_outputs): numpy for in-memory input, dask otherwise."""
        check_is_fitted(self, "coef_")
        W = self._W()
        lazy = not isinstance(X, (np.ndarray, list, tuple))
        if lazy:
            dX = as_dask_array(X, "X", ndim=2)
            self._check_width(dX.shape[1])
            return dX.map_blocks(_decision_block, W, dtype=np.float64, chunks=(dX.chunks[0], (W.shape[1],)),
                                 meta=np.empty((0, 0)))
        Xa = np.asarray(X, dtype=np.float64)
        if Xa.ndim != 2:
            raise ValueError(f"X must be a 2-d array (n_samples, n_features); got shape {Xa.shape}")
        self._check_width(Xa.shape[1])
        assert_finite(Xa, "X", 0, 0)
        return K.decision(W, Xa)

    def _check_width(self, n: int) -> None:
        if n != self.n_features_in_:
            raise ValueError(f"X has {n} features; this model was fitted with {self.n_features_in_}")


def _decision_block(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    return K.decision(W, X)


def _take(index: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return classes[index]


def _common_doc(extra: str = "") -> str:
    return f"""
    Parameters
    ----------
    mode : "sync" | "local" | "async"
        How the workers cooperate (see ``scaleml_dask.sgd``). ``sync`` and ``async`` need a
        ``distributed`` Client.
    penalty : "l2" | "l1" | None; alpha : float
        Regularisation ``alpha * (0.5 ||coef||² | ||coef||₁)`` added to the mean loss (not the intercept).
    learning_rate : "constant" | "invscaling" | "adagrad" | "adam"; eta0, power_t : float
        Step ``eta0``, ``eta0 / t**power_t``, AdaGrad or Adam with base step ``eta0``.
    batch_size : int
        Rows per mini-batch of one block (sync: every partition contributes one per step).
    epochs : int
        Passes over the data (sync, async; and local when ``rounds`` is None).
    rounds, local_epochs : int
        Local mode: averaging rounds, and epochs each partition runs per round.
    push_every, max_staleness : int
        Async mode: mini-batch gradients per push, and how many versions behind a push may be.
    compress : None | "float16" | "topk"; topk_fraction : float
        Compression of what workers send back, with error feedback.
    validation_fraction : float
        Seeded fraction of every block held out for the held-out loss (ignored with ``validation_data``).
    random_state : int
        Seed of the mini-batch order and the held-out split.
    checkpoint_dir : path or None
        Write a checkpoint after every epoch (round); resume from it.
    callback : callable(info: dict) -> bool or None
        Called after every epoch (round) with the last ``loss_curve_`` row, ``epoch``, ``rounds`` and
        ``weights`` (coefficients with the intercept as last row); returning True stops.{extra}

    Attributes
    ----------
    coef_, intercept_ : fitted weights (numpy).
    loss_curve_ : array (n_rows, 4): wall time s, samples seen, bytes exchanged, held-out loss.
    n_iter_ : epochs (rounds) done. n_rounds_ : communication rounds (sync steps, local rounds, async
        accepted pushes). samples_seen_, bytes_exchanged_ : totals. staleness_ : async statistics.
    """


class SGDRegressor(RegressorMixin, _BaseSGD):
    __doc__ = """Linear regression by distributed mini-batch SGD on the squared loss.
    """ + _common_doc() + """
    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((2000, 3)); y = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    >>> m = SGDRegressor(mode="local", rounds=8, batch_size=50, eta0=0.05, alpha=0.0).fit(X, y)
    >>> np.round(m.coef_, 1).tolist(), round(m.intercept_, 1)
    ([1.0, -2.0, 0.5], 3.0)
    """

    _losses = ("squared",)

    def __init__(self, *, mode: str = "sync", loss: str = "squared", penalty: str | None = "l2",
                 alpha: float = 1e-4, fit_intercept: bool = True, learning_rate: str = "adam",
                 eta0: float = 0.01, power_t: float = 0.5, batch_size: int = 1000, epochs: int = 5,
                 rounds: int | None = None, local_epochs: int = 1, push_every: int = 4,
                 max_staleness: int = 8, compress: str | None = None, topk_fraction: float = 0.1,
                 validation_fraction: float = 0.01,
                 random_state: int = 0, checkpoint_dir: str | None = None,
                 callback: Callable[[dict], bool | None] | None = None) -> None:
        self.mode = mode
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.batch_size = batch_size
        self.epochs = epochs
        self.rounds = rounds
        self.local_epochs = local_epochs
        self.push_every = push_every
        self.max_staleness = max_staleness
        self.compress = compress
        self.topk_fraction = topk_fraction
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.checkpoint_dir = checkpoint_dir
        self.callback = callback

    def partial_fit(self, X: Any, y: Any) -> SGDRegressor:
        """One more epoch (local: one round) on the blocks of ``X``, ``y``, from the current state."""
        return self._partial_fit(X, y, None)

    def predict(self, X: Any) -> Any:
        """Predicted values: numpy for numpy input, a dask array for dask / xarray / zarr input."""
        return self._scores(X)[:, 0]


class SGDClassifier(ClassifierMixin, _BaseSGD):
    __doc__ = """Linear classifier (logistic or hinge loss; one-vs-rest for more than two classes) by
    distributed mini-batch SGD.
    """ + _common_doc("""
    loss : "log_loss" | "hinge"
    classes : array-like or None
        The declared classes; labels outside them raise an error naming them. Otherwise taken from ``y``
        (``fit``) or the ``classes`` argument of the first ``partial_fit``.""") + """
    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((4000, 2)); y = (X[:, 0] - X[:, 1] > 0).astype(int)
    >>> clf = SGDClassifier(mode="local", rounds=3, batch_size=100, eta0=0.05).fit(X, y)
    >>> clf.classes_.tolist(), bool(clf.score(X, y) > 0.97)
    ([0, 1], True)
    """

    _losses = ("log_loss", "hinge")

    def __init__(self, *, mode: str = "sync", loss: str = "log_loss", penalty: str | None = "l2",
                 alpha: float = 1e-4, fit_intercept: bool = True, learning_rate: str = "adam",
                 eta0: float = 0.01, power_t: float = 0.5, batch_size: int = 1000, epochs: int = 5,
                 rounds: int | None = None, local_epochs: int = 1, push_every: int = 4,
                 max_staleness: int = 8, compress: str | None = None, topk_fraction: float = 0.1,
                 validation_fraction: float = 0.01,
                 random_state: int = 0, checkpoint_dir: str | None = None,
                 callback: Callable[[dict], bool | None] | None = None, classes: Any = None) -> None:
        self.mode = mode
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.batch_size = batch_size
        self.epochs = epochs
        self.rounds = rounds
        self.local_epochs = local_epochs
        self.push_every = push_every
        self.max_staleness = max_staleness
        self.compress = compress
        self.topk_fraction = topk_fraction
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.checkpoint_dir = checkpoint_dir
        self.callback = callback
        self.classes = classes

    @staticmethod
    def _declared(classes: Any) -> np.ndarray:
        declared = np.unique(np.asarray(classes))
        if declared.size < 2:
            raise ValueError(f"classes must hold at least two labels; got {declared.tolist()}")
        return declared

    def _fit_classes(self, dy: da.Array, classes: Any) -> np.ndarray:
        if classes is not None:
            return self._declared(classes)
        found = np.unique(da.unique(dy).compute())
        if np.issubdtype(found.dtype, np.floating) and np.isnan(found).any():
            raise ValueError("y contains NaN labels")
        if found.size < 2:
            raise ValueError(f"y has a single class {found.tolist()}; a classifier needs at least two")
        return found

    def _first_partial_classes(self, classes: Any) -> np.ndarray:
        classes = classes if classes is not None else self.classes
        if classes is None:
            raise ValueError("classes must be given on the first call to partial_fit (or in the constructor)")
        return self._declared(classes)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> SGDClassifier:
        """One more epoch (local: one round) on the blocks of ``X``, ``y``, continuing from the current state.

        ``classes`` is required on the first call unless declared in the constructor.
        """
        return self._partial_fit(X, y, classes)

    def decision_function(self, X: Any) -> Any:
        """Scores: shape (n,) for two classes, (n, n_classes) otherwise."""
        S = self._scores(X)
        return S[:, 0] if S.shape[1] == 1 else S

    def predict(self, X: Any) -> Any:
        """Predicted labels (numpy for numpy input, dask otherwise)."""
        S = self._scores(X)
        if S.shape[1] == 1:
            idx = (S[:, 0] > 0).astype(np.intp)
        else:
            idx = S.argmax(axis=1)
        if isinstance(idx, da.Array):
            return idx.map_blocks(_take, self.classes_, dtype=self.classes_.dtype)
        return self.classes_[idx]

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities (log_loss only): the sigmoid for two classes; one-vs-rest sigmoids
        normalised to sum to one otherwise, as scikit-learn does."""
        if self.loss != "log_loss":
            raise AttributeError(f"predict_proba is not available for loss={self.loss!r}; use 'log_loss'")
        S = self._scores(X)
        xp = da if isinstance(S, da.Array) else np
        P = 1.0 / (1.0 + xp.exp(-S))
        if S.shape[1] == 1:
            return xp.concatenate([1.0 - P, P], axis=1)
        return P / P.sum(axis=1, keepdims=True)
