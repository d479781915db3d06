"""Reading ahead: ask the kernel for row chunks this process will read soon, from a thread of its own.

``ZarrChunks.will_need`` (``posix_fadvise(WILLNEED)``) queues the reads of a chunk's pages and returns, but
queueing tens of megabytes waits for room in the device's request queue while the device is busy — made in a
task's thread, that wait would come out of the time the task computes. ``will_need`` hands the request to one
daemon thread per process, which makes the hints in the order asked; a chunk asked for again in the same group
(a pass) while it is among the last few asked is not asked for twice. A hint is only a hint: one that fails or
names the wrong chunk costs the read it would have saved, never a result, so nothing here raises.

>>> will_need([], [0, 1])  # no source: nothing to ask for
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: Chunks remembered as asked for (per process): a task asks for its successor at its start and again after its
#: read, and the successor asks for itself.
_RECENT = 16


class _Hinter:
    """The thread making the hints of one process, and the chunks it was asked for last."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.recent: deque = deque(maxlen=_RECENT)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="scaleml-readahead", daemon=True)
        self.thread.start()

    def ask(self, sources: Sequence[Any], indices: Iterable[int], group: Any) -> None:
        with self.lock:
            for i in indices:
                for src in sources:
                    key = (group, src.directory, i)
                    if key not in self.recent:
                        self.recent.append(key)
                        self.requests.put((src, i))

    def _run(self) -> None:
        while True:
            src, index = self.requests.get()
            try:
                src.will_need(index)
            except Exception as exc:  # noqa: BLE001 -- a hint never fails anything
                log.debug("readahead of chunk %s of %s failed: %s", index, src.directory, exc)


_hinter: _Hinter | None = None
_lock = threading.Lock()


def will_need(sources: Sequence[Any], indices: Iterable[int], group: Any = None) -> None:
    """Ask the kernel, without waiting, for row chunks ``indices`` (in this order) of each of ``sources``
    (``ZarrChunks``): the reads are queued by this process's readahead thread. Within a ``group`` (the pass
    reading them) a chunk is asked for once; a later pass over the same chunks asks again."""
    global _hinter
    if not sources:
        return
    with _lock:
        if _hinter is None or _hinter.pid != os.getpid():  # none yet, or one a fork left behind
            try:
                _hinter = _Hinter()
            except RuntimeError:  # no thread to be had: no hint
                return
    _hinter.ask(sources, indices, group)
