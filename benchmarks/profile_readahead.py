"""Profile of SGD local's reads on a store larger than the workers' memory, task by task.

Per task of one ``SGDClassifier(mode="local", rounds=1)`` round on the store of ``bench_bigger_than_ram.py``
(network harness, cgroup memory limit, the store's pages dropped first): how much of its chunk was in the page
cache when it started (``mincore``), how long its in-order read of the chunk's pages waited, how long its
kernel computed, which chunk it asked the kernel for and whether that was the chunk its worker ran next, and
the gap between a worker's tasks. Prints one line per task and a summary per worker.

    python benchmarks/profile_readahead.py [--store-gb 6] [--worker-memory-gb 1] [--rounds 1]

Needs root (the harness) and a store made before (``bench_bigger_than_ram.py --methods floor --keep``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bigger_than_ram import CHUNK_ROWS, DATA, D, _warm, evict  # noqa: E402
from cluster_net import NetCluster  # noqa: E402

RECORDS: list[dict] = []
HINTS: list[tuple[int, float, float]] = []  # chunk of X hinted (ZarrChunks.will_need): (index, start, end)


def _resident(a) -> float:
    """Fraction of ``a``'s pages in the page cache (``mincore``); nan for memory not mapped from a file."""
    import ctypes
    import mmap

    import numpy as np

    if not isinstance(a, np.ndarray) or not a.nbytes:
        return float("nan")
    page = mmap.PAGESIZE
    lo = a.ctypes.data // page * page
    n = (a.ctypes.data + a.nbytes - lo + page - 1) // page
    vec = (ctypes.c_ubyte * n)()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    if libc.mincore(ctypes.c_void_p(lo), ctypes.c_size_t(n * page), vec) != 0:
        return float("nan")
    return float(np.frombuffer(vec, dtype=np.uint8).__and__(1).mean())


def _install() -> None:
    """Wrap the pass driver's readahead task on this worker with timestamps (kept in ``RECORDS``)."""
    import time

    from distributed import get_worker

    from scaleml_dask import passes

    inner = passes._on_rows_ahead
    build = passes._build

    def spy_build(plan, inputs, index):
        block = build(plan, inputs, index)
        rec = _current.get("rec")
        if rec is not None and "resident" not in rec:
            rec["resident"] = _resident(block)
            rec["t_built"] = time.time()
        return block

    def spy_will_need(self, index):
        t = time.time()
        try:
            return orig_will_need(self, index)
        finally:
            if self.name == "X":
                HINTS.append((index, t, time.time()))
                rec = _current.get("rec")
                if rec is not None:
                    rec.setdefault("asked", []).append(([index], t))

    def timed(func, index, row_start, kwargs, plan, *inputs):
        rec = {"worker": get_worker().name, "index": index, "t0": time.time(), "c0": time.thread_time()}
        _current["rec"] = rec

        def kernel(*blocks, **kw):
            rec["t_kernel"], rec["c_kernel"] = time.time(), time.thread_time()
            try:
                return func(*blocks, **kw)
            finally:
                rec["t_done"], rec["c_done"] = time.time(), time.thread_time()

        try:
            return inner(kernel, index, row_start, kwargs, plan, *inputs)
        finally:
            _current.pop("rec", None)
            RECORDS.append(rec)

    passes._build = spy_build
    passes._on_rows_ahead = timed
    from scaleml_dask.io import read

    orig_will_need = read.ZarrChunks.will_need
    read.ZarrChunks.will_need = spy_will_need


_current: dict = {}


def _collect() -> list[dict]:
    hints = {i: (t0, t1) for i, t0, t1 in HINTS}
    out = [{**r, "hint": hints.get(r["index"])} for r in RECORDS]
    RECORDS.clear()
    HINTS.clear()
    return out


