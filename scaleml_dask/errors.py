"""Which exceptions are a user's mistake, and how a command reports them: one line on stderr, exit status 2.

Shared by the ``scaleml`` command and the workflow scripts run as ``python workflows/<name>.py``, so both read
the same; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path


class UsageError(Exception):
    """A command line that cannot be carried out (e.g. an unknown workflow); the message says why."""


def _os_error(exc: OSError) -> str:
    if isinstance(exc, PermissionError) and exc.filename:
        # name what the user asked for, not the hidden temporary (".name.tmp-1a2b") it is written under first
        path = Path(exc.filename)
        visible = re.fullmatch(r"\.(.+)\.(?:tmp|old)-[0-9a-f]+", path.name)
        return f"permission denied: {path.with_name(visible.group(1)) if visible else path}"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"no such file or directory: {exc.filename}"
    return str(exc)


#: The optional extra that installs each optional dependency (``pyproject.toml``): a command that needs one a
#: plain install lacks is a setup to complete, not a bug.
EXTRAS = {"orjson": "serve", "uvicorn": "serve", "httptools": "serve", "uvloop": "serve",
          "prometheus_client": "serve", "httpx": "serve", "pynndescent": "tsne", "dask_kubernetes": "k8s",
          "onnx": "onnx", "onnxruntime": "onnx"}


def _missing_extra(exc: ModuleNotFoundError) -> str | None:
    top = (exc.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    return (f"this needs {top!r}, an optional dependency not installed: "
            f"pip install 'scaleml-dask[{EXTRAS[top]}]'")


#: Exceptions that are a user's mistake, and how each reads on stderr (first match wins). The library's
#: ValueErrors (CatalogError, IngestError, ConfigError, CheckpointMismatchError, bad input data) already name the
#: offending dataset, file, line or chunk; ConnectionError (``connect``) names the scheduler and the timeout.
USER_ERRORS: tuple[tuple[type[BaseException], Callable[[BaseException], str]], ...] = (
    (UsageError, str),
    (ValueError, str),
    (OSError, _os_error),
)


def user_error_message(exc: BaseException) -> str | None:
    """The one line shown for ``exc`` if it is a user's mistake, else None (a bug: show the traceback)."""
    if isinstance(exc, ModuleNotFoundError):
        return _missing_extra(exc)  # any other missing module is a broken install: keep its traceback
    for kind, message in USER_ERRORS:
        if isinstance(exc, kind):
            return " ".join(message(exc).split()) or type(exc).__name__
    return None


def run_guarded(prog: str, func: Callable[[], int | None], *, debug: bool = False) -> int:
    """Run a command's body; a user's mistake becomes ``prog: message`` on stderr and status 2 (130 on ^C).
    With ``debug`` the traceback is shown instead."""
    try:
        return int(func() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error_message(exc)
        if debug or message is None:
            raise
        print(f"{prog}: {message}", file=sys.stderr)
        return 2
