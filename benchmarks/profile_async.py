"""Profile of async SGD (parameter server) on the network harness, fit by fit.

Per fit of ``bench_scale.py``'s ``sgd-async`` workload: wall time, the server's accepted / rejected pushes,
every pull and push each partition made (how long the worker waited for its answer) and the time it computed
gradients, the CPU of every host, the qdisc drops / requeues of every link and the TCP retransmits of every
host in the fit. Prints a line per fit and the slowest calls of the slowest and fastest fit.

    python benchmarks/profile_async.py [--workers 2] [--rows 2000000] [--link 100mbit] [--fits 6]

Needs root (the harness).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

LOG = Path(os.environ.get("PROFILE_ASYNC_LOG", "/tmp/profile_async"))


def timed_partition(part, server, host, seed, problem, push_every):  # noqa: ANN001 - the trainer's signature
    """``_blocks.async_partition`` with every call to the server timed; the records go to a file per task."""
    import numpy as np

    from scaleml_dask.sgd._blocks import _answer, send
    from scaleml_dask.sgd._kernels import n_batches

    rec = []
    total = n_batches(part.n_train, problem.batch_size)
    start = time.perf_counter()
    for first in range(0, total, push_every):
        for attempt in range(2):
            t0 = time.perf_counter()
            version, W = _answer(server.pull(), server, host)
            t1 = time.perf_counter()
            G = np.zeros_like(W)
            rows_seen = 0
            for step in range(first, min(first + push_every, total)):
                g, rows = part.gradient(W, seed, step, problem)
                G += rows * g
                rows_seen += rows
            msg = send(G / rows_seen, problem, part.index)
            t2 = time.perf_counter()
            ok = _answer(server.push(msg, version, rows_seen), server, host)
            t3 = time.perf_counter()
            rec.append((t0 - start, t1 - t0, t2 - t1, t3 - t2, attempt, bool(ok)))
            if ok:
                break
    tag = os.environ.get("PROFILE_ASYNC_FIT", "x")
    LOG.mkdir(parents=True, exist_ok=True)
    (LOG / f"part{part.index}-{time.time_ns()}.json").write_text(json.dumps({"part": part.index, "rec": rec,
                                                                             "start": time.time(), "tag": tag}))


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
    ap.add_argument("--original", action="store_true", help="the library's async_partition, not the timed one")
    args = ap.parse_args()

    import bench_scale
    from cluster_net import NetCluster

    import scaleml_dask.sgd._trainer as trainer

    if not args.original:
        trainer.async_partition = timed_partition
    p = args.workers
    with NetCluster(p, rate=args.link, cpu_quota=dict.fromkeys(range(p), args.worker_cpus)) as nc, \
            nc.client.as_current():
        nc.client.run(bench_scale.warm)
        path = bench_scale.store(args.rows, client=nc.client)
        meter = bench_scale.Meter(nc)
        bench_scale.fit("sgd-async", path)
        for i in range(args.fits):
            for f in LOG.glob("part*.json"):
                f.unlink()
            n0 = net_counters(nc)
            r = meter(lambda: bench_scale.fit("sgd-async", path))
            n1 = net_counters(nc)
            est = r["result"]
            recs = [json.loads(f.read_text()) for f in sorted(LOG.glob("part*.json"))]
            calls = [c for d in recs for c in d["rec"]]
            pull = sum(c[1] for c in calls)
            comp = sum(c[2] for c in calls)
            push = sum(c[3] for c in calls)
            slow = sorted(calls, key=lambda c: -(c[1] + c[3]))[:5]
            print(json.dumps({"fit": i, "seconds": round(r["seconds"], 3), "rounds": int(est.n_rounds_),
                              "rejected": int(est.staleness_.get("rejected", -1))
                              if isinstance(getattr(est, "staleness_", None), dict) else str(est.staleness_),
                              "calls": len(calls), "redone": sum(c[4] for c in calls),
                              "pull s": round(pull, 3), "compute s": round(comp, 3), "push s": round(push, 3),
                              "pulls>50ms": sum(c[1] > 0.05 for c in calls),
                              "pushes>50ms": sum(c[3] > 0.05 for c in calls),
                              "slowest calls (pull, push)": [(round(c[1], 3), round(c[3], 3)) for c in slow],
                              "cpu": {k: round(v, 3) for k, v in r["cpu"].items()},
                              "client cpu": round(r["client cpu"], 3), "net": _diff(n0, n1)}), flush=True)


if __name__ == "__main__":
    main()
