"""The demo pipeline: make the demo datasets, summarise them, then run each workflow into one report.

Steps are the workflow scripts beside this file (``regression``, ``pca``, ``sgd``, ``online``, ``tsne``),
each run with its own YAML config; ``steps:`` in pipeline.yaml chooses which. A rerun of an interrupted
pipeline replays the steps it had finished (``runner.resumable_step``).
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
from scaleml_dask.io.catalog import describe
from scaleml_dask.report import pyplot
from scaleml_dask.runner import load_config, resumable_step, workflow_main

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
    for name in datasets:
        t0 = time.perf_counter()
        ds = sm.open_dataset(name, client=client, progress=True)
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


def _run_step(step: str, config: dict, client, report) -> dict:
    t0 = time.perf_counter()
    out = _load(step).run(config, client, report)
    return {"seconds": time.perf_counter() - t0, **(out or {})}


def run(config: dict, client, report) -> dict:
    """Make the demo datasets, summarise them and run each configured workflow step."""
    summary = {"summary": summarize(config.get("datasets", []), client, report), "steps": {}}
    for step in config.get("steps", []):
        path = HERE / f"{step}.py"
        if not path.is_file():
            report.add_section(f"{step} (not available)", text=f"workflows/{step}.py is not in this version.")
            continue
        step_config = load_config(HERE / f"{step}.yaml")
        step_config.update(config.get("overrides", {}).get(step, {}))
        step_config.setdefault("state_dir", str(Path(config["state_dir"]) / step))
        summary["steps"][step] = resumable_step(step, step_config,
                                                functools.partial(_run_step, step, step_config, client, report),
                                                report, config["state_dir"])
    return summary


if __name__ == "__main__":
    raise SystemExit(workflow_main("pipeline", run))
