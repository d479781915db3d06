"""Inference off the event loop: a bounded pool of threads with a bounded queue in front of it.

Model calls run in ``threads`` threads, so a large batch never stalls the event loop (other requests are
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
        self._submitted = 0  # on the event loop's thread only
        self._started = 0  # under the lock (the inference threads)
        self._running: dict[int, float] = {}  # thread id -> start of its call (perf_counter), under the lock

    @property
    def waiting(self) -> int:
        """Calls submitted and not started yet."""
        return self._submitted - self._started

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.waiting >= self.max_queue:
            if self.on_rejected is not None:
                self.on_rejected()
            raise Overloaded(f"{self.waiting} model calls are waiting for the {self.threads} inference threads "
                             f"(the queue holds {self.max_queue}); retry shortly")
        self._submitted += 1
        queued = time.perf_counter()

        def call() -> tuple[float, Any]:
            start = time.perf_counter()
            me = threading.get_ident()
            with self._lock:
                self._started += 1
                self._running[me] = start
            try:
                return start - queued, fn(*args)
            finally:
                with self._lock:
                    del self._running[me]

        waited, result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
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
