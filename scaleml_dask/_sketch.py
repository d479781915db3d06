"""Block kernels of the randomized range finder, in the space of the columns the data touch.

A pass over row blocks ``X_b`` (dense, or CSR) with a fixed basis ``Z`` (p' × l, one row per *active* column:
those holding a non-zero somewhere) sums ``C = Σ X_b' Y_b`` (p' × l) of ``Y_b = X_b Z`` and combines the R
factors of the ``Y_b`` (TSQR: stack and QR again), so that with ``Q = Y R⁻¹`` (never formed, n × l)
``X' Q = C R⁻¹``: one read of the data gives both the range of ``X Z`` and the projection of ``X`` on it — a power
iteration of the randomized SVD per pass (``decomposition.TruncatedSVD``). Columns no row touches contribute
nothing to either product, so leaving them out is exact: hashed text (2**20 columns) touches a few tens of
thousands.

The first pass needs no basis from the client: ``range_block`` draws the Gaussian test matrix ``Ω`` row by row
for the columns its chunk touches, from a counter-based generator keyed by the seed and the column
(``gaussian_rows``: the same row of ``Ω`` in every chunk and on every worker), and returns a *compact* sketch —
its columns and their rows of ``C``; ``combine_sketches`` merges compact sketches over the union of their
columns, which becomes the active set of the later passes. CSR blocks are multiplied by compiled loops over
their non-zeros that read and write whole rows of ``Z`` and ``C`` (contiguous, ``l`` wide), after their column
indices are mapped to positions in the active set; a block's ``X_b' Y_b`` is added into the running sum in
place, so a task folding several blocks (``passes.fold_row_chunks``) holds one ``p' × l`` sum.

>>> import numpy as np, scipy.sparse as sp
>>> X = sp.random(50, 8, density=0.3, format="csr", random_state=0)
>>> first = combine_sketches([range_block(X[:30], seed=1, l=2), range_block(X[30:], seed=1, l=2)])
>>> Omega = gaussian_rows(1, first.cols, 2)
>>> Xa = X[:, first.cols]; Y = Xa @ Omega
>>> bool(np.allclose(first.c, Xa.T @ Y) and np.allclose(np.abs(first.r), np.abs(np.linalg.qr(Y, mode="r"))))
True
>>> s = combine_sketches([sketch_block(X[:30], Omega, cols=first.cols), sketch_block(X[30:], Omega, cols=first.cols)])
>>> bool(np.allclose(s.c, first.c))
True
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import numba
import numpy as np

from ._checks import assert_finite_rows, csr_block
from ._tsqr import qr_r

#: A block whose largest value times the largest of it and of ``X Z``, times its rows, stays below this cannot
#: overflow float64 in its products (the sums of many such blocks neither): only above it are they checked.
_OVERFLOW_BOUND = 1e300


class Sketch(NamedTuple):
    """One pass of the range finder over a set of rows."""

    n: int
    cols: np.ndarray | None  # (p',) the columns the rows of c stand for, sorted (None: all columns, in order)
    c: np.ndarray  # (p', l) X' Y
    r: np.ndarray  # (l, l) R factor of Y = X Z
    sums: np.ndarray | None  # (p',) column sums of X (when asked)
    sumsq: np.ndarray | None  # (p',) column sums of squares of X (when asked)
    nnz: int  # stored values read (rows × columns for dense blocks)


@numba.njit(cache=True, nogil=True)
def _mix(z):  # pragma: no cover - compiled
    """splitmix64's finaliser: a bijection of uint64 whose outputs pass BigCrush as a counter-based stream."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def _gaussian_rows(seed, cols, out):  # pragma: no cover - compiled
    """Row ``t`` of ``out`` = row ``cols[t]`` of the standard normal matrix keyed by ``seed`` (Box–Muller on two
    hashed counters per pair of entries)."""
    l = out.shape[1]
    scale = 1.0 / 9007199254740992.0  # 2**-53
    for t in range(cols.shape[0]):
        key = _mix(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(cols[t]))
        for q in range(0, l, 2):
            a = _mix(key + np.uint64(2 * q + 1))
            b = _mix(key ^ _mix(np.uint64(2 * q + 2)))
            u1 = (float(a >> np.uint64(11)) + 1.0) * scale  # (0, 1]: log(u1) finite
            u2 = float(b >> np.uint64(11)) * scale
            rad = np.sqrt(-2.0 * np.log(u1))
            out[t, q] = rad * np.cos(2.0 * np.pi * u2)
            if q + 1 < l:
                out[t, q + 1] = rad * np.sin(2.0 * np.pi * u2)


