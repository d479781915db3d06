"""Where this project writes: only into what it wrote itself, and nothing hidden left behind by a crash.

Every directory written here (a dataset, a model version, a run, a step's state) is built under a hidden
temporary name beside its destination, ``.<name>.tmp-<id>``, holding a marker of who wrote it (``kind``, the
process id, the host and the process's start time): the file :data:`MARKER`, or for a zarr dataset the
attribute :data:`OWNER_ATTR` of its group (zarr warns about files it does not know). When complete it is
renamed into place and keeps its marker, which is how a later write knows the destination is its own to
replace:

* :func:`claim` decides what may happen at a destination before anything is written: nothing there, fine; a
  directory of the same kind written here, replaced only with ``overwrite=True`` (``--overwrite``); anything
  else (a user's folder, a file, another kind) is refused by name and left untouched. A symlink is followed to
  what it points at (written in place there, the link kept); a dangling one is refused.
* :func:`publish` renames the complete temporary directory into place, the replaced one aside first and
  removed last.
* :func:`clean_stale` removes the hidden temporaries in a directory whose writer is gone (its process no
  longer runs on this host), so crashes, even ``kill -9``, do not accumulate; a writer still running, or on
  another host (a shared filesystem), is left alone.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> dest = claim(root / "out.zarr", "dataset")
>>> tmp = temporary_dir(dest, "dataset"); (tmp / "data").write_text("1")
1
>>> publish(tmp, dest).name, sorted(p.name for p in root.iterdir())
('out.zarr', ['out.zarr'])
>>> def refusal(*args, **kw):
...     try:
...         claim(*args, **kw)
...     except DestinationError as exc:
...         return str(exc).split("; ")[1]
>>> refusal(root / "out.zarr", "dataset")
'pass overwrite=True (--overwrite) to replace it'
>>> (root / "mine").mkdir(); refusal(root / "mine", "dataset", overwrite=True)
'refusing to replace a directory it did not write'
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The marker of a directory written here (JSON: by, kind, pid, host, started).
MARKER = ".scaleml-owner.json"
#: The same, as an attribute of a zarr group (in its ``zarr.json``).
OWNER_ATTR = "scaleml_owner"
_HIDDEN = re.compile(r"^\..+\.(?:tmp|old)-[0-9a-f]{8,32}$")
#: An empty hidden temporary without a marker is removed only after this many seconds (it may be being made).
UNMARKED_AGE = 3600.0


class DestinationError(ValueError):
    """A destination this project may not write to; the message names it and says why."""


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def owner(kind: str) -> dict[str, Any]:
    """The marker of a ``kind`` written by this process."""
    pid = os.getpid()
    return {"by": "scaleml_dask", "kind": kind, "pid": pid, "host": socket.gethostname(),
            "started": _process_start(pid)}


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The owner marker of ``directory`` (its :data:`MARKER` file, or its zarr group's :data:`OWNER_ATTR`), or
    None if it has none (or an unreadable one)."""
    for path, key in ((directory / MARKER, None), (directory / "zarr.json", OWNER_ATTR)):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if key is not None:
            doc = doc.get("attributes", {}).get(key) if isinstance(doc, dict) else None
        if isinstance(doc, dict) and doc.get("by") == "scaleml_dask":
            return doc
    return None


def write_marker(directory: Path, kind: str) -> None:
    """Mark ``directory`` as written by this process (as ``kind``)."""
    (directory / MARKER).write_text(json.dumps(owner(kind)))


def claim(dest: str | os.PathLike, kind: str, *, overwrite: bool = False) -> Path:
    """The real path to write ``kind`` (e.g. ``"dataset"``) to at ``dest``, after checking that this is allowed
    (see the module docstring); :class:`DestinationError` naming ``dest`` otherwise. Nothing is changed."""
    given = Path(dest)
    if given.is_symlink() and not given.exists():
        raise DestinationError(f"{given} is a symlink to {os.readlink(given)}, which does not exist; refusing to "
                               "write through it")
    real = given.resolve()
    if not real.exists():
        return real
    shown = str(given) if real == given.absolute() else f"{given} (-> {real})"
    marker = read_marker(real) if real.is_dir() else None
    if marker is None:
        what = "a file" if not real.is_dir() else "a directory"
        raise DestinationError(f"{shown} exists and was not written by scaleml_dask (no {MARKER}); refusing to "
                               f"replace {what} it did not write")
    if marker.get("kind") != kind:
        raise DestinationError(f"{shown} is a {marker.get('kind')} written by scaleml_dask, not a {kind}; refusing "
                               "to replace it")
    if not overwrite:
        raise DestinationError(f"{shown} exists (a {kind} written by scaleml_dask); pass overwrite=True "
                               "(--overwrite) to replace it")
    return real


