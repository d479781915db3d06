"""Out-of-core truncated SVD of dense or sparse data: a randomized range finder, one pass per power iteration.

``TruncatedSVD`` is scikit-learn's (same parameters, attributes and sign convention) for data larger than memory,
dense or ``scipy.sparse`` (text hashed to 2**20 features: ``feature_extraction.text``). It works in the space of
the *active* columns, those holding a non-zero: a column no row touches contributes nothing to any product, so
its component loadings are exactly zero, and hashed text touches a few tens of thousands of its 2**20 columns.

The first pass needs nothing from the client: each task draws the rows of the Gaussian test matrix ``Ω`` for the
columns its chunk touches (``_sketch.gaussian_rows``: a counter-based generator keyed by the seed and the column,
so every chunk draws the same row for a column) and returns a compact sketch over those columns; the tree that
combines the sketches takes the union of their columns, the active set (``p'`` columns), along with the column
sums for the variances. Each pass reads every row chunk once and computes, for the current ``Z``
(``p' × l``, ``l = n_components + n_oversamples``), ``Y = X Z``, the R factor of ``Y`` and ``C = X' Y``
(``_sketch``): that is ``X' Q = C R⁻¹`` for the orthonormal ``Q = Y R⁻¹`` without ever forming the ``n × l``
matrix ``Q``. The next ``Z`` is an orthonormal basis of ``X' Q``, kept as ``C M`` with an ``l × l`` matrix ``M``
(the chunks compute ``(X C) M``): between passes only ``C'C`` touches a ``p' × l`` matrix, never a QR or an SVD
of one. This orthonormalises both sides exactly (the R of ``Y`` by TSQR, the basis of ``X' Q`` by the
eigenvectors of its small Gram), where scikit-learn's ``randomized_range_finder`` only normalises with LU between
its power iterations. After ``n_iter`` power iterations (``n_iter + 1`` passes) the singular values and the
components of the small ``Q' X`` follow the same way, scattered back to the ``p`` columns. No centering: sparse
data stay sparse.

Memory per worker: one chunk, ``Z`` and one ``p' × l`` sum (and a ``p``-long int32 lookup while a sparse chunk's
column indices are mapped to active positions), never ``p × l``, never ``p²`` and never ``n × l``. When the sum
is much larger than a chunk, a task folds several consecutive chunks into one (``passes.fold_row_chunks``), so a
pass holds at most a few times the bytes of sums it reads (``FOLD_RATIO``).

>>> import numpy as np, scipy.sparse as sp
>>> X = sp.random(400, 60, density=0.1, format="csr", random_state=0)  # a flat spectrum: the hard case
>>> svd = TruncatedSVD(n_components=3, n_iter=20, n_oversamples=20, random_state=0).fit(X)
>>> exact = np.linalg.svd(X.toarray(), compute_uv=False)[:3]
>>> bool(np.allclose(svd.singular_values_, exact, rtol=1e-9)), svd.transform(X).shape
(True, (400, 3))
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar

import dask
import dask.array as da
import numpy as np
from scipy.linalg.blas import dsyrk
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from ._lazy_product import row_product
from ._repr import FittedSummaryMixin
from ._sketch import Sketch, combine_sketches, range_block, sketch_block
from .passes import broadcast, fold_row_chunks, reduce_here
from .pca import _flip_signs
from .validation import (
    SparseInputMixin,
    as_dask_array,
    check_array,
    check_is_fitted,
    check_n_features,
    check_predict_input,
    in_memory,
    restored_state_problem,
)

#: A task folds chunks until it has read about this many times the bytes of its ``p' × l`` sum: the sums a pass
#: holds and sends are at most a few times the data it reads, and chunks about as large as a sum keep a task each
#: (the workers run them in parallel).
FOLD_RATIO = 0.25


class TruncatedSVD(SparseInputMixin, FittedSummaryMixin, TransformerMixin, BaseEstimator):
    """Truncated SVD (latent semantic analysis on text) of data larger than memory, dense or sparse.

    Parameters
    ----------
    n_components : components to keep (< n_features).
    n_iter : power iterations (each one pass over the data; ``n_iter + 1`` passes in all).
    n_oversamples : extra columns of the sketch (``l = n_components + n_oversamples``): more give more accurate
        small components for the same passes. The defaults are scikit-learn's; on a flat spectrum (hashed text)
        singular values to ~1e-6 need more of both (benchmarks/README.md, "Sparse").
    random_state : seed of the Gaussian test matrix (each chunk draws its columns' rows of it, keyed by column).

    Attributes
    ----------
    components_ (n_components, n_features), singular_values_, explained_variance_ (variance of each projected
    column, as scikit-learn), explained_variance_ratio_ (over the total variance of the columns of X),
    n_features_in_, n_samples_, n_passes_, n_active_features_ (the columns some sparse chunk stores a value in,
    all of dense input: the space of the fit; the components are zero on the others), active_features_ (the columns
    where some component is not zero: a sparse chunk's product reads only those). Signs follow scikit-learn
    (the largest loading of each component is positive).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(300, 5)) @ np.diag([5.0, 3.0, 1.0, 0.1, 0.1])
    >>> s = TruncatedSVD(n_components=2, random_state=0).fit(X)
    >>> np.round(s.explained_variance_ratio_, 3).tolist()
    [0.703, 0.267]
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "n_oversamples": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_components: int = 2, *, n_iter: int = 5, n_oversamples: int = 10,
                 random_state: Any = None) -> None:
        self.n_components = n_components
        self.n_iter = n_iter
        self.n_oversamples = n_oversamples
        self.random_state = random_state


    def _fitted_summary(self) -> list[tuple[str, Any]]:
        return [("samples", self.n_samples_), ("components", self.n_components),
                ("explained variance ratio", float(self.explained_variance_ratio_.sum())), ("passes", self.n_passes_)]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> TruncatedSVD:
        """Fit on ``X`` (numpy, scipy.sparse, dask, xarray, zarr, or a dataset path/name); ``y`` is not used."""
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        n, p = dX.shape
        k = self.n_components
        if k >= p:
            raise ValueError(f"n_components={k} must be strictly less than n_features={p} (use PCA for a full "
                             "decomposition)")
        l = min(k + self.n_oversamples, p)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        # pass 1: Ω drawn inside the tasks for the columns each chunk touches; its compact sketch names the active
        # columns, the space of every later pass (the basis Z = C M is p' × l, p' the active columns)
        s = reduce_here(fold_row_chunks(range_block, dX, group=1, seed=seed, l=l, moments=True), combine_sketches,
                        split_every=4)
        sums, sumsq, active = s.sums, s.sumsq, s.cols
        cols = None if len(active) == p else active  # dense input (or every column touched): no remapping
        group = _fold(dX, s.nnz, len(active), l)
        M, S = _orthonormalizer(s)  # X' Q = C R⁺, and Z = C M its orthonormal basis
        for _ in range(self.n_iter):
            s = _sketch_pass(dX, s.c, cols, M, group)
            M, S = _orthonormalizer(s)
        Vt = np.zeros((k, p))
        if len(active):  # the right singular vectors of Q' X; zero off the active columns
            Vt[:, active] = _flip_signs((s.c @ M[:, :k]).T)
        S = S[:k]
        mean = sums / n
        self.components_ = Vt
        self.singular_values_ = S
        self.explained_variance_ = np.maximum(S**2 / n - (Vt[:, active] @ mean) ** 2, 0.0)
        total = float(np.sum(np.maximum(sumsq / n - mean**2, 0.0)))
        self.explained_variance_ratio_ = self.explained_variance_ / total if total > 0 else np.zeros(k)
        self.n_features_in_, self.n_samples_, self.n_passes_ = p, n, self.n_iter + 1
        self.n_active_features_ = len(active)
        self.active_features_ = np.flatnonzero(np.any(Vt != 0, axis=0))  # what a sparse transform ships of V
        return self

    def _check_restored_state(self) -> str | None:
        """What is wrong with components loaded from a registry (None if nothing): ``transform`` multiplies by
        them as ``(n_components, n_features_in_)`` float64."""
        if "components_" not in self.__dict__:
            return None
        d = self.__dict__.get("n_features_in_")
        k = self.n_components
        V, used = self.__dict__.get("components_"), self.__dict__.get("active_features_")
        if used is None and isinstance(V, np.ndarray) and V.ndim == 2:  # saved before active_features_ existed
            used = self.active_features_ = np.flatnonzero(np.any(V != 0, axis=0))
        layout = [("components_", V, np.float64, (k, d if type(d) is int else -1)),
                  ("singular_values_", self.__dict__.get("singular_values_"), np.float64, (k,)),
                  ("active_features_", used, np.int64, (None,))]
        problem = restored_state_problem(type(self).__name__, layout)
        if problem is None and not np.array_equal(used, np.flatnonzero(np.any(V != 0, axis=0))):
            problem = f"{type(self).__name__} state active_features_ are not the non-zero columns of components_"
        return problem

    def transform(self, X: Any) -> Any:
        """``X @ components_.T``: numpy for in-memory input (numpy or scipy.sparse), a lazy dask array otherwise
        (whose graph refers to ``components_`` scattered once to the workers, not embedded in it; for sparse input
        only its columns that are not all zero — the active ones — of which the chunks take their columns)."""
        check_is_fitted(self, "components_")
        V = self.components_.T
        if in_memory(X):
            return np.asarray(check_predict_input(self, X, accept_sparse=True) @ V)
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        check_n_features(self, dX.shape[1])
        if not isinstance(dX._meta, np.ndarray) and len(dX.chunks[1]) == 1:  # sparse: ship the non-zero rows of V
            used = self.active_features_
            if len(used) < V.shape[0] // 2:
                return row_product(dX, V[used], columns=used)
        return row_product(dX, V)  # V shipped once per worker, not inside the lazy array's graph

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """``fit(X).transform(X)`` (one more pass)."""
        return self.fit(X).transform(X)

    def inverse_transform(self, Z: Any) -> Any:
        """Back to feature space: ``Z @ components_`` (numpy, or lazy dask for dask input)."""
        check_is_fitted(self, "components_")
        Z = check_array(Z, "Z", ndim=2) if in_memory(Z) else as_dask_array(Z, "Z", ndim=2)
        if Z.shape[1] != self.n_components:
            raise ValueError(f"Z has {Z.shape[1]} columns, but TruncatedSVD has {self.n_components} components")
        return Z @ self.components_ if in_memory(Z) else row_product(Z, self.components_)


