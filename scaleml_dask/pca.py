"""Out-of-core PCA: the mean and the SVD from one pass (TSQR), the n × n Gram of the rows for wide data, or a
randomized range finder when both sides are large (and for sparse input, centred implicitly).

The R factor of the centered ``X`` (what ``LinearRegression`` reduces for ``[X | y]``, by the same kernel and
tree reduction: ``_moments.fit_moments``) has the same singular values and right singular vectors as ``X``
itself, so an SVD of that ``d x d`` matrix gives ``components_`` and the variances exactly, in one read of
the data. ``solver="tsqr"`` uses Householder QR per chunk; ``"auto"`` lets each chunk use the Cholesky
factor of its Gram matrix when the error bound of that shortcut (which, for PCA, depends on column scales)
is below 1e-12, and picks ``"randomized"`` for wide data (more than 1,000 features and few components),
where the ``d x d`` factor would not fit comfortably: power iterations with oversampling as scikit-learn,
one pass over ``X`` per iteration (the first also gives the mean).

For wide data (p ≫ n, n at most ``DUAL_MAX_SAMPLES``), ``"dual"`` (what ``"auto"`` picks there) computes the
column-centred Gram of the rows ``Xc Xc'`` (n × n) in one pass over column panels (``_dual``), its eigenvectors
``U`` and values ``S²``, and the components ``Xc' U S⁻¹`` in a second pass: exact, every component, memory of
one panel and one ``n × n`` matrix per task (scikit-learn's PCA on the same data holds ``X`` and its SVD).
Sparse input is centred implicitly by the randomized solver (``X Z - 1 m'Z``): it never becomes dense.
"""

from __future__ import annotations

import os
from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar

import dask
import dask.array as da
import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._deployable import ComponentWeights
from ._dual import gram_of_rows, map_panels
from ._lazy_product import row_product
from ._moments import fit_moments, last_reused
from ._repr import FittedSummaryMixin
from ._tsqr import RangeMoments, block_range, combine_range
from .passes import broadcast, map_row_chunks, one_pass
from .validation import (
    SparseInputMixin,
    as_dask_array,
    assert_finite,
    check_array,
    check_is_fitted,
    check_n_features,
    check_predict_input,
    check_X_y,
    finite_blocks,
    in_memory,
    is_sparse,
    take_y,
)

#: Error bound below which ``solver="auto"`` accepts a chunk's Gram matrix (variances to ~1e-12).
PCA_TOL = 1e-12
#: ``solver="auto"`` takes the dual (n × n Gram of the rows) for data with more columns than rows and at most this
#: many rows (its Gram: 512 MB); randomized beyond.
DUAL_MAX_SAMPLES = 8192


