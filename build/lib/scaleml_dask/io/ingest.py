"""Ingestion of CSV (plain or .gz) / Parquet / .npy files into zarr datasets, chunk by chunk.

Every column keeps its kind (``io.table``): numbers, booleans, categories (strings, dictionary-encoded: the
levels stored once, sorted) and date-times (ISO 8601 strings, Parquet timestamps and dates: seconds since the
epoch, UTC). Kinds come from the Parquet schema, or from the first piece of a CSV (about one chunk): pyarrow's
inference, where a column of strings at least half of which are numbers is numeric (its other values are then errors
naming their line), one whose values are all ISO 8601 date-times is a date-time, and one with no value there
is numeric; ``kinds=`` (``--kind NAME=KIND``) declares them instead. A file whose columns are all numbers or
booleans becomes a matrix store (``X``, ``y``: today's form, booleans as 0 / 1); any other a table
(``io.table``'s layout). Missing values (empty, ``NA``, ``null``..., NaN) are kept as missing and counted per
column (``na="keep"``, the default), refused naming their line and column (``na="error"``), or, for numeric
columns, filled with a number (``na=<number>``).

Rows are written through ``store.DatasetWriter`` / ``table.TableWriter`` (temporary name, renamed when
complete), so peak memory does not grow with the size of the input and a failure never leaves a half-written
store.

Bad input is an :class:`IngestError` naming the file, line and column: an empty file, a header without rows,
a row with too few or too many fields, a value that is not of its column's kind, a missing value under
``na="error"``, a column too diverse to be a category (an id or free text: drop it), duplicate or unknown column
names, an all-null column, an unsupported Parquet type, an ``.npy`` of the wrong dtype or ndim.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._encode import MAX_LEVELS, ColumnEncoder, IngestError, kind_of, looks_like_datetimes
from .destination import claim
from .store import DatasetWriter, chunk_rows_for
from .table import KINDS, TableWriter, canonical, check_column_name, table_chunk_rows

__all__ = ["MAX_LEVELS", "IngestError", "ingest"]

NULL_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "NULL")
#: CSV spellings of booleans (pyarrow's).
TRUE_VALUES = ("1", "True", "TRUE", "true")
FALSE_VALUES = ("0", "False", "FALSE", "false")


def ingest(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    target: str | None = None,
    drop: Sequence[str] = (),
    chunk_rows: int | None = None,
    codec: str | None = None,
    na: str | float = "keep",
    kinds: Mapping[str, str] | None = None,
    max_levels: int = MAX_LEVELS,
    text: Sequence[str] = (),
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Convert a CSV (plain or .gz), Parquet or ``.npy`` file to a zarr dataset, chunk by chunk.

    ``target`` names the column that becomes ``y`` (a matrix store) or the table's target; ``drop`` the columns
    left out. ``kinds`` declares columns' kinds (``{"zip": "categorical"}``), ``max_levels`` caps a category's
    levels, ``na`` is the missing-value policy (module docstring). Rows are chunked only, near 64 MB per chunk
    by default. For ``.npy``, ``target`` may be a column index. ``text`` names columns kept as documents (the
    table's ``text`` kind: hashed by a pipeline's ``HashingVectorizer`` inside the consuming task;
    ``feature_extraction.text.ingest_hashed`` stores them hashed instead).
    A dataset already at ``dest`` is replaced only with ``overwrite=True``, and only if this project wrote it;
    anything else there (a folder of yours, a file) is refused by name and left untouched.
    """
    source, dest = Path(source), Path(dest)
    policy = na_policy(na)
    reader = open_reader(source, target=target, drop=drop, policy=policy, kinds=kinds, text=text)
    claim(dest, "dataset", overwrite=overwrite)  # refused before any work (the writer claims it again)
    bar = _progress_bar(reader.size_bytes, f"ingest {source.name}") if progress else None
    try:
        if isinstance(reader, _NpyReader):
            _write_matrix(reader, reader.blocks, dest, chunk_rows, codec, bar, {}, overwrite)
        else:
            _write_columns(reader, dest, chunk_rows, codec, bar, policy, max_levels, overwrite)
    finally:
        if bar is not None:
            bar.close()
    return dest


