"""The chunk reader every estimator reads through: zarr chunks straight into numpy buffers.

zarr-python spends most of a one-pass fit's time in its read machinery: several times what ``readinto`` of
the same chunk file costs (benchmarks/README.md, "Read path"). For a zarr v3 array
on a local store this module maps each uncompressed chunk file into memory (a copy-on-write map of the
page cache: no copy at all), or maps a compressed one and has numcodecs' zstd / blosc decoders expand it
straight into the output buffer; everything else (fsspec URLs, sharding, filters, other codecs, dtypes or
byte orders, zarr v2) goes through zarr itself. Either way:

- a missing chunk is an ``IntegrityError`` naming the dataset, array and chunk, never fill values, unless
  the array carries the attribute ``allow_empty_chunks: true`` (``EMPTY_CHUNKS_ATTR``), the mark of an
  array deliberately written with ``write_empty_chunks=False``;
- a chunk of the wrong size (truncated, or a frame that does not decode to the chunk) is an
  ``IntegrityError`` too, and so is a checksum mismatch against the manifest of a store written here
  (``store.MANIFEST``): checked on every read of a compressed chunk, where hashing costs a few per cent of
  decoding; for uncompressed chunks only on request (``verify=True``, ``verify_array``), since hashing would
  cost more than the read itself (benchmarks/README.md, "Read path").

``dask_array`` wraps a ``ZarrChunks`` with ``da.from_array(..., inline_array=True)``: one task per chunk
that dask fuses into the blockwise task consuming it. Code that consumes whole row chunks with a function
of its own (the estimators' block kernels) goes through the pass driver (``passes.map_row_chunks``): for an
array read here (``row_source``), each task reads its row chunk itself (``ZarrChunks.read_rows``), so a read is
never a task of its own, never a transfer between workers and never an extra materialised copy.

>>> import numpy as np, tempfile, os, zarr
>>> z = zarr.create_array(os.path.join(tempfile.mkdtemp(), "a.zarr"), shape=(5, 2), chunks=(2, 2),
...                       dtype="f8", compressors=None)
>>> z[:] = np.arange(10.0).reshape(5, 2)
>>> dask_array(z, label="example").sum().compute()
np.float64(45.0)
"""

from __future__ import annotations

import math
import mmap
import os
import weakref
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .store import IntegrityError, checksum, load_manifest

if TYPE_CHECKING:
    import dask.array as da

#: Array attribute that allows missing chunks (read as the fill value), for stores written elsewhere with
#: zarr's ``write_empty_chunks=False``. Stores written by this project always write every chunk.
EMPTY_CHUNKS_ATTR = "allow_empty_chunks"
#: Chunks read by this process, by path taken ("raw", "zstd", "blosc", "zarr"): what tests and
#: benchmarks look at to see how a computation read its data.
reads: Counter[str] = Counter()


