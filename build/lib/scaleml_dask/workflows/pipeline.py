"""The demo pipeline: make the demo datasets, summarise them, then run each workflow into one report.

Steps are the workflow scripts beside this file (``regression``, ``pca``, ``sgd``, ``online``, ``tsne``),
each run with its own YAML config; ``steps:`` in pipeline.yaml chooses which. A rerun of an interrupted
pipeline replays the steps it had finished (``runner.resumable_step``). Before the steps it pays and measures
the one-time costs (the report's "One-time costs"), so that the steps' times are the steady state. With
``--quick`` the pipeline's ``quick:`` section (the small datasets) and each step's own apply.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np

import scaleml_dask as sm
from scaleml_dask.coldstart import first_calls
from scaleml_dask.io.catalog import describe, load_catalog
from scaleml_dask.progress import cluster_progress
from scaleml_dask.report import pyplot
from scaleml_dask.runner import load_config, resumable_step, script_main

HERE = Path(__file__).resolve().parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"scaleml_workflow_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summarize(datasets: list[str], client, report) -> dict:
    """Dataset summary section: shape, chunks, size, and y's distribution (one pass per dataset)."""
    plt = pyplot()

    rows, hists = [], []
    entries = load_catalog()
    for name in datasets:
        t0 = time.perf_counter()
        new = name in entries and not Path(entries[name].path).exists()
        with cluster_progress(client, f"dataset {name}"):
            ds = sm.open_dataset(name, client=client)
        if new:
            report.add_one_time_cost(f"generate {name}", time.perf_counter() - t0, where="cluster",
                                     note="made on first use; later runs reuse the store")
        info = describe(name)
        y = ds["y"].data.astype(np.float64)
        lo, hi = dask.compute(y.min(), y.max())
        counts, edges = da.histogram(y, bins=40, range=(float(lo), float(hi)))
        mean, std, counts = dask.compute(y.mean(), y.std(), counts)
        hists.append((name, counts, edges))
        rows.append({"dataset": name, "rows": info["n_samples"], "features": info["n_features"],
                     "chunks": info["n_chunks"], "chunk rows": info["chunk_rows"],
                     "MB": info["nbytes"] / 1e6, "codec": info["codec"], "y mean": float(mean),
                     "y std": float(std), "seconds (make + scan)": time.perf_counter() - t0})
    fig, axes = plt.subplots(1, len(hists), figsize=(3.2 * len(hists), 2.6), squeeze=False)
    for ax, (name, counts, edges) in zip(axes[0], hists):
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#3a6ea5")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("y")
    png = report.save_figure(fig, "datasets_y")
    report.add_section("Datasets", text="The demo datasets, generated chunk by chunk on the cluster on first "
                       "use, with the distribution of their target y.", table=rows, figures=[png])
    return {"datasets": rows}


def one_time_costs(datasets: list[str], kernels: dict, client, report) -> None:
    """Pay and measure the one-time costs up front, so that the steps' figures are the steady state: the first
    call of the compiled kernel families the steps use (``kernels: {client: [...], workers: [...]}``,
    names of ``coldstart.FAMILIES``), and the first fit of an estimator against a second one on a small slice
    of a demo dataset."""
    workers = kernels.get("workers") or []
    for where, rows in [("client", first_calls(kernels.get("client") or []))] + [
            (f"worker {address}", client.submit(first_calls, workers, workers=[address], pure=False).result())
            for address in client.scheduler_info()["workers"] if workers]:
        for row in rows:
            report.add_one_time_cost(f"first call: {row['family']}",
                                     (row["first call (ms)"] - row["steady (ms)"]) / 1e3, where=where,
                                     note=f"{row['kernels']}; steady call {row['steady (ms)']:.2f} ms")
    first_fits = {"regression": (sm.LinearRegression, {}), "logistic": (sm.SGDClassifier, {"mode": "local",
                                                                                         "rounds": 1})}
    for name in datasets:
        ds = sm.open_dataset(name, client=client)
        if ds.attrs.get("generator") not in first_fits:
            continue
        estimator, params = first_fits.pop(ds.attrs["generator"])
        rows = min(ds.sizes["sample"], 2 * ds["X"].data.chunks[0][0])
        X, y = ds["X"].data[:rows], ds["y"].data[:rows]
        seconds = []
        for _ in range(2):
            t0 = time.perf_counter()
            estimator(**params).fit(X, y)
            seconds.append(time.perf_counter() - t0)
        report.add_one_time_cost(f"first {estimator.__name__} fit: overhead", seconds[0] - seconds[1],
                                 where="cluster", note=f"first fit {seconds[0]:.2f} s, second {seconds[1]:.2f} s, "
                                                       f"on {rows:,} rows of {name}")


def _run_step(step: str, config: dict, client, report) -> dict:
    t0 = time.perf_counter()
    with cluster_progress(client, step):
        out = _load(step).run(config, client, report)
    return {"seconds": time.perf_counter() - t0, **(out or {})}


def run(config: dict, client, report) -> dict:
    """Make the demo datasets, summarise them and run each configured workflow step."""
    summary = {"summary": summarize(config.get("datasets", []), client, report), "steps": {}}
    with cluster_progress(client, "one-time costs"):
        one_time_costs(config.get("datasets", []), config.get("kernels") or {}, client, report)
    for step in config.get("steps", []):
        path = HERE / f"{step}.py"
        if not path.is_file():
            report.add_section(f"{step} (not available)", text=f"workflows/{step}.py is not in this version.")
            continue
        step_config = load_config(HERE / f"{step}.yaml", quick=config.get("quick", False))
        step_config.update(config.get("overrides", {}).get(step, {}))
        step_config.setdefault("state_dir", str(Path(config["state_dir"]) / step))
        summary["steps"][step] = resumable_step(step, step_config,
                                                functools.partial(_run_step, step, step_config, client, report),
                                                report, config["state_dir"])
    return summary


if __name__ == "__main__":
    raise SystemExit(script_main("pipeline", run))
