"""t-SNE gradient and optimisation: exact sparse attraction + FFT-interpolated repulsion (numba).

The KL gradient of a 2-d embedding Y under the joint input similarities P (CSR, sums to 1) is,
up to the constant factor 4 that the learning rate absorbs (as in FIt-SNE and openTSNE),

    g_i = a * sum_j p_ij w_ij (y_i - y_j)  -  (1/Z) sum_j w_ij^2 (y_i - y_j),   w_ij = 1/(1 + |y_i - y_j|^2)

with exaggeration ``a`` and ``Z = sum_{i != j} w_ij``. The attraction loops over the nonzeros of P.
The repulsion and Z come from potentials of the charges ``(1, y1, y2)``: they are spread onto a
square grid of Lagrange interpolation nodes (p per box), convolved by FFT (the node grid is
equispaced, so the kernels are Toeplitz) with ``w^2`` and, for the charge 1 only, with ``w``, and
gathered back at the points (Linderman et al. 2019, FIt-SNE). Then

    sum_j w_ij^2 (y_i - y_j) = y_i phi_0 - (phi_1, phi_2),     Z = sum_i psi_i - n,

where ``psi = w * 1``. Taking Z from its own convolution (rather than FIt-SNE's four charges
``1, y, |y|^2``, whose combination cancels catastrophically far from the origin) costs one FFT
less and keeps single precision accurate, so grids and FFTs are float32.

Speed comes from doing each step once, in parallel, in place: spreading into per-thread grids,
one batched real FFT with ``workers``, a fused gather + attraction pass, and a fused update pass
(gains, momentum, step clipping, position update, and the mean/bounds the next iteration needs).
Memory is O(n + nnz(P) + grid); no n x n array exists.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> Y = rng.normal(size=(50, 2))
>>> indptr, idx, val = np.arange(0, 51), (np.arange(50) + 1) % 50, np.full(50, 1 / 50, np.float32)
>>> g, Z = gradient(Y, (indptr, idx, val))
>>> g.shape
(50, 2)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft

CSR = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class GridParams:
    """Interpolation settings of the repulsive term (defaults as in FIt-SNE / openTSNE)."""

    n_interpolation_points: int = 3
    min_num_intervals: int = 50
    ints_in_interval: float = 1.0
    max_num_intervals: int = 1000


@numba.njit(inline="always")
def _weights(u: float, p: int, out: np.ndarray) -> None:
    """Lagrange weights at nodes (m + 1/2)/p, m < p, for a point at relative position u in [0, 1]."""
    for m in range(p):
        tm = (m + 0.5) / p
        w = 1.0
        for q in range(p):
            if q != m:
                tq = (q + 0.5) / p
                w *= (u - tq) / (tm - tq)
        out[m] = w


@numba.njit(inline="always")
def _locate(y: float, lo: float, box_width: float, n_boxes: int) -> tuple[int, float]:
    t = (y - lo) / box_width
    b = min(int(t), n_boxes - 1)
    return b, t - b


@numba.njit(parallel=True, cache=True)
def _spread(Y, shift, lo, box_width, n_boxes, p, grids):
    """Subtract ``shift`` from Y in place, then spread the charges (1, y1, y2) of each point onto
    ``grids[thread]`` (T, 3, N, N)."""
    n = Y.shape[0]
    T = grids.shape[0]
    for t in numba.prange(T):
        wx = np.empty(p)
        wy = np.empty(p)
        g = grids[t]
        g[:] = 0.0
        for i in range(t * n // T, (t + 1) * n // T):
            y0 = Y[i, 0] - shift[0]
            y1 = Y[i, 1] - shift[1]
            Y[i, 0] = y0
            Y[i, 1] = y1
            bx, ux = _locate(y0, lo, box_width, n_boxes)
            by, uy = _locate(y1, lo, box_width, n_boxes)
            _weights(ux, p, wx)
            _weights(uy, p, wy)
            for a in range(p):
                gx = bx * p + a
                for b in range(p):
                    gy = by * p + b
                    w = wx[a] * wy[b]
                    g[0, gx, gy] += w
                    g[1, gx, gy] += w * y0
                    g[2, gx, gy] += w * y1


@numba.njit(parallel=True, cache=True)
def _gather_attract(Y, pot, lo, box_width, n_boxes, p, indptr, indices, data, attr, rep, eval_kl, T):
    """Per point: the repulsive sums from the potentials and the exact attraction over P's row.

    Returns (Z, sum of p log w over the nonzeros of P when ``eval_kl``)."""
    n = Y.shape[0]
    z_parts = np.zeros(T)
    kl_parts = np.zeros(T)
    for t in numba.prange(T):
        wx = np.empty(p)
        wy = np.empty(p)
        z = 0.0
        kl = 0.0
        for i in range(t * n // T, (t + 1) * n // T):
            y0 = Y[i, 0]
            y1 = Y[i, 1]
            bx, ux = _locate(y0, lo, box_width, n_boxes)
            by, uy = _locate(y1, lo, box_width, n_boxes)
            _weights(ux, p, wx)
            _weights(uy, p, wy)
            f0 = 0.0
            f1 = 0.0
            f2 = 0.0
            f3 = 0.0
            for a in range(p):
                gx = bx * p + a
                for b in range(p):
                    gy = by * p + b
                    w = wx[a] * wy[b]
                    f0 += w * pot[0, gx, gy]
                    f1 += w * pot[1, gx, gy]
                    f2 += w * pot[2, gx, gy]
                    f3 += w * pot[3, gx, gy]
            rep[i, 0] = y0 * f0 - f1
            rep[i, 1] = y1 * f0 - f2
            z += f3
            a0 = 0.0
            a1 = 0.0
            for e in range(indptr[i], indptr[i + 1]):
                j = indices[e]
                d0 = y0 - Y[j, 0]
                d1 = y1 - Y[j, 1]
                w = 1.0 / (1.0 + d0 * d0 + d1 * d1)
                pw = data[e] * w
                a0 += pw * d0
                a1 += pw * d1
                if eval_kl:
                    kl += data[e] * math.log(w)
            attr[i, 0] = a0
            attr[i, 1] = a1
        z_parts[t] = z
        kl_parts[t] = kl
    return z_parts.sum() - n, kl_parts.sum()


@numba.njit(parallel=True, cache=True)
def _update(Y, attr, rep, inv_z, exaggeration, update, gains, learning_rate, momentum, min_gain,
            max_step, stats):
    """Gains, momentum, step clipping and position update; ``stats`` gets per-thread
    (sum y0, sum y1, min, max) for the next iteration's centring and grid."""
    n = Y.shape[0]
    T = stats.shape[0]
    for t in numba.prange(T):
        s0 = 0.0
        s1 = 0.0
        mn = np.inf
        mx = -np.inf
        for i in range(t * n // T, (t + 1) * n // T):
            norm = 0.0
            for d in range(2):
                g = exaggeration * attr[i, d] - rep[i, d] * inv_z
                u = update[i, d]
                if np.sign(g) != np.sign(u):
                    gains[i, d] += 0.2
                else:
                    gains[i, d] = gains[i, d] * 0.8 + min_gain
                u = momentum * u - learning_rate * gains[i, d] * g
                update[i, d] = u
                norm += u * u
            if max_step > 0.0 and norm > max_step * max_step:
                scale = max_step / math.sqrt(norm)
                update[i, 0] *= scale
                update[i, 1] *= scale
            y0 = Y[i, 0] + update[i, 0]
            y1 = Y[i, 1] + update[i, 1]
            Y[i, 0] = y0
            Y[i, 1] = y1
            s0 += y0
            s1 += y1
            mn = min(mn, y0, y1)
            mx = max(mx, y0, y1)
        stats[t, 0] = s0
        stats[t, 1] = s1
        stats[t, 2] = mn
        stats[t, 3] = mx


@numba.njit(parallel=True, cache=True)
def _p_log_p(data: np.ndarray) -> float:
    s = 0.0
    for e in numba.prange(data.shape[0]):
        if data[e] > 0:
            s += data[e] * math.log(data[e])
    return s


class _Repulsion:
    """Grid geometry, per-thread buffers and the FFT convolutions for one optimisation."""

    #: relative step of the box width below ``ints_in_interval``: kernels are reused between steps
    WIDTH_STEP = 1.01

    def __init__(self, params: GridParams, n_threads: int) -> None:
        self.params = params
        self.n_threads = n_threads
        self._grids = np.empty((0, 3, 0, 0), dtype=np.float32)
        self._kernel_key: tuple | None = None
        self._kernel_hat = np.empty((2, 0, 0), dtype=np.complex64)

    def layout(self, lo: float, hi: float) -> tuple[float, float, int]:
        """(grid origin, box width, boxes per side) for coordinates in [lo, hi].

        Boxes are ``ints_in_interval`` wide, or narrower (rounded up to a power of ``WIDTH_STEP``)
        while fewer than ``min_num_intervals`` would cover the span.
        """
        prm = self.params
        span = max(hi - lo, 1e-12) * (1 + 1e-9)
        width = float(prm.ints_in_interval)
        if span < prm.min_num_intervals * width:
            steps = math.ceil(math.log(span / (prm.min_num_intervals * width)) / math.log(self.WIDTH_STEP))
            width *= self.WIDTH_STEP ** steps
        n_boxes = max(int(prm.min_num_intervals), math.ceil(span / width))
        if n_boxes > prm.max_num_intervals:
            n_boxes = int(prm.max_num_intervals)
            width = span / n_boxes
        return lo - span * 5e-10, width, n_boxes

    def _kernels(self, M: int, h: float) -> np.ndarray:
        """Spectra of the circulant kernels ``w^2`` and ``w`` on an M x M node grid of spacing h."""
        if (M, h) != self._kernel_key:
            off = np.arange(M, dtype=np.float64)
            off = np.minimum(off, M - off) * h
            w = 1.0 / (1.0 + off[:, None] ** 2 + off[None, :] ** 2)
            kern = np.stack([w * w, w]).astype(np.float32)
            self._kernel_hat = scipy.fft.rfft2(kern, workers=self.n_threads)
            self._kernel_key = (M, h)
        return self._kernel_hat

    def spread_and_convolve(self, Y: np.ndarray, shift: np.ndarray, lo: float, width: float,
                            n_boxes: int) -> np.ndarray:
        """Centre Y by ``shift`` (in place) and return the potentials on the node grid (4, N, N):
        ``w^2`` convolved with the charges 1, y1, y2, and ``w`` with the charge 1."""
        p = self.params.n_interpolation_points
        N = n_boxes * p
        T = self.n_threads
        if self._grids.shape != (T, 3, N, N):
            self._grids = np.empty((T, 3, N, N), dtype=np.float32)
        _spread(Y, shift, lo, width, n_boxes, p, self._grids)
        charges = self._grids.sum(axis=0) if T > 1 else self._grids[0]
        M = scipy.fft.next_fast_len(2 * N - 1, real=True)
        kernel_hat = self._kernels(M, width / p)
        # the charges fill only the first N of M rows: transform rows, then columns
        spec = scipy.fft.fft(scipy.fft.rfft(charges, n=M, axis=2, workers=T), n=M, axis=1, workers=T,
                             overwrite_x=True)
        prod = np.empty((4,) + spec.shape[1:], dtype=spec.dtype)
        np.multiply(spec, kernel_hat[0], out=prod[:3])
        np.multiply(spec[0], kernel_hat[1], out=prod[3])
        # only the first N rows and columns of the result are needed
        rows = scipy.fft.ifft(prod, axis=1, workers=T, overwrite_x=True)[:, :N]
        return scipy.fft.irfft(rows, n=M, axis=2, workers=T)[:, :, :N]


def _bounds(Y: np.ndarray) -> tuple[np.ndarray, float, float]:
    mean = Y.mean(axis=0)
    return mean, float((Y - mean).min()), float((Y - mean).max())


def _evaluate(Y: np.ndarray, P: CSR, params: GridParams | None, n_threads: int | None, eval_kl: bool):
    """One full evaluation at a copy of ``Y``: (attraction, repulsion, Z, sum p log w)."""
    n_threads = n_threads or numba.get_num_threads()
    Y = np.array(Y, dtype=np.float64)
    mean, lo, hi = _bounds(Y)
    rep_model = _Repulsion(params or GridParams(), n_threads)
    origin, width, n_boxes = rep_model.layout(lo, hi)
    pot = rep_model.spread_and_convolve(Y, mean, origin, width, n_boxes)
    attr, rep = np.empty_like(Y), np.empty_like(Y)
    z, p_log_w = _gather_attract(Y, pot, origin, width, n_boxes, rep_model.params.n_interpolation_points,
                                 *P, attr, rep, eval_kl, n_threads)
    return attr, rep, z, p_log_w


def gradient(Y: np.ndarray, P: CSR, *, exaggeration: float = 1.0, params: GridParams | None = None,
             n_threads: int | None = None) -> tuple[np.ndarray, float]:
    """The t-SNE gradient (without the factor 4) at ``Y`` and the normaliser Z, by FFT interpolation.

    ``P`` is ``(indptr, indices, data)``. The true KL gradient is ``4 * g``.
    """
    attr, rep, z, _ = _evaluate(Y, P, params, n_threads, False)
    return exaggeration * attr - rep / z, z


def kl_divergence(Y: np.ndarray, P: CSR, *, params: GridParams | None = None,
                  n_threads: int | None = None) -> float:
    """KL(P || Q) of the embedding ``Y``, with Z from the FFT interpolation."""
    _, _, z, p_log_w = _evaluate(Y, P, params, n_threads, True)
    return float(_p_log_p(P[2]) - p_log_w + math.log(z))


@dataclass
class Phase:
    """One stage of gradient descent."""

    n_iter: int
    exaggeration: float
    learning_rate: float
    momentum: float


def optimize(
    Y: np.ndarray,
    P: CSR,
    phases: Sequence[Phase],
    *,
    params: GridParams | None = None,
    max_step_norm: float = 5.0,
    min_gain: float = 0.01,
    callbacks: Sequence[Callable[[int, float, np.ndarray], bool]] = (),
    callbacks_every_iters: int = 50,
    log: Callable[[str], None] | None = None,
    n_threads: int | None = None,
) -> tuple[np.ndarray, float, int]:
    """Run the phases of gradient descent on ``Y`` (n, 2) in place; returns (Y, KL, iterations).

    Every ``callbacks_every_iters`` iterations the KL divergence is computed (only then), logged,
    and passed with the iteration and embedding to each callback; a callback returning True stops
    the optimisation, and the embedding so far is returned.
    """
    n_threads = n_threads or numba.get_num_threads()
    indptr, indices, data = P
    p_log_p = _p_log_p(data)
    rep_model = _Repulsion(params or GridParams(), n_threads)
    p = rep_model.params.n_interpolation_points
    update, gains = np.zeros_like(Y), np.ones_like(Y)
    attr, rep = np.empty_like(Y), np.empty_like(Y)
    stats = np.empty((n_threads, 4))
    shift, lo, hi = _bounds(Y)
    total, kl, started = 0, float("nan"), time.perf_counter()
    want_kl = bool(callbacks) or log is not None
    for phase in phases:
        for _ in range(phase.n_iter):
            total += 1
            eval_kl = want_kl and total % callbacks_every_iters == 0
            origin, width, n_boxes = rep_model.layout(lo, hi)
            pot = rep_model.spread_and_convolve(Y, shift, origin, width, n_boxes)
            z, p_log_w = _gather_attract(Y, pot, origin, width, n_boxes, p, indptr, indices, data, attr, rep,
                                         eval_kl, n_threads)
            if eval_kl:
                kl = p_log_p - p_log_w + math.log(z)
                if log is not None:
                    log(f"iteration {total:5d}  KL {kl:.4f}  exaggeration {phase.exaggeration:g}  "
                        f"{time.perf_counter() - started:.1f} s")
                if any(bool(cb(total, kl, Y)) for cb in callbacks):
                    return Y, kl, total
            _update(Y, attr, rep, 1.0 / z, phase.exaggeration, update, gains, phase.learning_rate,
                    phase.momentum, min_gain, max_step_norm, stats)
            shift = stats[:, :2].sum(axis=0) / Y.shape[0]
            lo, hi = stats[:, 2].min() - shift.max(), stats[:, 3].max() - shift.min()
    Y -= shift
    kl = kl_divergence(Y, P, params=rep_model.params, n_threads=n_threads)
    return Y, kl, total

