"""Out-of-core k-means: k-means|| initialisation and one fused pass over the data per Lloyd iteration.

Every pass maps a pure block kernel of ``_kmeans_kernels`` over the row chunks and combines the per-chunk
results by the fixed tree of ``passes.tree_reduce``, in one ``dask.compute``: the result depends on the
chunking and ``random_state``, never on the number of workers or the order tasks finish in.

- **k-means||** (Bahmani et al., 2012): a first centre drawn at random, then ``init_rounds`` passes, each
  computing every row's d² to the candidates and sampling ``ℓ = oversampling_factor × k`` new candidates in
  expectation with probability ∝ d² (the per-chunk threshold trick of ``candidate_block`` makes the sample
  exact within that same pass). A last pass counts the weight each candidate attracts; a weighted
  k-means++ and weighted Lloyd iterations on the few hundred candidates (scikit-learn's, in memory) give
  the ``k`` initial centres. ``init_rounds + 1`` passes in all (fewer if every row is already a candidate);
  each row's nearest candidate (12 bytes) is kept on the workers between rounds, so a round computes the
  distances to its new candidates only.
- **Lloyd**: each pass assigns every row (GEMM distances, argmin, partial sums, weights and inertia in one
  compiled loop, float64 accumulation) and returns the chunk's farthest rows, where empty clusters are
  relocated as scikit-learn does. It stops when the squared centre shift is at most ``tol`` × the mean
  feature variance (scikit-learn's rule; the variances come from the first pass) or when the inertia changes
  by less than ``tol × 1e-2`` relatively. The centres kept are those of the last pass, so ``inertia_`` is
  their exact cost, from that same pass.
- **Memory**: on a distributed cluster, input that takes at most ``PERSIST_FRACTION`` of the workers' memory
  is held there for the duration of the fit (the passes skip reading and decoding the store); larger input
  is streamed from the store at every pass, in bounded memory per worker.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import dask
import dask.array as da
import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names

from ._kmeans_kernels import (
    NEAREST,
    LloydPart,
    candidate_block,
    combine_candidates,
    combine_lloyd,
    dense_rows,
    lloyd_block,
    nearest,
    sq_distances,
)
from ._moments import check_sample_weight
from ._repr import FittedSummaryMixin
from .passes import map_row_chunks, one_pass, tree_reduce
from .validation import (
    SparseInputMixin,
    as_dask_array,
    check_array,
    check_is_fitted,
    check_n_features,
    check_predict_input,
    finite_blocks,
    in_memory,
    restored_state_problem,
)

#: Relative change of inertia, per unit of ``tol``, below which Lloyd iterations stop.
INERTIA_RTOL = 1e-2
#: Weighted Lloyd iterations on the k-means|| candidates (Spark's LocalKMeans uses 30 as well).
CANDIDATE_ITER = 30
#: Out-of-core input is held in cluster memory during the fit (``persist``) when it takes at most this
#: fraction of the workers' combined memory limit: every pass then skips reading and decoding the store
#: (benchmarks/README.md, "k-means"); larger input is streamed from the store at every pass.
PERSIST_FRACTION = 0.25
#: Rows of the uniform sample that ``init="k-means++"`` runs on for out-of-core input.
PLUSPLUS_SAMPLE = 10_000


class KMeans(SparseInputMixin, FittedSummaryMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """K-means clustering of data larger than memory, with scikit-learn's conventions.

    Parameters
    ----------
    n_clusters : number of clusters ``k``.
    init : ``"k-means||"`` (scalable k-means++, a few passes), ``"k-means++"`` (exact for numpy input, on a
        uniform sample of ``PLUSPLUS_SAMPLE`` rows otherwise) or an array ``(k, n_features)`` of centres.
    max_iter : Lloyd passes at most; the centres returned are those the last pass evaluated (so ``inertia_``
        is theirs): ``max_iter=1`` returns the initial centres. tol : relative tolerance (module docstring).
    n_init : independent initialisations; the run of least inertia is kept (1 for an array ``init``).
    random_state : seeds every draw (first centre, samples per chunk and round, k-means++).
    oversampling_factor : ``ℓ / k``, candidates sampled per k-means|| round. init_rounds : sampling rounds.

    Attributes
    ----------
    cluster_centers_ (k, n_features), labels_ (numpy for numpy input, else a lazy dask array), inertia_ (the
    weighted sum of squared distances to the final centres), n_iter_ (Lloyd passes), inertia_history_ (the
    inertia of every Lloyd pass), n_features_in_, feature_names_in_ (for input with column names).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(c, 0.1, size=(50, 2)) for c in ([0, 0], [5, 5], [0, 5])])
    >>> km = KMeans(n_clusters=3, random_state=0).fit(X)
    >>> sorted((np.round(km.cluster_centers_) + 0.0).tolist()), km.n_iter_
    ([[0.0, 0.0], [0.0, 5.0], [5.0, 5.0]], 1)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means||", "k-means++"}), "array-like"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "oversampling_factor": [Interval(Real, 0, None, closed="neither")],
        "init_rounds": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_clusters: int = 8, *, init: str | np.ndarray = "k-means||", max_iter: int = 300,
                 tol: float = 1e-4, n_init: int = 1, random_state: Any = None, oversampling_factor: float = 2.0,
                 init_rounds: int = 5) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds


    def _fitted_summary(self) -> list[tuple[str, Any]]:
        return [("clusters", self.n_clusters), ("inertia", float(self.inertia_)), ("Lloyd iterations", self.n_iter_)]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> KMeans:
        """Cluster ``X`` (numpy, dask, xarray, zarr, or a dataset path/name); ``y`` is not used."""
        Xn = check_array(X, "X", ndim=2) if _in_memory(X) else None
        _check_feature_names(self, X, reset=True)
        dX = as_dask_array(X if Xn is None else Xn, "X", ndim=2, accept_sparse=True)  # sparse: dense centres
        w = check_sample_weight(sample_weight, dX)
        n, d = dX.shape
        k = self.n_clusters
        if n < k:
            raise ValueError(f"n_samples={n} should be >= n_clusters={k}: X has fewer rows than clusters")
        init = None if isinstance(self.init, str) else _check_init(self.init, k, d)
        labels_source = dX
        dX, w = _held_in_cluster_memory(dX, w)  # numpy input too: sent to the workers once, not at every pass
        rng = check_random_state(self.random_state)
        best = None
        for _ in range(1 if init is not None else self.n_init):
            C0 = init if init is not None else self._initial_centers(dX, w, Xn, sample_weight, rng)
            run = _lloyd(dX, w, C0, self.max_iter, self.tol)
            if best is None or run[1] < best[1]:
                best = run
        self.cluster_centers_, self.inertia_, self.n_iter_, self.inertia_history_ = best
        self.n_features_in_ = d
        self.labels_ = nearest(Xn.astype(np.float64, copy=False), self.cluster_centers_)[0] if Xn is not None \
            else self._predict_dask(labels_source)
        return self

    def _initial_centers(self, dX: da.Array, w: da.Array | None, Xn: np.ndarray | None, sample_weight: Any,
                         rng: np.random.RandomState) -> np.ndarray:
        from sklearn.cluster import kmeans_plusplus

        k = self.n_clusters
        if self.init == "k-means||":
            return _kmeans_parallel(dX, w, k, rng, self.oversampling_factor * k, self.init_rounds)
        if Xn is not None:
            sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
            return kmeans_plusplus(Xn.astype(np.float64, copy=False), k, sample_weight=sw, random_state=rng)[0]
        n = dX.shape[0]
        idx = np.sort(rng.choice(n, min(n, max(PLUSPLUS_SAMPLE, 10 * k)), replace=False))
        S, sw = dask.compute(dX[idx].astype(np.float64), None if w is None else w[idx])
        return kmeans_plusplus(S, k, sample_weight=sw, random_state=rng)[0]

    def _check_restored_state(self) -> str | None:
        """What is wrong with centres loaded from a registry (None if nothing): the compiled distance kernels
        index them as ``(n_clusters, n_features_in_)`` float64."""
        d = self.__dict__.get("n_features_in_")
        layout = [("cluster_centers_", self.__dict__.get("cluster_centers_"), np.float64,
                   (self.n_clusters, d if type(d) is int else -1))]
        return restored_state_problem(type(self).__name__, layout) if "cluster_centers_" in self.__dict__ else None

    def predict(self, X: Any) -> Any:
        """Index of the nearest centre of every row: numpy for numpy input, a lazy dask array otherwise."""
        check_is_fitted(self, "cluster_centers_")
        if in_memory(X):
            return nearest(check_predict_input(self, X, accept_sparse=True), self.cluster_centers_)[0]
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        check_n_features(self, dX.shape[1])
        return self._predict_dask(dX)

    def _predict_dask(self, dX: da.Array) -> da.Array:
        return da.map_blocks(_labels_block, finite_blocks(dX, "X"), self.cluster_centers_, drop_axis=1,
                             dtype=np.int64, meta=np.empty((0,), np.int64))

    def transform(self, X: Any) -> Any:
        """Euclidean distances to the ``k`` centres (n, k): numpy for numpy input, lazy dask otherwise."""
        check_is_fitted(self, "cluster_centers_")
        if in_memory(X):
            return np.sqrt(sq_distances(check_predict_input(self, X, accept_sparse=True), self.cluster_centers_))
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        check_n_features(self, dX.shape[1])
        return da.map_blocks(_distances_block, finite_blocks(dX, "X"), self.cluster_centers_,
                             chunks=(dX.chunks[0], (self.n_clusters,)), dtype=np.float64,
                             meta=np.empty((0, 0), np.float64))

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Minus the (weighted) sum of squared distances of ``X`` to the nearest centres, in one pass."""
        check_is_fitted(self, "cluster_centers_")
        dX = as_dask_array(check_predict_input(self, X, accept_sparse=True) if in_memory(X) else X, "X", ndim=2,
                           accept_sparse=True)
        check_n_features(self, dX.shape[1])
        w = check_sample_weight(sample_weight, dX)
        return -_pass(lloyd_block, combine_lloyd, dX, w, centers=self.cluster_centers_, n_far=0,
                      with_moments=False).inertia


def _in_memory(X: Any) -> bool:
    return isinstance(X, (np.ndarray, list, tuple)) or hasattr(X, "iloc")


def _held_in_cluster_memory(dX: da.Array, w: da.Array | None) -> tuple[da.Array, da.Array | None]:
    """``dX`` and ``w`` persisted on the workers if a distributed client computes them and they fit in
    ``PERSIST_FRACTION`` of its workers' memory; unchanged otherwise (threads, or larger than that)."""
    scheduler = dask.base.get_scheduler(collections=[dX])
    client = getattr(scheduler, "__self__", None)
    if client is None or type(client).__name__ != "Client":
        return dX, w
    limit = sum(info.get("memory_limit") or 0 for info in client.scheduler_info()["workers"].values())
    if dX.nbytes + (0 if w is None else w.nbytes) > PERSIST_FRACTION * limit:
        return dX, w
    from distributed import wait

    held = client.persist([dX] if w is None else [dX, w])
    wait(held)
    return held[0], (None if w is None else held[1])


