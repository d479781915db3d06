"""Linear scores ``X @ W + b`` computed from a compressed weight matrix in its compressed form.

A model over 2**20 hashed text features has an 8 MiB float64 weight vector; scoring a batch of CSR rows
gathers one weight per non-zero, so what decides the speed is how much of the weights the gathers touch stay
in cache. ``Int8Weights`` keeps the int8 codes ``q`` (1 MiB) and computes ``score_k = s_k Σ_j x_j q_jk + b_k``
over each row's non-zeros. ``SparseWeights`` scores dense rows of a pruned model from the kept columns only
(O(n m) for m kept weights instead of O(n p)); CSR rows it scores by the float64 gather from the dense ``W`` by
default. Its branch-free lookup of the kept weights (a bitmap of the features with a uint32 rank per 64-bit
word and LLVM's popcount: ~200 KiB + 8 m bytes touched instead of 8 MiB) is faster only where the batch's
features are spread over all 2**20 (the dense ``W`` out of cache); on held-out hashed text, whose frequent words
keep the touched part of ``W`` in cache, it measured about 2x slower than the gather: LLVM compiles it without a
branch (``bzhi``, ``popcnt``, ``bt`` + ``cmov``), but that is three dependent loads and ~15 instructions per
non-zero against the gather's one load (``benchmarks/bench_compress.py``). So it is chosen with
``SparseWeights.of(W, csr_kernel="masked")``, not by default. Both are equal to the float64 product with the
dequantized / pruned weights to rounding (tested to 1e-12).

The kernels index with unsigned integers: numba checks a signed index for a negative value (wrap-around) on
every access, which made an earlier int8 gather twice as slow as scipy's float64 product; with unsigned
indices the int8 gather is as fast as scipy's where the touched weights fit in cache and faster where they do
not (``benchmarks/bench_compress.py``).

``scorer(W, spec)`` gives the scoring callable of a weight matrix ``W`` (its last row the intercept) declared
compressed by ``spec`` (the ``quantization_`` entry of ``deploy.compress``), built once per ``W``.

>>> import numpy as np, scipy.sparse as sp
>>> W = np.array([[0.5], [0.0], [-1.0], [0.25]])             # 3 weights and the intercept 0.25
>>> X = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]))
>>> SparseWeights.of(W)(X).ravel().tolist(), Int8Weights.of(W, np.array([[0.25]]))(X).ravel().tolist()
([0.75, -2.75], [0.75, -2.75])
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp
from numba import types, uint64
from numba.extending import intrinsic

#: The kernel ``SparseWeights`` scores CSR rows with (see its docstring and benchmarks/bench_compress.py).
CSR_KERNEL = "dense"


@dataclass(frozen=True)
class DenseWeights:
    """Plain float64 weights: ``X @ W[:-1] + W[-1]``."""

    W: np.ndarray

    def __call__(self, X: Any) -> np.ndarray:
        return np.asarray(X @ self.W[:-1] + self.W[-1])


@dataclass(frozen=True)
class Int8Weights:
    """int8 codes ``q`` (p, k) with per-output scales ``s`` (k,) and the float64 intercept ``b`` (k,)."""

    q: np.ndarray
    scale: np.ndarray
    b: np.ndarray

    @classmethod
    def of(cls, W: np.ndarray, scale: np.ndarray) -> Int8Weights | None:
        """The int8 form of ``W`` (rows = features, then the intercept) whose weights are ``q * scale``; None if
        they are not (the weights changed after quantization)."""
        s = np.asarray(scale, dtype=np.float64).reshape(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.rint(W[:-1] / s)
        if not (np.all(np.abs(r) <= 127) and np.array_equal(r * s, W[:-1])):
            return None
        return cls(np.ascontiguousarray(r, dtype=np.int8), s, W[-1].copy())

    def __call__(self, X: Any) -> np.ndarray:
        if sp.issparse(X):
            X = X.tocsr()
            out = np.empty((X.shape[0], self.q.shape[1]))
            _csr_gather(X.data, X.indices, X.indptr, self.q, out)
        else:
            out = np.asarray(X) @ self.q.astype(np.float64)
        out *= self.scale
        out += self.b
        return out


@dataclass(frozen=True)
class SparseWeights:
    """The non-zero rows ``V`` (m, k) of a pruned ``W`` at features ``rows`` (m,), and the intercept ``b``.

    Dense rows are scored from their kept columns only. CSR rows are scored by a lookup that touches the kept
    weights and a map of them, not the dense ``W``: ``words`` is a bitmap of the kept features (p / 8 bytes),
    ``rank[w]`` the number of kept features before word ``w`` (uint32), ``values`` is ``V`` with a trailing zero
    row; feature ``j`` has the value at ``rank[j >> 6] + popcount(word & (bit(j) - 1))`` if its bit is set, else
    the zero row, selected without a branch (``_csr_masked_gather``). ``csr_kernel`` says which CSR kernel
    ``__call__`` uses: ``"masked"`` (this lookup) or ``"dense"`` (the float64 gather from ``W``)."""

    rows: np.ndarray
    V: np.ndarray
    W: np.ndarray
    words: np.ndarray
    rank: np.ndarray
    values: np.ndarray
    csr_kernel: str = CSR_KERNEL

    @classmethod
    def of(cls, W: np.ndarray, csr_kernel: str | None = None) -> SparseWeights:
        keep = np.any(W[:-1] != 0, axis=1)
        rows = np.flatnonzero(keep)
        V = np.ascontiguousarray(W[rows])
        bits = np.zeros(-(-keep.size // 64) * 64, dtype=bool)
        bits[: keep.size] = keep
        words = np.packbits(bits, bitorder="little").view("<u8")
        counts = np.bitwise_count(words).astype(np.uint32)
        rank = np.cumsum(counts, dtype=np.uint32) - counts
        values = np.vstack([V[:, :], np.zeros((1, W.shape[1]))])
        return cls(rows, V, W, np.ascontiguousarray(words, dtype=np.uint64), rank, values,
                   csr_kernel or CSR_KERNEL)

    def __call__(self, X: Any) -> np.ndarray:
        if sp.issparse(X):
            if self.csr_kernel == "dense" or X.shape[1] != self.W.shape[0] - 1:  # a wrong width: scipy's error
                return np.asarray(X @ self.W[:-1] + self.W[-1])
            X = X.tocsr()
            out = np.empty((X.shape[0], self.W.shape[1]))
            _csr_masked_gather(X.data, X.indices, X.indptr, self.words, self.rank, self.values, out)
            out += self.W[-1]
            return out
        return np.asarray(X)[:, self.rows] @ self.V + self.W[-1]


_BUILT: dict[int, tuple[weakref.ref, Any]] = {}


def scorer(W: np.ndarray, spec: dict | None) -> DenseWeights | Int8Weights | SparseWeights:
    """The scoring callable of ``W`` as ``spec`` declares it stored (``{"dtype": "int8", "scale": ...}``,
    ``{"dtype": "sparse"}``, else float64), built once per weight array."""
    kind = None if spec is None else spec.get("dtype")
    if kind not in ("int8", "sparse"):
        return DenseWeights(W)
    known = _BUILT.get(id(W))
    if known is not None and known[0]() is W:
        return known[1]
    if kind == "int8":
        built = Int8Weights.of(W, spec["scale"])
    else:
        built = SparseWeights.of(W)
    built = built if built is not None else DenseWeights(W)
    _BUILT[id(W)] = (weakref.ref(W, functools.partial(_forget, id(W))), built)
    return built


def _forget(key: int, ref: weakref.ref) -> None:
    """Drop what was built for a weight array that no longer exists (not a later array given its id)."""
    built = _BUILT  # None while the interpreter shuts down
    if built is not None and built.get(key, (None,))[0] is ref:
        del built[key]


@numba.njit(cache=True, nogil=True)
def _csr_gather(data, indices, indptr, table, out):  # pragma: no cover - compiled
    """``out[i, c] = Σ_p data[p] table[indices[p], c]`` over row ``i``'s non-zeros (``table`` int8 or float)."""
    k = table.shape[1]
    for i in range(out.shape[0]):
        for c in range(k):
            acc = 0.0
            for p in range(uint64(indptr[i]), uint64(indptr[i + 1])):
                acc += data[p] * table[uint64(indices[p]), c]
            out[i, c] = acc


