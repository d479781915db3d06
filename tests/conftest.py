"""Shared fixtures: one real LocalCluster of worker processes for the whole session (of each test process:
`make test` runs two, with pytest-xdist, each module's tests in one of them).

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
    """A real dask.distributed cluster: 2 worker processes, 1 thread each, on 127.0.0.1. It is dask's default
    client, but each test computes on the threaded scheduler unless it takes ``client``."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", memory_limit="4GiB") as cluster, \
            Client(cluster) as c:
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

    # By name, not the Client object: the in-process nannies pickle dask's config when they restart a killed
    # worker, and a Client cannot be pickled. The name resolves to the default client in every thread.
    with dask.config.set(scheduler="dask.distributed"):
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
