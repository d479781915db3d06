"""Ingestion of CSV (plain or .gz) / Parquet / .npy files into zarr datasets, chunk by chunk.

Rows are written through ``store.DatasetWriter`` (temporary name, renamed when complete), so peak memory does
not grow with the size of the input and a failure never leaves a half-written store.

Bad input is an :class:`IngestError` naming the file, line and column: an empty file, a header without rows,
a row with too few or too many fields, a non-numeric value, a missing value (unless ``na=`` gives a fill
value), duplicate or unknown column names, an all-null Parquet column, an ``.npy`` of the wrong dtype or ndim.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .store import DatasetWriter, chunk_rows_for

NULL_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "NULL")


class IngestError(ValueError):
    """Raised for bad input files; the message names the file, line and column."""


def ingest(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    target: str | None = None,
    drop: Sequence[str] = (),
    chunk_rows: int | None = None,
    codec: str | None = None,
    na: str | float = "error",
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Convert a CSV (plain or .gz), Parquet or ``.npy`` file to a zarr dataset, chunk by chunk.

    ``target`` names the column that becomes ``y`` (all others, minus ``drop``, become ``X``; for
    ``.npy``, ``target`` may be a column index). Rows are chunked only, near 64 MB per chunk by default.
    Feature names are kept in the ``feature_names`` attribute. Missing cells (empty, ``NA``, ``null``...)
    are an error naming their line and column with ``na="error"`` (the default); ``na=<number>`` fills them.
    A dataset already at ``dest`` is replaced only with ``overwrite=True``, and only if this project wrote it;
    anything else there (a folder of yours, a file) is refused by name and left untouched.
    """
    source, dest = Path(source), Path(dest)
    if not source.exists():
        raise IngestError(f"{source}: no such file")
    fill = _na_fill(na)
    name = source.name.lower()
    if name.endswith((".csv", ".csv.gz", ".txt", ".txt.gz", ".tsv", ".tsv.gz")):
        reader = _CsvReader(source, target, drop, fill)
    elif name.endswith((".parquet", ".pq")):
        reader = _ParquetReader(source, target, drop, fill)
    elif name.endswith(".npy"):
        reader = _NpyReader(source, target)
    else:
        raise IngestError(f"{source}: unknown file type; expected .csv, .csv.gz, .parquet or .npy")
    rows = int(chunk_rows or chunk_rows_for(len(reader.features)))
    attrs = {"source": str(source), "target": reader.target}
    with DatasetWriter(dest, len(reader.features), chunk_rows=rows, feature_names=reader.features,
                       y_dtype=np.float64 if reader.target is not None else None, attrs=attrs,
                       codec=codec, overwrite=overwrite) as writer:  # the destination is checked first
        bar = _progress_bar(reader.size_bytes, f"ingest {source.name}") if progress else None
        try:
            n_rows = 0
            for X, y in _rechunk(reader.blocks(rows), rows):
                writer.append(X, y)
                n_rows += len(X)
                if bar is not None:
                    bar.update(reader.bytes_read - bar.n)
        finally:
            if bar is not None:
                bar.close()
        if n_rows == 0:
            only_header = " (only a header)" if isinstance(reader, _CsvReader) else ""
            raise IngestError(f"{source}: no data rows{only_header}")
    return dest


def _progress_bar(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True)


