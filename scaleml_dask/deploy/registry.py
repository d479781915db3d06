"""A model registry on disk without pickle: numbered versions of JSON metadata and ``.npz`` arrays.

Layout of a registry directory::

    models/reg/
      1/metadata.json  1/arrays.npz
      2/metadata.json  2/arrays.npz
      .3.tmp-1f2e.../  (a save in progress; renamed to 3/ when complete)

``save_model`` builds a version under a temporary name beside the others, fsyncs every file and the
directory, and renames it to the next free number; two concurrent saves never collide (the rename onto an
existing version fails and the save takes the next number). ``"latest"`` is the highest complete version.

``metadata.json`` (``format_version`` 2; version 1, without ``content_sha256``, is still read)::

    format_version  2
    content_sha256  sha256 of the document without this field, as canonical JSON (sorted keys, no spaces)
    class           stable public name, e.g. "scaleml_dask.linear.LinearRegression" (one of ``CLASSES``)
    params          the hyperparameters (``get_params()``), encoded as below; non-JSON-able ones
                    (callbacks) are null and listed in ``notes``
    n_features, feature_names (or null), dtypes {"input": ..., <output>: ...}
    outputs         among "predict", "predict_proba", "transform", main first (``outputs.output_names``)
    training        {data, n_samples, feature_mean, feature_std, prediction_mean, prediction_std}: from
                    ``data=`` in one pass when given (prediction = the main output's first column), else
                    what the model itself knows (``n_samples_``, PCA's ``mean_``), null otherwise
    metrics, versions {python, numpy, scikit-learn, dask, scaleml_dask}, created (UTC, ISO 8601), notes
    compression     null, or {path: "int8" | "float16" | "sparse"} for arrays stored compressed
    state           the fitted attributes: the instance's ``__dict__`` minus the hyperparameters and a
                    clusterer's ``labels_`` (the training rows' labels, not part of the model), encoded
    files           {"arrays.npz": {sha256, bytes}}
    arrays          {name: {file, sha256 (of the stored array's bytes, C order), shape, dtype, decode?}}
    views           {name: {of, offset, shape, strides, dtype}}: arrays that were views of a saved array
                    (the online learners' ``state_`` into ``_buf``) are restored as views again

The encoding of values: JSON null / bool / int / str / finite float as themselves, lists as lists, and
tagged objects for everything else: ``{"$float": "nan"}``, ``{"$tuple": [...]}``, ``{"$dict": [[k, v],
...]}``, ``{"$scalar": dtype, "value": v}`` (numpy scalars), ``{"$array": name}``, ``{"$dtype": str}``,
``{"$generator": bit generator, "state": ...}`` (``numpy.random.Generator``), ``{"$dataclass":
"module:Name", "fields": {...}}`` for the dataclasses of ``_loadable.DATACLASSES``, ``{"$objects": [...]}`` (a 1-d
object array of strings, numbers, booleans, nulls: feature names, categories), ``{"$type": dtype}`` (a numpy scalar
type), ``{"$slice": [start, stop, step]}``, ``{"$value": name, "state": ...}`` for the objects of
``_loadable.VALUES`` (an input schema, a sparse matrix), ``{"$function": name}`` for the functions of
``_loadable.FUNCTIONS`` (a selector's score function) and ``{"$estimator": name, "params": ..., "state": ...}`` for
an estimator nested in the model (a pipeline's steps, a ``ColumnTransformer``'s transformers), saved and checked as
the model itself. Anything else is refused when saving (``RegistryError`` naming the attribute).

What is saved of an estimator, and how a restored one is checked, is the estimator's part of the capability
protocol (``scaleml_dask._deployable``): ``_saved_state()`` / ``_check_restored_state()``; the registry keeps no
list of estimator types beyond the fixed table of names a file may use (``_loadable``). A model of raw columns (a
pipeline) declares ``dtypes.input = "table"``, and its ``training`` statistics are those of its columns of numbers
(``training.columns`` names them).

Loading is parsing, never executing: names (classes, dataclasses, bit generators) are looked up in the fixed
tables of ``_loadable``, dtypes must be plain scalar ones, every field of the document is checked for its type
and range before use, declared sizes are checked (``limits.Limits``) before anything is read or inflated,
views must lie inside their array, and the rebuilt model must compute each declared output on a probe row.
Whatever is wrong with a version — any field of any type, any nesting, any bytes — is a ``RegistryError``
naming the file and the problem.

Compressed arrays (``scaleml_dask.deploy.compress``) are declared by the model's ``quantization_``
attribute ``{path: {"dtype": "int8", "scale": array, "tail": k} | {"dtype": "float16", "tail": k}}``:
the leading rows are stored as int8 (with ``scale`` broadcast over them) or float16, the last ``tail``
rows (e.g. an intercept row) in float64, and ``load_model`` dequantizes them to float64, bitwise equal to
the in-memory compressed model. Pruned arrays (``{"dtype": "sparse", "tail": k}``) are stored as their
non-zero values (float64, C order) with ``decode.index`` naming their flat positions (int32 / int64, strictly
increasing, inside ``decode.shape``, checked before they are scattered; the dense size counts against the
limits).

>>> import tempfile, numpy as np
>>> from scaleml_dask import LinearRegression
>>> X = np.random.default_rng(0).normal(size=(50, 2)); m = LinearRegression().fit(X, X @ [1.0, 2.0])
>>> d = tempfile.mkdtemp()
>>> save_model(m, d).name, save_model(m, d).name, list_versions(d)
('1', '2', [1, 2])
>>> bool(np.array_equal(load_model(d).predict(X), m.predict(X))), read_metadata(d)["class"]
(True, 'scaleml_dask.linear.LinearRegression')
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import functools
import hashlib
import inspect
import io
import json
import keyword
import math
import os
import platform
import shutil
import stat
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import _fsync_dir
from ..io.destination import MARKER as OWNER_MARKER
from ..io.destination import clean_stale, is_temporary, read_marker, temporary_dir
from . import _loadable, _npz
from . import outputs as _outputs
from .limits import DEFAULT as DEFAULT_LIMITS
from .limits import Limits

FORMAT_VERSION = 2
METADATA = "metadata.json"
ARRAYS = "arrays.npz"

#: The classes a version may hold, by the stable public name written as ``class`` (``_loadable.CLASSES``).
CLASSES = tuple(_loadable.CLASSES)
#: attributes whose last axis is the feature axis
_WIDTH_ATTRS = ("coef_", "components_", "mean_", "cluster_centers_")
#: how a compressed array may be stored (``deploy.compress``): int8 codes, float16, or its non-zeros
_ENCODINGS = ("int8", "float16", "sparse")
#: fitted attributes that describe the training rows rather than the model (n-sized, lazy for dask input)
_NOT_SAVED = ("labels_",)


class RegistryError(ValueError):
    """A model cannot be saved or loaded; the message names the file (or attribute) and the problem.

    ``path`` is the file (or directory) at fault, when there is one, and ``problem`` the message without it,
    for whoever must not show server paths (``scaleml serve``).
    """

    def __init__(self, message: str, *, path: Path | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.problem = message if problem is None else problem


def _error(path: Path, problem: str) -> RegistryError:
    return RegistryError(f"{path}: {problem}", path=path, problem=problem)


# ------------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------------


def save_model(model: Any, directory: str | os.PathLike, *, data: Any = None,
               metrics: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as a new version ``directory/<n>/`` (n = 1, 2, ...) atomically; returns its path.

    ``directory`` is new, empty, or a registry (versions saved here): anything else there is refused
    (:func:`check_registry`), and no version is ever replaced. ``data`` (dataset name, path, xarray or array of
    the training rows) adds training statistics for drift monitoring, computed in one pass; ``metrics``
    (JSON-able dict) is stored as given.
    """
    directory = check_registry(directory)
    cls_name = class_name(model)
    meta, arrays = _describe(model, cls_name, data, metrics)
    directory.mkdir(parents=True, exist_ok=True)
    clean_stale(directory)  # what saves killed before their rename left behind
    n = _next_version(directory)
    tmp = temporary_dir(directory / str(n), "model version")
    try:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        raw = buf.getvalue()
        meta["files"] = {ARRAYS: {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}}
        meta["content_sha256"] = content_sha256(meta)
        _write_synced(tmp / ARRAYS, raw)
        _write_synced(tmp / METADATA, json.dumps(meta, indent=1, allow_nan=False).encode())
        _fsync_dir(tmp)
        while True:
            dest = directory / str(n)
            try:
                os.rename(tmp, dest)
                break
            except OSError as exc:  # another save took this number first
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) and not dest.exists():
                    raise
                n = max(n + 1, _next_version(directory))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(directory)
    return dest


