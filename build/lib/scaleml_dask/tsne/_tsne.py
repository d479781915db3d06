"""The TSNE estimator: wires reduction, neighbours, affinities, initialisation and optimisation."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numba
import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, Options, StrOptions

from .._repr import FittedSummaryMixin
from .._stages import Stages
from ..config import use_passive_openmp
from ..validation import (
    SparseInputMixin,
    as_dask_array,
    assert_finite,
    check_array,
    check_is_fitted,
    finite_blocks,
    is_sparse,
)
from . import affinity, initialization, locality, neighbors, optimize

if TYPE_CHECKING:  # small numpy inputs never import dask.array (a noticeable share of a small fit)
    import dask.array as da

logger = logging.getLogger("scaleml_dask.tsne")

Callback = Callable[[int, float, np.ndarray], bool]

#: numpy inputs of at most this many rows and ``LOCAL_MAX_FEATURES`` columns are embedded in this
#: process, without dask: at that size the scheduler and the import of dask.distributed cost
#: more than the reduction (an eigendecomposition of the d x d covariance) and the kNN.
LOCAL_MAX_SAMPLES = 10_000
LOCAL_MAX_FEATURES = 1_000
#: From this many rows on, the rows are sorted by k-means cell before the kNN (``locality``), so that the
#: optimisation's reads of neighbours hit the cache (benchmarks/README.md, "t-SNE").
LOCALITY_MIN_SAMPLES = 200_000


class TSNE(SparseInputMixin, FittedSummaryMixin, BaseEstimator):
    """t-SNE embedding in 2-d of data that may be larger than memory, in O(n·k) memory.

    Input wider than ``n_pca_components`` columns is first reduced out-of-core by ``sm.PCA`` to a
    float32 (n, ≤ 50) array; then the ``3·perplexity`` nearest neighbours (exact blockwise on the
    cluster up to 100,000 rows, pynndescent beyond), perplexity-calibrated symmetric sparse P, a PCA
    start, and gradient descent with early exaggeration, momentum and gains, whose repulsion is
    summed exactly over all pairs up to 7,500 points and above that interpolated on a grid and
    convolved by FFT (FIt-SNE). Small numpy inputs (``LOCAL_MAX_SAMPLES`` x ``LOCAL_MAX_FEATURES``)
    skip dask: they are projected on the same principal axes in memory and searched in this
    process. Defaults follow openTSNE 1.0: 250 iterations at exaggeration 12, then ``n_iter`` at 1,
    learning rate ``n / exaggeration`` (the gradient omits the factor 4, as in openTSNE), momentum
    0.8, step norm capped at 5.

    Parameters
    ----------
    perplexity : effective number of neighbours, < n_samples - 1.
    early_exaggeration, early_exaggeration_iter : the first phase.
    n_iter : iterations of the second (unexaggerated) phase.
    learning_rate : float or "auto" (n / exaggeration, per phase).
    momentum, max_step_norm : gradient-descent settings.
    initialization : "pca", "random" or an (n, 2) array.
    neighbors : "auto", "exact" or "approx" (pynndescent).
    negative_gradient_method : the repulsion: "exact" (all pairs, O(n²) time but O(n) memory),
        "fft" (grid interpolation, O(n) per iteration plus the grid's FFT) or "auto": exact up to
        ``optimize.EXACT_REPULSION_MAX_SAMPLES`` (7,500) points, where it measured faster, FFT above.
    n_pca_components : inputs wider than this are reduced by ``sm.PCA`` first.
    n_interpolation_points, min_num_intervals, ints_in_interval : FFT interpolation grid (used by
        ``negative_gradient_method="fft"`` only). Boxes are
        0.5 wide by default (openTSNE: 1): at 1 the interpolated repulsion converged to a ~1% higher
        KL and ~0.01 lower kNN recall than openTSNE on 10,000-point mixtures; at 0.5 both match or beat it.
        Beyond 200 boxes per side they widen to 1 (``optimize.GridParams``): embeddings of tight,
        imbalanced clusters (real tabular data) spread over 250+ units, where 0.5-wide boxes made the
        grid, the FFT's cost and its memory 4x openTSNE's.
    n_jobs : threads for the numba kernels and FFT (None: all cores).
    random_state : seed for the neighbour search and the initial jitter.
    callbacks : callables ``(iteration, kl, embedding) -> bool``; True stops the optimisation.
    callbacks_every_iters : how often callbacks run (and KL is evaluated and logged when verbose).
    verbose : log progress (KL every ``callbacks_every_iters`` iterations) at INFO level to the logger
        ``scaleml_dask.tsne`` (the library configures no logging: e.g. ``logging.basicConfig(level="INFO")``;
        the CLI and the workflows do it).

    Attributes
    ----------
    embedding_ : (n, 2) float64 array.
    kl_divergence_ : KL(P || Q) of the final embedding.
    n_iter_ : iterations run (fewer than planned if a callback stopped them).
    n_neighbors_, neighbors_method_, negative_gradient_method_, learning_rate_ : what "auto" resolved to.
    neighbors_recall_ : share of the true k nearest neighbours found (1.0 for exact search; for pynndescent
        estimated by exact search for 200 sampled rows).
    labels_ : the dataset's ``y`` (or the ``y`` given to ``fit``), if any; written by ``to_zarr``.
    pca_ : the fitted ``sm.PCA`` when the input was reduced out-of-core (``sm.TruncatedSVD`` for sparse input:
        hashed text goes to ``n_pca_components`` dimensions without being densified), else None (also for small
        numpy input, which is projected in memory).
    timings_ : seconds spent in each stage. From ``LOCALITY_MIN_SAMPLES`` rows on, a "reorder" stage sorts
        the rows by k-means cell so that the optimisation reads neighbours from cache; the embedding and
        what callbacks see are in the input's row order all the same.
    peak_memory_ : peak resident memory of this process (bytes) at the end of each stage; it never
        decreases, and the stage where it rises set the new peak. Stages run on the cluster (the
        reduction of dask input, exact kNN of more than ``LOCAL_MAX_SAMPLES`` rows) use the workers'
        memory as well: the dashboard shows theirs.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (60, 5)), rng.normal(20, 1, (60, 5))])
    >>> Y = TSNE(perplexity=10, n_iter=200, random_state=0).fit_transform(X)
    >>> Y.shape
    (120, 2)
    >>> d_within = np.linalg.norm(Y[:60] - Y[:60].mean(0), axis=1).mean()
    >>> bool(np.linalg.norm(Y[:60].mean(0) - Y[60:].mean(0)) > 3 * d_within)
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Options(Integral, {2})],
        "perplexity": [Interval(Real, 0, None, closed="neither")],
        "early_exaggeration": [Interval(Real, 0, None, closed="neither")],
        "early_exaggeration_iter": [Interval(Integral, 0, None, closed="left")],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "learning_rate": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, None, closed="neither")],
        "max_step_norm": [Interval(Real, 0, None, closed="neither")],
        "initialization": [StrOptions({"pca", "random"}), "array-like"],
        "neighbors": [StrOptions({"auto", "exact", "approx"})],
        "negative_gradient_method": [StrOptions({"auto", *optimize.METHODS})],
        "n_pca_components": [Interval(Integral, 1, None, closed="left")],
        "n_interpolation_points": [Interval(Integral, 1, None, closed="left")],
        "min_num_intervals": [Interval(Integral, 1, None, closed="left")],
        "ints_in_interval": [Interval(Real, 0, None, closed="neither")],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
        "callbacks": [list, tuple, None],
        "callbacks_every_iters": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components: int = 2,
        perplexity: float = 30.0,
        early_exaggeration: float = 12.0,
        early_exaggeration_iter: int = 250,
        n_iter: int = 500,
        learning_rate: float | str = "auto",
        momentum: float = 0.8,
        max_step_norm: float = 5.0,
        initialization: str | np.ndarray = "pca",
        neighbors: str = "auto",
        negative_gradient_method: str = "auto",
        n_pca_components: int = 50,
        n_interpolation_points: int = 3,
        min_num_intervals: int = 50,
        ints_in_interval: float = 0.5,
        n_jobs: int | None = None,
        random_state: int | None = None,
        callbacks: Sequence[Callback] | None = None,
        callbacks_every_iters: int = 50,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.perplexity = perplexity
        self.early_exaggeration = early_exaggeration
        self.early_exaggeration_iter = early_exaggeration_iter
        self.n_iter = n_iter
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.max_step_norm = max_step_norm
        self.initialization = initialization
        self.neighbors = neighbors
        self.negative_gradient_method = negative_gradient_method
        self.n_pca_components = n_pca_components
        self.n_interpolation_points = n_interpolation_points
        self.min_num_intervals = min_num_intervals
        self.ints_in_interval = ints_in_interval
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.callbacks = callbacks
        self.callbacks_every_iters = callbacks_every_iters
        self.verbose = verbose

    # -- validation -------------------------------------------------------------------------------
    def _check_params(self, n: int) -> None:
        """The checks that depend on the data (the parameters themselves are checked by ``_fit_context``)."""
        if n < 4:
            raise ValueError(f"t-SNE needs at least 4 samples; got n_samples = {n}")
        if self.perplexity >= n - 1:
            raise ValueError(f"perplexity={self.perplexity} must be less than n_samples - 1 = {n - 1}; "
                             "lower the perplexity or embed more samples")
        if not isinstance(self.initialization, str) and np.shape(self.initialization) != (n, 2):
            raise ValueError(f"initialization array has shape {np.shape(self.initialization)}; "
                             f"expected ({n}, 2)")

    # -- stages -----------------------------------------------------------------------------------
    def _reduce(self, dX: da.Array, dy: da.Array | None) -> tuple[np.ndarray, np.ndarray | None]:
        """One pass: the float32 (n, <= n_pca_components) input (and the labels) in memory."""
        import dask

        if is_sparse(dX):  # sparse or very wide text: TruncatedSVD to n_pca_components, never densified
            from ..decomposition import TruncatedSVD

            svd = TruncatedSVD(n_components=int(min(self.n_pca_components, dX.shape[1] - 1)),
                               random_state=self.random_state).fit(dX)
            dX = svd.transform(dX)
            self.pca_ = svd
        dX = finite_blocks(dX, "X")
        if dX.shape[1] > self.n_pca_components:
            from ..pca import PCA

            pca = PCA(n_components=int(self.n_pca_components)).fit(dX)
            dX = pca.transform(dX)
            self.pca_ = pca
        reduced, labels = dask.compute(dX.astype(np.float32), dy)
        return np.ascontiguousarray(reduced), (None if labels is None else np.asarray(labels))

    def _reduce_in_memory(self, X: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``_reduce`` for a small numpy ``X``, without dask: the same projection, computed in memory."""
        assert_finite(X, "X", 0, 0)
        if X.shape[1] > self.n_pca_components:
            X = initialization.project(X, *initialization.principal_axes(X, int(self.n_pca_components)))
        return np.ascontiguousarray(X, dtype=np.float32), y

    def _phases(self, n: int) -> list[optimize.Phase]:
        def rate(exaggeration: float) -> float:
            return n / exaggeration if self.learning_rate == "auto" else float(self.learning_rate)

        self.learning_rate_ = rate(1.0)
        return [optimize.Phase(int(self.early_exaggeration_iter), float(self.early_exaggeration),
                               rate(self.early_exaggeration), float(self.momentum)),
                optimize.Phase(int(self.n_iter), 1.0, rate(1.0), float(self.momentum))]

    def _initial(self, Xr: np.ndarray, order: np.ndarray | None) -> np.ndarray:
        """The start, in the (possibly reordered) rows of ``Xr``."""
        if isinstance(self.initialization, str) and self.initialization == "pca":
            return initialization.pca(Xr, random_state=self.random_state)
        if isinstance(self.initialization, str):
            Y0 = initialization.random(len(Xr), random_state=self.random_state)
        else:
            Y0 = np.array(self.initialization, dtype=np.float64)
            if not np.isfinite(Y0).all():
                raise ValueError("initialization array contains NaN or inf")
        return Y0 if order is None else Y0[order]

    def _fitted_summary(self) -> list[tuple[str, Any]]:
        return [("points", len(self.embedding_)), ("KL divergence", self.kl_divergence_), ("iterations", self.n_iter_),
                ("neighbours", f"{self.n_neighbors_} ({self.neighbors_method_}, recall {self.neighbors_recall_:.3f})"),
                ("repulsion", self.negative_gradient_method_), ("seconds", round(sum(self.timings_.values()), 2))]


    # -- public -----------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> TSNE:
        """Embed ``X`` (numpy, dask, xarray, zarr, dataset path or catalog name).

        ``y`` (optional) are labels kept as ``labels_`` for ``to_zarr``; when ``X`` is a dataset with
        a ``y`` variable, that is used.
        """
        if _is_small(X, y):  # embedded in this process, without dask
            X = check_array(X, "X", ndim=2)
            labels = None if y is None else check_array(y, "y", ndim=1, numeric=False)
        else:
            X, labels = as_dask_array(X, "X", ndim=2, accept_sparse=True), _labels(X, y)
        if labels is not None and labels.shape[0] != X.shape[0]:
            raise ValueError(f"X and y have different lengths: X has {X.shape[0]} rows, y has {labels.shape[0]}")
        self._check_params(X.shape[0])
        use_passive_openmp()
        n_threads = int(self.n_jobs or numba.config.NUMBA_NUM_THREADS)
        previous_threads = numba.get_num_threads()
        numba.set_num_threads(max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS)))
        try:
            self._fit(X, labels, numba.get_num_threads())
        finally:
            numba.set_num_threads(previous_threads)
        return self

    def _fit(self, X: np.ndarray | da.Array, y: np.ndarray | da.Array | None, n_threads: int) -> None:
        """``X`` is a small numpy array (embedded in this process, no dask) or a dask array."""
        log = _logger() if self.verbose else None
        stage = Stages()
        self.pca_ = None
        in_memory = isinstance(X, np.ndarray)
        with stage("reduce"):
            Xr, labels = self._reduce_in_memory(X, y) if in_memory else self._reduce(X, y)
        n = Xr.shape[0]
        order = None
        if n >= LOCALITY_MIN_SAMPLES:
            with stage("reorder"):
                order = locality.cell_order(Xr, random_state=self.random_state)
                Xr = Xr[order]

        k = min(n - 1, int(math.ceil(3 * self.perplexity)))
        self.neighbors_method_ = neighbors.choose_neighbors_method(self.neighbors, n)
        with stage("neighbors"):
            idx, dist = neighbors.nearest_neighbors(Xr, k, method=self.neighbors_method_,
                                                    random_state=self.random_state, n_jobs=n_threads,
                                                    local=in_memory)
        self.neighbors_recall_ = (1.0 if self.neighbors_method_ == "exact" else
                                  neighbors.estimate_recall(Xr, idx, random_state=self.random_state))
        if log:
            log(f"{k} nearest neighbours ({self.neighbors_method_}) of {n} points in "
                f"{stage.seconds['neighbors']:.1f} s; recall {self.neighbors_recall_:.3f}")

        with stage("initialize"):
            Y = self._initial(Xr, order)
            del Xr  # freed before P is built, as each O(n·k) array is once it is used: peak memory

        with stage("affinity"):
            p_cond = affinity.conditional_probabilities(dist, self.perplexity, overwrite_input=True)
            del dist
            P = affinity.joint_probabilities(idx, p_cond, overwrite_input=True)
            del idx, p_cond

        self.negative_gradient_method_ = optimize.choose_gradient_method(self.negative_gradient_method, n)
        params = optimize.GridParams(int(self.n_interpolation_points), int(self.min_num_intervals),
                                     float(self.ints_in_interval))
        with stage("optimize"):
            Y, kl, n_iter = optimize.optimize(
                Y, P, self._phases(n), method=self.negative_gradient_method_, params=params,
                max_step_norm=float(self.max_step_norm),
                callbacks=[_in_input_order(cb, order) for cb in self.callbacks or ()],
                callbacks_every_iters=int(self.callbacks_every_iters), log=log, n_threads=n_threads)
        if log:
            log(f"done: KL {kl:.4f} after {n_iter} iterations ({self.negative_gradient_method_} repulsion) "
                f"in {stage.seconds['optimize']:.1f} s; peak memory of this process "
                f"{max(stage.peak_bytes.values()) / 1e9:.2f} GB")

        self.embedding_ = Y if order is None else _unpermute(Y, order)
        self.kl_divergence_ = float(kl)
        self.n_iter_ = int(n_iter)
        self.n_neighbors_ = k
        self.n_features_in_ = int(X.shape[1])
        self.labels_ = labels
        self.timings_ = stage.seconds
        self.peak_memory_ = stage.peak_bytes

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit and return the (n, 2) embedding as numpy."""
        return self.fit(X, y).embedding_

    def to_zarr(self, path: str | Path, *, chunk_rows: int | None = None, codec: str | None = None,
                overwrite: bool = False) -> Path:
        """Write the embedding as a dataset (``X``: n × 2 float32, ``y``: the labels if known); a dataset already
        at ``path`` is replaced only with ``overwrite=True``, and only if written here."""
        from ..io.store import DatasetWriter

        check_is_fitted(self, "embedding_")
        labels = self.labels_
        attrs = {"source": "scaleml_dask.TSNE", "perplexity": float(self.perplexity),
                 "kl_divergence": self.kl_divergence_, "n_iter": self.n_iter_}
        with DatasetWriter(path, 2, n_samples=0, chunk_rows=chunk_rows, dtype=np.float32,
                           y_dtype=None if labels is None else labels.dtype,
                           feature_names=["tsne_1", "tsne_2"], attrs=attrs, codec=codec, overwrite=overwrite) as w:
            for s in range(0, len(self.embedding_), w.chunk_rows):
                w.append(self.embedding_[s:s + w.chunk_rows],
                         None if labels is None else labels[s:s + w.chunk_rows])
        return Path(path)


def _is_small(X: Any, y: Any) -> bool:
    """Whether ``X`` is a numpy array small enough to embed without dask (``LOCAL_MAX_SAMPLES``)."""
    return (isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[0] <= LOCAL_MAX_SAMPLES
            and X.shape[1] <= LOCAL_MAX_FEATURES and (y is None or isinstance(y, (np.ndarray, list, tuple))))


def _labels(X: Any, y: Any) -> da.Array | None:
    """The labels as a 1-d dask array: ``y`` if given, else the dataset's ``y`` if it has one."""
    if y is None:
        if isinstance(X, (str, Path)):
            from ..io.catalog import open_dataset

            X = open_dataset(X)
        if not (hasattr(X, "data_vars") and "y" in X):
            return None
        y = X["y"]
    return as_dask_array(y, "y", ndim=1, numeric=False)


def _unpermute(Y: np.ndarray, order: np.ndarray) -> np.ndarray:
    out = np.empty_like(Y)
    out[order] = Y
    return out


def _in_input_order(callback: Callback, order: np.ndarray | None) -> Callback:
    """``callback`` seeing the embedding's rows in the input's order."""
    if order is None:
        return callback
    return lambda iteration, kl, Y: callback(iteration, kl, _unpermute(Y, order))


def _logger() -> Callable[[str], None]:
    return logger.info
