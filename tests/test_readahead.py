"""Readahead of the next row chunk a worker will run (``passes.map_row_chunks(readahead=True)``, SGD local mode's
pass; ``ZarrChunks.will_need``): the hint names the chunk the worker runs
next and no other, is harmless where it cannot apply, and changes no result."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from scaleml_dask import passes
from scaleml_dask.io import read
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


def test_the_hint_is_harmless_where_it_cannot_apply(store, monkeypatch):
    import zarr

    src = read.chunk_source(zarr.open_group(str(store), mode="r")["X"])
    for index in (-1, 0, src.grid[0] - 1, src.grid[0], 10**6):  # out of range: nothing
        src.will_need(index)
    gone = read.chunk_source(zarr.open_group(str(store), mode="r")["X"])
    object.__setattr__(gone, "directory", str(store / "no-such-array"))
    gone.will_need(0)  # a missing file is named by the read that needs it, not by the hint
    assert passes._queued_here() == []  # off a worker: no queue to look at

    import distributed

    # a distributed whose worker state is not what _queued_here reads: no hint, never an error
    key = "local_block-0123abcd-3"
    for worker in (SimpleNamespace(get_current_task=lambda: key),  # no state
                   SimpleNamespace(get_current_task=lambda: key, state=SimpleNamespace(nthreads=1)),  # no queue
                   SimpleNamespace(get_current_task=lambda: key,  # a queued task without a priority
                                   state=SimpleNamespace(nthreads=1, ready=[
                                       SimpleNamespace(key="local_block-0123abcd-4", priority=(0, 1)),
                                       SimpleNamespace(key="local_block-0123abcd-5", priority=None)]))):
        monkeypatch.setattr(distributed, "get_worker", lambda w=worker: w)
        assert passes._queued_here() == []


def _running_order():
    """Spy on the hints: per worker, its tasks in the order they ran, each as (chunk, the chunks it asked for)."""
    runs: dict[str, list[tuple[tuple[str, int], list[int]]]] = {}
    will_need = read.ZarrChunks.will_need

    def spy(self, index):
        if self.name == "X":
            from distributed import get_worker

            worker = get_worker()
            key = str(worker.get_current_task())
            mine = runs.setdefault(worker.address, [])
            if not mine or mine[-1][0][0] != key:
                mine.append(((key, int(key.rpartition("-")[2])), []))
            mine[-1][1].append(index)
        return will_need(self, index)

    return runs, spy


def test_each_task_asks_for_the_chunk_its_worker_runs_next_and_no_other(store, plain, monkeypatch):
    import dask
    from distributed import Client, LocalCluster

    runs, spy = _running_order()
    monkeypatch.setattr(read.ZarrChunks, "will_need", spy)
    # no queuing on the scheduler: every chunk task goes to the worker at once, and the worker holds the whole
    # pass; the hint names only the next one (its thread count's worth), in the order the worker runs them
    with dask.config.set({"distributed.scheduler.worker-saturation": "inf"}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client, dask.config.set(scheduler=client):
        ahead = SGDClassifier(**KW).fit(store)
    (order,) = runs.values()  # the tasks that hinted, in the order they ran: all but each round's last
    n = 20  # chunks
    rounds: dict[str, list] = {}
    for (key, index), asked in order:
        rounds.setdefault(key.rpartition("-")[0], []).append((index, asked))
    assert len(rounds) == KW["rounds"]
    for rnd in rounds.values():
        assert len(rnd) == n - 1
        for (_, asked), (nxt, _) in zip(rnd, rnd[1:]):
            assert asked == [nxt]
        assert len(rnd[-1][1]) == 1
        assert sorted([i for i, _ in rnd] + rnd[-1][1]) == list(range(n))
    np.testing.assert_array_equal(ahead.coef_, plain.coef_)
    np.testing.assert_array_equal(ahead.loss_curve_[:, 3], plain.loss_curve_[:, 3])


def test_with_the_schedulers_queue_a_task_asks_only_for_its_successor(store, plain, monkeypatch):
    import dask
    from distributed import Client, LocalCluster

    runs, spy = _running_order()
    monkeypatch.setattr(read.ZarrChunks, "will_need", spy)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client, dask.config.set(scheduler=client):
        ahead = SGDClassifier(**KW).fit(store)
    tasks = [t for order in runs.values() for t in order]
    assert tasks
    assert all(len(asked) == 1 for _, asked in tasks)  # one thread per worker: one chunk ahead at most
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
