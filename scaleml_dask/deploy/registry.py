"""A model registry on disk without pickle: numbered versions of JSON metadata and ``.npz`` arrays.

Layout of a registry directory::

    models/reg/
      1/metadata.json  1/arrays.npz
      2/metadata.json  2/arrays.npz
      .3.tmp-1f2e.../  (a save in progress; renamed to 3/ when complete)

``save_model`` builds a version under a temporary name beside the others, fsyncs every file and the
directory, and renames it to the next free number; two concurrent saves never collide (the rename onto an
existing version fails and the save takes the next number). ``"latest"`` is the highest complete version.

``metadata.json`` (``format_version`` 1)::

    format_version  1
    class           stable public name, e.g. "scaleml_dask.linear.LinearRegression" (one of ``CLASSES``)
    params          the hyperparameters (``get_params()``), encoded as below; non-JSON-able ones
                    (callbacks) are null and listed in ``notes``
    n_features, feature_names (or null), dtypes {"input": ..., <output>: ...}
    outputs         among "predict", "predict_proba", "transform", main first (``outputs.output_names``)
    training        {data, n_samples, feature_mean, feature_std, prediction_mean, prediction_std}: from
                    ``data=`` in one pass when given (prediction = the main output's first column), else
                    what the model itself knows (``n_samples_``, PCA's ``mean_``), null otherwise
    metrics, versions {python, numpy, scikit-learn, dask, scaleml_dask}, created (UTC, ISO 8601), notes
    compression     null, or {path: "int8" | "float16"} for arrays stored compressed
    state           the fitted attributes: the instance's ``__dict__`` minus the hyperparameters and a
                    clusterer's ``labels_`` (the training rows' labels, not part of the model), encoded
    files           {"arrays.npz": {sha256, bytes}}
    arrays          {name: {file, sha256 (of the stored array's bytes, C order), shape, dtype, decode?}}
    views           {name: {of, offset, shape, strides, dtype}}: arrays that were views of a saved array
                    (the online learners' ``state_`` into ``_buf``) are restored as views again

The encoding of values: JSON null / bool / int / str / finite float as themselves, lists as lists, and
tagged objects for everything else: ``{"$float": "nan"}``, ``{"$tuple": [...]}``, ``{"$dict": [[k, v],
...]}``, ``{"$scalar": dtype, "value": v}`` (numpy scalars), ``{"$array": name}``, ``{"$dtype": str}``,
``{"$generator": bit generator, "state": ...}`` (``numpy.random.Generator``) and ``{"$dataclass":
"module:Name", "fields": {...}}`` for dataclasses defined in ``scaleml_dask`` only. Anything else is
refused when saving (``RegistryError`` naming the attribute), so loading never runs code from the file.

Compressed arrays (``scaleml_dask.deploy.compress``) are declared by the model's ``quantization_``
attribute ``{path: {"dtype": "int8", "scale": array, "tail": k} | {"dtype": "float16", "tail": k}}``:
the leading rows are stored as int8 (with ``scale`` broadcast over them) or float16, the last ``tail``
rows (e.g. an intercept row) in float64, and ``load_model`` dequantizes them to float64, bitwise equal to
the in-memory compressed model.

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
import hashlib
import importlib
import io
import json
import math
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import _fsync_dir
from . import outputs as _outputs

FORMAT_VERSION = 1
METADATA = "metadata.json"
ARRAYS = "arrays.npz"

#: The classes a version may hold, by the stable public name written as ``class``.
CLASSES = (
    "scaleml_dask.linear.LinearRegression",
    "scaleml_dask.linear.Ridge",
    "scaleml_dask.pca.PCA",
    "scaleml_dask.sgd.SGDClassifier",
    "scaleml_dask.sgd.SGDRegressor",
    "scaleml_dask.kmeans.KMeans",
    "scaleml_dask.online.LogisticRegression",
    "scaleml_dask.online.LinearRegression",
    "scaleml_dask.online.Perceptron",
    "scaleml_dask.online.RLS",
    "scaleml_dask.online.MiniBatchKMeans",
    "scaleml_dask.online.ADWIN",
    "scaleml_dask.online.PageHinkley",
)
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_SCALAR_KINDS = "biufU"
#: attributes whose last axis is the feature axis
_WIDTH_ATTRS = ("coef_", "components_", "mean_", "cluster_centers_")
#: fitted attributes that describe the training rows rather than the model (n-sized, lazy for dask input)
_NOT_SAVED = ("labels_",)


class RegistryError(ValueError):
    """A model cannot be saved or loaded; the message names the file (or attribute) and the problem."""


# ------------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------------


def save_model(model: Any, directory: str | os.PathLike, *, data: Any = None,
               metrics: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as a new version ``directory/<n>/`` (n = 1, 2, ...) atomically; returns its path.

    ``data`` (dataset name, path, xarray or array of the training rows) adds training statistics for drift
    monitoring, computed in one pass; ``metrics`` (JSON-able dict) is stored as given.
    """
    directory = Path(directory)
    cls_name = class_name(model)
    meta, arrays = _describe(model, cls_name, data, metrics)
    directory.mkdir(parents=True, exist_ok=True)
    n = _next_version(directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{n}.tmp-", dir=directory))
    try:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        raw = buf.getvalue()
        meta["files"] = {ARRAYS: {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}}
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


def list_versions(directory: str | os.PathLike) -> list[int]:
    """The complete versions in ``directory`` (numbered subdirectories holding a metadata file), ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir()
                  if p.name.isdigit() and (p / METADATA).is_file())


def read_metadata(directory: str | os.PathLike, version: int | str = "latest") -> dict[str, Any]:
    """The metadata of one version after verifying every file's checksum; adds ``version`` and ``path``."""
    path = version_path(directory, version)
    meta, _ = _verified(path)
    return {**meta, "version": int(path.name), "path": str(path)}


def load_model(directory: str | os.PathLike, version: int | str = "latest") -> Any:
    """Rebuild the model of one version (default the latest), verifying every checksum; never unpickles."""
    path = version_path(directory, version)
    meta, arrays = _verified(path)
    where = path / METADATA
    cls = _resolve_class(meta["class"], where)
    decoder = _Decoder(arrays, meta.get("views", {}), where)
    params = decoder.decode(meta["params"], "params")
    state = decoder.decode(meta["state"], "state")
    if not isinstance(params, dict) or not isinstance(state, dict):
        raise RegistryError(f"{where}: params and state must be mappings")
    try:
        model = cls(**params)
    except TypeError as exc:
        raise RegistryError(f"{where}: params do not fit {meta['class']}: {exc}") from None
    model.__dict__.update(state)
    _check_width(model, meta.get("n_features"), where)
    problem = model._check_restored_state() if hasattr(model, "_check_restored_state") else None
    if problem:
        raise RegistryError(f"{where}: {problem}")
    return model


def version_path(directory: str | os.PathLike, version: int | str = "latest") -> Path:
    """The directory of ``version`` (an int, a string of digits, or ``"latest"``) in a registry."""
    directory = Path(directory)
    if version == "latest":
        versions = list_versions(directory)
        if not versions:
            raise RegistryError(f"{directory}: no saved model versions (expected {directory}/<n>/{METADATA})")
        return directory / str(versions[-1])
    if isinstance(version, bool) or not str(version).isdigit():
        raise RegistryError(f"{directory}: version must be a positive integer or 'latest'; got {version!r}")
    path = directory / str(int(version))
    if not (path / METADATA).is_file():
        raise RegistryError(f"{path}: no such model version (have {list_versions(directory)})")
    return path


def class_name(model: Any) -> str:
    """The stable public name of ``model``'s class in ``CLASSES``; RegistryError for any other class."""
    cls = type(model)
    for name in CLASSES:
        if name.rsplit(".", 1)[1] == cls.__name__ and _import_class(name) is cls:
            return name
    raise RegistryError(f"cannot save a {cls.__module__}.{cls.__qualname__}: the registry holds "
                        f"{', '.join(c.rsplit('.', 1)[1] for c in CLASSES)}")


# ------------------------------------------------------------------------------------------------------
# saving
# ------------------------------------------------------------------------------------------------------


def _describe(model: Any, cls_name: str, data: Any, metrics: dict | None) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata document (without ``files``) and the arrays to store."""
    notes: list[str] = []
    params = model.get_params(deep=False)
    for key, value in params.items():
        if callable(value):
            notes.append(f"param {key!r} ({type(value).__name__}) is not serializable; saved as null")
            params[key] = None
    state = {k: v for k, v in vars(model).items() if k not in params and k not in _NOT_SAVED}
    enc = _Encoder(model.__dict__.get("quantization_") or {})
    meta_params = enc.encode(params, "params")
    meta_state = {"$dict": [[k, enc.encode(v, k)] for k, v in state.items()]}
    arrays, array_meta, views = enc.finish()
    names = _outputs.output_names(model)
    n_features = getattr(model, "n_features_in_", None)
    dtypes: dict[str, str] = {}
    if n_features is not None:
        dtypes["input"] = "float64"
        probe = np.zeros((1, int(n_features)))
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

    def __init__(self, quantization: dict[str, dict]) -> None:
        self.quantization = dict(quantization)
        self._by_id: dict[int, tuple[str, np.ndarray, dict]] = {}

    def encode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$float": repr(value)}
        if isinstance(value, np.ndarray):
            return self._array(value, path)
        if isinstance(value, np.generic):
            if value.dtype.kind not in _SCALAR_KINDS:
                raise RegistryError(f"cannot save attribute {path!r}: numpy scalar of dtype {value.dtype}")
            return {"$scalar": value.dtype.str, "value": self.encode(value.item(), path)}
        if isinstance(value, np.dtype):
            if value.kind not in _SCALAR_KINDS:
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
            if bitgen not in _BIT_GENERATORS:
                raise RegistryError(f"cannot save attribute {path!r}: bit generator {bitgen}")
            return {"$generator": bitgen, "state": self.encode(value.bit_generator.state, f"{path}.state")}
        cls = type(value)
        if dataclasses.is_dataclass(value) and cls.__module__.split(".")[0] == "scaleml_dask":
            return {"$dataclass": f"{cls.__module__}:{cls.__qualname__}",
                    "fields": {f.name: self.encode(getattr(value, f.name), f"{path}.{f.name}")
                               for f in dataclasses.fields(value)}}
        raise RegistryError(f"cannot save attribute {path!r} of type {cls.__module__}.{cls.__qualname__} "
                            "(the registry stores arrays, JSON values, generators and scaleml_dask dataclasses)")

    def _array(self, a: np.ndarray, path: str) -> dict:
        known = self._by_id.get(id(a))
        if known is not None:
            return known[2]
        if a.dtype.kind not in _SCALAR_KINDS:
            raise RegistryError(f"cannot save attribute {path!r}: array of dtype {a.dtype} (numeric only)")
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
# loading
# ------------------------------------------------------------------------------------------------------


_REQUIRED = ("format_version", "class", "params", "state", "files", "arrays")


def _verified(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Metadata and arrays of the version at ``path``, every checksum and declared shape verified."""
    where = path / METADATA
    try:
        meta = json.loads(where.read_bytes())
    except FileNotFoundError:
        raise RegistryError(f"{where}: missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{where}: not valid JSON (truncated or corrupted?): {exc}") from None
    if not isinstance(meta, dict) or any(k not in meta for k in _REQUIRED):
        missing = [k for k in _REQUIRED if not isinstance(meta, dict) or k not in meta]
        raise RegistryError(f"{where}: not a model metadata document (missing {missing})")
    fv = meta["format_version"]
    if not isinstance(fv, int) or fv < 1:
        raise RegistryError(f"{where}: invalid format_version {fv!r}")
    if fv > FORMAT_VERSION:
        raise RegistryError(f"{where}: format_version {fv} is newer than this scaleml_dask reads "
                            f"({FORMAT_VERSION}); upgrade scaleml_dask to load it")
    if meta["class"] not in CLASSES:
        raise RegistryError(f"{where}: unknown model class {meta['class']!r}")
    try:
        arrays = _read_files(path, meta)
    except (AttributeError, KeyError, TypeError) as exc:  # fields of the wrong type or shape
        raise RegistryError(f"{where}: malformed metadata ({type(exc).__name__}: {exc})") from None
    _check_declared_width(meta, arrays, where)
    return meta, arrays


def _read_files(path: Path, meta: dict) -> dict[str, np.ndarray]:
    where = path / METADATA
    for fname, info in meta["files"].items():
        fpath = path / fname
        if Path(fname).name != fname:
            raise RegistryError(f"{where}: file name {fname!r} is not inside the version directory")
        try:
            raw = fpath.read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"{fpath}: missing") from None
        if len(raw) != info.get("bytes"):
            raise RegistryError(f"{fpath}: {len(raw)} bytes, expected {info.get('bytes')} (truncated or altered)")
        if hashlib.sha256(raw).hexdigest() != info.get("sha256"):
            raise RegistryError(f"{fpath}: sha256 checksum mismatch (corrupted or tampered with)")
    return _read_arrays(path, meta)


