"""What dimensionality reduction does to a downstream model, and how well it keeps neighbourhoods.

For scikit-learn's 8×8 digits (1,797 real images, 64 pixels, 10 classes) and a demo dataset out of core:

- a classifier (``SGDClassifier``, local mode) trained on the original features, on PCA-reduced features for
  several k (one PCA fit: components nest, so every k is a slice of the largest), and on Gaussian random
  projections to k dimensions; accuracy, macro F1 and ROC AUC on held-out rows (every model scored in one pass,
  ``metrics.evaluate``), and the training time of each against the original features';
- neighbourhood preservation of a 2-d PCA and a 2-d t-SNE of the same rows: trustworthiness and the recall of
  each point's 10 nearest input-space neighbours among its 10 nearest in the embedding.

The random projection is a Gaussian matrix built here (entries N(0, 1/k)); ``sm.random_projection`` is being
added by another change and can replace it.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.manifold import trustworthiness
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import scaleml_dask as sm
from scaleml_dask.metrics import evaluate
from scaleml_dask.model_selection import train_test_split
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main

_SCORING = {"accuracy": "accuracy", "F1 (macro)": "f1_macro"}


def knn_recall(X: np.ndarray, Y: np.ndarray, k: int = 10) -> float:
    """Mean share of each point's ``k`` nearest neighbours in ``X`` that are among its ``k`` nearest in ``Y``."""
    a = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)[:, 1:]
    b = NearestNeighbors(n_neighbors=k + 1).fit(Y).kneighbors(Y, return_distance=False)[:, 1:]
    return float(np.mean([len(np.intersect1d(p, q)) / k for p, q in zip(a, b)]))


def _models(X_train, y_train, X_test, y_test, pca_ks, rp_ks, clf_params, seed, binary):
    """Fit the classifier on the original, PCA-reduced and projected features; score them all in one pass."""
    d = X_train.shape[1]
    pca_ks, rp_ks = [k for k in pca_ks if k < d], [k for k in rp_ks if k < d]
    rows, models = [], {}
    warm = sm.SGDClassifier(mode="local", random_state=seed, **{**clf_params, "rounds": 1})
    warm.fit(X_train[: min(len(y_train), 2000)], y_train[: min(len(y_train), 2000)])  # compile / import first

    def fit(name, reducer, Z, k, extra):
        clf = sm.SGDClassifier(mode="local", random_state=seed, **clf_params)
        t0 = time.perf_counter()
        clf.fit(Z, y_train)
        seconds = time.perf_counter() - t0
        models[name] = Pipeline([*reducer, ("clf", clf)])
        rows.append({"features": name, "k": k, "train seconds": seconds, **extra})

    fit(f"original ({d})", [], X_train, d, {})
    t0 = time.perf_counter()
    pca = sm.PCA(n_components=max(pca_ks)).fit(X_train)  # every k from this one fit: the components nest
    pca_seconds = time.perf_counter() - t0
    Z = pca.transform(X_train)
    for k in pca_ks:
        take = FunctionTransformer(np.take, kw_args={"indices": np.arange(k), "axis": 1})
        fit(f"PCA {k}", [("pca", pca), ("take", take)], Z[:, :k], k,
            {"explained variance": float(pca.explained_variance_ratio_[:k].sum())})
    G = np.random.default_rng(seed).normal(size=(d, max(rp_ks)))
    for k in rp_ks:
        R = G[:, :k] / np.sqrt(k)
        fit(f"random projection {k}", [("project", FunctionTransformer(np.dot, kw_args={"b": R}))], X_train @ R, k,
            {})
    scoring = {**_SCORING, "ROC AUC": "roc_auc" if binary else "roc_auc_ovr"}
    scores = evaluate(models, X_test, y_test, scoring=list(scoring.values()))
    base = rows[0]["train seconds"]
    for row in rows:
        s = scores[row["features"]]
        row.update({label: s[name] for label, name in scoring.items()})
        row["× original time"] = row["train seconds"] / base
    return rows, pca, pca_seconds


def _neighbours(X: np.ndarray, pca, k: int, seed: int) -> tuple[list[dict], dict]:
    Y_pca = pca.transform(X)[:, :2]
    tsne = sm.TSNE(perplexity=30, random_state=seed)
    t0 = time.perf_counter()
    Y_tsne = tsne.fit_transform(X)
    tsne_s = time.perf_counter() - t0
    rows = []
    for name, Y in (("PCA (2-d)", Y_pca), ("t-SNE (2-d)", Y_tsne)):
        rows.append({"embedding": name, "points": len(X),
                     f"trustworthiness ({k}-NN)": trustworthiness(X, Y, n_neighbors=k),
                     f"{k}-NN recall": knn_recall(X, Y, k)})
    rows[1]["seconds"] = tsne_s
    return rows, {"PCA": Y_pca, "t-SNE": Y_tsne}


