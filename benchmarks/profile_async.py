"""Profile of async SGD (parameter server) on the network harness, fit by fit.

Per fit of ``bench_scale.py``'s ``sgd-async`` workload: wall time, the server's accepted / rejected pushes
(a rejected one is recomputed: one more pull and push), every worker's waits for the server's answer to its
pulls and pushes, the CPU of every host, the qdisc drops / requeues of every link and the TCP retransmits of every
host in the fit. Prints a line per fit.

    python benchmarks/profile_async.py [--workers 2] [--rows 2000000] [--link 100mbit] [--fits 6]

Needs root (the harness).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CALLS: list[tuple[float, float]] = []  # on a worker: (start, seconds) of every wait for the server's answer


def install(dask_worker=None) -> None:  # noqa: ANN001 - client.run's argument
    """On a worker: time every wait of ``_blocks._answer`` (a pull or a push, in turn, per partition's task)."""
    from scaleml_dask.sgd import _blocks

    answer = getattr(_blocks._answer, "__wrapped__", _blocks._answer)

    def timed(call, server, host):  # noqa: ANN001, ANN202
        t = time.perf_counter()
        try:
            return answer(call, server, host)
        finally:
            CALLS.append((t, time.perf_counter() - t))

    timed.__wrapped__ = answer
    _blocks._answer = timed


def collect(dask_worker=None) -> list[tuple[float, float]]:  # noqa: ANN001
    """On a worker: the waits timed since the last collect."""
    out = CALLS[:]
    CALLS.clear()
    return out


def _qdisc(ns: str | None, dev: str) -> dict[str, int]:
    cmd = ["tc"] + (["-n", ns] if ns else []) + ["-s", "qdisc", "show", "dev", dev]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    m = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+) requeues (\d+)\)", out)
    return dict(zip(("bytes", "pkts", "dropped", "overlimits", "requeues"), map(int, m.groups()))) if m else {}


def _retrans(ns: str | None) -> dict[str, int]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["nstat", "-az", "TcpRetransSegs", "TcpExtTCPTimeouts",
                                                         "TcpExtDelayedACKs", "TcpExtTCPLossProbes"]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()[1:] if line and not line.startswith("#")}


def net_counters(nc) -> dict[str, dict]:  # noqa: ANN001
    out = {"client": {**_qdisc(None, nc._client_link), **_retrans(None)},
           "switch-pc": _qdisc(nc.switch, "pc")}
    for h in nc.hosts:
        out[h.name] = {**_qdisc(h.netns, "eth0"), **_retrans(h.netns)}
        out[f"switch-{h.port}"] = _qdisc(nc.switch, h.port)
    return out


def _diff(a: dict, b: dict) -> dict:
    return {h: {k: b[h][k] - a[h].get(k, 0) for k in b[h] if b[h][k] != a[h].get(k, 0)} for h in b}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--link", default="100mbit")
    ap.add_argument("--worker-cpus", type=float, default=0.2)
    ap.add_argument("--fits", type=int, default=6)
    args = ap.parse_args()

    import bench_scale
    import profile_async
    from cluster_net import NetCluster

    p = args.workers
    with NetCluster(p, rate=args.link, cpu_quota=dict.fromkeys(range(p), args.worker_cpus)) as nc, \
            nc.client.as_current():
        nc.client.run(bench_scale.warm)
        nc.client.run(profile_async.install)  # by reference: the workers import this module, one CALLS
        path = bench_scale.store(args.rows, client=nc.client)
        meter = bench_scale.Meter(nc)
        bench_scale.fit("sgd-async", path)
        for i in range(args.fits):
            nc.client.run(profile_async.collect)
            n0 = net_counters(nc)
            r = meter(lambda: bench_scale.fit("sgd-async", path))
            n1 = net_counters(nc)
            est = r["result"]
            waits = [w for calls in nc.client.run(profile_async.collect).values() for w in calls]
            pulls, pushes = waits[0::2], waits[1::2]  # each worker (1 thread): pull, push, pull, ...
            print(json.dumps({"fit": i, "seconds": round(r["seconds"], 3), "rounds": int(est.n_rounds_),
                              "rejected": int(est.staleness_.get("rejected", -1))
                              if isinstance(getattr(est, "staleness_", None), dict) else str(est.staleness_),
                              "pulls": len(pulls), "pushes": len(pushes),
                              "pull wait s": round(sum(w for _, w in pulls), 3),
                              "push wait s": round(sum(w for _, w in pushes), 3),
                              "waits > 50 ms": sum(w > 0.05 for _, w in waits),
                              "slowest waits s": sorted((round(w, 3) for _, w in waits), reverse=True)[:5],
                              "cpu": {k: round(v, 3) for k, v in r["cpu"].items()},
                              "client cpu": round(r["client cpu"], 3), "net": _diff(n0, n1)}), flush=True)


if __name__ == "__main__":
    main()