def check_registry(directory: str | os.PathLike) -> Path:
    """``directory`` as a place :func:`save_model` may add a version to: missing, empty, or holding only versions
    saved here (and their hidden temporaries); a ``RegistryError`` naming it and what else is there otherwise.
    Nothing is changed, so a workflow can check before it fits."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise _error(directory, "is a file, not a model registry directory; refusing to replace it")
    if not directory.exists():
        return directory
    foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir() if not _saved_here(p))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise _error(directory, f"holds {shown}, which are not model versions saved by scaleml_dask; refusing to "
                                "save a model beside them (give a new or empty directory, or a registry)")
    return directory


def _saved_here(path: Path) -> bool:
    """Whether ``path``, in a registry directory, is one of ours: a version, a save's temporary, the marker."""
    if path.name == OWNER_MARKER or is_temporary(path.name):
        return True
    if not path.name.isdigit() or path.is_symlink() or not path.is_dir():
        return False
    return (path / METADATA).is_file() or (read_marker(path) or {}).get("kind") == "model version"


def list_versions(directory: str | os.PathLike) -> list[int]:
    """The complete versions in ``directory`` (numbered subdirectories holding a metadata file), ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir()
                  if p.name.isdigit() and (p / METADATA).is_file())


def read_metadata(directory: str | os.PathLike, version: int | str = "latest", *,
                  limits: Limits | None = None) -> dict[str, Any]:
    """The metadata of one version after verifying every file's checksum; adds ``version`` and ``path``."""
    path = version_path(directory, version)
    meta, _, _ = _verified(path, limits or DEFAULT_LIMITS)
    return {**meta, "version": int(path.name), "path": str(path)}


