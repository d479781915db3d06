"""Text, out of core: hashed documents → SGD classifier, and TruncatedSVD → a t-SNE map of the documents.

The documents of a text dataset (Parquet files; the demo's are generated with planted topics) are hashed to
``n_features`` columns inside the tasks that read them (``HashingVectorizer`` on the lazy text column: no hashed
copy is written). An ``SGDClassifier`` (federated averaging, O(nnz) steps) learns the topic of each document; its
held-out accuracy is set against the Bayes accuracy of the generator's planted model. Then tf-idf (idf from one
pass) and ``TruncatedSVD`` (one pass per power iteration) reduce the documents to a few dimensions, and t-SNE
maps a sample of them, coloured by topic. The classifier's compression trade-off (float16, int8, pruning) is
measured on the held-out documents.
"""

from __future__ import annotations

import time

import dask
import numpy as np

import scaleml_dask as sm
from scaleml_dask.deploy.compress import plot_tradeoff, tradeoff
from scaleml_dask.feature_extraction.text import HashingVectorizer, TfidfTransformer
from scaleml_dask.io.text import open_text
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main


def run(config: dict, client, report) -> dict:
    """Hash, classify, reduce and map the documents of ``config['dataset']``; one report section."""
    from sklearn.metrics import accuracy_score

    ds = sm.open_dataset(config["dataset"], client=client)
    meta = ds.attrs
    files = meta["files"]  # one file per generated chunk: train on all but the last, test on the last
    train = open_text(files[:-1], target="label", label=f"{config['dataset']} (train)")
    test = open_text(files[-1:], target="label", label=f"{config['dataset']} (held out)")
    hv = HashingVectorizer(n_features=int(config.get("n_features", 2**20)))
    X, y = hv.transform(ds["text"]), ds["y"].data
    Xtr, ytr = hv.transform(train["text"]), train["y"]
    sgd = sm.SGDClassifier(mode="local", loss="log_loss", learning_rate="invscaling", eta0=config.get("eta0", 1.0),
                           alpha=config.get("alpha", 1e-6), batch_size=1, rounds=config.get("rounds", 2),
                           local_epochs=config.get("local_epochs", 1), validation_fraction=0.0,
                           random_state=config.get("seed", 0))
    t0 = time.perf_counter()
    sgd.fit(Xtr, ytr)
    fit_seconds = time.perf_counter() - t0
    Xte, yte = dask.compute(hv.transform(test["text"]), test["y"].data)
    accuracy = float(accuracy_score(yte, sgd.predict(Xte)))
    n_train = int(Xtr.shape[0])

    t0 = time.perf_counter()
    counts = HashingVectorizer(n_features=hv.n_features, alternate_sign=False, norm=None)  # tf-idf needs counts
    C = counts.transform(ds["text"])
    tfidf = TfidfTransformer(sublinear_tf=True).fit(C)
    svd = sm.TruncatedSVD(n_components=config.get("svd_components", 50), n_iter=config.get("svd_iter", 4),
                          random_state=config.get("seed", 0)).fit(tfidf.transform(C))
    svd_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(config.get("seed", 0))
    n_map = min(int(config.get("map_samples", 10_000)), X.shape[0])
    idx = np.sort(rng.choice(X.shape[0], size=n_map, replace=False))
    Z, labels = dask.compute(svd.transform(tfidf.transform(C))[idx], y[idx])
    t0 = time.perf_counter()
    emb = sm.TSNE(perplexity=config.get("perplexity", 30), random_state=config.get("seed", 0)).fit_transform(Z)
    tsne_seconds = time.perf_counter() - t0

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sc = ax.scatter(emb[:, 0], emb[:, 1], c=labels, s=3, cmap="tab10", alpha=0.7, linewidths=0)
    ax.legend(*sc.legend_elements(), title="topic", fontsize=8, loc="best")
    ax.set(title=f"t-SNE of {n_map:,} documents (tf-idf → TruncatedSVD({svd.n_components}) → t-SNE)",
           xticks=[], yticks=[])
    ax.title.set_fontsize(9)
    png = report.save_figure(fig, "text_tsne")
    rows = [{"step": "SGDClassifier on hashed text (local mode)", "documents": n_train, "seconds": fit_seconds,
             "documents / s": n_train / fit_seconds, "held-out accuracy": accuracy,
             "Bayes accuracy": meta["bayes_accuracy"]},
            {"step": f"tf-idf + TruncatedSVD({svd.n_components})", "documents": X.shape[0], "seconds": svd_seconds,
             "documents / s": X.shape[0] / svd_seconds,
             "explained variance": float(svd.explained_variance_ratio_.sum())},
            {"step": "t-SNE of the reduced documents", "documents": n_map, "seconds": tsne_seconds,
             "documents / s": n_map / tsne_seconds}]
    report.add_section("Text: hashed documents → SGD, TruncatedSVD → t-SNE", text=(
        f"{X.shape[0]:,} documents of {config['dataset']!r} ({meta['n_classes']} planted topics, a Zipf vocabulary "
        f"of {meta['vocabulary']:,} words, median length {meta['median_length']:.0f} tokens), hashed to "
        f"{hv.n_features:,} features inside the tasks that read them (no hashed copy written). The classifier is "
        f"trained on every chunk but the last and tested on the last; the Bayes accuracy is the planted model's "
        "own (naive Bayes with the true probabilities). tf-idf (of unsigned counts) and TruncatedSVD read the "
        "documents once per pass; t-SNE maps a sample of the reduced documents, coloured by their planted topic."),
        table=rows, figures=[png])
    compression = _compression(sgd, Xte, yte, report, config)
    return {"accuracy": accuracy, "bayes_accuracy": meta["bayes_accuracy"], "fit_seconds": fit_seconds,
            "svd_explained_variance": float(svd.explained_variance_ratio_.sum()), "tradeoff": compression}


def _compression(model, X, y, report, config: dict) -> list[dict]:
    """The compression trade-off of the hashed-text classifier on its held-out documents (CSR, never densified):
    float64 / float16 / int8 (scored by the int8 kernel) / pruned (stored sparse) to keep a half, a tenth and a
    hundredth of the weights the training documents touched."""
    W = model._weights()
    touched = np.count_nonzero(W)
    keep = config.get("prune_keep", [0.5, 0.1, 0.01])
    rows = tradeoff(model, X, y, fractions=tuple(1.0 - touched * k / W.size for k in keep))
    for r in rows:
        r["ms per 1,000 documents"] = r.pop("ms_per_1000_rows")
    png = plot_tradeoff(rows, report.figure_path("text_tradeoff"))
    report.add_section("Text: compression of the hashed-text classifier", table=rows, figures=[png], text=(
        f"The classifier has {W.size:,} weights ({W.size * 8 / 2**20:.0f} MiB in float64), of which the training "
        f"documents touched {touched:,}. Each variant is saved to a registry (JSON + .npz, deflated) and measured "
        f"on the {X.shape[0]:,} held-out documents (CSR rows): bytes on disk, the largest and mean change of the "
        "predicted probabilities, the change of accuracy and the scoring time per 1,000 documents (best of 5). "
        "int8 weights are scored by the int8 kernel from their 1 MiB of codes; pruned weights (a half, a tenth "
        "and a hundredth of the touched ones kept) are stored as their non-zeros and positions."))
    return rows


if __name__ == "__main__":
    raise SystemExit(script_main("text", run))
