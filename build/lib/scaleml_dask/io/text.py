"""Text datasets: documents in Parquet files or plain text files, read chunk by chunk by the one read path.

``open_text(paths, text="text", target="label")`` opens a column of documents (and a target column) as an
``xarray.Dataset`` with ``text(sample)`` (a dask array of ``str``) and ``y(sample)``, one chunk per Parquet row
group, or per ``chunk_rows`` lines of a text file holding one document a line. The readers (``TextChunks``) are
registered with ``io.read``, so a pass reads each chunk inside the task that consumes it: hashing the documents
(``feature_extraction.text.HashingVectorizer``) then costs no task, no transfer and no stored copy. The files
are checked as they are read: a file that changed since it was opened (size or modification time), a row group
of another length, a missing value, bytes that are not UTF-8 are errors naming the file and the rows.

>>> import os, tempfile, pyarrow as pa, pyarrow.parquet as pq
>>> d = tempfile.mkdtemp()
>>> pq.write_table(pa.table({"text": ["a cat", "a dog", "two cats"], "label": [0, 1, 0]}), os.path.join(d, "a.parquet"),
...                row_group_size=2)
>>> ds = open_text(d, text="text", target="label")
>>> ds["text"].data.chunks, ds["y"].values.tolist()
(((2, 1),), [0, 1, 0])
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .read import _SOURCES
from .store import IntegrityError

if TYPE_CHECKING:
    import dask.array as da
    import xarray as xr

#: Lines per chunk of a plain text file (one document a line) by default.
TEXT_CHUNK_ROWS = 100_000
_PARQUET = (".parquet", ".pq")


@dataclass(frozen=True)
class Piece:
    """One chunk's rows: row group ``part`` of a Parquet file, or bytes ``[start, stop)`` of a text file."""

    path: str
    kind: str  # "parquet" | "lines"
    part: int
    start: int
    stop: int
    rows: int
    size: int  # the file's size and modification time when it was opened
    mtime_ns: int


@dataclass(frozen=True, eq=False)
class TextChunks:
    """Reader of one column of a set of text pieces: ``read_rows(i)`` is chunk ``i`` as a numpy array (``str``
    objects for documents, numbers for a target)."""

    label: str
    name: str
    pieces: tuple[Piece, ...]
    dtype: np.dtype

    ndim = 1

    @property
    def row_chunks(self) -> tuple[int, ...]:
        return tuple(p.rows for p in self.pieces)

    @property
    def shape(self) -> tuple[int]:
        return (sum(self.row_chunks),)

    @property
    def chunks(self) -> tuple[int]:
        return (max(self.row_chunks, default=0),)

    def __dask_tokenize__(self) -> tuple:
        return ("TextChunks", self.label, self.name, str(self.dtype), self.pieces)

    def for_rows(self, index: int) -> TextChunks:
        return self

    def read_rows(self, index: int) -> np.ndarray:
        p = self.pieces[index]
        first = sum(self.row_chunks[:index])
        where = f"dataset {self.label!r}: {p.path} (rows {first}-{first + p.rows - 1})"
        try:
            st = os.stat(p.path)
        except FileNotFoundError:
            raise IntegrityError(f"{where}: the file is missing") from None
        if (st.st_size, st.st_mtime_ns) != (p.size, p.mtime_ns):
            raise IntegrityError(f"{where}: the file changed since the dataset was opened (open it again)")
        if p.kind == "parquet":
            import pyarrow.parquet as pq

            col = pq.ParquetFile(p.path).read_row_group(p.part, columns=[self.name]).column(0)
            if len(col) != p.rows:
                raise IntegrityError(f"{where}: row group {p.part} has {len(col)} rows, expected {p.rows}")
            if col.null_count:
                import pyarrow.compute as pc

                row = int(pc.index(pc.is_null(col), True).as_py())
                raise ValueError(f"{where}: column {self.name!r} is missing at row {first + row}")
            return col.to_numpy(zero_copy_only=False).astype(self.dtype, copy=False)
        with open(p.path, "rb") as f:
            f.seek(p.start)
            raw = f.read(p.stop - p.start)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{where}: not UTF-8 at byte {p.start + exc.start}") from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) != p.rows:
            raise IntegrityError(f"{where}: {len(lines)} lines, expected {p.rows}")
        return np.array([s[:-1] if s.endswith("\r") else s for s in lines], dtype=object)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key[0] if isinstance(key, tuple) else key
        starts = np.concatenate([[0], np.cumsum(self.row_chunks)])
        r = range(self.shape[0])[key] if isinstance(key, slice) else None
        if r is not None and r.step == 1:
            i = int(np.searchsorted(starts, r.start, side="right")) - 1
            if len(r) and r.start == starts[i] and r.stop == starts[i + 1]:
                return self.read_rows(i)
        wanted = np.arange(self.shape[0])[key]
        flat = np.atleast_1d(wanted)
        chunk_of = np.searchsorted(starts, flat, side="right") - 1
        out = np.empty(len(flat), dtype=self.dtype)
        for i in np.unique(chunk_of):
            sel = chunk_of == i
            out[sel] = self.read_rows(int(i))[flat[sel] - starts[i]]
        return out if np.ndim(wanted) else out[0]


