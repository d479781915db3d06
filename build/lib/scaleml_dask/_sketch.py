"""Block kernels of the randomized range finder: one pass computes ``Y = X Z``, its R factor and ``X' Y``.

A pass over row blocks ``X_b`` (dense, or CSR) with a fixed ``Z`` (p × l) sums ``C = Σ X_b' Y_b`` (p × l) and
combines the R factors of the ``Y_b`` (TSQR: stack and QR again), so that with ``Q = Y R⁻¹`` (never formed, n × l)
``X' Q = C R⁻¹``: one read of the data gives both the range of ``X Z`` and the projection of ``X`` on it — a power
iteration of the randomized SVD per pass (``decomposition.TruncatedSVD``). CSR blocks are multiplied by compiled
loops over their non-zeros that read and write whole rows of ``Z`` and ``C`` (contiguous, ``l`` wide), and a
block's ``X_b' Y_b`` is added into the running sum in place: a task folding several blocks
(``passes.fold_row_chunks``) holds one ``p × l`` sum, whatever the number of blocks it reads.

>>> import numpy as np, scipy.sparse as sp
>>> X = sp.random(50, 8, density=0.3, format="csr", random_state=0); Z = np.ones((8, 2))
>>> s = combine_sketches([sketch_block(X[:30], Z), sketch_block(X[30:], Z)])
>>> Y = X @ Z
>>> bool(np.allclose(s.c, X.T @ Y) and np.allclose(np.abs(s.r), np.abs(np.linalg.qr(Y, mode="r"))))
True
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numba
import numpy as np

from ._checks import assert_finite_rows
from ._tsqr import qr_r


class Sketch(NamedTuple):
    """One pass of the range finder over a set of rows."""

    n: int
    c: np.ndarray  # (p, l) X' Y
    r: np.ndarray  # (l, l) R factor of Y = X Z
    sums: np.ndarray | None  # (p,) column sums of X (when asked)
    sumsq: np.ndarray | None  # (p,) column sums of squares of X (when asked)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _csr_times_dense(data, indices, indptr, Z, Y):  # pragma: no cover - compiled
    """``Y = X Z`` for CSR ``X``: row ``i`` of ``Y`` is the sum of ``x_ij Z[j]`` over its non-zeros."""
    l = Z.shape[1]
    for i in range(indptr.shape[0] - 1):
        for q in range(l):
            Y[i, q] = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            v = data[k]
            j = indices[k]
            for q in range(l):
                Y[i, q] += v * Z[j, q]


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _csr_t_times_dense_add(data, indices, indptr, Y, C):  # pragma: no cover - compiled
    """``C += X' Y`` for CSR ``X``: each non-zero ``x_ij`` adds ``x_ij Y[i]`` to row ``j`` of ``C``."""
    l = Y.shape[1]
    for i in range(indptr.shape[0] - 1):
        for k in range(indptr[i], indptr[i + 1]):
            v = data[k]
            j = indices[k]
            for q in range(l):
                C[j, q] += v * Y[i, q]


def sketch_block(X: Any, Z: np.ndarray, *, M: np.ndarray | None = None, moments: bool = False,
                 acc: Sketch | None = None, chunk_index: int = -1, row_start: int = 0) -> Sketch:
    """The sketch of one block of rows (dense or CSR) with ``Z M`` (``Z`` alone without ``M``), added to ``acc``
    (in place) when given. NaN / inf in ``X`` shows in ``Y`` and is then reported with its chunk, row and
    column."""
    sparse = hasattr(X, "indptr")
    if sparse:
        from ._checks import csr_block

        X = csr_block(X)
        Y = np.empty((X.shape[0], Z.shape[1]))
        _csr_times_dense(X.data, X.indices, X.indptr, Z, Y)
    else:
        X = np.asarray(X, dtype=np.float64)
        Y = X @ Z
    if M is not None:
        Y = Y @ M
    if not np.isfinite(Y).all():
        assert_finite_rows(X, "X", chunk_index, row_start)
        raise ValueError(f"X @ Z overflows float64 in chunk {chunk_index} (rows {row_start}-"
                         f"{row_start + X.shape[0] - 1}): scale X down")
    p, l = Z.shape[0], Y.shape[1]
    if acc is None:
        acc = Sketch(0, np.zeros((p, l)), np.zeros((0, l)), np.zeros(p) if moments else None,
                     np.zeros(p) if moments else None)
    c = acc.c
    if sparse:
        _csr_t_times_dense_add(X.data, X.indices, X.indptr, Y, c)
    else:
        c += X.T @ Y
    sums, sumsq = acc.sums, acc.sumsq
    if moments:
        if sparse:
            _bincount_add(sums, X.indices, X.data)
            _bincount_add(sumsq, X.indices, X.data * X.data)
        else:
            sums += X.sum(axis=0)
            sumsq += np.einsum("ij,ij->j", X, X)
    return Sketch(acc.n + X.shape[0], c, qr_r(np.vstack([acc.r, qr_r(Y)])), sums, sumsq)


def _bincount_add(out: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
    out += np.bincount(indices, weights=values, minlength=len(out))


def combine_sketches(parts: list[Sketch]) -> Sketch:
    """Exact combination of sketches of disjoint rows (summed in the order given; the parts are not changed, so a
    combine recomputed after a lost worker gives the same sum)."""
    first = parts[0]
    c = first.c.copy()
    for p in parts[1:]:
        c += p.c
    sums = None if first.sums is None else sum(p.sums for p in parts[1:]) + first.sums
    sumsq = None if first.sumsq is None else sum(p.sumsq for p in parts[1:]) + first.sumsq
    return Sketch(sum(p.n for p in parts), c, qr_r(np.vstack([p.r for p in parts])), sums, sumsq)