def summarise(records: list[dict]) -> None:
    by_worker: dict[str, list[dict]] = {}
    for r in records:
        by_worker.setdefault(r["worker"], []).append(r)
    t_first = min(r["t0"] for r in records)
    for w, rs in sorted(by_worker.items()):
        rs.sort(key=lambda r: r["t0"])
        print(f"--- worker {w}: {len(rs)} tasks")
        print(f"{'chunk':>5} {'start':>6} {'resid':>5} {'read ms':>7} {'kern ms':>7} {'gap ms':>6} {'hint ms':>12}  "
              "asked: at start | after read (next run here?)")
        waits, kerns, gaps, hits, resid, starts = [], [], [], 0, [], 0
        for k, r in enumerate(rs):
            read_ms = (r["t_kernel"] - r["t0"]) * 1e3
            kern_ms = (r["t_done"] - r["t_kernel"]) * 1e3
            gap = (rs[k + 1]["t0"] - r["t_done"]) * 1e3 if k + 1 < len(rs) else float("nan")
            nxt = rs[k + 1]["index"] if k + 1 < len(rs) else None
            asked = r.get("asked", [])
            at_start: list[int] = []
            after = [i for a, _ in asked for i in a]
            hit = nxt in at_start or nxt in after
            hits += hit
            starts += nxt in at_start
            h = r.get("hint")
            hint = f"{(h[0] - r['t0']) * 1e3:5.0f}+{(h[1] - h[0]) * 1e3:4.0f}" if h else "-"
            waits.append(read_ms)
            kerns.append(kern_ms)
            resid.append(r.get("resident", float("nan")))
            if gap == gap:
                gaps.append(gap)
            print(f"{r['index']:>5} {r['t0'] - t_first:6.2f} {r.get('resident', float('nan')):5.2f} {read_ms:7.1f} "
                  f"{kern_ms:7.1f} {gap:6.1f} {hint:>12}  {at_start} | {after} ({'yes' if hit else 'no'})")
        n = len(rs)
        read_cpu = sum(r["c_kernel"] - r["c0"] for r in rs)
        kern_cpu = sum(r["c_done"] - r["c_kernel"] for r in rs)
        first = rs[0]["c_done"] - rs[0]["c_kernel"]
        print(f"worker {w}: CPU of the tasks' threads: before the kernel {read_cpu:.2f} s, kernel {kern_cpu:.2f} s "
              f"(the first task's {first * 1e3:.0f} ms)")
        span = rs[-1]["t_done"] - rs[0]["t0"]
        print(f"worker {w}: span {span:.2f} s; read wait {sum(waits) / 1e3:.2f} s (mean {sum(waits) / n:.1f} ms), "
              f"kernel {sum(kerns) / 1e3:.2f} s (mean {sum(kerns) / n:.1f} ms), gaps {sum(gaps) / 1e3:.2f} s; "
              f"mean resident at start {sum(resid) / n:.2f}; next chunk run here asked for: {hits}/{n - 1} "
              f"({starts} at the start)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store-gb", type=float, default=6.0)
    ap.add_argument("--worker-memory-gb", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cprofile", action="store_true", help="the client's first fit under cProfile")
    ap.add_argument("--quiet", action="store_true", help="the summary only")
    args = ap.parse_args(argv)
    n = int(args.store_gb * 1e9 / ((D + 1) * 8)) // CHUNK_ROWS * CHUNK_ROWS
    path = DATA / f"bigger_than_ram_{n}_{D}.zarr"
    if not path.exists():
        sys.exit(f"no store at {path}: make it with bench_bigger_than_ram.py --methods floor --keep")
    import profile_readahead as me  # by reference: the workers import it too (benchmarks/ is on their path)

    import scaleml_dask as sm

    mem = int(args.worker_memory_gb * 2**30)
    with NetCluster(args.workers, rate=None, memory_limit=mem,
                    env={"PYTHONPATH": str(Path(__file__).parent)}) as nc, nc.client.as_current():
        client = nc.client
        for warm in (client.run, client.run_on_scheduler, lambda f: f()):  # as bench_bigger_than_ram
            warm(_warm)
        client.run(me._install)
        for r in range(args.rounds):
            evict(path)
            c0 = nc.cpu_seconds()
            t = time.perf_counter()
            t_wall = time.time()
            est = sm.SGDClassifier(mode="local", rounds=1, batch_size=500, eta0=0.01, classes=[0.0, 1.0])
            if args.cprofile and r == 0:
                import cProfile

                cProfile.runctx("est.fit(path)", globals(), {"est": est, "path": path}, "/tmp/ra_fit.prof")
            else:
                est.fit(path)
            seconds = time.perf_counter() - t
            c1 = nc.cpu_seconds()
            records = [x for recs in client.run(me._collect).values() for x in recs]
            if not args.quiet:
                summarise(records)
            else:
                import contextlib
                import io

                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    summarise(records)
                print("\n".join(line for line in buf.getvalue().splitlines() if line.startswith("worker ")))
            cpu = sum(c1[h] - c0[h] for h in c1 if h.startswith("w"))
            first, last = min(x["t0"] for x in records), max(x["t_done"] for x in records)
            print(f"round {r}: {seconds:.2f} s, worker CPU {cpu:.2f} s; first task after {first - t_wall:.2f} s, "
                  f"tasks span {last - first:.2f} s, then {t_wall + seconds - last:.2f} s to the end")


if __name__ == "__main__":
    main()
