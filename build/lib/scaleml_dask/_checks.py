"""Checks that block kernels run on the numpy blocks inside their tasks: NaN / inf and sample weights.

They depend on numpy only, so every kernel can use them without importing a layer above it; the public
boundary (``validation``) re-exports them.

>>> import numpy as np
>>> assert_finite(np.array([[1.0, np.nan]]), "X", 3, 750)
Traceback (most recent call last):
...
ValueError: X contains NaN in chunk 3 (rows 750-750), first at row 750, column 1
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["assert_finite", "assert_finite_rows", "checked_weights", "csr_block", "nonfinite_error"]


def nonfinite_error(name: str, block: np.ndarray, where: str, row_start: int = 0) -> ValueError:
    """The error for NaN / inf in ``block``: names the value, the first row (counted from ``row_start``) and
    column, and ``where`` the block is (e.g. "in chunk 2 (rows 500-749)" or "in this batch")."""
    bad = np.argwhere(~np.isfinite(block))[0]
    value = block[tuple(bad)]
    at = f"row {row_start + int(bad[0])}" + (f", column {int(bad[1])}" if block.ndim == 2 else "")
    return ValueError(f"{name} contains {'NaN' if np.isnan(value) else 'inf'} {where}, first at {at}")


def assert_finite(block: np.ndarray, name: str, chunk_index: int, row_start: int) -> None:
    """Raise a ValueError naming the chunk, row and column if ``block`` holds NaN or inf."""
    if block.dtype.kind not in "fc" or np.isfinite(block).all():
        return
    raise nonfinite_error(name, block, f"in chunk {chunk_index} (rows {row_start}-{row_start + block.shape[0] - 1})",
                          row_start)


def assert_finite_rows(block: Any, name: str, chunk_index: int, row_start: int) -> None:
    """``assert_finite`` for a dense block or a CSR one (``data`` / ``indices`` / ``indptr``: its stored values are
    checked, and the error names the row and column of the first bad one)."""
    if not hasattr(block, "indptr"):
        assert_finite(block, name, chunk_index, row_start)
        return
    data = block.data
    if data.dtype.kind not in "fc" or np.isfinite(data).all():
        return
    k = int(np.flatnonzero(~np.isfinite(data))[0])
    row = int(np.searchsorted(block.indptr, k, side="right")) - 1
    value = data[k]
    stop = row_start + block.shape[0] - 1
    raise ValueError(f"{name} contains {'NaN' if np.isnan(value) else 'inf'} in chunk {chunk_index} (rows "
                     f"{row_start}-{stop}), first at row {row_start + row}, column {int(block.indices[k])}")


def csr_block(X: Any, dtype: Any = np.float64) -> Any:
    """A sparse block (any scipy.sparse matrix or array, or a dense one) as the kernels take it: a canonical
    ``csr_matrix`` (sorted indices, no duplicates) of ``dtype``, with int32 indices where they fit."""
    import scipy.sparse as sp

    X = sp.csr_matrix(X, dtype=dtype)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    if X.indices.dtype != np.int32 and X.nnz < 2**31 and max(X.shape) < 2**31:
        X = sp.csr_matrix((X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)), shape=X.shape)
    return X


def checked_weights(w: Any, chunk_index: int, row_start: int) -> np.ndarray:
    """A chunk's sample weights as a flat float64 array; a ValueError naming the chunk (and the row, for NaN or
    inf) if any is non-finite or negative."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        assert_finite(w, "sample_weight", chunk_index, row_start)
        raise ValueError(f"sample_weight has negative values in chunk {chunk_index} "
                         f"(rows {row_start}-{row_start + len(w) - 1})")
    return w