def _read_arrays(path: Path, meta: dict) -> dict[str, np.ndarray]:
    by_file: dict[str, list[str]] = {}
    for name, info in meta["arrays"].items():
        by_file.setdefault(info.get("file"), []).append(name)
    arrays: dict[str, np.ndarray] = {}
    for fname, names in by_file.items():
        fpath = path / str(fname)
        if fname not in meta["files"]:
            raise RegistryError(f"{path / METADATA}: arrays {names} are in {fname!r}, which has no checksum")
        try:
            with np.load(fpath, allow_pickle=False) as z:
                missing = sorted(set(names) - set(z.files))
                if missing:
                    raise RegistryError(f"{fpath}: arrays {missing} are missing")
                loaded = {n: z[n] for n in names}
        except RegistryError:
            raise
        except Exception as exc:  # zip / format / pickle refusals: all mean a bad file
            raise RegistryError(f"{fpath}: cannot be read as .npz without pickle: {exc}") from None
        for n, a in loaded.items():
            info = meta["arrays"][n]
            if list(a.shape) != list(info.get("shape", [])) or a.dtype.str != info.get("dtype"):
                raise RegistryError(f"{fpath}: array {n!r} is {a.dtype.str} {list(a.shape)}, metadata says "
                                    f"{info.get('dtype')} {info.get('shape')}")
            if _sha256(a) != info.get("sha256"):
                raise RegistryError(f"{fpath}: array {n!r} fails its sha256 checksum")
        arrays.update(loaded)
    for name, info in meta["arrays"].items():
        if "decode" in info:
            arrays[name] = _decompress(arrays, name, info["decode"], path / METADATA)
    return arrays


