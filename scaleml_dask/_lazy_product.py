"""``(X - center) @ W + offset`` as a lazy dask array, with the (possibly large) ``W``, ``center`` and
``offset`` shipped once per worker.

A transform's matrix is ``p × k``: 2**20 hashed features × 100 components are 800 MiB. Given to ``map_blocks``
as an array it becomes part of the task graph, which the client sends to the scheduler, the scheduler holds and
forwards (dask warns of a graph of hundreds of MiB); here each column panel of ``W`` is a ``passes.shared``
input — a future on a dask.distributed cluster — so the graph carries its key only, and the result is still a
lazy array the user computes when they like. Column-chunked ``X`` is multiplied panel by panel and summed.
Sparse blocks stay sparse: their centred product is ``x W - center W``.

>>> import dask.array as da, numpy as np
>>> X = da.from_array(np.arange(12.0).reshape(4, 3), chunks=(2, 2))
>>> row_product(X, np.ones((3, 1)), offset=np.array([-1.0])).compute().ravel().tolist()
[2.0, 11.0, 20.0, 29.0]
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import dask.array as da
import numpy as np
import scipy.sparse as sp

from .passes import shared


def row_product(dX: da.Array, W: np.ndarray, *, center: np.ndarray | None = None,
                offset: np.ndarray | None = None, columns: np.ndarray | None = None) -> da.Array:
    """Lazy ``(dX - center) @ W + offset`` (float64, one row chunk per input row chunk; ``center`` of length
    ``p``, ``offset`` of length ``k``), its constants sent as ``passes.shared`` inputs, not inside the graph.
    ``columns`` (sorted, one column chunk, no ``center``): ``W`` holds only these rows, the others being zero —
    ``dX[:, columns] @ W``, and only ``len(columns) × k`` is shipped (TruncatedSVD of hashed text)."""
    k = W.shape[1]
    if columns is not None:
        if center is not None or len(dX.chunks[1]) > 1:
            raise ValueError("row_product: columns= takes one column chunk and no center")
        return dX.map_blocks(_columns_product_block, shared(np.ascontiguousarray(W)),
                             shared(np.asarray(columns, dtype=np.int64)),
                             None if offset is None else shared(np.asarray(offset, dtype=np.float64)),
                             chunks=(dX.chunks[0], (k,)), dtype=np.float64, meta=np.empty((0, 0)))
    edges = np.cumsum((0, *dX.chunks[1]))
    panels = []
    for j in range(len(dX.chunks[1])):
        block = dX if len(dX.chunks[1]) == 1 else dX.blocks[:, j]
        lo, hi = edges[j], edges[j + 1]
        c = None if center is None else shared(np.asarray(center[lo:hi], dtype=np.float64))
        o = None if offset is None or j else shared(np.asarray(offset, dtype=np.float64))
        panels.append(block.map_blocks(_product_block, shared(np.ascontiguousarray(W[lo:hi])), c, o,
                                       chunks=(dX.chunks[0], (k,)), dtype=np.float64, meta=np.empty((0, 0))))
    return functools.reduce(operator.add, panels)


def _columns_product_block(x: Any, W: np.ndarray, columns: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """``x[:, columns] @ W + offset`` of one block."""
    return _product_block(x[:, columns], W, None, offset)


def _product_block(x: Any, W: np.ndarray, center: np.ndarray | None, offset: np.ndarray | None) -> np.ndarray:
    """``(x - center) @ W + offset`` of one block (sparse: ``x W - center W``, so it stays sparse)."""
    if center is None:
        out = np.asarray(x @ W, dtype=np.float64)
    elif sp.issparse(x):
        out = np.asarray(x @ W, dtype=np.float64) - center @ W
    else:
        out = (np.asarray(x, dtype=np.float64) - center) @ W
    if offset is not None:
        out += offset
    return out
