"""Seconds and peak resident memory of this process, stage by stage, for estimators that report them.

The peak is the process's high-water mark of resident memory (``ru_maxrss``) read at the end of each
stage, so the figures never decrease: the stage at which it rises is the one that set the new peak. It is
read, never reset (resetting it would also reset what ``getrusage`` reports to the caller).

>>> stages = Stages()
>>> with stages("allocate"):
...     block = bytearray(200 * 2**20)
...     block[::4096] = b"x" * len(block[::4096])  # touch every page
>>> bool(stages.peak_bytes["allocate"] >= 200 * 2**20) and stages.seconds["allocate"] >= 0
True
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes (current RSS where no peak is kept)."""
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        return int(psutil.Process().memory_info().rss)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB elsewhere


class Stages:
    """Records ``seconds[name]`` and ``peak_bytes[name]`` for each ``with stages(name):`` block."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_bytes: dict[str, int] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t0
        self.peak_bytes[name] = peak_rss()