def _figure(results, report):
    plt = pyplot()
    fig, axes = plt.subplots(len(results), 2, figsize=(10, 3.3 * len(results)), squeeze=False)
    for (name, rows), (a1, a2) in zip(results.items(), axes):
        base = rows[0]
        for kind, style in (("PCA", "o-"), ("random projection", "s--")):
            part = [r for r in rows if r["features"].startswith(kind)]
            ks = [r["k"] for r in part]
            a1.plot(ks, [r["accuracy"] for r in part], style, color="#3a6ea5", label=f"{kind}: accuracy")
            a1.plot(ks, [r["ROC AUC"] for r in part], style, color="#c0392b", label=f"{kind}: ROC AUC")
            a2.plot(ks, [r["train seconds"] for r in part], style, color="#555", label=kind)
        a1.axhline(base["accuracy"], color="#3a6ea5", lw=0.8, ls=":")
        a1.axhline(base["ROC AUC"], color="#c0392b", lw=0.8, ls=":", label="original features (dotted)")
        a2.axhline(base["train seconds"], color="#555", lw=0.8, ls=":", label="original features")
        a1.set(xlabel="k (dimensions kept)", ylabel="held-out score", title=f"{name}: quality")
        a2.set(xlabel="k (dimensions kept)", ylabel="training seconds", title=f"{name}: training time")
        for a in (a1, a2):
            a.grid(alpha=0.3)
            a.legend(fontsize=7)
            a.title.set_fontsize(9)
    return report.save_figure(fig, "dr_effect")


def _embedding_figure(embeddings, labels, rows, report):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, (name, Y), row in zip(axes, embeddings.items(), rows):
        ax.scatter(Y[:, 0], Y[:, 1], c=labels, s=3, cmap="tab10", linewidths=0)
        keys = list(row)
        ax.set_title(f"digits, {name}: trustworthiness {row[keys[2]]:.3f}, 10-NN recall {row[keys[3]]:.3f}",
                     fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return report.save_figure(fig, "dr_neighbourhoods")


def run(config: dict, client, report) -> dict:
    """Digits in memory and a demo dataset out of core: the classifier on original vs reduced features, and the
    neighbourhood preservation of PCA vs t-SNE."""
    from sklearn.datasets import load_digits

    seed = int(config.get("seed", 0))
    nb = config.get("neighbours", {})
    k_nn = int(nb.get("k", 10))
    results, neighbour_rows, out = {}, [], {}
    dig = config.get("digits", {})
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    rows, pca, _ = _models(X_tr, y_tr, X_te, y_te, dig.get("pca", [2, 5, 10, 20, 30, 40]),
                           dig.get("projection", [5, 10, 20, 40]), dig.get("classifier", {}), seed, binary=False)
    results["digits (8×8, 10 classes)"] = rows
    pca_all = sm.PCA(n_components=2).fit(X)
    digit_rows, embeddings = _neighbours(X, pca_all, k_nn, seed)
    neighbour_rows += [{"data": "digits", **r} for r in digit_rows]
    name = config["dataset"]
    ds = sm.open_dataset(name, client=client)
    train, test = train_test_split(ds, test_size=config.get("test_size", 0.2), random_state=seed, stratify="y")
    rows, pca, pca_s = _models(train.X.data, train.y.data, test.X, test.y, config.get("pca", [2, 4, 8, 16, 24]),
                               config.get("projection", [4, 8, 16, 24]), config.get("classifier", {}), seed,
                               binary=True)
    results[f"{name} ({ds.sizes['sample']:,} rows)"] = rows
    m = min(int(nb.get("sample", 2000)), ds.sizes["sample"])
    idx = np.sort(np.random.default_rng(seed).choice(ds.sizes["sample"], m, replace=False))
    sample = np.asarray(ds.X.data[idx].compute(), dtype=np.float64)
    demo_rows, _ = _neighbours(sample, pca, k_nn, seed)
    neighbour_rows += [{"data": f"{name} (sample)", **r} for r in demo_rows]
    table = [{"data": data, **r} for data, rs in results.items() for r in rs]
    png = _figure(results, report)
    report.add_section("Dimensionality reduction: effect on a downstream classifier", table=table, figures=[png],
                       text=(
        "An SGDClassifier (local mode) trained on the original features, on the first k principal components (one "
        "PCA fit; every k is a slice of it) and on a Gaussian random projection to k dimensions; scored on held-out "
        "rows (digits: a stratified 25 % split; the demo data: a stratified 20 % split without copies), every model "
        "with every metric in one pass. ROC AUC is one-vs-rest (macro) for the 10 digits. Training time is the "
        f"classifier's fit on the reduced features (the projection computed inside each chunk's task); the PCA fit "
        f"on the demo data took {pca_s:.2f} s, one pass."))
    png2 = _embedding_figure(embeddings, y, digit_rows, report)
    report.add_section("Dimensionality reduction: neighbourhoods kept, PCA vs t-SNE", table=neighbour_rows,
                       figures=[png2], text=(
        f"Trustworthiness (scikit-learn's, {k_nn} neighbours) and the recall of each point's {k_nn} nearest "
        "input-space neighbours among its nearest in the 2-d embedding, for PCA and t-SNE of the same rows (all 1,797 "
        f"digits; {m:,} rows sampled from {name!r}). t-SNE keeps local neighbourhoods far better; PCA keeps the "
        "global linear structure."))
    out["digits_best_pca_accuracy"] = max(r["accuracy"] for r in results["digits (8×8, 10 classes)"][1:])
    out["neighbours"] = neighbour_rows
    return out


if __name__ == "__main__":
    raise SystemExit(script_main("dr", run))
