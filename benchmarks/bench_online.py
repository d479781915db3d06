"""Online learning and drift detection: scaleml_dask.online against River and scikit-learn, in one run.

Learners: a planted logistic stream (d = 32, 1,000,000 rows; ``--quick``: 100,000), fed to each library in
its natural input type, prepared outside the timed region in blocks of 10,000 rows (NumPy rows / batches
for us and scikit-learn, dicts / pandas DataFrames for River). Test accuracy on 200,000 fresh rows against
the accuracy of the planted model on them (Bayes).
Detectors: N(0, 1) with a 0.5σ mean shift at 50,000 of 100,000 values; updates/s, delay, false alarms.

    python benchmarks/bench_online.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scaleml_dask import online as ol
from scaleml_dask.io.catalog import open_dataset
from scaleml_dask.io.synthetic import logistic_chunk, make_logistic

DATA = Path(__file__).parent / "data"
D = 32
BLOCK = 10_000


def _dataset(n: int):
    path = DATA / f"online_logistic_{n}_{D}.zarr"
    if not path.exists():
        make_logistic(path, n, D, chunk_rows=250_000, seed=7)
    return open_dataset(path)


def _timed(fn, blocks) -> float:
    """Sum of the times of fn(prepared block) over the blocks; preparation is not timed."""
    total = 0.0
    for prepared in blocks:
        t = time.perf_counter()
        fn(*prepared)
        total += time.perf_counter() - t
    return total


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
            yield Xb, yb
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
    ours = ol.LogisticRegression(learning_rate=2.0)
    ours.learn_many(Xt[:10], yt[:10])  # compile outside the timing
    ours = ol.LogisticRegression(learning_rate=2.0)
    sec = _timed(ours.learn_many, blocks())
    add("scaleml learn_many (SGD 2.0)", "NumPy batch", sec, n, float((ours.predict_many(Xt) == yt).mean()))
    river = linear_model.LogisticRegression(optimizer=optim.SGD(2.0), intercept_lr=2.0)
    sec = _timed(river.learn_many, ((pd.DataFrame(X, columns=cols), pd.Series(y == 1)) for X, y in blocks()))
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
        det = make()
        t = time.perf_counter()
        hits = det.update_many(v)
        return time.perf_counter() - t, hits

    def ours_one(make):
        det = make()
        for x in vl[:100]:  # past a clock tick: ADWIN hands queued values to its kernel there (compile)
            det.update(x)
        det = make()
        upd = det.update
        t = time.perf_counter()
        hits = [i for i, x in enumerate(vl) if upd(x)]
        return time.perf_counter() - t, hits

    def river_one(det):
        upd, hits = det.update, []
        t = time.perf_counter()
        for i, x in enumerate(vl):
            upd(x)
            if det.drift_detected:
                hits.append(i)
        return time.perf_counter() - t, hits

    add("scaleml ADWIN", "update_many (NumPy array)", *ours_many(ol.ADWIN))
    add("scaleml ADWIN", "update() per value", *ours_one(ol.ADWIN))
    add("River ADWIN (Rust core)", "update() per value", *river_one(drift.ADWIN()))
    add("scaleml PageHinkley", "update_many (NumPy array)", *ours_many(ol.PageHinkley))
    add("scaleml PageHinkley", "update() per value", *ours_one(ol.PageHinkley))
    add("River PageHinkley, River defaults", "update() per value", *river_one(drift.PageHinkley()))
    add("River PageHinkley, our defaults", "update() per value",
        *river_one(drift.PageHinkley(delta=0.25, threshold=40.0, alpha=1.0)))

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
    args = ap.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    learners = bench_learners(n, n_one_river=50_000 if args.quick else n)
    print(_table(learners))
    by = {r["learner"].split(" (")[0]: r["samples/s"] for r in learners}
    print(f"\nlearn_many: scaleml / River = {by['scaleml learn_many'] / by['River learn_many']:.1f}x  (target >= 5)")
    print(f"learn_one:  scaleml / River = {by['scaleml learn_one'] / by['River learn_one']:.1f}x  (target >= 3)")
    detectors, alarms = bench_detectors(2 if args.quick else 20)
    print()
    print(_table(detectors))
    d = {(r["detector"], r["how"]): r["updates/s"] for r in detectors}
    river = d[("River ADWIN (Rust core)", "update() per value")]
    print(f"\nADWIN update_many / River update: {d[('scaleml ADWIN', 'update_many (NumPy array)')] / river:.1f}x; "
          f"update() per value / River: {d[('scaleml ADWIN', 'update() per value')] / river:.2f}x")
    print("false alarms on stationary streams:", alarms)


if __name__ == "__main__":
    main()
