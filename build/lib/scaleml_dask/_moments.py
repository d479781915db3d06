"""The moments pass shared by LinearRegression, Ridge and PCA: blockwise moments, reduced by a tree.

Each chunk of rows is summarised on the cluster by ``_tsqr.block_moments`` (its weight, column means and an R
factor or Gram matrix); a deterministic tree of ``combine_moments`` calls reduces the summaries to one, in one
``dask.compute``, its last combine on the client (``passes.one_pass``). ``fit_moments`` adds the "auto" policy:
Gram where its error bound allows, QR otherwise, and a QR pass again if the combined problem turns out worse
conditioned than its chunks.

Every pass is computed (``one_pass`` gives it keys of its own). Reusing the statistics of one pass across fits
on unchanged data is deliberate: inside ``reuse_statistics()`` a fit whose data have the same fingerprint
(``checkpoint.data_fingerprint``: a store's path and chunk checksums, numpy's bytes, a dask graph's name) and
the same pass options takes the moments of the earlier one instead of reading the data again, and says so
(``statistics_reused_`` on the estimator, ``reuse_statistics().log``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import dask.array as da
import numpy as np

from ._tsqr import EPS, Moments, block_moments, combine_moments, gram_error_bound
from .passes import one_pass
from .validation import as_dask_array

#: Error bound below which ``solver="auto"`` accepts the normal equations for a chunk.
AUTO_TOL = 1e-10


class StatisticsCache:
    """The moments of the passes made inside one ``reuse_statistics()`` block, by data fingerprint and options;
    ``log`` lists ``"computed"`` / ``"reused"`` for every request, in order."""

    def __init__(self) -> None:
        self.entries: dict[str, Moments] = {}
        self.log: list[str] = []

    @property
    def last(self) -> str | None:
        return self.log[-1] if self.log else None


_CACHE: contextvars.ContextVar[StatisticsCache | None] = contextvars.ContextVar("scaleml_statistics", default=None)


@contextlib.contextmanager
def reuse_statistics() -> Iterator[StatisticsCache]:
    """Within the block, fits of ``LinearRegression``, ``Ridge`` and ``PCA`` on data with the same fingerprint
    (and the same pass options) share one pass's moments; each says whether it reused them
    (``statistics_reused_``). Outside it every fit reads its data.

    >>> import numpy as np, scaleml_dask as sm
    >>> X = np.random.default_rng(0).normal(size=(100, 3)); y = X.sum(axis=1)
    >>> with sm.reuse_statistics() as stats:
    ...     a = sm.Ridge(alpha=1.0).fit(X, y); b = sm.Ridge(alpha=100.0).fit(X, y)
    >>> stats.log, a.statistics_reused_, b.statistics_reused_
    (['computed', 'reused'], False, True)
    """
    cache = _CACHE.get()
    token = _CACHE.set(StatisticsCache()) if cache is None else None
    try:
        yield _CACHE.get()
    finally:
        if token is not None:
            _CACHE.reset(token)


def last_reused() -> bool:
    """Whether the latest ``moments`` request of this ``reuse_statistics()`` block was served from its cache."""
    cache = _CACHE.get()
    return cache is not None and cache.last == "reused"


def moments(
    X: da.Array,
    y: da.Array | None = None,
    sample_weight: da.Array | None = None,
    *,
    center: bool = True,
    method: str = "tsqr",
    tol: float = AUTO_TOL,
    scale: bool = True,
) -> Moments:
    """One pass over row-chunked ``X`` (and ``y``, weights): the combined ``Moments`` of ``[X | y]`` (inside
    ``reuse_statistics()``: an earlier pass's, for data with the same fingerprint and the same options).

    Each chunk's task reads its rows itself when they come from a store (``passes.map_row_chunks``)."""
    cache = _CACHE.get()
    key = None
    if cache is not None:
        from .checkpoint import data_fingerprint, fingerprint

        key = fingerprint([data_fingerprint([a for a in (X, y, sample_weight) if a is not None]),
                           [y is not None, sample_weight is not None], center, method, tol, scale])
        if key in cache.entries:
            cache.log.append("reused")
            return cache.entries[key]
    m = one_pass(block_moments, combine_moments, X, y, sample_weight, center=center, method=method, tol=tol,
                 scale=scale)
    if cache is not None:
        cache.entries[key] = m
        cache.log.append("computed")
    return m


def check_sample_weight(sample_weight: Any, X: da.Array) -> da.Array | None:
    """Sample weights as a 1-d dask array on ``X``'s row chunks (None stays None)."""
    if sample_weight is None:
        return None
    w = as_dask_array(sample_weight, "sample_weight", ndim=1)
    if w.shape[0] != X.shape[0]:
        raise ValueError(f"sample_weight has {w.shape[0]} values but X has {X.shape[0]} rows")
    return w.rechunk((X.chunks[0],)) if w.chunks[0] != X.chunks[0] else w


def solver_name(m: Moments) -> str:
    """What a fit actually used: ``gram``, ``tsqr`` or ``gram+tsqr`` (auto, mixed chunks)."""
    if m.gram or m.n_gram == m.n_blocks:
        return "gram"
    return "tsqr" if m.n_gram == 0 else "gram+tsqr"


def fit_moments(X: da.Array, y: da.Array | None, w: da.Array | None, *, center: bool, solver: str,
                tol: float, scale: bool) -> tuple[np.ndarray, Moments, str]:
    """Run the pass for ``solver`` and return (R, moments, solver used); ``auto`` falls back to QR if needed."""
    m = moments(X, y, w, center=center, method=solver, tol=tol, scale=scale)
    if m.gram:
        return gram_r(m.r), m, "gram"
    if m.n_gram and gram_error_bound(m.r.T @ m.r, m.amp, scale) > tol:
        m = moments(X, y, w, center=center, method="tsqr", scale=scale)
    return m.r, m, solver_name(m)


def gram_r(G: np.ndarray) -> np.ndarray:
    """Upper R with ``R'R = G`` (Cholesky), tolerating semidefinite ``G``: a column whose pivot is not
    positive gets a zero diagonal, so the rank check can name it instead of the factorization failing."""
    try:
        return np.linalg.cholesky(G).T
    except np.linalg.LinAlgError:
        pass
    p = G.shape[0]
    R = np.zeros_like(G)
    for j in range(p):
        pivot = G[j, j] - R[:j, j] @ R[:j, j]
        if pivot > EPS * G[j, j]:
            R[j, j] = np.sqrt(pivot)
            R[j, j + 1:] = (G[j, j + 1:] - R[:j, j] @ R[:j, j + 1:]) / R[j, j]
    return R