def open_reader(source: Path, *, target: Any, drop: Sequence[str], policy: str | float,
                kinds: Mapping[str, str] | None, text: Sequence[str] = ()) -> Any:
    """The reader of ``source`` by its file type (CSV, Parquet, ``.npy``), with ``text`` columns declared text."""
    if not source.exists():
        raise IngestError(f"{source}: no such file")
    kinds = dict(kinds or {})
    for c in text:
        if kinds.get(c, "text") != "text":
            raise IngestError(f"{source}: column {c!r} is declared {kinds[c]} and text")
        kinds[c] = "text"
    name = source.name.lower()
    if name.endswith(".npy"):
        if text:
            raise IngestError(f"{source}: a .npy file holds numbers, no text column ({list(text)})")
        return _NpyReader(source, target)
    if name.endswith((".csv", ".csv.gz", ".txt", ".txt.gz", ".tsv", ".tsv.gz")):
        return _CsvReader(source, target, drop, policy, kinds)
    if name.endswith((".parquet", ".pq")):
        return _ParquetReader(source, target, drop, policy, kinds)
    raise IngestError(f"{source}: unknown file type; expected .csv, .csv.gz, .parquet or .npy")


def encoded_chunks(reader: Any, rows: int, policy: str | float, max_levels: int = MAX_LEVELS
                   ) -> tuple[dict[str, ColumnEncoder], Iterator[tuple[np.ndarray, ...]]]:
    """The columns' encoders and the stored values of ``reader.used`` in chunks of ``rows`` rows (the last
    shorter): what ``ingest`` writes, for writers of other layouts (hashed text)."""
    kinds = reader.kinds
    fill = policy if isinstance(policy, float) else None
    encoders = {c: ColumnEncoder(c, kinds[c], max_levels=max_levels, fill=fill, inferred=c not in reader.declared)
                for c in reader.used}

    def encoded(rows: int) -> Iterator[tuple[np.ndarray, ...]]:
        for table, locate in reader.tables(rows):
            try:
                yield tuple(encoders[c].encode(table.column(c), locate) for c in reader.used)
            except IngestError as exc:
                raise IngestError(f"{reader.path}: {exc}") from None

    return encoders, _rechunk(encoded(rows), rows)


def _write_matrix(reader: Any, blocks: Callable[[int], Iterator[tuple]], dest: Path, chunk_rows: int | None,
                  codec: str | None, bar: Any, attrs: dict, overwrite: bool,
                  finish: Callable[[DatasetWriter], None] | None = None) -> None:
    """Write a matrix store (``X``, ``y``) from ``blocks(rows)`` of ``(X, y)``; ``finish(writer)`` at the end."""
    rows = int(chunk_rows or chunk_rows_for(len(reader.features)))
    attrs = {"source": str(reader.path), "target": reader.target, **attrs}
    with DatasetWriter(dest, len(reader.features), chunk_rows=rows, feature_names=reader.features,
                       y_dtype=np.float64 if reader.target is not None else None, attrs=attrs,
                       codec=codec, overwrite=overwrite) as writer:  # the destination is checked first
        n_rows = 0
        for X, y in _rechunk(blocks(rows), rows):
            writer.append(X, y)
            n_rows += len(X)
            if bar is not None:
                bar.update(reader.bytes_read - bar.n)
        _refuse_empty(reader, n_rows)
        if finish is not None:
            finish(writer)


def _write_columns(reader: Any, dest: Path, chunk_rows: int | None, codec: str | None, bar: Any,
                   policy: str | float, max_levels: int, overwrite: bool) -> None:
    """Encode the reader's columns by kind and write a matrix store (all numbers / booleans) or a table."""
    kinds = reader.kinds
    used_kinds = [kinds[c] for c in reader.used]
    if all(k in ("numeric", "boolean") for k in used_kinds):
        encoders: dict[str, ColumnEncoder] = {}

        def blocks(rows: int) -> Iterator[tuple]:
            found, chunks = encoded_chunks(reader, rows, policy, max_levels)
            encoders.update(found)
            for cols in chunks:
                X = np.empty((len(cols[0]), len(reader.features)))
                for j, c in enumerate(reader.features):
                    X[:, j] = canonical(kinds[c], cols[j])
                y = canonical(kinds[reader.target], cols[-1]) if reader.target is not None else None
                yield X, y

        def finish(writer: DatasetWriter) -> None:
            writer.set_attrs(n_missing={c: e.n_missing for c, e in encoders.items()})

        _write_matrix(reader, blocks, dest, chunk_rows, codec, bar,
                      {"feature_kinds": [kinds[c] for c in reader.features]}, overwrite, finish)
        return
    for c in reader.used:
        check_column_name(c, f"{reader.path}: ")
    rows = int(chunk_rows or table_chunk_rows(used_kinds))
    columns = [(c, kinds[c]) for c in reader.used]
    with TableWriter(dest, columns, chunk_rows=rows, target=reader.target, attrs={"source": str(reader.path)},
                     codec=codec, overwrite=overwrite) as writer:
        n_rows = 0
        encoders, chunks = encoded_chunks(reader, rows, policy, max_levels)
        for cols in chunks:
            writer.append_columns(dict(zip(reader.used, cols)))
            n_rows += len(cols[0])
            if bar is not None:
                bar.update(reader.bytes_read - bar.n)
        _refuse_empty(reader, n_rows)
        for c, e in encoders.items():
            if e.kind == "categorical":
                writer.set_levels(c, e.levels)
        writer.set_missing({c: e.n_missing for c, e in encoders.items()})


