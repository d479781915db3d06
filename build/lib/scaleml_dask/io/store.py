"""Writing datasets: zarr v3 groups with ``X(sample, feature)`` and ``y(sample)``, chunked along rows.

Everything that writes a dataset (ingestion, the synthetic generators, batch scoring, ``PCA.to_zarr``,
``TSNE.to_zarr``) goes through ``DatasetWriter``: the group is built under a temporary name beside the
destination and renamed into place only when complete, so a failure leaves no half-written store and never
damages an existing one. It replaces only a dataset written here, and only with ``overwrite=True``; anything
else at the destination is refused by name and left untouched (``io.destination``); the temporaries of writers
that died are removed by the next write beside them. Every chunk is written (also those equal to the fill
value, which zarr would skip), and each array gets an integrity manifest (``MANIFEST``: the chunk count, and
each chunk file's size and checksum), written into the temporary group before the rename, so the manifest and
the chunks appear together. Readers (``io.read``) check chunk existence and size always, and checksums where
it is cheap.

>>> import numpy as np, tempfile, os
>>> d = tempfile.mkdtemp()
>>> with DatasetWriter(os.path.join(d, "a.zarr"), n_features=2, chunk_rows=4) as w:
...     w.append(np.ones((6, 2)), np.zeros(6))
>>> import zarr; zarr.open_group(os.path.join(d, "a.zarr"), mode="r")["X"].shape
(6, 2)
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from . import destination

#: Codec of the stores this project writes, chosen by measuring decode speed against size on 250,000 x 32
#: float64 chunks (benchmarks/README.md, "Codec"): float data barely compress with blosc-lz4 while decoding
#: costs a multiple of no codec, and decoding is the floor of every one-pass algorithm here. Use "zstd" for
#: compressible data (e.g. values rounded in a CSV: 4x smaller) kept on remote or object storage.
DEFAULT_CODEC = "none"
#: Rows per chunk by default: this many, or fewer so that a chunk stays near ``TARGET_CHUNK_BYTES``.
DEFAULT_CHUNK_ROWS = 250_000
TARGET_CHUNK_BYTES = 64 * 2**20
CODECS = ("blosc-lz4", "blosc-zstd", "zstd", "none", "zarr-default")
#: The per-array integrity manifest, in the array's directory: ``{"format": 1, "hash": "xxh3-64",
#: "n_chunks": N, "chunks": {chunk key: [bytes, checksum]}}``.
MANIFEST = "integrity.json"
#: Chunk checksum. xxh3-64 measured cheaper than crc32c (``crc32c`` and ``google-crc32c``) on 64 MB chunks and
#: far cheaper on small ones (benchmarks/README.md, "Read path").
HASH = "xxh3-64"
#: zarr skips chunks equal to the fill value unless told otherwise; this project writes every chunk, so that
#: a chunk missing on disk is always an error.
EVERY_CHUNK = {"write_empty_chunks": True}


class IntegrityError(OSError):
    """A chunk that is missing, of the wrong size, undecodable or failing its checksum."""


def checksum(data: Any) -> str:
    """The checksum (``HASH``, hex) of a chunk file's bytes (any buffer)."""
    import xxhash

    return xxhash.xxh3_64_hexdigest(data)


