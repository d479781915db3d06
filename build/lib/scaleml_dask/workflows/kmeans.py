"""k-means of a catalog dataset: batch ``KMeans`` (k-means||, one pass per Lloyd iteration) beside the same
data streamed through ``online.MiniBatchKMeans``, and the centres on the first two principal components.

Both are judged the same way, from their centres in one pass: inertia (sum of squared distances to the
nearest centre) and, when the dataset has planted labels ``y``, the adjusted Rand index against them.
"""

from __future__ import annotations

import time

import dask
import numpy as np
from sklearn.metrics import adjusted_rand_score

import scaleml_dask as sm
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main


def _judge(labels, distances, y):
    """Inertia and ARI against ``y`` (or None) of lazy labels and distances, in one pass."""
    labels, d_min, y = dask.compute(labels, distances.min(axis=1), y)
    return float(np.sum(d_min**2)), None if y is None else float(adjusted_rand_score(y, labels))


def _figure(X, idx, pca, fits, labels, report, title):
    plt = pyplot()
    Z = pca.transform(X[idx]).compute()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.scatter(Z[:, 0], Z[:, 1], c=labels, s=4, cmap="tab10", alpha=0.6, linewidths=0)
    for (name, centers), (marker, size) in zip(fits, (("X", 90), ("o", 220))):
        C = pca.transform(centers)
        ax.scatter(C[:, 0], C[:, 1], marker=marker, s=size, facecolors="none" if marker == "o" else "black",
                   edgecolors="black", linewidths=1.2, label=f"{name} centres")
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return report.save_figure(fig, "kmeans")


def run(config: dict, client, report) -> dict:
    """Fit KMeans (and MiniBatchKMeans on the stream), tabulate, plot the centres on the PCA projection."""
    ds = sm.open_dataset(config["dataset"], client=client)
    X = ds["X"].data
    y = ds["y"].data if "y" in ds else None
    k = config.get("n_clusters", 8)
    km = sm.KMeans(k, init=config.get("init", "k-means||"), max_iter=config.get("max_iter", 100),
                   tol=config.get("tol", 1e-4), random_state=config.get("seed", 0))
    # warm up every worker (imports, compiled kernels) on one chunk each, so that the fit is what is timed
    km.fit(X.blocks[:max(1, min(len(client.scheduler_info()["workers"]), X.numblocks[0]))])
    t0 = time.perf_counter()
    km.fit(X)
    seconds = time.perf_counter() - t0
    inertia, ari = _judge(km.labels_, km.transform(X), y)
    rows = [{"method": "KMeans (k-means||, Lloyd)", "k": k, "iterations": km.n_iter_, "inertia": inertia,
             "seconds": seconds, "seconds per iteration": seconds / max(km.n_iter_, 1), "ARI": ari}]
    fits = [("KMeans", km.cluster_centers_)]
    if config.get("minibatch_size"):
        mbk = sm.online.MiniBatchKMeans(k, random_state=config.get("seed", 0))
        t0 = time.perf_counter()
        for Xb, _ in sm.online.iter_batches(ds, config["minibatch_size"]):
            mbk.learn_many(Xb)
        seconds = time.perf_counter() - t0
        labels = X.map_blocks(mbk.predict_many, drop_axis=1, dtype=np.int64, meta=np.empty(0, np.int64))
        distances = X.map_blocks(mbk.transform_many, chunks=(X.chunks[0], (k,)), dtype=np.float64)
        inertia, ari = _judge(labels, distances, y)
        rows.append({"method": f"MiniBatchKMeans (stream, batches of {config['minibatch_size']:,})", "k": k,
                     "iterations": mbk.n_steps_, "inertia": inertia, "seconds": seconds,
                     "seconds per iteration": seconds / max(mbk.n_steps_, 1), "ARI": ari})
        fits.append(("MiniBatchKMeans", mbk.cluster_centers_))
    best = min(r["inertia"] for r in rows)
    for r in rows:
        r["inertia / best"] = r["inertia"] / best
    pca = sm.PCA(n_components=2).fit(X)
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(X.shape[0], size=min(config.get("scatter_sample", 5000), X.shape[0]), replace=False))
    colour = km.predict(X[idx].compute())
    png = _figure(X, idx, pca, fits, colour, report,
                  f"centres on the first two principal components ({len(idx):,} points, coloured by KMeans label)")
    report.add_section("k-means", text=(
        f"{X.shape[0]:,} rows × {X.shape[1]} features of {config['dataset']!r}, k = {k}. Iterations are Lloyd "
        "passes over the data for KMeans and mini-batch steps for MiniBatchKMeans (one read of the stream); "
        "inertia is computed the same way for both, from their centres in one pass"
        + (", and ARI against the planted labels y." if y is not None else ".")), table=rows, figures=[png])
    return {"inertia": rows[0]["inertia"], "n_iter": km.n_iter_, "ari": rows[0]["ARI"],
            "fit_seconds": rows[0]["seconds"], "methods": rows}


if __name__ == "__main__":
    raise SystemExit(script_main("kmeans", run))
