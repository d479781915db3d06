"""The errors the server answers with ``{"error": "..."}`` and the one table of their HTTP statuses."""

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


class TooLarge(ServingError):
    """More bytes or rows than the configured limit."""


class Unprocessable(ServingError):
    """A well-formed request the model cannot take: feature count, non-finite values, empty input,
    unknown output, or a new model version refused by verification."""


class NotReady(ServingError):
    """The model is not loaded (yet)."""


STATUS: dict[type[ServingError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    MethodNotAllowed: 405,
    TooLarge: 413,
    Unprocessable: 422,
    NotReady: 503,
}


def status_of(exc: ServingError) -> int:
    """The HTTP status of ``exc`` (by its class or the nearest base listed in :data:`STATUS`)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
