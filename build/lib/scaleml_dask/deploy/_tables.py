"""Raw rows for a model of raw columns (a pipeline): V2 inputs one per column, MLServer's pandas-codec request, V1
records -> the columns the pipeline takes; and the columns a model's metadata declares.

Each column has one V2 datatype (``datatype_of``): ``BYTES`` for a category, a document (a text column) and a
date-time (as ISO 8601 text; its seconds since the epoch are taken as FP64 / INT64 too), ``BOOL`` for a boolean,
``FP64`` for a number (``INT64`` where it was fitted on integers); FP32 and INT32 are taken for numbers too, and
``null`` is a missing value
anywhere. MLServer's pandas-codec request (``parameters.content_type = "pd"``, inputs with ``parameters.content_type =
"str"``) is this form. A missing column, an input that is no column, a value of the wrong type or rows of
different counts are refused naming the column (:class:`Unprocessable`, :class:`BadRequest`), before the model is
called; an unknown level under ``handle_unknown="error"`` is refused by the encoder, naming it too.

>>> from scaleml_dask._tabular import Column, InputSchema
>>> schema = InputSchema([Column("region", "categorical", "str", ("n", "s")), Column("price", "numeric")])
>>> decode_columns([{"name": "region", "shape": [2], "datatype": "BYTES", "data": ["s", None]},
...                 {"name": "price", "shape": [2, 1], "datatype": "FP64", "data": [1.5, 2]}], schema)
({'region': ['s', None], 'price': [1.5, 2]}, 2)
>>> [spec["datatype"] for spec in input_specs(schema)]
['BYTES', 'FP64']
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import BadRequest, TooLarge, Unprocessable

#: The datatypes each kind of column takes.
_ACCEPTED = {"categorical": ("BYTES",), "text": ("BYTES",), "boolean": ("BOOL",),
             "numeric": ("FP64", "FP32", "INT64", "INT32"), "datetime": ("BYTES", "FP64", "INT64")}
_INT_RANGES = {"INT32": 2**31, "INT64": 2**63}
#: The Python types of values each datatype takes without a further check (integers are range-checked).
_PLAIN = {"BYTES": frozenset({str, type(None)}), "BOOL": frozenset({bool, type(None)}),
          "FP64": frozenset({int, float, type(None)}), "FP32": frozenset({int, float, type(None)})}


def datatype_of(column: Any) -> str:
    """The V2 datatype a column of the schema is declared with."""
    if column.kind == "numeric":
        return "INT64" if str(column.dtype).startswith(("int", "uint")) else "FP64"
    return {"categorical": "BYTES", "text": "BYTES", "boolean": "BOOL", "datetime": "BYTES"}[column.kind]


def input_specs(schema: Any) -> list[dict]:
    """The metadata's ``inputs``: one per column, with its datatype, shape ``[-1]``, kind (and levels)."""
    specs = []
    for c in schema:
        spec = {"name": c.name, "datatype": datatype_of(c), "shape": [-1], "parameters": {"kind": c.kind}}
        if c.levels is not None:
            spec["parameters"]["levels"] = list(c.levels)
        specs.append(spec)
    return specs


def _values(name: str, datatype: str, data: list) -> list:
    """Check the values of column ``name`` sent as ``datatype`` (null: missing); the values as a list."""
    types = set(map(type, data))
    if types <= _PLAIN.get(datatype, frozenset()):  # every value of the datatype or null: checked at once
        return data
    what = f"column {name!r}"
    for v in data:
        if v is None:
            continue
        if datatype == "BYTES":
            ok = type(v) is str
        elif datatype == "BOOL":
            ok = type(v) is bool
        elif datatype.startswith("INT"):
            ok = type(v) is int or (type(v) is float and v.is_integer())
            if ok and not -_INT_RANGES[datatype] <= v < _INT_RANGES[datatype]:
                raise Unprocessable(f"{what}: value {v!r:.40} is outside the {datatype} range")
        else:
            ok = type(v) in (int, float)
        if not ok:
            raise BadRequest(f"{what}: {v!r:.60} is not a {datatype} value (null for missing)")
    return data


