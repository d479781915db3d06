"""Writing datasets: zarr v3 groups with ``X(sample, feature)`` and ``y(sample)``, chunked along rows.

Everything that writes a dataset (ingestion, the synthetic generators, ``PCA.to_zarr``, ``TSNE.to_zarr``)
goes through ``DatasetWriter``: the group is built under a temporary name beside the destination and
renamed into place only when complete, so a failure leaves no half-written store and never damages an
existing one.

>>> import numpy as np, tempfile, os
>>> d = tempfile.mkdtemp()
>>> with DatasetWriter(os.path.join(d, "a.zarr"), n_features=2, chunk_rows=4) as w:
...     w.append(np.ones((6, 2)), np.zeros(6))
>>> import zarr; zarr.open_group(os.path.join(d, "a.zarr"), mode="r")["X"].shape
(6, 2)
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

#: Codec of the stores this project writes, chosen by measuring decode speed against size on 250,000 x 32
#: float64 chunks (benchmarks/README.md, "Codec"): float data compress by <= 6 % with blosc-lz4 while decoding
#: 2-2.4x slower than no codec, and decoding is the floor of every one-pass algorithm here. Use "zstd" for
#: compressible data (e.g. values rounded in a CSV: 4x smaller) kept on remote or object storage.
DEFAULT_CODEC = "none"
#: Rows per chunk by default: this many, or fewer so that a chunk stays near ``TARGET_CHUNK_BYTES``.
DEFAULT_CHUNK_ROWS = 250_000
TARGET_CHUNK_BYTES = 64 * 2**20
CODECS = ("blosc-lz4", "blosc-zstd", "zstd", "none", "zarr-default")


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


def _tmp_sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}")


def replace_dir(tmp: Path, dest: Path) -> None:
    """Move the complete directory ``tmp`` to ``dest``, replacing any existing ``dest`` last."""
    if dest.exists():
        old = _tmp_sibling(dest, "old")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


class DatasetWriter:
    """Write a dataset atomically, chunk by chunk.

    Use as a context manager. Either ``append`` blocks in order (length not known in advance), or pass
    ``n_samples`` and write whole chunks with ``write_chunk`` (possibly from several processes: the
    temporary path is ``self.tmp_path``).
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
    ) -> None:
        self.path = Path(path)
        self.n_features = int(n_features)
        self.chunk_rows = int(chunk_rows or chunk_rows_for(n_features, np.dtype(dtype).itemsize))
        self.tmp_path = _tmp_sibling(self.path, "tmp")
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
        self.group: zarr.Group | None = None

    def __enter__(self) -> DatasetWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        g = zarr.open_group(str(self.tmp_path), mode="w", zarr_format=3)
        comp = compressors(self._codec)
        g.create_array("X", shape=(self._n_samples, self.n_features), chunks=(self.chunk_rows, self.n_features),
                       dtype=self._dtype, compressors=comp, dimension_names=("sample", "feature"),
                       fill_value=0)
        if self._y_dtype is not None:
            g.create_array("y", shape=(self._n_samples,), chunks=(self.chunk_rows,), dtype=self._y_dtype,
                           compressors=comp, dimension_names=("sample",), fill_value=0)
        g.attrs.update({**self._attrs, "codec": self._codec})
        self.group = g
        return self

    def append(self, X: np.ndarray, y: np.ndarray | None = None) -> None:
        """Append rows (in order). Blocks need not be chunk-aligned but aligned ones write fastest."""
        assert self.group is not None, "use DatasetWriter as a context manager"
        X = np.asarray(X, dtype=self._dtype)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"block has shape {X.shape}; expected (rows, {self.n_features})")
        self.group["X"].append(X, axis=0)
        if self._y_dtype is not None:
            if y is None or len(y) != len(X):
                raise ValueError("each appended block needs y of the same length")
            self.group["y"].append(np.asarray(y, dtype=self._y_dtype), axis=0)
        self._rows += len(X)

    def set_attrs(self, **attrs: Any) -> None:
        """Add attributes (e.g. provenance known only at the end)."""
        assert self.group is not None
        self.group.attrs.update(attrs)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp_path, ignore_errors=True)
            return
        replace_dir(self.tmp_path, self.path)


def write_chunk(tmp_path: str, index: int, X: np.ndarray, y: np.ndarray | None, chunk_rows: int) -> int:
    """Write chunk ``index`` of a pre-sized dataset at ``tmp_path``; returns rows written (runs on workers)."""
    g = zarr.open_group(tmp_path, mode="r+")
    start = index * chunk_rows
    g["X"][start:start + len(X)] = X
    if y is not None:
        g["y"][start:start + len(y)] = y
    return len(X)
