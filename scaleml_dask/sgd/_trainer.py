"""Client side of distributed SGD: the loops of the three modes, driven by a frozen :class:`TrainConfig`,
advancing a :class:`TrainState` (weights, optimizer, RNG, counters, loss curve) that checkpoints as it is.

The trainer knows nothing of the estimator: ``fit`` builds the config once from its parameters.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np

from .._math import one_blas_thread
from ..checkpoint import Checkpointer
from ..passes import broadcast, map_row_chunks, reduce_here, run_everywhere, tasks_out_of_reach
from ._balance import Balancer
from ._blocks import (
    SERVER_TIMEOUT_S,
    LocalSum,
    ParameterServer,
    Problem,
    async_partition,
    clear_held_out,
    clear_residuals,
    held_out_block,
    held_out_losses,
    held_out_rows,
    hosts_server,
    keep_held_out,
    local_block,
    split_block,
    stack_rows,
    sum_local,
    sync_gradients,
)
from ._kernels import decompress, mean_loss, message_nbytes, n_batches

log = logging.getLogger("scaleml_dask.sgd")

CURVE_COLUMNS = ("wall_time_s", "samples_seen", "bytes_exchanged", "heldout_loss")
_ASYNC_POLL_S = 0.2
_MAX_RESUMES = 3  # parameter servers lost in one fit before it gives up
_SETTLE_S = 5.0
#: Local mode sums a round's weight changes in this process when all of them together are at most this large
#: (``passes.reduce_here(on_workers=False)``: the same sums, without the tree's tasks and transfers on the workers).
_SUM_HERE_BYTES = 16 << 20
#: Weights of at most this many bytes travel inside a local-mode round's tasks instead of being scattered.
_INLINE_BYTES = 64 << 10


#: A held-out loss this many times the loss the fit started from is reported as diverging (a warning).
DIVERGENCE_FACTOR = 10.0


class DivergenceError(FloatingPointError, ValueError):
    """The fit diverged: its weights (or held-out loss) stopped being finite in epoch ``epoch``."""

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch


class DivergenceWarning(UserWarning):
    """The held-out loss grew past ``DIVERGENCE_FACTOR`` times the loss the fit started from."""


class ParameterServerLostError(RuntimeError):
    """The parameter server of an async fit stopped answering (its worker left) and the fit could not
    resume (no ``checkpoint_dir``, or lost too often)."""


@dataclass(frozen=True)
class TrainConfig:
    """What the trainer needs, built once by ``fit`` from the estimator's parameters."""

    mode: str
    problem: Problem
    local_epochs: int
    push_every: int
    max_staleness: int
    callback: Callable[[dict], bool | None] | None


