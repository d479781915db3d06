"""Compression of a hashed-text classifier (2**20 features): size on disk, scoring latency per batch, accuracy.

A ``SGDClassifier`` is fitted on generated documents (a Zipf vocabulary with planted topics) hashed to 2**20
features; its float64, float16, int8 and pruned versions (keeping a half, a tenth and a hundredth of the weights
the training documents touched) are saved to a registry and measured on held-out CSR batches of ``--batch``
documents. Beside them, the scoring kernels on the same batches: scipy's float64 CSR product (the floor a
float64 model pays), the int8 gather kernel (``scaleml_dask._compact_weights``), the same int8 gather with
numba's signed indices (the earlier kernel, with a wrap-around check on every index), and for the model pruned
to a half, a tenth and a hundredth of its touched weights the float64 gather from the dense ``W`` against the
bitmap + rank lookup of the kept weights (``SparseWeights``) — and all of them again on a batch whose features
are spread uniformly over the 2**20 (weights out of cache: what int8 and the lookup are for).

    python benchmarks/bench_compress.py [--quick] [--docs 200000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
import scipy.sparse as sp
from bench_regression import print_table

import scaleml_dask as sm
from scaleml_dask._compact_weights import Int8Weights, SparseWeights
from scaleml_dask.deploy.compress import tradeoff
from scaleml_dask.feature_extraction.text import HashingVectorizer
from scaleml_dask.io.synthetic_text import TextModel

P = 2**20


@numba.njit(cache=True, nogil=True)
def _signed_gather(data, indices, indptr, q, out):  # pragma: no cover - compiled
    """The int8 gather with signed loop and index variables: numba checks each for a negative value."""
    for i in range(out.shape[0]):
        acc = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            acc += data[p] * q[indices[p], 0]
        out[i, 0] = acc


def best_ms(fn, repeats: int = 20) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def kernels(model, batches: dict[str, sp.csr_matrix]) -> list[dict]:
    W = model._state.W
    scale = np.abs(W[:-1]).max(axis=0, keepdims=True) / 127.0
    Wq = np.vstack([np.clip(np.rint(W[:-1] / scale), -127, 127) * scale, W[-1:]])
    int8 = Int8Weights.of(Wq, scale)
    touched = np.flatnonzero(W[:-1, 0])
    pruned = {}
    for share, parts in (("1/2", 2), ("1/10", 10), ("1/100", 100)):
        keep = touched[np.argsort(-np.abs(W[touched, 0]))[: len(touched) // parts]]
        Wp = np.zeros_like(W)
        Wp[keep], Wp[-1] = W[keep], W[-1]
        pruned[share] = SparseWeights.of(Wp, csr_kernel="masked")
    rows = []
    for label, X in batches.items():
        out = np.empty((X.shape[0], 1))
        _signed_gather(X.data, X.indices, X.indptr, int8.q, out)
        base = best_ms(lambda X=X: X @ Wq[:-1] + Wq[-1])
        cases = [("scipy float64 CSR product", lambda X=X: X @ Wq[:-1] + Wq[-1]),
                 ("int8 gather (unsigned indices)", lambda X=X: int8(X)),
                 ("int8 gather (signed indices: the earlier kernel)",
                  lambda X=X, out=out: _signed_gather(X.data, X.indices, X.indptr, int8.q, out))]
        for share, sw in pruned.items():
            cases += [(f"pruned to {share} of the touched: float64 gather from the dense W",
                       lambda X=X, sw=sw: X @ sw.W[:-1] + sw.W[-1]),
                      (f"pruned to {share} of the touched: bitmap + rank lookup of the kept weights",
                       lambda X=X, sw=sw: sw(X))]
        for name, fn in cases:
            ms = best_ms(fn)
            rows.append({"method": f"{label}: {name}", "ms / batch": ms, "x scipy": base / ms})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40,000 documents")
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1_000)
    args = ap.parse_args(argv)
    n = 40_000 if args.quick else args.docs
    text = TextModel.make(vocabulary=50_000, seed=11)
    hv = HashingVectorizer(n_features=P)
    parts = [text.documents(i, min(50_000, n - i * 50_000)) for i in range(-(-n // 50_000))]
    X = sp.vstack([hv.transform(d) for d, _ in parts], format="csr")
    y = np.concatenate([labels for _, labels in parts])
    held_docs, y_val = text.documents(10**6, 20_000)
    X_val = hv.transform(held_docs)
    model = sm.SGDClassifier(mode="local", loss="log_loss", learning_rate="invscaling", eta0=16.0, alpha=1e-6,
                             batch_size=1, rounds=1, local_epochs=8, validation_fraction=0.0, random_state=0).fit(X, y)
    W = model._weights()
    touched = np.count_nonzero(W)
    rows = tradeoff(model, X_val[: args.batch], y_val[: args.batch],
                    fractions=tuple(1.0 - touched * k / W.size for k in (0.5, 0.1, 0.01)))
    for r in rows:
        r["ms / batch"] = r.pop("ms_per_1000_rows") * args.batch / 1000
    print_table(f"SGDClassifier on {n:,} hashed documents (2**20 features, {touched:,} touched): each version "
                f"saved and scored on a held-out batch of {args.batch:,} documents", rows,
                ["bytes", "size_ratio", "weight_bytes", "ms / batch", "accuracy_change", "max_abs_diff"])
    rng = np.random.default_rng(0)
    batch = X_val[: args.batch]
    spread = sp.csr_matrix((batch.data, rng.integers(0, P, batch.nnz).astype(np.int32), batch.indptr),
                           shape=batch.shape)
    print_table("The scoring kernels on the same batch, and on one whose features are spread uniformly", kernels(
        model, {"held-out documents": batch, "spread features": spread}), ["ms / batch", "x scipy"])


if __name__ == "__main__":
    main()