def _files(paths: Any) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    for p in map(str, paths):
        if os.path.isdir(p):
            found = sorted(f for f in glob.glob(os.path.join(p, "*")) if f.endswith((*_PARQUET, ".txt")))
            if not found:
                raise FileNotFoundError(f"{p}: no .parquet or .txt files in this directory")
            out += found
        elif any(ch in p for ch in "*?["):
            found = sorted(glob.glob(p))
            if not found:
                raise FileNotFoundError(f"{p}: no file matches")
            out += found
        elif os.path.exists(p):
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def _parquet_pieces(path: str, columns: list[str]) -> list[Piece]:
    import pyarrow.parquet as pq

    st = os.stat(path)
    f = pq.ParquetFile(path)
    names = f.schema_arrow.names
    for c in columns:
        if c not in names:
            raise ValueError(f"{path}: no column {c!r} (columns: {names})")
    md = f.metadata
    return [Piece(path, "parquet", g, 0, 0, md.row_group(g).num_rows, st.st_size, st.st_mtime_ns)
            for g in range(md.num_row_groups) if md.row_group(g).num_rows]


def _line_pieces(path: str, chunk_rows: int) -> list[Piece]:
    """Pieces of ``chunk_rows`` lines of a text file, found by one scan for newlines."""
    st = os.stat(path)
    with open(path, "rb") as f:
        data = np.fromfile(f, dtype=np.uint8)
    ends = np.flatnonzero(data == 10) + 1
    if len(data) and data[-1] != 10:
        ends = np.append(ends, len(data))
    pieces, start = [], 0
    for k in range(0, len(ends), chunk_rows):
        stop = int(ends[min(k + chunk_rows, len(ends)) - 1])
        pieces.append(Piece(path, "lines", 0, start, stop, min(chunk_rows, len(ends) - k), st.st_size, st.st_mtime_ns))
        start = stop
    return pieces


def text_array(source: TextChunks) -> da.Array:
    """A dask array over ``source``, registered with ``io.read`` (chunks read inside their consumers' tasks)."""
    import dask.array as da
    from dask.base import tokenize

    arr = da.from_array(source, chunks=(source.row_chunks,), inline_array=True, asarray=False, lock=False,
                        name=f"read-{source.name}-{tokenize(source)}", meta=np.empty(0, dtype=source.dtype))
    _SOURCES[arr.name] = source
    return arr


def open_text(paths: Any, *, text: str = "text", target: str | None = None, chunk_rows: int | None = None,
              label: str | None = None) -> xr.Dataset:
    """Documents (and a target) from Parquet files or text files as a Dataset: ``text(sample)``, ``y(sample)``.

    ``paths``: a file, a directory (its ``.parquet`` / ``.txt`` files in name order), a glob or a list of them.
    Parquet: the column ``text`` (and ``target``), one chunk per row group. Text files: one document a line
    (``target`` not available), ``chunk_rows`` lines a chunk (default ``TEXT_CHUNK_ROWS``).
    """
    import xarray as xr

    files = _files(paths)
    label = label or str(paths if isinstance(paths, (str, os.PathLike)) else files[0])
    pieces: list[Piece] = []
    for f in files:
        if f.endswith(_PARQUET):
            pieces += _parquet_pieces(f, [text] + ([target] if target else []))
        else:
            if target is not None:
                raise ValueError(f"{f}: a text file holds documents only; target={target!r} needs Parquet files")
            pieces += _line_pieces(f, int(chunk_rows or TEXT_CHUNK_ROWS))
    if not pieces:
        raise ValueError(f"dataset {label!r}: no documents in {files}")
    src = TextChunks(label, text, tuple(pieces), np.dtype(object))
    data = {"text": xr.DataArray(text_array(src), dims=("sample",))}
    if target is not None:
        import pyarrow.parquet as pq

        kind = pq.ParquetFile(files[0]).schema_arrow.field(target).type.to_pandas_dtype()
        ysrc = TextChunks(label, target, tuple(pieces), np.dtype(kind))
        data["y"] = xr.DataArray(text_array(ysrc), dims=("sample",))
    return xr.Dataset(data, attrs={"name": label, "files": files, "text_column": text, "target_column": target})


def load_chatterbot_corpus(languages: tuple[str, ...] = ("english",)) -> tuple[list[str], np.ndarray]:
    """Real text that a package ships: the utterances of the ChatterBot corpus (``chatterbot-corpus``, in the
    ``dev`` and ``bench`` extras), labelled by topic (``ai``, ``computers``, ``food``...), for the languages asked.
    Returns ``(documents, topics)``; nothing is downloaded.

    >>> docs, topics = load_chatterbot_corpus(("english",))
    >>> len(docs) > 4000, sorted(set(topics.tolist()))[:3]
    (True, ['ai', 'botprofile', 'coding'])
    """
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the real text sample comes from the package chatterbot-corpus: pip install "
                          "'scaleml-dask[bench]' (or [dev])")
    root = Path(next(iter(spec.submodule_search_locations)), "data")
    docs: list[str] = []
    topics: list[str] = []
    for lang in languages:
        files = sorted(Path(root, lang).glob("*.yml"))
        if not files:
            raise ValueError(f"the ChatterBot corpus has no language {lang!r}")
        for f in files:
            doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
            for conversation in doc.get("conversations") or []:
                for line in conversation:
                    if isinstance(line, str) and line.strip():
                        docs.append(line)
                        topics.append(f.stem)
    return docs, np.array(topics)


def is_text_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory of Parquet documents written by ``io.synthetic_text`` (it has its
    ``TEXT_META`` file)."""
    from .synthetic_text import TEXT_META

    return Path(path, TEXT_META).is_file()
