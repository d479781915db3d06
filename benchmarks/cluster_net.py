"""A dask cluster spread over network hosts on this machine: Linux network namespaces joined by shaped links.

``NetCluster`` starts a ``dask scheduler`` and N ``dask worker`` processes (nanny-supervised, as deployed),
each in its own network namespace (its own "host": own interfaces, addresses and ports). Every host has one
veth link to a bridge that lives in a namespace of its own (the "switch"); the process that runs the harness
is one more host (the client's), linked to the same switch. Each link is shaped in both directions by an HTB
class (token bucket: ``rate`` = ``ceil``), so a byte between two workers crosses two shaped links, as through
a switch. Addresses are in 198.18.0.0/15 (RFC 2544's range for network benchmarks); the namespaces have no
route anywhere else, so the traffic stays on these test hosts. Data stay where they are: every namespace sees
the same file system, as every host of a cluster sees its shared storage.

Hosts get their own cgroups (cgroup v2, or v1's ``cpu``, ``cpuacct`` and ``memory`` hierarchies): a CPU
quota makes a slow host or a straggler (``cpu_quota``), a memory limit bounds a worker's page cache as well as
its heap (``memory_limit``), and the CPU time each host used is read back from them (``cpu_seconds``).

**The quota's period** (``cfs_period_ms``, default 5 ms). CFS bandwidth control grants q × period of CPU per
period and throttles the host for the rest of it. A slower machine runs every instruction slower; a quota'd host
instead runs at full speed in bursts of q × period, then stops. The shorter the period, the finer the bursts and
the closer the host is to a uniformly slower one: at the kernel's default of 100 ms and q = 0.2, a task of less
than 20 ms of CPU either finishes unthrottled or waits out 80 ms, depending on where in the period it starts,
so short fits are bimodal and run-to-run unstable, and a host idle for a period starts a busy stretch with a
burst of 20 ms; at 5 ms the bursts are 1 ms and a fit's wall time is its CPU over q, reproducibly. The kernel
refuses a quota or period under 1 ms, so for a smaller quota the period is lengthened until q × period is 1 ms
(0.05 core: 20 ms).

**Latency.** The kernel's ``netem`` qdisc is not built into every kernel (this VM's has no modules at all),
so a host's latency (``latency_ms``: one value for every host, or per host) is added by small asyncio TCP
relays that hold every chunk of bytes, in both directions, that long before passing it on: one in front of the
host's dask server (it listens on the address the server advertises and forwards to the server on another
port of the same host), and, on a worker host, one in front of its connection to the scheduler (the worker is
given the relay's address as the scheduler's). So every message between a delayed worker and the scheduler
waits its delay (and the scheduler's, if it has one) each way, as does every connection made to a delayed
host; a connection a delayed worker opens to another worker waits the other's delay only. The relays cost CPU
(every byte is copied through Python twice more); hosts without latency run none.

**Always cleaned up.** Every object is named with a tag unique to the run (namespaces
``smnet-<tag>-<host>``, cgroups ``smnet-<tag>-<host>``, the client's link ``smc<tag>``, files under
``/tmp/smnet-<tag>``), and a record of the run names its owner (pid and start time). Teardown kills every
process in the hosts' cgroups and namespaces, deletes the namespaces (their links go with them) and cgroups,
and removes the files; it runs on leaving the ``with`` block, on SIGINT / SIGTERM (turned into exceptions
while the cluster is up), at interpreter exit, and, when the harness process is killed outright, in a
watchdog process that waits on a pipe the harness holds and cleans up when the pipe closes. Every start
also removes what runs of dead owners left behind (``sweep``).

Command line (as root): ``python benchmarks/cluster_net.py up --workers 4 --rate 1gbit`` (prints the
scheduler's address, runs until interrupted), ``... linktest --rate 1gbit`` (throughput and round-trip time
between two hosts), ``... sweep`` (remove what dead runs left).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import ctypes
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "smnet-"
RECORDS = Path("/tmp/scaleml-netharness")
SCHEDULER_PORT = 8786
WORKER_PORT = 8788
NANNY_PORT = 8789
INNER_OFFSET = 1000  # with a relay, the server listens on port + INNER_OFFSET behind it
_PR_SET_PDEATHSIG = 1
_RATE_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
CFS_PERIOD_MS = 5.0  # the quota's period (module docstring)
_MIN_CFS_US = 1000  # the kernel's least quota and period


class HarnessError(RuntimeError):
    """The harness could not set up (not root, no network namespaces, a command failed)."""


def unavailable() -> str | None:
    """Why this machine cannot run the harness (None if it can): root, ``ip``, ``tc`` and namespaces."""
    if os.geteuid() != 0:
        return "the network harness needs root (network namespaces, veth links, tc, cgroups)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the network harness needs the '{tool}' command (iproute2)"
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    return None


def parse_rate(rate: str | float | None) -> float | None:
    """Bits per second of ``"10gbit"``, ``"100mbit"``, ``"1e9"`` or a number; None (unshaped) stays None."""
    if rate is None or isinstance(rate, (int, float)):
        return None if rate is None else float(rate)
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kmgtKMGT]?)(?:bit|bps|b)?(?:/s)?\s*", rate)
    if not m:
        raise ValueError(f"link rate {rate!r}: expected e.g. '10gbit', '1gbit', '100mbit' or bits per second")
    return float(m.group(1)) * _RATE_UNITS[m.group(2).lower()]


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode:
        raise HarnessError(f"{' '.join(cmd)}: {p.stderr.strip() or p.stdout.strip()}")
    return p


# -- cgroups ---------------------------------------------------------------------------------------------------
def _own_cgroups() -> dict[str, Path]:
    """Where this process's cgroups are: {"v2": dir} on a unified hierarchy with cpu and memory enabled, else
    {"cpu": dir, "cpuacct": dir, "memory": dir} of the v1 hierarchies that exist."""
    root = Path("/sys/fs/cgroup")
    found: dict[str, Path] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # the unified (v2) hierarchy: at the root, or at unified/ beside v1 ones
            base = root if (root / "cgroup.controllers").exists() else root / "unified"
            enabled = (base / "cgroup.controllers").read_text().split() if base.is_dir() else []
            if {"cpu", "memory"} <= set(enabled):
                return {"v2": base / path.lstrip("/")}
            continue
        for c in controllers.split(","):
            if c in ("cpu", "cpuacct", "memory") and (root / c).is_dir():
                # v1: cpu and cpuacct may be co-mounted (cpu,cpuacct): either name resolves to the mount
                found[c] = root / c / path.lstrip("/")
    return found


@dataclass
class _Cgroup:
    """One host's cgroups (v2: one directory; v1: one per controller), created empty; CPU quotas granted per
    ``period_ms`` (module docstring)."""

    dirs: dict[str, Path]
    period_ms: float = CFS_PERIOD_MS

    @classmethod
    def create(cls, name: str, period_ms: float = CFS_PERIOD_MS) -> _Cgroup:
        dirs = {}
        for kind, parent in _own_cgroups().items():
            d = parent / name
            d.mkdir(exist_ok=True)
            dirs[kind] = d
        return cls(dirs, period_ms)

    def add_self(self) -> None:
        """Move the calling process into every one of these cgroups (used between fork and exec)."""
        for d in self.dirs.values():
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def set_cpu_quota(self, cores: float | None) -> None:
        """At most ``cores`` CPUs' worth of time per period (None: no limit); the period ``period_ms``, or as
        much longer as a quota of at least 1 ms needs."""
        period = max(round(self.period_ms * 1000), _MIN_CFS_US)
        if cores is not None:
            period = max(period, math.ceil(_MIN_CFS_US / cores))
        quota = "-1" if cores is None else str(max(round(cores * period), _MIN_CFS_US))
        if "v2" in self.dirs:
            (self.dirs["v2"] / "cpu.max").write_text(f"{'max' if cores is None else quota} {period}")
        elif "cpu" in self.dirs:
            (self.dirs["cpu"] / "cpu.cfs_period_us").write_text(str(period))
            (self.dirs["cpu"] / "cpu.cfs_quota_us").write_text(quota)

    def set_memory_limit(self, nbytes: int | None) -> None:
        """At most ``nbytes`` of memory, page cache included (None: no limit)."""
        if "v2" in self.dirs:
            (self.dirs["v2"] / "memory.max").write_text("max" if nbytes is None else str(int(nbytes)))
        elif "memory" in self.dirs:
            (self.dirs["memory"] / "memory.limit_in_bytes").write_text("-1" if nbytes is None else str(int(nbytes)))

    def cpu_seconds(self) -> float:
        """CPU time used by every process that ran in this cgroup."""
        if "v2" in self.dirs:
            stat = dict(line.split() for line in (self.dirs["v2"] / "cpu.stat").read_text().splitlines())
            return int(stat["usage_usec"]) / 1e6
        for kind in ("cpuacct", "cpu"):
            f = self.dirs.get(kind, Path("/nonexistent")) / "cpuacct.usage"
            if f.exists():
                return int(f.read_text()) / 1e9
        return float("nan")

    def pids(self) -> set[int]:
        out: set[int] = set()
        for d in self.dirs.values():
            with contextlib.suppress(OSError):
                out |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
        return out


def _leftover_cgroups(tag: str | None) -> list[Path]:
    """Cgroup directories of this harness (of run ``tag``, or of every run) under this process's cgroups and
    under each hierarchy's root."""
    roots = set(_own_cgroups().values())
    base = Path("/sys/fs/cgroup")
    roots |= {base / c for c in ("cpu", "cpuacct", "memory", "unified") if (base / c).is_dir()} | {base}
    pattern = f"{PREFIX}{tag}-" if tag else PREFIX
    return sorted({d for r in roots if r.is_dir() for d in r.iterdir() if d.is_dir() and d.name.startswith(pattern)})


