"""Distributed SGD: the three modes against a plain scan of the store and the peers, in one run.

Data: planted logistic rows, 5,000,000 × 32 in zarr (``--quick``: 500,000), chunks of 250,000 (50,000).
Test set: 200,000 fresh rows of the same planted model; target = the planted model's (Bayes) accuracy on
them minus 0.005. For 1 and 2 worker processes (1 thread each):

- floor: every chunk file of X and y read straight into numpy (zstd decoded by numcodecs) and X'X, X'y
  formed (``_floor.py``), what any one-pass method must at least do;
- scan: read every chunk of X and y once through this project's reader (``dask.compute`` of per-chunk sums);
- ours: ``SGDClassifier`` in ``local`` (one round = one epoch), ``sync`` and ``async`` mode; each stops as
  soon as the test accuracy after an epoch (round) reaches the target (checked in the callback, at most
  ``--max-epochs``); time to target = the fit's wall time at that point;
- peers: scikit-learn ``SGDClassifier.partial_fit`` over the same chunks (read one after another on the
  client; accuracy checked after each chunk, outside the timing), and dask-ml ``Incremental``.

All contenders get the classes declared (``classes=[0, 1]``, as ``partial_fit`` and ``Incremental`` need),
the same LocalCluster (worker processes, 1 thread each) and warmed workers: every worker process has
imported the libraries and loaded our compiled kernels before anything is timed.

Prints a table with throughput (samples/s), time to target, accuracy and ratios to the scan and the floor (in
``benchmarks/README.md``; ``--out FILE`` also writes it as markdown).

    python benchmarks/bench_sgd.py [--quick] [--codec none|zstd|blosc-lz4] [--methods local,sync,...]

The store is written with the project's default codec (``store.DEFAULT_CODEC``) unless ``--codec`` says
otherwise; its name carries the codec.
"""

from __future__ import annotations

import argparse
import os
import time
import traceback
from pathlib import Path

import dask
import numpy as np
from _floor import drop_if_without_manifest, floor_pass

DATA = Path(__file__).parent / "data"
D = 32
METHODS = ("local", "sync", "async", "sklearn", "dask-ml")
TOL = 0.005


def _dataset(n: int, chunk: int, codec: str, client) -> Path:
    from scaleml_dask.io.synthetic import make_logistic

    path = DATA / f"sgd_logistic_{n}_{D}-{codec}.zarr"
    drop_if_without_manifest(path)
    if not path.exists():
        t = time.perf_counter()
        make_logistic(path, n, D, chunk_rows=chunk, seed=11, codec=codec, client=client)
        print(f"made {path} in {time.perf_counter() - t:.1f} s")
    return path


def _warm_worker() -> None:
    """Import the libraries and load the compiled SGD kernels (numba cache) in this process."""
    import dask_ml.wrappers  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    from scaleml_dask.sgd._kernels import batch_gradient, descent_step, init_optimizer, local_epochs

    X, T, W = np.ones((4, 2)), np.ones((4, 1)), np.zeros((3, 1))
    local_epochs(W, X, T, start=0, n_train=4, seeds=[0], block=0, batch_size=2, loss="log_loss", penalty="l2",
                 alpha=1e-6, fit_intercept=True, schedule="adam", eta0=0.01, power_t=0.5, t0=0.0)
    G, _ = batch_gradient(W, X, T, start=0, n_train=4, seed=0, block=0, batch_size=2, step=0, loss="log_loss",
                          fit_intercept=True)
    descent_step(W, G, init_optimizer("adam", W.shape), penalty="l2", alpha=1e-6, schedule="adam", eta0=0.01,
                 power_t=0.5)


def _scan(X, y) -> float:
    t = time.perf_counter()
    dask.compute(X.map_blocks(lambda b: b.sum(axis=0, keepdims=True), chunks=(1, X.shape[1])).sum(axis=0),
                 y.sum())
    return time.perf_counter() - t


def _floor(path: Path) -> float:
    t = time.perf_counter()
    floor_pass(path)
    return time.perf_counter() - t


