"""Where the tables pipeline's fit goes against the estimator alone, per pass, in CPU seconds of one process.

The passes of ``bench_tables.py``'s SGD comparison run one after the other on the synchronous scheduler (one
thread, no cluster), so that the figures hold on a busy machine, where the wall times of a 2-worker cluster
swing by tens of percent: the statistics pass (``ColumnTransformer.fit``: every transformer's statistics), one
local SGD epoch over the table store's chunks as the pipeline hands them (``TableBlock``: read, canonical form,
the transform folded into ``local_kernel_table``), and one epoch over the encoded matrix (what the estimator
alone reads). The fit is about the statistics pass plus ``--epochs`` epochs; the estimator alone the epochs (both
also run a class pass over ``y`` and score the held-out rows: the same for both, left out). Reads the stores
``bench_tables.py`` made (the table store and its encoded matrix) and writes nothing. Best of ``--repeat``.

    python benchmarks/profile_tables.py [--n 5000000] [--epochs 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import bench_tables as bt
import numpy as np


def _best(times: dict, key: str, run) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    times[key] = min(times.get(key, (np.inf, np.inf)), (time.process_time() - cpu, time.perf_counter() - wall))


def _pipeline_input(store: str):
    """The (X, y) the pipeline hands SGDClassifier (its statistics computed), without fitting it."""
    from scaleml_dask.pipeline import make_pipeline
    from scaleml_dask.sgd import estimators

    class Handed(Exception):
        pass

    got = {}

    def capture(self, X, y=None, **kwargs):
        got["X"], got["y"] = X, y
        raise Handed

    fit, estimators.SGDClassifier.fit = estimators.SGDClassifier.fit, capture
    try:
        make_pipeline(bt._preprocessing(bt._ours_namespace(), 32), bt._sgd(1)).fit(store)
    except Handed:
        pass
    finally:
        estimators.SGDClassifier.fit = fit
    return got["X"], got["y"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5_000_000)
    ap.add_argument("--max-categories", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    import dask

    import scaleml_dask as sm
    from scaleml_dask.passes import map_row_chunks
    from scaleml_dask.sgd._blocks import local_block
    from scaleml_dask.validation import check_X_y

    store = str(bt.DATA / f"tables_{args.n}.zarr")
    encoded = sm.open_dataset(bt.DATA / f"tables_encoded_{args.n}_{args.max_categories}.zarr")
    bt._warm()
    ns, times = bt._ours_namespace(), {}
    with dask.config.set(scheduler="synchronous"):
        for _ in range(args.repeat):
            _best(times, "statistics pass", lambda: bt._preprocessing(ns, args.max_categories).fit(store))
        sgd = bt._sgd(1)
        sgd._validate_params()
        problem = sgd._config(np.array([0.0, 1.0]), sgd.validation_fraction).problem
        for name, (X, y) in (("epoch: pipeline (table chunks)", _pipeline_input(store)),
                             ("epoch: estimator alone (encoded matrix)", (encoded["X"].data, encoded["y"].data))):
            dX, dy = check_X_y(X, y, y_numeric=True, accept_sparse=True)
            W = np.zeros((dX.shape[1] + 1, 1))
            for _ in range(args.repeat):
                _best(times, name, lambda dX=dX, dy=dy, W=W: dask.compute(*map_row_chunks(
                    local_block, dX, dy, W=W, seeds=[1], t0=0.0, problem=problem, with_val=False)))
    print(f"| pass ({args.n:,} rows, 1 thread) | CPU s | wall s |\n|---|---|---|")
    for key, (cpu, wall) in times.items():
        print(f"| {key} | {cpu:.2f} | {wall:.2f} |")
    fit = times["statistics pass"][0] + args.epochs * times["epoch: pipeline (table chunks)"][0]
    alone = args.epochs * times["epoch: estimator alone (encoded matrix)"][0]
    print(f"| fit ~ statistics + {args.epochs} epochs / alone ~ {args.epochs} epochs [target <= 1.3] | "
          f"{fit / alone:.2f} | |")


if __name__ == "__main__":
    main()
