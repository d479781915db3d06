"""Out-of-core PCA of a catalog dataset: scree plot, the first two components, and the projection as a dataset.

One pass over the data gives the mean and the SVD; the projection is written chunk by chunk (atomically) as
a new dataset that t-SNE or any estimator can open like the others.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import scaleml_dask as sm
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main


def _plots(p, Z, labels, report):
    plt = pyplot()

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    k = np.arange(1, p.n_components_ + 1)
    a.bar(k, p.explained_variance_ratio_, color="#3a6ea5", label="per component")
    a.plot(k, np.cumsum(p.explained_variance_ratio_), "o-", color="#c0392b", ms=3, label="cumulative")
    a.set_xlabel("component")
    a.set_ylabel("explained variance ratio")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    b.scatter(Z[:, 0], Z[:, 1], c=labels, s=3, cmap="tab10", alpha=0.7)
    b.set_xlabel("PC 1")
    b.set_ylabel("PC 2")
    b.set_title("first two components (sample)", fontsize=9)
    png = report.save_figure(fig, "pca")
    return png


def run(config: dict, client, report) -> dict:
    """Fit PCA, plot the scree and a sample of the projection, optionally write the projection."""
    ds = sm.open_dataset(config["dataset"], client=client)
    X = ds["X"].data
    X[:1].sum().compute()  # warm up the workers (imports), so the scan times the I/O
    t0 = time.perf_counter()
    X.sum().compute()
    scan = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = sm.PCA(n_components=config.get("n_components", 10), solver=config.get("solver", "auto")).fit(X)
    fit_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(X.shape[0], size=min(config.get("scatter_sample", 5000), X.shape[0]), replace=False))
    Z = p.transform(X[idx]).compute()
    labels = ds["y"].data[idx].compute() if "y" in ds else np.zeros(len(idx))
    png = _plots(p, Z, labels, report)
    rows = [{"step": "scan (X.sum())", "seconds": scan, "× scan": 1.0},
            {"step": f"PCA fit (solver used: {p.solver_})", "seconds": fit_s, "× scan": fit_s / scan}]
    out = None
    if config.get("write_projection") and config.get("state_dir"):
        t0 = time.perf_counter()
        out = p.to_zarr(ds, Path(config["state_dir"]) / "pca-projection.zarr", overwrite=True)  # its own
        write_s = time.perf_counter() - t0
        rows.append({"step": f"to_zarr -> {out}", "seconds": write_s, "× scan": write_s / scan})
    comp = [{"component": i + 1, "explained variance": float(v), "ratio": float(r),
             "cumulative": float(c)} for i, (v, r, c) in enumerate(zip(
                 p.explained_variance_, p.explained_variance_ratio_, np.cumsum(p.explained_variance_ratio_)))]
    report.add_section("PCA", text=(f"{p.n_samples_:,} rows × {p.n_features_in_} features of "
                                    f"{config['dataset']!r}; {p.n_components_} components explain "
                                    f"{p.explained_variance_ratio_.sum():.1%} of the variance."),
                       table=rows, figures=[png])
    report.add_section("PCA: components", table=comp,
                       text="Variance along each principal component, its share of the total, and the running sum.")
    return {"explained_variance_ratio": p.explained_variance_ratio_.tolist(), "solver": p.solver_,
            "fit_seconds": fit_s, "projection": None if out is None else str(out)}


if __name__ == "__main__":
    raise SystemExit(script_main("pca", run))