def _refuse_empty(reader: Any, n_rows: int) -> None:
    if n_rows == 0:
        only_header = " (only a header)" if isinstance(reader, _CsvReader) else ""
        raise IngestError(f"{reader.path}: no data rows{only_header}")


def _progress_bar(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True)


def _rechunk(blocks: Iterator[tuple[np.ndarray | None, ...]], rows: int) -> Iterator[tuple[np.ndarray | None, ...]]:
    """Regroup tuples of row-aligned arrays (None entries stay None) of any length into tuples of exactly
    ``rows`` rows (the last may be shorter)."""
    held: list[tuple] = []
    n = 0
    for block in blocks:
        held.append(block)
        n += len(block[0])
        while n >= rows:
            joined = tuple(None if parts[0] is None else (np.concatenate(parts) if len(parts) > 1 else parts[0])
                           for parts in zip(*held))
            yield tuple(None if a is None else a[:rows] for a in joined)
            held = [tuple(None if a is None else a[rows:] for a in joined)]
            n -= rows
    if n:
        yield tuple(None if parts[0] is None else np.concatenate(parts) for parts in zip(*held))


def na_policy(na: str | float) -> str | float:
    """``"keep"``, ``"error"`` or the number that fills missing numeric values (CLI strings accepted)."""
    if isinstance(na, str) and na.strip().lower() in ("keep", "error"):
        return na.strip().lower()
    try:
        return float(na)
    except (TypeError, ValueError):
        raise ValueError(f"na must be 'keep', 'error' or a number to fill missing values with; got {na!r}") from None


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


def _declared(kinds: Mapping[str, str] | None, used: Sequence[str], source: Path) -> dict[str, str]:
    """The caller's ``kinds``, checked: used columns, known kinds, names a table can hold."""
    kinds = dict(kinds or {})
    for c, k in kinds.items():
        if c not in used:
            raise IngestError(f"{source}: kinds names column {c!r}, which is not ingested (columns: {list(used)})")
        if k not in KINDS:
            raise IngestError(f"{source}: column {c!r}: unknown kind {k!r}; expected one of {KINDS}")
    return kinds


