"""Fault injection on a real cluster of ``dask scheduler`` + ``dask worker`` processes, for every fault test.

- :func:`process_cluster` starts a scheduler and nanny-supervised workers on 127.0.0.1 (the nanny restarts a
  killed worker, so one cluster serves several tests) and yields a connected ``Client``;
- :class:`KillOnTask` is a WorkerPlugin that SIGKILLs its own worker process when the ``after``-th task whose
  key prefix is ``prefix`` starts executing there: a kill while the fit is running one of its tasks, triggered
  by the worker's own state machine instead of a clock, once across the cluster (a flag file, created by an
  atomic ``link``, records which worker died);
- :class:`HoldOnTask` hangs its worker the same way instead, and :func:`remove_on_flag` then tears the worker's
  host down on the network harness (``benchmarks/cluster_net.py``): a host vanishing mid-task;
- :class:`TaskRecorder` is a SchedulerPlugin recording the workers the scheduler removed and how often each
  task was sent to a worker, so a test can assert that tasks really were recomputed;
- :func:`undisturbed_and_killed` runs a fit twice on the cluster, the second time with the kill armed, and
  checks that the kill happened, the scheduler saw the worker leave and tasks of ``prefix`` were recomputed.

Plugins are pickled by reference, so the cluster's processes import this module (``PYTHONPATH``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin
from distributed.utils import key_split

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process_cluster(n_workers: int = 2, cwd: str | os.PathLike | None = None) -> Iterator[Any]:
    """A ``dask scheduler`` and ``n_workers`` ``dask worker`` processes (1 thread each) on 127.0.0.1."""
    from distributed import Client

    dask = str(Path(sys.executable).with_name("dask"))
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    quiet = {"cwd": cwd, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", "127.0.0.1:0"], **quiet)]
    try:
        procs += [subprocess.Popen([dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                    "--no-dashboard", "--memory-limit", "2GiB"], **quiet)
                  for _ in range(n_workers)]
        client = Client(address, timeout=120, set_as_default=False)
        try:
            client.wait_for_workers(n_workers, timeout=120)
            yield client
        finally:
            client.close()
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover
                p.kill()


class _OnTask(WorkerPlugin):
    """When this worker's ``after``-th task of key prefix ``prefix`` starts executing, claim ``flag`` — once
    across the cluster: it appears whole, naming the worker, the process and the task — and ``act``."""

    def __init__(self, prefix: str, flag: str | os.PathLike, after: int = 2) -> None:
        self.prefix, self.flag, self.after = prefix, str(flag), after
        self.seen = 0

    def setup(self, worker: Any) -> None:
        self.worker = worker

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or key_split(key) != self.prefix:
            return
        self.seen += 1
        if self.seen < self.after:
            return
        mine = f"{self.flag}.{os.getpid()}"
        Path(mine).write_text(json.dumps({"address": self.worker.address, "pid": os.getpid(), "key": str(key)}))
        try:
            os.link(mine, self.flag)  # atomic and exclusive: the first worker here wins
        except FileExistsError:
            return  # another worker (or this one's predecessor) already did it for this test
        finally:
            os.unlink(mine)
        self.act()

    def act(self) -> None:
        raise NotImplementedError


class KillOnTask(_OnTask):
    """SIGKILL this worker process when its ``after``-th task of key prefix ``prefix`` starts executing (once)."""

    name = "kill-on-task"

    def act(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class HoldOnTask(_OnTask):
    """Hang this worker — its event loop held for ``hold_s`` — when its ``after``-th task of key prefix
    ``prefix`` is about to run (once): a host about to vanish, for :func:`remove_on_flag` to tear down."""

    name = "hold-on-task"

    def __init__(self, prefix: str, flag: str | os.PathLike, after: int = 2, hold_s: float = 60.0) -> None:
        super().__init__(prefix, flag, after)
        self.hold_s = hold_s

    def act(self) -> None:
        time.sleep(self.hold_s)


def remove_on_flag(nc: Any, flag: str | os.PathLike, timeout: float = 300.0) -> threading.Thread:
    """A thread that waits for :class:`HoldOnTask`'s flag and then removes the worker host it names from the
    network harness ``nc`` (``benchmarks/cluster_net.NetCluster``); its ``removed`` attribute is that worker's
    index once done."""
    def run() -> None:
        deadline = time.monotonic() + timeout
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.05)
        if os.path.exists(flag):
            address = json.loads(Path(flag).read_text())["address"]
            i = next(i for i in range(nc.n_workers) if nc.worker_address(i) == address)
            nc.remove_worker(i)
            thread.removed = i

    thread = threading.Thread(target=run, daemon=True)
    thread.removed = None
    thread.start()
    return thread


class TaskRecorder(SchedulerPlugin):
    """Records removed workers and, per task key, how many times the scheduler sent it to a worker."""

    name = "task-recorder"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.removed: list[str] = []
        self.processing: Counter = Counter()

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        self.removed.append(worker)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "processing":
            self.processing[key] += 1

    def summary(self) -> dict[str, Any]:
        """Removed workers, and per key prefix the number of tasks sent to a worker more than once."""
        again = Counter(key_split(k) for k, n in self.processing.items() if n > 1)
        return {"removed": list(self.removed), "recomputed": dict(again)}


def _recorder(dask_scheduler: Any, action: str) -> Any:
    plugin = dask_scheduler.plugins[TaskRecorder.name]
    return plugin.reset() if action == "reset" else plugin.summary()


@dataclass
class KillRecord:
    """What happened in the disturbed run: the worker killed (address, pid, task key) and what was recomputed."""

    killed: dict[str, Any]
    removed: list[str]
    recomputed: dict[str, int]


def undisturbed_and_killed(client: Any, fit: Callable[[], Any], prefix: str, flag: str | os.PathLike,
                           after: int = 2, n_workers: int = 2) -> tuple[Any, Any, KillRecord]:
    """``fit()`` on ``client``'s cluster undisturbed, then again with a worker killed by :class:`KillOnTask`.

    Asserts that the kill happened during the second fit, that the scheduler removed that worker and that
    tasks of ``prefix`` were recomputed, so a test built on it cannot pass vacuously. The nanny restarts the
    worker; this returns once the cluster has ``n_workers`` again.
    """
    import dask

    flag = Path(flag)
    flag.unlink(missing_ok=True)
    if TaskRecorder.name not in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins)):
        client.register_plugin(TaskRecorder())
    with dask.config.set(scheduler=client):
        reference = fit()
        client.run_on_scheduler(_recorder, action="reset")
        client.register_plugin(KillOnTask(prefix, flag, after))
        try:
            disturbed = fit()
        finally:
            client.unregister_worker_plugin(KillOnTask.name)
    summary = client.run_on_scheduler(_recorder, action="summary")
    assert flag.exists(), f"no worker was killed: fewer than {after} tasks {prefix!r} ran on one worker"
    killed = json.loads(flag.read_text())
    assert killed["address"] in summary["removed"], (killed, summary)
    assert summary["recomputed"].get(prefix, 0) >= 1, summary
    client.wait_for_workers(n_workers, timeout=120)  # the nanny restarts the killed worker
    return reference, disturbed, KillRecord(killed, summary["removed"], summary["recomputed"])
