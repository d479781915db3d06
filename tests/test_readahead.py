"""Readahead of the next row chunk a worker will run (``passes.map_row_chunks(readahead=True)``, SGD local mode's
pass; ``io.readahead``; ``ZarrChunks.will_need``): the hint covers the whole chunk, names the chunk the worker runs
next and no other, is harmless where it cannot apply, and changes no result."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from scaleml_dask import passes
from scaleml_dask.io import read, readahead
from scaleml_dask.io.synthetic import make_logistic
from scaleml_dask.sgd import SGDClassifier

KW = {"mode": "local", "rounds": 2, "batch_size": 500, "classes": [0.0, 1.0]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("readahead") / "logistic.zarr"
    make_logistic(path, 120_000, 4, chunk_rows=6_000, seed=3)
    return path


@pytest.fixture(scope="module")
def plain(store):
    """The fit on the threaded scheduler: no worker, so no hint."""
    return SGDClassifier(**KW).fit(store)


def _resident(path) -> float:
    """Fraction of the file's pages in the page cache (``mincore`` on a map of it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        m = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
    try:
        vec = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
        arr = np.frombuffer(m, dtype=np.uint8)
        assert libc.mincore(ctypes.c_void_p(arr.ctypes.data), ctypes.c_size_t(size), vec) == 0
        del arr
        return float((np.frombuffer(vec, dtype=np.uint8) & 1).mean())
    finally:
        m.close()


def _drop(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="posix_fadvise / mincore as on Linux")
def test_the_hint_reads_the_whole_chunk_not_just_the_kernels_window(tmp_path):
    import zarr

    # one 32 MB chunk file: larger than any readahead window a whole-file WILLNEED would stop at (Linux's
    # default 128 KiB, this project's machines' 8 MiB)
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=(2_000_000, 2), chunks=(2_000_000, 2), dtype="f8",
                          compressors=None)
    z[:] = 1.0
    src = read.chunk_source(z)
    path = os.path.join(src.directory, src.chunk_key((0, 0)))
    _drop(path)
    if _resident(path) > 0.5:
        pytest.skip("this file system keeps the file's pages (tmpfs?): nothing to read ahead")
    src.will_need(0)
    deadline = time.monotonic() + 60
    while _resident(path) < 1.0 and time.monotonic() < deadline:  # the reads were queued: wait for them
        time.sleep(0.05)
    assert _resident(path) == 1.0


