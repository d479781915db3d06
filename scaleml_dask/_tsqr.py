"""Pure numpy kernels behind LinearRegression, Ridge and PCA: blockwise moments in R-factor form.

A block of rows ``A = [X | y]`` is summarised by its (weighted) row count, its column means and the upper
triangular R of a QR of the *centered* block (``center=True``) or of the raw block. Two summaries combine
exactly (Chan et al.'s pairwise update, in R form): stack both R's and one row
``sqrt(W_a W_b / W) (m_a - m_b)`` and take the R of that small stack. Centering by each block's own mean
costs no extra read and keeps the digits that a raw ``[1 | X]`` factorization would lose on shifted data.

Per block, the R comes from a QR (``method="tsqr"``): CholeskyQR2 (two BLAS-3 passes over cache-sized
sub-blocks) where the block's Gram shows it is as accurate as Householder, and Householder QR of sub-blocks
followed by a QR of the stacked R's otherwise; or from the block's Gram matrix (``"gram"``: summed, squares
the condition number); or (``"auto"``) from the Cholesky factor of the block's Gram only when an error bound
computed from that Gram is below ``tol``, and by QR otherwise.

>>> import numpy as np
>>> A = np.random.default_rng(0).normal(size=(1000, 3))
>>> whole = block_moments(A[:, :2], A[:, 2], None, center=True, method="tsqr")
>>> parts = combine_moments([block_moments(A[i:i + 300, :2], A[i:i + 300, 2], None, center=True,
...                                        method="tsqr") for i in range(0, 1000, 300)])
>>> bool(np.allclose(np.abs(whole.r), np.abs(parts.r)) and np.allclose(whole.mean, parts.mean))
True
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.linalg import solve_triangular
from scipy.linalg.blas import dtrmm

from ._checks import assert_finite, checked_weights
from ._math import small_blas

#: Unit roundoff of float64.
EPS = np.finfo(np.float64).eps / 2
#: Rows per sub-block: small enough to stay in cache, large enough to amortise LAPACK calls.
SUB_ROWS = 4000
#: Largest Gram error bound (see ``gram_error_bound``) at which CholeskyQR2 is used: its preconditioned
#: ``Q1`` then has a condition number within 1e-3 of 1. Beyond it (cond(A) above ~3e6), Householder.
CHOLQR2_TOL = 1e-3


class Moments(NamedTuple):
    """Sufficient statistics of a set of rows, in R-factor (or Gram) form."""

    n: int  # rows
    weight: float  # sum of the sample weights (= n without weights)
    mean: np.ndarray  # (p,) weighted column means (zeros when not centering)
    r: np.ndarray  # (p, p) upper-triangular R of the centered, sqrt(w)-scaled columns; Gram if gram=True
    gram: bool  # r holds the centered Gram matrix (method="gram")
    n_gram: int  # blocks whose R came from their Gram (method="auto")
    n_blocks: int
    amp: float  # largest cancellation amplification among Gram blocks (0 if none)


def block_moments(
    X: np.ndarray,
    y: np.ndarray | None,
    w: np.ndarray | None,
    *,
    center: bool,
    method: str,
    tol: float = 1e-10,
    scale: bool = True,
    chunk_index: int = -1,
    row_start: int = 0,
    gram: np.ndarray | None = None,
) -> Moments:
    """Moments of one block of rows ``[X | y]`` (``y`` optional), rows weighted by ``w`` (optional).

    ``gram``: the raw Gram of ``[X | y | 1]`` when the caller formed it already (float64, unweighted rows), so
    that it is not formed twice; ``X`` / ``y`` are then read only where a QR is needed.

    NaN / inf are detected from the column sums the mean needs anyway (for float64 rows without weights
    they come out of the same BLAS pass as the Gram), so the check costs nothing, and are reported with
    the chunk, row and column. ``scale`` says whether the accuracy that ``auto`` guards is
    invariant to column scaling (regression) or not (PCA).
    """
    if gram is None:
        X = np.asarray(X)
        fast = X.dtype == np.float64 and w is None
        X = X.astype(np.float64, copy=False)
        if y is not None:
            y = np.asarray(y, dtype=np.float64).reshape(-1)
    else:
        fast = True  # float64 rows, converted below only if a QR needs them
    n, d = X.shape
    if w is not None:
        w = checked_weights(w, chunk_index, row_start)
    p = d + (y is not None)
    if fast:  # one BLAS pass gives the raw Gram and the column sums; centered afterwards
        A = None
        G_aug = _raw_gram(X, y) if gram is None else gram
        G, sums = G_aug[:p, :p], G_aug[p, :p]
    else:
        sums = np.empty(p)
        sums[:d] = X.sum(axis=0) if w is None else w @ X
        if y is not None:
            sums[d] = y.sum() if w is None else w @ y
    weight = float(n if w is None else w.sum())
    if not np.all(np.isfinite(sums[:d])):
        assert_finite(X, "X", chunk_index, row_start)
    if y is not None and not np.isfinite(sums[d]):
        assert_finite(y, "y", chunk_index, row_start)
    mean = sums / weight if center and weight > 0 else np.zeros(p)
    if fast:
        shift = weight * np.outer(mean, mean)
        amp_unit = _amplification(G - shift, shift, True)
        amp = amp_unit if scale else _amplification(G - shift, shift, False)
        G = G - shift
    else:
        A = _centered(X, y, w, mean)
        G = A.T @ A
        amp = amp_unit = 1.0
    if method == "gram":
        if fast and amp_unit * np.finfo(np.float64).eps > tol:  # summing then centering lost digits: center first
            X = np.asarray(X, dtype=np.float64)
            A = _centered(X, None if y is None else np.asarray(y, dtype=np.float64).reshape(-1), w, mean)
            G, amp = A.T @ A, 1.0
        return Moments(n, weight, mean, G, True, 1, 1, amp)
    if method == "auto":
        r = _cholesky_r(G, amp, tol, scale)
        if r is not None:
            return Moments(n, weight, mean, r, False, 1, 1, amp)
    X, y = np.asarray(X, dtype=np.float64), None if y is None else np.asarray(y, dtype=np.float64).reshape(-1)
    r = _cholqr2_r(X, y, mean, G, amp_unit, A)
    if r is None:
        r = _tsqr_r(X, y, w, mean)
    return Moments(n, weight, mean, r, False, 0, 1, 0.0)


def combine_moments(parts: list[Moments]) -> Moments:
    """Exact combination of the moments of disjoint row sets (deterministic in the order given)."""
    parts = [m for m in parts if m.n > 0]
    first = parts[0]
    weight = sum(m.weight for m in parts)
    mean = sum(m.weight * m.mean for m in parts) / weight if weight > 0 else first.mean
    gram = first.gram
    if gram:
        r = sum(m.r for m in parts)
        for m in parts:
            delta = m.mean - mean
            r = r + m.weight * np.outer(delta, delta)
    else:
        rows = [m.r for m in parts] + [np.sqrt(m.weight) * (m.mean - mean)[None, :] for m in parts]
        r = qr_r(np.concatenate(rows))
    return Moments(
        n=sum(m.n for m in parts),
        weight=weight,
        mean=mean,
        r=r,
        gram=gram,
        n_gram=sum(m.n_gram for m in parts),
        n_blocks=sum(m.n_blocks for m in parts),
        amp=max(m.amp for m in parts),
    )


def qr_r(A: np.ndarray) -> np.ndarray:
    """The (p, p) R factor of ``A`` (m, p), zero-padded when m < p."""
    p = A.shape[1]
    with small_blas(A.size):
        r = np.linalg.qr(A, mode="r")
    if r.shape[0] < p:
        r = np.vstack([r, np.zeros((p - r.shape[0], p))])
    return r


def gram_error_bound(G: np.ndarray, amp: float, scale: bool) -> float:
    """Relative error bound ``u * amp * trace(S G S) / lambda_min(S G S)`` of results computed from ``G``.

    ``S`` scales the columns to unit norm when ``scale`` (the regression solution does not depend on
    column scales), else to the largest column (PCA variances do). ``amp`` >= 1 accounts for cancellation
    when the Gram was centered after it was summed. Returns inf when ``G`` is not positive definite.
    """
    diag = np.diag(G)
    if not np.all(diag > 0):
        return np.inf
    s = 1 / np.sqrt(diag) if scale else np.full(len(diag), 1 / np.sqrt(diag.max()))
    ev = np.linalg.eigvalsh(G * np.outer(s, s))
    if ev[0] <= 0:
        return np.inf
    return float(EPS * max(amp, 1.0) * ev.sum() / ev[0])


def _cholesky_r(G: np.ndarray, amp: float, tol: float, scale: bool) -> np.ndarray | None:
    if gram_error_bound(G, amp, scale) > tol:
        return None
    try:
        return np.linalg.cholesky(G).T
    except np.linalg.LinAlgError:
        return None


def _cholqr2_r(X: np.ndarray, y: np.ndarray | None, mean: np.ndarray, G: np.ndarray, amp: float,
               A: np.ndarray | None) -> np.ndarray | None:
    """R of the centered block by CholeskyQR2, or None where it would not be as accurate as Householder.

    ``R1`` from the block's Gram preconditions the block: ``Q1 = A R1^-1`` has a condition number near 1
    as long as the Gram's own error bound is small, and the Cholesky factor ``R2`` of ``Q1'Q1`` then makes
    ``R2 R1`` a QR-accurate R (Yamamoto et al. 2015). Two BLAS-3 passes over cache-sized sub-blocks cost
    less than Householder's BLAS-2 sweeps; ``A`` is the already centered (weighted) block, if there is one.
    """
    if gram_error_bound(G, amp, True) > CHOLQR2_TOL:
        return None
    try:
        r1 = np.linalg.cholesky(G).T
    except np.linalg.LinAlgError:
        return None
    r1_inv = solve_triangular(r1, np.eye(len(G)))
    n, p = X.shape[0], len(mean)
    step = max(SUB_ROWS, 4 * p)
    buf = np.empty((min(n, step), p))
    acc = np.zeros((p, p))
    for i in range(0, n, step):
        e = min(n, i + step)
        sub = buf[:e - i]
        if A is not None:
            np.copyto(sub, A[i:e])
        else:
            _centered(X[i:e], None if y is None else y[i:e], None, mean, sub)
        # Q1' = R1^-T sub', in place (TRMM: half the flops of a GEMM with the triangular inverse)
        qt = dtrmm(1.0, r1_inv, sub.T, side=0, lower=0, trans_a=1, overwrite_b=1)
        acc += qt @ qt.T
    try:
        return np.linalg.cholesky(acc).T @ r1
    except np.linalg.LinAlgError:
        return None


def _amplification(Gc: np.ndarray, shift: np.ndarray, scale: bool) -> float:
    """How much centering a summed Gram amplifies its rounding errors: trace(S (Gc + shift) S) / trace(S Gc S)."""
    dc, ds = np.diag(Gc), np.diag(shift)
    if not np.all(dc > 0):
        return np.inf
    if scale:
        return float(np.sum((dc + ds) / dc) / len(dc))
    return float(np.sum(dc + ds) / np.sum(dc))


def _raw_gram(X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    """Gram of ``[X | y | 1]``: X'X, X'y, y'y, the column sums (last row) and n, in one BLAS pass.

    Sub-blocks of ``SUB_ROWS`` rows are copied into one cache-resident buffer that carries ``y`` and
    the ones column, so the block is read from memory once (faster than X'X, X'y and the sums as
    separate passes; benchmarks/README.md, "Regression").
    """
    n, d = X.shape
    q = d + (y is not None) + 1
    step = max(SUB_ROWS, 4 * q)
    buf = np.empty((min(n, step), q))
    buf[:, -1] = 1.0
    G = np.zeros((q, q))
    for i in range(0, n, step):
        e = min(n, i + step)
        b = buf[:e - i]
        b[:, :d] = X[i:e]
        if y is not None:
            b[:, d] = y[i:e]
        G += b.T @ b
    return G


def _centered(X: np.ndarray, y: np.ndarray | None, w: np.ndarray | None, mean: np.ndarray,
              out: np.ndarray | None = None) -> np.ndarray:
    d = X.shape[1]
    A = np.empty((X.shape[0], len(mean))) if out is None else out
    np.subtract(X, mean[:d], out=A[:, :d])
    if y is not None:
        np.subtract(y, mean[d], out=A[:, d])
    if w is not None:
        A *= np.sqrt(w)[:, None]
    return A


def _tsqr_r(X: np.ndarray, y: np.ndarray | None, w: np.ndarray | None, mean: np.ndarray) -> np.ndarray:
    """R of the centered block by Householder QR of cache-sized sub-blocks, then QR of their stacked R's."""
    n, p = X.shape[0], len(mean)
    step = max(SUB_ROWS, 4 * p)
    if n <= step:
        return qr_r(_centered(X, y, w, mean))
    k = -(-n // step)
    stacked = np.empty((k * p, p))
    buf = np.empty((step, p))
    for j in range(k):
        i, e = j * step, min(n, (j + 1) * step)
        A = _centered(X[i:e], None if y is None else y[i:e], None if w is None else w[i:e], mean, buf[:e - i])
        stacked[j * p:(j + 1) * p] = qr_r(A)
    return qr_r(stacked)


class RangeMoments(NamedTuple):
    """One pass of the randomized range finder for ``Y = Xc Z`` (``Xc``: X centered by its own mean)."""

    n: int
    mean: np.ndarray  # (d,) column means of X
    ss: np.ndarray  # (d,) centered sums of squares of X (for the total variance)
    mz: np.ndarray  # (l,) mean @ Z
    c: np.ndarray  # (d, l) Xc' Y
    r: np.ndarray  # (l, l) R factor of Y


def block_range(X: np.ndarray, Z: np.ndarray, *, chunk_index: int = -1, row_start: int = 0) -> RangeMoments:
    """For one block centered by its own mean: ``Y = Xc Z``, its R factor, ``Xc' Y`` and the moments of X. A CSR
    block is centred implicitly (``Xc Z = X Z - 1 m'Z``, ``Xc' Y = X' Y - m 1'Y``): it stays sparse."""
    if hasattr(X, "indptr"):
        return _block_range_csr(X, Z, chunk_index, row_start)
    X = np.asarray(X, dtype=np.float64)
    sx = X.sum(axis=0)
    if not np.all(np.isfinite(sx)):
        assert_finite(X, "X", chunk_index, row_start)
    mean = sx / len(X)
    A = X - mean
    Y = A @ Z
    return RangeMoments(len(X), mean, np.einsum("ij,ij->j", A, A), mean @ Z, A.T @ Y,
                        _tsqr_r(Y, None, None, np.zeros(Z.shape[1])))


def _block_range_csr(X: object, Z: np.ndarray, chunk_index: int, row_start: int) -> RangeMoments:
    from ._checks import assert_finite_rows, csr_block

    X = csr_block(X)
    assert_finite_rows(X, "X", chunk_index, row_start)
    n, p = X.shape
    mean = np.bincount(X.indices, weights=X.data, minlength=p) / n
    mz = mean @ Z
    Y = np.asarray(X @ Z) - mz
    ss = np.bincount(X.indices, weights=X.data * X.data, minlength=p) - n * mean**2
    C = np.asarray(X.T @ Y) - np.outer(mean, Y.sum(axis=0))
    return RangeMoments(n, mean, np.maximum(ss, 0.0), mz, C, _tsqr_r(Y, None, None, np.zeros(Z.shape[1])))


def combine_range(parts: list[RangeMoments]) -> RangeMoments:
    """Exact combination (Chan et al.) of the range moments of disjoint row sets, in the order given."""
    n = sum(p.n for p in parts)
    mean = sum(p.n * p.mean for p in parts) / n
    mz = sum(p.n * p.mz for p in parts) / n
    c = sum(p.c + p.n * np.outer(p.mean - mean, p.mz - mz) for p in parts)
    ss = sum(p.ss + p.n * (p.mean - mean) ** 2 for p in parts)
    r = qr_r(np.concatenate([p.r for p in parts] + [np.sqrt(p.n) * (p.mz - mz)[None, :] for p in parts]))
    return RangeMoments(n, mean, ss, mz, c, r)
