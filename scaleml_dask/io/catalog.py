"""The data catalog: named zarr datasets, opened as xarray Datasets backed by dask.

Entries map a name to ``{path, description, generator?}``. They come from two layers:

1. the demo entries built into the package (``demo_catalog.yaml`` beside this module), whose relative paths
   are relative to the data directory ``$SCALEML_DATA`` (default ``./data`` under the working directory);
2. the user's catalog: the file ``$SCALEML_CATALOG`` names, else ``./data_catalog.yaml`` if it exists. Its
   entries add to the built-in ones and override them by name; its relative paths are relative to the file.

An explicit ``catalog=`` argument reads that one file only. An entry with a ``generator`` is created on first
use, chunk by chunk.

>>> "demo-regression" in list_datasets()
True
"""

from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml
import zarr

from .read import dask_array, verify_array
from .sparse import is_sparse_group, sparse_dask_array, verify_sparse
from .store import MANIFEST, IntegrityError
from .synthetic import GENERATORS
from .synthetic_text import TEXT_META, read_text_meta
from .table import column_info, is_table, layout, open_layout_errors
from .text import is_text_dataset, open_text

CATALOG_ENV = "SCALEML_CATALOG"
DATA_ENV = "SCALEML_DATA"
BUILTIN_CATALOG = Path(__file__).with_name("demo_catalog.yaml")
_lock = threading.Lock()
#: Files whose bytes say what opening a local store gives: zarr's metadata (v3 and v2) and the manifests.
_METADATA_FILES = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata", MANIFEST, TEXT_META)
#: Stores opened lately: (absolute path, label) -> (their metadata files' bytes, the Dataset), so that a fit
#: given a path does not open its store again (benchmarks/README.md, "Growth").
_OPENED: OrderedDict[tuple[str, str], tuple[tuple, xr.Dataset]] = OrderedDict()
_OPENED_MAX = 16
_opened_lock = threading.Lock()
#: Catalog files parsed: (path, base) -> (the file's bytes, its entries).
_PARSED: dict[tuple[Path, Path], tuple[bytes, dict[str, Entry]]] = {}


class CatalogError(KeyError, ValueError):
    """An unknown dataset name, or a catalog file that cannot be used."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Entry:
    """One catalog entry."""

    name: str
    path: str
    description: str = ""
    generator: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the catalog file the entry comes from


def data_dir() -> Path:
    """Where the built-in entries' datasets live: ``$SCALEML_DATA``, default ``./data``."""
    return Path(os.environ.get(DATA_ENV) or "data").resolve()


def user_catalog_path() -> Path | None:
    """The user's catalog file: ``$SCALEML_CATALOG`` (which must exist), else ``./data_catalog.yaml``."""
    env = os.environ.get(CATALOG_ENV)
    if env:
        if not Path(env).is_file():
            raise CatalogError(f"${CATALOG_ENV} names {env!r}, which is not a file")
        return Path(env).resolve()
    here = Path("data_catalog.yaml")
    return here.resolve() if here.is_file() else None


def _read_entries(path: Path, base: Path) -> dict[str, Entry]:
    """The entries of one catalog file (relative paths resolved against ``base``), parsed again only when
    its bytes change: every open by path or name looks in the catalog, and parsing YAML each time was a
    visible share of a small fit's fixed cost (benchmarks/README.md, "Growth")."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror}") from None
    cached = _PARSED.get((path, base))
    if cached is None or cached[0] != text:
        cached = _PARSED[(path, base)] = (text, _parse_entries(path, text.decode(), base))
    return dict(cached[1])


def _parse_entries(path: Path, text: str, base: Path) -> dict[str, Entry]:
    """Parse and check the catalog ``text`` of file ``path``; relative paths are resolved against ``base``."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise CatalogError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    datasets = doc.get("datasets") if isinstance(doc, dict) else None
    if not isinstance(datasets, dict):
        raise CatalogError(f"{path}: expected a top-level 'datasets:' mapping")
    entries = {}
    for name, spec in datasets.items():
        if not isinstance(spec, dict) or "path" not in spec:
            raise CatalogError(f"{path}: dataset {name!r} needs a 'path'")
        unknown = set(spec) - {"path", "description", "generator"}
        if unknown:
            raise CatalogError(f"{path}: dataset {name!r} has unknown fields {sorted(unknown)}")
        gen = spec.get("generator") or {}
        if not isinstance(gen, dict):
            raise CatalogError(f"{path}: dataset {name!r}: 'generator' must be a mapping")
        if gen and gen.get("name") not in GENERATORS:
            raise CatalogError(f"{path}: dataset {name!r} has generator {gen.get('name')!r}; "
                               f"known generators: {sorted(GENERATORS)}")
        p = str(spec["path"])
        if "://" not in p and not os.path.isabs(p):
            p = str(base / p)
        entries[str(name)] = Entry(str(name), p, str(spec.get("description", "")), dict(gen), str(path))
    return entries


