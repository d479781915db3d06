"""Tables: named columns of several kinds in one zarr group — the layout every table reader and writer shares.

A dataset is either a **matrix** (today's form: ``X(sample, feature)`` float64 and ``y(sample)``, written when
every column is a number or a boolean) or a **table** (format 1, below), written by ``ingest`` as soon as a
column is categorical or a date-time, and by the table generators of ``io.synthetic``.

Table layout (format 1)
-----------------------
- The zarr v3 group's attribute ``scaleml_table`` (``LAYOUT_ATTR``) is ``{"format": 1, "columns": [names in
  file order], "target": name or null}``; ``source``, ``codec`` and provenance attributes as in a matrix store.
- One **1-d array per column**, named as the column, dims ``("sample",)``, all with the same row chunks (chosen
  so that a chunk of every column together is near 64 MB), every chunk written, each with its integrity
  manifest (``store.MANIFEST``). The target is one of these columns. Each array's attributes hold ``kind`` and
  ``n_missing`` (missing values in the column), and per kind:

  ========== ========= ============================================================= =======================
  kind       dtype     values                                                        missing
  ========== ========= ============================================================= =======================
  numeric    float64   the numbers (integers exact up to 2**53)                      NaN
  boolean    int8      0 (false) / 1 (true)                                          -1 (``MISSING_CODE``)
  categorical int32    codes into ``levels`` (attribute: the level strings, sorted    -1 (``MISSING_CODE``)
                       by code point, stored once)
  datetime   float64   seconds since 1970-01-01T00:00:00 UTC (``time_unit: "s"``;      NaN
                       naive times are read as UTC; ~1 µs resolution near today)
  ========== ========= ============================================================= =======================

  Levels are sorted, so they and the codes depend only on the set of values in the file: not on the chunking,
  the number of workers or where in the file a level first appears (``ingest`` assigns codes in order of
  appearance while it streams, then rewrites the code arrays of the temporary store in sorted order before the
  rename). A code is never a number of the data: an estimator refuses a categorical column (``TableError``),
  and ``-1`` is never a level.

- In xarray (``sm.open_dataset``) a table is a Dataset with one variable per column along ``sample``, backed by
  dask (read through ``io.read``), the column's attributes shown with it (``ds["region"].attrs["levels"]``);
  ``to_frame`` turns a block of stored columns into a pandas DataFrame (categoricals as ``pd.Categorical``).
- The **canonical** form the preprocessing computes on (``canonical``): every kind but categorical as float64
  with NaN for missing (booleans 0/1), categoricals as codes with ``MISSING_CODE`` for missing and
  ``UNKNOWN_CODE`` (``-2``, never stored) for a level outside the fitted levels.

Matrix stores record, where ``ingest`` wrote them, ``feature_kinds`` (numeric / boolean per feature) and
``n_missing`` (per column name, the target's included) among the group's attributes; missing values there are
NaN.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "t.zarr")
>>> with TableWriter(path, [("region", "categorical"), ("price", "numeric")], chunk_rows=2) as w:
...     w.append_columns({"region": np.array([1, 0, -1], np.int32), "price": np.array([1.0, np.nan, 3.0])})
...     w.set_levels("region", ["south", "north"])    # in order of appearance: rewritten sorted at the end
>>> import zarr; a = zarr.open_group(path, mode="r")["region"]
>>> a[:].tolist(), a.attrs["levels"], a.attrs["n_missing"]
([0, 1, -1], ['north', 'south'], 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .store import EVERY_CHUNK, DatasetWriter, chunk_digests, chunk_rows_for

#: The group attribute that marks a table, and its format.
LAYOUT_ATTR = "scaleml_table"
TABLE_FORMAT = 1
#: Column kinds.
KINDS = ("numeric", "boolean", "categorical", "datetime", "text")
#: Stored dtype of each kind (text: zarr's variable-length UTF-8 strings, numpy ``StringDType`` when read; as
#: Python strings, an object array, in the canonical form).
DTYPES = {"numeric": np.dtype(np.float64), "boolean": np.dtype(np.int8), "categorical": np.dtype(np.int32),
          "datetime": np.dtype(np.float64), "text": np.dtype(object)}
#: Bytes a text value is counted as when a table's chunk rows are chosen (a short document).
TEXT_ROW_BYTES = 512
#: A missing categorical or boolean value; never a level's code.
MISSING_CODE = -1
#: A level outside the fitted levels, in the canonical form only (never stored).
UNKNOWN_CODE = -2
#: What datetime values count, from the epoch.
TIME_UNIT = "s"
EPOCH = "1970-01-01T00:00:00Z"


class TableError(ValueError):
    """A table that cannot be used as asked: an estimator handed category codes or missing values, a bad
    column name. ``column`` names the column."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