# -- the record of a run, and cleaning up after one -------------------------------------------------------------
def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_alive(record: dict) -> bool:
    return _start_time(record["pid"]) == record["start"]


def _netns_names() -> list[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _pids_in(namespaces: Sequence[str], cgroups: Sequence[Path]) -> set[int]:
    pids: set[int] = set()
    for ns in namespaces:
        pids |= {int(p) for p in _run("ip", "netns", "pids", ns, check=False).stdout.split()}
    for d in cgroups:
        with contextlib.suppress(OSError):
            pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
    return pids - {os.getpid()}


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if Path(f"/proc/{p}").exists() and _start_time(p) is not None
                and "Z" != Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]}
        time.sleep(0.05)
    return pids


def cleanup(tag: str, grace: float = 3.0) -> list[str]:
    """Remove everything of run ``tag``: its processes (SIGTERM, then SIGKILL after ``grace`` seconds), its
    namespaces (their links with them), its root-side link, cgroups, files and record. Idempotent; returns
    what it removed."""
    removed: list[str] = []
    namespaces = [n for n in _netns_names() if n.startswith(f"{PREFIX}{tag}-")]
    cgroups = _leftover_cgroups(tag)
    pids = _pids_in(namespaces, cgroups)
    if pids:
        _kill_all(pids, signal.SIGTERM)
        left = _wait_gone(pids, grace)
        _kill_all(left | _pids_in(namespaces, cgroups), signal.SIGKILL)
        _wait_gone(left, 10.0)
        removed.append(f"{len(pids)} processes")
    for ns in sorted(namespaces, key=lambda n: n.endswith("-sw")):  # the switch last
        _run("ip", "netns", "delete", ns, check=False)
        removed.append(f"netns {ns}")
    link = f"smc{tag}"
    if _run("ip", "link", "show", link, check=False).returncode == 0:
        _run("ip", "link", "delete", link, check=False)
        removed.append(f"link {link}")
    for d in sorted(cgroups, key=lambda p: -len(p.parts)):
        for _ in range(50):
            try:
                d.rmdir()
                removed.append(f"cgroup {d}")
                break
            except FileNotFoundError:
                break
            except OSError:  # still has a (dying) task
                time.sleep(0.1)
    shutil.rmtree(f"/tmp/{PREFIX}{tag}", ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (RECORDS / f"{tag}.json").unlink()
    return removed


def sweep() -> list[str]:
    """Clean up every run whose owner is no longer alive (also objects named like a run but without a
    record: a run killed between creating them and writing its record cannot happen, as the record comes
    first, but a deleted record can)."""
    removed: list[str] = []
    live: set[str] = set()
    if RECORDS.is_dir():
        for f in RECORDS.glob("*.json"):
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if _owner_alive(rec):
                live.add(rec["tag"])
    tags = {n[len(PREFIX):].split("-")[0] for n in _netns_names() if n.startswith(PREFIX)}
    tags |= {d.name[len(PREFIX):].split("-")[0] for d in _leftover_cgroups(None)}
    tags |= {f.stem for f in RECORDS.glob("*.json")} if RECORDS.is_dir() else set()
    tags |= {m.group(1) for m in re.finditer(r"\d+: smc(\w+)[@:]", _run("ip", "-o", "link", check=False).stdout)}
    for tag in sorted(tags - live):
        removed += cleanup(tag, grace=0.5)
    return removed


def leftovers(tag: str) -> list[str]:
    """What of run ``tag`` still exists (empty once it is cleaned up): namespaces, links, cgroups, processes,
    files. The processes are found by namespace and cgroup and by the tag on their command line."""
    out = [f"netns {n}" for n in _netns_names() if n.startswith(f"{PREFIX}{tag}-")]
    if _run("ip", "link", "show", f"smc{tag}", check=False).returncode == 0:
        out.append(f"link smc{tag}")
    out += [f"cgroup {d}" for d in _leftover_cgroups(tag)]
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            with contextlib.suppress(OSError):
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if f"{PREFIX}{tag}" in cmd + (p / "cgroup").read_text() or re.search(rf"_(watch|relay) .*{tag}", cmd):
                    out.append(f"process {p.name}: {cmd[:100]}")
    if Path(f"/tmp/{PREFIX}{tag}").exists():
        out.append(f"directory /tmp/{PREFIX}{tag}")
    if (RECORDS / f"{tag}.json").exists():
        out.append(f"record {RECORDS / f'{tag}.json'}")
    return out


def _watch(tag: str) -> None:
    """The watchdog: block until the harness's pipe closes (it exited or was killed), then clean up."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(1 << 16):
            pass
    cleanup(tag, grace=1.0)


# -- the latency relay --------------------------------------------------------------------------------------------
async def _relay_main(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    """Accept on ``listen``, forward to ``target``; every chunk of bytes, both ways, held ``delay`` seconds."""
    loop = asyncio.get_running_loop()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=64)  # at most 64 reads in flight: back-pressure

        async def send() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while data := await reader.read(1 << 18):
                await queue.put((loop.time() + delay, data))
        except OSError:
            pass
        await queue.put((loop.time() + delay, b""))
        with contextlib.suppress(OSError):
            await sender

    async def handle(r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        for attempt in range(100):  # the server behind may still be starting
            try:
                r2, w2 = await asyncio.open_connection(*target)
                break
            except OSError:
                if attempt == 99:
                    w1.close()
                    return
                await asyncio.sleep(0.1)
        for w in (w1, w2):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(r1, w2), pump(r2, w1), return_exceptions=True)
        for w in (w1, w2):
            w.close()

    server = await asyncio.start_server(handle, *listen, reuse_address=True)
    async with server:
        await server.serve_forever()


# -- the cluster --------------------------------------------------------------------------------------------------
@dataclass
class Host:
    """One network host: its namespace, address, switch port, cgroup and the processes it runs."""

    name: str
    netns: str
    ip: str
    port: str  # the switch-side end of its link
    cgroup: _Cgroup
    procs: list[subprocess.Popen] = field(default_factory=list)
    rate: float | None = None
    removed: bool = False


class NetCluster:
    """A scheduler host and ``n_workers`` worker hosts in network namespaces, links shaped to ``rate``.

    Parameters
    ----------
    n_workers : worker hosts, one ``dask worker`` (with its nanny) on each.
    rate : every link's rate in both directions ("10gbit", "1gbit", "100mbit", bits/s; None: unshaped veth).
    threads : threads per worker, one value or one per worker (uneven workers: ``[1, 2, 4]``).
    latency_ms : one-way latency added by relays (module docstring): one value for every host, or
        ``{worker index or "sched": ms}``.
    cpu_quota : {worker index: CPUs} — e.g. ``{0: 0.25}`` makes worker 0 a straggler.
    cfs_period_ms : the period over which a quota is granted (module docstring); hosts' ``cgroup.set_cpu_quota``
        later uses it too.
    memory_limit : bytes of memory per worker host, page cache included (cgroup), and dask's memory limit.
    worker_ttl, tcp_timeout : dask's ``scheduler.worker-ttl`` and ``comm.timeouts.tcp`` for the cluster's
        processes: a host that vanishes (no FIN, no RST) is noticed after these (dask's defaults: 5 minutes,
        30 s); failure tests lower them (dask refuses a TCP timeout below 11 s).
    env : extra environment for the cluster's processes (``PYTHONPATH`` entries are prepended).

    ``client`` is connected from this process (the client's host). ``remove_worker(i)`` tears worker host ``i``
    down mid-run: its link is cut first, then its processes killed and its namespace deleted.
    """

    def __init__(self, n_workers: int, *, rate: str | float | None = "1gbit", threads: int | Sequence[int] = 1,
                 latency_ms: float | dict[int | str, float] = 0.0, cpu_quota: dict[int, float] | None = None,
                 cfs_period_ms: float = CFS_PERIOD_MS, memory_limit: int | None = None,
                 worker_ttl: str | None = None, tcp_timeout: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        why = unavailable()
        if why:
            raise HarnessError(why)
        self.n_workers = n_workers
        self.rate = parse_rate(rate)
        self.threads = [threads] * n_workers if isinstance(threads, int) else list(threads)
        if len(self.threads) != n_workers:
            raise ValueError(f"threads: {len(self.threads)} values for {n_workers} workers")
        names = ["sched"] + [f"w{i}" for i in range(n_workers)]
        per_host = latency_ms if isinstance(latency_ms, dict) else dict.fromkeys(["sched", *range(n_workers)],
                                                                                  latency_ms)
        self.delay = {names[0] if h == "sched" else f"w{h}": float(ms) / 1e3 for h, ms in per_host.items()
                      if float(ms) > 0}
        self.cpu_quota = dict(cpu_quota or {})
        if not 1 <= cfs_period_ms <= 1000:
            raise ValueError(f"cfs_period_ms={cfs_period_ms!r}: the kernel takes a period of 1 to 1,000 ms")
        self.cfs_period_ms = float(cfs_period_ms)
        self.memory_limit = memory_limit
        from dask.utils import parse_timedelta

        if tcp_timeout is not None and parse_timedelta(tcp_timeout) < 11:
            raise ValueError(f"tcp_timeout={tcp_timeout!r}: dask needs at least 11 s (10 keepalive probes + 1)")
        self.worker_ttl, self.tcp_timeout = worker_ttl, tcp_timeout
        self.extra_env = dict(env or {})
        self.tag = secrets.token_hex(3)
        self.dir = Path(f"/tmp/{PREFIX}{self.tag}")
        self.hosts: list[Host] = []
        self.client: Any = None
        self._watchdog: subprocess.Popen | None = None
        self._pipe_w: int | None = None
        self._old_handlers: dict[int, Any] = {}
        self._subnet = ""
        self._client_link = f"smc{self.tag}"

    # -- naming ----------------------------------------------------------------------------------------------
    @property
    def switch(self) -> str:
        return f"{PREFIX}{self.tag}-sw"

    @property
    def scheduler(self) -> Host:
        return self.hosts[0]

    @property
    def workers(self) -> list[Host]:
        return self.hosts[1:]

    @property
    def address(self) -> str:
        return f"tcp://{self.scheduler.ip}:{SCHEDULER_PORT}"

    def worker_address(self, i: int) -> str:
        return f"tcp://{self.workers[i].ip}:{WORKER_PORT}"

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> NetCluster:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        sweep()
        RECORDS.mkdir(parents=True, exist_ok=True)
        self._subnet = self._free_subnet()
        record = {"tag": self.tag, "pid": os.getpid(), "start": _start_time(os.getpid()), "subnet": self._subnet}
        (RECORDS / f"{self.tag}.json").write_text(json.dumps(record))
        self._start_watchdog()
        atexit.register(self.close)
        self._trap_signals()
        try:
            self.dir.mkdir()
            self._make_network()
            self._start_processes()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Disconnect the client and remove everything (idempotent)."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=5)
            self.client = None
        cleanup(self.tag)
        for h in self.hosts:  # reap them (cleanup killed them all)
            for p in h.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=10)
        if self._pipe_w is not None:
            os.close(self._pipe_w)  # the watchdog finds nothing left and exits
            self._pipe_w = None
        if self._watchdog is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(timeout=30)
            self._watchdog = None
        self._restore_signals()
        atexit.unregister(self.close)

    def _start_watchdog(self) -> None:
        r, w = os.pipe()
        self._watchdog = subprocess.Popen([sys.executable, __file__, "_watch", self.tag], stdin=r,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True, cwd="/")
        os.close(r)
        os.set_inheritable(w, False)
        self._pipe_w = w

    def _trap_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_term(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        self._old_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_term)
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
            self._old_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        self._old_handlers = {}

    # -- network ---------------------------------------------------------------------------------------------
    def _free_subnet(self) -> str:
        used = set(re.findall(r"inet (198\.1[89]\.\d+)\.", _run("ip", "-o", "addr", check=False).stdout))
        if RECORDS.is_dir():
            for f in RECORDS.glob("*.json"):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    used.add(json.loads(f.read_text())["subnet"])
        for second in (18, 19):
            for third in range(256):
                net = f"198.{second}.{third}"
                if net not in used:
                    return net
        raise HarnessError("no free /24 left in 198.18.0.0/15")

    def _make_network(self) -> None:
        sw = self.switch
        _run("ip", "netns", "add", sw)
        _run("ip", "-n", sw, "link", "set", "lo", "up")
        _run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", sw, "link", "set", "br0", "up")
        # the client's host: this process, linked to the switch like every other host
        _run("ip", "link", "add", self._client_link, "type", "veth", "peer", "name", "pc", "netns", sw)
        _run("ip", "-n", sw, "link", "set", "pc", "master", "br0", "up")
        _run("ip", "addr", "add", f"{self._subnet}.1/24", "dev", self._client_link)
        _run("ip", "link", "set", self._client_link, "up")
        self._shape(None, self._client_link, self.rate)
        self._shape(sw, "pc", self.rate)
        names = ["sched"] + [f"w{i}" for i in range(self.n_workers)]
        for i, name in enumerate(names):
            ns = f"{PREFIX}{self.tag}-{name}"
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            port = f"p{i}"
            _run("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _run("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
            ip = f"{self._subnet}.{i + 2}"
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            host = Host(name, ns, ip, port, _Cgroup.create(ns, self.cfs_period_ms))
            self.hosts.append(host)
            self.set_rate(i - 1 if i else None, self.rate)
            if i:
                host.cgroup.set_cpu_quota(self.cpu_quota.get(i - 1))
                host.cgroup.set_memory_limit(self.memory_limit)

    @staticmethod
    def _shape(ns: str | None, dev: str, rate: float | None) -> None:
        """HTB on ``dev``'s egress: one class at ``rate`` (rate = ceil), burst of 1 ms of traffic but at least
        two 64 kB GSO segments (veths pass segments that large); no qdisc for None."""
        tc = ["tc"] + (["-n", ns] if ns else [])
        _run(*tc, "qdisc", "del", "dev", dev, "root", check=False)
        if rate is None:
            return
        burst = max(2 * 65536, int(rate / 8 * 1e-3))
        _run(*tc, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1", "r2q", "1000")
        _run(*tc, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", f"{int(rate)}bit",
             "ceil", f"{int(rate)}bit", "burst", str(burst), "cburst", str(burst))

    def set_rate(self, worker: int | None, rate: str | float | None) -> None:
        """Shape the link of worker ``worker`` (None: the scheduler's) to ``rate``, both directions."""
        host = self.scheduler if worker is None else self.workers[worker]
        host.rate = parse_rate(rate)
        self._shape(self.switch, host.port, host.rate)
        self._shape(host.netns, "eth0", host.rate)

    # -- processes -------------------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {**os.environ, **{k: v for k, v in self.extra_env.items() if k != "PYTHONPATH"}}
        paths = [self.extra_env.get("PYTHONPATH", ""), str(Path(__file__).resolve().parent),
                 os.environ.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        if self.worker_ttl:
            env["DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL"] = self.worker_ttl
        if self.tcp_timeout:
            env["DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP"] = self.tcp_timeout
        return env

    def _spawn(self, host: Host, args: list[str], log: str) -> subprocess.Popen:
        cgroup = host.cgroup

        def setup() -> None:  # in the child, before exec: into the host's cgroups; die with the harness
            cgroup.add_self()
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

        out = open(self.dir / log, "ab")  # noqa: SIM115 - closed by the child's exit
        p = subprocess.Popen(["ip", "netns", "exec", host.netns, *args], stdout=out, stderr=subprocess.STDOUT,
                             env=self._env(), preexec_fn=setup, cwd=self.dir, start_new_session=True)
        out.close()
        host.procs.append(p)
        return p

    def _relay(self, host: Host, port: int, target: tuple[str, int] | None = None) -> None:
        """A relay in ``host``'s namespace on its port ``port``, to ``target`` (default: the same address at
        ``port + INNER_OFFSET``), delaying by the host's latency; returns once it listens."""
        ip, to = (host.ip, port + INNER_OFFSET) if target is None else target
        self._spawn(host, [sys.executable, __file__, "_relay", host.ip, str(port), ip, str(to),
                           str(self.delay[host.name]), self.tag], f"{host.name}-relay-{port}.log")
        self._wait_listening(host.ip, port)

    def _start_processes(self) -> None:
        from distributed import Client

        dask = str(Path(sys.executable).with_name("dask"))
        s = self.scheduler
        inner = SCHEDULER_PORT + (INNER_OFFSET if s.name in self.delay else 0)
        self._spawn(s, [dask, "scheduler", "--host", s.ip, "--port", str(inner), "--no-dashboard"], "scheduler.log")
        self._wait_listening(s.ip, inner)
        if s.name in self.delay:
            self._relay(s, SCHEDULER_PORT)
        for i, w in enumerate(self.workers):
            scheduler = self.address
            if w.name in self.delay:  # its link to the scheduler, both ways, through a relay of its own
                self._relay(w, SCHEDULER_PORT, (s.ip, SCHEDULER_PORT))
                scheduler = f"tcp://{w.ip}:{SCHEDULER_PORT}"
            args = [dask, "worker", scheduler, "--nthreads", str(self.threads[i]), "--name", f"w{i}",
                    "--no-dashboard", "--local-directory", str(self.dir / w.name), "--nanny-port", str(NANNY_PORT),
                    "--memory-limit", str(self.memory_limit or "auto")]
            if w.name in self.delay:
                self._relay(w, WORKER_PORT)
                args += ["--listen-address", f"tcp://{w.ip}:{WORKER_PORT + INNER_OFFSET}",
                         "--contact-address", f"tcp://{w.ip}:{WORKER_PORT}"]
            else:
                args += ["--host", w.ip, "--worker-port", str(WORKER_PORT)]
            self._spawn(w, args, f"{w.name}.log")
        deadline = time.monotonic() + 120
        while True:
            try:
                self.client = Client(self.address, timeout=10, set_as_default=False)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                self._check_alive()
                time.sleep(0.2)
        self.wait_for_workers(self.n_workers)

    def _wait_listening(self, ip: str, port: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection((ip, port), timeout=1):
                return
            self._check_alive()
            if time.monotonic() > deadline:
                raise HarnessError(f"nothing listens on {ip}:{port} after {timeout} s")
            time.sleep(0.1)

    def _check_alive(self) -> None:
        for h in self.hosts:
            for p in h.procs:
                if p.poll() is not None and not h.removed:
                    logs = "\n".join(f"--- {f.name}\n" + f.read_text(errors="replace")[-3000:]
                                     for f in sorted(self.dir.glob("*.log")))
                    raise HarnessError(f"a process of host {h.name} exited ({p.returncode}):\n{logs}")

    def wait_for_workers(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.client.scheduler_info(n_workers=-1)["workers"]) < n:
            self._check_alive()
            if time.monotonic() > deadline:
                raise HarnessError(f"only {len(self.client.scheduler_info()['workers'])} of {n} workers joined")
            time.sleep(0.1)

    # -- measurements and faults -----------------------------------------------------------------------------
    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each host's processes ({"sched": s, "w0": s, ...})."""
        return {h.name: h.cgroup.cpu_seconds() for h in self.hosts if not h.removed}

    def remove_worker(self, i: int) -> None:
        """Worker host ``i`` vanishes: its link is cut (no FIN, no RST reaches anyone), then its processes are
        killed and its namespace deleted."""
        h = self.workers[i]
        _run("ip", "-n", self.switch, "link", "delete", h.port, check=False)
        h.removed = True
        pids = _pids_in([h.netns], list(h.cgroup.dirs.values()))
        _kill_all(pids, signal.SIGKILL)
        _wait_gone(pids, 10.0)
        for p in h.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        _run("ip", "netns", "delete", h.netns, check=False)

    def worker_addresses(self) -> list[str]:
        """The dask addresses of the workers still in the cluster, in host order."""
        present = set(self.client.scheduler_info(n_workers=-1)["workers"])
        return [a for i in range(self.n_workers) if (a := self.worker_address(i)) in present]


# -- link measurement ----------------------------------------------------------------------------------------------
_SINK = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((sys.argv[1], 5201)); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while True:
    b = c.recv(1 << 16)
    if not b: break
    if b[-1:] == b"?": c.sendall(b"!")
"""
_SOURCE = r"""
import socket, sys, time
n = int(sys.argv[2]); c = socket.create_connection((sys.argv[1], 5201))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rtt = []
for _ in range(20):
    t = time.perf_counter(); c.sendall(b"?"); c.recv(1); rtt.append(time.perf_counter() - t)
buf = b"x" * (1 << 20); t = time.perf_counter(); sent = 0
while sent < n: c.sendall(buf); sent += len(buf)
c.sendall(b"?"); c.recv(1); dt = time.perf_counter() - t
print(sorted(rtt)[len(rtt) // 2], sent * 8 / dt, flush=True)
"""


def link_test(nc: NetCluster, nbytes: int = 200 << 20, src: int = 0, dst: int = 1) -> dict[str, float]:
    """Median round-trip time (s) of 1-byte pings and TCP throughput (bit/s) from worker host ``src`` to
    worker host ``dst`` over the shaped links (two links and the bridge, plus the relays' delay, if any)."""
    a, b = nc.workers[src], nc.workers[dst]
    sink = subprocess.Popen(["ip", "netns", "exec", b.netns, sys.executable, "-c", _SINK, b.ip],
                            stdout=subprocess.PIPE, text=True)
    try:
        sink.stdout.readline()
        out = _run("ip", "netns", "exec", a.netns, sys.executable, "-c", _SOURCE, b.ip, str(nbytes)).stdout.split()
    finally:
        sink.kill()
        sink.wait()
    return {"rtt_s": float(out[0]), "bits_per_s": float(out[1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a cluster, print its address, run until interrupted")
    lt = sub.add_parser("linktest", help="throughput and round-trip time between two worker hosts")
    for p in (up, lt):
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--rate", default="1gbit", help="link rate, e.g. 10gbit, 1gbit, 100mbit, or 'none'")
        p.add_argument("--latency-ms", type=float, default=0.0)
    up.add_argument("--threads", default="1", help="threads per worker: one value, or one per worker (1,2,4)")
    up.add_argument("--tag-file", help="write the run's tag here once the cluster is up (for tests)")
    sub.add_parser("sweep", help="remove what runs of dead owners left behind")
    w = sub.add_parser("_watch")
    w.add_argument("tag")
    r = sub.add_parser("_relay")
    r.add_argument("ip")
    r.add_argument("port", type=int)
    r.add_argument("target_ip")
    r.add_argument("target_port", type=int)
    r.add_argument("delay", type=float)
    r.add_argument("tag", help="the run's tag (on the command line, so that leftovers can find the relay)")
    args = ap.parse_args(argv)
    if args.cmd == "_watch":
        _watch(args.tag)
        return 0
    if args.cmd == "_relay":
        asyncio.run(_relay_main((args.ip, args.port), (args.target_ip, args.target_port), args.delay))
        return 0
    why = unavailable()
    if why:
        print(f"cluster_net: {why}", file=sys.stderr)
        return 2
    if args.cmd == "sweep":
        for line in sweep():
            print(line)
        return 0
    rate = None if args.rate == "none" else args.rate
    if args.cmd == "linktest":
        with NetCluster(max(2, args.workers), rate=rate, latency_ms=args.latency_ms) as nc:
            res = link_test(nc)
            print(f"rtt {res['rtt_s'] * 1e3:.3f} ms, throughput {res['bits_per_s'] / 1e9:.3f} Gbit/s")
        return 0
    threads = [int(t) for t in args.threads.split(",")]
    try:
        with NetCluster(args.workers, rate=rate, latency_ms=args.latency_ms,
                        threads=threads[0] if len(threads) == 1 else threads) as nc:
            print(f"scheduler {nc.address}, {args.workers} workers, links {args.rate}; tag {nc.tag}", flush=True)
            if args.tag_file:
                Path(args.tag_file).write_text(nc.tag)
            while True:
                time.sleep(1)
                nc._check_alive()
    except KeyboardInterrupt:
        return 130
    except SystemExit as e:
        return int(e.code or 0)


if __name__ == "__main__":
    sys.exit(main())
