"""PCA side by side in one run: the 5,000,000 x 32 regression store (tall) and a wide store (randomized).

Tall contenders: the floor (every chunk file straight into numpy, then X'X and X'y: ``_floor.py``), a
plain scan through zarr-python (``X.sum()``, the yardstick of the earlier editions), this project's PCA
(``auto`` and ``tsqr``, given the store as a path), dask-ml's PCA (tsqr and randomized),
``dask.array.linalg.svd`` of the centered array, and scikit-learn's full SVD in memory (the reference),
for each codec of ``--codecs``. Wide case (default 200,000 x 2,000, 30 Gaussian clusters so the spectrum
has structure): the scan, this PCA (randomized, ``auto``), dask-ml randomized, and scikit-learn in memory
(``covariance_eigh`` as the exact reference, and randomized). Printed: wall time (best of ``--repeat``),
ratios to the zarr scan and (tall) to the floor, and the largest relative error of ``explained_variance_``
against the reference. Same cluster for all: 2 worker processes x 1 thread.

    python benchmarks/bench_pca.py [--quick] [--codecs none,zstd] [--wide-rows 200000] [--cold] [--tall-only]

``--cold`` empties the page cache before every tall contender (see bench_regression.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from _floor import floor_pass
from bench_regression import (
    DATA,
    FLOOR,
    add_ratios,
    cluster_client,
    print_table,
    race,
    regression_store,
    timed,
)

import scaleml_dask as sm
from scaleml_dask.io.synthetic import make_mixture


def _rel(ev: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(ev)[:len(ref)] / ref[:len(ev)] - 1)))


def in_memory(X: da.Array, estimators: list, repeat: int) -> tuple[float, list[tuple[float, object]]]:
    """Load ``X`` into memory (timed), then fit each estimator on it: (load seconds, [(seconds, fitted)])."""
    t0 = time.perf_counter()
    Xn = X.compute()
    load = time.perf_counter() - t0
    return load, [timed(lambda e=e: e.fit(Xn), repeat) for e in estimators]


def _finish(rows: list[dict], title: str) -> list[dict]:
    if any(r["method"] == FLOOR for r in rows):
        add_ratios(rows)
        columns = ["seconds", "x zarr scan", "x floor", "rel err of var", "note"]
    else:
        scan = rows[0]["seconds"]
        for r in rows:
            r["x zarr scan"] = r["seconds"] / scan
        columns = ["seconds", "x zarr scan", "rel err of var", "note"]
    print_table(title, rows, columns)
    return rows


def _zarr_scan(path: Path) -> tuple:
    import xarray as xr

    return dask.compute(xr.open_zarr(path, consolidated=False, chunks={})["X"].data.sum()), ""


def tall(n: int, d: int, codec: str, client, repeat: int, cold: bool = False) -> list[dict]:
    from dask_ml.decomposition import PCA as DaskMLPCA
    from sklearn.decomposition import PCA as SkPCA

    path = regression_store(n, d, codec, client)
    X = sm.open_dataset(path)["X"].data
    dask.compute(X.sum())  # warm up the workers and the page cache
    load, [(fit, ref)] = in_memory(X, [SkPCA(svd_solver="full")], repeat)
    ref_ev = ref.explained_variance_

    def ours(solver):
        p = sm.PCA(solver=solver).fit(str(path))
        return p.explained_variance_, p.solver_

    def dask_svd():
        _, s, _ = dask.compute(*da.linalg.svd(X - X.mean(axis=0)))
        return s**2 / (n - 1), ""

    def dask_ml(solver):
        kw = {"iterated_power": 4, "random_state": 0} if solver == "randomized" else {}
        p = DaskMLPCA(n_components=d, svd_solver=solver, **kw).fit(X)
        return np.asarray(p.explained_variance_), ""

    cases = {FLOOR: lambda: (floor_pass(path), ""),
             "scan (zarr-python): X.sum()": lambda: _zarr_scan(path),
             "scaleml PCA(solver='auto')": lambda: ours("auto"),
             "scaleml PCA(solver='tsqr')": lambda: ours("tsqr"),
             "dask-ml PCA(svd_solver='tsqr')": lambda: dask_ml("tsqr"),
             "dask-ml PCA(svd_solver='randomized')": lambda: dask_ml("randomized"),
             "dask.array.linalg.svd(X - mean)": dask_svd}
    rows = []
    for name, (seconds, (ev, note)) in race(cases, repeat, cold).items():
        rows.append({"method": name, "seconds": seconds, "note": note,
                     "rel err of var": "" if name == FLOOR or name.startswith("scan") else _rel(ev, ref_ev)})
    rows.append({"method": "scikit-learn PCA full SVD (in memory: fit)", "seconds": fit, "rel err of var": 0.0,
                 "note": f"load {load:.2f} s"})
    return _finish(rows, f"tall: {n:,} x {d}, codec {codec}, best of {repeat}"
                         + (", page cache emptied before each" if cold else "") + "; error vs scikit-learn full SVD")


def wide(n: int, d: int, k: int, codec: str, client, repeat: int) -> list[dict]:
    from dask_ml.decomposition import PCA as DaskMLPCA
    from sklearn.decomposition import PCA as SkPCA

    path = DATA / f"mixture-{n}x{d}-{codec}.zarr"
    if not path.exists():
        make_mixture(path, n, d, 30, cluster_std=1.0, seed=5, codec=codec, client=client)
    X = sm.open_dataset(path)["X"].data
    dask.compute(X.sum())
    _, [(exact_s, exact), (rand_s, rand)] = in_memory(
        X, [SkPCA(n_components=k, svd_solver="covariance_eigh"),
            SkPCA(n_components=k, svd_solver="randomized", random_state=0)], 1)
    ref = exact.explained_variance_

    def dask_ml():
        p = DaskMLPCA(n_components=k, svd_solver="randomized", iterated_power=4, random_state=0).fit(X)
        return np.asarray(p.explained_variance_), ""

    def ours():
        p = sm.PCA(n_components=k, random_state=0).fit(X)
        return p.explained_variance_, p.solver_

    rows = []
    cases = {"scan (zarr-python): X.sum()": lambda: _zarr_scan(path),
             f"scaleml PCA({k}, solver='auto')": ours,
             f"dask-ml PCA({k}, svd_solver='randomized')": dask_ml}
    for name, (seconds, (ev, note)) in race(cases, repeat).items():
        rows.append({"method": name, "seconds": seconds, "note": note,
                     "rel err of var": "" if name.startswith("scan") else _rel(ev, ref)})
    rows.append({"method": "scikit-learn covariance_eigh (in memory)", "seconds": exact_s, "rel err of var": 0.0})
    rows.append({"method": "scikit-learn randomized (in memory)", "seconds": rand_s,
                 "rel err of var": _rel(rand.explained_variance_, ref)})
    return _finish(rows, f"wide: {n:,} x {d}, {k} components, codec {codec}, best of {repeat}; "
                         "error vs scikit-learn covariance_eigh")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500,000 x 32 and 20,000 x 1,500")
    ap.add_argument("--codecs", default="none,zstd", help="codecs of the tall stores (the wide one: the first)")
    ap.add_argument("--wide-rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds (best time is kept)")
    ap.add_argument("--cold", action="store_true",
                    help="tall case: empty the page cache before every contender (root), as for data > memory")
    ap.add_argument("--tall-only", action="store_true", help="skip the wide case")
    args = ap.parse_args(argv)
    n, wide_shape = (500_000, (20_000, 1500)) if args.quick else (5_000_000, (args.wide_rows, 2000))
    with cluster_client() as client:
        codecs = args.codecs.split(",")
        out = {f"tall {c}": tall(n, 32, c, client, args.repeat, args.cold) for c in codecs}
        if not args.tall_only:
            wide_repeat = args.repeat if args.quick else max(1, args.repeat - 1)
            out["wide"] = wide(*wide_shape, 20, codecs[0], client, wide_repeat)
        return out


if __name__ == "__main__":
    Path(DATA).mkdir(parents=True, exist_ok=True)
    main()
