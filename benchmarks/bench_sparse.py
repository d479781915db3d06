"""High-dimensional and sparse data side by side in one run: hashed text → SGD, TruncatedSVD, wide PCA.

1. **SGD on hashed text** (default 10,000,000 generated documents, Parquet, 2**20 hashed features): this project's
   ``SGDClassifier`` (``mode="local"``; documents hashed inside the tasks that read them) against scikit-learn's
   out-of-core loop (each file read, ``HashingVectorizer.transform``, ``partial_fit``: one process, as its own
   example does) and dask-ml's ``Incremental`` over the same files; the floor is one pass reading every document
   (and, beside it, reading + hashing: what any hashing-trick learner must do). Accuracy on 200,000 held-out
   documents of the same planted model (its Bayes accuracy printed beside). Target: ≥ 3× scikit-learn's loop at
   equal held-out accuracy (±0.002).
2. **TruncatedSVD(100)** of the first ``--svd-store-docs`` of those documents hashed (stored once as a sparse
   dataset: ``write_sparse``): accuracy on the
   first ``--svd-exact-docs`` documents against scikit-learn's ARPACK (exact; it takes minutes from a few thousand
   documents at 2**20 features); speed on the first ``--svd-docs`` against dask-ml's ``TruncatedSVD`` and
   scikit-learn's randomized one in memory (same iterations and oversampling); then the whole matrix. Targets:
   singular values within 1e-6 (relative) of ARPACK's, ≥ 3× faster than dask-ml.
3. **Wide PCA** of a dense 2,000 × 200,000 store: this project's PCA (``auto`` → the n × n Gram of the rows; and
   randomized), scikit-learn in memory (full SVD: the reference; randomized), dask-ml's PCA.
4. **Real text**: the ChatterBot corpus the package ``chatterbot-corpus`` ships (20,725 utterances, 28 languages,
   in memory): hashing against scikit-learn's, language identification by SGD against scikit-learn's
   SGDClassifier, TruncatedSVD(50) against ARPACK and scikit-learn's randomized solver.

Every contender runs on the same LocalCluster of 2 worker processes × 1 thread (scikit-learn: this process); peak
memory per worker is sampled every 0.2 s. Printed: seconds, ratios, accuracy / relative error, peak MB.

    python benchmarks/bench_sparse.py [--quick] [--docs 10000000] [--svd-docs 50000] [--svd-store-docs 200000]
                                      [--parts sgd,svd,pca,real] [--rounds 1] [--local-epochs 8]

Disk: the generated Parquet text is ~185 MB per million documents (10,000,000 + 200,000 held out: ~1.9 GB); the
hashed sparse store of the whole-matrix SVD ~1 GB per million (hence its own ``--svd-store-docs``); the wide
store 3.2 GB at 2,000 × 200,000. Time: TruncatedSVD works in the space of the columns the documents touch
(~49,000 of the 2**20 here: the generator's vocabulary), so a pass costs about its two sparse products and a fit
grows with the documents; scikit-learn's randomized solver in memory costs minutes at 50,000 documents (its
power iterations normalise dense 2**20 × 200 matrices), ARPACK minutes from a few thousand documents — hence the
SVD defaults (2,000 documents against ARPACK, 50,000 against the peers, 200,000 for the whole store); the
10,000,000 documents are the SGD part's.
"""

from __future__ import annotations

import argparse
import glob
import threading
import time
from pathlib import Path

import dask
import numpy as np
from bench_regression import DATA, cluster_client, print_table

import scaleml_dask as sm
from scaleml_dask.feature_extraction.text import HashingVectorizer
from scaleml_dask.io.sparse import write_sparse
from scaleml_dask.io.synthetic import make_mixture
from scaleml_dask.io.synthetic_text import make_text, read_text_meta
from scaleml_dask.io.text import open_text

N_FEATURES = 2**20
CHUNK_DOCS = 100_000
HELD_OUT_CHUNK = 1_000_000  # the held-out documents are chunks this far from the training ones (same model)
#: Our classifier: logistic loss, one document a step of eta0 / sqrt(t) (O(nnz) by lazy L2), 8 local epochs over
#: each chunk in one round of federated averaging. Hashing costs each round several epochs of the kernel (a profile
#: of 50,000 documents: hashing 0.8 s, 4 epochs 0.34 s), so one round of 8 epochs reads and hashes the documents
#: once and matches 2 rounds of 4 epochs in accuracy (at 200,000 documents: 0.9422 against 0.9375 — and
#: scikit-learn's 0.939 — with eta0 16, alpha 1e-6). The peers run scikit-learn's default SGDClassifier (hinge,
#: alpha 1e-4, its "optimal" schedule), as its out-of-core example.
OURS = {"mode": "local", "loss": "log_loss", "learning_rate": "invscaling", "eta0": 16.0, "alpha": 1e-6,
        "batch_size": 1, "local_epochs": 8, "validation_fraction": 0.0}
