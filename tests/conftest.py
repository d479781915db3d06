"""Shared fixtures: one real LocalCluster of worker processes for the whole session.

No test depends on the scheduler another test left behind: every test computes on dask's threaded scheduler
unless it takes ``client``, which makes the session cluster the scheduler (and the current client) for that
test only.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def session_client():
    """A real dask.distributed cluster: 2 worker processes, 1 thread each, on 127.0.0.1 (not the default)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", memory_limit="4GiB") as cluster, \
            Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(autouse=True)
def _threaded_scheduler_by_default():
    """dask's threaded scheduler for every test, whatever an earlier test made the default."""
    import dask

    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture
def client(session_client, _threaded_scheduler_by_default):
    """The session cluster's client, as this test's dask scheduler and current client."""
    import dask

    # as_current() (for get_client) sets the scheduler to "dask.distributed", which only threads that share this
    # context resolve; the client object set after it serves the threads a computation starts too
    with session_client.as_current(), dask.config.set(scheduler=session_client):
        yield session_client


@pytest.fixture(scope="session")
def process_client(tmp_path_factory):
    """A cluster of `dask scheduler` + 2 `dask worker` processes (nanny-restarted) for fault tests (faults.py)."""
    from faults import process_cluster

    with process_cluster(2, cwd=tmp_path_factory.mktemp("process-cluster")) as c:
        yield c


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)
