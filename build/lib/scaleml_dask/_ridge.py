"""Ridge regression where ``p × p`` is out of reach: the dual (``n × n``) for wide dense data, conjugate gradients
for sparse (or very large) data. Both give scikit-learn's ``Ridge`` solution (intercept unpenalised, weights as
there); ``linear.Ridge`` picks them with ``solver="dual" | "cg"`` (and ``"auto"``).

- **dual**: ``w = Xc' a`` with ``(Xc Xc' + α I) a = yc`` — one pass over column panels for the Gram of the rows
  (``_dual``), a Cholesky solve of ``n × n``, one more pass for ``Xc' a``.
- **cg**: conjugate gradients on ``(Xc' S Xc + α I) w = Xc' S yc``, Jacobi-preconditioned, each iteration one pass:
  every chunk gives ``X_b' S_b (X_b v − 1 m'v)`` (its non-zeros only, for CSR), summed by a fixed tree (several
  chunks folded per task when ``p`` is large, ``passes.fold_row_chunks``). ``Xc`` is never formed: the centring is
  implicit, so sparse data stay sparse. The first pass gives the means, the diagonal and the right-hand side.

>>> import numpy as np, scipy.sparse as sp
>>> from scaleml_dask.validation import check_X_y
>>> X = sp.random(200, 30, density=0.2, format="csr", random_state=0); y = X @ np.arange(30.0) + 1.0
>>> from sklearn.linear_model import Ridge as SkRidge
>>> coef, intercept, n_iter = ridge_cg(*check_X_y(X, y, accept_sparse=True), None, alpha=1.0, tol=1e-12,
...                                    max_iter=500)
>>> ref = SkRidge(alpha=1.0, solver="sparse_cg", tol=1e-12).fit(X, y)
>>> bool(np.allclose(coef, ref.coef_, atol=1e-8) and np.isclose(intercept, ref.intercept_))
True
"""

from __future__ import annotations

from typing import Any, NamedTuple

import dask
import numpy as np

from ._checks import assert_finite_rows, checked_weights
from .passes import fold_row_chunks, reduce_here


class RidgeMoments(NamedTuple):
    """Weighted sums of one pass: Σs, Σs·x, Σs·x², Σs·y, Σs·x·y, Σs·y² (x: p-vectors)."""

    sw: float
    sx: np.ndarray
    sxx: np.ndarray
    sy: float
    sxy: np.ndarray
    syy: float


def _rows_weights(X: Any, w: Any, chunk_index: int, row_start: int) -> tuple[Any, np.ndarray]:
    if hasattr(X, "indptr"):
        from ._checks import csr_block

        X = csr_block(X)
    else:
        X = np.asarray(X, dtype=np.float64)
    assert_finite_rows(X, "X", chunk_index, row_start)
    s = np.ones(X.shape[0]) if w is None else checked_weights(w, chunk_index, row_start)
    return X, s


def _t_times(X: Any, u: np.ndarray, out: np.ndarray) -> None:
    """``out += X' u``."""
    if hasattr(X, "indptr"):
        out += np.bincount(X.indices, weights=X.data * np.repeat(u, np.diff(X.indptr)), minlength=len(out))
    else:
        out += X.T @ u


def moments_block(X: Any, y: np.ndarray, w: Any, *, acc: RidgeMoments | None = None, chunk_index: int = -1,
                  row_start: int = 0) -> RidgeMoments:
    """The weighted sums of one block, added to ``acc``."""
    X, s = _rows_weights(X, w, chunk_index, row_start)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if not np.isfinite(y).all():
        from ._checks import assert_finite

        assert_finite(y, "y", chunk_index, row_start)
    p = X.shape[1]
    if acc is None:
        acc = RidgeMoments(0.0, np.zeros(p), np.zeros(p), 0.0, np.zeros(p), 0.0)
    sq = X.multiply(X) if hasattr(X, "indptr") else X * X
    _t_times(X, s, acc.sx)
    _t_times(sq, s, acc.sxx)
    _t_times(X, s * y, acc.sxy)
    return RidgeMoments(acc.sw + float(s.sum()), acc.sx, acc.sxx, acc.sy + float(s @ y), acc.sxy,
                        acc.syy + float(s @ (y * y)))


def combine_moments(parts: list[RidgeMoments]) -> RidgeMoments:
    return RidgeMoments(sum(p.sw for p in parts), sum(p.sx for p in parts), sum(p.sxx for p in parts),
                        sum(p.sy for p in parts), sum(p.sxy for p in parts), sum(p.syy for p in parts))


