"""Cluster connection: local processes on 127.0.0.1 with a serving dashboard; joining; Kubernetes spec."""

from __future__ import annotations

import urllib.request

import pytest

from scaleml_dask.cluster import connect, kubernetes_spec


def test_local_cluster_processes_and_dashboard(capsys):
    with connect(n_workers=2, dashboard_address="127.0.0.1:0", memory_limit="2GiB") as client:
        printed = capsys.readouterr().out
        link = client.dashboard_link
        assert f"dask dashboard: {link}" in printed and link.startswith("http://127.0.0.1:")
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2 and all(addr.startswith("tcp://127.0.0.1:") for addr in workers)
        import os

        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids  # real worker processes
        with urllib.request.urlopen(link, timeout=30) as resp:  # bokeh really serves the status page
            page = resp.read().decode()
        assert resp.status == 200 and "Dask" in page
        assert client.submit(sum, [1, 2, 3]).result() == 6
        client.cluster.close()


def test_join_existing_scheduler(client):
    with connect(client.scheduler.address, quiet=True) as other:
        assert set(other.scheduler_info()["workers"]) == set(client.scheduler_info()["workers"])
        assert other.submit(pow, 2, 10).result() == 1024


def test_kubernetes_spec_built_without_a_cluster():
    pytest.importorskip("dask_kubernetes")
    spec = kubernetes_spec(name="fit", image="reg.example/scaleml:1", n_workers=5, worker_cpu="4",
                           worker_memory="16Gi", namespace="ml")
    assert spec["kind"] == "DaskCluster" and spec["metadata"] == {"name": "fit", "namespace": "ml"}
    worker = spec["spec"]["worker"]
    assert worker["replicas"] == 5
    container = worker["spec"]["containers"][0]
    assert container["image"] == "reg.example/scaleml:1"
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi"}
    assert container["args"][-4:] == ["--nthreads", "4", "--memory-limit", "16GiB"]
    assert spec["spec"]["scheduler"]["spec"]["containers"][0]["image"] == "reg.example/scaleml:1"
    with pytest.raises(ValueError, match="kind must be 'local' or 'kubernetes'"):
        connect(kind="slurm")
