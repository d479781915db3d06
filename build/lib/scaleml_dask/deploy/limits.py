"""Every bound on what a model file or a request may cost, in one place.

A model file is data from wherever it was copied, and a request is data from whoever can reach the port: each
is read only within these bounds, checked before the work they bound (sizes before decompressing or parsing,
rows before decoding, the response's size before encoding it). The registry takes ``registry_*`` fields
(``load_model(..., limits=)``), the server the others (``make_app(..., limits=)``, the ``scaleml serve``
options, each field's ``help`` its documentation); the defaults suit a server on a small machine.

>>> DEFAULT.max_rows, DEFAULT.max_body_bytes == 8 * 2**20
(10000, True)
>>> Limits(max_rows=10).max_rows
10
>>> Limits(max_rows=0)
Traceback (most recent call last):
...
ValueError: limit max_rows must be at least 1; got 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _limit(default: float, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Limits:
    """Bounds of the registry and the server (sizes in bytes, times in seconds)."""

    # --- model files (registry) ------------------------------------------------------------------------
    registry_metadata_bytes: int = _limit(64 * 2**20, "bytes of metadata.json (a model's arrays are in the .npz)")
    registry_depth: int = _limit(64, "nesting of JSON values in the metadata (lists, tagged objects)")
    registry_array_bytes: int = _limit(4 * 2**30, "bytes of all arrays of a version once decompressed, from the "
                                                   "declared shapes, checked before reading")
    registry_arrays: int = _limit(10_000, "arrays and views one version may declare")

    # --- requests (server) ----------------------------------------------------------------------------
    max_rows: int = _limit(10_000, "rows of one request (V2 tensor or V1 instances)")
    max_body_bytes: int = _limit(8 * 2**20, "bytes of a request body (Content-Length, or counted as it streams)")
    max_response_bytes: int = _limit(64 * 2**20, "bytes of a response, estimated from the rows and the outputs' "
                                                 "widths before the model runs")
    max_outputs: int = _limit(16, "entries of a request's outputs list (duplicates are answered once)")
    max_id_chars: int = _limit(256, "characters of a request's id (echoed in the response)")
    max_header_bytes: int = _limit(64 * 2**10, "bytes of the request line and headers")

    # --- time (server) -------------------------------------------------------------------------------
    header_timeout: float = _limit(10.0, "seconds from a connection's first byte (or its last response) to the "
                                         "end of a request's headers")
    body_timeout: float = _limit(30.0, "seconds from the end of the headers to the end of the body")
    idle_timeout: float = _limit(5.0, "seconds an idle keep-alive connection stays open")
    stuck_after: float = _limit(120.0, "liveness fails when every inference thread has been busy on one call "
                                       "for longer than this many seconds")

    # --- concurrency (server) ------------------------------------------------------------------------
    max_connections: int = _limit(1024, "open connections; past it a new one is answered 503")
    inference_threads: int = _limit(2, "threads that run model calls (never the event loop)")
    max_queue: int = _limit(256, "model calls waiting for a thread; past it a request is answered 503 with "
                                 "Retry-After")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            low = 0.001 if isinstance(value, float) else 1
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
                raise ValueError(f"limit {f.name} must be at least {low}; got {value!r}")

    def replace(self, **changes: float | None) -> Limits:
        """A copy with the fields in ``changes`` that are not None replaced."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


DEFAULT = Limits()
