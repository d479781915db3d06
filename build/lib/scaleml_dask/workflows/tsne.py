"""t-SNE of a catalog dataset in bounded memory: the embedding scattered and coloured by label.

The dataset is read chunk by chunk (reduced by PCA first when wider than 50 columns); the embedding is
written with the dataset's labels as a new dataset under the run's state directory.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import scaleml_dask as sm
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main


def _scatter(Y, labels, report, title):
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.scatter(Y[:, 0], Y[:, 1], c=labels, s=1.5, cmap="tab20", alpha=0.7, linewidths=0)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    png = report.save_figure(fig, "tsne")
    return png


def run(config: dict, client, report) -> dict:
    """Embed the dataset (or every k-th row, to stay under ``max_samples``), plot, write to zarr."""
    ds = sm.open_dataset(config["dataset"], client=client)
    n = ds.sizes["sample"]
    step = max(1, -(-n // config["max_samples"])) if config.get("max_samples") else 1
    ds = ds.isel(sample=slice(None, None, step))
    kl_curve = []
    model = sm.TSNE(perplexity=config.get("perplexity", 30), n_iter=config.get("n_iter", 500),
                    early_exaggeration_iter=config.get("early_exaggeration_iter", 250),
                    random_state=config.get("seed", 0),
                    callbacks=[lambda it, kl, _: kl_curve.append((it, kl)) and False])
    t0 = time.perf_counter()
    model.fit(ds)
    seconds = time.perf_counter() - t0
    labels = model.labels_ if model.labels_ is not None else np.zeros(len(model.embedding_))
    png = _scatter(model.embedding_, labels, report,
                   f"t-SNE of {config['dataset']} ({len(labels):,} points, perplexity {model.perplexity})")
    out = None
    if config.get("write_embedding") and config.get("state_dir"):
        out = model.to_zarr(Path(config["state_dir"]) / "tsne-embedding.zarr", overwrite=True)  # its own
    rows = [{"stage": k, "seconds": v, "peak memory of the client so far (GB)": model.peak_memory_[k] / 1e9}
            for k, v in model.timings_.items()]
    figures = [png]
    if kl_curve:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 3))
        its, kls = zip(*kl_curve)
        ax.plot(its, kls, "o-", ms=3, color="#3a6ea5")
        ax.axvline(model.early_exaggeration_iter, color="#999", lw=0.8, ls="--", label="end of exaggeration")
        ax.set(xlabel="iteration", ylabel="KL(P || Q)", title="convergence")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        figures.append(report.save_figure(fig, "tsne_kl"))
    report.add_section("t-SNE", text=(
        f"{len(labels):,} of {n:,} rows × {model.n_features_in_} features of {config['dataset']!r}; "
        f"{model.n_neighbors_} neighbours ({model.neighbors_method_}); KL {model.kl_divergence_:.3f} "
        f"after {model.n_iter_} iterations in {seconds:.1f} s. The table gives the time and the client's peak "
        "memory of each stage; the KL divergence against iteration is plotted."), table=rows, figures=figures)
    return {"kl_divergence": model.kl_divergence_, "n_iter": model.n_iter_, "seconds": seconds,
            "n_points": len(labels), "embedding": None if out is None else str(out)}


if __name__ == "__main__":
    raise SystemExit(script_main("tsne", run))