def _rechunk(blocks: Iterator[tuple[np.ndarray, np.ndarray | None]], rows: int):
    """Regroup blocks of any size into blocks of exactly ``rows`` rows (the last may be shorter)."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    held = 0
    for X, y in blocks:
        xs.append(X)
        if y is not None:
            ys.append(y)
        held += len(X)
        while held >= rows:
            Xa = np.concatenate(xs) if len(xs) > 1 else xs[0]
            ya = (np.concatenate(ys) if len(ys) > 1 else ys[0]) if ys else None
            yield Xa[:rows], None if ya is None else ya[:rows]
            xs = [Xa[rows:]]
            ys = [] if ya is None else [ya[rows:]]
            held -= rows
    if held:
        yield (np.concatenate(xs), np.concatenate(ys) if ys else None)


def _na_fill(na: str | float) -> float | None:
    """The fill value of an ``na=`` policy: None for ``"error"``, else the number (CLI strings accepted)."""
    if isinstance(na, str) and na.strip().lower() == "error":
        return None
    try:
        return float(na)
    except (TypeError, ValueError):
        raise ValueError(f"na must be 'error' or a number to fill missing values with; got {na!r}") from None


def _split_target(columns: list[str], target: str | None, drop: Sequence[str], source: Path) -> list[str]:
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        where = ", ".join(f"{c!r} (columns {', '.join(str(i + 1) for i, d in enumerate(columns) if d == c)})"
                          for c in dupes)
        raise IngestError(f"{source}: duplicate column names: {where}")
    missing = [c for c in [*drop, *([target] if target is not None else [])] if c not in columns]
    if missing:
        raise IngestError(f"{source}: no column {missing[0]!r} (columns: {columns})")
    return [c for c in columns if c != target and c not in drop]


class _CsvReader:
    """Reads a CSV in pieces of about one chunk's bytes, each parsed by pyarrow.

    Reading the pieces ourselves (rather than through pyarrow's streaming reader, which reads ~32 blocks
    ahead) bounds memory to one piece and its parsed rows, and tells the first line of every piece, so a
    bad value is located by re-scanning only its piece.
    """

    def __init__(self, path: Path, target: str | None, drop: Sequence[str], fill: float | None) -> None:
        self.path, self.target, self.fill = path, target, fill
        self.delimiter = "\t" if ".tsv" in path.name.lower() else ","
        self.size_bytes = path.stat().st_size
        self.bytes_read = 0
        with self._open() as f:
            header = f.readline().decode("utf-8-sig").rstrip("\r\n")
        if not header:
            raise IngestError(f"{path}: empty file (no header line)")
        self.columns = [h.strip() for h in next(csv.reader([header], delimiter=self.delimiter))]
        self.features = _split_target(self.columns, target, drop, path)
        self._used = self.features + ([target] if target is not None else [])

    def _open(self):
        return gzip.open(self.path, "rb") if self.path.name.lower().endswith(".gz") else open(self.path, "rb")

    def blocks(self, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        piece_bytes = int(min(64 << 20, max(1 << 20, rows * len(self._used) * 8)))
        with self._open() as f:
            f.readline()
            line, carry = 2, b""
            while True:
                data = f.read(piece_bytes)
                buf = carry + data
                if data:
                    cut = _record_end(buf)
                    buf, carry = buf[:cut], buf[cut:]
                    if not buf:
                        continue
                elif not buf.strip():
                    return
                else:
                    carry = b""
                self.bytes_read = self.size_bytes if not data else min(self.size_bytes, self.bytes_read + len(data))
                table = self._parse(buf, line)
                if any(table.column(c).null_count for c in self._used):
                    if self.fill is None:
                        self._raise_missing(buf, line)
                    table = _fill_nulls(table, self._used, self.fill)
                line += buf.count(b"\n")
                X = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in self.features]) \
                    if self.features else np.empty((table.num_rows, 0))
                y = table.column(self.target).to_numpy(zero_copy_only=False) if self.target is not None else None
                yield X, y
                if not data:
                    return

    def _parse(self, buf: bytes, first_line: int):
        import pyarrow as pa
        import pyarrow.csv as pcsv

        try:
            return pcsv.read_csv(
                pa.py_buffer(buf),
                read_options=pcsv.ReadOptions(column_names=self.columns, use_threads=False),
                parse_options=pcsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=b'"' in buf),
                convert_options=pcsv.ConvertOptions(column_types={c: pa.float64() for c in self._used},
                                                    include_columns=self._used, null_values=list(NULL_VALUES),
                                                    strings_can_be_null=True))
        except pa.ArrowInvalid as exc:
            self._raise_located(buf, first_line, exc)

    def _records(self, buf: bytes, first_line: int) -> Iterator[tuple[int, list[str]]]:
        """(line where the record starts, its fields) for each non-empty record of one piece."""
        reader = csv.reader(io.StringIO(buf.decode("utf-8", errors="replace"), newline=""), delimiter=self.delimiter)
        start = 0
        try:
            for row in reader:
                if row:
                    yield first_line + start, row
                start = reader.line_num
        except csv.Error as exc:
            raise IngestError(f"{self.path}: line {first_line + start}: {exc}") from None

    def _raise_missing(self, buf: bytes, first_line: int) -> None:
        """Raise an IngestError naming the first missing value of one piece (policy ``na="error"``)."""
        used = [self.columns.index(c) for c in self._used]
        for line, row in self._records(buf, first_line):
            for j in used:
                if j < len(row) and row[j] in NULL_VALUES:
                    raise IngestError(f"{self.path}: line {line}, column {self.columns[j]!r}: missing value "
                                      f"({row[j]!r}); pass na=<number> (--na VALUE) to fill missing values")
        raise IngestError(f"{self.path}: missing values from line {first_line}")  # pragma: no cover

    def _raise_located(self, buf: bytes, first_line: int, exc: Exception) -> None:
        """Re-scan one piece with the csv module and raise an IngestError naming the bad line and column."""
        used = [self.columns.index(c) for c in self._used]
        bad: dict[int, list[tuple[int, str]]] = {}
        n_rows = 0
        for line, row in self._records(buf, first_line):
            n_rows += 1
            if len(row) != len(self.columns):
                raise IngestError(f"{self.path}: line {line} has {len(row)} fields, expected {len(self.columns)} "
                                  f"(first differing column: {min(len(row), len(self.columns)) + 1})") from exc
            for j in used:
                value = row[j].strip()
                if value not in NULL_VALUES and not _is_float(value):
                    bad.setdefault(j, []).append((line, value))
        if not bad:
            raise IngestError(f"{self.path}: could not parse lines {first_line}-{first_line + n_rows}: {exc}") from exc
        j, hits = min(bad.items(), key=lambda kv: kv[1][0][0])
        line, value = hits[0]
        if len(hits) == n_rows:
            raise IngestError(f"{self.path}: column {self.columns[j]!r} is not numeric (e.g. {value!r} on line "
                              f"{line}); drop it or encode it as numbers first") from exc
        raise IngestError(f"{self.path}: line {line}, column {self.columns[j]!r}: {value!r} is not a number") \
            from exc


def _record_end(buf: bytes) -> int:
    """Offset just past the last newline of ``buf`` outside a quoted field (0 if none); ``buf`` starts a record.

    A newline is inside quotes when an odd number of ``"`` precede it (an escaped ``""`` counts twice), so
    counting quotes from the end back to each candidate newline finds the cut in one pass over the tail.
    """
    total, after, end = buf.count(b'"'), 0, len(buf)
    while (p := buf.rfind(b"\n", 0, end)) >= 0:
        after += buf.count(b'"', p, end)
        if (total - after) % 2 == 0:
            return p + 1
        end = p
    return 0


def _fill_nulls(table: Any, columns: Sequence[str], fill: float) -> Any:
    import pyarrow.compute as pc

    for c in columns:
        i = table.schema.get_field_index(c)
        table = table.set_column(i, c, pc.fill_null(table.column(c), fill))
    return table


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_numeric(t: Any) -> bool:
    import pyarrow.types as pt

    return pt.is_integer(t) or pt.is_floating(t) or pt.is_boolean(t) or pt.is_null(t)


class _ParquetReader:
    def __init__(self, path: Path, target: str | None, drop: Sequence[str], fill: float | None) -> None:
        import pyarrow.parquet as pq

        self.path, self.target, self.fill = path, target, fill
        self.file = pq.ParquetFile(path)
        schema = self.file.schema_arrow
        self.columns = list(schema.names)
        self.features = _split_target(self.columns, target, drop, path)
        self._used = self.features + ([target] if target is not None else [])
        for c in self._used:
            if not _is_numeric(schema.field(c).type):
                raise IngestError(f"{path}: column {c!r} is not numeric (type {schema.field(c).type});"
                                  " drop it or encode it as numbers first")
            if self.file.metadata.num_rows and self._null_count(c) == self.file.metadata.num_rows:
                raise IngestError(f"{path}: column {c!r} is all null ({self.file.metadata.num_rows} rows); "
                                  "drop it")
        self.size_bytes = max(1, self.file.metadata.num_rows)
        self.bytes_read = 0

    def _null_count(self, column: str) -> int | None:
        """Nulls in ``column`` by the file's statistics (a null-typed column: all rows); None if not recorded."""
        import pyarrow.types as pt

        if pt.is_null(self.file.schema_arrow.field(column).type):
            return self.file.metadata.num_rows
        meta, total = self.file.metadata, 0
        j = self.file.schema_arrow.get_field_index(column)
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(j).statistics
            if stats is None or not stats.has_null_count:
                return None
            total += stats.null_count
        return total

    def blocks(self, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        start = 0
        for batch in self.file.iter_batches(batch_size=min(rows, 65536), columns=self._used):
            if any(batch.column(c).null_count for c in self._used):
                if self.fill is None:
                    c = next(c for c in self._used if batch.column(c).null_count)
                    row = start + int(np.flatnonzero(batch.column(c).is_null().to_numpy(zero_copy_only=False))[0])
                    raise IngestError(f"{self.path}: row {row}, column {c!r}: missing value; pass na=<number> "
                                      "(--na VALUE) to fill missing values")
                batch = _fill_nulls(batch, self._used, self.fill)
            start += batch.num_rows
            X = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                                 for c in self.features])
            y = (batch.column(self.target).to_numpy(zero_copy_only=False).astype(np.float64)
                 if self.target is not None else None)
            self.bytes_read += batch.num_rows
            yield X, y


