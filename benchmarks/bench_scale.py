"""Scaling past one machine, measured on the network harness and predicted by the cost model.

Every run is a cluster of ``cluster_net.NetCluster``: the scheduler and each worker a network host of their own,
links shaped by HTB (two rates: ``--links``, default 1gbit and 100mbit), the client one more host. Three parts:

- ``--calibrate``: the cost model's constants (``cost_model.Constants``) measured on this machine — per-chunk
  kernel times on one worker, the scheduler's / worker's / client's CPU per task from 1,000 trivial tasks, each
  method's fixed cost (its fit of a one-chunk store), a sync step, an actor call between two workers, a
  shaped link's throughput — written to
  ``benchmarks/constants.json``;
- scaling (the default): strong (total rows fixed: ``--rows``) and weak (rows per worker fixed:
  ``--rows-per-worker``) runs with 1, 2, 4, 8 workers at each link rate, every worker host a CPU quota of
  ``--worker-cpus`` cores, for regression, PCA (tall, and wide: ``--wide-features`` columns, where the tree's
  partial results are large), KMeans, the three SGD modes and the fused search; measured wall time (best of
  ``--repeat``) beside the model's prediction, per-worker CPU seconds and the scheduler's;
- ``--straggler``: every host ``--worker-cpus`` per thread, then one worker's CPU quota cut to ``--quota``, or
  its link slowed by ``--straggler-ms``, and an uneven 1 / 2 / 4-thread cluster: every method
  (``--straggler-epochs`` epochs of SGD), with the seconds workers sat idle out of chunk tasks while another
  still had one to start; sync SGD before and after its balancing (``sgd/_balance.py``), the rest as dask
  schedules them.

What 2 cores can show: every process of the cluster shares this VM's 2 CPUs, so past 2 workers more workers
only split the same CPU (the model's ``cpu`` term says so, and the measured per-worker CPU seconds fall as the
wall time does not). What they cannot: speed-up past 2, or the scheduler as a bottleneck at hundreds of
workers; those rows of the README come from the model alone (``cost_model.project``), its constants measured
here.

    python benchmarks/bench_scale.py --calibrate [--calibrate-search] [--calibrate-quota --worker-cpus 0.2]
    python benchmarks/bench_scale.py [--quick] [--links 1gbit,100mbit] [--workers 1,2,4,8] [--repeat 2]
    python benchmarks/bench_scale.py --straggler [--quota 0.25]

Needs root (the harness). Data under ``benchmarks/data/``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_regression import DATA, print_table  # noqa: E402
from cluster_net import NetCluster, link_test, parse_rate  # noqa: E402
from cost_model import (  # noqa: E402
    Cluster,
    Constants,
    Workload,
    dominant,
    predict,
    project,
    under_load,
    under_quota,
    worker_cpu,
)

D = 32
CHUNK = 250_000
PREFIX = {"regression": "block_moments", "kmeans_init": "candidate_block", "lloyd": "lloyd_block",
          "sgd_local": "local_block", "split": "split_block", "search": "fused_block"}
SEARCH = {"candidates": 4, "folds": 2, "epochs": 1}  # the search: 4 candidates x 2 folds, 1 round (+ scoring)
COMBINE = {"regression": "combine_moments", "kmeans_init": "combine_candidates", "lloyd": "combine_lloyd"}
SGD = {"sgd-local": {"mode": "local", "rounds": 1, "batch_size": 500, "eta0": 0.01},
       "sgd-sync": {"mode": "sync", "epochs": 1, "batch_size": 2000, "eta0": 0.1},
       "sgd-async": {"mode": "async", "epochs": 1, "batch_size": 2000, "eta0": 0.02, "push_every": 4}}


# -- data -----------------------------------------------------------------------------------------------------
def store(rows: int, features: int = D, chunk_rows: int = CHUNK, client: Any = None) -> Path:
    """A planted-logistic store (X float64, y 0/1), made once under benchmarks/data."""
    from scaleml_dask.io.synthetic import make_logistic

    path = (DATA / f"scale_{rows}_{features}_{chunk_rows}.zarr").resolve()
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        make_logistic(path, rows, features, chunk_rows=chunk_rows, seed=7, client=client)
    return path


def fit(algorithm: str, path: Path, epochs: int = 1) -> Any:
    import scaleml_dask as sm

    if algorithm == "regression":
        return sm.LinearRegression().fit(path)
    if algorithm == "pca":
        return sm.PCA(n_components=8).fit(path)
    if algorithm == "kmeans":
        return sm.KMeans(20, max_iter=3, tol=0.0, random_state=0).fit(path)
    if algorithm == "search":
        from scaleml_dask.model_selection import GridSearchCV

        grid = {"alpha": [1e-5, 1e-4], "eta0": [0.003, 0.01]}
        return GridSearchCV(sm.SGDClassifier(mode="local", rounds=SEARCH["epochs"] * epochs, batch_size=500,
                                             classes=[0.0, 1.0], random_state=0), grid, cv=SEARCH["folds"],
                            refit=False).fit(path)
    length = {"rounds": epochs} if algorithm == "sgd-local" else {"epochs": epochs}
    return sm.SGDClassifier(classes=[0.0, 1.0], random_state=0, **{**SGD[algorithm], **length}).fit(path)


def warm() -> None:
    """Import the libraries and load the compiled kernels in this process (run on every worker first)."""
    import dask

    import scaleml_dask as sm

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2000, 4)), (rng.random(2000) < 0.5).astype(float)
    with dask.config.set(scheduler="threads"):
        sm.LinearRegression().fit(X, y)
        sm.KMeans(2, max_iter=2, random_state=0).fit(X)
        sm.SGDClassifier(mode="local", classes=[0.0, 1.0], rounds=1).fit(X, y)


# -- measuring --------------------------------------------------------------------------------------------------
class Meter:
    """Wall time and CPU seconds per host (workers, scheduler, this client) of one call."""

    def __init__(self, nc: NetCluster) -> None:
        self.nc = nc

    def __call__(self, fn: Any) -> dict[str, Any]:
        c0, p0 = self.nc.cpu_seconds(), time.process_time()
        t = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t
        c1, p1 = self.nc.cpu_seconds(), time.process_time()
        cpu = {h: c1[h] - c0[h] for h in c1 if h in c0}
        return {"seconds": wall, "cpu": cpu, "client cpu": p1 - p0, "result": out}


def best_of(meter: Meter, fn: Any, repeat: int) -> dict[str, Any]:
    runs = [meter(fn) for _ in range(repeat)]
    return min(runs, key=lambda r: r["seconds"])


def _noop(i: int) -> int:
    return i


def idle_while_queued(ts: list[dict], prefix: str) -> float:
    """Seconds workers sat idle, out of chunk tasks (key prefix ``prefix``), while another worker was still to
    start one: for every such task, how long before its start each other worker had run its last."""
    from dask.utils import key_split

    runs: dict[str, list[tuple[float, float]]] = {}
    for t in ts:
        if key_split(t["key"]) == prefix:
            for s in t.get("startstops", ()):
                if s["action"] == "compute":
                    runs.setdefault(t["worker"], []).append((s["start"], s["stop"]))
    last = {w: max(e for _, e in v) for w, v in runs.items()}
    return sum(max(0.0, s - last[o]) for w, v in runs.items() for s, _ in v for o in last if o != w)


def _durations(ts: list[dict]) -> dict[str, list[float]]:
    from dask.utils import key_split

    out: dict[str, list[float]] = {}
    for t in ts:
        for s in t.get("startstops", ()):
            if s["action"] == "compute":
                out.setdefault(key_split(t["key"]), []).append(s["stop"] - s["start"])
    return out


# -- calibration ------------------------------------------------------------------------------------------------
def calibrate(args: argparse.Namespace) -> Constants:
    """Every constant of the cost model, measured (module docstring)."""
    import dask
    from distributed import get_task_stream

    import scaleml_dask as sm
    from scaleml_dask.kmeans import reduce_candidates
    from scaleml_dask.sgd._blocks import ParameterServer, Problem
    from scaleml_dask.sgd._kernels import init_optimizer

    kernel, comb, notes, fixed = {}, {}, {}, {}
    rows = args.calib_rows
    with NetCluster(1, rate=None) as nc, nc.client.as_current():
        c = nc.client
        c.run(warm)
        warm()
        path = store(rows, client=c)
        wide = store(args.wide_rows, args.wide_features, args.wide_chunk, client=c)
        # the fixed cost of each method: its whole fit on a one-chunk store (median of 5, after a first fit)
        for method in ("regression", "pca", "kmeans", "sgd-local", "sgd-sync", "sgd-async", "search", "pca-wide"):
            tiny = store(2000, args.wide_features if method == "pca-wide" else D, 2000, client=c)
            base = method.replace("-wide", "")
            fit(base, tiny)
            fixed[method] = statistics.median(Meter(nc)(lambda q=tiny, b=base: fit(b, q))["seconds"]
                                              for _ in range(5))
        # the CPU per task of scheduler, worker and client
        m = 1000
        r = Meter(nc)(lambda: dask.compute(*[dask.delayed(_noop, pure=False)(i) for i in range(m)]))
        sched = r["cpu"]["sched"] / m
        worker = r["cpu"]["w0"] / m
        client = r["client cpu"] / m
        # per-chunk kernel times (and combines), page cache warm: a pass first, then the timed one
        for name, call in (("regression", lambda: sm.LinearRegression().fit(path)),
                           ("wide", lambda: sm.PCA(n_components=8).fit(wide)),
                           ("kmeans", lambda: sm.KMeans(20, max_iter=3, tol=0.0, random_state=0).fit(path)),
                           ("sgd_local", lambda: fit("sgd-local", path)),
                           ("search", lambda: fit("search", path))):
            call()
            with get_task_stream() as ts:
                call()
            dur = _durations(ts.data)
            if name == "wide":
                kernel["moments_wide"] = statistics.median(dur["block_moments"])
                comb["moments_wide"] = statistics.median(dur.get("combine_moments", [0.0]))
                continue
            if name == "search":  # its passes differ (train and score, the last scores only): their mean
                kernel["search"] = statistics.mean(dur[PREFIX["search"]])
                continue
            for key, prefix in PREFIX.items():
                if prefix in dur and key != "search":
                    kernel["moments" if key == "regression" else key] = statistics.median(dur[prefix])
            for key, prefix in COMBINE.items():
                if prefix in dur:
                    comb["moments" if key == "regression" else key] = statistics.median(dur[prefix])
        # sync SGD: one epoch's time from fits of 1 and 2 epochs (the persist pass cancels out); ψ is what a
        # step costs beyond its blocks' gradients
        sync, sync_cpu = {}, {}
        for epochs in (1, 2, 1, 2):
            with get_task_stream() as ts:
                r = Meter(nc)(lambda e=epochs: sm.SGDClassifier(classes=[0.0, 1.0], random_state=0,
                                                                **{**SGD["sgd-sync"], "epochs": e}).fit(path))
                sync.setdefault(epochs, []).append(r["seconds"])
                sync_cpu.setdefault(epochs, []).append(r["cpu"]["w0"])
            dur = _durations(ts.data)
            kernel["split"] = statistics.median(dur["split_block"])
        chunks = -(-rows // CHUNK)
        steps = -(-int(CHUNK * 0.99) // SGD["sgd-sync"]["batch_size"])
        kernel["sgd_grad"] = statistics.median(dur["sync_gradients"]) / chunks
        epoch = min(sync[2]) - min(sync[1])
        step = epoch / steps - chunks * kernel["sgd_grad"]
        # the worker's CPU per step beyond its blocks' gradients (the weights in, the gradients out)
        sync_task = (min(sync_cpu[2]) - min(sync_cpu[1])) / steps - chunks * kernel["sgd_grad"]
        # the client's reduction of the k-means|| candidates, per candidate
        cands = 1 + 2 * 20 * 5
        rng = np.random.default_rng(0)
        from scaleml_dask._kmeans_kernels import CandidatePart

        part = CandidatePart(rng.normal(size=(cands * chunks, D)), rng.random(cands * chunks) + 0.5, 0.0)
        t = time.perf_counter()
        reduce_candidates(None, part.x, part.weights, 20, np.random.RandomState(0))
        kmeans_client = (time.perf_counter() - t) / (cands * chunks)
    # across two hosts: an actor call, the server's start, shaped links
    with NetCluster(2, rate=None) as nc, nc.client.as_current():
        c = nc.client
        c.run(warm)
        problem = Problem("log_loss", "l2", 1e-4, True, "adam", 0.02, 0.5, 2000, np.array([0.0, 1.0]), 0.01, 0,
                          None, 0.25, "calib")
        W = np.zeros((D + 1, 1))
        server = c.submit(ParameterServer, W, init_optimizer("adam", W.shape), problem, 8, actor=True,
                          workers=[nc.worker_address(1)], pure=False).result()
        call = c.submit(_actor_calls, server, 200, workers=[nc.worker_address(0)], pure=False).result()
        local = c.submit(_actor_calls, server, 200, workers=[nc.worker_address(1)], pure=False).result()
        push = _push_cost(problem, W)
        rates = {}
        for rate in ("1gbit", "100mbit"):
            for i in range(2):
                nc.set_rate(i, rate)
            nc.set_rate(None, rate)
            res = link_test(nc, nbytes=int(parse_rate(rate) / 8 * 2))
            rates[rate] = res["bits_per_s"] / parse_rate(rate)
    notes["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    notes["conditions"] = args.conditions
    notes["link_efficiency"] = json.dumps(rates)
    notes["command"] = "python benchmarks/bench_scale.py --calibrate"
    return Constants(kernel_s=kernel, combine_s=comb, fixed_s=fixed, worker_task_s=worker,
                     scheduler_task_s=sched, client_task_s=client, step_s=max(step, 0.0),
                     link_efficiency=statistics.mean(rates.values()), async_call_s=call, async_local_call_s=local,
                     async_server_s=push + worker, kmeans_client_s=kmeans_client, sync_task_s=max(sync_task, worker),
                     cores=float(os.cpu_count() or 1), notes=notes)


def calibrate_search(args: argparse.Namespace, k: Constants) -> Constants:
    """The search's constants alone (its fixed cost and fused task per chunk), added to ``k``."""
    from distributed import get_task_stream

    with NetCluster(1, rate=None) as nc, nc.client.as_current():
        nc.client.run(warm)
        tiny, path = store(2000, D, 2000, client=nc.client), store(args.calib_rows, client=nc.client)
        fit("search", tiny)
        fixed = statistics.median(Meter(nc)(lambda: fit("search", tiny))["seconds"] for _ in range(5))
        fit("search", path)
        with get_task_stream() as ts:
            fit("search", path)
        kernel = statistics.mean(_durations(ts.data)[PREFIX["search"]])
    notes = {**k.notes, "search": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}, {args.conditions}"}
    return Constants(**{**asdict(k), "kernel_s": {**k.kernel_s, "search": kernel},
                        "fixed_s": {**k.fixed_s, "search": fixed}, "notes": notes})


