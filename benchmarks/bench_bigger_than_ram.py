"""Larger than memory, pass by pass: every estimator's reads of a store its workers cannot cache.

A generated logistic store (X float64 with 32 columns, y; chunks of 250,000 rows = 64 MB) several times larger
than the memory the workers may use, page cache included; 2 worker hosts of the network harness
(``cluster_net.NetCluster``, links unshaped), each in a cgroup whose memory limit (v1 ``memory.limit_in_bytes``,
v2 ``memory.max``) bounds the worker's heap *and* the page cache its reads bring in: when the cgroup is full the
kernel reclaims its own pages, clean cache first. A pass reads the store sequentially, and a cache smaller than
the store holds only the last pages read, so each pass finds none of the pages it needs and reads the whole
store from storage again — what happens on a machine whose RAM is smaller than the data. That it did is
measured, not assumed: the bytes the workers read from storage (``read_bytes`` of ``/proc/<pid>/io`` of every
process in their cgroups) are reported beside the store's size. The store's pages are also dropped from the
page cache (``posix_fadvise(DONTNEED)`` on its files: nobody else's cache is touched) before every contender.
The library's modules are imported on the client, the scheduler and the workers before anything is timed (a
scheduler imports what the tasks of its first graph of a kind name: over a second for SGD's on this machine);
compiled kernels are loaded by the first task that runs them, inside the timed run.

Contenders: the floor (a plain read: every chunk file of X and y read once, ``readinto`` into a reused buffer,
one task per chunk), ``LinearRegression``, ``PCA``, one ``SGDClassifier`` epoch (``local``: federated
averaging; ``sync`` / ``async`` with ``--methods``: they hold their blocks in cluster memory, so on such data
they spill), ``KMeans`` (k-means|| and 3 Lloyd iterations). Per contender: wall time, time over the floor,
passes read from storage (bytes read / store bytes) against the passes the algorithm needs, worker CPU
seconds, peak RSS of the worker processes.

    python benchmarks/bench_bigger_than_ram.py [--quick] [--store-gb 16] [--worker-memory-gb 2] [--keep]

Needs root (the harness). The store goes to ``benchmarks/data/`` and is deleted after the run unless
``--keep``; a store already there (a ``--keep`` run's) is used and left.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _floor import chunk_into_numpy  # noqa: E402
from bench_regression import DATA, print_table  # noqa: E402
from cluster_net import NetCluster  # noqa: E402

D = 32
CHUNK_ROWS = 250_000
METHODS = ("floor", "regression", "pca", "sgd-local", "sgd-sync", "sgd-async", "kmeans")
DEFAULT_METHODS = ("floor", "regression", "pca", "sgd-local", "kmeans")


def evict(path: Path) -> None:
    """Drop the store's pages from the page cache (only this store's files)."""
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def read_bytes(nc: NetCluster) -> int:
    """Bytes read from storage so far by every process of the worker hosts."""
    total = 0
    for h in nc.workers:
        for pid in h.cgroup.pids():
            try:
                for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                    if line.startswith("read_bytes:"):
                        total += int(line.split()[1])
            except OSError:
                pass
    return total


def _read_chunk(x, y, i: int) -> int:
    return chunk_into_numpy(x, i, "X").shape[0] + chunk_into_numpy(y, i, "y").shape[0]


def floor_read(path: Path) -> None:
    """One plain read of every chunk file of X and y, one task per chunk, on the current scheduler."""
    import dask
    import zarr

    from scaleml_dask.io import read

    g = zarr.open_group(str(path), mode="r")
    x, y = read.chunk_source(g["X"]), read.chunk_source(g["y"])
    dask.compute(*[dask.delayed(_read_chunk, pure=False)(x, y, i) for i in range(x.grid[0])])


def _peak_rss() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def _warm() -> None:
    import scaleml_dask.kmeans  # noqa: F401
    import scaleml_dask.linear  # noqa: F401
    import scaleml_dask.pca  # noqa: F401
    import scaleml_dask.sgd  # noqa: F401


def contenders(path: Path, methods: list[str]) -> dict[str, tuple[float, object]]:
    """name -> (passes the algorithm needs, function); estimators get the store's path, as users give it."""
    import scaleml_dask as sm

    out = {
        "floor": (1, lambda: floor_read(path)),
        "regression": (1, lambda: sm.LinearRegression().fit(path)),
        "pca": (1, lambda: sm.PCA(n_components=8).fit(path)),
        "sgd-local": (1, lambda: sm.SGDClassifier(mode="local", rounds=1, batch_size=500, eta0=0.01,
                                                  classes=[0.0, 1.0]).fit(path)),
        "sgd-sync": (1, lambda: sm.SGDClassifier(mode="sync", epochs=1, batch_size=2000, eta0=0.1,
                                                 classes=[0.0, 1.0]).fit(path)),
        "sgd-async": (1, lambda: sm.SGDClassifier(mode="async", epochs=1, batch_size=2000, eta0=0.02,
                                                  push_every=4, classes=[0.0, 1.0]).fit(path)),
        "kmeans": (4, lambda: sm.KMeans(20, max_iter=3, tol=0.0, random_state=0).fit(path)),
    }
    return {m: out[m] for m in methods}


