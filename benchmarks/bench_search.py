"""Model selection at scale: a hyperparameter search whose candidates train in the same read of each chunk, against
scikit-learn's searches in memory, dask-ml's Hyperband, and one plain fit; RidgeCV against one LinearRegression.

Data: planted logistic rows, 5,000,000 × 32 in zarr (``--quick``: 500,000), chunks of 250,000 rows (50,000); a
fresh held-out set of 200,000 rows of the same planted model. Candidates: alpha × eta0 × penalty (and schedule
``constant`` / ``invscaling``, which scikit-learn's ``SGDClassifier`` has too), a few of them divergent on purpose
(``eta0=1e4``, constant), 3 folds. On the same LocalCluster (2 worker processes × 1 thread), warmed:

- **ours**: ``GridSearchCV`` over the candidate list (every candidate × fold trains in the same read of each chunk:
  ``--rounds`` rounds of local-mode SGD, one pass each, + the scoring pass), and ``HalvingRandomSearchCV`` over
  the same candidates (samples seen as the resource, as scikit-learn's: factor 2; a rung reads only the chunks it
  trains on) with ``min_resources="exhaust"`` (the last rung ``--rounds`` epochs) and ``"smallest"``; times
  without the refit (its own column);
- **plain fit**: one ``SGDClassifier(mode="local")`` with as many rounds as the search made passes — the
  yardstick of the target "16 × 3 in ≤ 2× one fit with the same number of passes";
- **scikit-learn**: ``RandomizedSearchCV`` and ``HalvingRandomSearchCV`` (factor 2, ``min_resources`` its default
  ``"smallest"`` and ``"exhaust"``) of ``SGDClassifier`` (``max_iter`` = ``--rounds`` epochs, ``tol=None``) over
  the same candidates, ``n_jobs=2``, on the store loaded into memory — the load is in their time (and shown
  apart). ``same-config sklearn / this``: the ratio to the scikit-learn search that runs the same configuration
  (our grid: RandomizedSearchCV over the same candidates; our halving: scikit-learn's with the same
  ``min_resources``); the halving rows show their rungs (candidates and samples per rung);
- **dask-ml**: ``HyperbandSearchCV`` of ``SGDClassifier`` on the dask arrays (its outcome recorded, a failure as
  such);
- every best model is scored on the held-out rows (accuracy); target: ours within 0.001 of scikit-learn's best.
- ours and the plain fit also report the CPU seconds of the client and worker processes (``CPU s``, ``CPU × plain
  fit``): on a shared machine their ratio is steadier than the ratio of wall times.

``--ridge``: ``RidgeCV`` (5 folds × 50 alphas, one pass) against one ``LinearRegression`` fit and a scan, on a
5,000,000 × 32 regression store (``--ridge-only``: that table alone). Prints the tables (``--out FILE`` writes them
as markdown).

    python benchmarks/bench_search.py [--quick] [--candidates 16,64] [--rounds 2] [--repeat 2] [--no-peers]
        [--peers sklearn-random,sklearn-halving,sklearn-halving-exhaust,dask-ml] [--ridge | --ridge-only]
"""

from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path

import dask
import numpy as np
from _floor import drop_if_without_manifest

DATA = Path(__file__).parent / "data"
#: The halving searches' ``min_resources``: the same schedule as each other (factor 2) at each of the two.
HALVING = ("exhaust", "smallest")
D = 32
FOLDS = 3


def _store(kind: str, n: int, chunk: int, client) -> Path:
    from scaleml_dask.io.synthetic import make_logistic, make_regression

    path = DATA / f"search_{kind}_{n}_{D}.zarr"
    drop_if_without_manifest(path)
    if not path.exists():
        t = time.perf_counter()
        make = make_logistic if kind == "logistic" else make_regression
        make(path, n, D, chunk_rows=chunk, seed=11, client=client)
        print(f"made {path} in {time.perf_counter() - t:.1f} s")
    return path


def candidates(n: int) -> list[dict]:
    """``n`` candidates: a grid of alpha × eta0 × penalty × schedule, one in eight divergent (eta0 = 1e4,
    constant step)."""
    grid = [{"alpha": a, "eta0": e, "penalty": p, "learning_rate": s}
            for s in ("invscaling", "constant") for p in ("l2", "l1") for e in (0.003, 0.01, 0.03, 0.1)
            for a in (1e-6, 1e-5, 1e-4, 1e-3)]
    rng = np.random.default_rng(0)
    chosen = [grid[i] for i in rng.permutation(len(grid))[:n]]
    for i in range(0, n, 8):
        chosen[i] = {**chosen[i], "eta0": 1e4, "learning_rate": "constant"}
    return chosen