def gaussian_rows(seed: int, cols: np.ndarray, l: int) -> np.ndarray:
    """Rows ``cols`` of a ``(∞ × l)`` standard normal matrix determined by ``seed``: any chunk, on any worker,
    draws the same row for the same column, so the test matrix of the range finder is never formed or sent."""
    out = np.empty((len(cols), l))
    _gaussian_rows(int(seed) % 2**63, np.asarray(cols, dtype=np.int64), out)
    return out


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


def _positions(indices: np.ndarray, cols: np.ndarray, p: int) -> np.ndarray:
    """Position in ``cols`` (sorted) of each column index, -1 where absent (a lookup of ``p`` int32)."""
    pos = np.full(p, -1, dtype=np.int32)
    pos[cols] = np.arange(len(cols), dtype=np.int32)
    return pos[indices]


def range_block(X: Any, *, seed: int, l: int, moments: bool = False, acc: Sketch | None = None,
                chunk_index: int = -1, row_start: int = 0) -> Sketch:
    """The first pass's sketch of one block with the test matrix ``Ω`` (``gaussian_rows(seed, ·, l)``), drawn here
    for the block's touched columns only (all columns of a dense block), compact: the sketch holds those columns'
    rows of ``C`` (merged into ``acc`` when given)."""
    if hasattr(X, "indptr"):
        X = csr_block(X)
        seen = np.zeros(X.shape[1], dtype=bool)
        seen[X.indices] = True
        cols = np.flatnonzero(seen)
    else:
        X = np.asarray(X, dtype=np.float64)
        cols = np.arange(X.shape[1])
    s = _sketch_of(X, gaussian_rows(seed, cols, l), cols, None, moments, None, chunk_index, row_start)
    return s if acc is None else combine_sketches([acc, s])


def sketch_block(X: Any, Z: np.ndarray, *, cols: np.ndarray | None = None, M: np.ndarray | None = None,
                 moments: bool = False, acc: Sketch | None = None, chunk_index: int = -1,
                 row_start: int = 0) -> Sketch:
    """The sketch of one block of rows (dense or CSR) with ``Z M`` (``Z`` alone without ``M``), added to ``acc``
    (in place) when given. ``Z`` has one row per column of ``cols`` (sorted; None: per column of ``X``), and a
    CSR block with a non-zero outside ``cols`` is refused by chunk, row and column. NaN / inf in ``X`` shows in
    ``Y`` and is then reported with its chunk, row and column."""
    X = csr_block(X) if hasattr(X, "indptr") else np.asarray(X, dtype=np.float64)
    return _sketch_of(X, Z, cols, M, moments, acc, chunk_index, row_start)


