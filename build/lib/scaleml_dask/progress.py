"""A progress bar of the cluster's work, for code that does not hand out its futures (estimators' ``fit``).

While the context is open, a thread polls the scheduler for the states of its tasks and draws
``tasks done / tasks known`` with tqdm: on stderr in a terminal (nothing at all when stderr is not a TTY, so
logs and captured output stay clean), as a widget in Jupyter (``tqdm.auto``). Nested contexts share the
outer bar and only change its label, so a pipeline shows one bar, named for the step that runs.

>>> from scaleml_dask.progress import cluster_progress
>>> with cluster_progress(None, "nothing to watch"):  # no client: no bar
...     pass
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_DONE = ("memory", "released", "erred", "forgotten")
_active: list[Any] = []  # the outermost open context's bar, or None when it draws none


def _task_counts(dask_scheduler: Any) -> tuple[int, int]:
    """(finished, known) tasks of the scheduler, from its task groups' state counts (cheap: no task loop)."""
    done = known = 0
    for group in dask_scheduler.task_groups.values():
        states = group.states
        known += sum(states.values())
        done += sum(states.get(s, 0) for s in _DONE)
    return done, known


@contextlib.contextmanager
def cluster_progress(client: Any, desc: str, *, enabled: bool | None = None,
                     interval: float = 0.5) -> Iterator[None]:
    """Draw the cluster's task progress labelled ``desc`` while the block runs.

    ``enabled``: None draws only where it can be seen (a TTY or a notebook), False never (``--quiet``).
    """
    if _active:  # inside another context: its bar (if any) shows ``desc`` for the duration
        bar = _active[-1]
        previous = bar.desc if bar is not None else None
        if bar is not None:
            bar.set_description_str(desc)
        try:
            yield
        finally:
            if bar is not None:
                bar.set_description_str(previous)
        return
    bar = _new_bar(desc, enabled) if client is not None else None
    _active.append(bar)
    try:
        if bar is None:
            yield
        else:
            with _watching(client, bar, interval):
                yield
    finally:
        _active.pop()
        if bar is not None:
            bar.close()


def _new_bar(desc: str, enabled: bool | None) -> Any:
    """A tqdm bar, or None where it would not be seen (stderr not a TTY, unless forced) or is not wanted."""
    if enabled is False:
        return None
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, total=0, unit="task", disable=None if enabled is None else False, leave=False,
               dynamic_ncols=True)
    if bar.disable:
        bar.close()
        return None
    return bar


@contextlib.contextmanager
def _watching(client: Any, bar: Any, interval: float) -> Iterator[None]:
    """Update ``bar`` from the scheduler every ``interval`` seconds, from a thread, while the block runs."""
    stop = threading.Event()
    done0, known0 = _poll(client)  # what the scheduler counted before the block: not this block's work

    def watch() -> None:
        while not stop.wait(interval):
            try:
                done, known = _poll(client)
            except Exception:  # the cluster is going away: stop drawing, the work reports its own errors
                return
            bar.total, bar.n = max(known - known0, 0), max(done - done0, 0)
            bar.refresh()

    thread = threading.Thread(target=watch, name="scaleml-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _poll(client: Any) -> tuple[int, int]:
    done, known = client.run_on_scheduler(_task_counts)
    return done, known