def _warm_worker() -> None:
    from scaleml_dask.coldstart import first_calls

    first_calls(["SGD blocks", "fused search"])


def _scan(X, y) -> float:
    t = time.perf_counter()
    dask.compute(X.map_blocks(lambda b: b.sum(axis=0, keepdims=True), chunks=(1, X.shape[1])).sum(axis=0),
                 y.sum())
    return time.perf_counter() - t


def _accuracy(model, Xt, yt) -> float:
    return float((np.asarray(model.predict(Xt)) == yt).mean())


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process (the client) and by every worker process: on a shared machine
    the ratio of CPU seconds is steadier than the ratio of wall times."""
    from distributed import get_client

    return time.process_time() + sum(get_client().run(time.process_time).values())


def _ours(path: Path, cands: list[dict], rounds: int, batch: int, Xt, yt, halving: str | None) -> dict:
    """Our grid (``halving=None``) or halving search with ``min_resources=halving``."""
    import scaleml_dask as sm
    from scaleml_dask.model_selection import GridSearchCV, HalvingRandomSearchCV, KFold

    base = sm.SGDClassifier(mode="local", rounds=rounds, batch_size=batch, classes=[0.0, 1.0], power_t=0.25,
                            random_state=0)
    cv = KFold(FOLDS, random_state=0)
    space = [{k: [v] for k, v in c.items()} for c in cands]
    if halving:
        s = HalvingRandomSearchCV(base, space, n_candidates=len(cands), factor=2, min_resources=halving, cv=cv,
                                  random_state=0, refit=False)
    else:
        s = GridSearchCV(base, space, cv=cv, refit=False)
    cpu, t0 = _cpu_seconds(), time.perf_counter()
    s.fit(path)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu
    t0 = time.perf_counter()
    best = base.set_params(**s.best_params_).fit(path)  # the refit, timed apart
    res = s.cv_results_
    return {"seconds": seconds, "CPU s": cpu, "refit": time.perf_counter() - t0, "passes": s.passes_,
            "diverged": int(res["diverged"][res["iter"] == 0].sum() if halving else res["diverged"].sum()),
            "cv score": s.best_score_, "held-out accuracy": _accuracy(best, Xt, yt), "best": s.best_params_,
            **(_rungs(s) if halving else {})}


def _rungs(s) -> dict:
    """A halving search's schedule: candidates and resource (samples) per iteration."""
    return {"candidates per rung": "/".join(map(str, s.n_candidates_)),
            "samples per rung": "/".join(f"{r:,}" for r in s.n_resources_)}


def _plain(path: Path, rounds: int, batch: int, params: dict, Xt, yt) -> dict:
    import scaleml_dask as sm

    cpu, t0 = _cpu_seconds(), time.perf_counter()
    m = sm.SGDClassifier(mode="local", rounds=rounds, batch_size=batch, classes=[0.0, 1.0], power_t=0.25,
                         random_state=0, **params).fit(path)
    return {"seconds": time.perf_counter() - t0, "CPU s": _cpu_seconds() - cpu, "passes": rounds,
            "held-out accuracy": _accuracy(m, Xt, yt)}


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    import zarr

    t0 = time.perf_counter()
    g = zarr.open_group(str(path), mode="r")
    X, y = g["X"][:], g["y"][:]
    return X, y, time.perf_counter() - t0