def _check_init(init: Any, k: int, d: int) -> np.ndarray:
    C = check_array(init, "init", ndim=2).astype(np.float64)
    if C.shape != (k, d):
        raise ValueError(f"init has shape {C.shape}, but n_clusters={k} and X has {d} features: expected {(k, d)}")
    if not np.isfinite(C).all():
        raise ValueError("init contains NaN or inf")
    return C


def _labels_block(x: np.ndarray, C: np.ndarray) -> np.ndarray:
    return nearest(x if hasattr(x, "indptr") else np.asarray(x, dtype=np.float64), C)[0]


def _distances_block(x: np.ndarray, C: np.ndarray) -> np.ndarray:
    return np.sqrt(sq_distances(x if hasattr(x, "indptr") else np.asarray(x, dtype=np.float64), C))


def _pass(kernel: Any, combine: Any, dX: da.Array, w: da.Array | None, **kwargs: Any) -> Any:
    """One pass: ``kernel(x_block, w_block, chunk_index=i, row_start=r, **kwargs)`` on every row chunk (each
    chunk read inside its kernel's task), combined by the fixed tree of ``combine`` calls, in one
    ``dask.compute`` whose last combine runs here (``passes.one_pass``: no extra task and transfer per pass)."""
    return one_pass(kernel, combine, dX, w, **kwargs)