class _NpyReader:
    """Reads a 2-d ``.npy`` file block by block with plain reads (no mmap, so RSS stays bounded)."""

    def __init__(self, path: Path, target: str | int | None) -> None:
        self.path = path
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if len(shape) != 2:
            raise IngestError(f"{path}: expected a 2-d array, got shape {shape}")
        if fortran:
            raise IngestError(f"{path}: Fortran-ordered arrays cannot be streamed by rows; save it C-ordered")
        if dtype.kind not in "biuf":
            raise IngestError(f"{path}: dtype {dtype} is not a real number type (bool, int, uint or float)")
        self.shape, self.dtype = shape, dtype
        names = [f"x{i}" for i in range(shape[1])]
        if target is not None:
            idx = int(target[1:]) if isinstance(target, str) and target.startswith("x") else int(target)
            if not -shape[1] <= idx < shape[1]:
                raise IngestError(f"{path}: target column {target!r} out of range for {shape[1]} columns")
            self.target_index = idx % shape[1]
            self.target = names[self.target_index]
        else:
            self.target_index, self.target = None, None
        self.features = [n for i, n in enumerate(names) if i != self.target_index]
        self.size_bytes = int(np.prod(shape)) * dtype.itemsize
        self.bytes_read = 0

    def blocks(self, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        n, d = self.shape
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for start in range(0, n, rows):
                count = min(rows, n - start)
                block = np.fromfile(f, dtype=self.dtype, count=count * d).reshape(count, d)
                self.bytes_read += block.nbytes
                if self.target_index is None:
                    yield block.astype(np.float64, copy=False), None
                else:
                    y = block[:, self.target_index].astype(np.float64)
                    yield np.delete(block, self.target_index, axis=1).astype(np.float64), y