def _ours(mode: str, params: dict, X, y, Xt, yt, target: float, max_epochs: int) -> dict:
    from scaleml_dask.sgd import SGDClassifier

    hit = {}

    def stop(info):
        W = info["weights"]
        acc = float((((Xt @ W[:-1, 0] + W[-1, 0]) > 0) == (yt == 1)).mean())
        if acc >= target and "time" not in hit:
            hit["time"], hit["epoch"] = time.perf_counter() - t0, info["epoch"]
        return acc >= target

    key = "rounds" if mode == "local" else "epochs"
    t0 = time.perf_counter()
    m = SGDClassifier(mode=mode, callback=stop, classes=[0.0, 1.0], **{key: max_epochs}, **params).fit(X, y)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "samples": m.samples_seen_, "accuracy": m.score(Xt, yt),
            "to_target": hit.get("time"), "epochs": m.n_iter_, "rounds": m.n_rounds_, "bytes": m.bytes_exchanged_}


def _sklearn(path: Path, Xt, yt, target: float) -> dict:
    import zarr
    from sklearn.linear_model import SGDClassifier

    g = zarr.open_group(str(path), mode="r")
    Xz, yz = g["X"], g["y"]
    rows = Xz.chunks[0]
    clf = SGDClassifier(loss="log_loss", random_state=0)
    seconds, to_target, n = 0.0, None, 0
    for start in range(0, Xz.shape[0], rows):
        t = time.perf_counter()
        Xb, yb = Xz[start:start + rows], yz[start:start + rows]
        clf.partial_fit(Xb, yb, classes=[0.0, 1.0])
        seconds += time.perf_counter() - t
        n += len(Xb)
        if to_target is None and clf.score(Xt, yt) >= target:
            to_target = seconds
    return {"seconds": seconds, "samples": n, "accuracy": clf.score(Xt, yt), "to_target": to_target,
            "epochs": 1}


def _dask_ml(X, y, Xt, yt, target: float) -> dict:
    from dask_ml.wrappers import Incremental
    from sklearn.linear_model import SGDClassifier

    t = time.perf_counter()
    inc = Incremental(SGDClassifier(loss="log_loss", random_state=0)).fit(X, y, classes=[0.0, 1.0])
    seconds = time.perf_counter() - t
    acc = float(inc.estimator_.score(Xt, yt))
    return {"seconds": seconds, "samples": X.shape[0], "accuracy": acc,
            "to_target": seconds if acc >= target else None, "epochs": 1}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="500,000 rows, runs in about a minute")
    ap.add_argument("--max-epochs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3, help="rounds over all contenders; the best time is kept")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--codec", default=None, help="codec of the store (default: the project's, store.DEFAULT_CODEC)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {','.join(METHODS)} (the scan always runs)")
    ap.add_argument("--out", help="also write the table as markdown to this file")
    args = ap.parse_args(argv)
    from scaleml_dask.io.store import DEFAULT_CODEC

    methods = args.methods.split(",")
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    codec = args.codec or DEFAULT_CODEC
    n, chunk = (500_000, 50_000) if args.quick else (5_000_000, 250_000)
    DATA.mkdir(parents=True, exist_ok=True)
    rows, notes = [], []
    for n_workers in [int(w) for w in args.workers.split(",")]:
        rows += _compare(n_workers, n, chunk, codec, methods, args, notes)
    _write(rows, notes, args, n, codec)