class _CsvReader:
    """Reads a CSV in pieces of about one chunk's bytes, each parsed by pyarrow with the columns' kinds.

    Reading the pieces ourselves (rather than through pyarrow's streaming reader, which reads ~32 blocks
    ahead) bounds memory to one piece and its parsed rows, and tells the first line of every piece, so a
    bad value is located by re-scanning only its piece. The first piece also decides the kinds not declared.
    """

    def __init__(self, path: Path, target: str | None, drop: Sequence[str], policy: str | float,
                 kinds: Mapping[str, str] | None) -> None:
        self.path, self.target, self.policy = path, target, policy
        self.delimiter = "\t" if ".tsv" in path.name.lower() else ","
        self.size_bytes = path.stat().st_size
        self.bytes_read = 0
        with self._open() as f:
            header = f.readline().decode("utf-8-sig").rstrip("\r\n")
        if not header:
            raise IngestError(f"{path}: empty file (no header line)")
        self.columns = [h.strip() for h in next(csv.reader([header], delimiter=self.delimiter))]
        self.features = _split_target(self.columns, target, drop, path)
        self.used = self.features + ([target] if target is not None else [])
        self.declared = _declared(kinds, self.used, path)
        self._kinds: dict[str, str] | None = None
        self._inferred_lines = 0

    def _open(self):
        return gzip.open(self.path, "rb") if self.path.name.lower().endswith(".gz") else open(self.path, "rb")

    def _pieces(self, rows: int) -> Iterator[tuple[bytes, int, bool]]:
        """(bytes of whole records, line of the first, last piece?) through the file, in pieces of about
        ``rows`` rows of numbers."""
        piece_bytes = int(min(64 << 20, max(1 << 20, rows * len(self.used) * 8)))
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
                yield buf, line, not data
                line += buf.count(b"\n")
                if not data:
                    return

    @property
    def kinds(self) -> dict[str, str]:
        """Each used column's kind: declared, or inferred from the first piece."""
        if self._kinds is None:
            first = next(self._pieces(chunk_rows_for(len(self.used))), None)
            self.bytes_read = 0
            self._kinds = dict(self.declared)
            if first is None:
                self._kinds.update({c: "numeric" for c in self.used if c not in self._kinds})
            else:
                self._kinds.update(self._infer(first[0], first[1]))
                self._inferred_lines = first[0].count(b"\n")
        return self._kinds

    def _infer(self, buf: bytes, first_line: int) -> dict[str, str]:
        import pyarrow as pa

        undeclared = [c for c in self.used if c not in self.declared]
        if not undeclared:
            return {}
        table = self._parse(buf, first_line, {c: None for c in undeclared})
        out = {}
        for c in undeclared:
            values = table.column(c)
            try:
                kind = kind_of(values.type) or "numeric"  # no value in the first piece: numeric
            except IngestError as exc:
                raise IngestError(f"{self.path}: column {c!r}: {exc}") from None
            if kind == "categorical":
                strings = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
                if _mostly_numbers(strings):
                    kind = "numeric"  # the others are errors, located by the parse
                elif looks_like_datetimes(strings):
                    kind = "datetime"
            out[c] = kind
        return out

    def _arrow_types(self, kinds: Mapping[str, str | None]) -> dict[str, Any]:
        import pyarrow as pa

        types = {"numeric": pa.float64(), "boolean": pa.bool_(), "categorical": pa.string(), "datetime": pa.string(),
                 "text": pa.string()}
        return {c: types[k] for c, k in kinds.items() if k is not None}

    def tables(self, rows: int) -> Iterator[tuple[Any, Callable[[int], str]]]:
        """Each piece (about ``rows`` rows) as an arrow table of the used columns typed by kind, with how to name
        its row ``i``."""
        kinds = self.kinds
        for buf, line, _ in self._pieces(rows):
            table = self._parse(buf, line, kinds)
            if self.policy == "error" and any(table.column(c).null_count for c in self.used):
                self._raise_missing(buf, line)
            yield table, self._locator(buf, line)

    def _locator(self, buf: bytes, first_line: int) -> Callable[[int], str]:
        def locate(i: int) -> str:
            return f"line {next(itertools.islice(self._records(buf, first_line), i, None))[0]}"

        return locate

    def _parse(self, buf: bytes, first_line: int, kinds: Mapping[str, str | None]):
        import pyarrow as pa
        import pyarrow.csv as pcsv

        try:
            return pcsv.read_csv(
                pa.py_buffer(buf),
                read_options=pcsv.ReadOptions(column_names=self.columns, use_threads=True),
                parse_options=pcsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=b'"' in buf),
                convert_options=pcsv.ConvertOptions(column_types=self._arrow_types(kinds), include_columns=self.used,
                                                    null_values=list(NULL_VALUES), strings_can_be_null=True,
                                                    true_values=list(TRUE_VALUES), false_values=list(FALSE_VALUES)))
        except pa.ArrowInvalid as exc:
            self._raise_located(buf, first_line, exc, kinds)

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
        used = [self.columns.index(c) for c in self.used]
        for line, row in self._records(buf, first_line):
            for j in used:
                if j < len(row) and row[j] in NULL_VALUES:
                    raise IngestError(f"{self.path}: line {line}, column {self.columns[j]!r}: missing value "
                                      f"({row[j]!r}); pass na='keep' (--na keep) to keep missing values, or "
                                      "na=<number> (--na VALUE) to fill numeric ones")
        raise IngestError(f"{self.path}: missing values from line {first_line}")  # pragma: no cover

    def _raise_located(self, buf: bytes, first_line: int, exc: Exception, kinds: Mapping[str, str | None]) -> None:
        """Re-scan one piece with the csv module and raise an IngestError naming the bad line and column."""
        checks = {"numeric": (_is_float, "a number", "numeric"),
                  "boolean": (_is_bool, "a boolean (true / false)", "boolean")}
        used = [(self.columns.index(c), checks[kinds[c]]) for c in self.used if kinds.get(c) in checks]
        bad: dict[int, list[tuple[int, str]]] = {}
        present = dict.fromkeys([j for j, _ in used], 0)
        n_rows = 0
        for line, row in self._records(buf, first_line):
            n_rows += 1
            if len(row) != len(self.columns):
                raise IngestError(f"{self.path}: line {line} has {len(row)} fields, expected {len(self.columns)} "
                                  f"(first differing column: {min(len(row), len(self.columns)) + 1})") from exc
            for j, (ok, *_) in used:
                value = row[j].strip()
                if value not in NULL_VALUES:
                    present[j] += 1
                    if not ok(value):
                        bad.setdefault(j, []).append((line, value))
        if not bad:
            raise IngestError(f"{self.path}: could not parse lines {first_line}-{first_line + n_rows}: {exc}") from exc
        j, hits = min(bad.items(), key=lambda kv: kv[1][0][0])
        line, value = hits[0]
        name = self.columns[j]
        _, what, adjective = dict(used)[j]
        declare = f"declare its kind: kinds={{{name!r}: 'categorical'}} (--kind {name}=categorical)"
        if len(hits) == present[j]:
            raise IngestError(f"{self.path}: column {name!r} is not {adjective} (e.g. {value!r} on line {line}); "
                              f"drop it or {declare}") from exc
        hint = ""
        if name not in self.declared:
            hint = (f" (its kind, {kinds[name]}, was inferred from lines 2-{self._inferred_lines + 1}; if it is "
                    f"not, {declare})")
        raise IngestError(f"{self.path}: line {line}, column {name!r}: {value!r} is not {what}{hint}") from exc


