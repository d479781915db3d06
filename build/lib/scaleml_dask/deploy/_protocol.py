"""uvicorn's HTTP protocol (httptools) with the two bounds uvicorn lacks: a deadline for a request's headers, and a
limit on their size.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) and caps connections
(``limit_concurrency``), but a client that sends a request line and then a header byte every few seconds holds
its connection, and its memory, forever; so does one that sends endless headers. Here the request line and
headers must be complete ``header_timeout`` seconds after the connection opened (or the previous response was
sent and a new request began), else the client gets a 408 and the connection is closed; and past
``max_header_bytes`` of request line and headers it gets a 431. The body's own deadline is the app's
(``serve.App``), which reads it.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _Oversized(Exception):
    pass


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring; :func:`guarded` makes the class with the bounds set."""

    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 2**10

    def connection_made(self, transport: Any) -> None:
        self._deadline = None
        self._header_bytes = 0
        self._oversized = False
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._deadline is None:
            self._header_bytes = 0
            self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:
            self._oversized = True
            raise _Oversized  # stops the parser: uvicorn answers through send_400_response, below

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        if self._oversized:
            self._refuse(431, f"request line and headers over {self.max_header_bytes} bytes")
        else:
            super().send_400_response(msg)

    def _too_slow(self) -> None:
        self._deadline = None
        self._refuse(408, f"request headers not complete within {self.header_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        body = json.dumps({"error": message}).encode()
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                % (status, _REASONS[status], len(body)))
        self.transport.write(head + body)
        self.transport.close()


def guarded(header_timeout: float, max_header_bytes: int) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these bounds."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"header_timeout": float(header_timeout), "max_header_bytes": int(max_header_bytes)})
