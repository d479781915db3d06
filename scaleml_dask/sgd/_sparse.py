"""SGD kernels on CSR blocks: the same mini-batches, gradients and steps as ``_kernels``, touching only the
non-zeros of each row.

A mini-batch's gradient costs O(nnz of its rows). A step of plain SGD (``constant`` / ``invscaling`` rates) with
the L2 penalty or none costs O(nnz) too, by the lazy-regularisation trick: the coefficients are kept as
``s · V`` with one scale ``s`` per block of work; the penalty's shrink ``w ← (1 − η α) w`` of every coefficient
is the update ``s ← s (1 − η α)``, and the data's step touches only the columns the mini-batch holds,
``V_j ← V_j − η G_j / s``. ``s`` is folded back into ``V`` when it gets small (so nothing underflows) and at the
end. The L1 penalty and the AdaGrad / Adam rules change every coefficient at every step (their moments decay
everywhere), so with them a step updates the whole weight vector, as the dense kernel does: O(p) a step.

The arithmetic is the dense kernels' up to the order of floating-point sums: fits on a CSR block equal fits on
the same block densified to ~1e-12 (``tests/test_sparse_learners.py``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..preprocessing._kernels import fill_row
from ._kernels import _update, loss_gradient, ring_row

#: The scale of the lazily regularised weights is folded back into them below this.
_MIN_SCALE = 1e-9


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def grad_batch_csr(Wt, data, indices, indptr, T, lo, hi, offset, start, n_train, loss_code, Gt,
                   scale):  # pragma: no cover - compiled
    """``_kernels._grad_batch`` on a CSR block: add the summed gradient of ring rows ``lo..hi-1`` to ``Gt``, with
    the coefficients ``scale * Wt[:, :-1]``. Returns False if a margin was not finite."""
    n = indptr.shape[0] - 1
    d = Wt.shape[1] - 1
    finite = True
    for v in range(lo, hi):
        i = ring_row(v, offset, start, n_train, n)
        for c in range(Wt.shape[0]):
            z = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                z += data[k] * Wt[c, indices[k]]
            z = scale * z + Wt[c, d]
            if not math.isfinite(z):
                finite = False
            g = loss_gradient(z, T[i, c], loss_code)
            if g != 0.0:
                for k in range(indptr[i], indptr[i + 1]):
                    Gt[c, indices[k]] += g * data[k]
                Gt[c, d] += g
    return finite


@numba.njit(cache=True, nogil=True)
def lazy_steps(schedule_code, penalty_code):  # pragma: no cover - compiled
    """Whether a rule's steps are the lazy O(nnz) ones (plain SGD, the L2 penalty or none)."""
    return schedule_code <= 1 and penalty_code != 2


@numba.njit(cache=True, nogil=True)
def _gradient_buffer(Wt, schedule_code, penalty_code):  # pragma: no cover - compiled
    """The dense gradient a rule that updates every weight sums into (nothing for the lazy rules)."""
    return np.zeros((0, 0) if lazy_steps(schedule_code, penalty_code) else (Wt.shape[0], Wt.shape[1]))


@numba.njit(cache=True, nogil=True)
def local_kernel_csr(Wt, data, indices, indptr, T, start, n_train, offsets, orders, batch_size, loss_code,
                     fit_intercept, penalty_code, alpha, schedule_code, eta0, power_t, t0, m, v,
                     g2):  # pragma: no cover - compiled
    """``_kernels._local_kernel`` on a CSR block (same epochs, mini-batches and steps). Plain SGD with the L2
    penalty or none takes O(nnz) steps (the module's lazy regularisation); other rules update every weight.
    ``Wt`` may be a transposed view (of weights laid out by feature), written in place."""
    return _local_steps_csr(Wt, data, indices, indptr, T, start, n_train, offsets, orders, batch_size, loss_code,
                            fit_intercept, penalty_code, alpha, schedule_code, eta0, power_t, t0, m, v, g2,
                            _gradient_buffer(Wt, schedule_code, penalty_code))


