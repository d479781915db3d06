"""Worker side of distributed SGD: what a block's task does with its rows.

A block is checked, its targets encoded and its held-out rows split off once (:func:`split_block`, whose
result stays on the worker that computed it); then each mode runs its block function on it: the gradient
of one mini-batch (sync, :func:`sync_gradients`), local epochs of plain SGD (local, :func:`local_block`,
which reads the raw block itself: the data are streamed), or pulls and pushes against the parameter server
(async, :func:`async_partition` and the :class:`ParameterServer` actor). What a block sends back goes
through :func:`send`: compressed, with the error feedback of that block kept in its worker's memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import assert_finite, assert_finite_rows, csr_block
from ._kernels import (
    batch_gradient,
    compress_with_feedback,
    decompress,
    descent_step,
    encode_checked,
    holdout_range,
    local_epochs,
    message_nbytes,
    n_batches,
    summed_loss,
    unknown_labels,
)

# How long anyone waits for one answer of the parameter server (async mode): far above a pull or push
# (milliseconds), and a bound, so that a lost server fails the wait instead of hanging it. A block's task
# waits in slices of _POLL_S and asks the scheduler in between whether the server's worker still holds it.
SERVER_TIMEOUT_S = 60.0
_POLL_S = 1.0


@dataclass(frozen=True)
class Problem:
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

    def holdout(self, index: int, n: int) -> tuple[int, int]:
        """The held-out range ``[lo, hi)`` of block ``index`` of ``n`` rows."""
        return holdout_range(self.seed, index, n, self.validation_fraction)

    def descend(self, W: np.ndarray, G: np.ndarray, opt: dict[str, np.ndarray]) -> np.ndarray:
        """The weights after one optimizer step along ``G`` plus the penalty; advances ``opt``."""
        return descent_step(W, G, opt, penalty=self.penalty, alpha=self.alpha, schedule=self.schedule,
                            eta0=self.eta0, power_t=self.power_t)


@dataclass
class Part:
    """One block held on a worker: its rows and targets, the held-out range ``[val_lo, val_hi)``, and the
    training ring of ``n_train`` rows from row ``start`` (so that splitting copies nothing)."""

    index: int
    X: np.ndarray
    T: np.ndarray
    val_lo: int
    val_hi: int

    @property
    def n_train(self) -> int:
        return self.X.shape[0] - (self.val_hi - self.val_lo)

    @property
    def start(self) -> int:
        return self.val_hi % self.X.shape[0]

    def gradient(self, W: np.ndarray, seed: int, step: int, problem: Problem) -> tuple[np.ndarray, int]:
        """Mean gradient of mini-batch ``step`` of the epoch with seed ``seed`` at ``W``, and its rows."""
        return batch_gradient(W, self.X, self.T, start=self.start, n_train=self.n_train, seed=seed,
                              block=self.index, batch_size=problem.batch_size, step=step, loss=problem.loss,
                              fit_intercept=problem.fit_intercept)


# ------------------------------------------------------------------------------------------------------
# Error-feedback memory, per (fit, block), in each worker's process
# ------------------------------------------------------------------------------------------------------

_RESIDUALS: dict[tuple[str, int], np.ndarray] = {}


def send(v: np.ndarray, problem: Problem, block: int) -> tuple[Any, ...]:
    """The message carrying ``v`` from ``block``: compressed as the problem says, with error feedback."""
    key = (problem.ef_key, block)
    msg, residual = compress_with_feedback(v, _RESIDUALS.get(key), problem.compress, problem.topk_fraction)
    if residual is not None:
        _RESIDUALS[key] = residual
    return msg


def clear_residuals(ef_key: str) -> None:
    """Forget the error feedback of one fit (run on every worker when the fit ends)."""
    for key in [k for k in _RESIDUALS if k[0] == ef_key]:
        del _RESIDUALS[key]


# ------------------------------------------------------------------------------------------------------
# Local mode's held-out rows, per (fit, block), in the memory of the worker that read the block
# ------------------------------------------------------------------------------------------------------

_HELD: dict[tuple[str, int], tuple[Any, np.ndarray]] = {}


def held_out_losses(W: np.ndarray, problem: Problem) -> dict[int, tuple[float, int]]:
    """Per block whose held-out rows this process keeps for the fit: their summed loss at ``W`` and their count
    (a few numbers, instead of the rows, to the client)."""
    held = [(i, rows) for (key, i), rows in list(_HELD.items()) if key == problem.ef_key]
    return {i: (summed_loss(W, X, T, problem.loss), X.shape[0]) for i, (X, T) in held}


def held_out_block(X: np.ndarray, y: np.ndarray, *, chunk_index: int, row_start: int, W: np.ndarray,
                   problem: Problem) -> dict[int, tuple[float, int]]:
    """``held_out_losses`` of one block read again (its held-out rows kept anew): for blocks whose rows were
    lost with their worker."""
    part = split_block(X, y, chunk_index=chunk_index, row_start=row_start, problem=problem, check_train=False)
    X_val, T_val = _HELD[(problem.ef_key, chunk_index)] = held_out_rows(part)
    return {chunk_index: (summed_loss(W, X_val, T_val, problem.loss), X_val.shape[0])}


def keep_held_out(ef_key: str, held: dict[int, tuple[Any, np.ndarray]]) -> None:
    """Keep in this process the held-out rows of the blocks in ``held`` (brought back from processes that
    ``run_everywhere`` cannot reach)."""
    _HELD.update({(ef_key, i): rows for i, rows in held.items()})


def clear_held_out(ef_key: str) -> None:
    """Forget the held-out rows of one fit (run on every worker when the fit ends)."""
    for key in [k for k in _HELD if k[0] == ef_key]:
        _HELD.pop(key, None)


# ------------------------------------------------------------------------------------------------------
# A block's split
# ------------------------------------------------------------------------------------------------------


def checked_targets(y: np.ndarray, index: int, row0: int, classes: np.ndarray | None) -> np.ndarray:
    """``y`` of one block checked (finite, labels among the classes) and encoded for the kernels."""
    assert_finite(y, "y", index, row0)
    T, known = encode_checked(y, classes)
    if not known:
        bad = unknown_labels(y, classes)
        raise ValueError(f"y contains labels {bad.tolist()} that are not among the classes "
                         f"{classes.tolist()} (chunk {index}, rows {row0}-{row0 + len(y) - 1})")
    return T


def as_block(X: Any) -> Any:
    """A block as the kernels take it: C-contiguous float64, or a canonical CSR matrix (float64 values, int32
    indices) for a sparse block."""
    if hasattr(X, "table_parts"):  # a pipeline's table chunk as its parts (local epochs take it as it is)
        return X
    if not hasattr(X, "indptr") and not hasattr(X, "tocsr"):
        return np.ascontiguousarray(X, dtype=np.float64)
    return csr_block(X)


def stack_rows(blocks: list) -> Any:
    """Row blocks (numpy or CSR) one under the other."""
    if blocks and hasattr(blocks[0], "indptr"):
        import scipy.sparse as sp

        return sp.vstack(blocks, format="csr")
    return np.concatenate(blocks)


def split_block(X: np.ndarray, y: np.ndarray, *, chunk_index: int, row_start: int, problem: Problem,
                check_train: bool = True) -> Part:
    """Check one block, encode its targets and split off its held-out rows. With ``check_train=False``
    only the held-out rows of X are checked here: the caller checks the training rows in the pass that
    reads them (``local_epochs`` reports non-finite margins)."""
    X = as_block(X)
    y = np.asarray(y).ravel()
    lo, hi = problem.holdout(chunk_index, X.shape[0])
    if check_train:
        assert_finite_rows(X, "X", chunk_index, row_start)
    else:
        assert_finite_rows(X[lo:hi], "X", chunk_index, row_start + lo)
    return Part(chunk_index, X, checked_targets(y, chunk_index, row_start, problem.classes), lo, hi)


def held_out_rows(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the held-out rows of a split block and their encoded targets. Its only input is the split
    block, so it runs on the worker holding it: split blocks are never copied to another worker."""
    return part.X[part.val_lo:part.val_hi].copy(), part.T[part.val_lo:part.val_hi].copy()