def file_digest(path: str | os.PathLike) -> list:
    """``[size, checksum]`` of one chunk file, read through a memory map (no copy)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return [0, checksum(b"")]
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as m:
            return [size, checksum(m)]


def load_manifest(array_dir: str | os.PathLike) -> dict | None:
    """The manifest of the array stored in ``array_dir``, or None (a store written elsewhere)."""
    path = Path(array_dir, MANIFEST)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise IntegrityError(f"{path}: unreadable manifest: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != 1 or doc.get("hash") != HASH \
            or not isinstance(doc.get("chunks"), dict):
        raise IntegrityError(f"{path}: not a manifest of format 1 with hash {HASH}")
    return doc


def chunk_digests(group_path: str | os.PathLike, array: str, indices: Iterable[int]) -> dict[str, list]:
    """``{chunk key: [size, checksum]}`` of row chunks ``indices`` of ``array`` as they are on disk."""
    a = zarr.open_array(str(Path(group_path, array)), mode="r")
    out = {}
    for i in indices:
        key = a.metadata.encode_chunk_key((i,) + (0,) * (a.ndim - 1))
        try:
            out[key] = file_digest(Path(group_path, array, key))
        except FileNotFoundError:
            raise IntegrityError(f"{group_path}: array {array!r} chunk {i} was not written") from None
    return out


def compressors(codec: str | None) -> Any:
    """The zarr ``compressors=`` argument for a codec name in ``CODECS``."""
    codec = codec or DEFAULT_CODEC
    if codec == "blosc-lz4":
        return (zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)
    if codec == "blosc-zstd":
        return (zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),)
    if codec == "zstd":
        return (zarr.codecs.ZstdCodec(level=0),)
    if codec == "none":
        return None
    if codec == "zarr-default":
        return "auto"
    raise ValueError(f"unknown codec {codec!r}; choose one of {CODECS}")


def chunk_rows_for(n_features: int, itemsize: int = 8) -> int:
    """Rows per chunk: ``DEFAULT_CHUNK_ROWS``, or fewer so that a chunk stays near ``TARGET_CHUNK_BYTES``.

    The one chunk-size rule of the project: stores written here and numpy input turned into dask use it.
    """
    return int(min(DEFAULT_CHUNK_ROWS, max(1, TARGET_CHUNK_BYTES // max(1, n_features * itemsize))))


class DatasetWriter:
    """Write a dataset atomically, chunk by chunk.

    Use as a context manager. Either ``append`` blocks in order (length not known in advance), or pass
    ``n_samples`` and write whole chunks with ``write_chunk`` (possibly from several processes: the
    temporary path is ``self.tmp_path``, set on entering) and pass what each call returns to ``record``.
    Chunks left unrecorded are hashed at the end, from disk. Entering checks the destination
    (``destination.claim``): a dataset written here is replaced only with ``overwrite=True``, anything else
    refused (``DestinationError``).
    """

    def __init__(
        self,
        path: str | Path,
        n_features: int,
        *,
        n_samples: int = 0,
        chunk_rows: int | None = None,
        dtype: Any = np.float64,
        y_dtype: Any = None,
        feature_names: Sequence[str] | None = None,
        attrs: dict | None = None,
        codec: str | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.overwrite = bool(overwrite)
        self.n_features = int(n_features)
        self.chunk_rows = int(chunk_rows or chunk_rows_for(n_features, np.dtype(dtype).itemsize))
        self.tmp_path: Path | None = None
        self._n_samples = int(n_samples)
        self._dtype = np.dtype(dtype)
        self._y_dtype = None if y_dtype is None else np.dtype(y_dtype)
        self._attrs = dict(attrs or {})
        if feature_names is not None:
            names = [str(f) for f in feature_names]
            if len(names) != self.n_features:
                raise ValueError(f"{len(names)} feature names for {self.n_features} features")
            self._attrs["feature_names"] = names
        self._codec = codec or DEFAULT_CODEC
        self._rows = 0
        self._digests: dict[str, dict[str, list]] = {}
        self._hashed = 0  # appended chunks already in _digests (the ones no later append can touch)
        self.group: zarr.Group | None = None

    def __enter__(self) -> DatasetWriter:
        self._dest = destination.claim(self.path, "dataset", overwrite=self.overwrite)
        self._dest.parent.mkdir(parents=True, exist_ok=True)
        destination.clean_stale(self._dest.parent)
        self.tmp_path = destination.temporary_name(self._dest)
        g = zarr.open_group(str(self.tmp_path), mode="w-", zarr_format=3, attributes={
            destination.OWNER_ATTR: destination.owner("dataset")})  # marked as it is created
        self._create_arrays(g, compressors(self._codec))
        self.group = g
        return self

    def _create_arrays(self, g: zarr.Group, comp: Any) -> None:
        """The dataset's arrays and attributes in the new group (a subclass lays out its own)."""
        g.create_array("X", shape=(self._n_samples, self.n_features), chunks=(self.chunk_rows, self.n_features),
                       dtype=self._dtype, compressors=comp, dimension_names=("sample", "feature"),
                       fill_value=0)
        if self._y_dtype is not None:
            g.create_array("y", shape=(self._n_samples,), chunks=(self.chunk_rows,), dtype=self._y_dtype,
                           compressors=comp, dimension_names=("sample",), fill_value=0)
        g.attrs.update({**self._attrs, "codec": self._codec})

    def append(self, X: np.ndarray, y: np.ndarray | None = None) -> None:
        """Append rows (in order). Blocks need not be chunk-aligned but aligned ones write fastest."""
        assert self.group is not None, "use DatasetWriter as a context manager"
        X = np.asarray(X, dtype=self._dtype)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"block has shape {X.shape}; expected (rows, {self.n_features})")
        if self._y_dtype is not None and (y is None or len(y) != len(X)):
            raise ValueError("each appended block needs y of the same length")
        self.group["X"].with_config(EVERY_CHUNK).append(X, axis=0)
        if self._y_dtype is not None:
            self.group["y"].with_config(EVERY_CHUNK).append(np.asarray(y, dtype=self._y_dtype), axis=0)
        self._rows += len(X)
        complete = self._rows // self.chunk_rows
        self._hash(range(self._hashed, complete))
        self._hashed = complete

    def record(self, digests: dict[str, dict[str, list]]) -> None:
        """Record the chunk checksums a ``write_chunk`` call returned (e.g. gathered from the workers)."""
        for array, chunks in digests.items():
            self._digests.setdefault(array, {}).update(chunks)

    def _hash(self, indices: Iterable[int]) -> None:
        indices = list(indices)
        if indices:
            for array in self.group.array_keys():
                self.record({array: chunk_digests(self.tmp_path, array, indices)})

    def set_attrs(self, **attrs: Any) -> None:
        """Add attributes (e.g. provenance known only at the end)."""
        assert self.group is not None
        self.group.attrs.update(attrs)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp_path, ignore_errors=True)
            return
        try:
            self._write_manifests()
        except BaseException:
            shutil.rmtree(self.tmp_path, ignore_errors=True)
            raise
        destination.publish(self.tmp_path, self._dest)

    def _length(self) -> int:
        """Rows written (or reserved, with ``n_samples``)."""
        return int(self.group["X"].shape[0])

    def _write_manifests(self) -> None:
        """One manifest per array, hashing from disk the chunks nobody recorded (appended tail, or callers of
        ``write_chunk`` that did not pass its result to ``record``)."""
        n_chunks = -(-self._length() // self.chunk_rows)
        for array in sorted(self.group.array_keys()):
            recorded = self._digests.get(array, {})
            a = self.group[array]
            keys = {a.metadata.encode_chunk_key((i,) + (0,) * (a.ndim - 1)): i for i in range(n_chunks)}
            self.record({array: chunk_digests(self.tmp_path, array, [i for k, i in keys.items()
                                                                     if k not in recorded])})
            chunks = {k: self._digests[array][k] for k in keys}
            doc = {"format": 1, "hash": HASH, "n_chunks": n_chunks, "chunks": chunks}
            Path(self.tmp_path, array, MANIFEST).write_text(json.dumps(doc, indent=0))


def write_chunk(tmp_path: str, index: int, X: np.ndarray, y: np.ndarray | None,
                chunk_rows: int) -> dict[str, dict[str, list]]:
    """Write chunk ``index`` of a pre-sized dataset at ``tmp_path`` (runs on workers); returns the written
    chunks' digests, for ``DatasetWriter.record``."""
    g = zarr.open_group(tmp_path, mode="r+")
    start = index * chunk_rows
    g["X"].with_config(EVERY_CHUNK)[start:start + len(X)] = X
    if y is not None:
        g["y"].with_config(EVERY_CHUNK)[start:start + len(y)] = y
    return {array: chunk_digests(tmp_path, array, [index]) for array in (("X", "y") if y is not None else ("X",))}