@dataclass
class TrainState:
    """Weights, optimizer state, the RNG drawing each epoch's seed, progress counters and the loss curve."""

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
    def from_checkpoint(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> TrainState:
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        opt = {k[4:]: v.copy() for k, v in arrays.items() if k.startswith("opt_")}
        return cls(W=arrays["W"].copy(), opt=opt, rng=rng, epoch=meta["epoch"], samples=meta["samples"],
                   bytes=meta["bytes"], rounds=meta["rounds"], elapsed=meta["elapsed"],
                   rejected=meta["rejected"], curve=[tuple(r) for r in arrays["curve"].tolist()],
                   staleness=arrays["staleness"].copy())

    def copy(self) -> TrainState:
        """An independent copy (the round trip of a checkpoint, without the disk)."""
        return TrainState.from_checkpoint(*self.to_checkpoint())


def distributed_client(mode: str) -> Any:
    """The current ``distributed`` Client, or an error saying that ``mode`` needs one."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError) as exc:
        raise RuntimeError(f"mode={mode!r} needs a dask.distributed Client; start one with sm.connect() "
                           "(mode='local' also runs on the local dask scheduler)") from exc


def _holders(client: Any, parts: list) -> dict[int, set[str]]:
    """The workers holding a copy of each persisted block (an empty set while a lost block has none)."""
    who = client.who_has(parts)
    return {i: set(who.get(part.key, ())) for i, part in enumerate(parts)}


def _submit_pinned(client: Any, part: Any, holders: set[str], kwargs: dict) -> Any:
    """An async partition's task, run only where its block is (anywhere while the block has no holder). Not
    left to dask's work stealing: it moves a whole block to a worker that ran out of tasks, priced at the
    scheduler's default bandwidth, which over a slow link costs more than the task it shortens
    (benchmarks/cost_model.md, async SGD)."""
    return client.submit(async_partition, part, **kwargs, workers=sorted(holders) or None,
                         allow_other_workers=False, pure=False)


def _unreachable(futures: list, parts: list, pinned: list[set[str]], who: dict) -> list[tuple[int, set[str]]]:
    """The unfinished async tasks pinned to workers that no longer hold their block (they left, or the block
    is being recomputed), each with the block's holders now: to be submitted again."""
    out = []
    for i, (f, part) in enumerate(zip(futures, parts)):
        now = set(who.get(part.key, ()))
        if pinned[i] and not pinned[i] & now and not f.done():
            out.append((i, now))
    return out


def _balancer(client: Any, parts: list, sizes: list[int], width: int) -> Balancer:
    """A fresh plan of blocks per worker: each block where it is (``_balance``)."""
    return Balancer(_holders(client, parts), [8 * n * width for n in sizes])


#: Sync and async SGD refuse data larger than this share of the workers' memory limits (dask's own spilling
#: starts at 60 % of a worker's limit: blocks held for every step would be written to disk and read back).
HELD_FRACTION = 0.6


def _check_fits_in_memory(client: Any, mode: str, nbytes: int) -> None:
    """A ``MemoryError`` naming the sizes if the blocks ``mode`` keeps in the workers' memory cannot fit there."""
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    if limits and all(limits) and nbytes > HELD_FRACTION * sum(limits):  # no workers yet: nothing to compare
        raise MemoryError(f"mode={mode!r} keeps the training blocks in the workers' memory for the whole fit: "
                          f"{nbytes / 1e9:.2f} GB of data, but {len(limits)} workers can hold "
                          f"{HELD_FRACTION * sum(limits) / 1e9:.2f} GB ({HELD_FRACTION:.0%} of their memory limits). "
                          "Use mode='local', which streams the data from the store, or more workers")


def _raise_first_error(futures: list) -> None:
    """Wait for ``futures`` and raise the error of the first (in block order) that failed."""
    from distributed import wait

    wait(futures)
    for f in futures:
        if f.status == "error":
            f.result()


class _ServerLost(Exception):
    """Raised inside an async epoch when its parameter server was lost (its worker left)."""


class Trainer:
    """Runs epochs (rounds) of one mode from a ``TrainState``; records the curve; writes checkpoints."""

    def __init__(self, config: TrainConfig, state: TrainState, validation: tuple | None,
                 checkpointer: Checkpointer | None) -> None:
        self.config, self.st = config, state
        self.X_val, self.T_val = validation if validation is not None else (None, None)
        self.held_out: tuple | None = None  # local mode: the data whose held-out rows the workers keep
        self.held_rows = 0
        self.checkpointer = checkpointer
        self.origin = state.copy()  # where a lost async epoch restarts when no checkpoint was written yet
        self.t_start = time.perf_counter() - state.elapsed

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _loss(self, W: np.ndarray) -> float:
        if self.held_out is not None:
            return self._held_out_loss(W)
        if self.X_val is None or self.X_val.shape[0] == 0:
            return math.nan
        # one BLAS thread: the client's held-out product is small, and BLAS threads left spinning after it take
        # cores the workers and the scheduler share with the client (benchmarks/cost_model.md)
        with one_blas_thread():
            return mean_loss(W, self.X_val, self.T_val, self.config.problem.loss)

    def _held_out_loss(self, W: np.ndarray) -> float:
        """The held-out loss at ``W`` from the loss each worker computes on the held-out rows it keeps (local
        mode): the rows never leave their worker. Blocks whose rows were lost with their worker are read again
        (a pass over them). Summed in block order, whichever worker holds which block."""
        problem, (dX, dy) = self.config.problem, self.held_out
        parts: dict[int, tuple[float, int]] = {}
        for found in run_everywhere(held_out_losses, W, problem):
            parts.update(found)
        if len(parts) < len(dX.chunks[0]):
            log.info("sgd local: the held-out rows of %d blocks were lost with their worker; reading them again",
                     len(dX.chunks[0]) - len(parts))
            with broadcast(W) as W_:
                found = dask.compute(*map_row_chunks(held_out_block, dX, dy, W=W_, problem=problem))
            parts = {i: v for f in found for i, v in f.items()}
        self.held_rows = sum(n for _, n in parts.values())
        return math.nan if self.held_rows == 0 else math.fsum(parts[i][0] for i in sorted(parts)) / self.held_rows

    def record(self, *, at_start: bool = False) -> None:
        st = self.st
        st.elapsed = time.perf_counter() - self.t_start
        row = (0.0 if at_start else st.elapsed, float(st.samples), float(st.bytes), self._loss(st.W))
        if st.curve and st.curve[-1][1:3] == row[1:3]:  # nothing new since the last row: refresh it
            st.curve[-1] = row
        else:
            st.curve.append(row)

    def end_epoch(self) -> bool:
        """Record, checkpoint and call the callback after an epoch; True means stop."""
        st, cfg = self.st, self.config
        st.epoch += 1
        self.record()
        self._check_divergence()
        if self.checkpointer is not None:
            self.checkpointer.save(st.epoch, *st.to_checkpoint())
        log.info("sgd %s epoch %d: %d samples, %d bytes, held-out loss %.5g", cfg.mode, st.epoch,
                 st.samples, st.bytes, st.curve[-1][3])
        if cfg.callback is None:
            return False
        info = dict(zip(CURVE_COLUMNS, st.curve[-1]), epoch=st.epoch, mode=cfg.mode, rounds=st.rounds,
                    weights=st.W.copy())
        return bool(cfg.callback(info))

    def _check_divergence(self) -> None:
        """Raise naming the epoch when the weights (or the held-out loss) stop being finite; warn, once, when the
        held-out loss passes ``DIVERGENCE_FACTOR`` times its value at the start of the fit."""
        st, cfg = self.st, self.config
        loss, first = st.curve[-1][3], st.curve[0][3]
        held_out = self.held_rows > 0 if self.held_out is not None else (
            self.X_val is not None and self.X_val.shape[0] > 0)  # else the loss is NaN by construction
        if not np.isfinite(st.W).all() or (math.isinf(loss) or (math.isnan(loss) and held_out)):
            raise DivergenceError(f"SGD ({cfg.mode} mode) diverged in epoch {st.epoch}: the weights (held-out loss "
                                  f"{loss:.4g}) are no longer finite; lower eta0, use learning_rate='adam' or "
                                  "'adagrad', or scale the features", st.epoch)
        if loss > DIVERGENCE_FACTOR * first and not getattr(self, "_warned", False):
            import warnings

            self._warned = True
            warnings.warn(f"SGD ({cfg.mode} mode) is diverging: the held-out loss after epoch {st.epoch} ({loss:.4g}) "
                          f"is over {DIVERGENCE_FACTOR:g}x its value at the start ({first:.4g}); lower eta0",
                          DivergenceWarning, stacklevel=5)

    # -- modes ----------------------------------------------------------------------------------------
    def run(self, dX: da.Array, dy: da.Array, target: int) -> TrainState:
        """Train until epoch (round) ``target`` or until the callback stops; returns the final state."""
        if self.st.epoch < target:
            if self.config.mode == "local":
                self._run_local(dX, dy, target)
            else:
                self._run_persisted(dX, dy, target)
        return self.st

    def _run_persisted(self, dX: da.Array, dy: da.Array, target: int) -> None:
        cfg, problem = self.config, self.config.problem
        client = distributed_client(cfg.mode)
        _check_fits_in_memory(client, cfg.mode, dX.nbytes + dy.nbytes)
        parts = client.compute(map_row_chunks(split_block, dX, dy, problem=problem))  # each reads its rows
        _raise_first_error(parts)
        if self.X_val is None:  # from the split blocks, on the workers holding them
            held = client.map(held_out_rows, parts, pure=False)
            Xs, Ts = zip(*client.gather(held))
            self.X_val, self.T_val = stack_rows(list(Xs)), np.concatenate(Ts)
            del held  # releases the held-out rows on the workers
        sizes = [n - (hi - lo) for i, n in enumerate(dX.chunks[0]) for lo, hi in [problem.holdout(i, n)]]
        try:
            if not self.st.curve:
                self.record(at_start=True)
            if cfg.mode == "sync":
                self._sync_epochs(client, parts, sizes, target)
            else:
                self._async_epochs(client, parts, target)
        finally:
            if problem.compress is not None:
                client.run(clear_residuals, problem.ef_key)

    def _sync_epochs(self, client: Any, parts: list, sizes: list[int], target: int) -> None:
        from distributed import as_completed

        st, problem = self.st, self.config.problem
        b = problem.batch_size
        width = sum(st.W.shape)  # float64 values of a block's row, about: its features and targets
        balancer = _balancer(client, parts, sizes, width)
        while st.epoch < target:
            seed = st.next_seed()
            steps = max(n_batches(n, b) for n in sizes)
            every = max(1, steps // 8)
            for step in range(steps):
                tasks = balancer.tasks(i for i in range(len(parts)) if step * b < sizes[i])
                t0 = time.perf_counter()
                futures = [client.submit(sync_gradients, st.W, seed, step, problem, *(parts[i] for i in blocks),
                                         workers=addr and [addr], allow_other_workers=addr is not None,
                                         pure=False) for addr, blocks in tasks]
                # a worker's round trip ends when its gradients are here, as the step waits for them: a slow
                # link delays the fetch of the result, not only the task's completion
                round_trip, reply_of = {}, {}
                for f, reply in as_completed(futures, with_results=True):
                    round_trip[f.key], reply_of[f.key] = time.perf_counter() - t0, reply
                replies = [reply_of[f.key] for f in futures]
                balancer.observe_step(time.perf_counter() - t0)
                by_block = {i: reply for (_, active), (_, _, msgs) in zip(tasks, replies)
                            for i, reply in zip(active, msgs)}
                results = [by_block[i] for i in sorted(by_block)]  # sum in block order: grouping-independent
                rows = sum(n for _, n in results)
                G = sum(n * decompress(msg, st.W.shape) for msg, n in results) / rows
                st.bytes += len(tasks) * st.W.nbytes + sum(message_nbytes(msg) for msg, _ in results)
                st.samples += rows
                st.rounds += 1
                st.W = problem.descend(st.W, G, st.opt)
                for (addr, blocks), f, (ran, seconds, _) in zip(tasks, futures, replies):
                    if ran == addr:
                        balancer.observe(addr, round_trip[f.key], seconds, len(blocks))
                if any(ran != addr for (addr, _), (ran, _, _) in zip(tasks, replies)):
                    balancer = _balancer(client, parts, sizes, width)  # a worker was lost: start again
                elif (step + 1) % every == 0 and balancer.rebalance(
                        steps - step - 1 + (target - st.epoch - 1) * steps, _holders(client, parts)):
                    log.info("sync SGD: blocks per worker now %s (%.1f MB copied so far)%s",
                             {w: len(bs) for w, bs in balancer.plan.items()}, balancer.moved_bytes / 1e6,
                             ": the last plan did not shorten the steps, undone" if balancer.frozen else "")
                if (step + 1) % every == 0 and step + 1 < steps:
                    self.record()
            if self.end_epoch():
                return

    def _async_epochs(self, client: Any, parts: list, target: int) -> None:
        lost = 0
        while self.st.epoch < target:
            if len(self.st.staleness) != self.config.max_staleness + 1:
                self.st.staleness = np.zeros(self.config.max_staleness + 1, dtype=np.int64)
            try:
                self._async_epoch(client, parts)
            except _ServerLost as exc:
                lost += 1
                self._resume_after(str(exc), lost)
                continue
            if self.end_epoch():
                return

    def _async_epoch(self, client: Any, parts: list) -> None:
        """One epoch against a fresh parameter server. Every wait is bounded, and the server's worker is
        checked at every poll: if it left, raises ``_ServerLost`` (the partitions' tasks are cancelled)."""
        from distributed import wait

        st, cfg = self.st, self.config
        epoch, seed = st.epoch + 1, st.next_seed()
        base = (st.samples, st.bytes, st.rounds, st.rejected, st.staleness.copy())
        server_future = client.submit(ParameterServer, st.W, st.opt, cfg.problem, cfg.max_staleness, actor=True,
                                      pure=False)
        futures: list = []
        host = None
        try:
            server = server_future.result(timeout=SERVER_TIMEOUT_S)
            host = min(client.who_has([server_future]).get(server_future.key, ()), default=None)
            kwargs = {"server": server, "host": host, "seed": seed, "problem": cfg.problem,
                      "push_every": cfg.push_every}
            pinned = _holders(client, parts)
            futures = [_submit_pinned(client, parts[i], pinned[i], kwargs) for i in range(len(parts))]
            done = False
            while not done:
                try:
                    wait(futures, timeout=_ASYNC_POLL_S)
                    done = True
                except TimeoutError:
                    pass
                who = client.who_has([server_future, *parts])
                if not hosts_server(who, server_future.key, host):
                    raise _ServerLost(f"the parameter server of async epoch {epoch} (on {host}) was lost: "
                                      "its worker left the cluster")
                for i, holders in _unreachable(futures, parts, pinned, who):
                    futures[i].cancel()
                    pinned[i] = holders
                    futures[i] = _submit_pinned(client, parts[i], holders, kwargs)
                snap = server.state().result(timeout=SERVER_TIMEOUT_S)
                st.W, st.opt = snap["W"], snap["opt"]
                st.samples, st.bytes = base[0] + snap["samples"], base[1] + snap["bytes"]
                st.rounds, st.rejected = base[2] + snap["version"], base[3] + snap["rejected"]
                st.staleness = base[4] + snap["staleness"]
                if not done and st.samples > st.curve[-1][1]:  # a row per progress, not per pull
                    self.record()
            client.gather(futures)  # raises the error of a failed partition
        except _ServerLost:
            raise
        except Exception as exc:
            # a failed call to the server (OSError, timeout, the actor's RuntimeError) may come just before
            # the scheduler has seen its worker leave: give it a moment to tell; other errors are the data's
            settle = _SETTLE_S if isinstance(exc, (OSError, TimeoutError, RuntimeError)) else 0.0
            if not self._server_gone(client, server_future, host, settle):
                raise
            raise _ServerLost(f"the parameter server of async epoch {epoch} (on {host}) was lost: "
                              f"its worker left the cluster ({type(exc).__name__}: {exc})") from exc
        finally:
            client.cancel([server_future, *futures])

    @staticmethod
    def _hosts(client: Any, server_future: Any, host: str) -> bool:
        return hosts_server(client.who_has([server_future]), server_future.key, host)

    def _server_gone(self, client: Any, server_future: Any, host: str | None, settle: float) -> bool:
        """Whether the server left ``host``, asking the scheduler for up to ``settle`` seconds (False if
        it never started: then the error is its own)."""
        if host is None:
            return False
        deadline = time.monotonic() + settle
        while True:
            if not self._hosts(client, server_future, host):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def _resume_after(self, what: str, lost: int) -> None:
        """Continue from the last checkpoint after a lost parameter server, or raise saying what happened."""
        if self.checkpointer is None:
            raise ParameterServerLostError(f"async SGD: {what}. The weights of that epoch are lost; with "
                                           "checkpoint_dir the fit resumes from its last epoch instead")
        if lost > _MAX_RESUMES:
            raise ParameterServerLostError(f"async SGD: {what}. That is {lost} parameter servers lost in this "
                                           f"fit; giving up (its last checkpoint is in {self.checkpointer.directory})")
        last = self.checkpointer.latest()
        self.st = TrainState.from_checkpoint(last.arrays, last.meta) if last is not None else self.origin.copy()
        log.warning("sgd async: %s; resuming from %s", what,
                    f"the checkpoint of epoch {self.st.epoch}" if last is not None else "the start of the fit")

    def _run_local(self, dX: da.Array, dy: da.Array, target: int) -> None:
        st, cfg = self.st, self.config
        problem = cfg.problem
        first = True
        val_back = tasks_out_of_reach()  # the held-out rows (1 % of them) to this process, or each loss rereads
        try:
            while st.epoch < target:
                seeds = [st.next_seed() for _ in range(cfg.local_epochs)]
                with_val = first and self.X_val is None
                # large weights go once per worker, not once per chunk's task inside the graph; small ones inside
                # the tasks (a scatter costs a round trip to every worker before the pass can start)
                with broadcast(st.W) if st.W.nbytes > _INLINE_BYTES else contextlib.nullcontext(st.W) as W:
                    total = reduce_here(map_row_chunks(local_block, dX, dy, W=W, seeds=seeds, readahead=True,
                                                       t0=float(st.opt["t"]), problem=problem, with_val=with_val,
                                                       val_back=val_back),
                                        functools.partial(sum_local, shape=st.W.shape),
                                        on_workers=len(dX.chunks[0]) * st.W.nbytes > _SUM_HERE_BYTES)
                if not isinstance(total, LocalSum):  # one chunk: nothing was summed
                    total = sum_local([total], st.W.shape)
                if with_val:  # each worker keeps the held-out rows of the blocks it read (or this process does)
                    keep_held_out(problem.ef_key, total.held)
                    self.held_out = (dX, dy)
                if first and not st.curve:
                    self.record(at_start=True)
                first = False
                st.W = st.W + total.weighted / total.rows
                st.opt["t"] += total.steps
                st.bytes += total.chunks * st.W.nbytes + total.nbytes
                st.samples += total.rows * cfg.local_epochs
                st.rounds += 1
                if self.end_epoch():
                    return
        finally:
            if self.held_out is not None:
                run_everywhere(clear_held_out, problem.ef_key)
            if problem.compress is not None:
                clear_residuals(problem.ef_key)
                try:
                    distributed_client("local").run(clear_residuals, problem.ef_key)
                except RuntimeError:
                    pass

