"""Choosing chunk sizes and partitions (the book's exercise on data partitioning), measured.

A. Chunk size × workers: a 2,000,000 × 32 planted-logistic store written with chunks of 10,000 to 1,000,000
   rows; for each, on a fresh LocalCluster of 1 and of 2 workers (1 thread each): a one-pass regression
   (``LinearRegression(solver="auto")``, W1) and one epoch of local SGD (``SGDClassifier(mode="local",
   rounds=1)``); wall time and the peak resident memory of each worker process.
B. Partitioning for federated averaging: 1,000,000 rows in 8 partitions, contiguous (as generated), shuffled,
   or sorted by label (non-IID: each partition holds one class), local SGD for 1 and 5 rounds; held-out
   accuracy against the planted model's (Bayes) accuracy, and the bytes exchanged.

    python benchmarks/bench_chunks.py [--quick]      # --quick: 400,000 rows, fewer chunk sizes

Stores are made once under benchmarks/data/ (generators are deterministic per (seed, chunk index), so each
chunk size is its own draw of the same distribution). The table is printed and goes to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
D = 32


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _store(n: int, rows: int, client) -> Path:
    from scaleml_dask.io.synthetic import make_logistic

    path = DATA / f"chunks_logistic_{n}_{D}_{rows}.zarr"
    if not path.exists():
        make_logistic(path, n, D, chunk_rows=rows, seed=21, client=client)
    return path


def chunk_table(n: int, sizes: list[int]) -> list[dict]:
    import scaleml_dask as sm

    out = []
    with sm.connect(n_workers=2, dashboard_address="127.0.0.1:0", quiet=True) as c:
        paths = {rows: _store(n, rows, c) for rows in sizes}
    for rows in sizes:
        for workers in (1, 2):
            with sm.connect(n_workers=workers, dashboard_address="127.0.0.1:0", quiet=True,
                            memory_limit="8GiB") as client:
                ds = sm.open_dataset(paths[rows])
                X, y = ds.X.data, ds.y.data
                sm.LinearRegression().fit(X, y)  # warm every worker (imports, compiled kernels): untimed
                sm.SGDClassifier(mode="local", rounds=1, batch_size=500, random_state=0).fit(X, y)
                t = time.perf_counter()
                sm.LinearRegression(solver="auto").fit(X, y)
                t_reg = time.perf_counter() - t
                t = time.perf_counter()
                clf = sm.SGDClassifier(mode="local", rounds=1, batch_size=500, random_state=0).fit(X, y)
                t_sgd = time.perf_counter() - t
                peak = max(client.run(_peak_rss).values())
                out.append({"chunk rows": rows, "chunks": -(-n // rows), "workers": workers,
                            "regression s": round(t_reg, 3), "SGD epoch s": round(t_sgd, 3),
                            "peak MB / worker": round(peak / 1e6), "SGD bytes": int(clf.bytes_exchanged_)})
                print(out[-1], flush=True)
    return out


def partition_table(n: int) -> list[dict]:
    import dask.array as da

    import scaleml_dask as sm
    from scaleml_dask.io.synthetic import logistic_chunk

    rng = np.random.default_rng(5)
    coef = 4.0 * rng.standard_normal(D) / np.sqrt(D)
    X, y = logistic_chunk(3, 0, n, coef=coef, intercept=0.0)
    Xt, yt = logistic_chunk(3, 1, 200_000, coef=coef, intercept=0.0)
    bayes = float(((Xt @ coef > 0) == (yt == 1)).mean())
    orders = {"contiguous": np.arange(n), "shuffled": rng.permutation(n), "label-sorted": np.argsort(y, kind="stable")}
    rows = n // 8
    out = []
    with sm.connect(n_workers=2, dashboard_address="127.0.0.1:0", quiet=True):
        for name, order in orders.items():
            dX, dy = da.from_array(X[order], chunks=(rows, D)), da.from_array(y[order], chunks=rows)
            for rounds in (1, 5):
                clf = sm.SGDClassifier(mode="local", rounds=rounds, batch_size=500, random_state=0).fit(dX, dy)
                acc = float(clf.score(Xt, yt))
                out.append({"partitions": name, "rounds": rounds, "accuracy": round(acc, 4),
                            "Bayes − accuracy": round(bayes - acc, 4), "bytes exchanged": int(clf.bytes_exchanged_)})
                print(out[-1], flush=True)
    return out


def _print(rows: list[dict]) -> None:
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 400_000 if args.quick else 2_000_000
    sizes = [10_000, 100_000] if args.quick else [10_000, 50_000, 250_000, 1_000_000]
    chunks = chunk_table(n, sizes)
    parts = partition_table(n // 2)
    _print(chunks)
    print()
    _print(parts)


if __name__ == "__main__":
    main()