def is_temporary(name: str) -> bool:
    """Whether ``name`` is of the form of the hidden temporaries written here (``.<name>.tmp-<id>``, ``.old-``)."""
    return _HIDDEN.match(name) is not None


def _hidden_sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}")


def temporary_name(dest: Path) -> Path:
    """A new hidden name beside ``dest`` to build it under (whoever creates it marks it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return _hidden_sibling(dest, "tmp")


def temporary_dir(dest: Path, kind: str = "temporary") -> Path:
    """A new hidden directory beside ``dest`` to build it in, marked with this process (see :func:`clean_stale`)."""
    tmp = temporary_name(dest)
    tmp.mkdir()
    write_marker(tmp, kind)
    return tmp


def publish(tmp: Path, dest: Path) -> Path:
    """Rename the complete directory ``tmp`` to ``dest`` (claimed first), the old ``dest`` aside and removed
    last; returns ``dest``."""
    if not dest.exists():
        os.replace(tmp, dest)
        return dest
    old = _hidden_sibling(dest, "old")
    write_marker(dest, "replaced")  # ours now: a crash before it is removed leaves it to the cleanup
    os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def own_dir(path: str | os.PathLike, kind: str) -> Path:
    """``path`` as a directory of ``kind`` this project keeps writing into (a run's state): created and marked if
    missing; refused (:class:`DestinationError`) if something not marked as such is there."""
    path = Path(path)
    if not path.exists():
        path.mkdir(parents=True)
        write_marker(path, kind)
        return path
    marker = read_marker(path) if path.is_dir() else None
    if marker is None or marker.get("kind") != kind:
        raise DestinationError(f"{path} exists and is not a {kind} directory written by scaleml_dask (no {MARKER}); "
                               "refusing to write into it")
    return path


def remove_own(path: str | os.PathLike, kind: str) -> bool:
    """Remove the directory ``path`` if it is a ``kind`` written here; returns whether it did."""
    path = Path(path)
    marker = read_marker(path) if path.is_dir() and not path.is_symlink() else None
    if marker is None or marker.get("kind") != kind:
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def _writer_gone(marker: dict[str, Any]) -> bool:
    """Whether the process that wrote ``marker`` no longer runs (only decidable on its own host)."""
    if marker.get("host") != socket.gethostname() or type(marker.get("pid")) is not int:
        return False
    started = _process_start(marker["pid"])
    return started is None or (marker.get("started") is not None and abs(started - marker["started"]) > 0.01)


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


def clean_stale(directory: str | os.PathLike) -> list[Path]:
    """Remove the hidden temporaries in ``directory`` that a writer left when it died (see the module
    docstring); empty unmarked ones (a crash between creating and marking them) once they are
    ``UNMARKED_AGE`` seconds old. Returns what was removed."""
    directory = Path(directory)
    removed = []
    try:
        entries = [p for p in directory.iterdir() if _HIDDEN.match(p.name)]
    except OSError:
        return removed
    for p in entries:
        marker = read_marker(p) if p.is_dir() and not p.is_symlink() else None
        if marker is not None and _writer_gone(marker):
            shutil.rmtree(p, ignore_errors=True)
        elif marker is None and p.is_dir() and not p.is_symlink() and _older_than(p, UNMARKED_AGE):
            try:
                p.rmdir()  # only if empty
            except OSError:
                continue
        else:
            continue
        if not p.exists():
            removed.append(p)
            log.info("removed %s, left by a writer that is gone", p)
    return removed
