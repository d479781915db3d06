"""One place that turns user input into checked dask arrays, and the checks every estimator shares.

Accepted: numpy arrays, dask arrays, xarray DataArray / Dataset, zarr arrays, and paths or catalog
names of datasets. Shapes, dtypes and lengths are checked here, once, at the public boundary; NaN and
inf are checked *inside* the pass that does the work (``finite_blocks``), so validation never costs an
extra read of the data. "Fitted" is scikit-learn's notion (``NotFittedError``, ``check_is_fitted``).

Sparse input (``scipy.sparse`` matrices or arrays, dask arrays of ``scipy.sparse`` chunks, sparse datasets) is
accepted only where the caller says so (``accept_sparse=True``) and becomes a dask array of ``csr_matrix`` row
chunks; elsewhere it is refused with a ``TypeError`` naming the way on (TruncatedSVD, a random projection).

Conversions (documented, tested in tests/test_estimator_inputs.py): any numeric or bool dtype is accepted and
read as stored; the kernels compute in float64 inside each block (float16 / int / bool included). ``y`` is
rechunked to ``X``'s row chunks when they differ; a column-vector ``y`` becomes 1-d with a
``DataConversionWarning`` (as scikit-learn).

>>> import numpy as np
>>> X = as_dask_array(np.ones((10, 3)), "X", ndim=2)
>>> X.shape, X.chunks[1]
((10, 3), (3,))
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._checks import assert_finite, assert_finite_rows, checked_weights, csr_block, nonfinite_error

if TYPE_CHECKING:  # importing dask.array is slow; in-memory callers (small t-SNE) never need it
    import dask.array as da

__all__ = ["NotFittedError", "as_dask_array", "assert_finite", "assert_finite_rows", "check_array", "check_is_fitted",
           "check_learned", "check_n_features", "check_predict_input", "check_X_y", "checked_weights", "finite_blocks",
           "in_memory", "is_sparse", "SparseInputMixin", "nonfinite_error", "restored_state_problem", "sparse_refused",
           "take_y"]


def is_sparse(X: Any) -> bool:
    """Whether ``X`` is sparse: a ``scipy.sparse`` matrix or array, or a dask array (or an xarray variable over
    one) whose chunks are ``scipy.sparse``."""
    if type(X).__module__.startswith("scipy.sparse"):
        return True
    xr = sys.modules.get("xarray")
    if xr is not None and isinstance(X, xr.DataArray):
        X = X.data
    meta = getattr(X, "_meta", None)
    return meta is not None and type(meta).__module__.startswith("scipy.sparse")


class SparseInputMixin:
    """Marks an estimator that takes sparse input (scikit-learn's ``input_tags.sparse``, which its checks test)."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def in_memory(X: Any) -> bool:
    """Whether ``X`` is in-memory input (numpy, list, tuple, pandas, scipy.sparse), which ``predict`` /
    ``transform`` answer in memory, not as a lazy dask array."""
    return isinstance(X, (np.ndarray, list, tuple)) or hasattr(X, "iloc") or type(X).__module__.startswith(
        "scipy.sparse")


def sparse_refused(name: str = "X") -> TypeError:
    """The error of an estimator that needs dense input and was given sparse input: it names the ways on."""
    return TypeError(f"{name} is sparse, but this estimator needs dense data: reduce it first with sm.TruncatedSVD "
                     "or a random projection (sm.random_projection.SparseRandomProjection), or, if it fits in "
                     "memory, densify it with .toarray()")


def check_learned(learner: Any, attribute: str) -> None:
    """``check_is_fitted`` for online learners and detectors (which learn without ``fit``): raise
    scikit-learn's ``NotFittedError`` unless ``learner`` has ``attribute``."""
    if not hasattr(learner, attribute):
        raise NotFittedError(f"This {type(learner).__name__} instance has not learned anything yet; call "
                             "'learn_one' or 'learn_many' first.")


def restored_state_problem(owner: str, layout: list[tuple], values: list[tuple] = ()) -> str | None:
    """What is wrong with fitted state read back from a file (None if nothing), for the estimators whose
    compiled kernels index it without bounds checks.

    ``layout``: ``(name, value, dtype, shape)`` of each array as the kernels index it (C order, writeable;
    None in a shape is any length). ``values``: ``(name, value, low, high)`` of each number the kernels use
    as a count, size or index: a finite integer in ``[low, high]``.

    >>> restored_state_problem("M", [("w", np.zeros(3), np.float64, (None,))], [("n", 2.0, 0, 9)])
    >>> restored_state_problem("M", [("w", np.zeros(3, np.float32), np.float64, (3,))]).split(":")[0]
    "M state w is float32[3] where this version's kernels need float64[3]"
    >>> restored_state_problem("M", [], [("n", 1.5, 0, 9)]).split(":")[0]
    'M state n is 1.5 where a count in [0, 9] is needed'
    """
    why = "saved by another scaleml_dask version, or altered"
    for name, a, dtype, shape in layout:
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != len(shape) or any(
                want is not None and got != want for got, want in zip(a.shape, shape)) \
                or not a.flags.c_contiguous or not a.flags.writeable:
            got = f"{a.dtype}{list(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
            want = f"{np.dtype(dtype)}{['*' if w is None else w for w in shape]}"
            return f"{owner} state {name} is {got} where this version's kernels need {want}: {why}"
    for name, v, low, high in values:
        ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
            and np.isfinite(v) and float(v) == int(v) and low <= v <= high
        if not ok:
            return f"{owner} state {name} is {v!r:.40} where a count in [{low}, {high}] is needed: {why}"
    return None


def _open_path(path: str | Path) -> Any:
    from .io.catalog import open_dataset

    return open_dataset(path)


def as_dask_array(
    X: Any,
    name: str = "X",
    *,
    ndim: int | None = None,
    numeric: bool = True,
    chunk_rows: int | None = None,
    accept_sparse: bool = False,
) -> da.Array:
    """Return ``X`` as a dask array chunked along rows only, after checking its shape and dtype.

    ``name`` is used in every error message. Paths and catalog names open the dataset and take its
    variable ``name`` (``X`` or ``y``). Arrays chunked along both axes are rechunked to whole rows. Sparse input
    becomes a dask array of ``csr_matrix`` row chunks if ``accept_sparse``, else a ``TypeError`` (``sparse_refused``).
    """
    import dask.array as da

    if isinstance(X, (str, Path)):
        ds = _open_path(X)
        if name not in ds and not _is_table(ds):
            raise ValueError(f"dataset {str(X)!r} has no variable {name!r}")
        X = ds if _is_table(ds) else ds[name]
    xr = sys.modules.get("xarray")  # an xarray object exists only once xarray is imported: no import here
    if xr is not None and isinstance(X, xr.Dataset):
        if _is_table(X):  # its columns side by side, or a TableError naming a categorical / missing column
            from .io.table import estimator_variable

            return as_dask_array(estimator_variable(X, name, labels=not numeric), name, ndim=ndim, numeric=numeric)
        if name not in X:
            raise ValueError(f"the xarray Dataset has no variable {name!r} (has {sorted(X.data_vars)})")
        if name in ("X", "y") and "n_missing" in X.attrs:  # a matrix store that counted its missing values
            from .io.table import check_unprepared

            check_unprepared(X, target=name == "y")
        X = X[name]
    if xr is not None and isinstance(X, xr.DataArray):
        if "kind" in X.attrs:  # one column of a table: never its category codes, never missing values
            from .io.table import check_variable

            check_variable(X)
        X = X.data
    if type(X).__module__.startswith("zarr"):
        from .io.read import dask_array

        X = dask_array(X, name=name)
    if is_sparse(X):
        if not accept_sparse:
            raise sparse_refused(name)
        if not isinstance(X, da.Array):
            return _sparse_dask(check_array(X, name, ndim=ndim, numeric=numeric, accept_sparse=True), chunk_rows)
    if not isinstance(X, da.Array):
        X = check_array(X, name, ndim=ndim, numeric=numeric)
        from .io.store import chunk_rows_for

        rows = chunk_rows or chunk_rows_for(X.shape[1] if X.ndim == 2 else 1, X.dtype.itemsize)
        return da.from_array(X, chunks=(rows,) + X.shape[1:]) if X.ndim else da.from_array(X)
    _check_shape_and_dtype(X, name, ndim, numeric)
    if any(np.isnan(c) for c in X.shape):
        raise ValueError(f"{name} has unknown chunk sizes; call compute_chunk_sizes() first")
    if X.ndim == 2 and len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return X


def _sparse_dask(X: Any, chunk_rows: int | None) -> da.Array:
    """A checked in-memory CSR matrix as a dask array of ``csr_matrix`` row chunks of about ``TARGET_CHUNK_NNZ``."""
    import dask.array as da
    import scipy.sparse as sp

    from .io.sparse import chunk_rows_for_nnz

    rows = chunk_rows or chunk_rows_for_nnz(X.nnz / max(1, X.shape[0]))
    return da.from_array(X, chunks=(rows, X.shape[1]), asarray=False, meta=sp.csr_matrix((0, 0), dtype=X.dtype))


def check_array(X: Any, name: str = "X", *, ndim: int | None = None, numeric: bool = True,
                accept_sparse: bool = False) -> Any:
    """In-memory ``X`` (numpy, list, pandas; scipy.sparse if ``accept_sparse``) as a numpy array (a canonical
    ``csr_matrix``), checked by scikit-learn's ``check_array`` (its messages for complex, object, empty and
    1-d-instead-of-2-d input) and then as ``as_dask_array`` checks dask input. NaN / inf are left to the pass that
    uses the data."""
    from sklearn.utils.validation import check_array as sk_check_array

    if is_sparse(X):
        if not accept_sparse:
            raise sparse_refused(name)
        if ndim is not None and ndim != 2:
            _check_shape_and_dtype(X, name, ndim, False)
        X = sk_check_array(X, accept_sparse="csr", dtype="numeric" if numeric else None, ensure_all_finite=False,
                           input_name=name, accept_large_sparse=True)
        X = csr_block(X, X.dtype)
        _check_shape_and_dtype(X, name, ndim, numeric)
        return X

    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas
        _check_frame_columns(X)
        X = X.to_numpy()
    if isinstance(X, (list, tuple)):
        X = np.asarray(X)
    if ndim is not None and isinstance(X, np.ndarray) and X.ndim != ndim:  # short message, not the whole array
        _check_shape_and_dtype(X, name, ndim, False)
    if numeric and isinstance(X, np.ndarray) and X.dtype.kind in "USV":
        raise ValueError(f"{name} has non-numeric dtype {X.dtype}; a numeric array is required")
    try:
        X = sk_check_array(X, accept_sparse=False, dtype="numeric" if numeric else None, ensure_2d=ndim == 2,
                           allow_nd=ndim is None, ensure_all_finite=False, input_name=name,
                           ensure_min_features=1 if ndim == 2 else 0)
    except TypeError as exc:  # an object array holding something that is not a number
        raise TypeError(f"{name} has dtype object with a value that is not a number: {exc}") from None
    _check_shape_and_dtype(X, name, ndim, numeric)
    return X


def _check_frame_columns(X: Any) -> None:
    """Refuse a pandas DataFrame column of strings or categories by name (an estimator takes numbers)."""
    if not hasattr(X, "columns") or not hasattr(X, "iloc"):
        return
    import pandas as pd

    for j, column in enumerate(X.columns):
        col = X.iloc[:, j]
        if isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.infer_dtype(col, skipna=True) in (
                "string", "bytes", "mixed", "categorical"):
            from .io.table import unprepared_error

            raise unprepared_error(str(column), "categorical", None)


def _is_table(ds: Any) -> bool:
    from .io.table import is_table  # noqa: PLC0415 - io.table imports zarr: only for a dataset

    return is_table(ds)


def _check_shape_and_dtype(X: Any, name: str, ndim: int | None, numeric: bool) -> None:
    if ndim is not None and X.ndim != ndim:
        kind = {1: "a 1-d array (n_samples,)", 2: "a 2-d array (n_samples, n_features)"}.get(ndim, f"{ndim}-d")
        hint = (". Reshape your data: X.reshape(-1, 1) for a single feature, X.reshape(1, -1) for a single sample"
                if ndim == 2 and X.ndim == 1 else "")
        raise ValueError(f"{name} must be {kind}; got shape {X.shape}{hint}")
    if numeric and not (np.issubdtype(X.dtype, np.number) or X.dtype.kind == "b"):
        raise ValueError(f"{name} has non-numeric dtype {X.dtype}; a numeric array is required")
    if X.ndim and X.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples")


def check_X_y(X: Any, y: Any, *, y_numeric: bool = True, accept_sparse: bool = False) -> tuple[da.Array, da.Array]:
    """Check ``X`` (2-d) and ``y`` (1-d) together; ``y`` is rechunked to ``X``'s row chunks.

    If ``X`` is a dataset (xarray, path or catalog name) and ``y`` is None, ``y`` is taken from it.
    """
    if y is None:
        if isinstance(X, (str, Path)):
            X = _open_path(X)
        y = take_y(X)
        if y is None:
            raise ValueError("this estimator requires y to be passed, but the target y is None"
                             + (" (and the dataset has no variable 'y')" if _is_dataset(X) else ""))
    dX = as_dask_array(X, "X", ndim=2, accept_sparse=accept_sparse)
    dy = as_dask_array(y, "y", numeric=y_numeric)
    if dy.ndim == 2 and dy.shape[1] == 1:
        import warnings

        from sklearn.exceptions import DataConversionWarning

        warnings.warn("A column-vector y was passed when a 1d array was expected; using y[:, 0].",
                      DataConversionWarning, stacklevel=3)
        dy = dy[:, 0]
    if dy.ndim != 1:
        raise ValueError(f"y must be a 1-d array (n_samples,); got shape {dy.shape}")
    if dX.shape[0] != dy.shape[0]:
        raise ValueError(f"X and y have different lengths: X has {dX.shape[0]} rows, y has {dy.shape[0]}")
    if dy.chunks[0] != dX.chunks[0]:
        dy = dy.rechunk((dX.chunks[0],))
    return dX, dy


def _is_dataset(X: Any) -> bool:
    xr = sys.modules.get("xarray")
    return xr is not None and isinstance(X, xr.Dataset)


def take_y(X: Any) -> Any:
    """The ``y`` variable of a dataset (xarray Dataset, path or catalog name), or None if it has none or
    ``X`` is an array: the one rule for "y may be omitted when X is a dataset"."""
    if isinstance(X, (str, Path)):
        X = _open_path(X)
    if _is_dataset(X) and _is_table(X):
        from .io.table import layout

        return X if layout(X)["target"] is not None else None
    if _is_dataset(X) and "y" in X:
        return X["y"]
    return None


def check_predict_input(estimator: Any, X: np.ndarray | Any, *, accept_sparse: bool = False) -> Any:
    """In-memory input of ``predict`` / ``transform``: a 2-d float64 array (a ``csr_matrix`` for sparse input, if
    ``accept_sparse``) of the fitted width, finite."""
    X = check_array(X, "X", ndim=2, accept_sparse=accept_sparse)
    check_n_features(estimator, X.shape[1])
    X = X.astype(np.float64, copy=False)
    assert_finite_rows(X, "X", 0, 0)
    return X


def check_n_features(estimator: Any, n_features: int) -> None:
    """Raise scikit-learn's error unless ``n_features`` equals the fitted ``estimator.n_features_in_``."""
    expected = estimator.n_features_in_
    if n_features != expected:
        raise ValueError(f"X has {n_features} features, but {type(estimator).__name__} is expecting "
                         f"{expected} features as input.")


def _finite_block(block: np.ndarray, name: str, block_info: dict | None = None) -> np.ndarray:
    info = (block_info or {}).get(0)
    if info is not None:
        assert_finite_rows(block, name, info["chunk-location"][0], info["array-location"][0][0])
    else:
        assert_finite_rows(block, name, -1, 0)
    return block


def finite_blocks(X: da.Array, name: str = "X") -> da.Array:
    """Lazily attach a NaN/inf check to every chunk of ``X``.

    The check is a blockwise layer that dask fuses into the tasks that consume the chunk, so it runs in
    the same pass as the work and reports the offending chunk, row and column.
    """
    import dask.array as da

    return da.map_blocks(_finite_block, X, name, dtype=X.dtype, meta=X._meta)