def _fold(dX: da.Array, nnz: int, p_active: int, l: int) -> int:
    """Chunks a task folds in the passes after the first: enough that it reads ``FOLD_RATIO`` times the bytes of
    its ``p' × l`` sum (one chunk a task when a chunk is that large already; chunk bytes from the first pass's
    count of stored values), spread evenly over the groups that makes."""
    n_chunks = len(dX.chunks[0])
    sparse = not isinstance(dX._meta, np.ndarray)
    chunk_bytes = nnz * (dX.dtype.itemsize + (4 if sparse else 0)) / n_chunks
    group = max(1, int(np.ceil(FOLD_RATIO * p_active * l * 8 / max(chunk_bytes, 1))))
    n_groups = -(-n_chunks // group)
    return -(-n_chunks // n_groups)


def _sketch_pass(dX: da.Array, C: np.ndarray, cols: np.ndarray | None, M: np.ndarray, group: int) -> Sketch:
    """One pass with the sketch ``Z = C M`` over the active columns ``cols`` (None: all): every chunk read once,
    folded ``group`` at a time, the groups' sketches combined by a tree. ``Z`` itself is never formed: a chunk
    computes ``(X C) M``."""
    with broadcast(C) as Z:  # p' × l: scattered to the workers for the pass, not sent inside its graph
        parts = fold_row_chunks(sketch_block, dX, group=group, Z=Z, cols=None if cols is None else
                                dask.delayed(cols, pure=True), M=dask.delayed(M, pure=True))
        return reduce_here(parts, combine_sketches, split_every=2 if group > 1 else 4)


def _orthonormalizer(s: Sketch) -> tuple[np.ndarray, np.ndarray]:
    """``(M, S)`` with ``C M`` an orthonormal basis of ``B' = X' Q = C R⁺`` (``Q = Y R⁺`` orthonormal on the range
    of ``Y``), ordered by the singular values ``S`` of ``B``, from ``l × l`` algebra only: the eigenvectors ``V``
    and values ``S²`` of ``B B' = R⁺' (C'C) R⁺`` give ``M = R⁺ V S⁻¹``. The one ``p × l`` operation is ``C'C``
    (a product, not a QR of the tall matrix). The Gram squares the condition of ``B``, which costs the singular
    values ``ε (s₁ / s_i)²`` of relative accuracy: 1e-12 for a spread of 100. Directions ``Y`` or ``B`` do not
    reach (a rank below ``l``) get zero columns rather than a division by ~0."""
    U, sv, Vt = np.linalg.svd(s.r)
    keep = sv > sv[0] * 1e-12 * len(sv) if sv.size and sv[0] > 0 else np.zeros(len(sv), bool)
    R_pinv = (Vt.T * np.where(keep, 1.0 / np.where(keep, sv, 1.0), 0.0)) @ U.T
    l = s.c.shape[1]
    # the upper triangle of C'C by one SYRK (half the flops of C.T @ C); no active column: zero
    CtC = dsyrk(1.0, s.c, trans=1) if len(s.c) else np.zeros((l, l))
    CtC = np.triu(CtC) + np.triu(CtC, 1).T
    G = R_pinv.T @ CtC @ R_pinv
    evals, V = np.linalg.eigh((G + G.T) / 2)
    order = np.argsort(evals)[::-1]
    evals, V = np.maximum(evals[order], 0.0), V[:, order]
    S = np.sqrt(evals)
    ok = S > (S[0] if S.size else 0.0) * 1e-10
    return R_pinv @ (V * np.where(ok, 1.0 / np.where(ok, S, 1.0), 0.0)), S

