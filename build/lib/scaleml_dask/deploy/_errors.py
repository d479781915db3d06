"""The errors the server answers with ``{"error": "..."}``, and the one table of their HTTP statuses and headers.

Every refusal of the server is one of these classes; the transport turns it into a response through
:func:`response_of` and nowhere else. Anything else that escapes a handler is a bug: a 500 without details.
Messages name the request's offending part and never a path of the server's filesystem.
"""

from __future__ import annotations


class ServingError(Exception):
    """An error answered to the client; its status comes from :data:`STATUS`, nowhere else."""


class BadRequest(ServingError):
    """Not a valid request: invalid JSON, missing or ill-typed fields, ragged rows, shape/data mismatch."""


class Unauthorized(ServingError):
    """No or a wrong bearer token."""


class NotFound(ServingError):
    """Unknown route, model or version."""


class MethodNotAllowed(ServingError):
    """A known route asked with the wrong method."""


class RequestTimeout(ServingError):
    """The request's body did not arrive in time."""


class TooLarge(ServingError):
    """More bytes, rows or outputs than the configured limits, or a response that would be larger than its."""


class UnsupportedMediaType(ServingError):
    """A body in an encoding the server does not read (``Content-Encoding`` other than identity)."""


class Unprocessable(ServingError):
    """A well-formed request the model cannot take: feature count, values out of the datatype's range, empty
    input, unknown output, outputs that are not finite; or a model version refused by verification."""


class Overloaded(ServingError):
    """Every inference thread is busy and the queue is full: try again shortly."""


class NotReady(ServingError):
    """The model is not loaded (yet), or its versions were all refused."""


STATUS: dict[type[ServingError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    MethodNotAllowed: 405,
    RequestTimeout: 408,
    TooLarge: 413,
    UnsupportedMediaType: 415,
    Unprocessable: 422,
    Overloaded: 503,
    NotReady: 503,
}

#: Response headers that come with an error.
HEADERS: dict[type[ServingError], list[tuple[bytes, bytes]]] = {
    Unauthorized: [(b"www-authenticate", b"Bearer")],
    RequestTimeout: [(b"connection", b"close")],
    Overloaded: [(b"retry-after", b"1")],
    NotReady: [(b"retry-after", b"5")],
}


def _listed(exc: ServingError, table: dict) -> type | None:
    return next((cls for cls in type(exc).__mro__ if cls in table), None)


def status_of(exc: ServingError) -> int:
    """The HTTP status of ``exc`` (by its class or the nearest base listed in :data:`STATUS`).

    >>> status_of(Overloaded("busy")), status_of(TooLarge("big"))
    (503, 413)
    """
    cls = _listed(exc, STATUS)
    return 500 if cls is None else STATUS[cls]


def headers_of(exc: ServingError) -> list[tuple[bytes, bytes]]:
    """The response headers that come with ``exc``."""
    cls = _listed(exc, HEADERS)
    return [] if cls is None else HEADERS[cls]
