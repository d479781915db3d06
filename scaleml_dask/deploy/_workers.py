"""Inference off the event loop: a bounded pool of threads with a bounded queue in front of it.

Model calls run in ``threads`` threads (all but those measured cheaper than the hand-off:
``_models.ServedModel.cheap``), so a large batch never stalls the event loop (other requests are
read, routed and answered meanwhile; numpy releases the GIL in its kernels). At most ``max_queue`` calls wait
for a thread; past that a request is refused at once (:class:`Overloaded`: 503 with ``Retry-After``) instead
of queueing without bound. The time a call waited and each refusal are reported to callbacks (metrics), and
:meth:`InferencePool.stuck` says whether every thread has been busy on one call for too long (liveness).

>>> import asyncio
>>> pool = InferencePool(threads=1, max_queue=4)
>>> asyncio.run(pool.run(sum, [1, 2, 3]))
6
>>> pool.close()
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._errors import Overloaded


class InferencePool:
    """``await pool.run(fn, *args)``: ``fn(*args)`` in one of ``threads`` threads, at most ``max_queue`` waiting."""

    def __init__(self, threads: int, max_queue: int, *, on_waited: Callable[[float], Any] | None = None,
                 on_rejected: Callable[[], Any] | None = None) -> None:
        self.threads, self.max_queue = int(threads), int(max_queue)
        self.on_waited, self.on_rejected = on_waited, on_rejected
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="scaleml-infer")
        self._lock = threading.Lock()
        self._waiting = 0  # calls submitted and not started (nor given up), under the lock
        self._running: dict[int, float] = {}  # thread id -> start of its call (perf_counter), under the lock

    @property
    def waiting(self) -> int:
        """Calls submitted and not started yet."""
        return self._waiting

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            full = self._waiting >= self.max_queue
            if not full:
                self._waiting += 1
        if full:
            if self.on_rejected is not None:
                self.on_rejected()
            raise Overloaded(f"{self._waiting} model calls are waiting for the {self.threads} inference threads "
                             f"(the queue holds {self.max_queue}); retry shortly")
        queued = time.perf_counter()
        state = {"started": False, "abandoned": False}

        def call() -> tuple[float, Any]:
            me = threading.get_ident()
            with self._lock:
                if state["abandoned"]:  # its request went away while it waited: not run
                    return 0.0, None
                state["started"] = True
                self._waiting -= 1
                start = self._running[me] = time.perf_counter()
            try:
                return start - queued, fn(*args)
            finally:
                with self._lock:
                    del self._running[me]

        try:
            waited, result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except asyncio.CancelledError:  # the client went away: a call not started yet leaves the queue now
            with self._lock:
                if not state["started"]:
                    state["abandoned"] = True
                    self._waiting -= 1
            raise
        if self.on_waited is not None:
            self.on_waited(waited)
        return result

    def stuck(self, after: float) -> float | None:
        """Seconds the most recent of the running calls has run, if every thread has run its call for longer than
        ``after`` seconds (the pool answers nothing more); else None."""
        with self._lock:
            starts = list(self._running.values())
        if len(starts) < self.threads:
            return None
        least = time.perf_counter() - max(starts)
        return least if least > after else None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