def _lloyd(dX: da.Array, w: da.Array | None, C: np.ndarray, max_iter: int, tol: float
           ) -> tuple[np.ndarray, float, int, np.ndarray]:
    """Lloyd passes from centres ``C``: (centres, their inertia, passes, inertia of every pass)."""
    history: list[float] = []
    tol_shift = 0.0
    for it in range(max_iter):
        p = _pass(lloyd_block, combine_lloyd, dX, w, centers=C, n_far=len(C), with_moments=it == 0 and tol > 0)
        if not np.any(p.weights > 0):
            raise ValueError("sample_weight: all weights are zero; at least one must be positive")
        if p.moments is not None:
            rows, s, ss = p.moments
            tol_shift = tol * float(np.mean(np.maximum(ss / rows - (s / rows) ** 2, 0.0)))
        history.append(p.inertia)
        new = _updated_centers(p, C)
        small_change = it > 0 and abs(history[-2] - p.inertia) <= INERTIA_RTOL * tol * p.inertia
        if float(np.sum((new - C) ** 2)) <= tol_shift or small_change:
            break
        C = new
    return C, history[-1], len(history), np.asarray(history)


def _updated_centers(p: LloydPart, C: np.ndarray) -> np.ndarray:
    """The means of the clusters; an empty cluster takes the farthest row from its centre (as scikit-learn:
    the row leaves its old cluster's sum)."""
    sums, weights = p.sums.copy(), p.weights.copy()
    for j, empty in enumerate(np.flatnonzero(weights == 0)):
        if j >= len(p.far.d2):
            break
        old, x, wx = p.far.labels[j], p.far.x[j], p.far.w[j]
        sums[old] -= wx * x
        weights[old] -= wx
        sums[empty], weights[empty] = wx * x, wx
    new = C.copy()
    ok = weights > 0
    new[ok] = sums[ok] / weights[ok, None]
    return new