def load_catalog(catalog: str | os.PathLike | None = None) -> dict[str, Entry]:
    """Entries by name: the built-in ones overridden by the user's catalog, or only the file ``catalog``."""
    if catalog is not None:
        path = Path(catalog)
        if not path.is_file():
            raise CatalogError(f"catalog file {str(catalog)!r} does not exist")
        return _read_entries(path.resolve(), path.resolve().parent)
    entries = _read_entries(BUILTIN_CATALOG, data_dir())
    user = user_catalog_path()
    if user is not None:
        entries.update(_read_entries(user, user.parent))
    return entries


def list_datasets(catalog: str | os.PathLike | None = None) -> list[str]:
    """Names of the datasets in the catalog."""
    return sorted(load_catalog(catalog))


def materialize(entry: Entry, *, client: Any = None, progress: bool = False) -> Path:
    """Create a generated dataset if it does not exist yet; returns its path."""
    path = Path(entry.path)
    with _lock:
        if not path.exists():
            if not entry.generator:
                raise CatalogError(f"dataset {entry.name!r}: {entry.path} does not exist and has no generator")
            spec = dict(entry.generator)
            fn = GENERATORS[spec.pop("name")]
            try:
                fn(path, **spec, client=client, progress=progress)
            except TypeError as exc:
                raise CatalogError(f"dataset {entry.name!r}: bad generator parameters: {exc}") from exc
    return path


def _resolve(name_or_path: str | os.PathLike, catalog: str | os.PathLike | None, *, create: bool,
             client: Any = None, progress: bool = False) -> tuple[str, str]:
    """(path or URL, label for messages) of a catalog name or a store path; ``create`` materialises."""
    key = str(name_or_path)
    entries = load_catalog(catalog)
    if key in entries:
        entry = entries[key]
        if "://" in entry.path:
            return entry.path, entry.name
        if create:
            return str(materialize(entry, client=client, progress=progress)), entry.name
        if not Path(entry.path).exists():
            raise CatalogError(f"dataset {entry.name!r}: {entry.path} does not exist (yet)")
        return entry.path, entry.name
    if "://" in key or Path(key).exists():
        return key, key
    known = ", ".join(sorted(entries)) or "(none)"
    raise CatalogError(f"unknown dataset {key!r}: not a catalog name and no such path. Known datasets: {known}")


def open_dataset(name_or_path: str | os.PathLike, *, catalog: str | os.PathLike | None = None,
                 client: Any = None, progress: bool = False, verify: bool = False) -> xr.Dataset:
    """Open a catalog dataset (by name) or a zarr store (by path) as an ``xarray.Dataset`` over dask.

    ``X`` has dims ``(sample, feature)`` and ``y`` (optional) dims ``(sample,)``; both numeric. A
    catalog entry with a generator is materialised first (on ``client`` if given, with a progress bar if
    ``progress``). The variables' dask arrays read through ``io.read`` (the fast chunk reader; a missing or
    short chunk is an error naming it). ``verify=True`` also checks every chunk against the store's
    manifest (a full read of the store) and raises ``IntegrityError`` listing what is wrong. A local store
    whose metadata files and manifests are byte for byte those of its last open is not opened again: the
    caller gets a copy of that Dataset (the fixed cost of every fit given a path: benchmarks/README.md,
    "Growth").
    """
    path, label = _resolve(name_or_path, catalog, create=True, client=client, progress=progress)
    ds = _open_cached(path, label)
    if verify:
        _, problems = _verify_group(zarr.open_group(path, mode="r"), label)
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise IntegrityError(problems[0] + more)
    return ds