class _Recorder:
    """A chunk source that records the chunks it is asked for (and fails on chunk 13, as a hint may)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.asked: list[int] = []
        self.done = threading.Event()

    def will_need(self, index: int) -> None:
        self.asked.append(index)
        if index == 13:
            raise OSError("the device is gone")
        if index == 99:
            self.done.set()


def test_the_readahead_thread_asks_in_order_once_per_pass_and_never_fails():
    a, b = _Recorder("a"), _Recorder("b")
    readahead.will_need([a, b], [3, 4], group="pass 1")
    readahead.will_need([a, b], [4, 13, 5], group="pass 1")  # 4 again: asked for already
    readahead.will_need([a], [6, 3], group="pass 2")  # 3 again, in another pass: asked for again
    readahead.will_need([a, b], [99], group="pass 2")
    assert a.done.wait(30) and b.done.wait(30)
    assert a.asked == [3, 4, 13, 5, 6, 3, 99]  # chunk 13's failure stopped nothing
    assert b.asked == [3, 4, 13, 5, 99]
    readahead.will_need([], [1])  # nothing to ask


def test_the_hint_is_harmless_where_it_cannot_apply(store, monkeypatch):
    import zarr

    src = read.chunk_source(zarr.open_group(str(store), mode="r")["X"])
    for index in (-1, 0, src.grid[0] - 1, src.grid[0], 10**6):  # out of range: nothing
        src.will_need(index)
    gone = read.chunk_source(zarr.open_group(str(store), mode="r")["X"])
    object.__setattr__(gone, "directory", str(store / "no-such-array"))
    gone.will_need(0)  # a missing file is named by the read that needs it, not by the hint
    assert passes._ahead_here() == (None, [])  # off a worker: no queue to look at

    import distributed

    # a distributed whose worker state is not what _ahead_here reads: no hint, never an error
    key = "local_block-0123abcd-3"
    for worker in (SimpleNamespace(get_current_task=lambda: key),  # no state
                   SimpleNamespace(get_current_task=lambda: key, state=SimpleNamespace(nthreads=1)),  # no queue
                   SimpleNamespace(get_current_task=lambda: key,  # a queued task without a priority
                                   state=SimpleNamespace(nthreads=1, ready=[
                                       SimpleNamespace(key="local_block-0123abcd-4", priority=(0, 1)),
                                       SimpleNamespace(key="local_block-0123abcd-5", priority=None)]))):
        monkeypatch.setattr(distributed, "get_worker", lambda w=worker: w)
        assert passes._ahead_here() == (None, [])


def _running_order():
    """Spy on the asks: per worker, its tasks in the order they ran, each as (chunk, the successors it asked for)."""
    runs: dict[str, list[tuple[int, list[int]]]] = {}
    ask = readahead.will_need

    def spy(sources, indices, group=None):
        indices = list(indices)
        if any(getattr(s, "name", None) == "X" for s in sources):
            from distributed import get_worker

            worker = get_worker()
            key = str(worker.get_current_task())
            index = int(key.rpartition("-")[2])
            mine = runs.setdefault(worker.address, [])
            if not mine or mine[-1][0] != (key, index):
                mine.append(((key, index), []))
            mine[-1][1].extend(i for i in indices if i != index)
        return ask(sources, indices, group)

    return runs, spy


def test_each_task_asks_for_the_chunk_its_worker_runs_next_and_no_other(store, plain, monkeypatch):
    import dask
    from distributed import Client, LocalCluster

    runs, spy = _running_order()
    monkeypatch.setattr(readahead, "will_need", spy)
    # no queuing on the scheduler: every chunk task goes to the worker at once, and the worker holds the whole
    # pass; the hint names only the next one (its thread count's worth), in the order the worker runs them
    with dask.config.set({"distributed.scheduler.worker-saturation": "inf"}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client, dask.config.set(scheduler=client):
        ahead = SGDClassifier(**KW).fit(store)
    (order,) = runs.values()
    n = 20  # chunks
    assert len(order) == KW["rounds"] * n
    for r in range(KW["rounds"]):
        rnd = order[r * n:(r + 1) * n]
        assert sorted(i for (_, i), _ in rnd) == list(range(n))
        for (_, asked), ((_, nxt), _) in zip(rnd, rnd[1:]):
            assert set(asked) == {nxt}
        assert rnd[-1][1] == []  # the round's last chunk: nothing after it
    np.testing.assert_array_equal(ahead.coef_, plain.coef_)
    np.testing.assert_array_equal(ahead.loss_curve_[:, 3], plain.loss_curve_[:, 3])


def test_with_the_schedulers_queue_a_task_asks_only_for_its_successor(store, plain, monkeypatch):
    import dask
    from distributed import Client, LocalCluster

    runs, spy = _running_order()
    monkeypatch.setattr(readahead, "will_need", spy)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client, dask.config.set(scheduler=client):
        ahead = SGDClassifier(**KW).fit(store)
    tasks = [t for order in runs.values() for t in order]
    assert len(runs) == 2 and len(tasks) == KW["rounds"] * 20
    assert any(asked for _, asked in tasks)
    assert all(len(set(asked)) <= 1 for _, asked in tasks)  # one thread per worker: one chunk ahead at most
    np.testing.assert_array_equal(ahead.coef_, plain.coef_)
    np.testing.assert_array_equal(ahead.loss_curve_[:, 3], plain.loss_curve_[:, 3])


def test_results_equal_with_and_without_readahead(store):
    import dask

    from scaleml_dask.io.catalog import open_dataset

    ds = open_dataset(store)

    def moments(X, y, *, chunk_index, row_start):
        return chunk_index, row_start, X[::7].sum(axis=0), float(y @ X[:, 0])

    plain = dask.compute(*passes.map_row_chunks(moments, ds.X, ds.y))
    ahead = dask.compute(*passes.map_row_chunks(moments, ds.X, ds.y, readahead=True))
    assert len(plain) == 20
    for p, a in zip(plain, ahead):
        assert p[:2] == a[:2]
        np.testing.assert_array_equal(p[2], a[2])
        assert p[3] == a[3]