class PCA(ComponentWeights, SparseInputMixin, FittedSummaryMixin, TransformerMixin, BaseEstimator):
    """Principal component analysis of data larger than memory, with scikit-learn's conventions.

    Parameters
    ----------
    n_components : number of components (default ``min(n_samples, n_features)``).
    solver : ``"auto"``, ``"tsqr"`` (exact, one pass), ``"dual"`` (exact, p ≫ n: the n × n Gram of the rows, two
        passes) or ``"randomized"`` (both sides large, or sparse input).
    whiten : scale the projections to unit variance.
    iterated_power, n_oversamples, random_state : of the randomized solver (scikit-learn's meaning).

    Attributes
    ----------
    components_ (n_components, n_features), explained_variance_, explained_variance_ratio_,
    singular_values_, mean_, noise_variance_, n_samples_, n_components_, solver_ (what was used).
    Signs follow scikit-learn (the largest loading of each component is positive).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(500, 3)) @ np.diag([3.0, 1.0, 0.1])
    >>> p = PCA(n_components=2).fit(X)
    >>> np.round(p.explained_variance_ratio_, 3).tolist()
    [0.903, 0.096]
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "solver": [StrOptions({"auto", "tsqr", "dual", "randomized"})],
        "whiten": ["boolean"],
        "iterated_power": [Interval(Integral, 0, None, closed="left")],
        "n_oversamples": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_components: int | None = None, solver: str = "auto", whiten: bool = False,
                 iterated_power: int = 4, n_oversamples: int = 10, random_state: int | None = None) -> None:
        self.n_components = n_components
        self.solver = solver
        self.whiten = whiten
        self.iterated_power = iterated_power
        self.n_oversamples = n_oversamples
        self.random_state = random_state


    def _fitted_summary(self) -> list[tuple[str, Any]]:
        return [("samples", self.n_samples_), ("components", self.n_components_),
                ("explained variance ratio", float(self.explained_variance_ratio_.sum())),
                ("solver used", self.solver_)]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> PCA:
        """Fit on ``X`` (numpy, dask, xarray, zarr, or a dataset path/name); ``y`` is not used."""
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        n, d = dX.shape
        k = min(n, d) if self.n_components is None else self.n_components
        if k > min(n, d):
            raise ValueError(f"n_components={self.n_components!r} must be between 1 and "
                             f"min(n_samples, n_features) = min({n}, {d}) = {min(n, d)}")
        sparse = is_sparse(dX)
        solver = self.solver
        if sparse and solver in ("tsqr", "dual"):
            raise TypeError(f"X is sparse: solver={solver!r} needs dense data; use solver='randomized' (or 'auto'), "
                            "which centres sparse data implicitly, or sm.TruncatedSVD (no centring)")
        if solver == "auto":
            if sparse:
                solver = "randomized"
            elif d > n and n <= DUAL_MAX_SAMPLES:
                solver = "dual"
            else:
                solver = "randomized" if d > 1000 and k <= d // 4 else "auto"
        self.statistics_reused_ = False  # inside sm.reuse_statistics(): PCA(k) of every k from one pass
        if solver == "randomized":
            S, Vt, mean, total = self._randomized(dX, k)
            self.solver_ = "randomized"
        elif solver == "dual":
            S, Vt, mean, total = _dual_pca(dX, k)
            self.solver_ = "dual"
        else:
            R, m, self.solver_ = fit_moments(dX, None, None, center=True, solver=solver, tol=PCA_TOL,
                                             scale=False)
            self.statistics_reused_ = last_reused()
            _, S, Vt = np.linalg.svd(R)
            mean, total = m.mean, float(np.sum(S**2)) / max(n - 1, 1)
        Vt = _flip_signs(Vt)
        var = S**2 / max(n - 1, 1)
        self.n_samples_, self.n_features_in_, self.n_components_ = n, d, int(k)
        self.mean_ = mean
        self.components_ = Vt[:k]
        self.singular_values_ = S[:k]
        self.explained_variance_ = var[:k]
        self.explained_variance_ratio_ = var[:k] / total if total > 0 else np.zeros(k)
        rest = min(n, d) - k
        self.noise_variance_ = float((total - var[:k].sum()) / rest) if rest > 0 else 0.0
        return self

    def _randomized(self, dX: da.Array, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Range finder with power iterations, one pass per iteration (the first also gives the mean)."""
        n, d = dX.shape
        rng = check_random_state(self.random_state)
        Z = rng.standard_normal((d, min(k + self.n_oversamples, d)))
        for it in range(self.iterated_power + 1):
            rm = _range_pass(dX, Z)
            B_T = linalg.solve_triangular(rm.r, rm.c.T, trans="T").T  # Xc' Q with Q = Y R^-1
            if it < self.iterated_power:
                Z = np.linalg.qr(B_T)[0]
        _, S, Vt = np.linalg.svd(B_T.T, full_matrices=False)
        return S, Vt, rm.mean, float(rm.ss.sum()) / max(n - 1, 1)

    def transform(self, X: Any) -> Any:
        """Projections on the components: numpy for numpy input, a lazy dask array otherwise."""
        check_is_fitted(self, "components_")
        W = self._projection()
        if in_memory(X):
            Xc = check_predict_input(self, X, accept_sparse=True)
            return np.asarray(Xc @ W) - self.mean_ @ W if is_sparse(Xc) else (Xc - self.mean_) @ W
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        check_n_features(self, dX.shape[1])
        # W and the mean shipped once per worker, not inside the lazy array's graph; sparse X centred implicitly
        return row_product(dX if is_sparse(dX) else finite_blocks(dX, "X"), W, center=self.mean_)

    def _projection(self) -> np.ndarray:
        """The (n_features, n_components) matrix ``transform`` multiplies the centered rows by."""
        return self.components_.T / (np.sqrt(self.explained_variance_) if self.whiten else 1.0)

    def inverse_transform(self, Z: Any) -> Any:
        """Back to feature space: ``Z @ components_ + mean_`` (numpy or lazy dask, as the input)."""
        check_is_fitted(self, "components_")
        H = self.components_ * (np.sqrt(self.explained_variance_)[:, None] if self.whiten else 1.0)
        Z = check_array(Z, "Z", ndim=2) if isinstance(Z, (np.ndarray, list, tuple)) else as_dask_array(Z, "Z", ndim=2)
        if Z.shape[1] != self.n_components_:
            raise ValueError(f"Z has {Z.shape[1]} columns, but {type(self).__name__} has {self.n_components_} "
                             "components")
        return Z @ H + self.mean_ if isinstance(Z, np.ndarray) else row_product(Z, H, offset=self.mean_)

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """``fit(X).transform(X)``."""
        return self.fit(X).transform(X)

    def to_zarr(self, X: Any, path: str | os.PathLike, *, codec: str | None = None, overwrite: bool = False
                ) -> Path:
        """Write ``transform(X)`` chunk by chunk as a new dataset at ``path`` (atomic; ``y`` carried over).

        Features are named ``pc0, pc1, ...``; if ``X`` is a dataset (path, catalog name or xarray) with a
        ``y``, it is copied alongside, so the projection can be used like any other dataset. A dataset already at
        ``path`` is replaced only with ``overwrite=True``, and only if written here.
        """
        from .io.store import DatasetWriter

        check_is_fitted(self, "components_")
        y = take_y(X)
        dX, dy = check_X_y(X, y) if y is not None else (as_dask_array(X, "X", ndim=2), None)
        rows = dX.chunks[0][0]
        if any(c != rows for c in dX.chunks[0][:-1]):
            dX = dX.rechunk({0: rows})
            dy = None if dy is None else dy.rechunk((dX.chunks[0],))
        check_n_features(self, dX.shape[1])
        attrs = {"source": "PCA", "explained_variance_ratio": self.explained_variance_ratio_.tolist(),
                 "whiten": bool(self.whiten)}
        with DatasetWriter(path, self.n_components_, n_samples=dX.shape[0], chunk_rows=rows,
                           y_dtype=None if dy is None else dy.dtype, attrs=attrs, codec=codec, overwrite=overwrite,
                           feature_names=[f"pc{i}" for i in range(self.n_components_)]) as w, \
                broadcast(self.mean_) as mean, broadcast(self._projection()) as W:  # once per worker
            for digests in dask.compute(*map_row_chunks(write_projection, dX, dy, mean=mean, W=W,
                                                        tmp_path=str(w.tmp_path), chunk_rows=rows)):
                w.record(digests)
        return Path(path)


