"""Random projections of data larger than memory: scikit-learn's, fitted from the shape alone, applied chunk by chunk.

``GaussianRandomProjection`` and ``SparseRandomProjection`` are scikit-learn's (same parameters; the same matrix
for the same ``random_state``: Gaussian entries, or Achlioptas / Li et al. sparse ones of density
``1 / sqrt(n_features)`` by default), so ``transform`` gives scikit-learn's answer. ``fit`` reads no data: it needs
the shape only (``n_components="auto"`` from the Johnson–Lindenstrauss bound ``johnson_lindenstrauss_min_dim``).
``transform`` of a dask array (dense or sparse) is lazy, one product per row chunk; the sparse projection of sparse
data stays sparse unless ``dense_output``.

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(100, 10_000))
>>> p = SparseRandomProjection(n_components=50, random_state=0).fit(X)
>>> from sklearn.random_projection import SparseRandomProjection as Sk
>>> bool(np.allclose(p.transform(X), Sk(n_components=50, random_state=0).fit(X).transform(X)))
True
>>> johnson_lindenstrauss_min_dim(1_000_000, eps=0.1)
np.int64(11841)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import DataDimensionalityWarning
from sklearn.random_projection import GaussianRandomProjection as _SkGaussian
from sklearn.random_projection import SparseRandomProjection as _SkSparse
from sklearn.random_projection import johnson_lindenstrauss_min_dim

from ._deployable import CSRMatrix
from .passes import shared
from .validation import (
    as_dask_array,
    check_is_fitted,
    check_n_features,
    in_memory,
    is_sparse,
    restored_state_problem,
)

__all__ = ["GaussianRandomProjection", "SparseRandomProjection", "johnson_lindenstrauss_min_dim"]


class _OutOfCore:
    """``fit`` from the shape of any input (nothing read), ``transform`` lazily on dask input."""

    def fit(self, X: Any, y: Any = None) -> Any:
        """Draw the projection for ``X``'s shape (numpy, scipy.sparse, dask, xarray, zarr, path); reads no data."""
        if in_memory(X):
            return super().fit(X, y)
        self._validate_params()
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        n_samples, n_features = dX.shape
        if self.n_components == "auto":
            self.n_components_ = int(johnson_lindenstrauss_min_dim(n_samples=n_samples, eps=self.eps))
            if self.n_components_ <= 0 or self.n_components_ > n_features:
                raise ValueError(f"eps={self.eps} and n_samples={n_samples} lead to a target dimension of "
                                 f"{self.n_components_}, which is invalid for n_features={n_features}; lower "
                                 "n_components or raise eps")
        else:
            if self.n_components > n_features:
                warnings.warn(f"The number of components is higher than the number of features: n_features < "
                              f"n_components ({n_features} < {self.n_components}). The dimensionality of the problem "
                              "will not be reduced.", DataDimensionalityWarning, stacklevel=2)
            self.n_components_ = self.n_components
        dtype = dX.dtype if dX.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        self.components_ = self._make_random_matrix(self.n_components_, n_features).astype(dtype, copy=False)
        if self.compute_inverse_components:
            self.inverse_components_ = self._compute_inverse_components()
        self._n_features_out = self.n_components_
        self.n_features_in_ = n_features
        return self

    def transform(self, X: Any) -> Any:
        """Project ``X``: numpy / scipy.sparse for in-memory input (scikit-learn's), a lazy dask array otherwise."""
        if in_memory(X):
            return super().transform(X)
        check_is_fitted(self, "components_")
        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        check_n_features(self, dX.shape[1])
        probe = super().transform(_one_row(dX))
        # the fitted matrix shipped once per worker, not inside the lazy array's graph
        return dX.map_blocks(_project_block, shared(self), chunks=(dX.chunks[0], (self.n_components_,)),
                             dtype=probe.dtype, meta=probe[:0])

    def _saved_state(self) -> dict[str, Any]:
        """The fitted attributes for the model registry, a sparse matrix as its CSR arrays (``CSRMatrix``)."""
        params = self.get_params(deep=False)
        return {k: CSRMatrix(v) if is_sparse(v) else v for k, v in vars(self).items() if k not in params}

    def _check_restored_state(self) -> str | None:
        """What is wrong with a projection loaded from a registry (None if nothing): its matrices must be
        ``(n_components_, n_features_in_)`` (and the inverse the transpose's shape) of floats."""
        if "components_" not in self.__dict__:
            return None
        k, d = self.__dict__.get("n_components_"), self.__dict__.get("n_features_in_")
        problem = restored_state_problem(type(self).__name__, [], [("n_components_", k, 1, 2**31),
                                                                   ("n_features_in_", d, 1, 2**40)])
        if problem is not None:
            return problem
        for name, shape in (("components_", (k, d)), ("inverse_components_", (d, k))):
            a = self.__dict__.get(name)
            if (name in self.__dict__ or name == "components_") and not (
                    getattr(a, "shape", None) == shape and getattr(a, "dtype", np.dtype(object)).kind == "f"):
                return f"{type(self).__name__} state {name} is not a {shape} matrix of floats"
        return None


def _one_row(dX: Any) -> Any:
    """A zero row of ``dX``'s kind and width: what ``transform`` makes of it is the kind of the output."""
    if is_sparse(dX):
        import scipy.sparse as sp

        return sp.csr_matrix((1, dX.shape[1]), dtype=dX.dtype)
    return np.zeros((1, dX.shape[1]), dtype=dX.dtype)


def _project_block(x: Any, est: Any) -> Any:
    return est.transform(x)


class GaussianRandomProjection(_OutOfCore, _SkGaussian):
    """scikit-learn's ``GaussianRandomProjection`` (entries N(0, 1 / n_components)) for data larger than memory.

    Examples
    --------
    >>> import numpy as np
    >>> g = GaussianRandomProjection(n_components=3, random_state=0).fit(np.ones((5, 100)))
    >>> g.components_.shape
    (3, 100)
    """


class SparseRandomProjection(_OutOfCore, _SkSparse):
    """scikit-learn's ``SparseRandomProjection`` (Achlioptas, and Li et al.'s very sparse projections: density
    ``1 / sqrt(n_features)`` by default) for data larger than memory, sparse input kept sparse.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.random(1000, 2**14, density=1e-3, format="csr", random_state=0)
    >>> s = SparseRandomProjection(n_components=64, random_state=0).fit(X)
    >>> s.transform(X).shape, round(float(s.density_), 5)
    ((1000, 64), 0.00781)
    """

