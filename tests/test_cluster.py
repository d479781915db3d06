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


@pytest.mark.slow
def test_join_existing_scheduler_started_by_the_dask_cli(tmp_path):
    """`dask scheduler` and `dask worker` processes on 127.0.0.1, as on a shared cluster."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dask = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", "127.0.0.1:0"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                       "--no-dashboard"], cwd=tmp_path,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 60
        while True:
            try:
                other = connect(address, quiet=True)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        with other:
            other.wait_for_workers(1, timeout=60)
            assert list(other.scheduler_info()["workers"])[0].startswith("tcp://127.0.0.1:")
            assert other.submit(pow, 2, 10).result() == 1024
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


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


def test_tls_scheduler_with_temporary_credentials():
    """``sm.connect(address, security=...)`` joins a TLS scheduler; without credentials it cannot."""
    pytest.importorskip("cryptography")
    from distributed import LocalCluster
    from distributed.security import Security

    security = Security.temporary()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", protocol="tls://",
                      security=security, dashboard_address="127.0.0.1:0", memory_limit="1GiB") as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        with connect(address, security=security, quiet=True) as client:
            assert client.submit(pow, 3, 4).result() == 81
            assert all(w.startswith("tls://") for w in client.scheduler_info()["workers"])
        with pytest.raises((OSError, TypeError, ValueError)):
            connect(address, timeout=3, quiet=True)  # a plain client is refused by the TLS scheduler