@intrinsic
def _popcount(typingctx, x):  # pragma: no cover - compiled
    """LLVM's ``ctpop`` of a uint64 (one instruction where the CPU has it)."""
    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@numba.njit(cache=True, nogil=True)
def _csr_masked_gather(data, indices, indptr, words, rank, values, out):  # pragma: no cover - compiled
    """``out[i, c] = Σ_p data[p] values[v(indices[p]), c]`` with ``v(j)`` the kept weight's row of feature ``j`` or the
    trailing zero row, selected by a mask (no branch on whether ``j`` is kept)."""
    k = values.shape[1]
    zero = uint64(values.shape[0] - 1)
    one = uint64(1)
    for i in range(out.shape[0]):
        for c in range(k):  # the lookup again per output: the sum stays in a register
            acc = 0.0
            for p in range(uint64(indptr[i]), uint64(indptr[i + 1])):
                j = uint64(indices[p])
                w = words[j >> uint64(6)]
                b = j & uint64(63)
                idx = uint64(rank[j >> uint64(6)]) + _popcount(w & ((one << b) - one))
                mask = uint64(0) - ((w >> b) & one)  # all ones if j is kept, else 0
                acc += data[p] * values[zero ^ ((idx ^ zero) & mask), c]
            out[i, c] = acc
