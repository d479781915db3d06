"""Arrow columns to stored values (``io.table``'s layout), one piece of a file at a time, for ``ingest``.

Kinds come from the file's types (Parquet), from the first piece's (CSV: pyarrow's inference, and a string
column whose every value is an ISO 8601 date-time is a date-time), or from the caller (``kinds=``). Each
``ColumnEncoder`` keeps what the whole column needs across pieces: its levels in order of appearance (the
writer sorts them at the end), its missing count, and the checks that refuse a column: more levels than
``max_levels``, or, when its kind was inferred, a first piece whose values are mostly distinct (an id or free
text: ``too_diverse``). Errors are ``IngestError``; the caller adds the file, line and column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .table import DTYPES, KINDS, MISSING_CODE

#: Most levels a categorical column may have (``ingest(max_levels=)``, ``--max-levels``).
MAX_LEVELS = 100_000
#: A column whose kind was inferred is refused as too diverse when its first piece holds more than this many
#: distinct values *and* more than ``TOO_DIVERSE_FRACTION`` of its non-missing values are distinct.
TOO_DIVERSE_MIN = 100
TOO_DIVERSE_FRACTION = 0.5


class IngestError(ValueError):
    """Raised for bad input files; the message names the file, line and column."""


def ways_out_too_diverse(column: str) -> list[str]:
    """What a user can do with a column too diverse to be a category."""
    return [f"drop it (drop=[{column!r}], --drop {column})",
            f"keep it as text, to be hashed (text=[{column!r}], --text {column})",
            f"declare it categorical if it is one (kinds={{{column!r}: 'categorical'}}, --kind {column}=categorical)"]


def kind_of(arrow_type: Any) -> str | None:
    """The kind a column of this arrow type is stored as; None for a type with no values (null)."""
    import pyarrow.types as pt

    t = arrow_type.value_type if pt.is_dictionary(arrow_type) else arrow_type
    if pt.is_null(t):
        return None
    if pt.is_boolean(t):
        return "boolean"
    if pt.is_integer(t) or pt.is_floating(t) or pt.is_decimal(t):
        return "numeric"
    if pt.is_timestamp(t) or pt.is_date(t):
        return "datetime"
    if pt.is_string(t) or pt.is_large_string(t):
        return "categorical"
    raise IngestError(f"type {arrow_type} is not supported (numbers, booleans, strings, dates and timestamps are)")


def looks_like_datetimes(values: Any) -> bool:
    """Whether every non-missing value of a string array is an ISO 8601 date-time (and there is one)."""
    import pyarrow.compute as pc

    values = pc.drop_null(values)
    if len(values) == 0:
        return False
    sample = values.slice(0, 1000).to_pylist()
    if not all(len(s) >= 10 and s[4:5] == "-" and s[7:8] == "-" for s in sample):
        return False
    try:
        parse_datetimes(values)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def parse_datetimes(values: Any) -> np.ndarray:
    """ISO 8601 strings (an arrow array, nulls allowed) as float64 seconds since the epoch, NaN for missing;
    times without an offset are UTC. A ValueError for a value that is not one."""
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(values.to_numpy(zero_copy_only=False), dtype=object), utc=True,
                            format="ISO8601")
    return _seconds(parsed.to_numpy(dtype="datetime64[ns]"))


def _seconds(t: np.ndarray) -> np.ndarray:
    """datetime64 values as float64 seconds since the epoch, NaT as NaN."""
    out = t.astype("datetime64[ns]").astype(np.int64).astype(np.float64) / 1e9
    out[np.isnat(t)] = np.nan
    return out


class ColumnEncoder:
    """Stored values of one column, piece by piece (see the module docstring).

    ``fill``: the number missing numeric values become (None: kept missing). ``inferred``: the kind was guessed
    from the data (so a first piece of mostly distinct strings is refused rather than kept as a category).
    """

    def __init__(self, name: str, kind: str, *, max_levels: int = MAX_LEVELS, fill: float | None = None,
                 inferred: bool = False) -> None:
        if kind not in KINDS:
            raise IngestError(f"column {name!r}: unknown kind {kind!r}; expected one of {KINDS}")
        self.name, self.kind, self.max_levels, self.fill, self.inferred = name, kind, max_levels, fill, inferred
        self.n_missing = 0
        self.levels: list[str] = []
        self._codes: dict[str, int] = {}
        self._pieces = 0

    def encode(self, values: Any, locate: Callable[[int], str]) -> np.ndarray:
        """The stored values of one piece (an arrow Array or ChunkedArray); ``locate(i)`` names row ``i`` of the
        piece in errors ("line 12" / "row 11")."""
        import pyarrow as pa

        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        out = getattr(self, f"_{self.kind}")(values, locate)
        self._pieces += 1
        return out

    def _numeric(self, values: Any, locate: Callable[[int], str]) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.types as pt

        if pt.is_dictionary(values.type):
            values = values.dictionary_decode()
        try:
            out = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise IngestError(f"column {self.name!r} ({values.type}) cannot be read as numbers: {exc}") from None
        out = np.array(out, dtype=np.float64)  # writable, owned
        infinite = np.flatnonzero(np.isinf(out))
        if infinite.size:  # "inf", or a number past float64's range such as 1e999: no estimator can use it
            i = int(infinite[0])
            raise IngestError(f"column {self.name!r}, {locate(i)}: {out[i]} is not a finite number "
                              f"({infinite.size} such value(s) in this piece); fix the source, or drop the column "
                              f"(--drop {self.name})")
        missing = np.isnan(out)
        if missing.any():
            if self.fill is not None:
                out[missing] = self.fill
            else:
                self.n_missing += int(missing.sum())
        return out

    def _boolean(self, values: Any, locate: Callable[[int], str]) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        out = pc.fill_null(values.cast(pa.int8()), MISSING_CODE).to_numpy(zero_copy_only=False)
        self.n_missing += values.null_count
        return np.asarray(out, dtype=DTYPES["boolean"])

    def _datetime(self, values: Any, locate: Callable[[int], str]) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.types as pt

        if pt.is_dictionary(values.type):
            values = values.dictionary_decode()
        if pt.is_string(values.type) or pt.is_large_string(values.type):
            try:
                out = parse_datetimes(values)
            except (ValueError, TypeError, OverflowError):
                i, bad = self._first_unparsable(values)
                raise IngestError(f"{locate(i)}, column {self.name!r}: {bad!r} is not a date-time (ISO 8601, "
                                  "e.g. 2024-05-01T12:30:00Z)") from None
        elif pt.is_date(values.type) or pt.is_timestamp(values.type):
            if pt.is_date(values.type):
                values = values.cast(pa.date32()).cast(pa.timestamp("s"))
            out = _seconds(values.cast(pa.timestamp("ns", tz=getattr(values.type, "tz", None)))
                           .to_numpy(zero_copy_only=False).astype("datetime64[ns]"))
        else:
            raise IngestError(f"column {self.name!r} ({values.type}) cannot be read as date-times")
        self.n_missing += int(np.isnan(out).sum())
        return out

    @staticmethod
    def _first_unparsable(values: Any) -> tuple[int, str]:
        import pandas as pd

        for i, v in enumerate(values.to_pylist()):
            if v is None:
                continue
            try:
                pd.to_datetime(v, utc=True, format="ISO8601")
            except (ValueError, TypeError, OverflowError):
                return i, v
        return 0, "?"  # pragma: no cover - the whole array failed to parse but no value does alone

    def _text(self, values: Any, locate: Callable[[int], str]) -> np.ndarray:
        """Documents as an object array of ``str``; a missing one is stored as the empty document (counted)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.types as pt

        if pt.is_dictionary(values.type):
            values = values.dictionary_decode()
        if not (pt.is_string(values.type) or pt.is_large_string(values.type)):
            values = values.cast(pa.string())  # a column declared text: its values' text
        self.n_missing += values.null_count
        return np.asarray(pc.fill_null(values, "").to_numpy(zero_copy_only=False), dtype=object)

    def _categorical(self, values: Any, locate: Callable[[int], str]) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.types as pt

        if not pt.is_dictionary(values.type):
            if not (pt.is_string(values.type) or pt.is_large_string(values.type)):
                values = values.cast(pa.string())  # a column declared categorical: its values' text
            values = pc.dictionary_encode(values)
        dictionary = values.dictionary.cast(pa.string()).to_pylist()
        indices = values.indices
        if self.inferred and self._pieces == 0:
            self._check_diversity(len(dictionary), len(values) - values.null_count)
        lookup = np.array([self._code(v) for v in dictionary] + [MISSING_CODE], dtype=np.int32)
        if len(self.levels) > self.max_levels:
            raise IngestError(f"column {self.name!r} has more than {self.max_levels:,} levels (max_levels, "
                              f"--max-levels): too diverse to be a category; "
                              + "; or ".join(ways_out_too_diverse(self.name)))
        idx = pc.fill_null(indices, len(dictionary)).to_numpy(zero_copy_only=False)
        self.n_missing += values.null_count
        return lookup[idx]

    def _code(self, level: str | None) -> int:
        if level is None:
            return MISSING_CODE
        code = self._codes.get(level)
        if code is None:
            code = self._codes[level] = len(self.levels)
            self.levels.append(level)
        return code

    def _check_diversity(self, n_distinct: int, n_values: int) -> None:
        if n_distinct > TOO_DIVERSE_MIN and n_distinct > TOO_DIVERSE_FRACTION * n_values:
            raise IngestError(f"column {self.name!r} is too diverse to be a category ({n_distinct:,} distinct "
                              f"values among its first {n_values:,}: an id or free text?): "
                              + "; or ".join(ways_out_too_diverse(self.name)))