def calibrate_quota(args: argparse.Namespace, k: Constants) -> Constants:
    """φ, added to ``k``: a worker's CPU seconds for the same fits under a quota of ``--worker-cpus`` over
    without one (regression, KMeans, SGD local and sync on the calibration store; the median of their ratios),
    and the wide PCA's own φ (PCA on a calibration store of ``--wide-features`` columns, 4 chunks). Noted beside
    them, not used: the wide kernel by the worker's CPU seconds (PCA on 16 wide chunks minus 4, over the 12
    between) against its task duration, the check that a wide chunk costs no CPU outside its task."""
    with NetCluster(1, rate=None) as nc, nc.client.as_current():
        nc.client.run(warm)
        path = store(args.calib_rows, client=nc.client)
        wide = store(4 * args.wide_chunk, args.wide_features, args.wide_chunk, client=nc.client)
        wide16 = store(16 * args.wide_chunk, args.wide_features, args.wide_chunk, client=nc.client)
        fits = {m: functools.partial(fit, m, path) for m in ("regression", "kmeans", "sgd-local", "sgd-sync")}
        fits["pca-wide"] = functools.partial(fit, "pca", wide)
        fits["pca-wide-16"] = functools.partial(fit, "pca", wide16)
        for f in fits.values():
            f()
        free = {m: min(Meter(nc)(f)["cpu"]["w0"] for _ in range(3)) for m, f in fits.items()}
        wide_cpu = (free.pop("pca-wide-16") - free["pca-wide"]) / 12 - k.worker_task_s
        fits.pop("pca-wide-16")
        nc.workers[0].cgroup.set_cpu_quota(args.worker_cpus or 0.2)
        ratio = {m: min(Meter(nc)(f)["cpu"]["w0"] for _ in range(3)) / free[m] for m, f in fits.items()}
    wide_ratio = ratio.pop("pca-wide")
    notes = {**k.notes, "quota": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}, quota "
                                 f"{args.worker_cpus or 0.2} core, ratios {[round(r, 3) for r in ratio.values()]}, "
                                 f"wide {wide_ratio:.3f}; wide kernel by CPU {wide_cpu * 1e3:.1f} ms (by task "
                                 f"duration {k.kernel_s['moments_wide'] * 1e3:.1f} ms), {args.conditions}"}
    return Constants(**{**asdict(k), "quota_cpu_factor": statistics.median(ratio.values()),
                        "quota_cpu_factor_wide": wide_ratio, "notes": notes})