def _open_cached(path: str, label: str) -> xr.Dataset:
    """``_open``, or a copy of the Dataset opened last time if the store's metadata files are unchanged."""
    metadata = _metadata(path)
    key = (os.path.abspath(path), label)
    with _opened_lock:
        cached = _OPENED.get(key)
        if metadata is not None and cached is not None and cached[0] == metadata:
            _OPENED.move_to_end(key)
            return _copy(cached[1])
    ds = _open(path, label)
    if metadata is not None:
        with _opened_lock:
            _OPENED[key] = (metadata, ds)
            while len(_OPENED) > _OPENED_MAX:
                _OPENED.popitem(last=False)
    return _copy(ds)


def _copy(ds: xr.Dataset) -> xr.Dataset:
    """A Dataset of its own over the same (immutable) dask arrays: attributes changed by the caller stay
    out of the cache."""
    out = ds.copy(deep=False)
    out.attrs = _copy_attrs(ds.attrs)
    for name in out.variables:
        out[name].attrs = _copy_attrs(ds[name].attrs)
    return out


def _copy_attrs(value: Any) -> Any:
    """A deep copy of attributes read from JSON (dicts, lists, strings, numbers; anything else by
    ``copy.deepcopy``): a table's levels are thousands of strings, which ``copy.deepcopy`` visits one by one."""
    if isinstance(value, dict):
        return {k: _copy_attrs(v) for k, v in value.items()}
    if isinstance(value, list):
        if all(type(v) is str for v in value):
            return list(value)
        return [_copy_attrs(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return copy.deepcopy(value)


def _open(path: str, label: str) -> xr.Dataset:
    """The store at ``path`` as a checked Dataset whose variables read through ``io.read`` (a generated text
    dataset, Parquet files of documents, as ``text(sample)`` and ``y(sample)``: ``io.text.open_text``)."""
    if is_text_dataset(path):
        meta = read_text_meta(path)
        ds = open_text(path, text=meta["text_column"], target=meta["target_column"], label=label)
        ds.attrs.update({k: v for k, v in meta.items() if k not in ds.attrs})  # the planted truth
        return ds
    try:
        ds = xr.open_zarr(path, consolidated=False, chunks={})
        group = zarr.open_group(path, mode="r")
    except Exception as exc:
        raise CatalogError(f"dataset {label!r}: cannot open {path} as zarr: {exc}") from exc
    if is_table(ds):
        problems = open_layout_errors(ds, label)
        if problems:
            raise ValueError(problems[0])
        ds = ds[layout(ds)["columns"]]  # the file's column order
    else:
        if "X" not in ds and "X" in group and is_sparse_group(group["X"]):  # a CSR matrix per row chunk
            ds["X"] = xr.DataArray(sparse_dask_array(group["X"], label=label), dims=("sample", "feature"),
                                   attrs={"format": "csr", "nnz": int(group["X"].attrs["nnz"])})
        _check(ds, label)
    for name in list(ds.data_vars):
        if name in group.array_keys() and _undecoded(ds[name], group[name]):
            ds[name] = ds[name].copy(data=dask_array(group[name], label=label, name=str(name)))
    ds.attrs.setdefault("name", label)
    return ds


def _metadata(path: str) -> tuple | None:
    """The bytes of a local store's metadata files (the group's, its arrays' and their manifests), or None
    for a URL: equal bytes, same open. Chunk files are not included: they are checked as they are read."""
    if "://" in path:
        return None
    try:
        with os.scandir(path) as entries:
            arrays = sorted(e.name for e in entries if e.is_dir())
    except OSError:
        return None
    found = []
    nested = [f"{a}/{e.name}" for a in arrays for e in _subdirs(os.path.join(path, a))]  # a sparse X's arrays
    for sub in ("", *arrays, *nested):
        for name in _METADATA_FILES:
            try:
                with open(os.path.join(path, sub, name), "rb") as f:
                    found.append((sub, name, f.read()))
            except OSError:
                continue
    return tuple(found)


def _subdirs(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return sorted((e for e in entries if e.is_dir()), key=lambda e: e.name)
    except OSError:
        return []


def verify_dataset(name_or_path: str | os.PathLike, *,
                   catalog: str | os.PathLike | None = None) -> tuple[int, list[str]]:
    """Check every chunk of every array of a dataset: ``(chunks checked, problems)``, one line a problem.

    With the manifest of a store written here: existence, size and checksum. For a store from elsewhere:
    existence (unless the array allows empty chunks), the size of uncompressed chunks and the consistency
    of compressed ones. What ``scaleml verify`` runs.
    """
    path, label = _resolve(name_or_path, catalog, create=False)
    try:
        group = zarr.open_group(path, mode="r")
    except Exception as exc:
        raise CatalogError(f"dataset {label!r}: cannot open {path} as zarr: {exc}") from exc
    return _verify_group(group, label)


def _verify_group(group: zarr.Group, label: str) -> tuple[int, list[str]]:
    total, problems = 0, []
    for name in sorted(group.group_keys()):
        if is_sparse_group(group[name]):
            n, p = verify_sparse(group[name], label=label, name=name)
            total += n
            problems += p
    for name in sorted(group.array_keys()):
        n, p = verify_array(group[name], label=label, name=name)
        total += n
        problems += p
    return total, problems


def _undecoded(var: xr.DataArray, array: zarr.Array) -> bool:
    """Whether xarray shows ``array`` as stored (no CF decoding: scale/offset, masking, times), so that
    reading it through ``io.read`` gives the same values."""
    decoding = {"scale_factor", "add_offset", "_FillValue", "missing_value", "units", "calendar", "_Unsigned"}
    return var.dtype == array.dtype and not decoding & (set(var.encoding) | set(var.attrs))


def _check(ds: xr.Dataset, label: str) -> None:
    if "X" not in ds:
        raise ValueError(f"dataset {label!r} has no variable 'X' (variables: {sorted(ds.data_vars)})")
    expected = {"X": ("sample", "feature"), "y": ("sample",)}
    for var, dims in expected.items():
        if var not in ds:
            continue
        if ds[var].dims != dims:
            raise ValueError(f"dataset {label!r}: variable {var!r} has dims {ds[var].dims}; expected {dims}")
        dt = ds[var].dtype
        if not (np.issubdtype(dt, np.number) or dt.kind == "b"):
            raise ValueError(f"dataset {label!r}: variable {var!r} has non-numeric dtype {dt}")


def describe(name_or_path: str | os.PathLike, *, catalog: str | os.PathLike | None = None) -> dict[str, Any]:
    """A small JSON-able summary of a dataset: shape, chunks, dtype, size, attributes, and each column's kind,
    missing count and number of levels."""
    ds = open_dataset(name_or_path, catalog=catalog)
    if "X" not in ds and "text" in ds:  # documents (Parquet files): their size on disk, no feature count
        t = ds["text"].data
        return {"name": ds.attrs.get("name"), "n_samples": int(t.shape[0]), "n_features": None, "dtype": "text",
                "chunk_rows": int(max(t.chunks[0])), "n_chunks": len(t.chunks[0]),
                "nbytes": int(sum(os.path.getsize(f) for f in ds.attrs.get("files", []))), "has_y": "y" in ds,
                "codec": "parquet", "generator": ds.attrs.get("generator")}
    if is_table(ds):
        first = ds[layout(ds)["columns"][0]].data
        return {"name": ds.attrs.get("name"), "layout": "table", "n_samples": int(first.shape[0]),
                "n_columns": len(ds.data_vars), "chunk_rows": int(first.chunks[0][0]), "n_chunks": len(first.chunks[0]),
                "nbytes": int(ds.nbytes), "target": layout(ds).get("target"), "codec": ds.attrs.get("codec"),
                "generator": ds.attrs.get("generator"), "columns": column_info(ds)}
    X = ds["X"]
    sparse = not isinstance(X.data._meta, np.ndarray)
    nbytes = int(X.nbytes) if not sparse else int(X.attrs["nnz"]) * (X.dtype.itemsize + 4) + 4 * int(X.shape[0])
    out = {"name": ds.attrs.get("name"), "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
           "dtype": str(X.dtype), "chunk_rows": int(X.data.chunks[0][0]), "n_chunks": len(X.data.chunks[0]),
           "nbytes": nbytes + (int(ds["y"].nbytes) if "y" in ds else 0), "has_y": "y" in ds,
           "codec": ds.attrs.get("codec"), "generator": ds.attrs.get("generator")}
    if sparse:  # hashed features: no list of a million columns
        out.update(format="csr", nnz=int(X.attrs["nnz"]), density=int(X.attrs["nnz"]) / max(1, X.size))
    else:
        out["columns"] = column_info(ds)
    return out
