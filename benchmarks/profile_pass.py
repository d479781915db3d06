"""Profile of one-pass fits on the network harness, phase by phase: where a wide PCA's (or the search's) wall
time goes after its workers' chunk tasks.

Per fit of ``bench_scale.py``'s workload (the same store, quota, CFS period and links): wall time, and from
dask's task stream the time line of the pass on the fit's clock — the first chunk task's start, the last chunk
task's end (``chunks end``), then the tree's combine tasks (start, end, their inputs' transfers) and the end of
the fit (``tail``: the gather to the client and its last combine) — with every host's CPU seconds and CFS
throttling (``nr_throttled``, ``throttled_usec`` of its cgroup) and this machine's softirq CPU over the fit.
Prints a line per fit, and (``--out``) writes them as JSON.

    python benchmarks/profile_pass.py [--method pca-wide] [--workers 4] [--links 1gbit,100mbit] [--fits 3]

Needs root (the harness).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cgroup_stat(nc: Any) -> dict[str, dict[str, int]]:
    """Each host's CFS throttling so far: {"nr_throttled": periods, "throttled_usec": µs} (cgroup v2 or v1)."""
    out = {}
    for h in nc.hosts:
        d = h.cgroup.dirs.get("v2") or h.cgroup.dirs.get("cpu")
        if d is None:
            continue
        stat = {k: int(v) for k, v in (line.split() for line in (d / "cpu.stat").read_text().splitlines())}
        if "throttled_time" in stat:  # v1: nanoseconds
            stat["throttled_usec"] = stat["throttled_time"] // 1000
        out[h.name] = stat
    return out


def _rusage(dask_worker: Any = None) -> tuple[float, ...]:
    """On a worker: its process's user and system CPU seconds, minor and major page faults, voluntary and
    involuntary context switches so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt, r.ru_majflt, r.ru_nvcsw, r.ru_nivcsw


def _softirq_s() -> float:
    """CPU seconds this machine spent in softirq so far (every CPU, /proc/stat)."""
    import os

    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[7]) / os.sysconf("SC_CLK_TCK")


def phases(ts: list[dict], t0: float, t1: float, chunk_prefix: str) -> dict[str, Any]:
    """The pass's time line from the task stream, seconds since ``t0`` (the fit's start)."""
    from dask.utils import key_split

    chunks, combines, transfers = [], [], []
    passes: dict[str, list[tuple[float, float]]] = {}
    for t in ts:
        name = key_split(t["key"])
        for s in t.get("startstops", ()):
            rec = (s["start"] - t0, s["stop"] - t0, t["worker"])
            if s["action"] == "transfer":
                transfers.append((*rec, name))
            elif s["action"] == "compute":
                (chunks if name == chunk_prefix else combines).append((*rec, name))
                if name == chunk_prefix:
                    passes.setdefault(str(t["key"]).rsplit("-", 1)[0], []).append(rec[:2])
    per_worker: dict[str, list[float]] = {}
    for s, e, w, _ in chunks:
        per_worker.setdefault(w, []).append(e - s)
    out = {"wall": t1 - t0, "first chunk start": min(s for s, *_ in chunks),
           "chunks end": max(e for _, e, *_ in chunks),
           "chunk task s (mean)": statistics.mean(e - s for s, e, *_ in chunks),
           "busiest worker's chunk s": max(map(sum, per_worker.values())),
           "chunks per worker": sorted(len(v) for v in per_worker.values()),
           "passes (first start, last end)": sorted((round(min(s for s, _ in v), 3), round(max(e for _, e in v), 3))
                                                    for v in passes.values()),
           "combines": [(round(s, 3), round(e, 3), w, n) for s, e, w, n in sorted(combines)],
           "transfers": [(round(s, 3), round(e, 3), n) for s, e, _, n in sorted(transfers)]}
    out["end of work"] = max([out["chunks end"], *(e for _, e, *_ in combines)])
    out["tail"] = out["wall"] - out["end of work"]
    return out


def main(argv: list[str] | None = None) -> None:
    from bench_scale import CHUNK, PREFIX, D, Meter, fit, store, warm
    from cluster_net import NetCluster
    from distributed import get_task_stream

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="pca-wide", choices=("pca-wide", "search", "pca", "regression"))
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--links", default="1gbit,100mbit")
    ap.add_argument("--rows", type=int, default=None, help="default: the strong-scaling cell's")
    ap.add_argument("--fits", type=int, default=3)
    ap.add_argument("--worker-cpus", type=float, default=0.2)
    ap.add_argument("--cfs-period-ms", type=float, default=5.0)
    ap.add_argument("--env", action="append", default=[],
                    help="KEY=VALUE for the cluster's processes (e.g. a dask setting), repeatable")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    p = args.workers
    rows_out = []
    with NetCluster(p, rate="1gbit", cpu_quota=dict.fromkeys(range(p), args.worker_cpus),
                    cfs_period_ms=args.cfs_period_ms, env=dict(e.split("=", 1) for e in args.env)) as nc, \
            nc.client.as_current():
        nc.client.run(warm)
        if args.method == "pca-wide":
            path, alg, prefix = store(args.rows or 512_000, 256, 32_000, client=nc.client), "pca", "block_moments"
        else:
            path = store(args.rows or 2_000_000, D, CHUNK, client=nc.client)
            alg = args.method
            prefix = PREFIX["search"] if alg == "search" else "block_moments"
        for link in args.links.split(","):
            for h in range(-1, p):
                nc.set_rate(None if h < 0 else h, link)
            fit(alg, path)
            for i in range(args.fits):
                u0 = nc.client.run(_rusage)
                g0, s0 = _cgroup_stat(nc), _softirq_s()
                with get_task_stream() as ts:
                    t0 = time.time()
                    r = Meter(nc)(lambda: fit(alg, path))
                    t1 = time.time()
                g1, s1 = _cgroup_stat(nc), _softirq_s()
                u1 = nc.client.run(_rusage)
                names = {nc.worker_address(j): f"w{j}" for j in range(p)}
                usage = {names.get(a, a): [round(b - c, 4) for b, c in zip(u1[a], u0[a])] for a in u1}
                ph = phases(ts.data, t0, t1, prefix)
                thr = {h: ((g1[h]["throttled_usec"] - g0[h]["throttled_usec"]) / 1e6,
                           g1[h]["nr_throttled"] - g0[h]["nr_throttled"]) for h in g1 if h.startswith("w")}
                row = {"method": args.method, "workers": p, "link": link, "fit": i, **ph,
                       "cpu": {h: round(v, 4) for h, v in r["cpu"].items()}, "client cpu": r["client cpu"],
                       "throttled s, periods": thr, "softirq s": s1 - s0,
                       "worker utime, stime, minflt, majflt, nvcsw, nivcsw": usage}
                rows_out.append(row)
                short = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                         if k not in ("transfers",)}
                print(json.dumps(short), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows_out, indent=1))


if __name__ == "__main__":
    main()