def normal_block(X: Any, w: Any, *, v: np.ndarray, mv: float, acc: np.ndarray | None = None, chunk_index: int = -1,
                 row_start: int = 0) -> np.ndarray:
    """``X_b' S_b (X_b v − m'v)`` of one block, added to ``acc`` (the centring's other term, ``−m Σ S_b(...)``, is
    applied once after the pass: the last entry of the result carries ``Σ S_b (X_b v − m'v)``)."""
    X, s = _rows_weights(X, w, chunk_index, row_start)
    u = s * (np.asarray(X @ v).reshape(-1) - mv)
    out = np.zeros(X.shape[1] + 1) if acc is None else acc
    _t_times(X, u, out[:-1])
    out[-1] += u.sum()
    return out


def _sum(parts: list[np.ndarray]) -> np.ndarray:
    out = parts[0].copy()
    for p in parts[1:]:
        out += p
    return out


def _group(p: int, rows: int, sparse: bool) -> int:
    """Chunks a CG task folds: enough that its p-sized sum is small beside what it reads."""
    chunk_bytes = 64 * 2**20 if sparse else rows * p * 8
    return max(1, int(np.ceil(4 * p * 8 / max(chunk_bytes, 1))))


def ridge_cg(dX: Any, dy: Any, dw: Any, *, alpha: float, tol: float, max_iter: int, fit_intercept: bool = True
             ) -> tuple[np.ndarray, float, int]:
    """Ridge by Jacobi-preconditioned conjugate gradients, one pass per iteration (module docstring).
    Returns ``(coef, intercept, iterations)``; stops when the residual is below ``tol`` times the right-hand side."""
    n, p = dX.shape
    sparse = not isinstance(dX._meta, np.ndarray)
    group = _group(p, max(dX.chunks[0]), sparse)
    m = reduce_here(fold_row_chunks(moments_block, dX, dy, dw, group=group), combine_moments, split_every=4)
    if not m.sw > 0:
        raise ValueError("sample_weight: all weights are zero; at least one must be positive")
    mean = m.sx / m.sw if fit_intercept else np.zeros(p)
    ybar = m.sy / m.sw if fit_intercept else 0.0
    b = m.sxy - ybar * m.sx if fit_intercept else m.sxy.copy()
    diag = np.maximum(m.sxx - mean**2 * m.sw, 0.0) + alpha
    diag[diag <= 0] = 1.0

    def apply(v: np.ndarray) -> np.ndarray:
        parts = fold_row_chunks(normal_block, dX, dw, group=group, v=dask.delayed(v, pure=True),
                                mv=float(mean @ v))
        out = reduce_here(parts, _sum, split_every=4)
        return out[:-1] - mean * out[-1] + alpha * v

    w = np.zeros(p)
    r = b.copy()
    norm_b = float(np.linalg.norm(b))
    if norm_b == 0:
        return w, ybar, 0
    z = r / diag
    d = z.copy()
    rz = float(r @ z)
    it = 0
    while it < max_iter and np.linalg.norm(r) > tol * norm_b:
        Ad = apply(d)
        step = rz / float(d @ Ad)
        w += step * d
        r -= step * Ad
        z = r / diag
        rz_new = float(r @ z)
        d = z + (rz_new / rz) * d
        rz = rz_new
        it += 1
    return w, float(ybar - mean @ w), it


def ridge_dual(dX: Any, dy: Any, weights: np.ndarray | None, *, alpha: float, fit_intercept: bool = True
               ) -> tuple[np.ndarray, float]:
    """Ridge of wide dense data from the ``n × n`` Gram of the centred rows (module docstring)."""
    from scipy import linalg

    from ._dual import gram_of_rows, map_panels

    if not alpha > 0:
        raise ValueError("solver='dual' needs alpha > 0 (with more columns than rows, alpha=0 has no unique "
                         "solution)")
    y = np.asarray(dy.compute() if hasattr(dy, "compute") else dy, dtype=np.float64)
    if not np.isfinite(y).all():
        from ._checks import assert_finite

        assert_finite(y, "y", 0, 0)
    s = np.ones(len(y)) if weights is None else checked_weights(weights, 0, 0)
    if not s.sum() > 0:
        raise ValueError("sample_weight: all weights are zero; at least one must be positive")
    g = gram_of_rows(dX, weights=weights, center=fit_intercept)
    ybar = float(s @ y / s.sum()) if fit_intercept else 0.0
    yc = np.sqrt(s) * (y - ybar)
    K = g.K
    K[np.diag_indices_from(K)] += alpha
    a = linalg.cho_solve(linalg.cho_factor(K, lower=True), yc)
    coef = map_panels(dX, a[:, None], weights=weights, center=fit_intercept)[:, 0]
    mean = g.mean
    return coef, (ybar - float(mean @ coef)) if fit_intercept else 0.0