SKLEARN = {"random_state": 0}


class PeakMemory:
    """Samples the resident memory of every worker while it is open: ``peak_mb`` (max over workers, minus what the
    worker held before)."""

    def __init__(self, client, every: float = 0.2) -> None:
        self.client, self.every = client, every
        self.base = self._rss()
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> dict:
        import psutil

        return self.client.run(lambda: psutil.Process().memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                for w, v in self._rss().items():
                    self.peak[w] = max(self.peak.get(w, 0), v)
            except Exception:  # a worker restarting: skip the sample
                continue

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return max((self.peak[w] - self.base.get(w, 0)) / 2**20 for w in self.peak)


def run(fn, client=None):
    """(seconds, result, peak MB over the workers' baseline, or None without ``client``) of one call."""
    if client is None:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out, None
    with PeakMemory(client) as meter:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
    return seconds, out, meter.peak_mb


# ------------------------------------------------------------------------------------------------------
# 1. SGD on hashed text
# ------------------------------------------------------------------------------------------------------


def text_data(n_docs: int, n_held: int, client) -> tuple[Path, Path]:
    train = DATA / f"text-{n_docs}"
    held = DATA / f"text-heldout-{n_held}"
    common = {"chunk_rows": CHUNK_DOCS, "seed": 11, "client": client}
    if not train.exists():
        make_text(train, n_docs, **common)
    if not held.exists():
        make_text(held, n_held, first_chunk=HELD_OUT_CHUNK, **common)
    return train, held


def _read_pass(path: Path, hash_too: bool) -> int:
    """The floor: every document read (and hashed) by one task per file, nothing kept."""
    from scaleml_dask.passes import one_pass

    text = open_text(path)["text"]
    if hash_too:
        X = HashingVectorizer(n_features=N_FEATURES).transform(text)
        return one_pass(lambda b, *, chunk_index, row_start: b.nnz, sum, X)
    return one_pass(lambda b, *, chunk_index, row_start: len(b), sum, text)


def _sklearn_loop(train: Path):
    import pyarrow.parquet as pq
    from sklearn.feature_extraction.text import HashingVectorizer as SkHV
    from sklearn.linear_model import SGDClassifier as SkSGD

    hv, clf = SkHV(n_features=N_FEATURES), SkSGD(**SKLEARN)
    for f in sorted(glob.glob(str(train / "*.parquet"))):
        t = pq.read_table(f, columns=["text", "label"])
        clf.partial_fit(hv.transform(t.column("text").to_pylist()), t.column("label").to_numpy(), classes=[0, 1])
    return clf


def _dask_ml_incremental(train: Path):
    import scipy.sparse as sp
    from dask_ml.wrappers import Incremental
    from sklearn.feature_extraction.text import HashingVectorizer as SkHV
    from sklearn.linear_model import SGDClassifier as SkSGD

    ds = open_text(train, target="label")
    hv = SkHV(n_features=N_FEATURES)
    X = ds["text"].data.map_blocks(lambda b: hv.transform(list(b)), dtype=np.float64, new_axis=1,
                                   chunks=(ds["text"].data.chunks[0], (N_FEATURES,)),
                                   meta=sp.csr_matrix((0, 0)))
    return Incremental(SkSGD(**SKLEARN)).fit(X, ds["y"].data, classes=[0, 1]).estimator_


def sgd(n_docs: int, n_held: int, client, rounds: int, local_epochs: int) -> list[dict]:
    import pyarrow.parquet as pq

    train, held = text_data(n_docs, n_held, client)
    bayes = read_text_meta(train)["bayes_accuracy"]
    test = pq.read_table(sorted(glob.glob(str(held / "*.parquet"))), columns=["text", "label"])
    Xte, yte = HashingVectorizer(n_features=N_FEATURES).transform(test.column("text")), test.column("label").to_numpy()
    _read_pass(train, True)  # warm the page cache, the workers and the kernels
    rows = []
    for name, hash_too in (("floor: read every document", False), ("read + hash every document", True)):
        s, _, mb = run(lambda h=hash_too: _read_pass(train, h), client)
        rows.append({"method": name, "seconds": s, "peak MB / worker": mb})

    def ours():
        ds = sm.open_dataset(train)
        X = HashingVectorizer(n_features=N_FEATURES).transform(ds["text"])  # hashed inside the training tasks
        return sm.SGDClassifier(**{**OURS, "rounds": rounds, "local_epochs": local_epochs}).fit(X, ds["y"])

    s, m, mb = run(ours, client)
    rows.append({"method": f"scaleml SGDClassifier (local, {rounds} round{'s' * (rounds > 1)} x {local_epochs} "
                           "epochs)", "seconds": s,
                 "accuracy": m.score(Xte, yte), "peak MB / worker": mb})
    s, m, _ = run(lambda: _sklearn_loop(train))
    rows.append({"method": "scikit-learn loop: HashingVectorizer + partial_fit", "seconds": s,
                 "accuracy": m.score(Xte, yte), "note": "one process"})
    try:
        s, m, mb = run(lambda: _dask_ml_incremental(train), client)
        rows.append({"method": "dask-ml Incremental(SGDClassifier)", "seconds": s, "accuracy": m.score(Xte, yte),
                     "peak MB / worker": mb})
    except Exception as exc:  # a peer that cannot run at this size: say so, keep the rest
        rows.append({"method": "dask-ml Incremental(SGDClassifier)", "note": f"failed: {type(exc).__name__}"})
    ref = next(r for r in rows if r["method"].startswith("scikit-learn"))
    for r in rows:
        if "seconds" in r:
            r["x sklearn loop"] = ref["seconds"] / r["seconds"]
        if "accuracy" in r:
            r["accuracy - sklearn"] = r["accuracy"] - ref["accuracy"]
    print_table(f"SGD on hashed text: {n_docs:,} documents → {N_FEATURES:,} features, held-out {n_held:,} "
                f"(Bayes accuracy {bayes:.4f}); 'x sklearn loop' = its seconds / these", rows,
                ["seconds", "x sklearn loop", "accuracy", "accuracy - sklearn", "peak MB / worker", "note"])
    return rows


# ------------------------------------------------------------------------------------------------------
# 2. TruncatedSVD
# ------------------------------------------------------------------------------------------------------


def hashed_store(train: Path, n_docs: int, client) -> tuple[Path, float]:
    path = DATA / f"hashed-{n_docs}.zarr"
    seconds = 0.0
    if not path.exists():
        t0 = time.perf_counter()
        ds = sm.open_dataset(train)
        write_sparse(HashingVectorizer(n_features=N_FEATURES).transform(ds["text"]), path, y=ds["y"])
        seconds = time.perf_counter() - t0
    return path, seconds


def _svd_rows(name: str, fit, ref: np.ndarray | None, client=None, **extra) -> dict:
    try:
        s, m, mb = run(fit, client)
    except Exception as exc:  # a peer that cannot run at this size: say so, keep the rest
        return {"method": name, "note": f"failed: {type(exc).__name__}: {str(exc)[:70]}"}
    row = {"method": name, "seconds": s, "peak MB / worker": mb, **extra}
    if ref is not None:
        row["rel err"] = float(np.max(np.abs(np.asarray(m.singular_values_) / ref - 1)))
    return row


def svd(n_docs: int, n_exact: int, n_speed: int, k: int, client, n_iter: int, oversamples: int) -> list[dict]:
    from dask_ml.decomposition import TruncatedSVD as DaskMLSVD
    from sklearn.decomposition import TruncatedSVD as SkSVD

    store, write_s = hashed_store(DATA / f"text-{n_docs}", n_docs, client)
    X = sm.open_dataset(store)["X"].data
    params = {"n_iter": n_iter, "n_oversamples": oversamples, "random_state": 0}
    rows = []
    # accuracy, where scikit-learn's exact (ARPACK) answer is affordable
    Xm = X[:n_exact].compute()
    s, exact, _ = run(lambda: SkSVD(k, algorithm="arpack", random_state=0).fit(Xm))
    ref = exact.singular_values_
    rows.append({"method": f"scikit-learn ARPACK (exact), {n_exact:,} docs", "seconds": s, "rel err": 0.0})
    rows.append(_svd_rows(f"scikit-learn randomized, {n_exact:,} docs", lambda: SkSVD(k, random_state=0).fit(Xm), ref))
    rows.append(_svd_rows(f"scaleml TruncatedSVD({k}), {n_exact:,} docs", lambda: sm.TruncatedSVD(k, **params).fit(Xm),
                          ref, client))
    # speed against the peers that run out of core (or in memory where it fits), same passes
    sub = X[:n_speed]
    ours = _svd_rows(f"scaleml TruncatedSVD({k}), {n_speed:,} docs", lambda: sm.TruncatedSVD(k, **params).fit(sub),
                     None, client)
    rows.append(ours)
    rows.append(_svd_rows(f"dask-ml TruncatedSVD({k}), {n_speed:,} docs",
                          lambda: DaskMLSVD(k, algorithm="randomized", n_iter=n_iter, random_state=0).fit(sub), None,
                          client))
    rows.append(_svd_rows(f"scikit-learn randomized, {n_speed:,} docs (in memory)",
                          lambda: SkSVD(k, n_iter=n_iter, n_oversamples=oversamples, random_state=0).fit(
                              sub.compute()), None))
    for r in rows[-2:]:
        if "seconds" in r and "seconds" in ours:
            r["x scaleml"] = r["seconds"] / ours["seconds"]
    # the whole matrix
    rows.append(_svd_rows(f"scaleml TruncatedSVD({k}), {n_docs:,} docs",
                          lambda: sm.TruncatedSVD(k, **params).fit(store), None, client, passes=n_iter + 1,
                          note=f"the hashed store written once in {write_s:.0f} s" if write_s else ""))
    p_active = int(np.unique(X.blocks[0].compute().indices).size)  # the first chunk's share of the active columns
    print_table(f"TruncatedSVD({k}) of hashed text ({N_FEATURES:,} features; n_iter={n_iter}, n_oversamples="
                f"{oversamples} for ours and the peers' randomized runs on the speed subset); rel err = max |s / "
                "s_ARPACK - 1|; 'x scaleml' = seconds / ours on the same documents; our memory per worker is bounded "
                f"by a chunk, the basis Z and one sum over the active columns p' (the first chunk alone touches "
                f"{p_active:,}): p' × l = {p_active * (k + oversamples) * 8 / 2**20:,.0f} MB or more (never p × l = "
                f"{N_FEATURES * (k + oversamples) * 8 / 2**20:,.0f} MB, never p², never n × l)", rows,
                ["seconds", "x scaleml", "rel err", "passes", "peak MB / worker", "note"])
    return rows


# ------------------------------------------------------------------------------------------------------
# 3. Wide PCA
# ------------------------------------------------------------------------------------------------------


def _sklearn_pca(X, k: int) -> tuple[list[dict], np.ndarray]:
    """scikit-learn's full SVD (the reference) and randomized PCA of ``X`` loaded into this process."""
    from sklearn.decomposition import PCA as SkPCA

    t0 = time.perf_counter()
    Xm = X.compute()
    load = time.perf_counter() - t0
    s, full, _ = run(lambda: SkPCA(k, svd_solver="full").fit(Xm))
    ref = full.explained_variance_
    rows = [{"method": "scikit-learn PCA full SVD (in memory)", "seconds": s, "rel err": 0.0,
             "note": f"+ load {load:.1f} s; X alone {Xm.nbytes / 2**20:.0f} MB"}]
    s, rand, _ = run(lambda: SkPCA(k, svd_solver="randomized", random_state=0).fit(Xm))
    rows.append({"method": "scikit-learn PCA randomized (in memory)", "seconds": s,
                 "rel err": float(np.max(np.abs(rand.explained_variance_ / ref - 1)))})
    return rows, ref


def wide_pca(n: int, p: int, k: int, client) -> list[dict]:
    from dask_ml.decomposition import PCA as DaskMLPCA

    path = DATA / f"wide-{n}x{p}.zarr"
    if not path.exists():
        make_mixture(path, n, p, 30, cluster_std=1.0, seed=7, client=client)
    X = sm.open_dataset(path)["X"].data
    dask.compute(X.sum())
    rows, ref = _sklearn_pca(X, k)
    for solver in ("auto", "randomized"):
        s, ours, mb = run(lambda sv=solver: sm.PCA(k, solver=sv, random_state=0).fit(path), client)
        rows.append({"method": f"scaleml PCA(solver={solver!r}) → {ours.solver_}", "seconds": s, "peak MB / worker": mb,
                     "rel err": float(np.max(np.abs(ours.explained_variance_ / ref - 1)))})
    for solver in ("randomized", "tsqr"):
        try:
            s, dml, mb = run(lambda sv=solver: DaskMLPCA(k, svd_solver=sv, random_state=0).fit(X), client)
            rows.append({"method": f"dask-ml PCA(svd_solver={solver!r})", "seconds": s, "peak MB / worker": mb,
                         "rel err": float(np.max(np.abs(np.asarray(dml.explained_variance_) / ref - 1)))})
        except Exception as exc:
            rows.append({"method": f"dask-ml PCA(svd_solver={solver!r})",
                         "note": f"failed: {type(exc).__name__}: {str(exc)[:60]}"})
    base = next(r for r in rows if r["method"].startswith("scaleml PCA(solver='auto')"))
    for r in rows:
        if "seconds" in r:
            r["x scaleml auto"] = r["seconds"] / base["seconds"]
    print_table(f"wide PCA: {n:,} × {p:,} dense float64 ({n * p * 8 / 2**30:.1f} GiB), {k} components; rel err = max "
                "|var / var_full - 1|", rows, ["seconds", "x scaleml auto", "rel err", "peak MB / worker", "note"])
    return rows



# ------------------------------------------------------------------------------------------------------
# 4. Real text
# ------------------------------------------------------------------------------------------------------


def real_text(client, k: int = 50) -> list[dict]:
    """The ChatterBot corpus (utterances in 28 languages that the package ``chatterbot-corpus`` ships): hashing equal
    to scikit-learn's, language identification by SGD against scikit-learn's SGDClassifier on the same hashed rows
    (a stratified 80 / 20 split; the same loss, penalty, schedule and epochs, and scikit-learn's default schedule),
    and TruncatedSVD(k) against ARPACK and scikit-learn's randomized solver."""
    from sklearn.decomposition import TruncatedSVD as SkSVD
    from sklearn.feature_extraction.text import HashingVectorizer as SkHashing
    from sklearn.linear_model import SGDClassifier as SkSGD
    from sklearn.model_selection import train_test_split

    from scaleml_dask.io.text import load_chatterbot_corpus

    languages = ("bengali", "chinese", "dutch", "english", "french", "german", "hebrew", "hindi", "hinglish",
                 "indonesian", "italian", "japanese", "korean", "marathi", "oriya", "persian", "portuguese", "russian",
                 "spanish", "swedish", "tamil", "telugu", "thai", "traditionalchinese", "turkish", "ukrainian", "urdu",
                 "yoruba")
    docs, language = [], []
    for name in languages:
        d, _ = load_chatterbot_corpus((name,))
        docs += d
        language += [name] * len(d)
    _, y = np.unique(language, return_inverse=True)
    ours_hv, sk_hv = HashingVectorizer(n_features=N_FEATURES), SkHashing(n_features=N_FEATURES)
    ours_hv.transform(docs[:100]), sk_hv.transform(docs[:100])  # warm
    rows = []
    s, X, _ = run(lambda: ours_hv.transform(docs))
    s_sk, X_sk, _ = run(lambda: sk_hv.transform(docs))
    rows.append({"method": f"HashingVectorizer, {len(docs):,} documents: scaleml", "seconds": s,
                 "note": f"max |ours - scikit-learn's| = {abs(X - X_sk).max():.1e}"})
    rows.append({"method": "HashingVectorizer: scikit-learn", "seconds": s_sk})
    tr, te = train_test_split(np.arange(len(docs)), test_size=0.2, random_state=0, stratify=y)
    sgd_params = {"loss": "log_loss", "alpha": 1e-5, "learning_rate": "constant", "eta0": 0.1}
    for name, est in ((f"SGDClassifier, {len(languages)} languages: scaleml (local, 1 round x 10 epochs, constant 0.1)",
                       sm.SGDClassifier(mode="local", local_epochs=10, batch_size=1, validation_fraction=0.0,
                                        **sgd_params)),
                      ("SGDClassifier: scikit-learn (10 epochs, constant 0.1)",
                       SkSGD(max_iter=10, tol=None, random_state=0, **sgd_params)),
                      ("SGDClassifier: scikit-learn (10 epochs, its 'optimal' schedule)",
                       SkSGD(loss="log_loss", alpha=1e-5, max_iter=10, tol=None, random_state=0))):
        s, m, _ = run(lambda est=est: est.fit(X[tr], y[tr]), client if isinstance(est, sm.SGDClassifier) else None)
        rows.append({"method": name, "seconds": s, "accuracy": m.score(X[te], y[te])})
    s, exact, _ = run(lambda: SkSVD(k, algorithm="arpack", random_state=0).fit(X))
    ref = exact.singular_values_
    rows.append({"method": f"TruncatedSVD({k}): scikit-learn ARPACK (exact)", "seconds": s, "rel err": 0.0})
    rows.append(_svd_rows(f"TruncatedSVD({k}): scaleml (n_iter 12, n_oversamples 100)",
                          lambda: sm.TruncatedSVD(k, n_iter=12, n_oversamples=100, random_state=0).fit(X), ref, client))
    rows.append(_svd_rows(f"TruncatedSVD({k}): scikit-learn randomized, same n_iter / oversamples",
                          lambda: SkSVD(k, n_iter=12, n_oversamples=100, random_state=0).fit(X), ref))
    rows.append(_svd_rows(f"TruncatedSVD({k}): scikit-learn randomized (its defaults)",
                          lambda: SkSVD(k, random_state=0).fit(X), ref))
    print_table(f"Real text: the ChatterBot corpus, {len(docs):,} utterances in {len(languages)} languages, hashed to "
                f"{N_FEATURES:,} features (in memory; ours fits on the same LocalCluster)", rows,
                ["seconds", "accuracy", "rel err", "peak MB / worker", "note"])
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="200,000 documents, 20 components, 20,000 for the SVD subset, 300 x 20,000")
    ap.add_argument("--docs", type=int, default=10_000_000)
    ap.add_argument("--heldout", type=int, default=200_000)
    ap.add_argument("--svd-exact-docs", type=int, default=2_000, help="documents of the ARPACK (exact) comparison")
    ap.add_argument("--svd-docs", type=int, default=50_000, help="documents of the speed comparison with the peers")
    ap.add_argument("--svd-store-docs", type=int, default=200_000,
                    help="documents of the whole-matrix TruncatedSVD (hashed and stored once: ~1 GB per million)")
    ap.add_argument("--components", type=int, default=100)
    ap.add_argument("--svd-iter", type=int, default=12)
    ap.add_argument("--svd-oversamples", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1, help="federated-averaging rounds of our SGD")
    ap.add_argument("--local-epochs", type=int, default=OURS["local_epochs"],
                    help="epochs of our SGD over each chunk per round (each round reads and hashes the documents once)")
    ap.add_argument("--wide", default="2000,200000", help="rows,columns of the wide PCA store")
    ap.add_argument("--parts", default="sgd,svd,pca,real")
    args = ap.parse_args(argv)
    if args.quick:
        args.docs, args.heldout, args.svd_exact_docs, args.svd_docs, args.svd_store_docs, args.components, \
            args.wide = 200_000, 20_000, 2_000, 20_000, 200_000, 20, "300,20000"
    parts = args.parts.split(",")
    out = {}
    with cluster_client() as client:
        if "sgd" in parts:
            out["sgd"] = timed("sgd", sgd, args.docs, args.heldout, client, args.rounds, args.local_epochs)
        if "svd" in parts:
            text_data(args.svd_store_docs, args.heldout, client)
            out["svd"] = timed("svd", svd, args.svd_store_docs, args.svd_exact_docs, args.svd_docs, args.components,
                               client, args.svd_iter, args.svd_oversamples)
        if "pca" in parts:
            n, p = (int(v) for v in args.wide.split(","))
            out["pca"] = timed("pca", wide_pca, n, p, 20, client)
        if "real" in parts:
            out["real"] = timed("real", real_text, client)
    return out


def timed(part: str, fn, *args):
    """``fn(*args)``, printing how long the part took with its data preparation (for sizing a run)."""
    t0 = time.perf_counter()
    out = fn(*args)
    print(f"part {part}: {time.perf_counter() - t0:.0f} s in all (data preparation included)", flush=True)
    return out


if __name__ == "__main__":
    Path(DATA).mkdir(parents=True, exist_ok=True)
    main()