def _actor_calls(server: Any, n: int) -> float:
    """Mean round trip of ``n`` pulls from this worker to the actor."""
    server.pull().result()
    t = time.perf_counter()
    for _ in range(n):
        server.pull().result()
    return (time.perf_counter() - t) / n


def _push_cost(problem: Any, W: np.ndarray) -> float:
    """The parameter server's own work for one push (decompress + optimizer step), in this process."""
    from scaleml_dask.sgd._blocks import ParameterServer
    from scaleml_dask.sgd._kernels import init_optimizer

    s = ParameterServer(W, init_optimizer("adam", W.shape), problem, 1 << 30)
    msg = (None, W.copy())
    s.push(msg, 0, 10)
    t = time.perf_counter()
    for _ in range(1000):
        s.push(msg, s.version, 10)
    return (time.perf_counter() - t) / 1000


# -- scaling ------------------------------------------------------------------------------------------------------
def scaling(args: argparse.Namespace, k: Constants) -> list[dict]:
    """Strong and weak scaling at every link rate: measured (best of ``repeat``) against predicted."""
    rows = []
    for p in args.workers:
        quota = {i: args.worker_cpus for i in range(p)} if args.worker_cpus else None
        with NetCluster(p, rate=args.links[0], cpu_quota=quota) as nc, nc.client.as_current():
            nc.client.run(warm)
            meter = Meter(nc)
            for link in args.links:
                for h in range(-1, p):
                    nc.set_rate(None if h < 0 else h, link)
                for kind, n in (("strong", args.rows), ("weak", args.rows_per_worker * p)):
                    path = store(n, client=nc.client)
                    for alg in args.methods:
                        if alg == "pca-wide":
                            target = store(args.wide_rows if kind == "strong" else args.wide_rows * p // 4,
                                           args.wide_features, args.wide_chunk, client=nc.client)
                            w = Workload("pca", _rows(target), args.wide_features, args.wide_chunk, fixed="pca-wide")
                        else:
                            target = path
                            w = Workload(alg, n, D, CHUNK, **(SEARCH if alg == "search" else {}))

                        def call(a: str = "pca" if alg == "pca-wide" else alg, q: Path = target) -> Any:
                            return fit(a, q)

                        call()  # page cache warm, first-use costs paid
                        r = best_of(meter, call, args.repeat)
                        terms = predict(w, Cluster(p, link_bps=parse_rate(link), worker_cpus=args.worker_cpus),
                                        _for({"method": alg}, k))
                        workers = [r["cpu"].get(f"w{i}", float("nan")) for i in range(p)]
                        rows.append({"method": alg, "scaling": kind, "workers": p, "link": link, "rows": w.rows,
                                     "worker CPUs": args.worker_cpus,
                                     "workload": asdict(w), "terms": terms,
                                     "seconds": r["seconds"], "predicted": terms["total"],
                                     "pred / meas": terms["total"] / r["seconds"], "dominant": dominant(terms),
                                     "worker CPU s (mean)": float(np.mean(workers)),
                                     "scheduler CPU s": r["cpu"].get("sched", float("nan")),
                                     "client CPU s": r["client cpu"]})
                        print(rows[-1], flush=True)
    return rows