def run(args: argparse.Namespace) -> list[dict]:
    from scaleml_dask.io.synthetic import make_logistic

    mem = int(args.worker_memory_gb * 2**30)
    n = int(args.store_gb * 1e9 / ((D + 1) * 8)) // CHUNK_ROWS * CHUNK_ROWS
    path = DATA / f"bigger_than_ram_{n}_{D}.zarr"
    DATA.mkdir(parents=True, exist_ok=True)
    rows = []
    with NetCluster(args.workers, rate=None, memory_limit=mem, env={"PYTHONPATH": str(Path(__file__).parent)}) as nc:
        client = nc.client
        for warm in (client.run, client.run_on_scheduler, lambda f: f()):  # imports are not a pass's cost
            warm(_warm)
        made = not path.exists()  # a store this run did not make is not this run's to delete
        try:
            if made:
                t = time.perf_counter()
                with client.as_current():
                    make_logistic(path, n, D, chunk_rows=CHUNK_ROWS, seed=5, client=client)
                print(f"made {path} ({store_bytes(path) / 1e9:.1f} GB) in {time.perf_counter() - t:.0f} s")
            size = store_bytes(path)
            print(f"store {size / 1e9:.2f} GB = {size / (args.workers * mem):.1f}x the {args.workers} workers' "
                  f"memory limit ({args.worker_memory_gb} GiB each, page cache included)")
            floor_t = None
            with client.as_current():
                for name, (needed, fn) in contenders(path, args.methods).items():
                    evict(path)
                    r0, c0 = read_bytes(nc), nc.cpu_seconds()
                    t = time.perf_counter()
                    try:
                        fn()
                        seconds, note = time.perf_counter() - t, ""
                    except Exception as exc:  # a contender that fails is a row saying why
                        seconds, note = float("nan"), f"failed: {type(exc).__name__}: {str(exc)[:80]}"
                    r1, c1 = read_bytes(nc), nc.cpu_seconds()
                    if name == "floor":
                        floor_t = seconds
                    cpu = sum(c1[h] - c0[h] for h in c1 if h.startswith("w"))
                    rows.append({"method": name, "seconds": seconds,
                                 "x floor": seconds / floor_t if floor_t else float("nan"),
                                 "passes needed": needed, "passes read": (r1 - r0) / size,
                                 "GB read": (r1 - r0) / 1e9, "worker CPU s": cpu,
                                 "peak RSS GB": max(client.run(_peak_rss).values()) / 2**30, "note": note})
                    print(rows[-1], flush=True)
        finally:
            if made and not args.keep:
                shutil.rmtree(path, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 3 GB store, 1 GiB per worker (a smoke run)")
    ap.add_argument("--store-gb", type=float, default=16.0)
    ap.add_argument("--worker-memory-gb", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated subset of {METHODS}")
    ap.add_argument("--keep", action="store_true", help="keep the store for the next run")
    args = ap.parse_args(argv)
    args.methods = args.methods.split(",")
    if unknown := set(args.methods) - set(METHODS):
        ap.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    if args.quick:
        args.store_gb, args.worker_memory_gb = 3.0, 1.0
    rows = run(args)
    print_table(f"larger than memory: {args.store_gb:g} GB store, {args.workers} workers x 1 thread, "
                f"{args.worker_memory_gb:g} GiB per worker (page cache included)", rows,
                ["seconds", "x floor", "passes needed", "passes read", "worker CPU s", "peak RSS GB", "note"])
    return rows


if __name__ == "__main__":
    main()
