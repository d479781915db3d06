"""Scaling past one machine, measured on the network harness and predicted by the cost model.

Every run is a cluster of ``cluster_net.NetCluster``: the scheduler and each worker a network host of their own,
links shaped by HTB (two rates: ``--links``, default 1gbit and 100mbit), the client one more host. Three parts:

- ``--calibrate``: the cost model's constants (``cost_model.Constants``) measured on this machine — per-chunk
  kernel times on one unthrottled worker (as the worker's CPU: each fit's task durations scaled by its CPU over
  them, from fits of C chunks and fewer), the scheduler's / worker's / client's CPU per task from 1,000 trivial
  tasks, an idle worker's own CPU, each method's fixed cost (its fit of a one-chunk store), a sync step, an
  actor call between two workers, a shaped link's throughput, the speed probe (``reference``) — written to
  ``benchmarks/constants.json``; ``--calibrate-quota`` adds, under the quota ``--worker-cpus`` granted per
  ``--cfs-period-ms`` as in the runs, φ (the same fits' CPU over unthrottled), b (an idle worker's CPU) and
  the CFS burst β; ``--calibrate-contention`` κ(n), the moments kernel's CPU with n = 1–8 quota'd worker hosts
  busy at once (same quota and period); ``--calibrate-fixed`` the fixed costs alone;
- scaling (the default): strong (total rows fixed: ``--rows``) and weak (rows per worker fixed:
  ``--rows-per-worker``) runs with 1, 2, 4, 8 workers at each link rate, every worker host a CPU quota of
  ``--worker-cpus`` cores per ``--cfs-period-ms`` (default 5 ms: a quota'd host then runs as a uniformly
  slower machine, where the kernel's 100 ms lets a fit shorter than a few periods run unthrottled or wait out
  a period, at random: ``cluster_net``), for regression, PCA (tall, and wide: ``--wide-features`` columns,
  where the tree's partial results are large), KMeans, the three SGD modes and the fused search; measured wall
  time (best or median of ``--repeat``: ``--statistic``) beside the model's prediction, per-worker CPU seconds
  and the scheduler's, and the speed probe before each cell over the calibration's (this VM's CPU speed drifts
  over hours);
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

    python benchmarks/bench_scale.py --calibrate; then --calibrate-quota --worker-cpus 0.2;
    then --calibrate-contention --worker-cpus 0.2
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

import cost_model  # noqa: E402
from bench_regression import DATA, print_table  # noqa: E402
from cluster_net import CFS_PERIOD_MS, NetCluster, link_test, parse_rate  # noqa: E402
from cost_model import (  # noqa: E402
    Cluster,
    Constants,
    Workload,
    dominant,
    effective,
    predict,
    project,
    under_load,
    worker_cpu,
)

D = 32
CHUNK = 250_000
PREFIX = {"regression": "block_moments", "kmeans_init": "candidate_block", "lloyd": "lloyd_block",
          "sgd_local": "local_block", "split": "split_block", "search": "fused_block"}
FIXED_FITS = 21  # fits of a one-chunk store per fixed cost (their median)
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


def best_of(meter: Meter, fn: Any, repeat: int, statistic: str = "best") -> dict[str, Any]:
    """The fastest of ``repeat`` timed calls, or (``statistic="median"``) the median one (the upper median of an
    even number), with every call's seconds in ``runs s``."""
    runs = sorted((meter(fn) for _ in range(repeat)), key=lambda r: r["seconds"])
    pick = runs[0] if statistic == "best" else runs[len(runs) // 2]
    return {**pick, "runs s": [r["seconds"] for r in runs]}


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
def reference() -> dict[str, float]:
    """The speed probe: CPU seconds of two fixed Grams on one BLAS thread in this process (the wide PCA's
    32,000 × 258 and the tall one's 250,000 × 34; best of 3). Its ratio to the calibration's says whether this
    VM runs at the speed it was calibrated at (its CPU speed drifts over hours: benchmarks/cost_model.md)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    out = {}
    with threadpool_limits(1):
        for name, shape in (("wide", (32_000, 258)), ("tall", (250_000, 34))):
            A = rng.normal(size=shape)
            times = []
            for _ in range(3):
                t = time.thread_time()
                A.T @ A
                times.append(time.thread_time() - t)
            out[name] = min(times)
    return out


def _spin(cpu: float) -> float:
    """Wall seconds of ``cpu`` seconds of this thread's CPU work, started after 0.3 s idle (a fresh quota)."""
    time.sleep(0.3)
    t, c = time.perf_counter(), time.thread_time()
    while time.thread_time() - c < cpu:
        sum(range(1000))
    return time.perf_counter() - t


def _kernel_loop(path: str, seconds: float, start: float) -> list[float]:
    """From wall clock ``start``, for ``seconds``: read a chunk of ``path`` from the page cache and form its Gram
    (the moments kernel: ``_tsqr._raw_gram``), chunk after chunk; this process's CPU seconds per chunk."""
    import zarr
    from _floor import chunk_into_numpy

    from scaleml_dask._tsqr import _raw_gram
    from scaleml_dask.io import read

    g = zarr.open_group(path, mode="r")
    x, y = read.chunk_source(g["X"]), read.chunk_source(g["y"])
    while time.time() < start:
        time.sleep(0.005)
    out, i = [], 0
    while time.time() < start + seconds:
        c = time.process_time()
        _raw_gram(chunk_into_numpy(x, i % x.grid[0], "X"), chunk_into_numpy(y, i % x.grid[0], "y"))
        out.append(time.process_time() - c)
        i += 1
    return out


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
        idle = _idle_cpu(nc)
        fixed, fixed_worker = _fixed_costs(nc, args, idle)
        # the CPU per task of scheduler, worker and client
        m = 1000
        r = Meter(nc)(lambda: dask.compute(*[dask.delayed(_noop, pure=False)(i) for i in range(m)]))
        sched = r["cpu"]["sched"] / m
        worker = (r["cpu"]["w0"] - idle * r["seconds"]) / m
        client = r["client cpu"] / m
        # per-chunk kernel times (and combines), page cache warm: a pass first, then the timed one; each fit on
        # C chunks and on fewer, so that the task durations are turned into the worker's CPU the way it runs them:
        # r = (its CPU less its idle background and ω per task, more chunks less fewer) / (the same of the
        # durations), every kernel and combine of that fit r times its mean duration (r is a ratio of sums: the
        # mean is what adds up to the fit's CPU; the median left out the CPU of its longer tasks)
        small, wide4 = store(2 * CHUNK, client=c), store(4 * args.wide_chunk, args.wide_features, args.wide_chunk,
                                                          client=c)
        ratios = {}
        for name, call, big, few in (
                ("regression", lambda q: sm.LinearRegression().fit(q), path, small),
                ("wide", lambda q: sm.PCA(n_components=8).fit(q), wide, wide4),
                ("kmeans", lambda q: sm.KMeans(20, max_iter=3, tol=0.0, random_state=0).fit(q), path, small),
                ("sgd_local", lambda q: fit("sgd-local", q), path, small),
                ("search", lambda q: fit("search", q), path, small)):
            cpu_dur = []
            for q in (big, few):
                call(q)
                with get_task_stream() as ts:
                    r = Meter(nc)(functools.partial(call, q))
                d = _durations(ts.data)
                tasks = sum(len(v) for v in d.values())
                cpu_dur.append((r["cpu"]["w0"] - idle * r["seconds"] - tasks * worker, sum(map(sum, d.values()))))
                if q is big:
                    dur = d
            (cpu_b, dur_b), (cpu_s, dur_s) = cpu_dur
            ratios[name] = ratio = (cpu_b - cpu_s) / (dur_b - dur_s)
            if name == "wide":
                kernel["moments_wide"] = ratio * statistics.mean(dur["block_moments"])
                comb["moments_wide"] = ratio * statistics.mean(dur.get("combine_moments", [0.0]))
                continue
            if name == "search":  # its passes differ (train and score, the last scores only): the mean over them
                kernel["search"] = ratio * statistics.mean(dur[PREFIX["search"]])
                continue
            for key, prefix in PREFIX.items():
                if prefix in dur and key != "search":
                    kernel["moments" if key == "regression" else key] = ratio * statistics.mean(dur[prefix])
            for key, prefix in COMBINE.items():
                if prefix in dur:
                    comb["moments" if key == "regression" else key] = ratio * statistics.mean(dur[prefix])
        notes["cpu / duration"] = json.dumps({n: round(v, 3) for n, v in ratios.items()})
        # sync SGD: one epoch's time from fits of 1 and 2 epochs (the persist pass cancels out); ψ is what a
        # step costs beyond its blocks' gradients
        one, dur = _sync_step_costs(nc, path)
        kernel["split"] = statistics.median(dur["split_block"])
        chunks = -(-rows // CHUNK)
        steps = -(-int(CHUNK * 0.99) // SGD["sgd-sync"]["batch_size"])
        kernel["sgd_grad"] = statistics.median(dur["sync_gradients"]) / chunks
        step = one["seconds"] / steps - chunks * kernel["sgd_grad"]
        # the worker's CPU per step beyond its blocks' gradients (the weights in, the gradients out)
        sync_task = one["w0"] / steps - chunks * kernel["sgd_grad"]
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
        # the scheduler's and the client's CPU per sync step with 2 tasks a step against 1 (the first cluster):
        # what each further task of a step costs them, and the rest of a step
        two, _ = _sync_step_costs(nc, path)
        sync_cpu = {}
        for name, key in (("scheduler", "sched"), ("client", "client")):
            per_task = (two[key] - one[key]) / steps
            sync_cpu[name] = {"per_task": per_task, "per_step": one[key] / steps - per_task}
        notes["sync step cpu"] = json.dumps({"1 task": {n: one[n] / steps for n in ("sched", "client")},
                                             "2 tasks": {n: two[n] / steps for n in ("sched", "client")}})
        rates = {}
        for rate in ("1gbit", "100mbit"):
            for i in range(2):
                nc.set_rate(i, rate)
            nc.set_rate(None, rate)
            res = link_test(nc, nbytes=int(parse_rate(rate) / 8 * 2))
            rates[rate] = res["bits_per_s"] / parse_rate(rate)
    probe = reference()
    notes["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    notes["conditions"] = args.conditions
    notes["link_efficiency"] = json.dumps(rates)
    notes["command"] = "python benchmarks/bench_scale.py --calibrate"
    return Constants(kernel_s=kernel, combine_s=comb, fixed_s=fixed, worker_task_s=worker,
                     scheduler_task_s=sched, client_task_s=client, step_s=max(step, 0.0),
                     link_efficiency=statistics.mean(rates.values()), async_call_s=call, async_local_call_s=local,
                     async_server_s=push + worker, kmeans_client_s=kmeans_client, sync_task_s=max(sync_task, worker),
                     cores=float(os.cpu_count() or 1), reference_s=probe, worker_idle_cpu=idle,
                     fixed_worker_s=fixed_worker, sync_step_cpu=sync_cpu, notes=notes)


def _sync_step_costs(nc: NetCluster, path: Path) -> tuple[dict[str, float], dict[str, list[float]]]:
    """One sync SGD epoch on ``nc`` from fits of 1 and 2 epochs (the persisting pass cancels out; the least of
    2 fits each): its wall ``seconds`` and the CPU seconds of every host and the client (``client``); and the
    last fit's task durations."""
    from distributed import get_task_stream

    import scaleml_dask as sm

    runs: dict[int, list[dict]] = {}
    for epochs in (1, 2, 1, 2):
        with get_task_stream() as ts:
            r = Meter(nc)(lambda e=epochs: sm.SGDClassifier(classes=[0.0, 1.0], random_state=0,
                                                            **{**SGD["sgd-sync"], "epochs": e}).fit(path))
        runs.setdefault(epochs, []).append({"seconds": r["seconds"], "client": r["client cpu"], **r["cpu"]})
    out = {key: min(x[key] for x in runs[2]) - min(x[key] for x in runs[1]) for key in runs[1][0]}
    return out, _durations(ts.data)


def _idle_cpu(nc: NetCluster, seconds: float = 5.0) -> float:
    """b: worker 0's own CPU per second while idle (its event loop, heartbeats)."""
    c0 = nc.cpu_seconds()["w0"]
    time.sleep(seconds)
    return (nc.cpu_seconds()["w0"] - c0) / seconds


def _fixed_costs(nc: NetCluster, args: argparse.Namespace, idle: float) -> tuple[dict, dict]:
    """Each method's fixed cost: its whole fit on a one-chunk store (median of ``FIXED_FITS``, after a first
    fit: a single timing of a 20 ms fit moves by a few ms), and the worker CPU in it (less the idle background
    over the fit)."""
    fixed, worker = {}, {}
    for method in ("regression", "pca", "kmeans", "sgd-local", "sgd-sync", "sgd-async", "search", "pca-wide"):
        tiny = store(2000, args.wide_features if method == "pca-wide" else D, 2000, client=nc.client)
        base = method.replace("-wide", "")
        fit(base, tiny)
        runs = [Meter(nc)(functools.partial(fit, base, tiny)) for _ in range(FIXED_FITS)]
        fixed[method] = statistics.median(r["seconds"] for r in runs)
        worker[method] = max(0.0, statistics.median(r["cpu"]["w0"] - idle * r["seconds"] for r in runs))
    return fixed, worker


def calibrate_fixed(args: argparse.Namespace, k: Constants) -> Constants:
    """The fixed costs alone (wall and worker CPU), added to ``k``."""
    with NetCluster(1, rate=None) as nc, nc.client.as_current():
        nc.client.run(warm)
        fixed, worker = _fixed_costs(nc, args, _idle_cpu(nc))
    notes = {**k.notes, "fixed": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}, {args.conditions}"}
    return Constants(**{**asdict(k), "fixed_s": fixed, "fixed_worker_s": worker, "notes": notes})


def calibrate_search(args: argparse.Namespace, k: Constants) -> Constants:
    """The search's constants alone (its fixed cost and fused task per chunk), added to ``k``."""
    from distributed import get_task_stream

    with NetCluster(1, rate=None) as nc, nc.client.as_current():
        nc.client.run(warm)
        tiny, path = store(2000, D, 2000, client=nc.client), store(args.calib_rows, client=nc.client)
        fit("search", tiny)
        fixed = statistics.median(Meter(nc)(lambda: fit("search", tiny))["seconds"] for _ in range(FIXED_FITS))
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
    between) against its task duration, the check that a wide chunk costs no CPU outside its task. The CPU
    compared is the tasks': the worker's less its idle background b (CPU per second of an idle worker, measured
    first) over the fit's wall time. Then, under the quota, the stretch s and the burst β: one least-squares
    line wall = s c − β through busy stretches of c = 30–500 ms of CPU (3 of each), each after 0.3 s idle (CFS
    bandwidth control gives a host idle for a period its whole quota at once). s, the wall per CPU second, is
    the effective 1 / (q − b) every stretch of the model uses (``cost_model.quota_stretch``)."""
    with NetCluster(1, rate=None, cfs_period_ms=args.cfs_period_ms) as nc, nc.client.as_current():
        nc.client.run(warm)
        path = store(args.calib_rows, client=nc.client)
        wide = store(4 * args.wide_chunk, args.wide_features, args.wide_chunk, client=nc.client)
        wide16 = store(16 * args.wide_chunk, args.wide_features, args.wide_chunk, client=nc.client)
        fits = {m: functools.partial(fit, m, path) for m in ("regression", "kmeans", "sgd-local", "sgd-sync")}
        fits["pca-wide"] = functools.partial(fit, "pca", wide)
        fits["pca-wide-16"] = functools.partial(fit, "pca", wide16)
        for f in fits.values():
            f()
        # b: an idle worker's own CPU per second (event loop, heartbeats), part of its quota the tasks lack
        c0 = nc.cpu_seconds()["w0"]
        time.sleep(5.0)
        idle = (nc.cpu_seconds()["w0"] - c0) / 5.0

        def tasks_cpu(f: Any) -> float:  # the worker's CPU for a fit less its idle background over the fit
            r = Meter(nc)(f)
            return r["cpu"]["w0"] - idle * r["seconds"]

        free = {m: min(tasks_cpu(f) for _ in range(3)) for m, f in fits.items()}
        wide_cpu = (free.pop("pca-wide-16") - free["pca-wide"]) / 12 - k.worker_task_s
        fits.pop("pca-wide-16")
        q = args.worker_cpus or 0.2
        nc.workers[0].cgroup.set_cpu_quota(q)
        ratio = {m: min(tasks_cpu(f) for _ in range(3)) / free[m] for m, f in fits.items()}
        # the stretch and β: one least-squares line wall = s c − β through busy stretches of c CPU seconds,
        # each after an idle spell; s is the wall per CPU second the quota leaves the tasks (1 / (q − b) if b
        # were all a worker's background costs), β what a fresh quota's first period saves
        spins = [0.03, 0.06, 0.12, 0.25, 0.5] * 3
        walls = [nc.client.submit(_spin, c, pure=False).result() for c in spins]
        slope, intercept = np.polyfit(spins, walls, 1)
    wide_ratio = ratio.pop("pca-wide")
    notes = {**k.notes, "quota": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}, quota "
                                 f"{args.worker_cpus or 0.2} core per {args.cfs_period_ms:g} ms, ratios "
                                 f"{[round(r, 3) for r in ratio.values()]}, "
                                 f"wide {wide_ratio:.3f}; wide kernel by CPU {wide_cpu * 1e3:.1f} ms (by task "
                                 f"duration {k.kernel_s['moments_wide'] * 1e3:.1f} ms), {args.conditions}"}
    notes["quota_burst"] = "CPU ms: wall ms " + ", ".join(f"{c * 1e3:.0f}: {w * 1e3:.0f}"
                                                          for c, w in zip(spins, walls, strict=True))
    notes["quota_slope"] = (f"wall per CPU second {slope:.3f} (1 / (q − b) = {1 / (q - idle):.3f}), "
                            f"β {-intercept * 1e3:.1f} ms")
    return Constants(**{**asdict(k), "quota_cpu_factor": statistics.median(ratio.values()),
                        "quota_cpu_factor_wide": wide_ratio, "quota_burst_s": float(-intercept),
                        "quota_slope": float(slope), "quota_calibrated": q, "worker_idle_cpu": idle,
                        "notes": notes})


def calibrate_contention(args: argparse.Namespace, k: Constants) -> Constants:
    """κ(n), added to ``k``: the worker's CPU per moments task (a chunk read from the page cache and its Gram)
    with n = 1, 2, 4, 8 worker hosts of ``--worker-cpus`` each running it at once on this machine's shared
    cores, over with one; for the tall chunks (250,000 × 32) and the wide (32,000 × 256). Independent of the
    scaling runs: no fit, no scheduler work, only the kernel in quota'd worker processes."""
    q = args.worker_cpus or 0.2
    tall = store(4 * CHUNK)
    wide = store(4 * args.wide_chunk, args.wide_features, args.wide_chunk)
    out: dict[str, dict[str, float]] = {}
    with NetCluster(8, rate=None, cpu_quota=dict.fromkeys(range(8), q), cfs_period_ms=args.cfs_period_ms) as nc, \
            nc.client.as_current():
        c = nc.client
        c.run(warm)
        for name, path in (("tall", tall), ("wide", wide)):
            per = {}
            for n in (1, 2, 4, 8, 1):
                start = time.time() + 1.0
                futs = [c.submit(_kernel_loop, str(path), args.contention_seconds, start, pure=False,
                                 workers=[nc.worker_address(i)]) for i in range(n)]
                # the first iteration of each process warms it up (its first read, its caches)
                per.setdefault(n, []).extend(x for f in futs for x in f.result()[1:])
            base = statistics.median(per[1])
            out[name] = {str(n): statistics.median(v) / base for n, v in per.items()}
            out[name]["cpu per task at n = 1 (ms)"] = base * 1e3
        # the SGD kernels (SGD local's block, the search's fused block: mini-batches of shuffled rows) on their
        # own: their chunk tasks, taken from a fit's graph, run again and again in each busy host
        for name, method in (("sgd_local", "sgd-local"), ("search", "search")):
            tasks = _chunk_tasks(method, tall, PREFIX[name])
            per = {}
            for n in (1, 2, 4, 8, 1):
                start = time.time() + 1.0
                futs = [c.submit(_task_loop, tasks[i % len(tasks)], args.contention_seconds, start, pure=False,
                                 workers=[nc.worker_address(i)]) for i in range(n)]
                per.setdefault(n, []).extend(x for f in futs for x in f.result()[1:])
            base = statistics.median(per[1])
            out[name] = {str(n): statistics.median(v) / base for n, v in per.items()}
            out[name]["cpu per task at n = 1 (ms)"] = base * 1e3
    notes = {**k.notes, "contention": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}, quota {q} core "
                                      f"per {args.cfs_period_ms:g} ms per host, {args.contention_seconds:g} s per n, "
                                      f"{json.dumps(out)}, {args.conditions}"}
    strip = lambda d: {n: v for n, v in d.items() if n.isdigit()}  # noqa: E731
    return Constants(**{**asdict(k), "contention": strip(out["tall"]), "contention_wide": strip(out["wide"]),
                        "contention_kernels": {n: strip(out[n]) for n in ("sgd_local", "search")},
                        "notes": notes})


def _chunk_tasks(method: str, path: Path, prefix: str) -> list[bytes]:
    """The chunk tasks (key prefix ``prefix``) of the first such pass of ``method``'s fit of ``path``, each
    pickled with its graph as ``(graph, key)``: caught from ``passes.map_row_chunks`` while the fit runs on the
    current client."""
    import cloudpickle

    import scaleml_dask.passes as passes
    import scaleml_dask.sgd._trainer as trainer

    caught: list = []
    original = passes.map_row_chunks

    def catch(func: Any, *a: Any, **kw: Any) -> list:
        out = original(func, *a, **kw)
        if func.__name__.lstrip("_") == prefix and not caught:  # the first pass (the search's: it trains)
            caught.extend(out)
        return out

    passes.map_row_chunks = trainer.map_row_chunks = catch
    try:
        fit(method, path)
    finally:
        passes.map_row_chunks = trainer.map_row_chunks = original
    return [cloudpickle.dumps((dict(d.__dask_graph__()), d.key)) for d in caught]


def _task_loop(task: bytes, seconds: float, start: float) -> list[float]:
    """From wall clock ``start``, for ``seconds``: run the pickled ``(graph, key)`` here (dask's synchronous
    scheduler) again and again; this process's CPU seconds per run."""
    import pickle

    from dask.local import get_sync

    graph, key = pickle.loads(task)
    while time.time() < start:
        time.sleep(0.005)
    out = []
    while time.time() < start + seconds:
        c = time.process_time()
        get_sync(graph, key)
        out.append(time.process_time() - c)
    return out


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
    """Strong and weak scaling at every link rate: measured (best or median of ``repeat``) against predicted."""
    rows = []
    for p in args.workers:
        quota = {i: args.worker_cpus for i in range(p)} if args.worker_cpus else None
        with NetCluster(p, rate=args.links[0], cpu_quota=quota, cfs_period_ms=args.cfs_period_ms) as nc, \
                nc.client.as_current():
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
                        probe = reference()
                        r = best_of(meter, call, args.repeat, args.statistic)
                        terms = predict(w, Cluster(p, link_bps=parse_rate(link), worker_cpus=args.worker_cpus),
                                        _for({"method": alg}, k))
                        workers = [r["cpu"].get(f"w{i}", float("nan")) for i in range(p)]
                        rows.append({"method": alg, "scaling": kind, "workers": p, "link": link, "rows": w.rows,
                                     "worker CPUs": args.worker_cpus, "CFS period ms": args.cfs_period_ms,
                                     "workload": asdict(w), "terms": terms,
                                     "seconds": r["seconds"], "runs s": r["runs s"], "statistic": args.statistic,
                                     "predicted": terms["total"],
                                     "pred / meas": terms["total"] / r["seconds"], "dominant": dominant(terms),
                                     "worker CPU s (mean)": float(np.mean(workers)),
                                     "scheduler CPU s": r["cpu"].get("sched", float("nan")),
                                     "client CPU s": r["client cpu"], "probe": probe,
                                     "probe / calibration": _probe_ratio(probe, k)})
                        print(rows[-1], flush=True)
    return rows


def _probe_ratio(probe: dict[str, float], k: Constants) -> float:
    """The speed probe now over at calibration (mean of its two kernels; NaN without a calibrated probe)."""
    both = [probe[n] / k.reference_s[n] for n in probe if n in k.reference_s]
    return float(np.mean(both)) if both else float("nan")


def _for(row: dict, k: Constants) -> Constants:
    """The constants for a row: the wide PCA's kernel is ``moments_wide``, with its own φ."""
    if row["method"] != "pca-wide":
        return k
    return Constants(**{**asdict(k), "kernel_s": {**k.kernel_s, "moments": k.kernel_s["moments_wide"]},
                        "combine_s": {**k.combine_s, "moments": k.combine_s.get("moments_wide", 0.0)},
                        "quota_cpu_factor": k.quota_cpu_factor_wide or k.quota_cpu_factor,
                        "contention": k.contention_wide or k.contention})


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
        with NetCluster(rate="1gbit", cpu_quota=base, cfs_period_ms=args.cfs_period_ms, **kw) as nc, \
                nc.client.as_current():
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


def accuracy_by_workers(rows: list[dict], column: str = "pred / meas") -> list[dict]:
    """Per method and number of workers: runs within 25 % / runs."""
    sizes = sorted({r["workers"] for r in rows})
    out = []
    for m in dict.fromkeys(r["method"] for r in rows):
        row: dict[str, Any] = {"method": m}
        for p in sizes:
            x = [r[column] for r in rows if r["method"] == m and r["workers"] == p]
            row[f"P = {p}"] = f"{sum(abs(v - 1) <= 0.25 for v in x)} / {len(x)}" if x else "—"
        out.append(row)
    total: dict[str, Any] = {"method": "all"}
    for p in sizes:
        x = [r[column] for r in rows if r["workers"] == p]
        total[f"P = {p}"] = f"{sum(abs(v - 1) <= 0.25 for v in x)} / {len(x)}"
    return [*out, total]


def median_constants(paths: list[Path]) -> tuple[Constants, list[dict]]:
    """The element-wise median of the calibrations in ``paths`` (every number, also inside the dicts; notes
    from the last), and per number its values' spread: (max − min) / median."""
    ks = [json.loads(Path(p).read_text()) for p in paths]
    spread: list[dict] = []

    def merge(vals: list[Any], name: str) -> Any:
        if isinstance(vals[-1], dict) and name != "notes":
            return {key: merge([v[key] for v in vals if key in v], f"{name}.{key}") for key in vals[-1]}
        if isinstance(vals[-1], (int, float)) and not isinstance(vals[-1], bool) and len(vals) == len(ks):
            mid = statistics.median(vals)
            spread.append({"constant": name, "values": ", ".join(f"{v:.4g}" for v in vals), "median": mid,
                           "spread": (max(vals) - min(vals)) / abs(mid) if mid else 0.0})
            return mid
        return vals[-1]

    merged = {name: merge([k.get(name) for k in ks], name) for name in ks[-1]}
    merged["notes"] = {**ks[-1]["notes"], "median of": ", ".join(
        f"{k['notes'].get('date', '?')}" for k in ks)}
    return Constants(**merged), spread


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
    ap.add_argument("--calibrate-contention", action="store_true",
                    help="measure κ(n) only: the moments kernel's CPU per task with n = 1..8 quota'd worker hosts "
                         "(--worker-cpus) busy at once")
    ap.add_argument("--contention-seconds", type=float, default=3.0)
    ap.add_argument("--calibrate-fixed", action="store_true",
                    help="measure each method's fixed cost only (its fit of a one-chunk store: wall, worker CPU)")
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
    ap.add_argument("--cfs-period-ms", type=float, default=CFS_PERIOD_MS,
                    help="the period of the worker hosts' CPU quotas (cluster_net: a short one makes a quota'd host "
                         "run as a uniformly slower machine, not in bursts)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--statistic", choices=("best", "median"), default="best",
                    help="a scaling cell's time: the best of --repeat timed fits, or their median (one slow fit then "
                         "moves no cell)")
    ap.add_argument("--quota", type=float, default=0.25, help="the CPU straggler's quota (CPUs)")
    ap.add_argument("--straggler-ms", type=float, default=5.0, help="the link straggler's added latency")
    ap.add_argument("--straggler-epochs", type=int, default=3, help="SGD epochs (rounds) in the straggler table")
    ap.add_argument("--conditions", default="", help="what else ran (for constants.json)")
    ap.add_argument("--out", help="also write the rows as JSON here")
    ap.add_argument("--table", help="print the scaling table of rows saved by --out, predicted anew from "
                                    "constants.json (no runs)")
    ap.add_argument("--constants", type=Path, default=None, help="with --table: predict from these constants")
    ap.add_argument("--median-of", help="comma-separated constants files of repeated calibrations: print each "
                                        "constant's spread, write their element-wise median to constants.json")
    args = ap.parse_args(argv)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    args.links = args.links.split(",")
    args.workers = [int(x) for x in args.workers.split(",")]
    args.methods = args.methods.split(",")
    if args.quick:
        args.rows, args.rows_per_worker, args.calib_rows, args.repeat = 1_000_000, 500_000, 1_000_000, 1
        args.workers, args.wide_rows = [w for w in args.workers if w <= 2], 128_000
    if args.median_of:
        k, spread = median_constants([Path(p) for p in args.median_of.split(",")])
        print(markdown(spread, ["constant", "values", "median", "spread"]))
        k.save()
        return
    if args.calibrate_quota or args.calibrate_contention or args.calibrate_fixed:
        step = calibrate_quota if args.calibrate_quota else (
            calibrate_contention if args.calibrate_contention else calibrate_fixed)
        k = step(args, Constants.load())
        k.save()
        print(json.dumps(asdict(k), indent=1))
        return
    if args.calibrate or args.calibrate_search:
        k = calibrate_search(args, Constants.load()) if args.calibrate_search else calibrate(args)
        k.save()
        print(json.dumps(asdict(k), indent=1))
        return
    if args.table:
        k = Constants.load(args.constants or cost_model.CONSTANTS)
        rows = json.loads(Path(args.table).read_text())
        for r in rows:
            w, kr = Workload(**r["workload"]), _for(r, k)
            cl = Cluster(r["workers"], link_bps=parse_rate(r["link"]), worker_cpus=r.get("worker CPUs"))
            t = predict(w, cl, kr)
            # the tasks' CPU (less each worker's idle background over the fit) over the model's
            tasks = (r["worker CPU s (mean)"] - k.worker_idle_cpu * r["seconds"]) * r["workers"]
            load = tasks / worker_cpu(w, cl, kr)
            t2 = predict(w, cl, under_load(effective(kr, cl, w), load))  # φ and κ are in the run's CPU
            r.update({"predicted": t["total"], "pred / meas": t["total"] / r["seconds"], "dominant": dominant(t),
                      "CPU / calibrated": load, "predicted at run's CPU": t2["total"],
                      "pred / meas at run's CPU": t2["total"] / r["seconds"], "dominant at run's CPU": dominant(t2)})
        for r in rows:
            if "probe" in r:
                r["probe / calibration"] = _probe_ratio(r["probe"], k)
        print(markdown(rows, ["method", "scaling", "workers", "link", "rows", "seconds", "predicted", "pred / meas",
                              "dominant", "CPU / calibrated", "predicted at run's CPU", "pred / meas at run's CPU",
                              "dominant at run's CPU", "worker CPU s (mean)", "scheduler CPU s", "client CPU s",
                              "probe / calibration"]))
        print()
        print(markdown(accuracy(rows), ["method", "runs", "within 25 %", "within 25 %, P ≤ 2", "median pred / meas",
                                        "worst pred / meas"]))
        print()
        by = accuracy_by_workers(rows)
        print(markdown(by, list(by[0])))
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
