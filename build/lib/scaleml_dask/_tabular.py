"""Table input of preprocessing and pipelines: one schema and one canonical form for stored chunks and raw rows.

Whatever a transformer is given — a stored table (a path, a catalog name, an ``xarray.Dataset``), a matrix
store, a dask or numpy array, or raw values (a pandas DataFrame, a dict of column arrays or scalars, a list of
row dicts: what a served request carries) — it computes on the **canonical form** of its columns
(``io.table.canonical``): float64 with NaN for missing (booleans 0 / 1, date-times in seconds since the epoch),
and categorical codes into the *fitted* levels, ``-1`` for missing and ``-2 - i`` for the ``i``-th level that
was not among them (``Canonical.unknown`` names it). A stored chunk is brought there by ``Table.canonical_block``
(its codes remapped when the store's levels differ from the fitted ones), raw values by
``InputSchema.canonical``; from there on, a chunk of a store and a served row go through the same transform code.

``InputSchema`` — the columns a transformer or pipeline was fitted on, their kinds, dtypes and levels — is the
fitted attribute ``input_schema_`` of every table transformer, ``ColumnTransformer`` and ``Pipeline``;
``to_dict`` / ``from_dict`` give it as JSON.

>>> import pandas as pd
>>> schema = InputSchema([Column("region", "categorical", "str", ("north", "south")), Column("price", "numeric")])
>>> c = schema.canonical(pd.DataFrame({"region": ["south", None, "west"], "price": [1.5, None, 2]}))
>>> c.columns["region"].tolist(), c.unknown["region"], c.columns["price"].tolist()
([1, -1, -2], ['west'], [1.5, nan, 2.0])
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io.table import KINDS, MISSING_CODE, UNKNOWN_CODE, TableError, canonical, unprepared_error

__all__ = ["Canonical", "Column", "InputSchema", "Table", "TableInputError", "as_table"]

#: The dtype raw values of each kind come in (``Column.dtype`` by default; what a server declares).
RAW_DTYPES = {"numeric": "float64", "boolean": "bool", "categorical": "str", "datetime": "datetime64", "text": "str"}


class TableInputError(TableError):
    """Raw values that do not fit the fitted input schema: a missing column, a value of the wrong type, an
    unknown level under ``handle_unknown="error"``. ``column`` names the column (a served request gets a 4xx
    naming it)."""


@dataclass(frozen=True)
class Column:
    """One input column: its name, kind (``io.table.KINDS``), the dtype its raw values come in, and its levels
    (categorical: the strings codes index)."""

    name: str
    kind: str = "numeric"
    dtype: str = ""
    levels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: unknown kind {self.kind!r}; expected one of {KINDS}")
        if not self.dtype:
            object.__setattr__(self, "dtype", RAW_DTYPES[self.kind])
        if self.levels is not None:
            object.__setattr__(self, "levels", tuple(str(v) for v in self.levels))
        if self.kind == "categorical" and self.levels is None:
            raise ValueError(f"categorical column {self.name!r} needs its levels")


@dataclass
class Canonical:
    """Columns in the canonical form (module docstring), all of ``n`` rows; ``unknown[name][i]`` is the level
    coded ``-2 - i`` in categorical column ``name``."""

    columns: dict[str, np.ndarray]
    n: int
    unknown: dict[str, list[str]] = field(default_factory=dict)

    def level_of(self, name: str, code: int) -> str:
        """The level an unknown code stands for (for errors)."""
        return self.unknown.get(name, ["?"])[UNKNOWN_CODE - int(code)]


class InputSchema:
    """The input columns a transformer or pipeline was fitted on (``input_schema_``): names, kinds, the dtype raw
    values come in, levels. ``canonical`` is the one entry for raw values."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        self._by_name = {c.name: c for c in self.columns}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> Column:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self.columns)

    def __iter__(self):
        return iter(self.columns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InputSchema) and self.columns == other.columns

    def __repr__(self) -> str:
        return "InputSchema([" + ", ".join(f"{c.name}: {c.kind}" + (f" ({len(c.levels)} levels)" if c.levels else "")
                                         for c in self.columns) + "])"

    def select(self, names: Sequence[str]) -> InputSchema:
        return InputSchema([self._by_name[n] for n in names])

    def empty_frame(self) -> Any:
        """A pandas DataFrame with no rows and these columns as pandas dtypes (categories with their levels): what
        column selectors look at (ours, scikit-learn's ``make_column_selector``, a user's callable)."""
        import pandas as pd

        dtypes = {"numeric": "float64", "boolean": "bool", "datetime": "datetime64[ns]", "text": "object"}
        return pd.DataFrame({c.name: pd.Categorical([], categories=list(c.levels)) if c.kind == "categorical"
                             else pd.Series([], dtype=dtypes[c.kind]) for c in self.columns})

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"columns": [{"name", "kind", "dtype", "levels"}, ...]}``."""
        return {"columns": [{"name": c.name, "kind": c.kind, "dtype": c.dtype,
                             "levels": None if c.levels is None else list(c.levels)} for c in self.columns]}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> InputSchema:
        return cls([Column(d["name"], d["kind"], d.get("dtype", ""),
                           None if d.get("levels") is None else tuple(d["levels"])) for d in doc["columns"]])

    def _saved_state(self) -> dict[str, Any]:
        """What the model registry stores of a schema (its columns), and ``_from_saved_state`` rebuilds."""
        return {"columns": list(self.columns)}

    @classmethod
    def _from_saved_state(cls, state: Mapping[str, Any]) -> InputSchema:
        columns = state["columns"]
        if set(state) != {"columns"} or not isinstance(columns, list) or not all(
                type(c) is Column and type(c.name) is str and c.kind in KINDS and type(c.dtype) is str
                and (c.levels is None or type(c.levels) is tuple and all(type(v) is str for v in c.levels))
                and (c.kind == "categorical") == (c.levels is not None) for c in columns):
            raise ValueError("an input schema is a list of columns {name, kind, dtype, levels}")
        return cls(columns)

    def canonical(self, data: Any, names: Sequence[str] | None = None) -> Canonical:
        """Raw values — a pandas DataFrame, a dict of column arrays (or of scalars: one row), a list of row dicts —
        in the canonical form of this schema's columns (``names``: only those). A ``TableInputError`` names a
        missing column or a value that is not of its column's kind; unknown levels are coded, not refused (the
        encoders apply their ``handle_unknown``)."""
        frame = _as_columns(data, values_only=True)
        n = _n_rows(frame)
        out, unknown = {}, {}
        for name in self.names if names is None else names:
            col = self._by_name[name]
            if name not in frame:
                raise TableInputError(f"column {name!r} is missing (the input columns are {self.names})",
                                      column=name)
            values = frame[name]
            # a served request's Python lists (any length) and a few rows: converted value by value
            few = type(values) is list or n <= FEW_ROWS and not _is_categorical_series(values)
            if col.kind == "categorical":
                out[name], unknown[name] = (_few_codes(name, values, self._index(name)) if few
                                            else _codes(name, values, col.levels))
            elif col.kind == "text":
                out[name] = texts(name, values)
            else:
                out[name] = _few_floats(name, col.kind, values) if few else _floats(name, col.kind, values)
        return Canonical(out, n, unknown)

    def _index(self, name: str) -> dict[str, int]:
        """Level -> code of categorical column ``name`` (made once)."""
        cache = self.__dict__.setdefault("_indices", {})
        if name not in cache:
            cache[name] = {v: i for i, v in enumerate(self._by_name[name].levels)}
        return cache[name]


# ------------------------------------------------------------------------------------------------------
# raw values -> canonical
# ------------------------------------------------------------------------------------------------------


def _as_columns(data: Any, values_only: bool = False) -> Mapping[str, Any]:
    """The columns of raw ``data`` by name (``values_only``: a few rows' values as object arrays, their dtypes
    not needed: the schema says the kinds)."""
    if hasattr(data, "columns") and hasattr(data, "iloc"):  # pandas DataFrame
        if len(set(data.columns)) != len(data.columns):
            dupes = sorted({str(c) for c in data.columns if list(data.columns).count(c) > 1})
            raise TableInputError(f"duplicate column names: {dupes}", column=dupes[0])
        if values_only and len(data) <= FEW_ROWS:  # a served request: its values, read one by one
            values = data.to_numpy(dtype=object)
            return {str(c): values[:, j] for j, c in enumerate(data.columns)}
        return {str(c): data[c] for c in data.columns}
    if isinstance(data, Mapping):
        return {str(k): (v if np.ndim(v) or hasattr(v, "__len__") and not isinstance(v, str) else [v])
                for k, v in data.items()}
    if isinstance(data, (list, tuple)) and data and all(isinstance(r, Mapping) for r in data):
        import pandas as pd

        return _as_columns(pd.DataFrame.from_records(list(data)))
    raise TypeError(f"expected a pandas DataFrame, a dict of columns or a list of row dicts; got {type(data).__name__}")


def _n_rows(frame: Mapping[str, Any]) -> int:
    lengths = {k: len(v) for k, v in frame.items()}
    if len(set(lengths.values())) > 1:
        first = next(iter(lengths))
        odd = next(k for k, v in lengths.items() if v != lengths[first])
        raise TableInputError(f"column {odd!r} has {lengths[odd]} values, column {first!r} has {lengths[first]}",
                              column=odd)
    return next(iter(lengths.values()), 0)


def _series(values: Any) -> Any:
    import pandas as pd

    return values if isinstance(values, pd.Series) else pd.Series(
        values if isinstance(values, np.ndarray) and values.ndim == 1 else list(values))


#: Up to this many rows (a served request), raw values are converted value by value in Python: pandas' vectorized
#: conversions cost tens of microseconds a column whatever the size.
FEW_ROWS = 64


def _is_categorical_series(values: Any) -> bool:
    import pandas as pd

    return isinstance(getattr(values, "dtype", None), pd.CategoricalDtype)


def _items(values: Any) -> list:
    if hasattr(values, "tolist"):
        return values.tolist()
    return list(values)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or type(v).__name__ in ("NAType", "NaTType")


def _few_floats(name: str, kind: str, values: Any) -> np.ndarray:
    """``_floats`` for a few rows, value by value (numbers and nulls: numpy's conversion at once, as ``float``)."""
    if type(values) is list and _types(values) <= (_NUMBER_TYPES if kind == "numeric" else _BOOLEAN_TYPES):
        try:
            return np.array(values, dtype=np.float64)  # None -> NaN
        except OverflowError:
            pass  # an integer beyond float64: named below
    out = np.empty(len(values))
    for i, v in enumerate(_items(values)):
        if _missing(v):
            out[i] = np.nan
        elif kind == "boolean":
            b = _BOOLEANS.get(v) if isinstance(v, (bool, str)) else (float(v) if v in (0, 1) else None)
            if b is None:
                raise TableInputError(f"column {name!r}: {v!r} is not a boolean (true / false)", column=name)
            out[i] = b
        elif kind == "datetime":
            out[i] = _seconds_of(name, v)
        elif isinstance(v, str):
            try:
                out[i] = float(v)
            except ValueError:
                raise TableInputError(f"column {name!r}: {v!r} is not a number", column=name) from None
        else:
            try:
                out[i] = float(v)
            except (TypeError, ValueError, OverflowError):
                raise TableInputError(f"column {name!r}: {v!r:.60} is not a number", column=name) from None
    return out


def _seconds_of(name: str, v: Any) -> float:
    import datetime as dt

    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            t = dt.datetime.fromisoformat(v)
        except ValueError:
            raise TableInputError(f"column {name!r}: {v!r} is not a date-time (ISO 8601, e.g. 2024-05-01T12:30:00Z)",
                                  column=name) from None
    elif isinstance(v, dt.datetime):
        t = v
    elif isinstance(v, np.datetime64):
        return float(v.astype("datetime64[ns]").astype(np.int64)) / 1e9
    else:
        raise TableInputError(f"column {name!r}: {v!r} is not a date-time", column=name)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


#: Python types a served column of numbers holds (null: None).
_NUMBER_TYPES = frozenset({int, float, type(None)})
_BOOLEAN_TYPES = frozenset({bool, type(None)})
#: A code ``_few_codes``'s lookup gives a value that is not a known level (then read value by value).
_NOT_FOUND = np.iinfo(np.int32).min


def _types(values: list) -> set:
    return set(map(type, values))


def _few_codes(name: str, values: Any, index: dict[str, int]) -> tuple[np.ndarray, list[str]]:
    """``_codes`` for a few rows, value by value (known levels and nulls: one lookup each, at once)."""
    if type(values) is list:
        codes = np.array([index.get(v, _NOT_FOUND) if type(v) is str else
                          (MISSING_CODE if v is None else _NOT_FOUND) for v in values], dtype=np.int32)
        if not (codes == _NOT_FOUND).any():
            return codes, []
    codes = np.empty(len(values), dtype=np.int32)
    unknown: list[str] = []
    for i, v in enumerate(_items(values)):
        if _missing(v):
            codes[i] = MISSING_CODE
            continue
        text = v if isinstance(v, str) else _level_text(name, v)
        code = index.get(text)
        if code is None:
            if text not in unknown:
                unknown.append(text)
            code = UNKNOWN_CODE - unknown.index(text)
        codes[i] = code
    return codes, unknown


def _bad_value(name: str, values: Any, ok: np.ndarray, what: str) -> TableInputError:
    s = _series(values)
    bad = s[~ok].iloc[0]
    return TableInputError(f"column {name!r}: {bad!r} is not {what}", column=name)


def _floats(name: str, kind: str, values: Any) -> np.ndarray:
    """Raw numbers / booleans / date-times as float64 with NaN for missing."""
    import pandas as pd

    s = _series(values)
    missing = s.isna().to_numpy()
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            t = s.dt.tz_convert("UTC") if getattr(s.dt, "tz", None) is not None else s
            return _seconds(t)
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            return s.to_numpy(dtype=np.float64, na_value=np.nan)  # already seconds since the epoch
        parsed = pd.to_datetime(s, utc=True, format="ISO8601", errors="coerce")
        ok = parsed.notna().to_numpy() | missing
        if not ok.all():
            raise _bad_value(name, s, ok, "a date-time (ISO 8601, e.g. 2024-05-01T12:30:00Z)")
        return _seconds(parsed)
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(s.dtype):
            return s.to_numpy(dtype=np.float64, na_value=np.nan)
        return _converted(name, s, s.map(_BOOLEANS, na_action="ignore"), missing, "a boolean (true / false)")
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    return _converted(name, s, pd.to_numeric(s, errors="coerce"), missing, "a number")


def _converted(name: str, s: Any, converted: Any, missing: np.ndarray, what: str) -> np.ndarray:
    """``converted`` (NaN where ``s`` could not be) as float64, or an error naming the first value that was not
    ``what`` and not missing."""
    ok = converted.notna().to_numpy() | missing
    if not ok.all():
        raise _bad_value(name, s, ok, what)
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


_BOOLEANS = {True: 1.0, False: 0.0, "true": 1.0, "false": 0.0, "True": 1.0, "False": 0.0,
             "TRUE": 1.0, "FALSE": 0.0, "1": 1.0, "0": 0.0}


def _seconds(t: Any) -> np.ndarray:
    values = t.to_numpy(dtype="datetime64[ns]") if hasattr(t, "to_numpy") else np.asarray(t, "datetime64[ns]")
    out = values.astype(np.int64).astype(np.float64) / 1e9
    out[np.isnat(values)] = np.nan
    return out


def _codes(name: str, values: Any, levels: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Raw categorical values as codes into ``levels`` (-1 missing, ``-2 - i`` the ``i``-th unknown level)."""
    import pandas as pd

    s = _series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = [_level_text(name, v) for v in s.cat.categories]
        lookup, unknown = _lookup(cats, levels)
        codes = s.cat.codes.to_numpy()
        return (lookup[codes] if len(lookup) else np.full(len(codes), MISSING_CODE, np.int32)), unknown
    missing = s.isna().to_numpy()
    text = [_level_text(name, v) for v in s[~missing]] if missing.any() else [_level_text(name, v) for v in s]
    index = pd.Index(levels)
    found = index.get_indexer(text)
    codes = np.full(len(s), MISSING_CODE, dtype=np.int32)
    unknown: list[str] = []
    if (found < 0).any():
        new = pd.Index(text)[found < 0].unique()
        unknown = [str(v) for v in new]
        found = found.copy()
        found[found < 0] = UNKNOWN_CODE - new.get_indexer(pd.Index(text)[found < 0])
    codes[~missing] = found
    return codes, unknown


def _lookup(values: Sequence[str], levels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``lookup[i]``: the code of ``values[i]`` among ``levels`` (``-2 - j`` for the ``j``-th unknown), and the
    unknown values; one more entry, ``lookup[-1] = -1``, for missing (code -1 indexes it)."""
    index = {v: i for i, v in enumerate(levels)}
    unknown: list[str] = []
    lookup = np.empty(len(values) + 1, dtype=np.int32)
    for i, v in enumerate(values):
        code = index.get(v)
        if code is None:
            code = UNKNOWN_CODE - len(unknown)
            unknown.append(v)
        lookup[i] = code
    lookup[-1] = MISSING_CODE
    return lookup, unknown


def _level_text(name: str, v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        raise TableInputError(f"column {name!r}: {v!r} is not a level (text)", column=name)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(float(v))
    raise TableInputError(f"column {name!r}: {v!r} is not a level (text)", column=name)


# ------------------------------------------------------------------------------------------------------
# tables: in memory or stored
# ------------------------------------------------------------------------------------------------------


class Table:
    """What ``fit`` / ``transform`` take: the columns (``schema``, with the source's levels) of a table in memory
    (``data``: a Canonical) or out of core (``arrays``: row-chunked dask arrays in the stored form, column
    ``name`` at ``where[name] = (array index, column index or None)``), and its target if it has one."""

    def __init__(self, schema: InputSchema, *, data: Canonical | None = None, arrays: Sequence[Any] = (),
                 where: Mapping[str, tuple[int, int | None]] | None = None, target: Any = None,
                 target_column: Column | None = None, n_missing: Mapping[str, int | None] | None = None) -> None:
        self.schema, self.data, self.arrays = schema, data, tuple(arrays)
        self.where = dict(where or {})
        self.target, self.target_column = target, target_column
        self.n_missing = dict(n_missing or {})

    @property
    def lazy(self) -> bool:
        return self.data is None

    @property
    def n_rows(self) -> int:
        return self.data.n if self.data is not None else int(self.arrays[0].shape[0])

    @property
    def row_chunks(self) -> tuple[int, ...]:
        return (self.n_rows,) if self.data is not None else tuple(self.arrays[0].chunks[0])

    def sources(self, names: Sequence[str]) -> tuple[list[Any], dict[str, tuple[int, int | None]]]:
        """The dask arrays holding columns ``names`` and where each column is among them."""
        used = sorted({self.where[n][0] for n in names})
        renumber = {k: i for i, k in enumerate(used)}
        return [self.arrays[k] for k in used], {n: (renumber[self.where[n][0]], self.where[n][1]) for n in names}

    def reader(self, names: Sequence[str], fitted: InputSchema) -> StoredColumns:
        """How a task turns the blocks of ``sources(names)`` into canonical columns of the ``fitted`` schema."""
        _, where = self.sources(names)
        remaps = {}
        for n in names:
            col, fit = self.schema[n], fitted[n]
            if fit.kind != col.kind:
                raise TableInputError(f"column {n!r} is {col.kind} here but was {fit.kind} in fit", column=n)
            if col.kind == "categorical" and col.levels != fit.levels:
                remaps[n] = _lookup(col.levels, fit.levels)
        return StoredColumns({n: (where[n], self.schema[n].kind) for n in names}, remaps)


@dataclass(frozen=True)
class StoredColumns:
    """Picklable recipe of a task: its blocks (in the stored form) to canonical columns. ``remaps[name]`` maps a
    store's codes to the fitted levels' (``_lookup``) where they differ."""

    where: dict[str, tuple[tuple[int, int | None], str]]
    remaps: dict[str, tuple[np.ndarray, list[str]]]

    def __call__(self, blocks: Sequence[np.ndarray]) -> Canonical:
        out, unknown = {}, {}
        n = 0
        for name, ((k, j), kind) in self.where.items():
            block = blocks[k] if j is None else blocks[k][:, j]
            n = len(block)
            value = canonical(kind, block)
            if name in self.remaps:
                lookup, unknown[name] = self.remaps[name]
                value = lookup[value]  # -1 (missing) indexes the last entry, itself -1
            out[name] = value
        return Canonical(out, n, unknown)


def as_table(X: Any, *, what: str = "X") -> Table:
    """``X`` as a ``Table``: a path or catalog name, an ``xarray.Dataset`` (a table, a matrix store or 1-d
    variables), a dask / numpy / zarr 2-d array (columns ``x0, x1, ...``), or raw values in memory (a pandas
    DataFrame, a dict of columns, a list of row dicts)."""
    from .validation import as_dask_array

    if isinstance(X, Table):
        return X
    if isinstance(X, (str, Path)):
        from .io.catalog import open_dataset

        X = open_dataset(X)
    xr = sys.modules.get("xarray")
    if xr is not None and isinstance(X, xr.Dataset):
        return _dataset_table(X)
    sparse = hasattr(X, "tocsr")  # scipy.sparse (a dok matrix is a dict, not a dict of columns)
    if not sparse and (hasattr(X, "iloc") or isinstance(X, Mapping)
                       or (isinstance(X, list) and X and isinstance(X[0], Mapping))):
        return _frame_table(X)
    in_memory = hasattr(X, "__array__") and not hasattr(X, "dask") and not type(X).__module__.startswith("zarr")
    if isinstance(X, (np.ndarray, list, tuple)) or sparse or in_memory:
        from .validation import check_array

        A = check_array(X, what, ndim=2)  # scikit-learn's errors: sparse, complex, 1-d, empty, text in an array
        names = [f"x{j}" for j in range(A.shape[1])]
        data = Canonical({n: A[:, j].astype(np.float64) for j, n in enumerate(names)}, A.shape[0])
        return Table(InputSchema([Column(n) for n in names]), data=data)
    dX = as_dask_array(X, what, ndim=2)
    names = [f"x{j}" for j in range(dX.shape[1])]
    return Table(InputSchema([Column(n) for n in names]), arrays=[dX], where={n: (0, j) for j, n in enumerate(names)})


def _frame_table(X: Any) -> Table:
    import pandas as pd

    frame = _as_columns(X)
    columns = []
    for name, values in frame.items():
        s = _series(values)
        if isinstance(s.dtype, pd.CategoricalDtype):
            columns.append(Column(name, "categorical", "str", tuple(_level_text(name, v) for v in s.cat.categories)))
        elif pd.api.types.is_bool_dtype(s.dtype):
            columns.append(Column(name, "boolean", "bool"))
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            columns.append(Column(name, "datetime", str(s.dtype)))
        elif pd.api.types.is_numeric_dtype(s.dtype):
            columns.append(Column(name, "numeric", str(s.dtype)))
        else:
            present = s.dropna()
            if len(present) and present.map(lambda v: isinstance(v, (bool, np.bool_))).all():
                columns.append(Column(name, "boolean", "bool"))
            else:
                levels = sorted({_level_text(name, v) for v in present})
                columns.append(Column(name, "categorical", "str", tuple(levels)))
    schema = InputSchema(columns)
    data = schema.canonical(frame)
    return Table(schema, data=data, n_missing={c.name: _missing_count(c.kind, data.columns[c.name])
                                               for c in columns})


def _missing_count(kind: str, values: np.ndarray) -> int:
    if kind == "text":
        return int(sum(1 for v in values if v == ""))
    return int((values == MISSING_CODE).sum() if kind == "categorical" else np.isnan(values).sum())


def texts(name: str, values: Any) -> np.ndarray:
    """Raw documents as the canonical text column: an object array of ``str``, a missing one (None, NaN) as the
    empty document (what the table layout stores); a value that is not a string is refused by name."""
    items = _items(values)
    out = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):
        if isinstance(v, str):
            out[i] = v
        elif _missing(v):
            out[i] = ""
        else:
            raise TableInputError(f"column {name!r} is text; row {i} holds {type(v).__name__} {v!r}, not a string",
                                  column=name)
    return out


def _dataset_table(ds: Any) -> Table:
    from .io.table import is_table, layout

    if is_table(ds):
        lay = layout(ds)
        target = lay.get("target")
        names = [c for c in lay["columns"] if c != target]
        columns = [_stored_column(ds[c]) for c in names]
        return Table(InputSchema(columns), arrays=[ds[c].data for c in names],
                     where={c: (k, None) for k, c in enumerate(names)},
                     target=None if target is None else ds[target].data,
                     target_column=None if target is None else _stored_column(ds[target]),
                     n_missing={c: ds[c].attrs.get("n_missing") for c in names})
    if "X" in ds:
        X = ds["X"].data
        if X.ndim != 2:
            raise ValueError(f"dataset variable 'X' must be 2-d; got dims {ds['X'].dims}")
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        names = [str(n) for n in ds.attrs.get("feature_names") or [f"x{j}" for j in range(X.shape[1])]]
        kinds = list(ds.attrs.get("feature_kinds") or ["numeric"] * len(names))
        missing = ds.attrs.get("n_missing") or {}
        target = ds["y"].data if "y" in ds else None
        return Table(InputSchema([Column(n, k) for n, k in zip(names, kinds)]), arrays=[X],
                     where={n: (0, j) for j, n in enumerate(names)}, target=target,
                     target_column=None if target is None else Column(str(ds.attrs.get("target") or "y")),
                     n_missing={n: missing.get(n) for n in names})
    names = [str(v) for v in ds.data_vars]
    for n in names:
        if ds[n].ndim != 1 or ds[n].dtype.kind not in "biuf":
            raise ValueError(f"variable {n!r} of the Dataset is not a 1-d column of numbers ({ds[n].dtype}, dims "
                             f"{ds[n].dims}): ingest the table (sm.ingest) so that its columns are stored with "
                             "their kinds")
    from .validation import as_dask_array

    arrays = [as_dask_array(ds[n].data, n, ndim=1) for n in names]
    return Table(InputSchema([Column(n, "boolean" if ds[n].dtype.kind == "b" else "numeric") for n in names]),
                 arrays=arrays, where={n: (k, None) for k, n in enumerate(names)})


def _stored_column(var: Any) -> Column:
    kind = var.attrs.get("kind", "numeric")
    levels = var.attrs.get("levels") if kind == "categorical" else None
    return Column(str(var.name), kind, RAW_DTYPES[kind], None if levels is None else tuple(levels))


def target_values(table: Table) -> Any:
    """The table's target as a float64 array (numpy or dask) in the canonical form (codes for a categorical
    one), or None."""
    if table.target is None:
        return None
    kind = table.target_column.kind if table.target_column is not None else "numeric"
    t = table.target
    if isinstance(t, np.ndarray):
        return _target_floats(t, kind)
    if t.dtype == np.float64 and kind in ("numeric", "datetime"):
        return t
    return t.map_blocks(_target_floats, kind, dtype=np.float64, meta=np.empty((0,), np.float64))


def _target_floats(block: np.ndarray, kind: str) -> np.ndarray:
    """A target block as float64: numbers as they are, a category's codes as numbers (missing: NaN)."""
    if kind != "categorical":
        return canonical(kind, block).astype(np.float64, copy=False)
    out = block.astype(np.float64)
    out[block < 0] = np.nan
    return out


def refuse_unprepared(table: Table, names: Sequence[str], estimator: str) -> None:
    """Refuse columns an estimator would get as stored (category codes, missing values) by name."""
    for n in names:
        col = table.schema[n]
        err = unprepared_error(n, col.kind, table.n_missing.get(n), None if col.levels is None else len(col.levels))
        if err is not None:
            raise TableError(f"{estimator}: {err}", column=n)