def check_column_name(name: str, where: str = "") -> None:
    """Raise a ``TableError`` unless ``name`` can be a zarr array's name (the table's column array)."""
    bad = (not name or "/" in name or "\\" in name or "\x00" in name or name in (".", "..", "zarr.json")
           or name.startswith("__"))
    if bad:
        raise TableError(f"{where}column {name!r} cannot name a zarr array (no '/', '\\', NUL, '.', '..', "
                         "'zarr.json' or leading '__'); rename it", column=name)


def row_bytes(kinds: Sequence[str]) -> int:
    """Bytes of one row of columns of these kinds, as stored."""
    return int(sum(TEXT_ROW_BYTES if k == "text" else DTYPES[k].itemsize for k in kinds)) or 1


def table_chunk_rows(kinds: Sequence[str]) -> int:
    """Rows per chunk of a table: the project's rule (``store.chunk_rows_for``) on the row's stored bytes."""
    return chunk_rows_for(1, row_bytes(kinds))


class TableWriter(DatasetWriter):
    """Write a table atomically, column arrays chunk by chunk (``DatasetWriter``'s temporary name, manifests and
    rename).

    ``columns`` is ``[(name, kind), ...]`` in order. Either ``append_columns`` (in order) or, with
    ``n_samples``, ``write_table_chunk`` from any process and ``record``. ``set_levels`` gives a categorical
    column's levels in the order its codes were assigned; ``set_missing`` the missing counts (else they are
    counted from the stored arrays at the end). Levels are sorted, and codes rewritten to match, before the
    manifests are written.
    """

    def __init__(self, path: str | Path, columns: Sequence[tuple[str, str]], *, n_samples: int = 0,
                 chunk_rows: int | None = None, target: str | None = None, attrs: dict | None = None,
                 codec: str | None = None, overwrite: bool = False) -> None:
        columns = [(str(n), str(k)) for n, k in columns]
        names = [n for n, _ in columns]
        for name, kind in columns:
            check_column_name(name)
            if kind not in KINDS:
                raise ValueError(f"column {name!r}: unknown kind {kind!r}; expected one of {KINDS}")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names: {sorted({n for n in names if names.count(n) > 1})}")
        if target is not None and target not in names:
            raise ValueError(f"target {target!r} is not a column ({names})")
        super().__init__(path, len(columns), n_samples=n_samples,
                         chunk_rows=chunk_rows or table_chunk_rows([k for _, k in columns]), attrs=attrs,
                         codec=codec, overwrite=overwrite)
        self.columns = columns
        self.target = target
        self._levels: dict[str, list[str]] = {}
        self._missing: dict[str, int] = {}

    def _create_arrays(self, g: Any, comp: Any) -> None:
        """One 1-d array per column (its kind's dtype, missing as NaN or the missing code) and the layout."""
        for name, kind in self.columns:
            dtype = DTYPES[kind]
            if kind == "text":  # variable-length UTF-8 (zarr's own codec: a missing document is stored as "")
                a = g.create_array(name, shape=(self._n_samples,), chunks=(self.chunk_rows,), dtype=str,
                                   dimension_names=("sample",), fill_value="")
                a.attrs.update(_kind_attrs(kind))
                continue
            a = g.create_array(name, shape=(self._n_samples,), chunks=(self.chunk_rows,), dtype=dtype,
                               compressors=comp, dimension_names=("sample",),
                               fill_value=np.nan if dtype.kind == "f" else MISSING_CODE)
            a.attrs.update(_kind_attrs(kind))
        layout = {"format": TABLE_FORMAT, "columns": [n for n, _ in self.columns], "target": self.target}
        g.attrs.update({**self._attrs, LAYOUT_ATTR: layout, "codec": self._codec})

    def append_columns(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append rows to every column (in order): ``{name: stored values}``, all of one length.

        Uncompressed columns appended a whole chunk at a time (what ``ingest`` does) are written straight to
        their chunk files, the checksum taken from the bytes written, and the arrays' shapes set once at the end:
        zarr's ``append`` would rewrite every array's metadata and go through its event loop for each chunk of
        each column (``_raw_append``; read back through zarr by the tests)."""
        assert self.group is not None, "use TableWriter as a context manager"
        lengths = {len(columns[n]) for n, _ in self.columns}
        if len(lengths) != 1:
            raise ValueError(f"columns of different lengths appended: {sorted(lengths)}")
        n = lengths.pop()
        if (self._codec == "none" and self._rows % self.chunk_rows == 0 and n <= self.chunk_rows
                and all(k != "text" for _, k in self.columns)):
            self._raw_append(columns, n)
            return
        self._sync_shapes()
        for name, kind in self.columns:
            values = np.asarray(columns[name], dtype=DTYPES[kind] if kind != "text" else str)
            self.group[name].with_config(EVERY_CHUNK).append(values, axis=0)
        self._rows += n
        complete = self._rows // self.chunk_rows
        self._hash(range(self._hashed, complete))
        self._hashed = complete

    def _raw_append(self, columns: Mapping[str, np.ndarray], n: int) -> None:
        """One chunk of every uncompressed column written as its chunk file (padded with the fill value)."""
        from .store import checksum

        index = self._rows // self.chunk_rows
        arrays = self.__dict__.setdefault("_arrays", {})  # a zarr lookup goes through its event loop: once
        for name, kind in self.columns:
            a = arrays.get(name) or arrays.setdefault(name, self.group[name])
            block = np.full(self.chunk_rows, MISSING_CODE if DTYPES[kind].kind == "i" else np.nan, dtype=DTYPES[kind])
            block[:n] = columns[name]
            data = block.astype(DTYPES[kind].newbyteorder("<"), copy=False).tobytes()
            key = a.metadata.encode_chunk_key((index,))
            path = Path(self.tmp_path, name, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.record({name: {key: [len(data), checksum(data)]}})
        self._rows += n
        self._hashed = self._rows // self.chunk_rows
        self._raw_rows = self._rows

    def _sync_shapes(self) -> None:
        """Give every array the rows ``_raw_append`` wrote (one metadata write per array)."""
        if getattr(self, "_raw_rows", None) is not None:
            for name, _ in self.columns:
                self.group[name].resize((self._raw_rows,))
            self._raw_rows = None

    def set_levels(self, name: str, levels: Sequence[str]) -> None:
        """The levels of categorical column ``name``, code ``i`` being ``levels[i]`` in what was written."""
        self._levels[name] = [str(v) for v in levels]

    def set_missing(self, counts: Mapping[str, int]) -> None:
        """Missing values per column (counted by the caller as it wrote)."""
        self._missing.update({k: int(v) for k, v in counts.items()})

    def _length(self) -> int:
        return int(self.group[self.columns[0][0]].shape[0])

    def _write_manifests(self) -> None:
        self._sync_shapes()
        n = self._length()
        for name, kind in self.columns:
            a = self.group[name]
            if kind == "categorical":
                levels = self._levels.get(name, list(a.attrs.get("levels", [])))
                order = sorted(range(len(levels)), key=levels.__getitem__)
                if order != list(range(len(levels))):
                    self._recode(name, np.argsort(np.asarray(order, dtype=np.int64)).astype(np.int32))
                a.attrs["levels"] = [levels[i] for i in order]
            if name not in self._missing:
                self._missing[name] = self._count_missing(name, kind, n)
            a.attrs["n_missing"] = self._missing[name]
        super()._write_manifests()

    def _recode(self, name: str, new_code: np.ndarray) -> None:
        """Rewrite the codes of column ``name`` chunk by chunk (``new_code[old]``); its digests are redone."""
        a = self.group[name].with_config(EVERY_CHUNK)
        raw = self._codec == "none"
        for i, start in enumerate(range(0, a.shape[0], self.chunk_rows)):
            if raw:  # the chunk file as it is: little-endian codes, padded with -1 (which stays -1)
                path = Path(self.tmp_path, name, a.metadata.encode_chunk_key((i,)))
                codes = np.frombuffer(path.read_bytes(), dtype="<i4")
                path.write_bytes(np.where(codes >= 0, new_code[np.maximum(codes, 0)], codes).astype("<i4").tobytes())
                continue
            codes = a[start:start + self.chunk_rows]
            a[start:start + self.chunk_rows] = np.where(codes >= 0, new_code[np.maximum(codes, 0)], codes)
        self._digests.pop(name, None)

    def _count_missing(self, name: str, kind: str, n: int) -> int:
        a = self.group[name]
        total = 0
        for start in range(0, n, self.chunk_rows):
            block = a[start:start + self.chunk_rows]
            if kind == "text":
                total += int((block == "").sum())
                continue
            total += int(np.isnan(block).sum() if block.dtype.kind == "f" else (block == MISSING_CODE).sum())
        return total


def write_table_chunk(tmp_path: str, index: int, columns: Mapping[str, np.ndarray],
                      chunk_rows: int) -> dict[str, dict[str, list]]:
    """Write row chunk ``index`` of every column of a pre-sized table at ``tmp_path`` (runs on workers); returns
    the digests, for ``TableWriter.record``."""
    import zarr

    g = zarr.open_group(tmp_path, mode="r+")
    start = index * chunk_rows
    for name, values in columns.items():
        a = g[name]
        a.with_config(EVERY_CHUNK)[start:start + len(values)] = np.asarray(values, dtype=a.dtype)
    return {name: chunk_digests(tmp_path, name, [index]) for name in columns}


def _kind_attrs(kind: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {"kind": kind}
    if kind in ("categorical", "boolean"):
        attrs["missing_code"] = MISSING_CODE
    if kind == "datetime":
        attrs.update(time_unit=TIME_UNIT, epoch=EPOCH)
    return attrs


# ------------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------------


def is_table(ds: Any) -> bool:
    """Whether ``ds`` (an xarray Dataset or a zarr group) is a table in this layout."""
    attrs = getattr(ds, "attrs", None)
    return isinstance(attrs, Mapping) and isinstance(attrs.get(LAYOUT_ATTR), Mapping)


def layout(ds: Any) -> dict[str, Any]:
    """The ``scaleml_table`` attribute of a table (``{"format", "columns", "target"}``), restricted to the columns
    ``ds`` holds (a Dataset may be a selection of the table's columns: ``ds[["region", "price"]]``)."""
    lay = dict(ds.attrs[LAYOUT_ATTR])
    names = getattr(ds, "data_vars", None)
    if names is not None:
        lay["columns"] = [c for c in lay["columns"] if c in names]
        lay["target"] = lay.get("target") if lay.get("target") in names else None
    return lay


def column_info(ds: Any) -> list[dict[str, Any]]:
    """Each column of a dataset as ``{name, kind, dtype, n_missing, n_levels, target}`` (a table's columns, or a
    matrix store's features and target, ``n_missing`` None where a store does not record it): what ``scaleml
    catalog show`` lists."""
    if is_table(ds):
        target = layout(ds).get("target")
        out = []
        for name in layout(ds)["columns"]:
            a = ds[name].attrs
            levels = a.get("levels")
            out.append({"name": name, "kind": a.get("kind"), "dtype": str(ds[name].dtype),
                        "n_missing": a.get("n_missing"), "n_levels": None if levels is None else len(levels),
                        "target": name == target})
        return out
    names = list(ds.attrs.get("feature_names") or [f"x{j}" for j in range(ds["X"].shape[1])])
    kinds = list(ds.attrs.get("feature_kinds") or ["numeric"] * len(names))
    missing = ds.attrs.get("n_missing") or {}
    out = [{"name": n, "kind": k, "dtype": str(ds["X"].dtype), "n_missing": missing.get(n), "n_levels": None,
            "target": False} for n, k in zip(names, kinds)]
    if "y" in ds:
        target = ds.attrs.get("target") or "y"
        out.append({"name": target, "kind": "numeric", "dtype": str(ds["y"].dtype),
                    "n_missing": missing.get(target), "n_levels": None, "target": True})
    return out


_ENCODE_HINT = ("encode it first, e.g. make_pipeline(make_column_transformer((OneHotEncoder(), [{c!r}]), "
                "remainder='passthrough'), estimator) (scaleml_dask.preprocessing, .compose, .pipeline)")
_IMPUTE_HINT = ("impute them first, e.g. make_pipeline(make_column_transformer((SimpleImputer(), [{c!r}]), "
                "remainder='passthrough'), estimator) (scaleml_dask.preprocessing, .compose, .pipeline)")


def unprepared_error(name: str, kind: str, n_missing: int | None, n_levels: int | None = None) -> TableError | None:
    """The error for column ``name`` handed to an estimator as it is stored, or None if it can be used (a
    number or a boolean without missing values; a date-time counts as seconds since the epoch)."""
    if kind == "text":
        return TableError(f"column {name!r} is text: an estimator does not fit on documents; hash it first, e.g. "
                          f"make_pipeline(make_column_transformer((HashingVectorizer(), {name!r}), "
                          "remainder='passthrough'), estimator) (scaleml_dask.feature_extraction.text), or store it "
                          f"hashed (scaleml ingest --text {name} --n-features 2**20)", column=name)
    if kind == "categorical":
        levels = f" ({n_levels:,} levels)" if n_levels is not None else ""
        return TableError(f"column {name!r} is categorical{levels}: an estimator does not fit on category codes; "
                          + _ENCODE_HINT.format(c=name), column=name)
    if n_missing:
        plural = "s" if n_missing != 1 else ""
        return TableError(f"column {name!r} has {n_missing:,} missing value{plural}: an estimator does not fit on "
                          "them; "
                          + _IMPUTE_HINT.format(c=name), column=name)
    return None


def check_unprepared(ds: Any, target: bool = False) -> None:
    """Raise the ``TableError`` of the first feature (``target``: the target) of a table or matrix store ``ds``
    that an estimator cannot take as stored (``unprepared_error``)."""
    for c in column_info(ds):
        if c["target"] == target:
            err = unprepared_error(c["name"], c["kind"], c["n_missing"], c["n_levels"])
            if err is not None:
                raise err


def estimator_variable(ds: Any, name: str, labels: bool = False) -> Any:
    """What an estimator given a table Dataset takes as ``X`` (``name="X"``: its feature columns side by side,
    float64) or ``y`` (the target; with ``labels``, for a classifier, a categorical one as its level strings), as a
    dask array — or a ``TableError`` naming the first column it cannot take (category codes, missing values) and
    the fix."""
    import dask.array as da

    lay = layout(ds)
    target = lay.get("target")
    if name == "y":
        if target is None:
            raise ValueError(f"the table {ds.attrs.get('name', '')!r} has no target column")
        var = ds[target]
        if labels and var.attrs.get("kind") == "categorical":
            err = unprepared_error(target, "numeric", var.attrs.get("n_missing"))
            if err is not None:
                raise err
            levels = np.asarray(var.attrs["levels"], dtype=str)
            return var.data.map_blocks(_level_strings, levels, dtype=levels.dtype, meta=np.empty((0,), levels.dtype))
        check_unprepared(ds, target=True)
        return canonical_array(ds[target])
    if name != "X":
        raise ValueError(f"a table has no variable {name!r} (columns: {lay['columns']})")
    features = [c for c in lay["columns"] if c != target]
    check_unprepared(ds)
    return da.stack([canonical_array(ds[c]) for c in features], axis=1)


def _level_strings(codes: np.ndarray, levels: np.ndarray, block_info: Any = None) -> np.ndarray:
    """A block of a categorical target as its level strings; a missing value (never a label) is an error."""
    if codes.size and codes.min() < 0:
        where = block_info[0] if block_info else {"chunk-location": (0,), "array-location": [(0, 0)]}
        row = where["array-location"][0][0] + int(np.argmax(codes < 0))
        raise TableError(f"the target has a missing value in chunk {where['chunk-location'][0]} (row {row}); a "
                         "classifier needs a label on every row")
    return levels[codes]


def check_variable(var: Any) -> None:
    """Refuse a single stored column (an xarray variable of a table) that an estimator must not fit on as it is."""
    kind = var.attrs.get("kind")
    if kind in KINDS:
        err = unprepared_error(str(var.name), kind, var.attrs.get("n_missing"),
                               len(var.attrs["levels"]) if "levels" in var.attrs else None)
        if err is not None:
            raise err


def canonical(kind: str, block: np.ndarray) -> np.ndarray:
    """A stored block of a column of ``kind`` in the canonical form: float64 with NaN for missing (booleans as
    0 / 1), categorical codes as stored, text as an object array of strings."""
    if kind == "categorical":
        return block
    if kind == "text":
        return block if block.dtype == object else block.astype(object)
    if kind == "boolean":
        out = block.astype(np.float64)
        out[block == MISSING_CODE] = np.nan
        return out
    return block if block.dtype == np.float64 else block.astype(np.float64)


def canonical_array(var: Any) -> Any:
    """The dask array of a stored column variable, in the canonical form (``canonical``)."""
    data = var.data
    kind = var.attrs.get("kind", "numeric")
    if kind == "categorical" or data.dtype == np.float64:
        return data
    return data.map_blocks(_canonical_block, kind, dtype=np.float64, meta=np.empty((0,), np.float64))


def _canonical_block(block: np.ndarray, kind: str) -> np.ndarray:
    return canonical(kind, block)


def to_frame(columns: Mapping[str, np.ndarray], ds: Any) -> Any:
    """Stored blocks of a table's columns as a pandas DataFrame: categoricals as ``pd.Categorical`` over the
    levels (missing: NaN), booleans as pandas' nullable ``boolean``, date-times as UTC ``datetime64``. ``ds`` is
    the table's Dataset, or ``{name: the column's attributes}``."""
    import pandas as pd

    out = {}
    for name, block in columns.items():
        attrs = getattr(ds[name], "attrs", ds[name])
        kind = attrs.get("kind", "numeric")
        if kind == "categorical":
            out[name] = pd.Categorical.from_codes(np.asarray(block), categories=attrs["levels"])
        elif kind == "boolean":
            out[name] = pd.array(np.asarray(block) == 1, dtype="boolean")
            out[name][np.asarray(block) == MISSING_CODE] = pd.NA
        elif kind == "datetime":
            out[name] = pd.to_datetime(np.asarray(block), unit="s", utc=True)
        else:
            out[name] = np.asarray(block)
    return pd.DataFrame(out)


def open_layout_errors(ds: Any, label: str) -> list[str]:
    """What is wrong with a Dataset that claims the table layout (empty if nothing): the format, missing or
    misshapen column arrays, unknown kinds, levels that are not a list of strings."""
    lay = ds.attrs.get(LAYOUT_ATTR) or {}
    problems = []
    if lay.get("format") != TABLE_FORMAT:
        return [f"dataset {label!r}: table format {lay.get('format')!r} is not supported (this version reads "
                f"format {TABLE_FORMAT}); upgrade scaleml-dask"]
    columns = lay.get("columns")
    if not isinstance(columns, list) or not columns:
        return [f"dataset {label!r}: the table lists no columns"]
    for name in columns:
        if name not in ds:
            problems.append(f"dataset {label!r}: column {name!r} has no array")
            continue
        v = ds[name]
        kind = v.attrs.get("kind")
        if v.dims != ("sample",):
            problems.append(f"dataset {label!r}: column {name!r} has dims {v.dims}; expected ('sample',)")
        elif kind not in KINDS:
            problems.append(f"dataset {label!r}: column {name!r} has unknown kind {kind!r}")
        elif v.dtype != DTYPES[kind] and not (kind == "text" and v.dtype.kind in "OTU"):
            problems.append(f"dataset {label!r}: column {name!r} ({kind}) has dtype {v.dtype}; expected "
                            f"{DTYPES[kind]}")
        elif kind == "categorical" and not (isinstance(v.attrs.get("levels"), list)
                                            and all(isinstance(s, str) for s in v.attrs["levels"])):
            problems.append(f"dataset {label!r}: categorical column {name!r} has no list of string levels")
    if lay.get("target") is not None and lay["target"] not in columns:
        problems.append(f"dataset {label!r}: target {lay['target']!r} is not a column")
    return problems
