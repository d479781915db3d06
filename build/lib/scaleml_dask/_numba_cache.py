"""A place for numba's on-disk cache where numba itself would find none.

numba caches a ``cache=True`` kernel next to its source (``__pycache__``) or, failing that, in a user-wide
directory under ``$HOME``. A wheel in a read-only image, run under an arbitrary uid whose home is not
writable, has neither, and numba then refuses to *define* the kernel ("no locator available"), so importing
the module fails. In that case only, the cache goes to a per-user directory under the system's temporary
directory (``NUMBA_CACHE_DIR``); a directory the user chose is always kept.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def _writable(path: Path) -> bool:
    """What numba's locators test: the directory can be made and a file created in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def ensure_cache_dir() -> str | None:
    """Set ``NUMBA_CACHE_DIR`` if numba would have no writable cache location; return it (else None)."""
    if os.environ.get("NUMBA_CACHE_DIR") or not sys.platform.startswith("linux"):
        return None
    in_tree = Path(__file__).resolve().parent / "__pycache__"
    user_wide = Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "numba"
    if _writable(in_tree) or _writable(user_wide):
        return None
    path = os.path.join(tempfile.gettempdir(), f"scaleml-numba-cache-{os.getuid()}")
    os.environ["NUMBA_CACHE_DIR"] = path
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba already imported: its locators read the config at definition time
        config.CACHE_DIR = path
    return path
