"""k nearest neighbours of the (reduced) input: exact blockwise, or approximate with pynndescent.

Exact search cuts the queries into row blocks; each block is one task (on the dask cluster when a
client is active; in this process when there is only one block or ``local=True``) that takes inner
products with every row in one float32 GEMM and keeps the k nearest per row with a bounded max-heap,
so a task holds O(block · n) and the result O(n · k). Distances to the chosen neighbours are then
recomputed in float64, so they do not carry the GEMM's cancellation error. Approximate search uses
pynndescent (imported lazily).

>>> import numpy as np
>>> X = np.array([[0.0], [1.0], [3.0], [7.0]], dtype=np.float32)
>>> idx, dist = nearest_neighbors(X, 2, method="exact")
>>> idx.tolist(), dist.tolist()
([[1, 2], [0, 2], [1, 0], [2, 1]], [[1.0, 3.0], [1.0, 2.0], [2.0, 3.0], [4.0, 6.0]])
"""

from __future__ import annotations

import dask
import numba
import numpy as np

#: Above this many rows "auto" switches from exact search to pynndescent.
EXACT_NEIGHBORS_MAX_SAMPLES = 100_000
#: Bytes of the (block × n) distance matrix of one exact task.
_BLOCK_BYTES = 64 * 2**20


@numba.njit(nogil=True, cache=True)
def _top_k(gram: np.ndarray, sq_norms: np.ndarray, row_start: int, k: int, idx_out: np.ndarray) -> None:
    """Per row r of ``gram = Q @ X.T``, the k columns with the smallest ``|x_c|^2 - 2 gram[r, c]``.

    That is the squared distance less the constant ``|q_r|^2``, so the ranking is the distance
    ranking; self (column ``row_start + r``) is excluded. A bounded max-heap rejects most columns
    with one comparison.
    """
    b, n = gram.shape
    heap_d = np.empty(k, dtype=np.float32)
    heap_i = np.empty(k, dtype=np.int32)
    for r in range(b):
        self_col = row_start + r
        size = 0
        for c in range(n):
            if c == self_col:
                continue
            d = sq_norms[c] - 2.0 * gram[r, c]
            if size < k:  # sift up
                pos = size
                size += 1
                while pos > 0:
                    parent = (pos - 1) // 2
                    if heap_d[parent] >= d:
                        break
                    heap_d[pos] = heap_d[parent]
                    heap_i[pos] = heap_i[parent]
                    pos = parent
                heap_d[pos] = d
                heap_i[pos] = c
            elif d < heap_d[0]:  # replace the root, sift down
                pos = 0
                while True:
                    child = 2 * pos + 1
                    if child >= k:
                        break
                    if child + 1 < k and heap_d[child + 1] > heap_d[child]:
                        child += 1
                    if heap_d[child] <= d:
                        break
                    heap_d[pos] = heap_d[child]
                    heap_i[pos] = heap_i[child]
                    pos = child
                heap_d[pos] = d
                heap_i[pos] = c
        order = np.argsort(heap_d)
        for a in range(k):
            idx_out[r, a] = heap_i[order[a]]


def _exact_block(X: np.ndarray, sq_norms: np.ndarray, start: int, stop: int, k: int) -> np.ndarray:
    gram = X[start:stop] @ X.T
    idx = np.empty((stop - start, k), dtype=np.int32)
    _top_k(gram, sq_norms, start, k, idx)
    return idx