def _sklearn(path: Path, cands: list[dict], rounds: int, Xt, yt, halving: str | None) -> dict:
    """scikit-learn's RandomizedSearchCV (``halving=None``) or HalvingRandomSearchCV with
    ``min_resources=halving``."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import HalvingRandomSearchCV, KFold, RandomizedSearchCV

    X, y, load = _load(path)
    space = [{k: [v] for k, v in c.items()} for c in cands]
    est = SGDClassifier(loss="log_loss", max_iter=rounds, tol=None, power_t=0.25, random_state=0)
    cv = KFold(FOLDS, shuffle=True, random_state=0)
    t0 = time.perf_counter()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning / overflow of the divergent candidates
        if halving:
            s = HalvingRandomSearchCV(est, space, n_candidates=len(cands), factor=2, min_resources=halving, cv=cv,
                                      n_jobs=2, random_state=0)
        else:
            s = RandomizedSearchCV(est, space, n_iter=len(cands), cv=cv, n_jobs=2, random_state=0)
        s.fit(X, y)
    seconds = time.perf_counter() - t0
    return {"seconds": load + seconds - s.refit_time_, "load": load, "refit": s.refit_time_,
            "cv score": s.best_score_, "held-out accuracy": _accuracy(s.best_estimator_, Xt, yt),
            "best": s.best_params_, **(_rungs(s) if halving else {})}


def _dask_ml(path: Path, cands: list[dict], Xt, yt) -> dict:
    from dask_ml.model_selection import HyperbandSearchCV
    from sklearn.linear_model import SGDClassifier

    import scaleml_dask as sm

    ds = sm.open_dataset(path)
    space = {"alpha": sorted({c["alpha"] for c in cands}), "eta0": sorted({c["eta0"] for c in cands})}
    t0 = time.perf_counter()
    try:
        s = HyperbandSearchCV(SGDClassifier(loss="log_loss", learning_rate="constant"), space, max_iter=9,
                              random_state=0)
        s.fit(ds.X.data, ds.y.data, classes=[0.0, 1.0])
    except Exception as exc:  # noqa: BLE001 - recorded as the outcome
        return {"seconds": time.perf_counter() - t0, "failed": f"{type(exc).__name__}: {exc}"[:160]}
    return {"seconds": time.perf_counter() - t0, "held-out accuracy": _accuracy(s.best_estimator_, Xt, yt),
            "best": s.best_params_}


def _ridge(client, n: int, chunk: int, repeat: int) -> list[dict]:
    import scaleml_dask as sm
    from scaleml_dask.model_selection import KFold

    path = _store("regression", n, chunk, client)
    ds = sm.open_dataset(path)
    X, y = ds.X.data, ds.y.data
    sm.LinearRegression().fit(X[:chunk], y[:chunk])
    sm.RidgeCV(np.logspace(-3, 3, 50), cv=KFold(5, random_state=0)).fit(X[:chunk], y[:chunk])
    best: dict[str, float] = {}
    for _ in range(repeat):
        for name, fn in (("scan", lambda: _scan(X, y)),
                         ("LinearRegression", lambda: _timed(lambda: sm.LinearRegression().fit(path))),
                         ("RidgeCV (5 folds × 50 alphas)", lambda: _timed(
                             lambda: sm.RidgeCV(np.logspace(-3, 3, 50), cv=KFold(5, random_state=0)).fit(path)))):
            best[name] = min(best.get(name, np.inf), fn())
    base = best["LinearRegression"]
    return [{"fit": k, "seconds": v, "× LinearRegression": v / base, "× scan": v / best["scan"]}
            for k, v in best.items()]


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="500,000 rows: a smoke run, not a measurement")
    ap.add_argument("--rows", type=int, default=5_000_000, help="rows of the store (chunks of 250,000)")
    ap.add_argument("--candidates", default="16,64")
    ap.add_argument("--rounds", type=int, default=2, help="epochs (rounds) per candidate")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2, help="runs of our contenders; the best time is kept")
    ap.add_argument("--no-peers", action="store_true", help="ours and the plain fit only")
    ap.add_argument("--peers-at", default="16", help="candidate counts at which the peers run")
    ap.add_argument("--peers", default="sklearn-random,sklearn-halving,sklearn-halving-exhaust,dask-ml",
                    help="which peers run (sklearn-random: RandomizedSearchCV, the slowest)")
    ap.add_argument("--ridge", action="store_true", help="also RidgeCV against LinearRegression")
    ap.add_argument("--ridge-only", action="store_true", help="only RidgeCV against LinearRegression (no search)")
    ap.add_argument("--out", help="also write the tables as markdown to this file")
    args = ap.parse_args(argv)
    from distributed import Client, LocalCluster

    n, chunk = (500_000, 50_000) if args.quick else (args.rows, 250_000)
    DATA.mkdir(parents=True, exist_ok=True)
    tables: dict[str, list[dict]] = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      memory_limit="8GiB") as cluster, Client(cluster) as client:
        client.run(_warm_worker)
        _warm_worker()
        if not args.ridge_only:
            _searches(args, client, n, chunk, tables)
        if args.ridge or args.ridge_only:
            title = f"RidgeCV, {n:,} × {D} rows"
            tables[title] = _ridge(client, n, chunk, args.repeat)
            print(_table(title, tables[title]), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(_table(title, rows) for title, rows in tables.items()))


def _searches(args, client, n: int, chunk: int, tables: dict) -> None:
    """The search tables (one per candidate count) into ``tables``."""
    from scaleml_dask.io.synthetic import logistic_chunk

    path = _store("logistic", n, chunk, client)
    import scaleml_dask as sm

    ds = sm.open_dataset(path)
    coef, b0 = np.asarray(ds.attrs["coef"]), float(ds.attrs["intercept"])
    Xt, yt = logistic_chunk(99, 0, 200_000, coef=coef, intercept=b0)
    bayes = float((((Xt @ coef + b0) > 0) == (yt == 1)).mean())
    _scan(ds.X.data, ds.y.data)  # the page cache warm for everyone
    for N in [int(c) for c in args.candidates.split(",")]:
        cands = candidates(N)
        rows: list[dict] = []
        best: dict[str, dict] = {}
        for _ in range(args.repeat):
            for name, fn in ((f"ours: GridSearchCV ({N} × {FOLDS}, fused)", lambda cands=cands: _ours(
                                path, cands, args.rounds, args.batch_size, Xt, yt, None)),
                             *((f"ours: HalvingRandomSearchCV (fused, n_samples, {m})", lambda cands=cands, m=m: _ours(
                                 path, cands, args.rounds, args.batch_size, Xt, yt, m)) for m in HALVING)):
                r = fn()
                if name not in best or r["seconds"] < best[name]["seconds"]:
                    best[name] = r
            grid = best[f"ours: GridSearchCV ({N} × {FOLDS}, fused)"]
            r = _plain(path, grid["passes"], args.batch_size, grid["best"], Xt, yt)
            key = f"plain fit ({grid['passes']} rounds = the search's passes)"
            if key not in best or r["seconds"] < best[key]["seconds"]:
                best[key] = r
        rows += [{"contender": k, **v} for k, v in best.items()]
        if not args.no_peers and str(N) in args.peers_at.split(","):
            peers = (("sklearn-random", "scikit-learn RandomizedSearchCV (in memory, load included)",
                      lambda cands=cands: _sklearn(path, cands, args.rounds, Xt, yt, None)),
                     ("sklearn-halving", "scikit-learn HalvingRandomSearchCV (smallest, in memory, load included)",
                      lambda cands=cands: _sklearn(path, cands, args.rounds, Xt, yt, "smallest")),
                     ("sklearn-halving-exhaust",
                      "scikit-learn HalvingRandomSearchCV (exhaust, in memory, load included)",
                      lambda cands=cands: _sklearn(path, cands, args.rounds, Xt, yt, "exhaust")),
                     ("dask-ml", "dask-ml HyperbandSearchCV", lambda cands=cands: _dask_ml(path, cands, Xt, yt)))
            for _, name, fn in (p for p in peers if p[0] in args.peers.split(",")):
                try:
                    rows.append({"contender": name, **fn()})
                except Exception as exc:  # noqa: BLE001 - a peer's failure is a result
                    traceback.print_exc()
                    rows.append({"contender": name, "failed": f"{type(exc).__name__}: {exc}"[:160]})
        plain = next(r for r in rows if r["contender"].startswith("plain fit"))
        sk = [r for r in rows if r["contender"].startswith("scikit-learn") and "seconds" in r]
        for r in rows:
            if "seconds" in r:
                r["× plain fit"] = r["seconds"] / plain["seconds"]
                if "CPU s" in r:
                    r["CPU × plain fit"] = r["CPU s"] / plain["CPU s"]
                if sk:
                    r["sklearn best / this"] = min(s["seconds"] for s in sk) / r["seconds"]
                peer = _same_config_peer(r["contender"], sk)
                if peer is not None:
                    r["same-config sklearn / this"] = peer["seconds"] / r["seconds"]
            if "held-out accuracy" in r:
                r["Bayes − acc"] = bayes - r["held-out accuracy"]
        title = f"{N} candidates × {FOLDS} folds, {n:,} × {D} rows, {args.rounds} epochs each"
        tables[title] = rows
        print(_table(title, rows), flush=True)


def _same_config_peer(contender: str, sklearn_rows: list[dict]) -> dict | None:
    """The scikit-learn row that runs what our ``contender`` runs: RandomizedSearchCV over the same candidates for
    our grid (every candidate trained in full), HalvingRandomSearchCV with the same ``min_resources`` for our
    halving."""
    if not contender.startswith("ours:"):
        return None
    want = ("RandomizedSearchCV" if "GridSearchCV" in contender else
            next(f"HalvingRandomSearchCV ({m}," for m in HALVING if f", {m})" in contender))
    return next((r for r in sklearn_rows if want in r["contender"]), None)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={w:g}" if isinstance(w, float) else f"{k}={w}" for k, w in v.items())
    return str(v)


def _table(title: str, rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c, "—")) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