# ------------------------------------------------------------------------------------------------------
# Sync and local mode
# ------------------------------------------------------------------------------------------------------


def sync_gradients(W: np.ndarray, seed: int, step: int, problem: Problem,
                   *parts: Part) -> tuple[str, float, list[tuple[Any, int]]]:
    """Mini-batch ``step`` of the persisted blocks given to one worker (sync mode), in one reply: per
    block its gradient message (compressed with that block's error feedback) and rows; the address of the
    worker that ran the task, so the client can tell when a worker was lost; and the seconds the task
    computed, which the client's balancing needs (``_balance``)."""
    from distributed import get_worker

    t0 = time.perf_counter()
    replies = []
    for part in parts:
        G, rows = part.gradient(W, seed, step, problem)
        replies.append((send(G, problem, part.index), rows))
    return get_worker().address, time.perf_counter() - t0, replies


def local_block(X: np.ndarray, y: np.ndarray, *, chunk_index: int, row_start: int, W: np.ndarray,
                seeds: list[int], t0: float, problem: Problem, with_val: bool, val_back: bool = False) -> tuple:
    """Local epochs over one block (local mode): (message of the weight change, training rows, steps). With
    ``with_val`` its held-out rows are kept in this process for the fit (``held_out_losses``), or with
    ``val_back`` returned too, as ``{chunk_index: rows}`` (for a process the client cannot reach)."""
    part = split_block(X, y, chunk_index=chunk_index, row_start=row_start, problem=problem, check_train=False)
    W_new, steps, finite = local_epochs(W, part.X, part.T, start=part.start, n_train=part.n_train, seeds=seeds,
                                        block=chunk_index, batch_size=problem.batch_size, loss=problem.loss,
                                        penalty=problem.penalty, alpha=problem.alpha,
                                        fit_intercept=problem.fit_intercept, schedule=problem.schedule,
                                        eta0=problem.eta0, power_t=problem.power_t, t0=t0)
    if not finite:  # NaN / inf in a training row (or diverged weights: then this finds nothing)
        assert_finite_rows(part.X.tocsr() if hasattr(part.X, "table_parts") else part.X, "X", chunk_index,
                           row_start)
    msg = send(W_new - W, problem, chunk_index)
    if with_val and val_back:
        return msg, part.n_train, steps, {chunk_index: held_out_rows(part)}
    if with_val:
        _HELD[(problem.ef_key, chunk_index)] = held_out_rows(part)
    return msg, part.n_train, steps


