"""Wide data (p ≫ n): passes over column panels that give the n × n Gram of the rows, and its kernels.

For a matrix with far more columns than rows, PCA and ridge regression are cheapest in their dual form, from
``K = Xc Xc'`` (n × n, ``Xc`` the column-centred ``X``) instead of the p × p ``X'X``. A row chunk holds whole rows,
so ``K`` is summed over **column panels**: a panel task reads columns ``[j0, j1)`` of every row chunk (from a store
written here, only those bytes of each uncompressed chunk are touched: a memory map; compressed chunks are
decoded once per panel), centres them by their own means (exact: the panel holds every row of its columns, so no
cancellation from a large mean) and adds ``P P'``. The panels partition the columns, so a pass reads the data
once; memory per task is one panel and one ``n × n`` sum, never ``p²``. A second pass maps the panels again to
turn an ``n × k`` result into the ``p × k`` one (PCA's components ``Xc' U S⁻¹``, ridge's ``Xc' a``).

>>> import numpy as np, dask.array as da
>>> X = np.random.default_rng(0).normal(size=(6, 40))
>>> dX = da.from_array(X, chunks=(4, 40))
>>> g = gram_of_rows(dX, width=16)
>>> Xc = X - X.mean(axis=0)
>>> bool(np.allclose(g.K, Xc @ Xc.T) and np.allclose(g.mean, X.mean(axis=0)))
True
"""

from __future__ import annotations

from typing import Any, NamedTuple

import dask
import numpy as np

from .passes import tree_reduce

#: Bytes of one column panel (all rows × its columns) a task holds.
PANEL_BYTES = 64 * 2**20


class RowGram(NamedTuple):
    """The column-centred Gram of the rows and the column moments it came with."""

    K: np.ndarray  # (n, n) Xc Xc'
    mean: np.ndarray  # (p,) column means
    ss: np.ndarray  # (p,) centred column sums of squares


def panels(n: int, p: int, width: int | None = None) -> list[tuple[int, int]]:
    """Column panels ``[j0, j1)`` of about ``PANEL_BYTES`` each (``width`` columns if given)."""
    w = int(width or max(1, PANEL_BYTES // max(1, 8 * n)))
    return [(j, min(j + w, p)) for j in range(0, p, w)]


def _panel(source: Any, blocks: list | None, rows: tuple[int, ...], j0: int, j1: int) -> np.ndarray:
    """Columns ``[j0, j1)`` of every row, as one float64 array: read from the store reader ``source`` (only those
    columns of each chunk), or stacked from the fallback ``blocks``."""
    if source is not None:
        starts = np.concatenate([[0], np.cumsum(rows)])
        parts = [source[int(starts[i]):int(starts[i + 1]), j0:j1] for i in range(len(rows))]
    else:
        parts = blocks
    out = np.concatenate([np.asarray(b, dtype=np.float64) for b in parts])
    if not np.isfinite(out.sum()):
        bad = np.argwhere(~np.isfinite(out))
        if len(bad):
            r, c = (int(v) for v in bad[0])
            raise ValueError(f"X contains {'NaN' if np.isnan(out[r, c]) else 'inf'} at row {r}, column {j0 + c}")
    return out


def _centred(P: np.ndarray, w: np.ndarray | None, center: bool) -> np.ndarray:
    """The panel centred by its (weighted) column means (if ``center``), rows scaled by ``sqrt(w)``, in place;
    returns the means."""
    mean = P.mean(axis=0) if w is None else (w @ P) / w.sum()
    if center:
        P -= mean
    if w is not None:
        P *= np.sqrt(w)[:, None]
    return mean


def _panel_gram(source: Any, blocks: list | None, rows: tuple[int, ...], j0: int, j1: int, w: np.ndarray | None,
                center: bool) -> RowGram:
    P = _panel(source, blocks, rows, j0, j1)
    mean = _centred(P, w, center)
    return RowGram(P @ P.T, mean, np.einsum("ij,ij->j", P, P))


def _combine(parts: list[RowGram]) -> RowGram:
    K = parts[0].K.copy()
    for p in parts[1:]:
        K += p.K
    return RowGram(K, np.concatenate([p.mean for p in parts]), np.concatenate([p.ss for p in parts]))


def _panel_map(source: Any, blocks: list | None, rows: tuple[int, ...], j0: int, j1: int, M: np.ndarray,
               w: np.ndarray | None, center: bool) -> np.ndarray:
    """``Pc' M`` for one panel (centred and weighted as in the Gram): its rows of a ``p × k`` result."""
    P = _panel(source, blocks, rows, j0, j1)
    _centred(P, w, center)
    return P.T @ M


def _inputs(dX: Any, bounds: list[tuple[int, int]]) -> tuple[Any, list]:
    """The store reader of ``dX`` (panel tasks read their columns themselves), or, for any other dask array, each
    panel's row blocks from ``dX``'s own graph."""
    from .io.read import ZarrChunks, row_source

    src = row_source(dX)
    if isinstance(src, ZarrChunks):
        return src, [None] * len(bounds)
    return None, [list(dX[:, j0:j1].to_delayed().ravel()) for j0, j1 in bounds]


def _panel_tasks(dX: Any, fn: Any, weights: np.ndarray | None, center: bool, width: int | None, *extra: Any) -> list:
    """One delayed ``fn(source, blocks, rows, j0, j1, *extra, weights, center)`` per column panel of ``dX``."""
    n, p = dX.shape
    bounds = panels(n, p, width)
    src, blocks = _inputs(dX, bounds)
    w = None if weights is None else dask.delayed(np.asarray(weights, dtype=np.float64), pure=True)
    call = dask.delayed(fn, pure=True)
    return [call(src, b, dX.chunks[0], j0, j1, *extra, w, center) for (j0, j1), b in zip(bounds, blocks)]


def gram_of_rows(dX: Any, *, weights: np.ndarray | None = None, center: bool = True,
                 width: int | None = None) -> RowGram:
    """One pass over the column panels of row-chunked ``dX`` (n × p, dense): ``Xc Xc'`` and the column moments.
    With ``weights``, ``Xc`` is centred by the weighted means and its rows scaled by ``sqrt(weights)``; without
    ``center``, not centred."""
    return dask.compute(tree_reduce(_panel_tasks(dX, _panel_gram, weights, center, width), _combine))[0]


def map_panels(dX: Any, M: np.ndarray, *, weights: np.ndarray | None = None, center: bool = True,
               width: int | None = None) -> np.ndarray:
    """A second pass: ``Xc' M`` (p × k) for an ``n × k`` ``M``, panel by panel (``Xc`` as in ``gram_of_rows``)."""
    tasks = _panel_tasks(dX, _panel_map, weights, center, width, dask.delayed(M, pure=True))
    return np.concatenate(dask.compute(*tasks))