@dataclass(frozen=True, eq=False)
class ZarrChunks:
    """Array-like over one zarr array whose ``[slices]`` reads the chunk the slices select.

    Built by ``chunk_source``; picklable, so it travels inside the dask graph to the workers. ``mode`` is
    the path chunks take: "raw" (uncompressed: the file memory-mapped), "zstd" / "blosc" (decoded into the
    output), "zarr" (zarr-python). ``verify`` checks each chunk's checksum against the manifest on read.
    """

    label: str
    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    mode: str
    directory: str | None = None
    key_encoding: Any = None
    fill_value: Any = 0
    allow_empty: bool = False
    manifest: dict | None = None
    verify: bool = False
    zarray: Any = field(default=None, repr=False)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of chunks along each axis."""
        return tuple(math.ceil(s / c) if c else 0 for s, c in zip(self.shape, self.chunks))

    @property
    def n_chunks(self) -> int:
        return math.prod(self.grid)

    def __dask_tokenize__(self) -> tuple:
        stamp = self.manifest["chunks"] if self.manifest else _mtime(self.directory)
        return ("ZarrChunks", self.label, self.name, self.directory, self.shape, self.chunks, str(self.dtype),
                self.mode, self.verify, str(stamp))

    def __getitem__(self, key: Any) -> np.ndarray:
        """``self[key]`` for the keys dask's getter passes: a whole chunk (read as is) or, once dask has fused a
        slice of the array into the read, any basic index inside one chunk along every axis but the first
        (read chunk by chunk along the first axis)."""
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        bounds = [range(n)[k] if isinstance(k, slice) else range(int(k) % n, int(k) % n + 1)
                  for k, n in zip(key, self.shape)]
        lo = [b.start if len(b) else 0 for b in bounds]
        coords = tuple(x // c for x, c in zip(lo, self.chunks))
        whole = all(isinstance(k, slice) and b.step == 1 and b.start == i * c and b.stop == min((i + 1) * c, n)
                    for k, b, i, c, n in zip(key, bounds, coords, self.chunks, self.shape))
        if whole:
            return self.read_chunk(coords)
        if any(len(b) == 0 for b in bounds):
            return np.empty(tuple(len(b) for b, k in zip(bounds, key) if isinstance(k, slice)), dtype=self.dtype)
        first = bounds[0]
        parts = []
        for i0 in range(min(first) // self.chunks[0], max(first) // self.chunks[0] + 1):
            chunk = self.read_chunk((i0, *coords[1:]))
            rows = [r - i0 * self.chunks[0] for r in first if r // self.chunks[0] == i0]
            inner = tuple(k if not isinstance(k, slice) else slice(b.start - o * c, b.stop - o * c if b.stop >= 0
                          else None, b.step)
                          for k, b, o, c in zip(key[1:], bounds[1:], coords[1:], self.chunks[1:]))
            inner = tuple((int(k) % n) - o * c if not isinstance(k, slice) else k
                          for k, n, o, c in zip(inner, self.shape[1:], coords[1:], self.chunks[1:]))
            parts.append(chunk[(np.asarray(rows),) + inner] if rows else None)
        out = np.concatenate([q for q in parts if q is not None])
        return out[0] if not isinstance(key[0], slice) else out

    def read_rows(self, index: int) -> np.ndarray:
        """Row chunk ``index`` across every column chunk: the block a row-chunked task consumes (a view of
        the one chunk when the array has a single column chunk, else the chunks side by side)."""
        if self.ndim < 2 or self.grid[1] == 1:
            return self.read_chunk((index,) + (0,) * (self.ndim - 1))
        return np.concatenate([self.read_chunk((index, j)) for j in range(self.grid[1])], axis=1)

    def will_need(self, index: int) -> None:
        """Ask the kernel to start reading row chunk ``index``'s files into the page cache, without waiting
        (``posix_fadvise(WILLNEED)``); nothing for a store zarr-python reads, or a chunk past the end."""
        if self.directory is None or not 0 <= index < self.grid[0]:
            return
        for rest in np.ndindex(*self.grid[1:]):
            try:
                fd = os.open(os.path.join(self.directory, self.chunk_key((index, *rest))), os.O_RDONLY)
            except OSError:
                continue  # a missing chunk is named by the read that needs it
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)

    def for_rows(self, index: int) -> ZarrChunks:
        """This reader with its manifest cut to row chunk ``index``: what the task reading that row chunk
        carries (each task sent with the whole manifest would make a graph grow as the chunk count squared)."""
        if self.manifest is None:
            return self
        keys = [self.chunk_key((index, *rest)) for rest in np.ndindex(*self.grid[1:])]
        chunks = self.manifest["chunks"]
        return replace(self, manifest={**self.manifest, "chunks": {k: chunks[k] for k in keys if k in chunks}})

    def describe(self, coords: tuple[int, ...]) -> str:
        """'dataset 'd': array 'X' chunk 3 (rows 750000-999999)' — how errors name a chunk."""
        index = coords[0] if all(g == 1 for g in self.grid[1:]) else coords
        start = coords[0] * self.chunks[0] if coords else 0
        stop = min(start + (self.chunks[0] if coords else 1), self.shape[0] if self.shape else 1)
        rows = f" (rows {start}-{stop - 1})" if self.ndim else ""
        return f"dataset {self.label!r}: array {self.name!r} chunk {index}{rows}"

    def chunk_key(self, coords: tuple[int, ...]) -> str:
        if self.key_encoding is not None:
            return self.key_encoding.encode_chunk_key(coords)
        return self.zarray.metadata.encode_chunk_key(coords)

    def read_chunk(self, coords: tuple[int, ...]) -> np.ndarray:
        """Chunk ``coords`` (its valid region: the last chunk along an axis may be short) as numpy."""
        reads[self.mode] += 1
        valid = tuple(min(c, s - i * c) for i, c, s in zip(coords, self.chunks, self.shape))
        if self.mode == "zarr":
            return self._read_with_zarr(coords, valid)
        path = os.path.join(self.directory, self.chunk_key(coords))
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            if self.allow_empty and self.manifest is None:
                return np.full(valid, self.fill_value, dtype=self.dtype)
            raise IntegrityError(f"{self.describe(coords)}: chunk file {path} is missing") from None
        try:
            size = os.fstat(fd).st_size
            self._check_size(coords, path, size)
            data = _map(fd, size)
        finally:
            os.close(fd)
        self._check_sum(coords, path, data)
        if self.mode == "raw":
            return _region(data.view(self.dtype).reshape(self.chunks), valid)
        out = np.empty(self.chunks, dtype=self.dtype)
        _decode(self.mode, data, out, lambda problem: f"{self.describe(coords)}: chunk file {path} {problem}")
        return _region(out, valid)

    def _expected_size(self, coords: tuple[int, ...]) -> int | None:
        if self.manifest is not None:
            entry = self.manifest["chunks"].get(self.chunk_key(coords))
            return None if entry is None else int(entry[0])
        return math.prod(self.chunks) * self.dtype.itemsize if self.mode == "raw" else None

    def _check_size(self, coords: tuple[int, ...], path: str, size: int) -> None:
        expected = self._expected_size(coords)
        if self.manifest is not None and expected is None:
            raise IntegrityError(f"{self.describe(coords)}: chunk file {path} is not in the store's manifest")
        if expected is not None and size != expected:
            what = "truncated" if size < expected else "too long"
            raise IntegrityError(f"{self.describe(coords)}: chunk file {path} is {what}: "
                                 f"{size} bytes, expected {expected}")

    def _check_sum(self, coords: tuple[int, ...], path: str, data: np.ndarray) -> None:
        if not (self.verify and self.manifest):
            return
        digest = self.manifest["chunks"][self.chunk_key(coords)][1]
        if checksum(data) != digest:
            raise IntegrityError(f"{self.describe(coords)}: chunk file {path} is corrupt "
                                 f"(checksum {checksum(data)}, manifest {digest})")

    def _read_with_zarr(self, coords: tuple[int, ...], valid: tuple[int, ...]) -> np.ndarray:
        from zarr.core.sync import sync

        key = self.chunk_key(coords)
        store, prefix = self.zarray.store, self.zarray.path
        if not self.allow_empty and not sync(store.exists(f"{prefix}/{key}" if prefix else key)):
            raise IntegrityError(f"{self.describe(coords)}: chunk {key} is missing from {store}")
        sel = tuple(slice(i * c, i * c + v) for i, c, v in zip(coords, self.chunks, valid))
        try:
            return np.asarray(self.zarray[sel])
        except (ValueError, RuntimeError) as exc:
            raise IntegrityError(f"{self.describe(coords)}: chunk {key} cannot be read: {exc}") from exc


def chunk_source(zarray: Any, *, label: str | None = None, name: str | None = None,
                 verify: bool | None = None) -> ZarrChunks:
    """The reader of ``zarray``, taking the fastest path its metadata and store allow.

    ``label`` names the dataset in errors (default: the store), ``name`` the array (default: its path).
    ``verify``: check chunk checksums against the manifest as chunks are read; the default checks them
    for compressed chunks only, where hashing costs little beside decoding (benchmarks/README.md).
    """
    meta = zarray.metadata
    name = name or zarray.path or "array"
    label = label or str(zarray.store)
    mode, directory = _fast_mode(zarray)
    chunk_shape = tuple(int(c) for c in meta.chunk_grid.chunk_shape) if hasattr(meta, "chunk_grid") \
        else tuple(int(c) for c in meta.chunks)
    manifest = load_manifest(directory) if directory else None
    if verify is None:
        verify = mode in ("zstd", "blosc")
    return ZarrChunks(label=label, name=name, shape=tuple(int(s) for s in zarray.shape), chunks=chunk_shape,
                      dtype=np.dtype(zarray.dtype), mode=mode, directory=directory,
                      key_encoding=meta.chunk_key_encoding if mode != "zarr" else None,
                      fill_value=zarray.fill_value, allow_empty=bool(zarray.attrs.get(EMPTY_CHUNKS_ATTR, False)),
                      manifest=manifest, verify=bool(verify), zarray=zarray if mode == "zarr" else None)


def dask_array(zarray: Any, *, label: str | None = None, name: str | None = None,
               verify: bool | None = None) -> da.Array:
    """``zarray`` as a dask array read through ``chunk_source``: one task per chunk, inlined into its
    consumer (no separate read tasks, no extra copies)."""
    import dask.array as da
    from dask.base import tokenize

    src = chunk_source(zarray, label=label, name=name, verify=verify)
    arr = da.from_array(src, chunks=src.chunks, inline_array=True, asarray=False, lock=False,
                        name=f"read-{src.name}-{tokenize(src)}", meta=np.empty((0,) * src.ndim, dtype=src.dtype))
    _SOURCES[arr.name] = src
    return arr


#: The reader behind each array ``dask_array`` made, by the array's name; an entry lives as long as a graph
#: holds its reader.
_SOURCES: weakref.WeakValueDictionary[str, ZarrChunks] = weakref.WeakValueDictionary()


def row_source(X: da.Array) -> ZarrChunks | None:
    """The reader whose ``read_rows`` gives ``X``'s row chunks, if ``X`` is a plain read through ``dask_array``
    (or that read with its column chunks merged by ``rechunk``) chunked along rows as the store; else None.
    Other readers (``io.sparse.CSRChunks``, ``io.text.TextChunks``) register in ``_SOURCES`` the same way."""
    layers = X.__dask_graph__().layers
    sources = [_SOURCES[name] for name in layers if name in _SOURCES]
    if len(sources) != 1 or any(name not in _SOURCES and not name.startswith("rechunk-") for name in layers):
        return None
    src = sources[0]
    rows = src.chunks[0]
    expected = getattr(src, "row_chunks", None)  # a source of unequal chunks (Parquet row groups) lists them
    if expected is None:
        expected = tuple(min(rows, src.shape[0] - s) for s in range(0, src.shape[0], rows))
    if src.ndim not in (1, 2) or X.shape != src.shape or X.dtype != src.dtype or X.chunks[0] != expected:
        return None
    return src


def verify_array(zarray: Any, *, label: str | None = None, name: str | None = None) -> tuple[int, list[str]]:
    """Check every chunk of ``zarray``: exists, has its size and (with a manifest) its checksum.

    Returns ``(chunks checked, problems)``, one line per problem. Without a manifest (a store written
    elsewhere) only existence, the size of uncompressed chunks and the decodability of compressed ones
    can be checked.
    """
    src = chunk_source(zarray, label=label, name=name, verify=True)
    problems = []
    for coords in np.ndindex(*src.grid):
        try:
            src.read_chunk(coords)
        except IntegrityError as exc:
            problems.append(str(exc))
    if src.manifest is not None and src.manifest.get("n_chunks") != src.n_chunks:
        problems.append(f"dataset {src.label!r}: array {src.name!r} has {src.n_chunks} chunks; the manifest "
                        f"records {src.manifest.get('n_chunks')}")
    return src.n_chunks, problems


def _fast_mode(zarray: Any) -> tuple[str, str | None]:
    """("raw" | "zstd" | "blosc", array directory) if the array can skip zarr, else ("zarr", None)."""
    import zarr
    from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

    meta = zarray.metadata
    if meta.zarr_format != 3 or not isinstance(zarray.store, zarr.storage.LocalStore):
        return "zarr", None
    if type(meta.chunk_grid).__name__ != "RegularChunkGrid":
        return "zarr", None
    dtype = np.dtype(zarray.dtype)
    if dtype.kind not in "biuf" or not dtype.isnative:
        return "zarr", None
    codecs = tuple(meta.codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec):  # array-to-array filters (transpose...) or sharding
        return "zarr", None
    endian = codecs[0].endian
    if dtype.itemsize > 1 and (endian is None or endian.value != _NATIVE):
        return "zarr", None
    rest = codecs[1:]
    if not rest:
        mode = "raw"
    elif len(rest) == 1 and isinstance(rest[0], ZstdCodec):
        mode = "zstd"
    elif len(rest) == 1 and isinstance(rest[0], BloscCodec):
        mode = "blosc"
    else:
        return "zarr", None
    directory = os.path.join(os.path.abspath(zarray.store.root), zarray.path)
    return mode, directory


_NATIVE = "little" if np.little_endian else "big"


def _map(fd: int, size: int) -> np.ndarray:
    """File ``fd`` as a writable uint8 array without reading it: a private (copy-on-write) memory map of
    the page cache. It beats ``readinto`` into a fresh buffer, which copies every byte (benchmarks/README.md).
    Stores are replaced by renaming, never rewritten in place, so a mapped file does not change under it."""
    if size == 0:
        return np.empty(0, dtype=np.uint8)
    return np.frombuffer(mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE),
                         dtype=np.uint8)


def _decode(mode: str, data: np.ndarray, out: np.ndarray, problem: Any) -> None:
    """Decode the zstd / blosc frame ``data`` into ``out`` (C-contiguous), checking it fills ``out``."""
    flat = out.reshape(-1).view(np.uint8)
    if mode == "blosc":
        from numcodecs.blosc import Blosc

        header = data[:16]
        if len(header) < 16:
            raise IntegrityError(problem("is truncated (no blosc header)"))
        nbytes, cbytes = (int(v) for v in header[4:16].view("<u4")[[0, 2]])
        if cbytes != len(data):
            raise IntegrityError(problem(f"is truncated: {len(data)} bytes, its blosc header says {cbytes}"))
        if nbytes != flat.nbytes:
            raise IntegrityError(problem(f"decodes to {nbytes} bytes; the chunk has {flat.nbytes}"))
        codec: Any = Blosc()
    else:
        from numcodecs.zstd import Zstd

        size = _zstd_content_size(data)
        if size is not None and size != flat.nbytes:
            raise IntegrityError(problem(f"decodes to {size} bytes; the chunk has {flat.nbytes}"))
        codec = Zstd()
        if size is None:  # no size in the frame header: decode to a new buffer, then check and copy
            try:
                decoded = np.frombuffer(codec.decode(data), dtype=np.uint8)
            except RuntimeError as exc:
                raise IntegrityError(problem(f"cannot be decoded: {exc}")) from exc
            if decoded.nbytes != flat.nbytes:
                raise IntegrityError(problem(f"decodes to {decoded.nbytes} bytes; the chunk has {flat.nbytes}"))
            flat[:] = decoded
            return
    try:
        codec.decode(data, out=flat)
    except RuntimeError as exc:
        raise IntegrityError(problem(f"cannot be decoded (truncated or corrupt): {exc}")) from exc


def _zstd_content_size(data: np.ndarray) -> int | None:
    """The decompressed size a zstd frame header declares, or None if it declares none."""
    if len(data) < 6 or bytes(data[:4]) != b"\x28\xb5\x2f\xfd":
        return None
    fhd = int(data[4])
    fcs_flag, single = fhd >> 6, (fhd >> 5) & 1
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]
    width = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if width == 0 or len(data) < pos + width:
        return None
    value = int.from_bytes(bytes(data[pos:pos + width]), "little")
    return value + 256 if width == 2 else value


def _region(out: np.ndarray, valid: tuple[int, ...]) -> np.ndarray:
    """The valid region of a full chunk: a view when only the first axis is short, else a compact copy."""
    if valid == out.shape:
        return out
    if valid[1:] == out.shape[1:]:
        return out[: valid[0]]
    return np.ascontiguousarray(out[tuple(slice(0, v) for v in valid)])


def _mtime(directory: str | None) -> float:
    try:
        return os.stat(os.path.join(directory, "zarr.json")).st_mtime_ns if directory else 0
    except OSError:
        return 0
