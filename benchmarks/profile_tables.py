"""Where the tables pipeline's fit goes against the estimator alone, per pass, in CPU seconds of one process.

The passes of ``bench_tables.py``'s SGD comparison run one after the other on the synchronous scheduler (one
thread, no cluster), so that the figures hold on a busy machine, where the wall times of a 2-worker cluster
swing by tens of percent: the pipeline's statistics pass (every transformer's statistics, and the target's
classes for SGDClassifier, in one read), one local SGD epoch over the table store's chunks as the pipeline hands
them (``TableBlock``: read, canonical form, the transform folded into ``local_kernel_table``), and for the
estimator alone its class pass over ``y`` and one epoch over the encoded matrix. The fit is about the statistics
pass plus ``--epochs`` epochs; the estimator alone the class pass plus the epochs. Reads the stores
``bench_tables.py`` made (the table store and its encoded matrix; ``--data``: another directory of them) and
writes nothing. Best of ``--repeat``.

    python benchmarks/profile_tables.py [--n 5000000] [--epochs 2] [--repeat 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import bench_tables as bt
import numpy as np


def _best(times: dict, key: str, run) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    times[key] = min(times.get(key, (np.inf, np.inf)), (time.process_time() - cpu, time.perf_counter() - wall))


def _pipeline_input(store: str, max_categories: int):
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
        make_pipeline(bt._preprocessing(bt._ours_namespace(), max_categories), bt._sgd(1)).fit(store)
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
    ap.add_argument("--data", type=Path, default=bt.DATA, help="the directory of bench_tables.py's stores")
    args = ap.parse_args(argv)
    import dask

    import scaleml_dask as sm
    from scaleml_dask._tabular import as_table, target_values
    from scaleml_dask.passes import distinct_values, map_row_chunks
    from scaleml_dask.preprocessing._base import fit_node
    from scaleml_dask.sgd._blocks import local_block
    from scaleml_dask.validation import check_X_y

    store = str(args.data / f"tables_{args.n}.zarr")
    encoded = sm.open_dataset(args.data / f"tables_encoded_{args.n}_{args.max_categories}.zarr")
    bt._warm()
    ns, times = bt._ours_namespace(), {}
    with dask.config.set(scheduler="synchronous"):
        for _ in range(args.repeat):
            table = as_table(store)
            _best(times, "statistics pass (and the classes)", lambda table=table: fit_node(
                bt._preprocessing(ns, args.max_categories), table, target_values(table)))
            _best(times, "class pass over y (estimator alone)", lambda: distinct_values(encoded["y"].data))
        sgd = bt._sgd(1)
        sgd._validate_params()
        problem = sgd._config(np.array([0.0, 1.0]), sgd.validation_fraction).problem
        for name, (X, y) in (("epoch: pipeline (table chunks)", _pipeline_input(store, args.max_categories)),
                             ("epoch: estimator alone (encoded matrix)", (encoded["X"].data, encoded["y"].data))):
            dX, dy = check_X_y(X, y, y_numeric=True, accept_sparse=True)
            W = np.zeros((dX.shape[1] + 1, 1))
            for _ in range(args.repeat):
                _best(times, name, lambda dX=dX, dy=dy, W=W: dask.compute(*map_row_chunks(
                    local_block, dX, dy, W=W, seeds=[1], t0=0.0, problem=problem, with_val=False)))
    print(f"| pass ({args.n:,} rows, 1 thread) | CPU s | wall s |\n|---|---|---|")
    for key, (cpu, wall) in times.items():
        print(f"| {key} | {cpu:.2f} | {wall:.2f} |")
    fit = times["statistics pass (and the classes)"][0] + args.epochs * times["epoch: pipeline (table chunks)"][0]
    alone = times["class pass over y (estimator alone)"][0] + args.epochs * times[
        "epoch: estimator alone (encoded matrix)"][0]
    print(f"| fit ~ statistics + {args.epochs} epochs / alone ~ classes + {args.epochs} epochs [target <= 1.3] | "
          f"{fit / alone:.2f} | |")


if __name__ == "__main__":
    main()