def _kmeans_parallel(dX: da.Array, w: da.Array | None, k: int, rng: np.random.RandomState, ell: float,
                     rounds: int) -> np.ndarray:
    """k-means|| (Bahmani et al.): candidates by d²-sampling rounds (``kmeans_parallel_candidates``), reduced to
    ``k`` by weighted k-means++ and weighted Lloyd in memory (``reduce_candidates``)."""
    cands, weights = kmeans_parallel_candidates(dX, w, rng, ell, rounds)
    return reduce_candidates(dX, cands, weights, k, rng)


def kmeans_parallel_candidates(dX: da.Array, w: da.Array | None, rng: np.random.RandomState, ell: float,
                               rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """The k-means|| candidates and the weight each attracts (``ell`` sampled per round in expectation).

    Each row's nearest candidate so far (``NEAREST``, 12 bytes a row) stays in cluster memory between rounds,
    so a round computes distances to the candidates it adds only (about ``ℓ``), not to all of them. Rounds map
    over the row chunks with ``map_row_chunks``, as Lloyd passes do: a chunk streamed from the store is read
    inside its round's task, which runs where that chunk's state is (no read task, no chunk or state moved
    between workers).
    """
    n = dX.shape[0]
    cands = dense_rows(dX[int(rng.randint(n))].compute()).reshape(1, -1)
    seed = int(rng.randint(2**31))
    state = None
    new, offset = cands, 0
    for r in range(rounds + 1):
        last = r == rounds
        outs = map_row_chunks(candidate_block, dX, w, state, centers=new, offset=offset, n_candidates=len(cands),
                              ell=0.0 if last else ell, seed=seed, round_=r)
        reduced = tree_reduce([o[1] for o in outs], combine_candidates)
        if last:
            p = reduced.compute()
            break
        nearest_so_far = da.concatenate([da.from_delayed(o[0], (rows,), dtype=NEAREST)
                                         for o, rows in zip(outs, dX.chunks[0])])
        nearest_so_far, reduced = dask.persist(nearest_so_far, reduced)
        p = reduced.compute()
        state = nearest_so_far  # only now: the round's tasks need the previous state until they have run
        if p.cost == 0:
            break
        new, offset = p.x[p.keys < ell / p.cost], len(cands)
        cands = np.vstack([cands, new])
        if not len(new):
            break
    return cands, p.weights


def reduce_candidates(dX: da.Array, cands: np.ndarray, weights: np.ndarray, k: int,
                      rng: np.random.RandomState) -> np.ndarray:
    """``k`` centres from weighted candidates: weighted k-means++, then weighted Lloyd (in memory); rows drawn
    from ``dX`` when there are fewer candidates than ``k``."""
    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.cluster import kmeans_plusplus

    n = dX.shape[0]
    if len(cands) <= k:
        extra = np.sort(rng.choice(n, k - len(cands), replace=False))
        return np.vstack([cands, dense_rows(dX[extra].compute())]) if len(extra) else cands
    C0 = kmeans_plusplus(cands, k, sample_weight=weights, random_state=rng)[0]
    km = SkKMeans(k, init=C0, n_init=1, max_iter=CANDIDATE_ITER, random_state=rng)
    return km.fit(cands, sample_weight=weights).cluster_centers_
