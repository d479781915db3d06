"""Readahead of the next row chunk a worker will run (``passes.map_row_chunks(readahead=True)``, SGD local mode's
pass): the hint names chunks queued on that worker, is harmless where it cannot apply, and changes no result."""

from __future__ import annotations

import numpy as np
import pytest

from scaleml_dask import passes
from scaleml_dask.io import read
from scaleml_dask.io.synthetic import make_logistic
from scaleml_dask.sgd import SGDClassifier


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("readahead") / "logistic.zarr"
    make_logistic(path, 120_000, 4, chunk_rows=6_000, seed=3)
    return path


def test_the_hint_is_harmless_where_it_cannot_apply(store):
    import zarr

    src = read.chunk_source(zarr.open_group(str(store), mode="r")["X"])
    for index in (-1, 0, src.grid[0] - 1, src.grid[0], 10**6):  # out of range: nothing
        src.will_need(index)
    assert passes._queued_here() == []  # off a worker: no queue to look at


def test_a_worker_asks_for_the_chunks_queued_on_it_and_the_fit_is_unchanged(store, monkeypatch):
    from distributed import Client, LocalCluster

    asked = []
    will_need = read.ZarrChunks.will_need

    def spy(self, index):
        asked.append((self.name, index))
        return will_need(self, index)

    kw = {"mode": "local", "rounds": 2, "batch_size": 500, "classes": [0.0, 1.0]}
    plain = SGDClassifier(**kw).fit(store)  # the threaded scheduler: no worker, no hint
    monkeypatch.setattr(read.ZarrChunks, "will_need", spy)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client, client.as_current():
        import dask

        with dask.config.set(scheduler=client):
            ahead = SGDClassifier(**kw).fit(store)
    assert asked and {name for name, _ in asked} <= {"X", "y"}
    assert all(0 <= i < 20 for _, i in asked)
    np.testing.assert_array_equal(ahead.coef_, plain.coef_)
    np.testing.assert_array_equal(ahead.loss_curve_[:, 3], plain.loss_curve_[:, 3])