def _column(tensor: Any, schema: Any, max_rows: int | None) -> tuple[str, list]:
    if not isinstance(tensor, dict):
        raise BadRequest(f"each input must be an object {{name, shape, datatype, data}}; got {tensor!r:.60}")
    name = tensor.get("name")
    if type(name) is not str:
        raise BadRequest(f"an input's 'name' must be a string (a column); got {type(name).__name__}")
    if name not in schema:
        raise Unprocessable(f"input {name[:100]!r} is not a column of the model; its columns are "
                            f"{schema.names[:50]}")
    for key in ("shape", "datatype", "data"):
        if key not in tensor:
            raise BadRequest(f"column {name!r}: missing field {key!r}")
    shape, datatype, data = tensor["shape"], tensor["datatype"], tensor["data"]
    if type(shape) is not list or not 1 <= len(shape) <= 2 or not all(type(s) is int and s >= 0 for s in shape) \
            or (len(shape) == 2 and shape[1] != 1):
        raise BadRequest(f"column {name!r}: 'shape' must be [n] or [n, 1]; got {shape!r:.60}")
    if max_rows is not None and shape[0] > max_rows:
        raise TooLarge(f"column {name!r}: {shape[0]} rows; the limit is {max_rows}")
    column = schema[name]
    if datatype not in _ACCEPTED[column.kind]:
        raise Unprocessable(f"column {name!r} is {column.kind}: send it as {' or '.join(_ACCEPTED[column.kind])}, "
                            f"not {datatype!r:.20}")
    if type(data) is not list:
        raise BadRequest(f"column {name!r}: 'data' must be a list of values; got {type(data).__name__}")
    if len(data) and type(data[0]) is list:  # nested as [[v], [v], ...]
        if not all(type(v) is list and len(v) == 1 for v in data):
            raise BadRequest(f"column {name!r}: data nested unlike its shape {shape}")
        data = [v[0] for v in data]
    if len(data) != shape[0]:
        raise BadRequest(f"column {name!r}: shape {shape} holds {shape[0]} values but data has {len(data)}")
    return name, _values(name, datatype, data)


def decode_columns(inputs: Any, schema: Any, max_rows: int | None = None) -> tuple[dict[str, list], int]:
    """V2 ``inputs``, one per column (the pandas-codec form too), as ``({column: values}, rows)``."""
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors, one per column")
    columns: dict[str, list] = {}
    for tensor in inputs:
        name, values = _column(tensor, schema, max_rows)
        if name in columns:
            raise BadRequest(f"column {name!r} is given twice")
        columns[name] = values
    return _complete(columns, schema)


def decode_records(instances: Any, schema: Any, max_rows: int | None = None) -> tuple[dict[str, list], int]:
    """V1 ``instances`` as a list of records ``{column: value}`` -> ``({column: values}, rows)``."""
    if not isinstance(instances, list) or not instances:
        raise BadRequest("'instances' must be a non-empty list of records {column: value, ...}")
    if max_rows is not None and len(instances) > max_rows:
        raise TooLarge(f"instances: {len(instances)} rows; the limit is {max_rows}")
    columns: dict[str, list] = {c.name: [] for c in schema}
    for i, record in enumerate(instances):
        if not isinstance(record, dict):
            raise BadRequest(f"instance {i} is not a record {{column: value}}; got {type(record).__name__}")
        extra = next((k for k in record if k not in columns), None)
        if extra is not None:
            raise Unprocessable(f"instance {i}: {str(extra)[:100]!r} is not a column of the model; its columns are "
                                f"{schema.names[:50]}")
        for name, values in columns.items():
            if name not in record:
                raise Unprocessable(f"instance {i}: column {name!r} is missing (null for a missing value)")
            values.append(record[name])
    for c in schema:  # a record's value of any JSON type: checked as the datatype its column is declared with
        accepted = _ACCEPTED[c.kind]
        for v in columns[c.name]:
            if v is not None and not any(_fits(v, t) for t in accepted):
                raise BadRequest(f"column {c.name!r}: {v!r:.60} is not a {c.kind} value (null for missing)")
    return columns, len(instances)


def _fits(v: Any, datatype: str) -> bool:
    try:
        _values("", datatype, [v])
    except (BadRequest, Unprocessable):
        return False
    return True


def _complete(columns: dict[str, list], schema: Any) -> tuple[dict[str, list], int]:
    missing = [n for n in schema.names if n not in columns]
    if missing:
        raise Unprocessable(f"column {missing[0]!r} is missing (the model takes {schema.names[:50]}; null for a "
                            "missing value)")
    counts = {len(v) for v in columns.values()}
    if len(counts) != 1:
        first = schema.names[0]
        odd = next(n for n in schema.names if len(columns[n]) != len(columns[first]))
        raise BadRequest(f"column {odd!r} has {len(columns[odd])} rows, column {first!r} has {len(columns[first])}")
    n = counts.pop()
    if n == 0:
        raise Unprocessable("empty input (no rows)")
    return columns, n


def monitored(schema: Any, columns: dict[str, list], names: list[str]) -> np.ndarray:
    """The rows of the monitored columns of numbers, canonical float64 ``(n, len(names))`` (NaN missing)."""
    c = schema.canonical(columns, names)
    return np.column_stack([c.columns[n] for n in names]) if names else np.empty((c.n, 0))