def _decompress(arrays: dict[str, np.ndarray], name: str, decode: dict, where: Path) -> np.ndarray:
    try:
        head = arrays[name].astype(np.float64)
        if decode["dtype"] == "int8":
            head = head * arrays[decode["scale"]]
        elif decode["dtype"] != "float16":
            raise ValueError(f"unknown dtype {decode['dtype']!r}")
        return np.concatenate([head, arrays[decode["tail"]]]) if decode["tail"] else head
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"{where}: cannot decompress array {name!r}: {exc}") from None


def _check_declared_width(meta: dict, arrays: dict[str, np.ndarray], where: Path) -> None:
    d = meta.get("n_features")
    for name in _WIDTH_ATTRS:
        a = arrays.get(name)
        if d is not None and a is not None and a.ndim and a.shape[-1] != d:
            raise RegistryError(f"{where}: n_features is {d} but array {name!r} has {a.shape[-1]} features")


def _check_width(model: Any, d: Any, where: Path) -> None:
    if d is None:
        return
    got = getattr(model, "n_features_in_", None)
    if got != d:
        raise RegistryError(f"{where}: n_features is {d} but the model's state has {got} features")
    for name in _WIDTH_ATTRS:
        a = getattr(model, name, None)
        if isinstance(a, np.ndarray) and a.ndim and a.shape[-1] != d:
            raise RegistryError(f"{where}: n_features is {d} but {name} has {a.shape[-1]} features")