@numba.njit(cache=True, nogil=True)
def _local_steps_csr(Wt, data, indices, indptr, T, start, n_train, offsets, orders, batch_size, loss_code,
                     fit_intercept, penalty_code, alpha, schedule_code, eta0, power_t, t0, m, v, g2,
                     Gt):  # pragma: no cover - compiled
    """``local_kernel_csr`` with the gradient buffer given (``_gradient_buffer``), for a caller that steps
    many mini-batches of its own."""
    n = indptr.shape[0] - 1
    n_out, d = Wt.shape[0], Wt.shape[1] - 1
    lazy = lazy_steps(schedule_code, penalty_code)
    G_rows = np.empty((batch_size, n_out))
    scale = 1.0
    t = t0
    finite = True
    for e in range(orders.shape[0]):
        for b in range(orders.shape[1]):
            lo = orders[e, b] * batch_size
            hi = min(lo + batch_size, n_train)
            t += 1.0
            if lazy:
                rate = eta0 / t**power_t if schedule_code == 1 else eta0
                shrink = 1.0 - rate * alpha if penalty_code == 1 else 1.0
                # margins of the whole mini-batch at the weights before the step
                for u in range(lo, hi):
                    i = ring_row(u, offsets[e], start, n_train, n)
                    for c in range(n_out):
                        z = 0.0
                        for k in range(indptr[i], indptr[i + 1]):
                            z += data[k] * Wt[c, indices[k]]
                        z = scale * z + Wt[c, d]
                        if e == 0 and not math.isfinite(z):
                            finite = False
                        G_rows[u - lo, c] = loss_gradient(z, T[i, c], loss_code)
                if shrink <= 0.0 or scale * shrink < _MIN_SCALE:  # fold the scale back before it vanishes
                    for c in range(n_out):
                        for j in range(d):
                            Wt[c, j] *= scale
                    scale = 1.0
                if shrink <= 0.0:  # a step past zero: the dense update, exactly
                    for c in range(n_out):
                        for j in range(d):
                            Wt[c, j] *= shrink
                else:
                    scale *= shrink
                step = rate / (hi - lo)
                for u in range(lo, hi):
                    i = ring_row(u, offsets[e], start, n_train, n)
                    for c in range(n_out):
                        g = G_rows[u - lo, c]
                        if g != 0.0:
                            f = step * g / (scale if shrink > 0.0 else 1.0)
                            for k in range(indptr[i], indptr[i + 1]):
                                Wt[c, indices[k]] -= f * data[k]
                            if fit_intercept:
                                Wt[c, d] -= step * g
            else:
                ok = grad_batch_csr(Wt, data, indices, indptr, T, lo, hi, offsets[e], start, n_train, loss_code,
                                    Gt, 1.0)
                if e == 0 and not ok:
                    finite = False
                Gt /= hi - lo
                if not fit_intercept:
                    Gt[:, -1] = 0.0
                _update(Wt, Gt, penalty_code, alpha, schedule_code, eta0, power_t, t, m, v, g2)
                Gt[:] = 0.0
    if scale != 1.0:
        for c in range(n_out):
            for j in range(d):
                Wt[c, j] *= scale
    return finite


@numba.njit(cache=True, nogil=True)
def local_kernel_table(Wt, X, c, a, b, missing, pos, H, offset, value, order, T, start, n_train, offsets, orders,
                       batch_size, loss_code, fit_intercept, penalty_code, alpha, schedule_code, eta0, power_t, t0, m,
                       v, g2):  # pragma: no cover - compiled
    """``local_kernel_csr`` on a table chunk given as its parts (``preprocessing._base.TableBlock``): each
    mini-batch's rows are made in a small buffer (``fill_row``: imputed and scaled numbers, one-hot offsets, only
    the non-zeros) and stepped by ``local_kernel_csr`` — no CSR copy of the chunk is written. Equal to the CSR
    path up to the rounding of folding the lazy scale back after every step (``tests/test_pipeline_estimators``)."""
    n = X.shape[1] if X.shape[0] else H.shape[1]
    width = X.shape[0] + H.shape[0]
    data = np.empty(batch_size * width)
    indices = np.empty(batch_size * width, dtype=np.int32)
    indptr = np.empty(batch_size + 1, dtype=np.int64)
    Tb = np.empty((batch_size, T.shape[1]))
    one_epoch, one_batch = np.zeros(1, dtype=np.int64), np.zeros((1, 1), dtype=np.int64)
    Gt = _gradient_buffer(Wt, schedule_code, penalty_code)  # one for every mini-batch
    t = t0
    finite = True
    indptr[0] = 0
    for e in range(orders.shape[0]):
        for step in range(orders.shape[1]):
            lo = orders[e, step] * batch_size
            hi = min(lo + batch_size, n_train)
            nnz = 0
            for u in range(lo, hi):
                i = ring_row(u, offsets[e], start, n_train, n)
                nnz = fill_row(i, X, c, a, b, missing, pos, H, offset, value, order, data, indices, nnz)
                indptr[u - lo + 1] = nnz
                Tb[u - lo] = T[i]
            rows = hi - lo
            ok = _local_steps_csr(Wt, data, indices, indptr[:rows + 1], Tb[:rows], 0, rows, one_epoch, one_batch,
                                  rows, loss_code, fit_intercept, penalty_code, alpha, schedule_code, eta0, power_t,
                                  t, m, v, g2, Gt)
            t += 1.0
            if e == 0 and not ok:
                finite = False
    return finite


def csr_parts(X: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data float64, indices int32, indptr int32/int64) of a canonical CSR block, converted only if needed."""
    data = np.ascontiguousarray(X.data, dtype=np.float64)
    indices = np.ascontiguousarray(X.indices, dtype=np.int32)
    return data, indices, np.ascontiguousarray(X.indptr)
