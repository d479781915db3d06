"""One place that turns user input into checked dask arrays.

Accepted: numpy arrays, dask arrays, xarray DataArray / Dataset, zarr arrays, and paths or catalog
names of datasets. Shapes, dtypes and lengths are checked here, once, at the public boundary; NaN and
inf are checked *inside* the pass that does the work (``finite_blocks``), so validation never costs an
extra read of the data.

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

if TYPE_CHECKING:  # dask.array costs ~0.4 s to import; in-memory callers (small t-SNE) never need it
    import dask.array as da

TARGET_CHUNK_BYTES = 64 * 2**20


class NotFittedError(ValueError, AttributeError):
    """Raised when an estimator is used before ``fit``."""


def check_is_fitted(estimator: Any, attribute: str) -> None:
    """Raise ``NotFittedError`` unless ``estimator`` has the fitted ``attribute``."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet; call 'fit' before using it."
        )


def default_chunk_rows(n_features: int, itemsize: int = 8, target_bytes: int = TARGET_CHUNK_BYTES) -> int:
    """Rows per chunk so that one chunk of ``n_features`` columns is near ``target_bytes``."""
    return max(1, int(target_bytes // max(1, n_features * itemsize)))


def _open_path(path: str | Path) -> Any:
    from .catalog import open_dataset

    return open_dataset(path)


def as_dask_array(
    X: Any,
    name: str = "X",
    *,
    ndim: int | None = None,
    numeric: bool = True,
    chunk_rows: int | None = None,
) -> da.Array:
    """Return ``X`` as a dask array chunked along rows only, after checking its shape and dtype.

    ``name`` is used in every error message. Paths and catalog names open the dataset and take its
    variable ``name`` (``X`` or ``y``). Arrays chunked along both axes are rechunked to whole rows.
    """
    import dask.array as da

    if isinstance(X, (str, Path)):
        ds = _open_path(X)
        if name not in ds:
            raise ValueError(f"dataset {str(X)!r} has no variable {name!r}")
        X = ds[name]
    xr = sys.modules.get("xarray")  # an xarray object exists only once xarray is imported: no import here
    if xr is not None and isinstance(X, xr.Dataset):
        if name not in X:
            raise ValueError(f"the xarray Dataset has no variable {name!r} (has {sorted(X.data_vars)})")
        X = X[name]
    if xr is not None and isinstance(X, xr.DataArray):
        X = X.data
    if type(X).__module__.startswith("zarr"):
        X = da.from_zarr(X)
    if not isinstance(X, da.Array):
        X = check_array(X, name, ndim=ndim, numeric=numeric)
        rows = chunk_rows or default_chunk_rows(X.shape[1] if X.ndim == 2 else 1, X.dtype.itemsize)
        return da.from_array(X, chunks=(rows,) + X.shape[1:]) if X.ndim else da.from_array(X)
    _check_shape_and_dtype(X, name, ndim, numeric)
    if any(np.isnan(c) for c in X.shape):
        raise ValueError(f"{name} has unknown chunk sizes; call compute_chunk_sizes() first")
    if X.ndim == 2 and len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return X


def check_array(X: Any, name: str = "X", *, ndim: int | None = None, numeric: bool = True) -> np.ndarray:
    """``X`` (numpy, list, pandas) as a numpy array, with the same checks as ``as_dask_array``."""
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas
        X = X.to_numpy()
    X = np.asarray(X)
    if X.dtype == object:
        raise ValueError(f"{name} has dtype object; a numeric array is required")
    _check_shape_and_dtype(X, name, ndim, numeric)
    return X


def _check_shape_and_dtype(X: Any, name: str, ndim: int | None, numeric: bool) -> None:
    if ndim is not None and X.ndim != ndim:
        kind = {1: "a 1-d array (n_samples,)", 2: "a 2-d array (n_samples, n_features)"}.get(ndim, f"{ndim}-d")
        raise ValueError(f"{name} must be {kind}; got shape {X.shape}")
    if numeric and not (np.issubdtype(X.dtype, np.number) or X.dtype.kind == "b"):
        raise ValueError(f"{name} has non-numeric dtype {X.dtype}; a numeric array is required")
    if X.ndim and X.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples")


def check_X_y(X: Any, y: Any, *, y_numeric: bool = True) -> tuple[da.Array, da.Array]:
    """Check ``X`` (2-d) and ``y`` (1-d) together; ``y`` is rechunked to ``X``'s row chunks.

    If ``X`` is a dataset (xarray, path or catalog name) and ``y`` is None, ``y`` is taken from it.
    """
    if y is None:
        if isinstance(X, (str, Path)):
            X = _open_path(X)
        y = _take_y(X)
    dX = as_dask_array(X, "X", ndim=2)
    dy = as_dask_array(y, "y", numeric=y_numeric)
    if dy.ndim == 2 and dy.shape[1] == 1:
        dy = dy[:, 0]
    if dy.ndim != 1:
        raise ValueError(f"y must be a 1-d array (n_samples,); got shape {dy.shape}")
    if dX.shape[0] != dy.shape[0]:
        raise ValueError(f"X and y have different lengths: X has {dX.shape[0]} rows, y has {dy.shape[0]}")
    if dy.chunks[0] != dX.chunks[0]:
        dy = dy.rechunk((dX.chunks[0],))
    return dX, dy


def _take_y(X: Any) -> Any:
    xr = sys.modules.get("xarray")
    if xr is not None and isinstance(X, xr.Dataset):
        if "y" not in X:
            raise ValueError("y was not given and the dataset has no variable 'y'")
        return X["y"]
    raise ValueError("y is required when X is an array")


def assert_finite(block: np.ndarray, name: str, chunk_index: int, row_start: int) -> None:
    """Raise a ValueError naming the chunk, row and column if ``block`` holds NaN or inf."""
    if block.dtype.kind not in "fc":
        return
    ok = np.isfinite(block)
    if ok.all():
        return
    bad = np.argwhere(~ok)[0]
    row = row_start + int(bad[0])
    value = block[tuple(bad)]
    where = f"row {row}" + (f", column {int(bad[1])}" if block.ndim == 2 else "")
    raise ValueError(
        f"{name} contains {'NaN' if np.isnan(value) else 'inf'} in chunk {chunk_index} "
        f"(rows {row_start}-{row_start + block.shape[0] - 1}), first at {where}"
    )


def _finite_block(block: np.ndarray, name: str, block_info: dict | None = None) -> np.ndarray:
    info = (block_info or {}).get(0)
    if info is not None:
        assert_finite(block, name, info["chunk-location"][0], info["array-location"][0][0])
    else:
        assert_finite(block, name, -1, 0)
    return block


def finite_blocks(X: da.Array, name: str = "X") -> da.Array:
    """Lazily attach a NaN/inf check to every chunk of ``X``.

    The check is a blockwise layer that dask fuses into the tasks that consume the chunk, so it runs in
    the same pass as the work and reports the offending chunk, row and column.
    """
    import dask.array as da

    return da.map_blocks(_finite_block, X, name, dtype=X.dtype, meta=np.empty((0,) * X.ndim, dtype=X.dtype))


def row_offsets(chunks: tuple[int, ...]) -> np.ndarray:
    """Starting row of each chunk."""
    return np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)
