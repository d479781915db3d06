"""Atomic writes, and checkpoint / resume of long computations.

Every file is written under a temporary name in the same directory, flushed to disk and renamed over
the target (``os.replace`` is atomic on POSIX), so a process stopped at any moment leaves either the old
file or the new one, never half of one.

A :class:`Checkpointer` owns a directory holding ``config.json`` (the configuration its checkpoints
belong to) and numbered checkpoints ``ckpt-<step>.npz``: numpy arrays plus a JSON ``meta`` document, read
back with ``allow_pickle=False``. Opening the directory with a different configuration raises
:class:`CheckpointMismatchError` naming the settings that differ, so a resumed run can never silently
continue someone else's state.

>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> ck = Checkpointer(d, {"epochs": 3})
>>> _ = ck.save(1, {"w": np.arange(3.0)}, {"epoch": 1})
>>> last = Checkpointer(d, {"epochs": 3}).latest()
>>> last.step, last.arrays["w"].tolist(), last.meta["epoch"]
(1, [0.0, 1.0, 2.0], 1)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_CKPT = re.compile(r"^ckpt-(\d+)\.npz$")


class CheckpointMismatchError(ValueError):
    """The checkpoint directory belongs to a different configuration, or to other data."""


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Save ``arrays`` as an ``.npz`` file atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write(path, buf.getvalue())


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and numpy values turned into plain Python, for hashing and comparing."""
    return json.dumps(obj, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def fingerprint(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def data_fingerprint(data: Any) -> Any:
    """What identifies the data a computation runs on, as JSON-able values, cheap to compute.

    - a zarr store (a path, a catalog name, or an xarray Dataset opened from one): its path and, per array,
      shape, chunking, dtype and, per chunk, ``[size, checksum]`` from the store's integrity manifest where it
      has one, else ``[size, mtime_ns]`` of the chunk file (a rewritten chunk changes its time);
    - a dask array: shape, chunking, dtype and its graph name (dask's token hashes the inputs: numpy contents,
      random seeds, the store and its modification time for xarray);
    - numpy: shape, dtype and SHA-256 of the bytes;
    - a tuple or list (e.g. ``(X, y)``): a list of these.
    """
    import sys

    if isinstance(data, (tuple, list)):
        return [data_fingerprint(d) for d in data]
    if isinstance(data, (str, os.PathLike)):
        return _store_fingerprint(_store_path(data))
    xr = sys.modules.get("xarray")
    if xr is not None and isinstance(data, xr.Dataset) and data.encoding.get("source"):
        return _store_fingerprint(Path(data.encoding["source"]))
    if xr is not None and isinstance(data, (xr.Dataset, xr.DataArray)):
        data = data["X"].data if isinstance(data, xr.Dataset) else data.data
    if isinstance(data, np.ndarray):
        a = np.ascontiguousarray(data)
        return {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": hashlib.sha256(a.view(np.uint8)).hexdigest()}
    if hasattr(data, "dask") and hasattr(data, "chunks"):
        return {"shape": list(data.shape), "chunks": [list(c) for c in data.chunks], "dtype": str(data.dtype),
                "dask": data.name}
    raise TypeError(f"cannot fingerprint data of type {type(data).__name__}")


def _store_path(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.exists():
        return path.resolve()
    from .io.catalog import load_catalog

    entries = load_catalog()
    if str(name_or_path) in entries:
        return Path(entries[str(name_or_path)].path).resolve()
    raise FileNotFoundError(f"no dataset {str(name_or_path)!r} to fingerprint")


def _store_fingerprint(path: Path) -> dict[str, Any]:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    arrays = {}
    for name, a in sorted(group.arrays()):
        manifest = _manifest(path / name)
        if manifest is not None:
            chunks = {k: list(v) for k, v in sorted(manifest["chunks"].items())}
        else:
            chunks = {}
            for i in range(a.nchunks):
                key = a.metadata.encode_chunk_key(np.unravel_index(i, a.cdata_shape))
                try:
                    st = os.stat(path / name / key)
                except FileNotFoundError:
                    chunks[key] = None
                else:
                    chunks[key] = [st.st_size, st.st_mtime_ns]
        arrays[name] = {"shape": list(a.shape), "chunks": list(a.chunks), "dtype": str(a.dtype),
                        "chunk " + ("checksums" if manifest is not None else "files"): chunks}
    return {"path": str(path), "arrays": arrays}


def _manifest(array_dir: Path) -> dict | None:
    """The store's per-chunk checksum manifest (``io.store.load_manifest``, where this version has it)."""
    from .io import store

    load = getattr(store, "load_manifest", None)
    return None if load is None else load(array_dir)


def _differences(before: Any, now: Any, where: str = "data") -> list[str]:
    """Dotted paths where two fingerprints differ, with both values (chunk lists summarised)."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [d for k in sorted(set(before) | set(now), key=str)
                for d in _differences(before.get(k), now.get(k), f"{where}.{k}")]
    if isinstance(before, list) and isinstance(now, list) and len(before) == len(now) \
            and all(isinstance(b, (dict, list)) for b in before):
        return [d for i, (b, n) in enumerate(zip(before, now)) for d in _differences(b, n, f"{where}[{i}]")]
    return [] if before == now else [f"{where}: {before!r} in the checkpoint vs {now!r} now"]


@dataclass
class Checkpoint:
    """One checkpoint read back: its step number, arrays and JSON metadata."""

    step: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


class Checkpointer:
    """Numbered, atomic checkpoints in ``directory`` for one configuration.

    ``config`` is any JSON-able mapping describing what is being computed (hyperparameters, data
    shape...). The first :meth:`save` records it; later ones, and :meth:`latest`, refuse a directory
    written with another configuration. ``data`` (anything :func:`data_fingerprint` takes) is fingerprinted
    the same way and a directory written for other data is refused too. Only the ``keep`` newest
    checkpoints are kept.
    """

    def __init__(self, directory: str | os.PathLike, config: Mapping[str, Any], *, data: Any = None,
                 keep: int = 2) -> None:
        self.directory = Path(directory)
        self.config = json.loads(canonical_json(dict(config)))
        self.data = None if data is None else json.loads(canonical_json(data_fingerprint(data)))
        self.keep = max(1, int(keep))

    @property
    def config_path(self) -> Path:
        return self.directory / "config.json"

    @property
    def data_path(self) -> Path:
        return self.directory / "data.json"

    def check(self) -> None:
        """Raise :class:`CheckpointMismatchError` if the directory holds another configuration."""
        if not self.config_path.exists():
            return
        stored = json.loads(self.config_path.read_text())
        if stored == self.config:
            return
        keys = sorted(set(stored) | set(self.config))
        now = self.config
        diffs = [f"{k}: {stored.get(k, '<missing>')!r} in the checkpoint vs {now.get(k, '<missing>')!r} now"
                 for k in keys if stored.get(k) != now.get(k)]
        raise CheckpointMismatchError(
            f"checkpoint directory {str(self.directory)!r} was written with a different configuration ("
            + "; ".join(diffs) + "). Use another checkpoint directory, or delete this one to start over."
        )

    def check_data(self) -> None:
        """Raise :class:`CheckpointMismatchError` listing the differences if the directory is for other data."""
        if self.data is None or not self.data_path.exists():
            return
        diffs = _differences(json.loads(self.data_path.read_text()), self.data)
        if diffs:
            shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
            raise CheckpointMismatchError(
                f"checkpoint directory {str(self.directory)!r} was written for other data ({shown}). Use another "
                "checkpoint directory, or delete this one to start over.")

    def steps(self) -> list[int]:
        """Step numbers of the checkpoints present, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := _CKPT.match(p.name)))

    def _path(self, step: int) -> Path:
        return self.directory / f"ckpt-{step:08d}.npz"

    def latest(self) -> Checkpoint | None:
        """The newest readable checkpoint, or None when there is none (checks configuration and data first).

        An unreadable checkpoint (truncated, a flipped bit caught by the zip CRC, no metadata) is skipped
        with a warning naming it, for the one before.
        """
        self.check()
        self.check_data()
        for step in reversed(self.steps()):
            path = self._path(step)
            try:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files if k != "__meta__"}
                    meta = json.loads(str(z["__meta__"]))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                warnings.warn(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); "
                              "falling back to the previous one", RuntimeWarning, stacklevel=2)
                continue
            return Checkpoint(step, arrays, meta)
        return None

    def save(self, step: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
        """Write checkpoint ``step`` atomically, then drop all but the ``keep`` newest."""
        self.check()
        self.check_data()
        if "__meta__" in arrays:
            raise ValueError("'__meta__' is reserved in checkpoint arrays")
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            atomic_write(self.config_path, canonical_json(self.config))
        if self.data is not None and not self.data_path.exists():
            atomic_write(self.data_path, canonical_json(self.data))
        path = atomic_save_npz(self._path(step), {**arrays, "__meta__": np.array(canonical_json(dict(meta)))})
        for old in self.steps()[: -self.keep]:
            self._path(old).unlink(missing_ok=True)
        return path