def _mostly_numbers(strings: Any) -> bool:
    """Whether at least half of the non-missing values of a string array are numbers (judged on its distinct
    values, weighted by their counts; at most 2,000 of them)."""
    import pyarrow.compute as pc

    counts = pc.value_counts(strings.drop_null() if hasattr(strings, "drop_null") else pc.drop_null(strings))
    values, n = counts.field("values").to_pylist()[:2000], counts.field("counts").to_numpy()[:2000]
    total = int(n.sum())
    return bool(total) and sum(int(c) for v, c in zip(values, n) if _is_float(v)) >= total / 2


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


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_bool(value: str) -> bool:
    return value in TRUE_VALUES or value in FALSE_VALUES


class _ParquetReader:
    """Reads a Parquet file batch by batch; kinds from its schema (or declared)."""

    def __init__(self, path: Path, target: str | None, drop: Sequence[str], policy: str | float,
                 kinds: Mapping[str, str] | None) -> None:
        import pyarrow.parquet as pq

        self.path, self.target, self.policy = path, target, policy
        self.file = pq.ParquetFile(path)
        schema = self.file.schema_arrow
        self.columns = list(schema.names)
        self.features = _split_target(self.columns, target, drop, path)
        self.used = self.features + ([target] if target is not None else [])
        self.declared = _declared(kinds, self.used, path)
        self.kinds = dict(self.declared)
        n = self.file.metadata.num_rows
        for c in self.used:
            if n and self._null_count(c) == n:
                raise IngestError(f"{path}: column {c!r} is all null ({n} rows); drop it")
            if c not in self.kinds:
                try:
                    self.kinds[c] = kind_of(schema.field(c).type)
                except IngestError as exc:
                    raise IngestError(f"{path}: column {c!r}: {exc}; drop it") from None
        strings = [c for c in self.used if c not in self.declared and self.kinds[c] == "categorical"]
        if strings and n:  # strings that are all ISO 8601 date-times (in the first batch) are date-times, as in a CSV
            first = next(self.file.iter_batches(batch_size=65536, columns=strings))
            self.kinds.update({c: "datetime" for c in strings if looks_like_datetimes(_decoded(first.column(c)))})
        self.size_bytes = max(1, n)
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

    def tables(self, rows: int) -> Iterator[tuple[Any, Callable[[int], str]]]:
        import pyarrow.compute as pc
        import pyarrow.types as pt

        start = 0
        for batch in self.file.iter_batches(batch_size=min(rows, 65536), columns=self.used):
            if self.policy == "error":
                for c in self.used:
                    col = batch.column(c)
                    missing = col.is_null()
                    if pt.is_floating(col.type):
                        missing = pc.or_kleene(missing, pc.is_nan(col))
                    if pc.any(missing).as_py():
                        row = start + int(np.flatnonzero(missing.to_numpy(zero_copy_only=False))[0])
                        raise IngestError(f"{self.path}: row {row}, column {c!r}: missing value; pass na='keep' "
                                          "(--na keep) to keep missing values, or na=<number> (--na VALUE) to "
                                          "fill numeric ones")
            offset = start
            start += batch.num_rows
            self.bytes_read += batch.num_rows
            yield batch, (lambda i, offset=offset: f"row {offset + i}")


def _decoded(values: Any) -> Any:
    import pyarrow.types as pt

    return values.dictionary_decode() if pt.is_dictionary(values.type) else values


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
