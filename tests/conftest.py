"""Shared fixtures: one real LocalCluster of worker processes for the whole session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def client():
    """A real dask.distributed cluster: 2 worker processes, 1 thread each, on 127.0.0.1."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", memory_limit="4GiB") as cluster, Client(cluster) as c:
        yield c


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
