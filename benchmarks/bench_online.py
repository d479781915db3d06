"""Online learning and drift detection: scaleml_dask.online against River and scikit-learn, in one run.

Learners: a planted logistic stream (d = 32, 1,000,000 rows; ``--quick``: 100,000), fed to each library in
its natural input type, prepared outside the timed region in blocks of 10,000 rows (NumPy rows / batches
for us and scikit-learn, dicts / pandas DataFrames for River). A batch is prepared the same way for both
sides: River's DataFrame constructor copies the block, so ours gets a fresh copy too (both then start from
cache). Test accuracy on 200,000 fresh rows against the accuracy of the planted model on them (Bayes).
The floor rows time what any pass over those batches costs: a sum (NumPy, numba), the two BLAS
matrix-vector products of a gradient (``X @ w``, ``X.T @ r``), and River's own NumPy core on the ndarray.
Detectors: N(0, 1) with a 0.5σ mean shift at 50,000 of 100,000 values; updates/s, delay, false alarms; the
floor of a per-value Python API (a method that appends to a list) in the same run.

    python benchmarks/bench_online.py [--quick] [--cpu-time]
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

import numpy as np

from scaleml_dask import online as ol
from scaleml_dask.io.catalog import open_dataset
from scaleml_dask.io.synthetic import logistic_chunk, make_logistic

DATA = Path(__file__).parent / "data"
D = 32
BLOCK = 10_000
_now = time.perf_counter  # --cpu-time: time.thread_time


def _dataset(n: int):
    path = DATA / f"online_logistic_{n}_{D}.zarr"
    if not path.exists():
        make_logistic(path, n, D, chunk_rows=250_000, seed=7)
    return open_dataset(path)


def _timed(fn, blocks) -> float:
    """Sum of the times of fn(prepared block) over the blocks; preparation is not timed."""
    total = 0.0
    for prepared in blocks:
        t = _now()
        fn(*prepared)
        total += _now() - t
    return total


def _best_of(k: int, runs: dict) -> dict:
    """The fastest of ``k`` runs of each ``run() -> (seconds, result)``, taken in turns (run 1 of each, then
    run 2 of each, ...) so that a change of load on a shared machine falls on every contender alike."""
    best: dict = {}
    for _ in range(k):
        for name, run in runs.items():
            r = run()
            if name not in best or r[0] < best[name][0]:
                best[name] = r
    return best


def _numba_sum():
    from numba import njit

    @njit(fastmath=True)
    def column_sums(X):
        acc = np.zeros(X.shape[1])
        for i in range(X.shape[0]):
            for j in range(X.shape[1]):
                acc[j] += X[i, j]
        return acc

    return column_sums


def _river_core(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """What River's ``learn_many`` computes once its DataFrame is an ndarray (``linear_model/base.py``,
    ``optim/losses.Log.gradient``): margin, loss gradient, clip, gradient by einsum."""
    s = 2.0 * y - 1.0
    g = np.where(y == 0, 1.0, 1.0) * -s / (np.exp((X @ w + 0.5) * s) + 1.0)  # class weights 1, 1
    g = np.clip(g, -1e12, 1e12)
    return np.einsum("ij,i->j", X, g) / len(X)


def bench_learners(n: int, n_one_river: int) -> list[dict]:
    import pandas as pd
    from river import linear_model, optim
    from sklearn.linear_model import SGDClassifier

    ds = _dataset(n)
    coef, intercept = np.asarray(ds.attrs["coef"]), float(ds.attrs["intercept"])
    Xt, yt = logistic_chunk(99, 0, 200_000, coef=coef, intercept=intercept)
    bayes = float((((Xt @ coef + intercept) > 0) == (yt == 1)).mean())
    cols = [f"x{j}" for j in range(D)]

    def blocks(limit=None):
        for Xb, yb in ol.iter_batches(ds, BLOCK):
            if limit is not None and limit <= 0:
                return
            yield Xb.copy(), yb.copy()  # as River's DataFrame constructor copies its block
            if limit is not None:
                limit -= len(Xb)

    def river_acc(model):
        p = model.predict_many(pd.DataFrame(Xt, columns=cols)).to_numpy()
        return float((p == (yt == 1)).mean())

    rows = []

    def add(name, input_type, seconds, n_rows, acc):
        rows.append({"learner": name, "input": input_type, "samples/s": n_rows / seconds,
                     "test accuracy": acc, "Bayes - accuracy": bayes - acc, "rows": n_rows})

    # learn_many, batch 10,000: one step on the batch's mean gradient, SGD with learning rate 2 for both
    # (best of 3 passes, each with a fresh learner, in turns with River's and the floors below)
    ol.LogisticRegression().learn_many(Xt[:10], yt[:10])  # compile outside the timing

    def ours_many():
        m = ol.LogisticRegression(learning_rate=2.0)
        return _timed(m.learn_many, blocks()), m

    def river_many():
        m = linear_model.LogisticRegression(optimizer=optim.SGD(2.0), intercept_lr=2.0)
        return _timed(m.learn_many, ((pd.DataFrame(X, columns=cols), pd.Series(y == 1)) for X, y in blocks())), m

    # floors: what reading the same batches costs, and River's NumPy core without its DataFrame layer
    w, r = np.full(D, 0.1), np.ones(BLOCK)
    column_sums = _numba_sum()
    column_sums(Xt[:10])
    floors = {"floor: X.sum() (NumPy)": lambda X, y: X.sum(),
              "floor: column sums (numba)": lambda X, y: column_sums(X),
              "floor: X @ w (BLAS gemv)": lambda X, y: X @ w,
              "floor: X.T @ r (BLAS gemv)": lambda X, y: X.T @ r[:len(X)],
              "floor: X @ w and X.T @ r (a gradient's two gemv)": lambda X, y: X.T @ (X @ w - y),
              "River's NumPy core (no DataFrame)": lambda X, y: _river_core(X, y, w)}
    best = _best_of(3, {"ours": ours_many, "river": river_many,
                        **{name: (lambda fn=fn: (_timed(fn, blocks()), None)) for name, fn in floors.items()}})
    sec, ours = best["ours"]
    add("scaleml learn_many (SGD 2.0)", "NumPy batch", sec, n, float((ours.predict_many(Xt) == yt).mean()))
    sec, river = best["river"]
    add("River learn_many (SGD 2.0)", "pandas DataFrame", sec, n, river_acc(river))

    # learn_one with the defaults of both (SGD 0.01)
    ours = ol.LogisticRegression()
    ours.learn_one(Xt[0], 1)
    ours = ol.LogisticRegression()

    def loop_ours(rows_, ys):
        learn = ours.learn_one
        for x, y in zip(rows_, ys):
            learn(x, y)

    sec = _timed(loop_ours, ((list(X), y.astype(np.int64).tolist()) for X, y in blocks()))
    add("scaleml learn_one (SGD 0.01, numba)", "NumPy row", sec, n, float((ours.predict_many(Xt) == yt).mean()))
    river = linear_model.LogisticRegression()

    def loop_river(dicts, ys):
        learn = river.learn_one
        for x, y in zip(dicts, ys):
            learn(x, y)

    sec = _timed(loop_river, (([dict(zip(cols, r)) for r in X.tolist()], (y == 1).tolist())
                              for X, y in blocks(n_one_river)))
    add("River learn_one (SGD 0.01)", "dict", sec, min(n, n_one_river), river_acc(river))

    sk = SGDClassifier(loss="log_loss", random_state=0)
    sec = _timed(lambda X, y: sk.partial_fit(X, y, classes=[0.0, 1.0]), blocks())
    add("scikit-learn SGDClassifier.partial_fit", "NumPy batch", sec, n, float((sk.predict(Xt) == yt).mean()))
    for name in floors:
        rows.append({"learner": name, "input": "NumPy batch", "samples/s": n / best[name][0],
                     "test accuracy": None, "Bayes - accuracy": None, "rows": n})
    return rows


def _delay(hits: np.ndarray, change: int) -> tuple[int | None, int]:
    after = hits[hits >= change]
    return (int(after[0]) - change if len(after) else None), int((hits < change).sum())


def bench_detectors(n_stationary_runs: int) -> tuple[list[dict], dict]:
    from river import drift

    v = np.random.default_rng(11).standard_normal(100_000)
    v[50_000:] += 0.5
    vl = v.tolist()
    rows = []

    def add(name, how, seconds, hits):
        delay, false = _delay(np.asarray(hits, dtype=np.int64), 50_000)
        rows.append({"detector": name, "how": how, "updates/s": len(v) / seconds, "delay": delay,
                     "false alarms": false})

    def ours_many(make):
        make().update_many(v[:100])  # compile

        def run():
            det = make()
            t = _now()
            hits = det.update_many(v)
            return _now() - t, hits

        return run

    def ours_one(make):  # a fresh detector each run
        det = make()
        for x in vl[:100]:  # past a clock tick: ADWIN hands queued values to its kernel there (compile)
            det.update(x)

        def run():
            upd = make().update
            t = _now()
            hits = [i for i, x in enumerate(vl) if upd(x)]
            return _now() - t, hits

        return run

    class Appender:
        def __init__(self):
            self.values = []

        def update(self, x):
            self.values.append(x)
            return False

    def river_one(make):
        def run():
            det = make()
            upd, hits = det.update, []
            t = _now()
            for i, x in enumerate(vl):
                upd(x)
                if det.drift_detected:
                    hits.append(i)
            return _now() - t, hits

        return run

    cases = {("scaleml ADWIN", "update_many (NumPy array)"): ours_many(ol.ADWIN),
             ("scaleml ADWIN", "update() per value"): ours_one(ol.ADWIN),
             ("River ADWIN (Rust core)", "update() per value"): river_one(drift.ADWIN),
             ("scaleml PageHinkley", "update_many (NumPy array)"): ours_many(ol.PageHinkley),
             ("scaleml PageHinkley", "update() per value"): ours_one(ol.PageHinkley),
             ("River PageHinkley, River defaults", "update() per value"): river_one(drift.PageHinkley),
             ("River PageHinkley, our defaults", "update() per value"):
                 river_one(lambda: drift.PageHinkley(delta=0.25, threshold=40.0, alpha=1.0)),
             ("floor: a method appending to a list", "update() per value"): ours_one(Appender)}
    gc.collect()  # what the learners left behind is not collected inside one contender's timing
    for (name, how), (sec, hits) in _best_of(5, cases).items():
        add(name, how, sec, hits)

    alarms = {"ADWIN (delta 0.002, River's)": 0, "ADWIN (delta 1e-4)": 0, "PageHinkley": 0}
    for seed in range(n_stationary_runs):
        s = np.random.default_rng(1000 + seed).standard_normal(1_000_000)
        alarms["ADWIN (delta 0.002, River's)"] += len(ol.ADWIN().update_many(s))
        alarms["ADWIN (delta 1e-4)"] += len(ol.ADWIN(delta=1e-4).update_many(s))
        alarms["PageHinkley"] += len(ol.PageHinkley().update_many(s))
    return rows, {"runs of 10^6 stationary N(0,1) values": n_stationary_runs, **alarms}


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    fmt = {"samples/s": "{:,.0f}", "updates/s": "{:,.0f}", "test accuracy": "{:.4f}",
           "Bayes - accuracy": "{:+.4f}", "rows": "{:,}"}
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.get(k, "{}").format(r[k]) if r[k] is not None else "-"
                                       for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (< 1 min)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="on a shared, loaded machine: time the CPU seconds of the one thread that does the "
                         "work (BLAS limited to that thread), not wall time")
    args = ap.parse_args(argv)
    global _now
    _now = time.perf_counter
    if args.cpu_time:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # (BLAS threads spinning between calls would also count against whoever runs next)
        _now = time.thread_time
    print(f"timer: {_now.__name__}")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    n = 100_000 if args.quick else 1_000_000
    learners = bench_learners(n, n_one_river=50_000 if args.quick else n)
    print(_table(learners))
    by = {r["learner"].split(" (")[0]: r["samples/s"] for r in learners}
    print(f"\nlearn_many: scaleml / River = {by['scaleml learn_many'] / by['River learn_many']:.1f}x  (target >= 5); "
          f"scaleml / 'X @ w and X.T @ r' = {by['scaleml learn_many'] / by['floor: X @ w and X.T @ r']:.2f}, "
          f"/ numba column sums = {by['scaleml learn_many'] / by['floor: column sums']:.2f}")
    print(f"learn_one:  scaleml / River = {by['scaleml learn_one'] / by['River learn_one']:.1f}x  (target >= 3)")
    detectors, alarms = bench_detectors(2 if args.quick else 20)
    print()
    print(_table(detectors))
    d = {(r["detector"], r["how"]): r["updates/s"] for r in detectors}
    river = d[("River ADWIN (Rust core)", "update() per value")]
    print(f"\nADWIN update_many / River update: {d[('scaleml ADWIN', 'update_many (NumPy array)')] / river:.1f}x; "
          f"update() per value / River: {d[('scaleml ADWIN', 'update() per value')] / river:.2f}x")
    ph = d[("River PageHinkley, our defaults", "update() per value")]
    print(f"PageHinkley update() per value / River (same parameters): "
          f"{d[('scaleml PageHinkley', 'update() per value')] / ph:.2f}x")
    print("false alarms on stationary streams:", alarms)
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