def _dual_pca(dX: da.Array, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """PCA of wide data from the n × n Gram of the centred rows (one pass over column panels), its eigenvectors,
    and the components ``Xc' U S⁻¹`` (a second pass)."""
    g = gram_of_rows(dX)
    n = dX.shape[0]
    evals, U = np.linalg.eigh(g.K)
    order = np.argsort(evals)[::-1][:k]
    S = np.sqrt(np.maximum(evals[order], 0.0))
    U = U[:, order]
    keep = S > S[0] * 1e-12 * n if len(S) and S[0] > 0 else np.zeros(len(S), bool)
    inv = np.where(keep, 1.0 / np.where(keep, S, 1.0), 0.0)
    Vt = map_panels(dX, U * inv).T
    return S, Vt, g.mean, float(g.ss.sum()) / max(n - 1, 1)


def _range_pass(dX: da.Array, Z: np.ndarray) -> RangeMoments:
    """One pass: the range moments of ``Y = Xc Z``, reduced by the same deterministic tree as ``moments``."""
    with broadcast(Z) as Zb:  # p × l: scattered to the workers for the pass, not sent inside its graph
        return one_pass(block_range, combine_range, dX, Z=Zb)


def write_projection(X: np.ndarray, y: np.ndarray | None, *, chunk_index: int, row_start: int, mean: np.ndarray,
                     W: np.ndarray, tmp_path: str, chunk_rows: int) -> dict:
    """Project one chunk (checked finite) and write it with its ``y`` (runs on a worker); returns the
    written chunks' digests."""
    from .io.store import write_chunk

    X = np.asarray(X, dtype=np.float64)
    assert_finite(X, "X", chunk_index, row_start)
    return write_chunk(tmp_path, chunk_index, (X - mean) @ W, y, chunk_rows)


def _flip_signs(Vt: np.ndarray) -> np.ndarray:
    """scikit-learn's convention (``svd_flip(u_based_decision=False)``): largest |loading| of each row > 0."""
    idx = np.argmax(np.abs(Vt), axis=1)
    signs = np.sign(Vt[np.arange(len(Vt)), idx])
    return Vt * np.where(signs == 0, 1.0, signs)[:, None]