def _sketch_of(X: Any, Z: np.ndarray, cols: np.ndarray | None, M: np.ndarray | None, moments: bool,
               acc: Sketch | None, chunk_index: int, row_start: int) -> Sketch:
    """``sketch_block`` of a block as the kernels take it (``csr_block``, or float64)."""
    sparse = hasattr(X, "indptr")
    if sparse:
        indices = X.indices
        if cols is not None:
            indices = _positions(X.indices, cols, X.shape[1])
            if indices.size and indices.min() < 0:
                k = int(np.flatnonzero(indices < 0)[0])
                row = row_start + int(np.searchsorted(X.indptr, k, side="right")) - 1
                raise ValueError(f"X changed between the passes of the range finder: chunk {chunk_index} has a "
                                 f"non-zero at row {row}, column {int(X.indices[k])}, which the first pass did not "
                                 "see")
        Y = np.empty((X.shape[0], Z.shape[1]))
        _csr_times_dense(X.data, indices, X.indptr, Z, Y)
    else:
        if cols is not None and len(cols) != X.shape[1]:
            raise ValueError("a dense block's sketch is taken over all its columns")
        Y = X @ Z
    if M is not None:
        Y = Y @ M
    if not np.isfinite(Y).all():
        assert_finite_rows(X, "X", chunk_index, row_start)
        raise ValueError(f"X @ Z overflows float64 in chunk {chunk_index} (rows {row_start}-"
                         f"{row_start + X.shape[0] - 1}): scale X down")
    p, l = Z.shape[0], Y.shape[1]
    if acc is None:
        acc = Sketch(0, cols, np.zeros((p, l)), np.zeros((0, l)), np.zeros(p) if moments else None,
                     np.zeros(p) if moments else None, 0)
    c = acc.c
    sums, sumsq = acc.sums, acc.sumsq
    values = X.data if sparse else X
    x_max = _abs_max(values)
    y_max = _abs_max(Y)
    risky = x_max * max(x_max, y_max) * max(X.shape[0], 1) > _OVERFLOW_BOUND  # else no sum below can overflow
    with np.errstate(over="ignore", invalid="ignore") if risky else contextlib.nullcontext():
        if sparse:
            _csr_t_times_dense_add(X.data, indices, X.indptr, Y, c)
            if moments:
                _bincount_add(sums, indices, X.data)
                _bincount_add(sumsq, indices, X.data * X.data)
        else:
            c += X.T @ Y
            if moments:
                sums += X.sum(axis=0)
                sumsq += np.einsum("ij,ij->j", X, X)
    if risky and not (np.isfinite(c).all() and (sumsq is None or np.isfinite(sumsq).all())):
        raise ValueError(f"X' X overflows float64 in chunk {chunk_index} (rows {row_start}-"
                         f"{row_start + X.shape[0] - 1}; largest |value| {x_max:.3g}): scale X down")
    nnz = X.nnz if sparse else X.size
    return Sketch(acc.n + X.shape[0], acc.cols, c, qr_r(np.vstack([acc.r, qr_r(Y)])), sums, sumsq, acc.nnz + nnz)


def _abs_max(a: np.ndarray) -> float:
    """``max |a|`` (0 if empty) without an array of the magnitudes; ``a`` is finite here (``Y`` is checked, and a
    non-finite value of ``X`` shows in ``Y``)."""
    return float(max(a.max(), -a.min())) if a.size else 0.0


def _bincount_add(out: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
    out += np.bincount(indices, weights=values, minlength=len(out))


def combine_sketches(parts: list[Sketch]) -> Sketch:
    """Exact combination of sketches of disjoint rows (summed in the order given; the parts are not changed, so a
    combine recomputed after a lost worker gives the same sum). Compact sketches over different columns are
    merged over the union of their columns."""
    first = parts[0]
    same = all(p.cols is first.cols or (p.cols is not None and first.cols is not None and
                                        np.array_equal(p.cols, first.cols)) for p in parts[1:])
    cols = first.cols if same else np.unique(np.concatenate([p.cols for p in parts]))
    moments = first.sums is not None
    c = np.zeros((len(cols), first.c.shape[1])) if not same else first.c.copy()
    sums = (np.zeros(len(cols)) if not same else first.sums.copy()) if moments else None
    sumsq = (np.zeros(len(cols)) if not same else first.sumsq.copy()) if moments else None
    for p in parts if not same else parts[1:]:
        at = slice(None) if same else np.searchsorted(cols, p.cols)
        c[at] += p.c
        if moments:
            sums[at] += p.sums
            sumsq[at] += p.sumsq
    return Sketch(sum(p.n for p in parts), cols, c, qr_r(np.vstack([p.r for p in parts])), sums, sumsq,
                  sum(p.nnz for p in parts))
