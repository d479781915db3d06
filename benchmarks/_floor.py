"""The floor of every one-pass solver, shared by the regression, PCA, SGD and read benchmarks.

What any one-pass fit of a store must at least do: every chunk file read straight into a preallocated numpy
buffer (``readinto``; for compressed chunks, read and decoded by numcodecs into the output), then X'X and
X'y of the block, one task per row chunk on the benchmark's cluster. The stores' integrity manifests are
also checked here: stores written before manifests existed are deleted, to be regenerated.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import zarr

from scaleml_dask.io import read
from scaleml_dask.io.store import MANIFEST

_LOCAL = threading.local()


def _buffer(role: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """A buffer of this thread reused from chunk to chunk (allocated and faulted in once), as a reader
    that owns its memory would; a fresh 64 MB allocation per chunk costs more than the read itself here.
    A 1-d uint8 buffer (compressed frames) only grows."""
    buffers = _LOCAL.__dict__.setdefault("buffers", {})  # per thread: threads of a process share nothing
    key = (role, len(shape), np.dtype(dtype).str)
    buf = buffers.get(key)
    if buf is None or (buf.shape != shape if len(shape) > 1 or buf.dtype != np.uint8 else buf.size < shape[0]):
        buf = buffers[key] = np.zeros(shape, dtype=dtype)
    return buf if buf.shape == shape else buf[: shape[0]]


def chunk_into_numpy(src: read.ZarrChunks, i: int, role: str = "out") -> np.ndarray:
    """Row chunk ``i`` of a 1-d or 2-d array (one column chunk) with ``readinto`` into a preallocated buffer,
    then (compressed chunks) numcodecs' decoder into the output; the last chunk trimmed to its rows. The
    result is a view of this thread's buffer ``role``: valid until the next read into it."""
    import numcodecs

    path = os.path.join(src.directory, src.chunk_key((i,) + (0,) * (src.ndim - 1)))
    out = _buffer(role, src.chunks, src.dtype)
    with open(path, "rb", buffering=0) as f:
        if src.mode == "raw":
            f.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        else:
            size = os.fstat(f.fileno()).st_size
            data = _buffer(role + " frame", (size,), np.uint8)
            f.readinto(memoryview(data))
            codec = numcodecs.Blosc() if src.mode == "blosc" else numcodecs.Zstd()
            codec.decode(data, out=out.reshape(-1).view(np.uint8))
    return out[: min(src.chunks[0], src.shape[0] - i * src.chunks[0])]


def _chunk_gram(x: read.ZarrChunks, y: read.ZarrChunks, i: int) -> tuple[np.ndarray, np.ndarray]:
    X, yb = chunk_into_numpy(x, i, "X"), chunk_into_numpy(y, i, "y")
    return X.T @ X, X.T @ yb


def floor_pass(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """X'X and X'y of the store at ``path`` on the current dask scheduler, one task per chunk, no zarr."""
    import dask

    g = zarr.open_group(str(path), mode="r")
    x, y = read.chunk_source(g["X"]), read.chunk_source(g["y"])
    if x.mode == "zarr" or x.grid[1:] != (1,):
        raise ValueError(f"{path}: the floor needs a local zarr v3 store chunked along rows only")
    parts = [dask.delayed(_chunk_gram, pure=False)(x, y, i) for i in range(x.grid[0])]
    grams = dask.compute(*parts)
    return sum(G for G, _ in grams), sum(b for _, b in grams)


def drop_if_without_manifest(path: Path) -> None:
    """Delete a store written before integrity manifests (so that it is regenerated with one)."""
    if path.exists() and not all((path / name / MANIFEST).is_file() for name in ("X", "y") if (path / name).is_dir()):
        print(f"{path.name} has no integrity manifest: deleting it, to be regenerated")
        shutil.rmtree(path)