@dataclass(frozen=True)
class LocalSum:
    """Local-mode round results summed over chunks (:func:`sum_local`): ``weighted`` = Σ n_i ΔW_i, ``rows`` =
    Σ n_i, the most ``steps`` of a chunk, the messages' ``nbytes`` and the ``chunks`` summed; the held-out rows
    the chunks sent back (``local_block``'s ``val_back``)."""

    weighted: np.ndarray
    rows: int
    steps: int
    nbytes: int
    chunks: int
    held: dict = field(default_factory=dict)


def sum_local(parts: list, shape: tuple[int, ...]) -> LocalSum:
    """Sum ``local_block`` results (or partial sums of them): a round's weight changes are tree-reduced on the
    workers, so a worker holds a fan-in of them, never one per chunk (a 2**20-feature model's change is 8 MiB)."""
    weighted, rows, steps, nbytes, chunks, held = None, 0, 0, 0, 0, {}
    for p in parts:
        if isinstance(p, LocalSum):
            held.update(p.held)
            if weighted is None:  # summed into in place: a new array, never another task's result
                weighted = p.weighted.copy()
            else:
                weighted += p.weighted
            rows, steps, nbytes, chunks = rows + p.rows, max(steps, p.steps), nbytes + p.nbytes, chunks + p.chunks
            continue
        msg, n, k, *back = p
        held.update(*back)
        if weighted is None:
            weighted = decompress(msg, shape) * n
        elif msg[0] == "rows":  # a chunk's non-zero rows, added where they go
            weighted[msg[1]] += msg[2] * n
        else:
            weighted += decompress(msg, shape) * n
        rows, steps, nbytes, chunks = rows + int(n), max(steps, int(k)), nbytes + message_nbytes(msg), chunks + 1
    return LocalSum(weighted, rows, steps, nbytes, chunks, held)


# ------------------------------------------------------------------------------------------------------
# Async mode
# ------------------------------------------------------------------------------------------------------


class ParameterServer:
    """Holds the weights and optimizer state; applies pushed gradients as they arrive (async mode)."""

    def __init__(self, W: np.ndarray, opt: dict[str, np.ndarray], problem: Problem,
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
        self.bytes += message_nbytes(msg)
        stale = self.version - version
        if stale > self.max_staleness:
            self.rejected += 1
            return False
        self.W = self.problem.descend(self.W, decompress(msg, self.W.shape), self.opt)
        self.version += 1
        self.staleness[stale] += 1
        return True

    def state(self) -> dict[str, Any]:
        """A snapshot (not counted as traffic): weights, optimizer state and counters."""
        return {"W": self.W.copy(), "opt": {k: v.copy() for k, v in self.opt.items()},
                "version": self.version, "samples": self.samples, "bytes": self.bytes,
                "rejected": self.rejected, "staleness": self.staleness.copy()}


def hosts_server(who_has: dict, key: str, host: str) -> bool:
    """Whether ``host`` still holds the actor ``key`` in a ``who_has`` answer. (Workers whose tasks use the
    actor are listed too: they hold a handle; the host is the one that held it before any task ran.)"""
    return host in who_has.get(key, ())


def _answer(call: Any, server: Any, host: str) -> Any:
    """The answer of a server call, waited for in slices: between them the scheduler is asked whether the
    server is still on ``host``, so that a task whose server was lost fails within about ``_POLL_S``
    (a slow server is waited for up to ``SERVER_TIMEOUT_S``)."""
    from distributed import get_worker
    from distributed.utils import sync

    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while True:
        try:
            return call.result(timeout=_POLL_S)
        except TimeoutError:
            worker = get_worker()
            who = sync(worker.loop, worker.scheduler.who_has, keys=[server.key])
            if not hosts_server(who, server.key, host):
                raise RuntimeError(f"the parameter server on {host} was lost") from None
            if time.monotonic() > deadline:
                raise


def async_partition(part: Part, server: Any, host: str, seed: int, problem: Problem, push_every: int) -> None:
    """Pull, compute ``push_every`` mini-batch gradients at the pulled weights, push; over the whole block
    (``host``: the worker hosting the ``server`` actor)."""
    total = n_batches(part.n_train, problem.batch_size)
    for first in range(0, total, push_every):
        for _attempt in range(2):  # a push rejected as too stale is recomputed once from fresh weights
            version, W = _answer(server.pull(), server, host)
            G = np.zeros_like(W)
            rows_seen = 0
            for step in range(first, min(first + push_every, total)):
                g, rows = part.gradient(W, seed, step, problem)
                G += rows * g
                rows_seen += rows
            msg = send(G / rows_seen, problem, part.index)
            if _answer(server.push(msg, version, rows_seen), server, host):
                break
