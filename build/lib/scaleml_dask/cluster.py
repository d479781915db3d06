"""Connecting to a dask.distributed cluster: a local one, an existing scheduler, or Kubernetes.

The same code runs on a laptop and on a shared cluster: only the call to ``connect`` changes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)


def connect(
    address: str | None = None,
    *,
    kind: str = "local",
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | float = "auto",
    dashboard_address: str = "127.0.0.1:8787",
    security: Any = None,
    timeout: float = 15.0,
    quiet: bool = False,
    **kubernetes: Any,
) -> Any:
    """Return a ``distributed.Client``.

    - ``connect()`` starts a LocalCluster of worker *processes* bound to 127.0.0.1 (one per core by
      default, one thread each) with the dashboard on 127.0.0.1, and prints the dashboard link.
    - ``connect("tcp://host:8786")`` joins an existing scheduler, or raises ``ConnectionError`` naming it when
      it cannot be reached within ``timeout`` seconds; ``connect("tls://host:8786", security=Security(...))``
      one that speaks TLS (``distributed.security.Security``). ``connect(security=...)`` starts the
      LocalCluster itself on TLS.
    - ``connect(kind="kubernetes", name=..., image=..., n_workers=...)`` creates a dask-kubernetes operator
      cluster from the spec built by ``kubernetes_spec`` (extra ``k8s``).
    """
    from distributed import Client, LocalCluster

    if address is not None:
        try:
            client = Client(address, timeout=timeout, security=security)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the dask scheduler at {address} within {timeout:g} s "
                                  f"({exc})") from exc
    elif kind == "local":
        n = n_workers or max(1, os.cpu_count() or 1)
        tls = {"security": security, "protocol": "tls://"} if security is not None else {}
        cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                               host="127.0.0.1", dashboard_address=dashboard_address,
                               memory_limit=memory_limit, **tls)
        client = Client(cluster, security=security)
    elif kind == "kubernetes":
        from dask_kubernetes.operator import KubeCluster

        spec = kubernetes_spec(n_workers=n_workers or 2, **kubernetes)
        client = Client(KubeCluster(custom_cluster_spec=spec))
    else:
        raise ValueError(f"kind must be 'local' or 'kubernetes'; got {kind!r}")
    if not quiet:
        print(f"dask dashboard: {client.dashboard_link}", flush=True)
    log.info("connected to %s (dashboard %s)", client.scheduler.address, client.dashboard_link)
    return client


def kubernetes_spec(
    *,
    name: str = "scaleml",
    image: str = "ghcr.io/scaleml/scaleml-dask:latest",
    n_workers: int = 2,
    worker_cpu: str = "2",
    worker_memory: str = "8Gi",
    namespace: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The DaskCluster resource for the dask-kubernetes operator, with worker resources set.

    Requests equal limits so the scheduler's memory accounting matches what the pod may use.
    """
    from dask_kubernetes.operator import make_cluster_spec

    resources = {"requests": {"cpu": worker_cpu, "memory": worker_memory},
                 "limits": {"cpu": worker_cpu, "memory": worker_memory}}
    spec = make_cluster_spec(name=name, image=image, n_workers=n_workers, resources=resources,
                             env=env or {})
    if namespace:
        spec["metadata"]["namespace"] = namespace
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    scheduler["resources"] = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    worker["args"] = [*worker.get("args", []), "--nthreads", str(int(float(worker_cpu))),
                      "--memory-limit", worker_memory.replace("Gi", "GiB")]
    return spec