def _import_class(name: str) -> type:
    module, attr = name.rsplit(".", 1)
    return getattr(importlib.import_module(module), attr)


def _resolve_class(name: str, where: Path) -> type:
    try:
        return _import_class(name)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"{where}: class {name!r} is not available: {exc}") from None


class _Decoder:
    """The inverse of ``_Encoder``: tagged JSON back to values, arrays from the verified ``.npz``."""

    def __init__(self, arrays: dict[str, np.ndarray], views: dict[str, dict], where: Path) -> None:
        self.arrays = dict(arrays)
        self.views = views
        self.where = where

    def fail(self, path: str, problem: str) -> RegistryError:
        return RegistryError(f"{self.where}: {path}: {problem}")

    def decode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, dict) or len(value) == 0:
            raise self.fail(path, f"unexpected value {value!r}")
        tag = next(iter(value))
        body = value[tag]
        try:
            if tag == "$float":
                return float({"nan": "nan", "inf": "inf", "-inf": "-inf"}[body])
            if tag == "$tuple":
                return tuple(self.decode(v, f"{path}[{i}]") for i, v in enumerate(body))
            if tag == "$dict":
                return {_hashable(self.decode(k, path)): self.decode(v, f"{path}.{k}") for k, v in body}
            if tag == "$array":
                return self._array(body, path)
            if tag == "$scalar":
                dtype = np.dtype(body)
                if dtype.kind not in _SCALAR_KINDS:
                    raise ValueError(f"dtype {body}")
                return dtype.type(self.decode(value["value"], path))
            if tag == "$dtype":
                dtype = np.dtype(body)
                if dtype.kind not in _SCALAR_KINDS:
                    raise ValueError(f"dtype {body}")
                return dtype
            if tag == "$generator":
                if body not in _BIT_GENERATORS:
                    raise ValueError(f"bit generator {body!r}")
                rng = np.random.Generator(getattr(np.random, body)())
                rng.bit_generator.state = self.decode(value["state"], path)
                return rng
            if tag == "$dataclass":
                return self._dataclass(body, value["fields"], path)
        except RegistryError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, ImportError) as exc:
            raise self.fail(path, f"cannot decode {tag}: {exc}") from None
        raise self.fail(path, f"unknown tag {tag!r}")

    def _array(self, name: str, path: str) -> np.ndarray:
        if name in self.arrays:
            return self.arrays[name]
        info = self.views.get(name)
        if info is None:
            raise self.fail(path, f"array {name!r} is neither stored nor a view")
        owner = self._array(info["of"], path) if info["of"] != name else None
        if owner is None or not owner.flags.c_contiguous:
            raise self.fail(path, f"view {name!r} has no contiguous stored array {info['of']!r}")
        a = np.ndarray(tuple(info["shape"]), np.dtype(info["dtype"]), buffer=owner, offset=int(info["offset"]),
                       strides=tuple(info["strides"]))
        self.arrays[name] = a
        return a

    def _dataclass(self, name: str, fields: dict, path: str) -> Any:
        module, _, qualname = name.partition(":")
        if module.split(".")[0] != "scaleml_dask":
            raise self.fail(path, f"dataclass {name!r} is not from scaleml_dask")
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise self.fail(path, f"{name!r} is not a dataclass")
        expected = {f.name for f in dataclasses.fields(cls)}
        if set(fields) != expected:
            raise self.fail(path, f"fields {sorted(fields)} do not match {name} ({sorted(expected)})")
        obj = cls.__new__(cls)
        for key, v in fields.items():
            object.__setattr__(obj, key, self.decode(v, f"{path}.{key}"))
        return obj


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key

