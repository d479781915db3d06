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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_CKPT = re.compile(r"^ckpt-(\d+)\.npz$")


class CheckpointMismatchError(ValueError):
    """The checkpoint directory belongs to a different configuration."""


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
    written with another configuration. Only the ``keep`` newest checkpoints are kept.
    """

    def __init__(self, directory: str | os.PathLike, config: Mapping[str, Any], *, keep: int = 2) -> None:
        self.directory = Path(directory)
        self.config = json.loads(canonical_json(dict(config)))
        self.keep = max(1, int(keep))

    @property
    def config_path(self) -> Path:
        return self.directory / "config.json"

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

    def steps(self) -> list[int]:
        """Step numbers of the checkpoints present, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := _CKPT.match(p.name)))

    def _path(self, step: int) -> Path:
        return self.directory / f"ckpt-{step:08d}.npz"

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint, or None when there is none (checks the configuration first)."""
        self.check()
        steps = self.steps()
        if not steps:
            return None
        step = steps[-1]
        with np.load(self._path(step), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
            meta = json.loads(str(z["__meta__"]))
        return Checkpoint(step, arrays, meta)

    def save(self, step: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
        """Write checkpoint ``step`` atomically, then drop all but the ``keep`` newest."""
        self.check()
        if "__meta__" in arrays:
            raise ValueError("'__meta__' is reserved in checkpoint arrays")
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            atomic_write(self.config_path, canonical_json(self.config))
        path = atomic_save_npz(self._path(step), {**arrays, "__meta__": np.array(canonical_json(dict(meta)))})
        for old in self.steps()[: -self.keep]:
            self._path(old).unlink(missing_ok=True)
        return path
