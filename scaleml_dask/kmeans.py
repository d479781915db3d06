"""Out-of-core k-means: k-means|| initialisation and one fused pass over the data per Lloyd iteration.

Every pass maps a pure block kernel of ``_kmeans_kernels`` over the row chunks and combines the per-chunk
results by the fixed tree of ``passes.tree_reduce``, in one ``dask.compute``: the result depends on the
chunking and ``random_state``, never on the number of workers or the order tasks finish in.

- **k-means||** (Bahmani et al., 2012) in **one pass**: each chunk's task runs k-means|| on its own rows, in
  memory — a first row drawn at random, then ``init_rounds`` rounds each adding every row with probability
  ``min(1, ℓ w d² / cost)`` (``ℓ = oversampling_factor × k``, d² to the chunk's candidates so far, computed
  for the new ones only) — and returns its candidates weighted by the rows nearest to each. The weighted
  candidates of all chunks (summarised again by the same seeding past ``MAX_CANDIDATE_ROWS``: the composition
  of Ailon, Jaiswal & Monteleoni's streaming k-means) are reduced to ``k`` centres in memory by a weighted
  k-means++ and weighted Lloyd iterations (scikit-learn's). On data larger than memory every pass is a read
  of the store: the whole-data k-means|| paid ``init_rounds + 1`` of them, this pays one
  (``benchmarks/README.md``, "Larger than memory"). ``n_init`` initialisations share that pass.
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

import functools
from numbers import Integral, Real
from typing import Any, ClassVar

import dask
import dask.array as da
import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names

from ._deployable import CentreWeights
from ._kmeans_kernels import (
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
from .passes import one_pass, shared
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


class KMeans(CentreWeights, SparseInputMixin, FittedSummaryMixin, ClusterMixin, TransformerMixin, BaseEstimator):
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
    ([[0.0, 0.0], [0.0, 5.0], [5.0, 5.0]], 2)
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
        cands = kmeans_parallel_candidates(dX, w, rng, self.oversampling_factor * k, self.init_rounds) \
            if init is None and self.init == "k-means||" else None
        best = None
        for _ in range(1 if init is not None else self.n_init):
            C0 = init if init is not None else self._initial_centers(dX, w, Xn, sample_weight, rng, cands)
            run = _lloyd(dX, w, C0, self.max_iter, self.tol)
            if best is None or run[1] < best[1]:
                best = run
        self.cluster_centers_, self.inertia_, self.n_iter_, self.inertia_history_ = best
        self.n_features_in_ = d
        self.labels_ = nearest(Xn.astype(np.float64, copy=False), self.cluster_centers_)[0] if Xn is not None \
            else self._predict_dask(labels_source)
        return self

    def _initial_centers(self, dX: da.Array, w: da.Array | None, Xn: np.ndarray | None, sample_weight: Any,
                         rng: np.random.RandomState, cands: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        from sklearn.cluster import kmeans_plusplus

        k = self.n_clusters
        if cands is not None:
            return reduce_candidates(dX, *cands, k, rng)
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
        return da.map_blocks(_labels_block, finite_blocks(dX, "X"), shared(self.cluster_centers_), drop_axis=1,
                             dtype=np.int64, meta=np.empty((0,), np.int64))

    def transform(self, X: Any) -> Any:
        """Euclidean distances to the ``k`` centres (n, k): numpy for numpy input, lazy dask otherwise."""
        check_is_fitted(self, "cluster_centers_")
        if in_memory(X):
            return np.sqrt(sq_distances(check_predict_input(self, X, accept_sparse=True), self.cluster_centers_))
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        check_n_features(self, dX.shape[1])
        return da.map_blocks(_distances_block, finite_blocks(dX, "X"), shared(self.cluster_centers_),
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


def kmeans_parallel_candidates(dX: da.Array, w: da.Array | None, rng: np.random.RandomState, ell: float,
                               rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """The weighted k-means|| candidates of every chunk and their weights, in one pass (module docstring)."""
    seed = int(rng.randint(2**31))
    combine = functools.partial(combine_candidates, ell=ell, rounds=rounds, seed=seed)
    part = _pass(candidate_block, combine, dX, w, ell=ell, rounds=rounds, seed=seed)
    return part.x, part.weights


def reduce_candidates(dX: da.Array, cands: np.ndarray, weights: np.ndarray, k: int,
                      rng: np.random.RandomState) -> np.ndarray:
    """``k`` centres from weighted candidates: weighted k-means++, then weighted Lloyd (in memory); rows drawn
    from ``dX`` when fewer than ``k`` distinct candidates carry weight."""
    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.cluster import kmeans_plusplus

    if np.count_nonzero(weights) <= k:  # as many candidates as clusters: every distinct row is a centre
        distinct = np.unique(cands[weights > 0], axis=0)
        extra = np.sort(rng.choice(dX.shape[0], k - len(distinct), replace=False))
        return np.vstack([distinct, dense_rows(dX[extra].compute())]) if len(extra) else distinct
    C0 = kmeans_plusplus(cands, k, sample_weight=weights, random_state=rng)[0]
    km = SkKMeans(k, init=C0, n_init=1, max_iter=CANDIDATE_ITER, random_state=rng)
    return km.fit(cands, sample_weight=weights).cluster_centers_