def _for(row: dict, k: Constants) -> Constants:
    """The constants for a row: the wide PCA's kernel is ``moments_wide``, with its own φ."""
    if row["method"] != "pca-wide":
        return k
    return Constants(**{**asdict(k), "kernel_s": {**k.kernel_s, "moments": k.kernel_s["moments_wide"]},
                        "combine_s": {**k.combine_s, "moments": k.combine_s.get("moments_wide", 0.0)},
                        "quota_cpu_factor": k.quota_cpu_factor_wide or k.quota_cpu_factor})


def markdown(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of ``rows`` (floats to 3 significant digits)."""
    def cell(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _rows(path: Path) -> int:
    import zarr

    return zarr.open_group(str(path), mode="r")["X"].shape[0]


# -- stragglers -----------------------------------------------------------------------------------------------------
def stragglers(args: argparse.Namespace) -> list[dict]:
    """Each method on a balanced cluster, then with a straggler / uneven threads, before and after balancing."""
    from distributed import get_task_stream

    import scaleml_dask.sgd._balance as balance

    rows = []
    path = None
    setups = [("2 workers, no straggler", {"n_workers": 2}, None),
              (f"2 workers, w1 at {args.quota:g} CPU", {"n_workers": 2}, args.quota),
              (f"2 workers, w1's link +{args.straggler_ms:g} ms", {"n_workers": 2,
                                                                   "latency_ms": {1: args.straggler_ms}}, None),
              ("3 workers of 1 / 2 / 4 threads", {"n_workers": 3, "threads": [1, 2, 4]}, None)]
    for label, kw, quota in setups:
        threads = kw.get("threads", [1] * kw["n_workers"])
        base = {i: args.worker_cpus * t for i, t in enumerate(threads)} if args.worker_cpus else None
        with NetCluster(rate="1gbit", cpu_quota=base, **kw) as nc, nc.client.as_current():
            path = store(args.rows, client=nc.client)
            nc.client.run(warm)
            if quota is not None:
                nc.workers[1].cgroup.set_cpu_quota(quota)
            meter = Meter(nc)
            for alg in (a for a in args.methods if a not in ("pca-wide", "search")):
                # only sync SGD has a policy of this project's to compare; the rest is dask's scheduling
                for policy in ("before", "after") if alg == "sgd-sync" else ("dask",):
                    balance.ENABLED = policy != "before"

                    def run(a: str = alg, q: Path = path) -> Any:
                        return fit(a, q, epochs=args.straggler_epochs)

                    run()
                    runs = []
                    for _ in range(args.repeat):
                        with get_task_stream() as ts:
                            runs.append((meter(run), ts.data))
                    r, stream = min(runs, key=lambda x: x[0]["seconds"])
                    per = {}
                    for t in stream:
                        per[t["worker"]] = per.get(t["worker"], 0) + 1
                    cpu = ", ".join(f"{h} {v:.1f}" for h, v in sorted(r["cpu"].items()) if h.startswith("w"))
                    kernel = {"regression": "block_moments", "pca": "block_moments", "kmeans": "lloyd_block",
                              "sgd-local": "local_block", "search": PREFIX["search"]}.get(alg)
                    rows.append({"method": alg, "setup": label, "policy": policy, "seconds": r["seconds"],
                                 "idle while queued s": idle_while_queued(stream, kernel) if kernel else None,
                                 "worker CPU s": cpu, "tasks per worker": ", ".join(
                                     f"w{i} {per.get(nc.worker_address(i), 0)}" for i in range(nc.n_workers))})
                    print(rows[-1], flush=True)
    balance.ENABLED = True
    return rows


def accuracy(rows: list[dict], column: str = "pred / meas") -> list[dict]:
    """Per method: how many runs the model predicted within 25 % (``column``: predicted / measured), overall and
    on at most 2 workers (what the 2 cores can host without contention), the median and the worst ratio."""
    out = []
    for m in dict.fromkeys(r["method"] for r in rows):
        ratios = [r[column] for r in rows if r["method"] == m]
        small = [r[column] for r in rows if r["method"] == m and r["workers"] <= 2]
        out.append({"method": m, "runs": len(ratios),
                    "within 25 %": f"{sum(abs(x - 1) <= 0.25 for x in ratios)} / {len(ratios)}",
                    "within 25 %, P ≤ 2": f"{sum(abs(x - 1) <= 0.25 for x in small)} / {len(small)}",
                    "median pred / meas": statistics.median(ratios),
                    "worst pred / meas": max(ratios, key=lambda x: abs(x - 1))})
    return out


def projections(k: Constants) -> None:
    """Each method from 1 to 1,000 workers (a core per worker thread, 10 Gbit/s links), by the model alone."""
    for w in (Workload("regression", 1_000_000_000, D), Workload("kmeans", 1_000_000_000, D),
              Workload("sgd-sync", 1_000_000_000, D), Workload("sgd-local", 1_000_000_000, D),
              Workload("sgd-async", 1_000_000_000, D), Workload("search", 1_000_000_000, D, **SEARCH),
              Workload("pca", 128_000_000, 256, 32_000, fixed="pca-wide")):
        print(f"\nprojection: {w.method}, {w.rows:,} x {w.features}, chunks of {w.chunk_rows:,}, 10 Gbit/s\n")
        print(markdown(project(w, _for({"method": w.fixed or w.method}, k)),
                       ["workers", "seconds", "speed-up", "efficiency", "dominant"]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibrate", action="store_true", help="measure the cost model's constants")
    ap.add_argument("--calibrate-search", action="store_true", help="measure the search's constants only")
    ap.add_argument("--calibrate-quota", action="store_true",
                    help="measure φ only: a worker's CPU per fit under --worker-cpus over without a quota")
    ap.add_argument("--straggler", action="store_true", help="the straggler / uneven-worker table")
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 and 2 workers (a smoke run)")
    ap.add_argument("--links", default="1gbit,100mbit")
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--rows", type=int, default=4_000_000, help="strong scaling: total rows")
    ap.add_argument("--rows-per-worker", type=int, default=1_000_000, help="weak scaling: rows per worker")
    ap.add_argument("--calib-rows", type=int, default=2_000_000)
    ap.add_argument("--wide-features", type=int, default=256)
    ap.add_argument("--wide-chunk", type=int, default=32_000)
    ap.add_argument("--wide-rows", type=int, default=512_000)
    ap.add_argument("--methods", default="regression,pca,pca-wide,kmeans,sgd-local,sgd-sync,sgd-async,search")
    ap.add_argument("--worker-cpus", type=float, default=None,
                    help="each worker host's CPU quota (cores; per thread in --straggler): hosts of a fraction of "
                         "a core, so that 8 of them fit a shared 2-core machine")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--quota", type=float, default=0.25, help="the CPU straggler's quota (CPUs)")
    ap.add_argument("--straggler-ms", type=float, default=5.0, help="the link straggler's added latency")
    ap.add_argument("--straggler-epochs", type=int, default=3, help="SGD epochs (rounds) in the straggler table")
    ap.add_argument("--conditions", default="", help="what else ran (for constants.json)")
    ap.add_argument("--out", help="also write the rows as JSON here")
    ap.add_argument("--table", help="print the scaling table of rows saved by --out, predicted anew from "
                                    "constants.json (no runs)")
    args = ap.parse_args(argv)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    args.links = args.links.split(",")
    args.workers = [int(x) for x in args.workers.split(",")]
    args.methods = args.methods.split(",")
    if args.quick:
        args.rows, args.rows_per_worker, args.calib_rows, args.repeat = 1_000_000, 500_000, 1_000_000, 1
        args.workers, args.wide_rows = [w for w in args.workers if w <= 2], 128_000
    if args.calibrate_quota:
        k = calibrate_quota(args, Constants.load())
        k.save()
        print(json.dumps(asdict(k), indent=1))
        return
    if args.calibrate or args.calibrate_search:
        k = calibrate_search(args, Constants.load()) if args.calibrate_search else calibrate(args)
        k.save()
        print(json.dumps(asdict(k), indent=1))
        return
    if args.table:
        k = Constants.load()
        rows = json.loads(Path(args.table).read_text())
        for r in rows:
            w, kr = Workload(**r["workload"]), _for(r, k)
            cl = Cluster(r["workers"], link_bps=parse_rate(r["link"]), worker_cpus=r.get("worker CPUs"))
            t = predict(w, cl, kr)
            load = r["worker CPU s (mean)"] * r["workers"] / worker_cpu(w, cl, kr)
            t2 = predict(w, cl, under_load(under_quota(kr, cl), load))  # φ is in the calibration's CPU
            r.update({"predicted": t["total"], "pred / meas": t["total"] / r["seconds"], "dominant": dominant(t),
                      "CPU / calibrated": load, "predicted at run's CPU": t2["total"],
                      "pred / meas at run's CPU": t2["total"] / r["seconds"], "dominant at run's CPU": dominant(t2)})
        print(markdown(rows, ["method", "scaling", "workers", "link", "rows", "seconds", "predicted", "pred / meas",
                              "dominant", "CPU / calibrated", "predicted at run's CPU", "pred / meas at run's CPU",
                              "dominant at run's CPU", "worker CPU s (mean)", "scheduler CPU s", "client CPU s"]))
        print()
        print(markdown(accuracy(rows), ["method", "runs", "within 25 %", "within 25 %, P ≤ 2", "median pred / meas",
                                        "worst pred / meas"]))
        print()
        print(markdown(accuracy(rows, "pred / meas at run's CPU"), [
            "method", "runs", "within 25 %", "within 25 %, P ≤ 2", "median pred / meas", "worst pred / meas"]))
        projections(k)
        return
    if args.straggler:
        rows = stragglers(args)
        print_table("stragglers and uneven workers (sync SGD before / after its balancing; the rest: dask's "
                    "scheduling)", [{**r, "method": f"{r['method']} | {r['setup']} | {r['policy']}"}
                                             for r in rows],
                    ["seconds", "idle while queued s", "worker CPU s", "tasks per worker"])
    else:
        k = Constants.load()
        rows = scaling(args, k)
        print_table("scaling: measured against the cost model", [
            {**r, "method": f"{r['method']} {r['scaling']} P={r['workers']} {r['link']}"} for r in rows],
            ["seconds", "predicted", "pred / meas", "dominant", "worker CPU s (mean)", "scheduler CPU s"])
        projections(k)
    if args.out:
        Path(args.out).write_text(json.dumps([{k: v for k, v in r.items() if k != "result"} for r in rows],
                                             indent=1, default=str))


if __name__ == "__main__":
    main()