def load_model(directory: str | os.PathLike, version: int | str = "latest", *, limits: Limits | None = None,
               with_metadata: bool = False) -> Any:
    """Rebuild the model of one version (default the latest), verifying every checksum; never unpickles.

    Every problem with the version is a ``RegistryError`` naming the file. ``with_metadata`` returns
    ``(model, metadata)`` (as :func:`read_metadata`) from the one read.
    """
    path = version_path(directory, version)
    meta, arrays, views = _verified(path, limits or DEFAULT_LIMITS)
    where = path / METADATA
    try:
        model = _rebuild(meta, arrays, views, where, limits or DEFAULT_LIMITS)
    except RegistryError:
        raise
    except RecursionError:
        raise _error(where, "nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - the last guard: whatever a file can cause is a RegistryError
        raise _error(where, f"cannot rebuild the model ({type(exc).__name__}: {exc})") from None
    if with_metadata:
        return model, {**meta, "version": int(path.name), "path": str(path)}
    return model


def version_path(directory: str | os.PathLike, version: int | str = "latest") -> Path:
    """The directory of ``version`` (an int, a string of digits, or ``"latest"``) in a registry."""
    directory = Path(directory)
    if version == "latest":
        versions = list_versions(directory)
        if not versions:
            raise _error(directory, f"no saved model versions (expected <n>/{METADATA} inside)")
        return directory / str(versions[-1])
    if isinstance(version, bool) or not isinstance(version, (int, str)) or not str(version).isdigit() \
            or len(str(version)) > 18:
        raise _error(directory, f"version must be a positive integer or 'latest'; got {version!r:.40}")
    path = directory / str(int(version))
    if not (path / METADATA).is_file():
        raise _error(path, f"no such model version (have {list_versions(directory)})")
    return path


def class_name(model: Any) -> str:
    """The stable public name of ``model``'s class in ``CLASSES``; RegistryError for any other class."""
    name = _loadable.name_of(model, _loadable.CLASSES)
    if name is None:
        cls = type(model)
        raise RegistryError(f"cannot save a {cls.__module__}.{cls.__qualname__}: the registry holds "
                            f"{', '.join(c.rsplit('.', 1)[1] for c in CLASSES)}")
    return name


def content_sha256(meta: dict[str, Any]) -> str:
    """The checksum of a metadata document's content: sha256 of its canonical JSON without ``content_sha256``."""
    doc = {k: v for k, v in meta.items() if k != "content_sha256"}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------------
# saving
# ------------------------------------------------------------------------------------------------------


def _describe(model: Any, cls_name: str, data: Any, metrics: dict | None) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata document (without ``files``) and the arrays to store."""
    enc = _Encoder()
    meta_params, meta_state = enc.estimator(model, "")
    notes = enc.notes
    arrays, array_meta, views = enc.finish()
    names = _outputs.output_names(model)
    n_features = getattr(model, "n_features_in_", None)
    dtypes: dict[str, str] = {}
    if n_features is not None:
        probe = _outputs.probe_input(model)
        dtypes["input"] = "table" if isinstance(probe, dict) else "float64"
        dtypes.update({o: str(_outputs.apply(model, o, probe).dtype) for o in names})
    meta = {
        "format_version": FORMAT_VERSION,
        "class": cls_name,
        "params": meta_params,
        "n_features": None if n_features is None else int(n_features),
        "feature_names": _feature_names(model, data),
        "dtypes": dtypes,
        "outputs": names,
        "training": _training(model, data, names),
        "metrics": _plain(metrics or {}, "metrics"),
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "notes": notes,
        "compression": {p: s["dtype"] for p, s in enc.quantization.items()} or None,
        "state": meta_state,
        "arrays": array_meta,
        "views": views,
    }
    return meta, arrays


class _Encoder:
    """Turns attribute values into the tagged JSON above, collecting the arrays (see the module docstring)."""

    def __init__(self) -> None:
        self.quantization: dict[str, dict] = {}
        self.notes: list[str] = []
        self._by_id: dict[int, tuple[str, np.ndarray, dict]] = {}

    def estimator(self, model: Any, path: str) -> tuple[Any, dict]:
        """An estimator's hyperparameters and fitted state (the saving half of the capability protocol: the
        state is ``model._saved_state()`` when the class defines it, else its fitted attributes — ``__dict__``
        without the hyperparameters and a clusterer's ``labels_``). Arrays are named by their path from the top
        model; a nested estimator's ``quantization_`` declares its arrays under its own path."""
        prefix = f"{path}." if path else ""
        params = model.get_params(deep=False)
        for key, value in params.items():
            if callable(value) and not (isinstance(value, type) and issubclass(value, np.generic)) \
                    and _loadable.name_of(value, _loadable.CLASSES) is None and _loadable.function_name(value) is None:
                self.notes.append(f"param {prefix}{key!r} ({type(value).__name__}) is not serializable; saved as "
                                  "null")
                params[key] = None
        saved = getattr(model, "_saved_state", None)
        state = saved() if saved is not None else {k: v for k, v in vars(model).items()
                                                   if k not in params and k not in _NOT_SAVED}
        for key, spec in (model.__dict__.get("quantization_") or {}).items():
            self.quantization[prefix + key] = spec
        return (self.encode(params, f"{prefix}params" if path else "params"),
                {"$dict": [[k, self.encode(v, prefix + k)] for k, v in state.items()]})

    def encode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$float": repr(value)}
        if isinstance(value, np.ndarray) and value.dtype == object:
            return self._objects(value, path)
        if isinstance(value, np.ndarray):
            return self._array(value, path)
        if isinstance(value, type) and issubclass(value, np.generic) and _loadable.storable(np.dtype(value)):
            return {"$type": np.dtype(value).str}
        if isinstance(value, slice):
            return {"$slice": [self.encode(v, path) for v in (value.start, value.stop, value.step)]}
        if isinstance(value, np.generic):
            if not _loadable.storable(value.dtype):
                raise RegistryError(f"cannot save attribute {path!r}: numpy scalar of dtype {value.dtype}")
            return {"$scalar": value.dtype.str, "value": self.encode(value.item(), path)}
        if isinstance(value, np.dtype):
            if not _loadable.storable(value):
                raise RegistryError(f"cannot save attribute {path!r}: dtype {value}")
            return {"$dtype": value.str}
        if isinstance(value, list):
            return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, dict):
            return {"$dict": [[self.encode(k, f"{path} key"), self.encode(v, f"{path}.{k}")]
                              for k, v in value.items()]}
        if isinstance(value, np.random.Generator):
            bitgen = type(value.bit_generator).__name__
            if bitgen not in _loadable.BIT_GENERATORS:
                raise RegistryError(f"cannot save attribute {path!r}: bit generator {bitgen}")
            return {"$generator": bitgen, "state": self.encode(value.bit_generator.state, f"{path}.state")}
        cls = type(value)
        name = _loadable.function_name(value) if callable(value) else None
        if name is not None:
            return {"$function": name}
        name = _loadable.name_of(value, _loadable.CLASSES)
        if name is not None:
            params, state = self.estimator(value, path)
            return {"$estimator": name, "params": params, "state": state}
        name = _loadable.name_of(value, _loadable.VALUES)
        if name is not None:
            saved = getattr(value, "_saved_state", None)
            state = saved() if saved is not None else vars(value)
            return {"$value": name, "state": {"$dict": [[k, self.encode(v, f"{path}.{k}")] for k, v in state.items()]}}
        name = _loadable.name_of(value, _loadable.DATACLASSES) if dataclasses.is_dataclass(value) else None
        if name is not None:
            return {"$dataclass": name,
                    "fields": {f.name: self.encode(getattr(value, f.name), f"{path}.{f.name}")
                               for f in dataclasses.fields(value)}}
        raise RegistryError(f"cannot save attribute {path!r} of type {cls.__module__}.{cls.__qualname__} "
                            "(the registry stores arrays, JSON values, generators, the estimators of "
                            "deploy._loadable.CLASSES and the objects of its VALUES and DATACLASSES)")

    def _objects(self, a: np.ndarray, path: str) -> dict:
        """A 1-d object array of JSON scalars (feature names, categories, a target's levels) as a JSON list."""
        items = a.tolist() if a.ndim == 1 else None
        if items is None or not all(v is None or type(v) in (bool, int, str) or type(v) is float and math.isfinite(v)
                                    for v in items):
            raise RegistryError(f"cannot save attribute {path!r}: object array of shape {a.shape} (only 1-d arrays "
                                "of strings, numbers, booleans and None)")
        return {"$objects": items}

    def _array(self, a: np.ndarray, path: str) -> dict:
        known = self._by_id.get(id(a))
        if known is not None:
            return known[2]
        if not _loadable.storable(a.dtype):
            raise RegistryError(f"cannot save attribute {path!r}: array of dtype {a.dtype} (plain numbers and "
                                "fixed-width strings only)")
        name = path
        while any(n == name for n, _, _ in self._by_id.values()):
            name += "'"
        ref = {"$array": name}
        self._by_id[id(a)] = (name, a, ref)
        return ref

    def finish(self) -> tuple[dict[str, np.ndarray], dict[str, dict], dict[str, dict]]:
        """Stored arrays, their metadata, and the views (of a stored C-contiguous array containing them)."""
        from numpy.lib.array_utils import byte_bounds

        entries = sorted(self._by_id.values(), key=lambda e: -e[1].nbytes)  # containers before contents
        stored: list[tuple[str, np.ndarray, tuple[int, int]]] = []
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, dict] = {}
        views: dict[str, dict] = {}
        for name, a, _ in entries:
            lo, hi = byte_bounds(a)
            owner = next((s for s in stored if s[2][0] <= lo and hi <= s[2][1] and a.size), None)
            if owner is not None and min(a.strides, default=0) >= 0 and name not in self.quantization:
                views[name] = {"of": owner[0], "offset": int(lo - owner[2][0]), "shape": list(a.shape),
                               "strides": list(a.strides), "dtype": a.dtype.str}
                continue
            if a.flags.c_contiguous and name not in self.quantization:
                stored.append((name, a, (lo, hi)))
            self._store(name, a, arrays, meta)
        return arrays, meta, views

    def _store(self, name: str, a: np.ndarray, arrays: dict, meta: dict) -> None:
        spec = self.quantization.get(name)
        decode = None
        if spec is not None:
            a, decode = self._compress(name, a, spec, arrays, meta)
        a = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
        arrays[name] = a
        meta[name] = {"file": ARRAYS, "sha256": _sha256(a), "shape": list(a.shape), "dtype": a.dtype.str}
        if decode is not None:
            meta[name]["decode"] = decode

    def _compress(self, name: str, a: np.ndarray, spec: dict, arrays: dict, meta: dict) -> tuple[np.ndarray, dict]:
        tail = int(spec.get("tail", 0))
        if a.dtype != np.float64 or a.ndim < 1 or not 0 <= tail <= len(a):
            raise RegistryError(f"cannot compress attribute {name!r}: needs a float64 array with at least "
                                f"{tail} rows; got {a.dtype} {a.shape}")
        head = a[:len(a) - tail]
        decode: dict[str, Any] = {"dtype": spec["dtype"], "tail": None, "scale": None}
        if tail:
            decode["tail"] = f"{name}.tail"
            self._store(decode["tail"], a[len(a) - tail:], arrays, meta)
        if spec["dtype"] == "sparse":  # the non-zeros in C order, and their flat positions
            flat = head.reshape(-1)
            index = np.flatnonzero(flat).astype(np.int32 if flat.size < 2**31 else np.int64)
            decode.update(index=f"{name}.index", shape=list(head.shape))
            self._store(decode["index"], index, arrays, meta)
            return flat[index], decode
        if spec["dtype"] == "float16":
            q = head.astype(np.float16)
            exact = np.array_equal(q.astype(np.float64), head)
        elif spec["dtype"] == "int8":
            scale = spec["scale"]
            known = self._by_id.get(id(scale))
            if known is None:
                raise RegistryError(f"cannot compress attribute {name!r}: its int8 scale is not part of the model")
            decode["scale"] = known[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.rint(head / scale)
            exact = bool(np.all(np.abs(r) <= 127)) and np.array_equal(r * scale, head)
            q = r.astype(np.int8) if exact else None
        else:
            raise RegistryError(f"cannot compress attribute {name!r}: unknown dtype {spec['dtype']!r}")
        if not exact:
            raise RegistryError(f"cannot compress attribute {name!r}: its values are not exactly representable "
                                f"in {spec['dtype']} (changed after quantize?)")
        return q, decode


def _feature_names(model: Any, data: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    if names is None and data is not None and not isinstance(data, np.ndarray):
        try:
            import scaleml_dask

            ds = scaleml_dask.open_dataset(data) if isinstance(data, (str, os.PathLike)) else data
            names = getattr(ds, "attrs", {}).get("feature_names")
        except Exception:  # noqa: BLE001 - names are optional; the statistics pass reports bad data
            names = None
    return None if names is None else [str(n) for n in names]


def _training(model: Any, data: Any, names: list[str]) -> dict[str, Any]:
    """Training statistics: from one pass over ``data`` when given, else from the model's own attributes."""
    n_samples = getattr(model, "n_samples_", None)
    if n_samples is None:
        n_samples = getattr(model, "samples_seen_", None)
    mean = getattr(model, "mean_", None)
    out: dict[str, Any] = {
        "data": str(data) if isinstance(data, (str, os.PathLike)) else None,
        "n_samples": None if n_samples is None else int(n_samples),
        "feature_mean": None if mean is None else np.asarray(mean, dtype=np.float64).tolist(),
        "feature_std": None, "prediction_mean": None, "prediction_std": None,
    }
    if data is None:
        return out
    import dask

    if hasattr(model, "_table_needs"):  # raw columns: the numbers among them are watched
        return _table_training(model, data, names, out)
    from ..validation import as_dask_array

    X = as_dask_array(data, "X", ndim=2).astype(np.float64)
    n_features = getattr(model, "n_features_in_", None)
    if n_features is not None and X.shape[1] != n_features:
        raise RegistryError(f"data has {X.shape[1]} features; the model was fitted with {n_features}")
    stats = [X.mean(axis=0), X.std(axis=0)]
    if names and np.dtype(_outputs.apply(model, names[0], np.zeros((1, X.shape[1]))).dtype).kind in "biuf":
        p = X.map_blocks(_main_column, model, names[0], drop_axis=1, dtype=np.float64, meta=np.empty(0))
        stats += [p.mean(), p.std()]
    values = dask.compute(*stats)
    out.update(n_samples=int(X.shape[0]), feature_mean=values[0].tolist(), feature_std=values[1].tolist())
    if len(values) == 4:
        out.update(prediction_mean=float(values[2]), prediction_std=float(values[3]))
    return out


def _table_training(model: Any, data: Any, names: list[str], out: dict[str, Any]) -> dict[str, Any]:
    """Training statistics of a model of raw columns: mean and standard deviation of its columns of numbers
    (numeric, boolean, date-time, in the canonical form; ``columns`` names them) and of its main output."""
    import dask
    import dask.array as da

    from .._tabular import as_table
    from ..io.table import canonical

    schema = model.input_schema_
    table = as_table(data)
    columns = [c.name for c in schema if c.kind != "categorical"]
    if table.lazy:
        cols = [table.arrays[table.where[c][0]] if table.where[c][1] is None else
                table.arrays[table.where[c][0]][:, table.where[c][1]] for c in columns]
        values = [a.map_blocks(functools.partial(canonical, schema[c].kind), dtype=np.float64)
                  for a, c in zip(cols, columns)]
        stats = [da.nanmean(v) for v in values] + [da.nanstd(v) for v in values]
    else:
        values = [table.data.columns[c] for c in columns]
        stats = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values] + \
                [np.nanstd(v) if np.isfinite(v).any() else np.nan for v in values]
    stats = [float(v) for v in dask.compute(*stats)]
    k = len(columns)
    mean, std = stats[:k], stats[k:]
    if not all(math.isfinite(v) for v in mean + std):
        raise RegistryError(f"data: a column of numbers has no values ({columns})")
    out.update(columns=columns, n_samples=table.n_rows, feature_mean=mean, feature_std=std)
    if names and not table.lazy:
        p = np.asarray(_outputs.apply(model, names[0], data))
        if p.dtype.kind in "biuf":
            p = p.astype(np.float64).reshape(len(p), -1)[:, 0]
            out.update(prediction_mean=float(p.mean()), prediction_std=float(p.std()))
    return out


def _main_column(X: np.ndarray, model: Any, output: str) -> np.ndarray:
    y = _outputs.apply(model, output, X).astype(np.float64)
    return y.reshape(len(X), -1)[:, 0]


def _plain(value: Any, path: str) -> Any:
    """``value`` as plain JSON (numpy scalars and arrays converted); RegistryError naming what is not."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), path)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{path}.{k}") for k, v in value.items()}
    raise RegistryError(f"{path} holds a {type(value).__name__}, which is not JSON")


def _versions() -> dict[str, str]:
    import sklearn

    import scaleml_dask

    found = {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
             "scaleml_dask": scaleml_dask.__version__}
    try:
        import dask

        found["dask"] = dask.__version__
    except ImportError:  # pragma: no cover - dask is a dependency
        pass
    return found


def _next_version(directory: Path) -> int:
    taken = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
    return max(taken, default=0) + 1


def _write_synced(path: Path, raw: bytes) -> None:
    with open(path, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()


# ------------------------------------------------------------------------------------------------------
# loading: every field checked before use, every size before reading; any problem a RegistryError
# ------------------------------------------------------------------------------------------------------


_REQUIRED = ("format_version", "class", "params", "state", "files", "arrays")
_HEX64 = frozenset("0123456789abcdef")
#: a file of a version: a plain name inside the version directory
_FILE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _verified(path: Path, limits: Limits) -> tuple[dict, dict[str, np.ndarray], dict[str, dict]]:
    """Metadata, arrays and views of the version at ``path``, every field, size and checksum verified."""
    where = path / METADATA
    meta = _parse(_read_file(where, limits.registry_metadata_bytes), where, limits)
    try:
        views = _check_document(meta, where, limits)
    except RegistryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the last guard; the checks above should have named the field
        raise _error(where, f"malformed metadata (unexpected {type(exc).__name__}: {exc})") from None
    arrays = _read_arrays(path, meta, limits)
    _check_declared_width(meta, arrays, where)
    return meta, arrays, views


def _read_file(path: Path, limit: int, expected: int | None = None) -> bytes:
    """The bytes of the regular file ``path``: opened without blocking (a FIFO or device is refused, not waited
    on), its size checked against ``expected`` and ``limit`` before reading."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _error(path, "missing") from None
    except OSError as exc:
        raise _error(path, f"cannot be opened ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _error(path, "is not a regular file")
        if expected is not None and info.st_size != expected:
            raise _error(path, f"{info.st_size} bytes, expected {expected} (truncated or altered)")
        if info.st_size > limit:
            raise _error(path, f"{info.st_size} bytes; the limit is {limit}")
        chunks, size, want = [], 0, info.st_size + 1  # one byte more shows a file that grew meanwhile
        while size < want:
            chunk = os.read(fd, min(want - size, 2**24))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _error(path, f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > limit or (expected is not None and len(raw) != expected):
        raise _error(path, "changed while it was read")
    return raw


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]!r} out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse(raw: bytes, where: Path, limits: Limits) -> Any:
    try:
        doc = json.loads(raw.decode("utf-8"), parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise _error(where, "not valid JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _error(where, f"not valid JSON (truncated or corrupted?): {str(exc)[:200]}") from None
    if _depth(doc) > limits.registry_depth:
        raise _error(where, f"values nested deeper than {limits.registry_depth} levels")
    return doc


def _depth(value: Any) -> int:
    """How deeply JSON ``value`` nests (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
        elif isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
    return deepest


def _key_of(v: Any, mapping: Any) -> bool:
    """Whether ``v`` is a string key of ``mapping`` (a file's value may be of any type, unhashable too)."""
    return type(v) is str and v in mapping


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def _is_sha(v: Any) -> bool:
    return type(v) is str and len(v) == 64 and set(v) <= _HEX64


def _shape(v: Any) -> tuple[int, ...] | None:
    if type(v) is list and len(v) <= 32 and all(_is_int(s) and 0 <= s < 2**62 for s in v):
        return tuple(v)
    return None


def _check_document(meta: Any, where: Path, limits: Limits) -> dict[str, dict]:
    """Check every field the loader reads, for type and range; returns the checked views."""
    def fail(field: str, problem: str) -> RegistryError:
        return _error(where, f"{field}: {problem}")

    if not isinstance(meta, dict) or any(k not in meta for k in _REQUIRED):
        missing = [k for k in _REQUIRED if not isinstance(meta, dict) or k not in meta]
        raise _error(where, f"not a model metadata document (missing {missing})")
    fv = meta["format_version"]
    if not _is_int(fv) or fv < 1:
        raise _error(where, f"invalid format_version {fv!r:.40}")
    if fv > FORMAT_VERSION:
        raise _error(where, f"format_version {fv} is newer than this scaleml_dask reads ({FORMAT_VERSION}); "
                            "upgrade scaleml_dask to load it")
    if "content_sha256" in meta or fv >= 2:
        if meta.get("content_sha256") != content_sha256(meta):
            raise _error(where, "content checksum mismatch (corrupted or edited)")
    if not _key_of(meta["class"], _loadable.CLASSES):
        raise _error(where, f"unknown model class {meta['class']!r:.80}")
    d = meta.get("n_features")
    if d is not None and not (_is_int(d) and 1 <= d < 2**31):
        raise fail("n_features", f"must be a positive integer or null; got {d!r:.40}")
    names = meta.get("feature_names")
    if names is not None and not (type(names) is list and all(type(n) is str for n in names)
                                  and len(names) == d):
        raise fail("feature_names", f"must be null or {d} strings")
    outputs = meta.get("outputs", [])
    if type(outputs) is not list or not all(_key_of(o, _outputs.METHODS) for o in outputs) \
            or len(set(outputs)) != len(outputs):
        raise fail("outputs", f"must be distinct names among {list(_outputs.METHODS)}; got {outputs!r:.80}")
    dtypes = meta.get("dtypes", {})
    if type(dtypes) is not dict or not all(type(v) is str for v in dtypes.values()):
        raise fail("dtypes", "must map names to dtype strings")
    _check_training(meta.get("training"), d, fail)
    compression = meta.get("compression")
    if compression is not None and not (type(compression) is dict
                                        and all(v in _ENCODINGS for v in compression.values())):
        raise fail("compression", "must be null or map arrays to 'int8' / 'float16' / 'sparse'")
    files = meta["files"]
    if type(files) is not dict or not files:
        raise fail("files", "must map file names to {sha256, bytes}")
    for fname, info in files.items():
        if not (0 < len(fname) <= 128 and set(fname) <= _FILE_CHARS and fname[0] != "."
                and fname != METADATA):
            raise fail("files", f"{fname!r:.80} is not a file name inside the version directory")
        if type(info) is not dict or not _is_sha(info.get("sha256")) or not _is_int(info.get("bytes")) \
                or not 0 <= info["bytes"] <= limits.registry_array_bytes + 2**20:
            raise fail(f"files.{fname}", "must be {sha256: 64 hex digits, bytes: a size within the limit}")
    return _check_arrays(meta, files, fail, limits)


def _check_training(training: Any, d: Any, fail: Any) -> None:
    if training is None:
        return
    if type(training) is not dict:
        raise fail("training", "must be null or an object")
    columns = training.get("columns")
    if columns is not None and not (type(columns) is list and all(type(c) is str for c in columns)):
        raise fail("training.columns", "must be null or a list of column names")
    width = d if columns is None else len(columns)
    for key in ("feature_mean", "feature_std"):
        v = training.get(key)
        if v is not None and not (type(v) is list and len(v) == width and all(_is_number(x) for x in v)):
            raise fail(f"training.{key}", f"must be null or {width} numbers")
    for key in ("prediction_mean", "prediction_std"):
        if training.get(key) is not None and not _is_number(training[key]):
            raise fail(f"training.{key}", "must be null or a number")
    n = training.get("n_samples")
    if n is not None and not (_is_int(n) and n >= 0):
        raise fail("training.n_samples", "must be null or a count")
    if training.get("data") is not None and type(training["data"]) is not str:
        raise fail("training.data", "must be null or a string")


def _check_arrays(meta: dict, files: dict, fail: Any, limits: Limits) -> dict[str, dict]:
    """Check the declared arrays and views: names, files, dtypes, shapes, total size, view bounds."""
    arrays, views = meta["arrays"], meta.get("views", {})
    if type(arrays) is not dict or type(views) is not dict:
        raise fail("arrays" if type(arrays) is not dict else "views", "must be an object")
    if len(arrays) + len(views) > limits.registry_arrays:
        raise fail("arrays", f"{len(arrays) + len(views)} arrays and views; the limit is {limits.registry_arrays}")
    total = 0
    for name, info in arrays.items():
        if not 0 < len(name) <= 256 or "\0" in name or "/" in name:
            raise fail("arrays", f"{name!r:.80} is not an array name")
        if type(info) is not dict:
            raise fail(f"arrays.{name}", "must be an object")
        if not _key_of(info.get("file"), files):
            raise fail(f"arrays.{name}", f"is in {info.get('file')!r:.80}, which has no checksum")
        dt, shape = _loadable.dtype(info.get("dtype")), _shape(info.get("shape"))
        if dt is None or shape is None:
            raise fail(f"arrays.{name}", f"dtype {info.get('dtype')!r:.40} and shape {info.get('shape')!r:.80} "
                                         "must be a plain scalar dtype and a list of sizes")
        if not _is_sha(info.get("sha256")):
            raise fail(f"arrays.{name}", "sha256 must be 64 hex digits")
        total += math.prod(shape) * dt.itemsize
        decode = info.get("decode")
        if decode is not None and not (
                type(decode) is dict and decode.get("dtype") in _ENCODINGS
                and all(decode.get(k) is None or _key_of(decode[k], arrays) for k in ("scale", "tail", "index"))):
            raise fail(f"arrays.{name}.decode", "must be {dtype: int8 | float16 | sparse, scale, tail, index: "
                                                "stored arrays}")
        if decode is not None and decode["dtype"] == "sparse":  # what it inflates to counts against the limit
            dense = _shape(decode.get("shape"))
            if dense is None or not len(dense) or decode.get("index") is None:
                raise fail(f"arrays.{name}.decode", "a sparse array needs its index array and its dense shape")
            total += math.prod(dense) * 8
    checked = {}
    for name, info in views.items():
        if name in arrays or type(info) is not dict or not _key_of(info.get("of"), arrays) \
                or "decode" in arrays[info["of"]]:
            raise fail(f"views.{name}", "must be a view of a stored (not compressed) array")
        owner = arrays[info["of"]]
        dt, shape, strides = _loadable.dtype(info.get("dtype")), _shape(info.get("shape")), info.get("strides")
        offset = info.get("offset")
        if dt is None or shape is None or type(strides) is not list or len(strides) != len(shape) \
                or not all(_is_int(s) and abs(s) < 2**62 for s in strides) or not _is_int(offset) \
                or offset < 0 or offset % dt.itemsize or any(s % dt.itemsize for s in strides):
            raise fail(f"views.{name}", "needs a plain scalar dtype, a shape, aligned strides and offset")
        size = math.prod(_shape(owner["shape"])) * _loadable.dtype(owner["dtype"]).itemsize
        if math.prod(shape):
            lo = offset + sum(min(0, s * (n - 1)) for s, n in zip(strides, shape))
            hi = offset + sum(max(0, s * (n - 1)) for s, n in zip(strides, shape)) + dt.itemsize
        else:
            lo = hi = offset
        if lo < 0 or hi > size:
            raise fail(f"views.{name}", f"bytes {lo}-{hi} lie outside its array {info['of']!r} of {size} bytes")
        total += math.prod(shape) * dt.itemsize
        checked[name] = {"of": info["of"], "offset": offset, "shape": shape, "strides": tuple(strides), "dtype": dt}
    if total > limits.registry_array_bytes:
        raise fail("arrays", f"declare {total} bytes; the limit is {limits.registry_array_bytes}")
    return checked


def _read_arrays(path: Path, meta: dict, limits: Limits) -> dict[str, np.ndarray]:
    by_file: dict[str, list[str]] = {}
    for name, info in meta["arrays"].items():
        by_file.setdefault(info["file"], []).append(name)
    arrays: dict[str, np.ndarray] = {}
    for fname, info in meta["files"].items():
        fpath = path / fname
        raw = _read_file(fpath, limits.registry_array_bytes + 2**20, expected=info["bytes"])
        if hashlib.sha256(raw).hexdigest() != info["sha256"]:
            raise _error(fpath, "sha256 checksum mismatch (corrupted or tampered with)")
        wanted = {n: (_loadable.dtype(meta["arrays"][n]["dtype"]), tuple(meta["arrays"][n]["shape"]))
                  for n in by_file.get(fname, [])}
        try:
            loaded = _npz.read(raw, wanted)
        except ValueError as exc:
            raise _error(fpath, str(exc)) from None
        for n, a in loaded.items():
            if _sha256(a) != meta["arrays"][n]["sha256"]:
                raise _error(fpath, f"array {n!r} fails its sha256 checksum")
        arrays.update(loaded)
    for name, info in meta["arrays"].items():
        if "decode" in info:
            arrays[name] = _decompress(arrays, name, info["decode"], path / METADATA)
    return arrays


def _decompress(arrays: dict[str, np.ndarray], name: str, decode: dict, where: Path) -> np.ndarray:
    """The float64 array that ``name`` stores compressed: int8 times its scale, or float16; then its tail."""
    head, scale, tail = arrays[name], decode.get("scale"), decode.get("tail")
    kind = decode["dtype"]
    problem = None
    if kind == "sparse":
        head, problem = _scatter(head, arrays[decode["index"]], tuple(decode["shape"]))
    elif head.ndim < 1 or head.dtype.kind != ("i" if kind == "int8" else "f") or head.dtype.itemsize != (
            1 if kind == "int8" else 2):
        problem = f"is {head.dtype.str}{list(head.shape)}, not {kind} rows"
    elif kind == "int8" and (scale is None or arrays[scale].dtype != np.float64
                             or not _broadcasts_onto(arrays[scale], head)):
        problem = "needs a float64 scale that broadcasts over its rows"
    elif tail is not None and (arrays[tail].dtype != np.float64 or arrays[tail].shape[1:] != head.shape[1:]):
        problem = f"has a tail {arrays[tail].dtype.str}{list(arrays[tail].shape)} unlike its rows"
    if problem:
        raise _error(where, f"cannot decompress array {name!r}: it {problem}")
    out = head.astype(np.float64, copy=kind != "sparse")
    if kind == "int8":
        out *= arrays[scale]
    return np.concatenate([out, arrays[tail]]) if tail is not None else out


def _scatter(values: np.ndarray, index: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, str | None]:
    """The dense float64 array of ``shape`` holding ``values`` at the flat positions ``index`` (strictly
    increasing, inside the array), zeros elsewhere; or the problem with them."""
    size = math.prod(shape)
    if values.dtype != np.float64 or values.ndim != 1:
        return values, f"stores {values.dtype.str}{list(values.shape)} non-zeros, not float64 values"
    if index.dtype.kind != "i" or index.dtype.itemsize not in (4, 8) or index.shape != values.shape:
        return values, f"has an index {index.dtype.str}{list(index.shape)}, not one int32 / int64 per value"
    if len(index) and (index[0] < 0 or index[-1] >= size or not np.all(index[1:] > index[:-1])):
        return values, f"has index positions that are not increasing inside its {size} values"
    out = np.zeros(size)
    out[index] = values
    return out.reshape(shape), None


def _broadcasts_onto(scale: np.ndarray, head: np.ndarray) -> bool:
    try:
        return np.broadcast_shapes(head.shape, scale.shape) == head.shape
    except ValueError:
        return False


def _check_declared_width(meta: dict, arrays: dict[str, np.ndarray], where: Path) -> None:
    d = meta.get("n_features")
    for name in _WIDTH_ATTRS:
        a = arrays.get(name)
        if d is not None and a is not None and a.ndim and a.shape[-1] != d:
            raise _error(where, f"n_features is {d} but array {name!r} has {a.shape[-1]} features")


def _rebuild(meta: dict, arrays: dict[str, np.ndarray], views: dict[str, dict], where: Path, limits: Limits) -> Any:
    """The model of a checked document: parameters validated by the class, state checked by the class, each
    declared output computed on a probe row."""
    decoder = _Decoder(arrays, views, where, limits.registry_depth)
    model = _instantiate(decoder, meta["class"], meta["params"], meta["state"], "", 0)
    _check_width(model, meta.get("n_features"), where)
    _check_outputs(model, meta, where)
    return model


def _instantiate(decoder: _Decoder, name: Any, params: Any, state: Any, path: str, depth: int) -> Any:
    """The estimator ``name`` (of ``_loadable.CLASSES``) with its parameters validated by the class and its
    state checked by the class (the loading half of the capability protocol: ``_check_restored_state()``
    returns a problem or None)."""
    at = f"{path}: " if path else ""
    cls = _loadable.resolve(name)
    if cls is None:
        raise decoder.fail(path or "class", f"unknown model class {name!r:.80}")
    params = decoder.decode(params, f"{path}.params" if path else "params", depth)
    if not isinstance(params, dict) or not all(type(k) is str for k in params):
        raise _error(decoder.where, f"{at}params must map parameter names to values")
    known = {p for p in inspect.signature(cls.__init__).parameters if p != "self"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise _error(decoder.where, f"{at}params {unknown[:5]} are not parameters of {name}")
    model = cls(**params)
    try:
        model._validate_params()
    except (ValueError, TypeError) as exc:
        raise _error(decoder.where, f"{at}params: {exc}") from None
    state = decoder.decode(state, f"{path}.state" if path else "state", depth)
    if not isinstance(state, dict):
        raise _error(decoder.where, f"{at}state must be a mapping")
    for key in state:
        if not (type(key) is str and key.isidentifier() and not keyword.iskeyword(key) and not key.startswith("__")
                and key not in known and _plain_attribute(cls, key)):
            raise _error(decoder.where, f"{at}state: {key!r:.80} is not a fitted attribute of {name}")
    model.__dict__.update(state)
    check = getattr(model, "_check_restored_state", None)
    problem = check() if check is not None else None
    if problem:
        raise _error(decoder.where, f"{at}{problem}")
    return model


def _plain_attribute(cls: type, key: str) -> bool:
    """Whether an instance attribute ``key`` would shadow nothing of ``cls`` but plain class data."""
    found = inspect.getattr_static(cls, key, None)
    return found is None or not (callable(found) or hasattr(found, "__get__"))


def _check_outputs(model: Any, meta: dict, where: Path) -> None:
    """The rebuilt model computes exactly the declared outputs, each one row per probe row."""
    declared = list(meta.get("outputs") or [])
    d = meta.get("n_features")
    if d is None:
        if declared:
            raise _error(where, f"outputs {declared} declared without n_features")
        return
    computed = _outputs.output_names(model)
    if computed != declared:
        raise _error(where, f"outputs {declared} declared; the model computes {computed}")
    probe = _outputs.probe_input(model)
    for name in declared:
        a = _outputs.apply(model, name, probe)
        labels = name == "predict" and a.dtype.kind in "OU" and all(type(v) in (str, bool, int, float)
                                                                         for v in a.ravel().tolist())
        if a.ndim not in (1, 2) or a.shape[0] != 1 or (a.dtype.kind not in "biuf" and not labels):
            raise _error(where, f"output {name!r} gives {a.dtype}{list(a.shape)} on one row")


def _check_width(model: Any, d: Any, where: Path) -> None:
    if d is None:
        return
    got = getattr(model, "n_features_in_", None)
    if got != d:
        raise _error(where, f"n_features is {d} but the model's state has {got!r:.40} features")
    for name in _WIDTH_ATTRS:
        a = getattr(model, name, None)
        if isinstance(a, np.ndarray) and a.ndim and a.shape[-1] != d:
            raise _error(where, f"n_features is {d} but {name} has {a.shape[-1]} features")


#: tag -> the other keys its object holds
_TAGS = {"$float": (), "$tuple": (), "$dict": (), "$array": (), "$dtype": (), "$scalar": ("value",),
         "$generator": ("state",), "$dataclass": ("fields",), "$objects": (), "$type": (), "$slice": (),
         "$estimator": ("params", "state"), "$value": ("state",), "$function": ()}
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class _Decoder:
    """The inverse of ``_Encoder``: tagged JSON back to values, arrays from the verified ``.npz``, views checked
    to lie inside their array (``_check_arrays``); every tag's body checked for its type first."""

    def __init__(self, arrays: dict[str, np.ndarray], views: dict[str, dict], where: Path, depth: int) -> None:
        self.arrays = dict(arrays)
        self.views = views
        self.where = where
        self.depth = depth

    def fail(self, path: str, problem: str) -> RegistryError:
        return _error(self.where, f"{path}: {problem}")

    def decode(self, value: Any, path: str, depth: int = 0) -> Any:
        if depth > self.depth:
            raise self.fail(path, "nested too deeply")
        if value is None or type(value) in (bool, int, float, str):
            return value
        if type(value) is list:
            return [self.decode(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        tag = next(iter(value), None) if type(value) is dict else None
        if tag not in _TAGS or set(value) != {tag, *_TAGS[tag]}:
            raise self.fail(path, f"not a value the registry writes: {value!r:.80}" if tag is None or tag in _TAGS
                            else f"unknown tag {tag!r:.40}")
        body, depth = value[tag], depth + 1
        if tag == "$float":
            if not _key_of(body, _FLOATS):
                raise self.fail(path, f"$float must be one of {list(_FLOATS)}")
            return _FLOATS[body]
        if tag in ("$tuple", "$dict") and type(body) is not list:
            raise self.fail(path, f"{tag} must hold a list")
        if tag in ("$objects", "$slice") and type(body) is not list:
            raise self.fail(path, f"{tag} must hold a list")
        if tag == "$objects":
            if not all(v is None or type(v) in (bool, int, float, str) for v in body):
                raise self.fail(path, "$objects must hold strings, numbers, booleans and nulls")
            out = np.empty(len(body), dtype=object)
            out[:] = body
            return out
        if tag == "$slice":
            if len(body) != 3 or not all(v is None or _is_int(v) for v in body):
                raise self.fail(path, "$slice must hold [start, stop, step], each an integer or null")
            return slice(*body)
        if tag == "$type":
            dtype = _loadable.dtype(body)
            if dtype is None:
                raise self.fail(path, f"$type {body!r:.40} is not a plain scalar dtype")
            return dtype.type
        if tag == "$function":
            function = _loadable.resolve_function(body)
            if function is None:
                raise self.fail(path, f"function {body!r:.80} is not one of {list(_loadable.FUNCTIONS)}")
            return function
        if tag == "$estimator":
            return _instantiate(self, body, value["params"], value["state"], path, depth)
        if tag == "$value":
            return self._value(body, value["state"], path, depth)
        if tag == "$tuple":
            return tuple(self.decode(v, f"{path}[{i}]", depth) for i, v in enumerate(body))
        if tag == "$dict":
            return self._dict(body, path, depth)
        if tag == "$array":
            return self._array(body, path)
        if tag in ("$scalar", "$dtype"):
            dtype = _loadable.dtype(body)
            if dtype is None:
                raise self.fail(path, f"{tag} {body!r:.40} is not a plain scalar dtype")
            if tag == "$dtype":
                return dtype
            v = value["value"]
            if type(v) not in (bool, int, float, str) and not isinstance(v, dict):
                raise self.fail(path, "$scalar value must be a number or a string")
            try:
                return dtype.type(self.decode(v, path, depth))
            except (TypeError, ValueError, OverflowError) as exc:
                raise self.fail(path, f"$scalar {body}: {exc}") from None
        if tag == "$generator":
            return self._generator(body, value["state"], path, depth)
        return self._dataclass(body, value["fields"], path, depth)

    def _dict(self, body: list, path: str, depth: int) -> dict:
        out = {}
        for i, item in enumerate(body):
            if type(item) is not list or len(item) != 2:
                raise self.fail(path, f"$dict entry {i} is not a [key, value] pair")
            key = _hashable(self.decode(item[0], f"{path} key {i}", depth))
            try:
                hash(key)
            except TypeError:
                raise self.fail(path, f"$dict key {i} is not hashable") from None
            out[key] = self.decode(item[1], f"{path}.{key!s:.40}", depth)
        return out

    def _array(self, name: Any, path: str) -> np.ndarray:
        if type(name) is not str:
            raise self.fail(path, "$array must name an array")
        if name in self.arrays:
            return self.arrays[name]
        info = self.views.get(name)  # (a str: checked above)
        if info is None:
            raise self.fail(path, f"array {name!r:.80} is neither stored nor a view")
        owner = self.arrays[info["of"]]  # stored, C-contiguous, and the view inside it (checked)
        a = np.ndarray(info["shape"], info["dtype"], buffer=owner, offset=info["offset"], strides=info["strides"])
        self.arrays[name] = a
        return a

    def _generator(self, body: Any, state: Any, path: str, depth: int) -> np.random.Generator:
        if type(body) is not str or body not in _loadable.BIT_GENERATORS:
            raise self.fail(path, f"bit generator {body!r:.40} is not one of {list(_loadable.BIT_GENERATORS)}")
        rng = np.random.Generator(getattr(np.random, body)())
        decoded = self.decode(state, f"{path}.state", depth)
        try:
            rng.bit_generator.state = decoded
        except Exception as exc:  # noqa: BLE001 - numpy validates the state it is given, with various errors
            raise self.fail(path, f"invalid {body} state: {type(exc).__name__}: {str(exc)[:100]}") from None
        return rng

    def _value(self, name: Any, state: Any, path: str, depth: int) -> Any:
        cls = _loadable.resolve_value(name)
        if cls is None:
            raise self.fail(path, f"value class {name!r:.80} is not one of {list(_loadable.VALUES)}")
        decoded = self.decode(state, f"{path}.state", depth)
        if not isinstance(decoded, dict) or not all(type(k) is str and k.isidentifier() and not k.startswith("__")
                                                    for k in decoded):
            raise self.fail(path, "a value's state must map attribute names to values")
        restore = getattr(cls, "_from_saved_state", None)
        if restore is not None:
            try:
                return restore(decoded)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise self.fail(path, f"invalid {name} ({type(exc).__name__}: {str(exc)[:100]})") from None
        obj = cls.__new__(cls)
        for key in decoded:
            if not _plain_attribute(cls, key):
                raise self.fail(path, f"{key!r:.80} is not an attribute of {name}")
        obj.__dict__.update(decoded)
        return obj

    def _dataclass(self, name: Any, fields: Any, path: str, depth: int) -> Any:
        cls = _loadable.resolve_dataclass(name)
        if cls is None:
            raise self.fail(path, f"dataclass {name!r:.80} is not one of {list(_loadable.DATACLASSES)}")
        expected = {f.name for f in dataclasses.fields(cls)}
        if type(fields) is not dict or set(fields) != expected:
            raise self.fail(path, f"fields must be exactly {sorted(expected)}")
        obj = cls.__new__(cls)
        for key, v in fields.items():
            object.__setattr__(obj, key, self.decode(v, f"{path}.{key}", depth))
        return obj


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key
