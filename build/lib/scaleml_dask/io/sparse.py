"""Sparse datasets: a CSR matrix stored per row chunk in zarr, read by the one read path as ``scipy.sparse``.

A sparse dataset is a zarr v3 group like a dense one, except that ``X`` is a group (attribute
``sparse_format: "csr-row-chunks"``, ``shape``, ``nnz``) holding three arrays with one row per row chunk::

    X/indptr   int32  (n_chunks, chunk_rows + 1)   chunk (1, chunk_rows + 1): the row chunk's own indptr (from 0)
    X/indices  int32  (n_chunks, max nnz)          chunk (1, nnz_chunk): its column indices, sorted in each row
    X/data     dtype  (n_chunks, max nnz)          chunk (1, nnz_chunk): its values
    y          (n_samples,)                        chunk (chunk_rows,), as in a dense dataset

Row chunk ``i`` is row ``i`` of each array: ``indptr[i]`` and the first ``ceil(nnz_i / nnz_chunk)`` chunks of
``indices[i]`` and ``data[i]`` (the rest of that row is never written, never read). So every row chunk is
written by one task, in parallel and in any order, and read by one task from its own chunk files; each array
carries the integrity manifest of ``io.store`` (size and checksum of every chunk written), and a read checks
that every chunk it needs exists and has its size (compressed ones also their checksum): a missing or
truncated chunk is an ``IntegrityError`` naming the dataset, array, chunk and rows.

``CSRChunks`` is the reader (the sparse twin of ``io.read.ZarrChunks``: ``read_rows(i)`` gives row chunk ``i``
as a ``scipy.sparse.csr_matrix``; uncompressed chunks are memory-mapped, no copy). ``sparse_dask_array`` wraps
it as a dask array of ``csr_matrix`` chunks, registered with ``io.read`` so that the pass driver reads each row
chunk inside the task that consumes it, like a dense store.

>>> import numpy as np, scipy.sparse as sp, tempfile, os, zarr
>>> A = sp.random(10, 6, density=0.3, format="csr", random_state=0)
>>> path = os.path.join(tempfile.mkdtemp(), "s.zarr")
>>> with SparseWriter(path, 6, chunk_rows=4, nnz_chunk=8) as w:
...     w.append(A, np.arange(10.0))
>>> X = sparse_dask_array(zarr.open_group(path, mode="r")["X"], label="s")
>>> X.chunks, type(X.blocks[0].compute()).__name__
(((4, 4, 2), (6,)), 'csr_matrix')
>>> bool((X.compute() != A).nnz == 0)
True
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from .._checks import csr_block
from .read import _SOURCES, ZarrChunks, chunk_source
from .store import (
    DEFAULT_CHUNK_ROWS,
    EVERY_CHUNK,
    HASH,
    MANIFEST,
    DatasetWriter,
    IntegrityError,
    file_digest,
)

if TYPE_CHECKING:
    import dask.array as da
    import scipy.sparse as sp

#: The ``sparse_format`` attribute of a sparse ``X`` group.
SPARSE_FORMAT = "csr-row-chunks"
#: Entries per chunk of ``X/data`` and ``X/indices`` by default (32 MB of float64 values): a row chunk whose
#: non-zeros fit in one chunk is read as one memory map of each array, no copy.
DEFAULT_NNZ_CHUNK = 2**22
#: Non-zeros a row chunk aims at when its rows are chosen from the density (``chunk_rows_for_nnz``).
TARGET_CHUNK_NNZ = 3 * DEFAULT_NNZ_CHUNK // 4
_PARTS = ("indptr", "indices", "data")


def is_sparse_group(node: Any) -> bool:
    """Whether the zarr node ``node`` is a sparse ``X`` group written here."""
    return isinstance(node, zarr.Group) and node.attrs.get("sparse_format") == SPARSE_FORMAT


def chunk_rows_for_nnz(nnz_per_row: float) -> int:
    """Rows per chunk for rows of ``nnz_per_row`` non-zeros on average: ``DEFAULT_CHUNK_ROWS``, or fewer so that
    a row chunk's non-zeros stay near ``TARGET_CHUNK_NNZ`` (one chunk of each array, most of the time)."""
    return int(min(DEFAULT_CHUNK_ROWS, max(1, TARGET_CHUNK_NNZ // max(1.0, nnz_per_row))))


# ------------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------------


class SparseWriter(DatasetWriter):
    """Write a sparse dataset atomically, row chunk by row chunk (the sparse twin of ``store.DatasetWriter``, whose
    destination claim, temporary name, owner marker and rename it shares).

    Use as a context manager. Either ``append`` rows in order (length not known in advance), or pass
    ``n_samples`` and write whole row chunks with ``write_sparse_chunk`` (on workers, in any order: the
    temporary path is ``self.tmp_path``, set on entering) and pass what each call returns to ``record``. A
    dataset written here is replaced only with ``overwrite=True``; anything else at ``path`` is refused.
    """

    def __init__(self, path: str | os.PathLike, n_features: int, *, n_samples: int = 0, chunk_rows: int | None = None,
                 nnz_chunk: int | None = None, dtype: Any = np.float64, y_dtype: Any = None,
                 feature_names: Any = None, attrs: dict | None = None, codec: str | None = None,
                 overwrite: bool = False) -> None:
        if int(n_features) >= 2**31:
            raise ValueError(f"{n_features} features: a sparse dataset holds at most 2**31 - 1 columns")
        super().__init__(path, n_features, n_samples=n_samples, chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS,
                         dtype=dtype, y_dtype=y_dtype, feature_names=feature_names, attrs=attrs, codec=codec,
                         overwrite=overwrite)
        self.nnz_chunk = int(nnz_chunk or DEFAULT_NNZ_CHUNK)
        self._nnz: dict[int, int] = {}
        self._pending: list[tuple[Any, Any]] = []
        self._pending_rows = 0

    def _create_arrays(self, g: zarr.Group, comp: Any) -> None:
        """``X`` as a group of ``indptr``, ``indices``, ``data`` (one row per row chunk) and ``y``."""
        n_chunks = -(-self._n_samples // self.chunk_rows)
        x = g.create_group("X")
        # The second axis is sized for the most non-zeros a row chunk can hold, so that row chunks can be
        # written in any order; it shrinks to the largest row chunk's nnz (a metadata change) at the end.
        cap = max(1, self.chunk_rows * self.n_features)
        x.create_array("indptr", shape=(n_chunks, self.chunk_rows + 1), chunks=(1, self.chunk_rows + 1),
                       dtype=np.int32, compressors=comp, fill_value=0)
        for name, dt in (("indices", np.int32), ("data", self._dtype)):
            x.create_array(name, shape=(n_chunks, cap), chunks=(1, self.nnz_chunk), dtype=dt, compressors=comp,
                           fill_value=0)
        if self._y_dtype is not None:
            g.create_array("y", shape=(self._n_samples,), chunks=(self.chunk_rows,), dtype=self._y_dtype,
                           compressors=comp, dimension_names=("sample",), fill_value=0)
        g.attrs.update({**self._attrs, "codec": self._codec})

    def append(self, X: Any, y: Any = None) -> None:
        """Append rows (any scipy.sparse or dense block of ``n_features`` columns) in order, with their ``y``."""
        assert self.group is not None, "use SparseWriter as a context manager"
        X = csr_block(X, self._dtype)
        if X.shape[1] != self.n_features:
            raise ValueError(f"block has shape {X.shape}; expected (rows, {self.n_features})")
        if self._y_dtype is not None and (y is None or len(y) != X.shape[0]):
            raise ValueError("each appended block needs y of the same length")
        self._pending.append((X, None if self._y_dtype is None else np.asarray(y, dtype=self._y_dtype)))
        self._pending_rows += X.shape[0]
        while self._pending_rows >= self.chunk_rows:
            self._flush(self.chunk_rows)

    def _flush(self, rows: int) -> None:
        import scipy.sparse as sp

        X = sp.vstack([p[0] for p in self._pending], format="csr")
        y = None if self._y_dtype is None else np.concatenate([p[1] for p in self._pending])
        head, tail = X[:rows], X[rows:]
        self._pending = [(tail, None if y is None else y[rows:])] if tail.shape[0] else []
        self._pending_rows = tail.shape[0]
        index = self._rows // self.chunk_rows
        self._grow(index + 1, self._rows + rows)
        self.record(write_sparse_chunk(str(self.tmp_path), index, head, None if y is None else y[:rows],
                                       self.chunk_rows))
        self._rows += rows

    def _grow(self, n_chunks: int, n_rows: int) -> None:
        x = self.group["X"]
        for name in _PARTS:
            if x[name].shape[0] < n_chunks:
                x[name].resize((n_chunks, x[name].shape[1]))
        if self._y_dtype is not None and self.group["y"].shape[0] < n_rows:
            self.group["y"].resize((n_rows,))

    def record(self, written: dict) -> None:
        """Record what a ``write_sparse_chunk`` call returned (digests of its chunk files and its nnz)."""
        self._nnz[written["index"]] = written["nnz"]
        for array, chunks in written["digests"].items():
            self._digests.setdefault(array, {}).update(chunks)

    def _write_manifests(self) -> None:
        """The last rows, the final shapes and ``X``'s attributes, then one manifest per array."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        x = self.group["X"]
        n_chunks = x["indptr"].shape[0]
        n = self._rows if self._n_samples == 0 else self._n_samples
        missing = sorted(set(range(n_chunks)) - set(self._nnz))
        if missing:
            raise IntegrityError(f"{self.path}: row chunk(s) {missing[:10]} of X were not written")
        nnz = [self._nnz[i] for i in range(n_chunks)]
        _shrink(x["indices"], (n_chunks, max(nnz, default=0)))
        _shrink(x["data"], (n_chunks, max(nnz, default=0)))
        x.attrs.update({"sparse_format": SPARSE_FORMAT, "shape": [n, self.n_features], "nnz": int(sum(nnz)),
                        "chunk_rows": self.chunk_rows, "nnz_chunk": self.nnz_chunk})
        for name in [f"X/{p}" for p in _PARTS] + (["y"] if self._y_dtype is not None else []):
            chunks = self._digests.get(name, {})
            doc = {"format": 1, "hash": HASH, "n_chunks": len(chunks), "chunks": chunks}
            Path(self.tmp_path, name, MANIFEST).write_text(json.dumps(doc, indent=0))


def _shrink(a: zarr.Array, shape: tuple[int, int]) -> None:
    """Set ``a``'s shape without touching its chunks (a metadata change: no chunk lies beyond it)."""
    from zarr.core.sync import sync

    async def resize() -> None:
        arr = await zarr.AsyncArray.open(a.store_path)
        await arr.resize(shape, delete_outside_chunks=False)

    sync(resize())


def write_sparse_chunk(tmp_path: str, index: int, X: Any, y: np.ndarray | None, chunk_rows: int) -> dict:
    """Write row chunk ``index`` (``chunk_rows`` rows, fewer for the last) of a sparse dataset being written at
    ``tmp_path`` (runs on workers); returns its nnz and the digests of the chunk files written, for
    ``SparseWriter.record``."""
    X = csr_block(X)
    g = zarr.open_group(tmp_path, mode="r+")
    x = g["X"]
    dtype = x["data"].dtype
    nnz = int(X.nnz)
    if nnz >= 2**31:
        raise ValueError(f"row chunk {index} has {nnz} non-zeros; a row chunk holds at most 2**31 - 1: use fewer rows "
                         "per chunk")
    indptr = np.full(chunk_rows + 1, nnz, dtype=np.int32)
    indptr[:X.shape[0] + 1] = X.indptr
    x["indptr"].with_config(EVERY_CHUNK)[index] = indptr
    if nnz:
        x["indices"].with_config(EVERY_CHUNK)[index, :nnz] = X.indices.astype(np.int32, copy=False)
        x["data"].with_config(EVERY_CHUNK)[index, :nnz] = X.data.astype(dtype, copy=False)
    digests = {"X/indptr": _digests(g, "X/indptr", [(index, 0)])}
    n_parts = -(-nnz // x["data"].chunks[1])
    for name in ("X/indices", "X/data"):
        digests[name] = _digests(g, name, [(index, j) for j in range(n_parts)])
    if y is not None:
        g["y"].with_config(EVERY_CHUNK)[index * chunk_rows:index * chunk_rows + len(y)] = y
        digests["y"] = _digests(g, "y", [(index,)])
    return {"index": index, "nnz": nnz, "digests": digests}


def _digests(g: zarr.Group, name: str, coords: list[tuple[int, ...]]) -> dict[str, list]:
    a = g[name]
    out = {}
    for c in coords:
        key = a.metadata.encode_chunk_key(c)
        path = Path(str(g.store.root), g.path, name, key)
        try:
            out[key] = file_digest(path)
        except FileNotFoundError:
            raise IntegrityError(f"{g.store.root}: array {name!r} chunk {c} was not written") from None
    return out


def write_sparse(X: da.Array, path: str | os.PathLike, *, y: Any = None, chunk_rows: int | None = None,
                 nnz_chunk: int | None = None, codec: str | None = None, feature_names: Any = None,
                 attrs: dict | None = None, overwrite: bool = False) -> Path:
    """Store a dask array of sparse (or dense) row chunks — e.g. hashed text, ``HashingVectorizer.transform`` of a
    text column — as a sparse dataset, one task per row chunk writing its own chunk files (in parallel, on the
    cluster when one is the scheduler), atomically. ``y`` (a 1-d dask or numpy array) is stored beside it. Row
    chunks are made regular first (``chunk_rows``, default the first chunk's rows).

    >>> import tempfile, os, numpy as np
    >>> from scaleml_dask.feature_extraction.text import HashingVectorizer
    >>> import dask.array as da
    >>> docs = da.from_array(np.array(["a cat sat", "the dog", "a cat and a dog"], dtype=object), chunks=2)
    >>> out = write_sparse(HashingVectorizer(n_features=64).transform(docs), os.path.join(tempfile.mkdtemp(), "h.zarr"),
    ...                    y=np.array([0, 1, 1]))
    >>> import scaleml_dask as sm; X = sm.open_dataset(out)["X"].data
    >>> X.chunks, X.compute().nnz
    (((2, 1), (64,)), 7)
    """
    import dask
    import dask.array as da

    xr = sys.modules.get("xarray")
    X = X.data if xr is not None and isinstance(X, xr.DataArray) else X
    y = y.data if xr is not None and isinstance(y, xr.DataArray) else y
    n, p = X.shape
    rows = int(chunk_rows or X.chunks[0][0])
    regular = tuple(min(rows, n - s) for s in range(0, n, rows))
    if X.chunks[0] != regular:
        X = X.rechunk({0: regular})
    if y is not None:
        y = y if isinstance(y, da.Array) else da.from_array(np.asarray(y), chunks=(regular,))
        y = y.rechunk((regular,)) if y.chunks[0] != regular else y
    dtype = X.dtype if X.dtype.kind == "f" else np.float64
    with SparseWriter(path, p, n_samples=n, chunk_rows=rows, nnz_chunk=nnz_chunk, dtype=dtype,
                      y_dtype=None if y is None else y.dtype, codec=codec, feature_names=feature_names,
                      attrs=attrs, overwrite=overwrite) as w:
        xs = X.to_delayed().ravel()
        ys = y.to_delayed().ravel() if y is not None else [None] * len(xs)
        write = dask.delayed(write_sparse_chunk, pure=False)
        tasks = [write(str(w.tmp_path), i, xb, yb, rows) for i, (xb, yb) in enumerate(zip(xs, ys))]
        for written in dask.compute(*tasks):
            w.record(written)
    return Path(path)


# ------------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Part(ZarrChunks):
    """The reader of one of ``X/indptr``, ``X/indices``, ``X/data``: errors name the row chunk and its rows."""

    row_chunk: int = 1
    n_rows: int = 0

    def describe(self, coords: tuple[int, ...]) -> str:
        i = coords[0]
        start = i * self.row_chunk
        stop = min(start + self.row_chunk, self.n_rows)
        where = "/".join(str(c) for c in coords)
        return f"dataset {self.label!r}: array {self.name!r} chunk {where} (row chunk {i}, rows {start}-{stop - 1})"


@dataclass(frozen=True, eq=False)
class CSRChunks:
    """Reader of a sparse ``X`` group: ``read_rows(i)`` is row chunk ``i`` as a ``csr_matrix`` (views of the
    memory-mapped chunk files when uncompressed and in one chunk); ``[key]`` serves dask's getter."""

    label: str
    name: str
    shape: tuple[int, int]
    chunks: tuple[int, int]
    dtype: np.dtype
    indptr: _Part
    indices: _Part
    data: _Part

    ndim = 2

    @property
    def grid(self) -> tuple[int, int]:
        return (math.ceil(self.shape[0] / self.chunks[0]) if self.chunks[0] else 0, 1)

    def __dask_tokenize__(self) -> tuple:
        return ("CSRChunks", self.label, self.name, self.shape, self.chunks, str(self.dtype),
                *(p.__dask_tokenize__() for p in (self.indptr, self.indices, self.data)))

    def read_rows(self, index: int) -> sp.csr_matrix:
        """Row chunk ``index`` as a ``csr_matrix`` of ``chunks[0]`` rows (fewer for the last)."""
        import scipy.sparse as sp

        rows = min(self.chunks[0], self.shape[0] - index * self.chunks[0])
        indptr = self.indptr.read_chunk((index, 0))[0, :rows + 1]
        nnz = int(indptr[-1])
        if indptr[0] != 0 or nnz < 0 or (rows and np.any(np.diff(indptr) < 0)):
            raise IntegrityError(f"{self.indptr.describe((index, 0))}: not a valid indptr (starts at {indptr[0]}, "
                                 "or decreases)")
        indices, data = (self._values(part, index, nnz) for part in (self.indices, self.data))
        if nnz and (int(indices.max()) >= self.shape[1] or int(indices.min()) < 0):
            raise IntegrityError(f"{self.indices.describe((index, 0))}: a column index outside 0-{self.shape[1] - 1}")
        return sp.csr_matrix((data, indices, indptr), shape=(rows, self.shape[1]), copy=False)

    @staticmethod
    def _values(part: _Part, index: int, nnz: int) -> np.ndarray:
        k = part.chunks[1]
        pieces = [part.read_chunk((index, j))[0] for j in range(-(-nnz // k))]
        if not pieces:
            return np.empty(0, dtype=part.dtype)
        return pieces[0][:nnz] if len(pieces) == 1 else np.concatenate(pieces)[:nnz]

    def for_rows(self, index: int) -> CSRChunks:
        """This reader with its manifests cut to row chunk ``index`` (what that row chunk's task carries)."""
        return replace(self, indptr=self.indptr.for_rows(index), indices=self.indices.for_rows(index),
                       data=self.data.for_rows(index))

    def __getitem__(self, key: Any) -> sp.csr_matrix:
        """The rows and columns ``key`` selects (whole row chunks as read; anything else read row chunk by row
        chunk and sliced)."""
        import scipy.sparse as sp

        key = key if isinstance(key, tuple) else (key,)
        rows = key[0] if key else slice(None)
        cols = key[1] if len(key) > 1 else slice(None)
        (n, p), c = self.shape, self.chunks[0]
        if isinstance(rows, slice):
            r = range(n)[rows]
            all_columns = isinstance(cols, slice) and range(p)[cols] == range(p)
            if all_columns and r.step == 1 and len(r) and r.start % c == 0 and r.stop == min(r.start + c, n):
                return self.read_rows(r.start // c)
            wanted = np.arange(r.start, r.stop, r.step)
        else:
            wanted = np.atleast_1d(np.arange(self.shape[0])[rows])
        if not len(wanted):
            return sp.csr_matrix((0, self.shape[1]), dtype=self.dtype)[:, cols]
        parts = [self.read_rows(int(i))[wanted[wanted // c == i] - i * c] for i in np.unique(wanted // c)]
        order = np.argsort(np.argsort(wanted // c, kind="stable"), kind="stable")
        out = sp.vstack(parts, format="csr")[order] if len(parts) > 1 else parts[0]
        return out[:, cols]


def csr_source(group: zarr.Group, *, label: str | None = None, name: str = "X",
               verify: bool | None = None) -> CSRChunks:
    """The reader of the sparse ``X`` group ``group`` (``label`` names the dataset in errors)."""
    if not is_sparse_group(group):
        raise ValueError(f"dataset {label!r}: {name!r} is not a sparse group (no sparse_format: {SPARSE_FORMAT!r})")
    attrs = group.attrs
    n, p = (int(s) for s in attrs["shape"])
    rows = int(attrs["chunk_rows"])
    label = label or str(group.store)
    parts = {}
    for part in _PARTS:
        src = chunk_source(group[part], label=label, name=f"{name}/{part}", verify=verify)
        parts[part] = _Part(**{f.name: getattr(src, f.name) for f in fields(src)}, row_chunk=rows, n_rows=n)
    if parts["indptr"].shape[0] != -(-n // rows):
        raise IntegrityError(f"dataset {label!r}: {name}/indptr has {parts['indptr'].shape[0]} row chunks; "
                             f"{n} rows of {rows} make {-(-n // rows)}")
    return CSRChunks(label=label, name=name, shape=(n, p), chunks=(rows, p), dtype=parts["data"].dtype, **parts)


def sparse_dask_array(group: zarr.Group, *, label: str | None = None, name: str = "X",
                      verify: bool | None = None) -> da.Array:
    """The sparse ``X`` group as a dask array of ``csr_matrix`` row chunks, read through ``CSRChunks`` (each row
    chunk inside the task consuming it, also in the pass driver)."""
    import dask.array as da
    import scipy.sparse as sp
    from dask.base import tokenize

    src = csr_source(group, label=label, name=name, verify=verify)
    n, p = src.shape
    rows = src.chunks[0]
    chunks = (tuple(min(rows, n - s) for s in range(0, n, rows)) or (0,), (p,))
    arr = da.from_array(src, chunks=chunks, inline_array=True, asarray=False, lock=False,
                        name=f"read-{name}-{tokenize(src)}", meta=sp.csr_matrix((0, 0), dtype=src.dtype))
    _SOURCES[arr.name] = src
    return arr


def verify_sparse(group: zarr.Group, *, label: str | None = None, name: str = "X") -> tuple[int, list[str]]:
    """Check every chunk a sparse ``X`` group's row chunks need (exists, has its size and its manifest
    checksum; indptr valid): ``(chunks checked, problems)``, one line a problem."""
    try:
        src = csr_source(group, label=label, name=name, verify=True)
    except (IntegrityError, KeyError, ValueError) as exc:
        return 0, [str(exc)]
    checked, problems = 0, []
    for i in range(src.grid[0]):
        try:
            X = src.read_rows(i)
            checked += 1 + 2 * -(-X.nnz // src.data.chunks[1])
        except IntegrityError as exc:
            problems.append(str(exc))
    for part in (src.indptr, src.indices, src.data):
        if part.manifest is not None and part.manifest.get("n_chunks") != len(part.manifest["chunks"]):
            problems.append(f"dataset {src.label!r}: array {part.name!r}: its manifest is inconsistent")
    return checked, problems