def _exact(X: np.ndarray, k: int, local: bool) -> np.ndarray:
    n = X.shape[0]
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    sq_norms = np.einsum("ij,ij->i", X32, X32)
    block = int(max(64, min(n, _BLOCK_BYTES // (4 * n))))
    starts = range(0, n, block)
    if local or len(starts) == 1:
        return np.concatenate([_exact_block(X32, sq_norms, s, min(n, s + block), k) for s in starts])
    Xd, nd = dask.delayed(X32, pure=True), dask.delayed(sq_norms, pure=True)
    tasks = [dask.delayed(_exact_block, pure=True)(Xd, nd, s, min(n, s + block), k) for s in starts]
    return np.concatenate(dask.compute(*tasks))


def _approximate(X: np.ndarray, k: int, random_state: int | None, n_jobs: int) -> np.ndarray:
    """pynndescent with a t-SNE budget: few trees and iterations, 30 candidates.

    pynndescent's own defaults aim at recall ~0.999; t-SNE's affinities need less, and at 300,000 × 50
    these settings gave recall@90 0.968 in a fraction of the time (benchmarks/README.md, "t-SNE").
    ``estimate_recall`` measures what a run got.
    """
    from pynndescent import NNDescent

    index = NNDescent(X, n_neighbors=k + 1, metric="euclidean", random_state=random_state, n_jobs=n_jobs,
                      n_trees=6, n_iters=6, max_candidates=30, low_memory=True, compressed=True,
                      verbose=False)
    # the graph as built (rows sorted by distance); the public ``neighbor_graph`` copies it and the distances
    graph = index._neighbor_graph[0] if hasattr(index, "_neighbor_graph") else index.neighbor_graph[0]
    del index
    return _drop_self(graph, k)


def estimate_recall(X: np.ndarray, idx: np.ndarray, *, n_queries: int = 200,
                    random_state: int | None = None) -> float:
    """Fraction of the true k nearest neighbours that ``idx`` holds, by exact search for sampled rows."""
    n, k = idx.shape
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    sq_norms = np.einsum("ij,ij->i", X32, X32)
    queries = np.random.default_rng(random_state).choice(n, min(n, n_queries), replace=False)
    found = 0
    for s in range(0, len(queries), 16):  # 16 x n float32 per step
        q = queries[s:s + 16]
        d = sq_norms - 2.0 * (X32[q] @ X32.T)
        d[np.arange(len(q)), q] = np.inf
        true = np.argpartition(d, k, axis=1)[:, :k]
        found += sum(np.intersect1d(a, b).size for a, b in zip(true, idx[q]))
    return found / (len(queries) * k)


@numba.njit(parallel=True, cache=True)
def _drop_self(graph: np.ndarray, k: int) -> np.ndarray:
    """Remove each row's own index (or, if absent, its farthest neighbour) from a (n, k+1) graph."""
    n = graph.shape[0]
    out = np.empty((n, k), dtype=np.int32)
    for i in numba.prange(n):
        skip = k
        for a in range(k + 1):
            if graph[i, a] == i:
                skip = a
                break
        b = 0
        for a in range(k + 1):
            if a != skip:
                out[i, b] = graph[i, a]
                b += 1
    return out


@numba.njit(parallel=True, cache=True)
def _sort_rows(idx: np.ndarray, dist: np.ndarray) -> None:
    """Sort each row by distance, in place and stably (rows arrive nearly sorted: insertion sort)."""
    n, k = idx.shape
    for i in numba.prange(n):
        for a in range(1, k):
            d, j = dist[i, a], idx[i, a]
            b = a - 1
            while b >= 0 and dist[i, b] > d:
                dist[i, b + 1] = dist[i, b]
                idx[i, b + 1] = idx[i, b]
                b -= 1
            dist[i, b + 1] = d
            idx[i, b + 1] = j


@numba.njit(parallel=True, cache=True)
def _distances(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Euclidean distance (float64 sums, float32 result) from each row to its listed neighbours."""
    n, k = idx.shape
    out = np.empty((n, k), dtype=np.float32)
    for i in numba.prange(n):
        for a in range(k):
            j = idx[i, a]
            s = 0.0
            for c in range(X.shape[1]):
                d = np.float64(X[i, c]) - np.float64(X[j, c])
                s += d * d
            out[i, a] = np.sqrt(s)
    return out


def choose_neighbors_method(method: str, n: int) -> str:
    """What ``method`` means for ``n`` rows: "auto" is exact up to ``EXACT_NEIGHBORS_MAX_SAMPLES``, pynndescent
    above."""
    if method == "auto":
        return "exact" if n <= EXACT_NEIGHBORS_MAX_SAMPLES else "approx"
    return method


def nearest_neighbors(
    X: np.ndarray,
    k: int,
    *,
    method: str = "auto",
    random_state: int | None = None,
    n_jobs: int = 1,
    local: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (int32) and Euclidean distances (float32) of each row's ``k`` nearest other rows.

    ``method`` is ``"exact"``, ``"approx"`` (pynndescent) or ``"auto"`` (exact up to
    ``EXACT_NEIGHBORS_MAX_SAMPLES`` rows). Rows are sorted by distance. ``local=True`` runs the exact
    search's blocks in this process rather than as dask tasks.
    """
    n = X.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k={k} neighbours need 1 <= k < n_samples={n}")
    method = choose_neighbors_method(method, n)
    if method == "exact":
        idx = _exact(X, k, local)
    elif method == "approx":
        idx = _approximate(X, k, random_state, n_jobs)
    else:
        raise ValueError(f"unknown neighbors method {method!r}; use 'auto', 'exact' or 'approx'")
    dist = _distances(np.ascontiguousarray(X), idx)
    _sort_rows(idx, dist)  # in place: an argsort would hold three more (n, k) arrays at the peak
    return idx, dist
