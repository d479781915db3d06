"""t-SNE gradient and optimisation: exact sparse attraction + exact or FFT-interpolated repulsion (numba).

The KL gradient of a 2-d embedding Y under the joint input similarities P (CSR, sums to 1) is,
up to the constant factor 4 that the learning rate absorbs (as in FIt-SNE and openTSNE),

    g_i = a * sum_j p_ij w_ij (y_i - y_j)  -  (1/Z) sum_j w_ij^2 (y_i - y_j),   w_ij = 1/(1 + |y_i - y_j|^2)

with exaggeration ``a`` and ``Z = sum_{i != j} w_ij``. The attraction loops over the nonzeros of P.
The repulsion and Z are computed one of two ways:

- ``"exact"``: every pair once, O(n^2) per iteration but with no n x n array: each thread takes a
  band of the upper triangle and accumulates Z and the repulsive sums of both points of each pair,
  computing ``w_ij`` on the fly (vectorised). Below a few thousand points this beats any grid.
- ``"fft"``: potentials of the charges ``(1, y1, y2)`` are spread onto a square grid of Lagrange
  interpolation nodes (p per box), convolved by FFT (the node grid is equispaced, so the kernels are
  Toeplitz) with ``w^2`` and, for the charge 1 only, with ``w``, and gathered back at the points
  (Linderman et al. 2019, FIt-SNE). Then

      sum_j w_ij^2 (y_i - y_j) = y_i phi_0 - (phi_1, phi_2),     Z = sum_i psi_i - n,

  where ``psi = w * 1``. Taking Z from its own convolution (rather than FIt-SNE's four charges
  ``1, y, |y|^2``, whose combination cancels catastrophically far from the origin) costs one FFT
  less and keeps single precision accurate, so grids and FFTs are float32.

Speed comes from doing each step once, in parallel, in place, in few parallel regions (waking the
threads has a cost each time; benchmarks/README.md, "t-SNE"): per iteration the exact method has one region
(attraction + pairs) and the update; the FFT method spreads into per-thread grids, runs one batched
real FFT with ``workers``, then one gather + attraction region and the update. The attraction,
shared by both, runs in a loop of its own so that it vectorises. The update fuses gains, momentum,
step clipping, the position update, and the columns, mean and bounds the next iteration needs.
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

METHODS = ("exact", "fft")
#: ``"auto"`` repulsion is exact up to this many points. Time per iteration exact / FFT (attraction +
#: repulsion, mean over a 750-iteration run, 2 threads): 0.04 on digits (1,797), and on a 10-cluster
#: mixture 0.45 at 5,000, 0.90 at 7,000, 1.4 at 10,000; the crossover is ~7,600 (~6,400 on one thread).
EXACT_REPULSION_MAX_SAMPLES = 7_500


@dataclass
class GridParams:
    """Interpolation settings of the repulsive term (defaults as in FIt-SNE / openTSNE).

    Boxes are ``ints_in_interval`` wide while at most ``max_fine_intervals`` of them cover the
    embedding; beyond, they widen up to ``coarse_interval`` (openTSNE's 1), so a large embedding's grid
    has openTSNE's size, not 4x its area at 0.5-wide boxes (the FFTs' time and memory follow the area).
    """

    n_interpolation_points: int = 3
    min_num_intervals: int = 50
    ints_in_interval: float = 1.0
    max_num_intervals: int = 1000
    max_fine_intervals: int = 200
    coarse_interval: float = 1.0


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


#: Reassociation lets LLVM vectorise the sums; numpy's error model drops the zero check of each
#: division (every denominator is 1 + d^2 >= 1), which otherwise blocks vectorisation.
_FAST = dict(fastmath={"reassoc", "contract"}, error_model="numpy")


@numba.njit(inline="always")
def _attract_row(i, Y, indptr, indices, data, attr, eval_kl):
    """``attr[i] = sum_j p_ij w_ij (y_i - y_j)`` over row i of P (translation invariant, so Y need not
    be centred); returns ``sum_j p_ij log w_ij`` when ``eval_kl`` (else 0)."""
    y0 = Y[i, 0]
    y1 = Y[i, 1]
    a0 = 0.0
    a1 = 0.0
    kl = 0.0
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
    return kl


@numba.njit(parallel=True, cache=True, **_FAST)
def _gather_attract(Y, pot, lo, box_width, n_boxes, p, indptr, indices, data, attr, rep, eval_kl, T):
    """Per point, the repulsive sums interpolated from the potentials on the grid (into ``rep[0]``),
    and the attraction. Returns (Z, sum of p log w over the nonzeros of P when ``eval_kl``)."""
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
            rep[0, 0, i] = y0 * f0 - f1
            rep[0, 1, i] = y1 * f0 - f2
            z += f3
        for i in range(t * n // T, (t + 1) * n // T):  # a loop of its own: it vectorises
            kl += _attract_row(i, Y, indptr, indices, data, attr, eval_kl)
        z_parts[t] = z
        kl_parts[t] = kl
    return z_parts.sum() - n, kl_parts.sum()


@numba.njit(parallel=True, cache=True, **_FAST)
def _exact_attract(Y, cols, indptr, indices, data, attr, rep, eval_kl, T):
    """The attraction and the repulsive sums over all pairs, in one parallel region.

    ``cols`` (2, n) holds the coordinates as contiguous columns (``_update`` writes them); both
    terms are translation invariant, so Y need not be centred. Each pair is visited once: thread t
    takes rows [start, stop) of the upper triangle (bounds chosen so the threads get equal numbers
    of pairs), computes ``w`` on the fly in a vectorised loop, adds the row's sum to point i and
    subtracts each term from point j, all in its own zeroed accumulator ``rep[t]`` (2, n), which
    ``_update`` sums and zeroes. Returns (Z, sum of p log w over the nonzeros of P when ``eval_kl``).
    """
    n = Y.shape[0]
    z_parts = np.zeros(T)
    kl_parts = np.zeros(T)
    for t in numba.prange(T):
        kl = 0.0
        for i in range(t * n // T, (t + 1) * n // T):
            kl += _attract_row(i, Y, indptr, indices, data, attr, eval_kl)
        start = n - int(round(n * math.sqrt(1.0 - t / T)))
        stop = n - int(round(n * math.sqrt(1.0 - (t + 1) / T)))
        a0 = rep[t, 0]
        a1 = rep[t, 1]
        z = 0.0
        for i in range(start, stop):
            y0 = cols[0, i]
            y1 = cols[1, i]
            c0 = cols[0, i + 1:]
            c1 = cols[1, i + 1:]
            s0 = a0[i + 1:]
            s1 = a1[i + 1:]
            r0 = 0.0
            r1 = 0.0
            for j in range(c0.shape[0]):
                d0 = y0 - c0[j]
                d1 = y1 - c1[j]
                w = 1.0 / (1.0 + d0 * d0 + d1 * d1)
                z += w
                w2 = w * w
                f0 = w2 * d0
                f1 = w2 * d1
                r0 += f0
                r1 += f1
                s0[j] -= f0
                s1[j] -= f1
            a0[i] += r0
            a1[i] += r1
        z_parts[t] = z
        kl_parts[t] = kl
    return 2.0 * z_parts.sum(), kl_parts.sum()


@numba.njit(parallel=True, cache=True)
def _update(Y, attr, rep, inv_z, exaggeration, update, gains, learning_rate, momentum, min_gain,
            max_step, cols, stats):
    """Gains, momentum, step clipping and position update, with the repulsion summed from its
    partial sums ``rep`` (S, 2, n), which are then zeroed; the new positions also go to ``cols``
    (2, n), and ``stats`` gets per-thread (sum y0, sum y1, min, max) for the next iteration's
    centring and grid."""
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
                r = 0.0
                for s in range(rep.shape[0]):
                    r += rep[s, d, i]
                    rep[s, d, i] = 0.0
                g = exaggeration * attr[i, d] - r * inv_z
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
            cols[0, i] = y0
            cols[1, i] = y1
            s0 += y0
            s1 += y1
            mn = min(mn, y0, y1)
            mx = max(mx, y0, y1)
        stats[t, 0] = s0
        stats[t, 1] = s1
        stats[t, 2] = mn
        stats[t, 3] = mx


@numba.njit(parallel=True, cache=True)
def _p_sums(data: np.ndarray) -> tuple[float, float]:
    """(sum p log p, sum p) over the nonzeros of P."""
    s = 0.0
    total = 0.0
    for e in numba.prange(data.shape[0]):
        p = np.float64(data[e])
        if p > 0:
            s += p * math.log(p)
        total += p
    return s, total


def _kl(p_sums: tuple[float, float], p_log_w: float, z: float) -> float:
    """KL(P || Q) = sum p log p - sum p log w + (sum p) log Z (P sums to 1 only up to float32 rounding)."""
    return float(p_sums[0] - p_log_w + p_sums[1] * math.log(z))


class _FFTRepulsion:
    """Grid geometry, per-thread buffers and the FFT convolutions for one optimisation."""

    #: relative step of the box width below ``ints_in_interval``: kernels are reused between steps
    WIDTH_STEP = 1.01
    #: partial sums of the repulsion it writes (``rep`` is (1, 2, n))
    n_partial_sums = 1

    def __init__(self, params: GridParams, n_threads: int) -> None:
        self.params = params
        self.n_threads = n_threads
        self._grids = np.empty((0, 3, 0, 0), dtype=np.float32)
        self._kernel_key: tuple | None = None
        self._kernel_hat = np.empty((2, 0, 0), dtype=np.complex64)

    def layout(self, lo: float, hi: float) -> tuple[float, float, int]:
        """(grid origin, box width, boxes per side) for coordinates in [lo, hi].

        Boxes are ``ints_in_interval`` wide; narrower while fewer than ``min_num_intervals`` would
        cover the span; wider, up to ``coarse_interval``, while more than ``max_fine_intervals`` would.
        Widths other than ``ints_in_interval`` are rounded up to a power of ``WIDTH_STEP`` (kernels are
        reused while the width stays).
        """
        prm = self.params
        span = max(hi - lo, 1e-12) * (1 + 1e-9)
        width = float(prm.ints_in_interval)
        wanted = None
        if span < prm.min_num_intervals * width:
            wanted = span / prm.min_num_intervals
        elif span > prm.max_fine_intervals * width and prm.coarse_interval > width:
            wanted = span / prm.max_fine_intervals
        if wanted is not None:
            width *= self.WIDTH_STEP ** math.ceil(math.log(wanted / width) / math.log(self.WIDTH_STEP))
            width = min(width, max(float(prm.coarse_interval), float(prm.ints_in_interval)))
        n_boxes = max(int(prm.min_num_intervals), math.ceil(span / width))
        if n_boxes > prm.max_num_intervals:
            n_boxes = int(prm.max_num_intervals)
            width = span / n_boxes
        return lo - span * 5e-10, width, n_boxes

    def _kernels(self, M: int, h: float) -> np.ndarray:
        """Spectra of the circulant kernels ``w^2`` and ``w`` on an M x M node grid of spacing h."""
        if (M, h) != self._kernel_key:
            self._kernel_hat = np.empty(0, dtype=np.complex64)  # the old spectra freed first
            off = np.arange(M, dtype=np.float64)
            sq = ((np.minimum(off, M - off) * h) ** 2).astype(np.float32)
            kern = np.empty((2, M, M), dtype=np.float32)  # built in place: no M x M float64 temporaries
            np.add.outer(sq, sq + np.float32(1.0), out=kern[1])
            np.reciprocal(kern[1], out=kern[1])
            np.square(kern[1], out=kern[0])
            self._kernel_hat = scipy.fft.rfft2(kern, workers=self.n_threads, overwrite_x=True)
            del kern
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
        pot = np.empty((4, N, N), dtype=np.float32)
        # one charge at a time: its spectrum (M x M/2+1 complex64, 8 MB at M=1440) stays in cache, where
        # all channels at once did not (measured slower; benchmarks/HISTORY.md, "t-SNE"). The charges fill
        # only the first N of M rows: transform rows, then columns; only the first N rows and columns of the
        # result are needed.
        for c in range(3):
            spec = scipy.fft.fft(scipy.fft.rfft(charges[c], n=M, axis=1, workers=T), n=M, axis=0, workers=T,
                                 overwrite_x=True)
            for kernel, out in ((0, c), (1, 3)) if c == 0 else ((0, c),):
                rows = scipy.fft.ifft(spec * kernel_hat[kernel], axis=0, workers=T, overwrite_x=True)[:N]
                pot[out] = scipy.fft.irfft(rows, n=M, axis=1, workers=T)[:, :N]
        return pot

    def __call__(self, Y: np.ndarray, cols: np.ndarray, shift: np.ndarray, lo: float, hi: float, P: CSR,
                 attr: np.ndarray, rep: np.ndarray, eval_kl: bool) -> tuple[float, float]:
        """Centre Y by ``shift`` (in place; ``lo, hi`` bound the centred coordinates), fill the
        attraction and repulsion; returns (Z, sum p log w)."""
        origin, width, n_boxes = self.layout(lo, hi)
        pot = self.spread_and_convolve(Y, shift, origin, width, n_boxes)
        return _gather_attract(Y, pot, origin, width, n_boxes, self.params.n_interpolation_points, *P,
                               attr, rep, eval_kl, self.n_threads)


class _ExactRepulsion:
    """All-pairs repulsion: the same call as ``_FFTRepulsion``, on the columns ``cols``, without a
    grid and without centring (the embedding is centred once, at the end)."""

    def __init__(self, n_threads: int) -> None:
        self.n_threads = n_threads
        self.n_partial_sums = n_threads

    def __call__(self, Y: np.ndarray, cols: np.ndarray, shift: np.ndarray, lo: float, hi: float, P: CSR,
                 attr: np.ndarray, rep: np.ndarray, eval_kl: bool) -> tuple[float, float]:
        return _exact_attract(Y, cols, *P, attr, rep, eval_kl, self.n_threads)


def choose_gradient_method(method: str, n: int) -> str:
    """The repulsion method for ``n`` points: ``"auto"`` is ``"exact"`` up to ``EXACT_REPULSION_MAX_SAMPLES``."""
    if method == "auto":
        return "exact" if n <= EXACT_REPULSION_MAX_SAMPLES else "fft"
    if method not in METHODS:
        raise ValueError(f"negative_gradient_method={method!r}; choose one of {('auto',) + METHODS}")
    return method


def _repulsion(method: str, n: int, params: GridParams | None, n_threads: int):
    if choose_gradient_method(method, n) == "exact":
        return _ExactRepulsion(n_threads)
    return _FFTRepulsion(params or GridParams(), n_threads)


def _bounds(Y: np.ndarray) -> tuple[np.ndarray, float, float]:
    mean = Y.mean(axis=0)
    return mean, float((Y - mean).min()), float((Y - mean).max())


def _evaluate(Y: np.ndarray, P: CSR, method: str, params: GridParams | None, n_threads: int | None,
              eval_kl: bool):
    """One full evaluation at a copy of ``Y``: (attraction, repulsion, Z, sum p log w)."""
    n_threads = n_threads or numba.get_num_threads()
    Y = np.array(Y, dtype=np.float64)
    mean, lo, hi = _bounds(Y)
    repulsion = _repulsion(method, len(Y), params, n_threads)
    attr, rep = np.empty_like(Y), np.zeros((repulsion.n_partial_sums, 2, len(Y)))
    z, p_log_w = repulsion(Y, np.ascontiguousarray(Y.T), mean, lo, hi, P, attr, rep, eval_kl)
    return attr, rep.sum(axis=0).T, z, p_log_w


def gradient(Y: np.ndarray, P: CSR, *, exaggeration: float = 1.0, method: str = "auto",
             params: GridParams | None = None, n_threads: int | None = None) -> tuple[np.ndarray, float]:
    """The t-SNE gradient (without the factor 4) at ``Y`` and the normaliser Z.

    ``P`` is ``(indptr, indices, data)``. The true KL gradient is ``4 * g``. ``method`` is the
    repulsion: ``"exact"``, ``"fft"`` (interpolated on the grid ``params``) or ``"auto"``.
    """
    attr, rep, z, _ = _evaluate(Y, P, method, params, n_threads, False)
    return exaggeration * attr - rep / z, z


def kl_divergence(Y: np.ndarray, P: CSR, *, method: str = "auto", params: GridParams | None = None,
                  n_threads: int | None = None) -> float:
    """KL(P || Q) of the embedding ``Y``, with Z computed by ``method`` (as in ``gradient``)."""
    _, _, z, p_log_w = _evaluate(Y, P, method, params, n_threads, True)
    return _kl(_p_sums(P[2]), p_log_w, z)


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
    method: str = "auto",
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
    the optimisation, and the embedding so far is returned. ``method`` and ``params`` choose the
    repulsion (as in ``gradient``); the final KL is computed the same way.
    """
    n_threads = n_threads or numba.get_num_threads()
    p_sums = _p_sums(P[2])
    repulsion = _repulsion(method, len(Y), params, n_threads)
    update, gains = np.zeros_like(Y), np.ones_like(Y)
    attr, rep = np.empty_like(Y), np.zeros((repulsion.n_partial_sums, 2, len(Y)))
    cols = np.ascontiguousarray(Y.T)
    stats = np.empty((n_threads, 4))
    shift, lo, hi = _bounds(Y)
    total, kl, started = 0, float("nan"), time.perf_counter()
    want_kl = bool(callbacks) or log is not None
    for phase in phases:
        for _ in range(phase.n_iter):
            total += 1
            eval_kl = want_kl and total % callbacks_every_iters == 0
            z, p_log_w = repulsion(Y, cols, shift, lo, hi, P, attr, rep, eval_kl)
            if eval_kl:
                kl = _kl(p_sums, p_log_w, z)
                if log is not None:
                    log(f"iteration {total:5d}  KL {kl:.4f}  exaggeration {phase.exaggeration:g}  "
                        f"{time.perf_counter() - started:.1f} s")
                if any(bool(cb(total, kl, Y)) for cb in callbacks):
                    Y -= Y.mean(axis=0)
                    return Y, kl, total
            _update(Y, attr, rep, 1.0 / z, phase.exaggeration, update, gains, phase.learning_rate,
                    phase.momentum, min_gain, max_step_norm, cols, stats)
            shift = stats[:, :2].sum(axis=0) / Y.shape[0]
            lo, hi = stats[:, 2].min() - shift.max(), stats[:, 3].max() - shift.min()
    Y -= shift
    kl = kl_divergence(Y, P, method=method, params=params, n_threads=n_threads)
    return Y, kl, total

