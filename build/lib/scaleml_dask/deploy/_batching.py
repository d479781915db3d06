"""Adaptive batching: concurrent requests to one model coalesced into one vectorized call.

A separate object in front of a model (as MLServer's ``adaptive.py``): ``await batcher.submit(X)`` queues the
rows; a short-lived task gathers what arrives within ``max_batch_time`` seconds (or until
``max_batch_size`` rows), calls the model once on the stacked rows (``fn`` is a coroutine function: the call
runs in the inference threads) and hands each caller its slice. Up to ``concurrency`` batches are computed at
once (one per inference thread: a batch in flight does not leave the other threads idle while the next one
gathers). The task exits when the queue is empty and no batch is in flight, so an idle or replaced model holds
no task.

Rows are a numeric matrix or, for a model of raw columns, ``{column: list of values}`` (a batch: each column's
lists joined). When a batch of several requests fails (say one request holds a level the encoder refuses), each
request is computed alone, so every caller gets its own answer or its own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np


class AdaptiveBatcher:
    """Coalesce ``submit(X)`` calls into ``await fn(stacked X) -> {output: array}`` calls."""

    def __init__(self, fn: Callable[[np.ndarray], Awaitable[dict[str, np.ndarray]]], max_batch_size: int,
                 max_batch_time: float, on_batch: Callable[[int], Any] | None = None, concurrency: int = 1) -> None:
        self.fn = fn
        self.max_batch_size = int(max_batch_size)
        self.max_batch_time = float(max_batch_time)
        self.concurrency = max(1, int(concurrency))
        self.on_batch = on_batch
        self._queue: list[tuple[Any, asyncio.Future]] = []
        self._rows = 0
        self._more: asyncio.Event | None = None  # set when a request arrives
        self._full: asyncio.Event | None = None  # set when the queue holds a full batch
        self._task: asyncio.Task | None = None

    async def submit(self, X: Any) -> dict[str, np.ndarray]:
        """The model's outputs for the rows of ``X``, computed together with concurrent submissions."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((X, future))
        self._rows += _n_rows(X)
        if self._task is None:
            self._more, self._full = asyncio.Event(), asyncio.Event()
            self._task = loop.create_task(self._run())
        else:
            self._more.set()
            if self._rows >= self.max_batch_size:
                self._full.set()
        return await future

    async def _gather(self) -> None:
        """Until the queue holds a full batch or ``max_batch_time`` has passed: one wake-up per batch, not one
        per arriving request (the event loop that waits here also parses every request)."""
        if self._rows >= self.max_batch_size:
            return
        self._full.clear()
        try:
            await asyncio.wait_for(self._full.wait(), self.max_batch_time)
        except TimeoutError:
            return

    def _take(self) -> list[tuple[Any, asyncio.Future]]:
        taken, rows = [], 0
        while self._queue and (not taken or rows + _n_rows(self._queue[0][0]) <= self.max_batch_size):
            item = self._queue.pop(0)
            taken.append(item)
            rows += _n_rows(item[0])
        self._rows -= rows
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        inflight: set[asyncio.Task] = set()
        try:
            while self._queue or inflight:
                if self._queue and len(inflight) < self.concurrency:
                    await self._gather()
                    task = loop.create_task(self._compute(self._take()))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                    continue
                # every slot busy, or nothing queued: wait for a batch to end or a request to arrive
                self._more.clear()
                arrival = loop.create_task(self._more.wait())
                await asyncio.wait({arrival, *inflight}, return_when=asyncio.FIRST_COMPLETED)
                arrival.cancel()
        finally:
            self._task = None

    async def _compute(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        """One batch (its own task): no caller of it is left waiting, whatever fails."""
        try:
            await self._call(batch)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("batch cancelled"))
            if not isinstance(exc, Exception):
                raise

    async def _call(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        """The model called once on the batch's stacked rows, each caller handed its slice."""
        X = batch[0][0] if len(batch) == 1 else _stack([x for x, _ in batch])
        if self.on_batch is not None:
            self.on_batch(_n_rows(X))
        try:
            out = await self.fn(X)
        except Exception as exc:  # noqa: BLE001 - handed to its callers
            if len(batch) == 1:  # the caller gets the model's error
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            for x, future in batch:  # each request alone: its own answer or its own error
                await self._alone(x, future)
            return
        start = 0
        for x, future in batch:
            stop = start + _n_rows(x)
            if not future.done():
                future.set_result({k: v[start:stop] for k, v in out.items()})
            start = stop

    async def _alone(self, X: Any, future: asyncio.Future) -> None:
        try:
            out = await self.fn(X)
        except Exception as exc:  # noqa: BLE001 - handed to its caller
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(out)


def _n_rows(X: Any) -> int:
    """Rows of a matrix or of ``{column: values}``."""
    return len(next(iter(X.values()))) if isinstance(X, dict) else len(X)


def _stack(parts: list) -> Any:
    """Requests' rows as one batch: matrices stacked, or each column's values joined."""
    if isinstance(parts[0], dict):
        return {name: [v for p in parts for v in p[name]] for name in parts[0]}
    return np.concatenate(parts)