def _compare(n_workers: int, n: int, chunk: int, codec: str, methods: list[str], args, notes: list[str]) -> list[dict]:
    """All contenders on one LocalCluster of ``n_workers`` worker processes, ``args.repeat`` rounds."""
    from distributed import Client, LocalCluster

    from scaleml_dask.io.catalog import open_dataset
    from scaleml_dask.io.synthetic import logistic_chunk

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit="8GiB") as cluster, Client(cluster) as client:
        path = _dataset(n, chunk, codec, client)
        ds = open_dataset(path)
        coef, b0 = np.asarray(ds.attrs["coef"]), float(ds.attrs["intercept"])
        Xt, yt = logistic_chunk(99, 0, 200_000, coef=coef, intercept=b0)
        bayes = float((((Xt @ coef + b0) > 0) == (yt == 1)).mean())
        target = bayes - TOL
        X, y = ds["X"].data, ds["y"].data
        _scan(X, y)  # warm the page cache
        client.run(_warm_worker)
        _warm_worker()
        configs = {
            "local": ("local (FedAvg)", {"batch_size": 500, "eta0": 0.01}),
            "sync": ("sync", {"batch_size": 2000, "eta0": 0.1}),
            "async": ("async", {"batch_size": 2000, "eta0": 0.02, "push_every": 4}),
        }
        contenders = {"floor": lambda: {"seconds": _floor(path), "samples": n, "accuracy": float("nan"),
                                        "to_target": None},
                      "scan": lambda: {"seconds": _scan(X, y), "samples": n, "accuracy": float("nan"),
                                       "to_target": None}}
        for mode, (name, params) in configs.items():
            if mode in methods:
                contenders[name] = (lambda mode=mode, params=params: _ours(
                    mode, {**params, "alpha": 1e-6}, X, y, Xt, yt, target, args.max_epochs))
        if "sklearn" in methods:
            contenders["sklearn SGDClassifier.partial_fit"] = lambda: _sklearn(path, Xt, yt, target)
        if "dask-ml" in methods:
            contenders["dask-ml Incremental"] = lambda: _dask_ml(X, y, Xt, yt, target)
        runs: dict[str, dict] = {}
        for r in range(args.repeat):  # round robin, best time kept: drifts in load hit every contender alike
            for name, run in contenders.items():
                print(f"[{n_workers} workers, round {r + 1}] {name} ...", flush=True)
                try:
                    result = run()
                except Exception as exc:  # report a peer's failure honestly
                    traceback.print_exc()
                    notes.append(f"{name} failed with {n_workers} workers: {type(exc).__name__}: {exc}")
                    continue
                if name not in runs or result["seconds"] < runs[name]["seconds"]:
                    runs[name] = result
    scan, floor = runs["scan"]["seconds"], runs["floor"]["seconds"]
    return [{"workers": n_workers, "method": name, **r, "bayes": bayes, "scan": scan, "floor": floor}
            for name, r in runs.items()]


def _fmt(v, spec: str) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def _write(rows: list[dict], notes: list[str], args, n: int, codec: str) -> None:
    head = ("| workers | method | seconds | samples/s | epochs | time to Bayes−0.005 (s) | accuracy | Bayes − acc "
            "| seconds / scan | seconds / floor | to target / scan | bytes | rounds |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        rate = r["samples"] / r["seconds"]
        lines.append(
            f"| {r['workers']} | {r['method']} | {r['seconds']:.2f} | {rate:,.0f} | {r.get('epochs', '—')} "
            f"| {_fmt(r['to_target'], '.2f')} | {_fmt(r['accuracy'], '.4f')} "
            f"| {_fmt(r['bayes'] - r['accuracy'], '.4f')} | {r['seconds'] / r['scan']:.2f} "
            f"| {r['seconds'] / r['floor']:.2f} "
            f"| {_fmt(None if r['to_target'] is None else r['to_target'] / r['scan'], '.2f')} "
            f"| {_fmt(r.get('bytes'), ',')} | {_fmt(r.get('rounds'), ',')} |")
    table = "\n".join(lines)
    print(table)
    for note in notes:
        print("NOTE:", note)
    text = [f"# Distributed SGD benchmark ({'quick, ' if args.quick else ''}{n:,} × {D} logistic rows in zarr)", "",
            f"Machine: {os.cpu_count()} cores (load during the run: see the notes). "
            f"Command: `python benchmarks/bench_sgd.py{' --quick' if args.quick else ''} --codec {codec}`.", "",
            table, ""]
    text += [f"- {note}" for note in notes]
    if args.out:
        Path(args.out).write_text("\n".join(text) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
