"""Open Inference Protocol (V2) tensors and V1 instances <-> numpy, and the JSON codec.

Pure functions, apart from transport and dataplane: a V2 input becomes one float64 ``(n, d)`` array checked
once (numbers only, rectangular, finite, right width); an output array becomes a V2 tensor. Errors name the
input and the problem, as :class:`BadRequest` (not a valid tensor) or :class:`Unprocessable` (a valid tensor
the model cannot take).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ._errors import BadRequest, TooLarge, Unprocessable

DATATYPES: dict[str, np.dtype] = {"FP64": np.dtype(np.float64), "FP32": np.dtype(np.float32),
                                  "INT64": np.dtype(np.int64), "INT32": np.dtype(np.int32),
                                  "BOOL": np.dtype(np.bool_)}
_KINDS = {"f": "FP", "i": "INT", "u": "INT", "b": "BOOL"}
_OPTS = orjson.OPT_SERIALIZE_NUMPY


def loads(body: bytes) -> Any:
    """Parse a JSON body (orjson: rejects NaN/Infinity literals, as JSON does)."""
    if not body:
        raise BadRequest("empty body; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None


def dumps(obj: Any) -> bytes:
    """Serialize a response (numpy arrays written directly, without ``tolist``)."""
    return orjson.dumps(obj, option=_OPTS)


def _as_numbers(data: Any, what: str) -> np.ndarray:
    """``data`` (flat or nested lists) as a numeric array, or a clear error for ragged / non-numeric data."""
    if not isinstance(data, list):
        raise BadRequest(f"{what}: 'data' must be a list of numbers (flat or nested); got {type(data).__name__}")
    try:
        a = np.array(data)
    except ValueError:
        raise BadRequest(f"{what}: ragged rows (nested lists of different lengths)") from None
    if a.dtype.kind not in _KINDS:
        if a.dtype.kind == "O" and a.size and a.ndim and isinstance(a.flat[0], list):
            raise BadRequest(f"{what}: ragged rows (nested lists of different lengths)")
        raise BadRequest(f"{what}: data must be numbers; found {_first_bad(data)!r}")
    return a


def _first_bad(data: list) -> Any:
    """The first value of nested lists that is not a number."""
    for v in data:
        bad = _first_bad(v) if isinstance(v, list) else None if isinstance(v, (int, float)) else v
        if bad is not None:
            return bad
    return None


#: The integer datatypes' ranges, [low, high).
_INT_RANGES = {"INT32": (-2**31, 2**31), "INT64": (-2**63, 2**63)}


def _first(mask: np.ndarray) -> list[int]:
    return np.argwhere(mask)[0].tolist()


def _cast(a: np.ndarray, datatype: str, what: str) -> np.ndarray:
    """Values of ``a`` as ``datatype`` (checked: integers in range for INT, 0/1 for BOOL, FP32's range), then
    float64; a 422 names the first value out of the datatype's range.

    JSON carries no NaN or Infinity (the parser refuses them with a 400), so only FP32 can overflow to a
    non-finite value here; that is checked.
    """
    kind = a.dtype.kind
    if datatype == "FP64":
        return a if kind == "f" else a.astype(np.float64)
    if a.size == 0:
        return a.astype(np.float64)
    if datatype == "FP32":
        with np.errstate(over="ignore"):
            X = a.astype(np.float32).astype(np.float64)
        if not np.isfinite(X).all():
            raise Unprocessable(f"{what}: value at {_first(~np.isfinite(X))} overflows FP32")
        return X
    if kind == "f" and (a != np.round(a)).any():
        raise Unprocessable(f"{what}: datatype {datatype} needs integer values; value at {_first(a != np.round(a))} "
                            "is not one")
    if datatype == "BOOL":
        if kind != "b" and ((a != 0) & (a != 1)).any():
            raise Unprocessable(f"{what}: datatype BOOL needs true/false (or 0/1) values; value at "
                                f"{_first((a != 0) & (a != 1))} is neither")
        return a.astype(np.float64)
    low, high = _INT_RANGES[datatype]
    X = a.astype(np.float64)
    out = (X < low) | (X >= high)
    if out.any():
        raise Unprocessable(f"{what}: value at {_first(out)} is outside the {datatype} range")
    return X


def _has_bool(data: list) -> bool:
    """Whether nested lists hold a JSON true / false."""
    stack = [data]
    while stack:
        v = stack.pop()
        if v is True or v is False:
            return True
        if type(v) is list:
            stack.extend(v)
    return False


def check_rows(X: np.ndarray, n_features: int, what: str) -> np.ndarray:
    """``X`` if it is a non-empty ``(n, n_features)`` array; otherwise a clear error."""
    if X.shape[0] == 0:
        raise Unprocessable(f"{what}: empty input (no rows)")
    if X.shape[1] != n_features:
        raise Unprocessable(f"{what}: {X.shape[1]} features per row; the model expects {n_features}")
    return X


def decode_tensor(tensor: Any, n_features: int, max_rows: int | None = None, *, booleans: bool = True
                  ) -> np.ndarray:
    """One V2 input tensor ``{name, shape, datatype, data}`` as a checked float64 ``(n, n_features)`` array.

    ``data`` may be flat (row-major) or nested (then nested as ``shape`` says); ``shape`` ``[n, d]`` (or
    ``[n]`` for a one-feature model, ``[d]`` for one row). JSON true / false are values of a BOOL tensor only
    (``booleans=False`` when the body holds none: the scan for them is skipped).
    """
    if not isinstance(tensor, dict):
        raise BadRequest(f"each input must be an object {{name, shape, datatype, data}}; got {tensor!r:.60}")
    name = tensor.get("name", "?")
    if type(name) is not str:
        raise BadRequest(f"an input's 'name' must be a string; got {type(name).__name__}")
    what = f"input {name[:100]!r}"
    for key in ("shape", "datatype", "data"):
        if key not in tensor:
            raise BadRequest(f"{what}: missing field {key!r}")
    shape, datatype = tensor["shape"], tensor["datatype"]
    if (type(shape) is not list or not 1 <= len(shape) <= 2
            or not all(type(s) is int and s >= 0 for s in shape)):
        raise BadRequest(f"{what}: 'shape' must be a list of 1 or 2 non-negative integers; got {shape!r}")
    if datatype not in DATATYPES:
        raise BadRequest(f"{what}: datatype {datatype!r} is not supported; "
                         f"use one of {', '.join(DATATYPES)}")
    if max_rows is not None and shape[0] > max_rows:
        raise TooLarge(f"{what}: {shape[0]} rows; the limit is {max_rows}")
    a = _as_numbers(tensor["data"], what)
    size = shape[0] * shape[1] if len(shape) == 2 else shape[0]
    if a.size != size:
        raise BadRequest(f"{what}: shape {shape} holds {size} values but data has {a.size}")
    if a.ndim > 1 and list(a.shape) != shape:
        raise BadRequest(f"{what}: data nested as {list(a.shape)} where shape is {shape}")
    if datatype != "BOOL" and (a.dtype.kind == "b" or (booleans and _has_bool(tensor["data"]))):
        raise BadRequest(f"{what}: true/false among the values of a {datatype} tensor (datatype BOOL takes them)")
    if len(shape) == 1:
        shape = (shape[0], 1) if n_features == 1 else (1, shape[0])
    X = _cast(a.reshape(shape), datatype, what)
    return check_rows(X, n_features, what)


def decode_instances(instances: Any, n_features: int, max_rows: int | None = None) -> np.ndarray:
    """V1 ``instances`` (a list of rows, or of numbers for a one-feature model) as a checked array."""
    what = "instances"
    if not isinstance(instances, list):
        raise BadRequest(f"'instances' must be a list of rows; got {type(instances).__name__}")
    if max_rows is not None and len(instances) > max_rows:
        raise TooLarge(f"{what}: {len(instances)} rows; the limit is {max_rows}")
    a = _as_numbers(instances, what)
    if a.ndim == 1:
        a = a.reshape(-1, 1) if n_features == 1 or a.size == 0 else a.reshape(1, -1)
    if a.ndim != 2:
        raise BadRequest(f"{what}: expected a list of rows (2 levels of nesting); got {a.ndim}")
    return check_rows(a.astype(np.float64, copy=False), n_features, what)


def datatype_of(a: np.ndarray) -> str:
    """The V2 datatype name of a numpy result."""
    kind = a.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT32" if a.dtype.itemsize <= 4 else "INT64"
    if kind == "f":
        return "FP32" if a.dtype.itemsize <= 4 else "FP64"
    return "BYTES"


def encode_tensor(name: str, a: np.ndarray) -> dict[str, Any]:
    """A result array as a V2 output tensor (row-major flat data)."""
    data = np.ascontiguousarray(a).ravel() if a.dtype.kind in "biuf" else a.ravel().tolist()
    return {"name": name, "shape": list(a.shape), "datatype": datatype_of(a), "data": data}
