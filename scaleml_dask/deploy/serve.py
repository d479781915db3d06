"""The model server: Open Inference Protocol (KServe V2 REST) and V1, as a plain ASGI app on uvicorn.

Layers (as MLServer, without its weak spots): this module is the transport — routes, auth, size limits,
status codes, metrics, one per request in one place — over the protocol-agnostic :mod:`._dataplane`, which
routes (A/B) to the verified models of :mod:`._models`; tensors are converted by :mod:`._codecs`, adaptive
batching sits in front of a model (:mod:`._batching`), drift is watched by :mod:`.monitor`. A plain ASGI
callable rather than Starlette: measured faster for the same dataplane (``benchmarks/README.md``).

Security defaults: 127.0.0.1, optional bearer token (``401`` on every route but health), body and row limits
checked before parsing, models loaded only from JSON + ``.npz`` (never pickle).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from . import _codecs as codecs
from ._dataplane import DataPlane, Experiment
from ._errors import MethodNotAllowed, NotFound, ServingError, TooLarge, Unauthorized, status_of
from ._metrics import CONTENT_TYPE, Metrics
from ._models import ModelRegistry

log = logging.getLogger("scaleml_dask.serve")

HEALTH_ROUTES = frozenset({"/v2/health/live", "/v2/health/ready", "/healthz"})
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 8 * 2**20
_JSON = [(b"content-type", b"application/json")]
_NO_MODEL = ("", "", "")
#: The request headers the server reads (ASGI gives names in lower case).
_WANTED = frozenset({b"authorization", b"content-length", b"x-variant", b"x-routing-key"})


def parse_ab(spec: str) -> list[tuple[Path, float]]:
    """``"models/a=0.9,models/b=0.1"`` -> ``[(Path("models/a"), 0.9), (Path("models/b"), 0.1)]``, normalized.

    >>> parse_ab("m/a=3,m/b=1")
    [(PosixPath('m/a'), 0.75), (PosixPath('m/b'), 0.25)]
    """
    pairs = []
    for item in spec.split(","):
        path, sep, weight = item.strip().rpartition("=")
        try:
            w = float(weight)
        except ValueError:
            w = float("nan")
        if not sep or not path or not w > 0 or w == float("inf"):
            raise ValueError(f"--ab: {item!r} is not DIR=WEIGHT with a positive weight")
        pairs.append((Path(path), w))
    if len(pairs) < 2:
        raise ValueError(f"--ab needs at least two variants DIR_A=W,DIR_B=W; got {spec!r}")
    total = sum(w for _, w in pairs)
    return [(p, w / total) for p, w in pairs]


class Request:
    """What a handler gets: the route's arguments, the headers (lower-case names) and the body bytes."""

    __slots__ = ("args", "headers", "body")

    def __init__(self, args: tuple, headers: dict[str, str], body: bytes) -> None:
        self.args, self.headers, self.body = args, headers, body

    def json(self) -> Any:
        return codecs.loads(self.body)


class App:
    """The ASGI application: ``uvicorn.run(App(...))``; models load and reload in the background."""

    def __init__(self, dataplane: DataPlane, metrics: Metrics, *, token: str | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, reload_interval: float = 1.0) -> None:
        self.dataplane = dataplane
        self.registry = dataplane.registry
        self.metrics = metrics
        self.token = token.encode() if token else None
        self.max_body_bytes = int(max_body_bytes)
        self.reload_interval = float(reload_interval)
        self._watcher: asyncio.Task | None = None
        self._in_flight: dict[str, Any] = {}

    # --- ASGI ----------------------------------------------------------------------------------------
    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start(self) -> None:
        """Start the background loader: first load, then a poll for new versions every ``reload_interval``."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def _watch(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.registry.refresh_all)
            except Exception:  # a vanished directory must not stop the watcher of the others
                log.exception("model refresh failed")
            await asyncio.sleep(self.reload_interval)

    # --- HTTP ----------------------------------------------------------------------------------------
    async def _http(self, scope: dict, receive: Callable, send: Callable) -> None:
        start = time.perf_counter()
        path, method = scope["path"], scope["method"]
        endpoint, handler, args, methods = _route(path)
        gauge = self._in_flight.get(endpoint)
        if gauge is None:
            gauge = self._in_flight[endpoint] = self.metrics.in_flight.labels(endpoint)
        gauge.inc()
        labels, extra = _NO_MODEL, None
        try:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}
            if handler is None:
                raise NotFound(f"no route {method} {path}")
            if method not in methods:
                raise MethodNotAllowed(f"{path} takes {', '.join(sorted(methods))}, not {method}")
            if self.token is not None and path not in HEALTH_ROUTES:
                self._check_token(headers)
            body = await self._body(headers, receive) if method == "POST" else b""
            status, payload, model = await handler(self, Request(args, headers, body))
            if model is not None:
                labels, extra = model.labels, [(b"x-variant", model.variant.encode())]
        except ServingError as exc:
            status, payload = status_of(exc), {"error": str(exc)}
            model = getattr(exc, "model", None)
            if model is not None:
                labels, extra = model.labels, [(b"x-variant", model.variant.encode())]
            if isinstance(exc, Unauthorized):
                extra = [(b"www-authenticate", b"Bearer")]
        except asyncio.CancelledError:  # the client went away
            gauge.dec()
            raise
        except Exception as exc:  # a bug, not bad input: logged, answered as JSON
            log.exception("error answering %s %s", method, path)
            status, payload = 500, {"error": f"internal error: {type(exc).__name__}"}
        if isinstance(payload, bytes):
            body_out, content = payload, [(b"content-type", CONTENT_TYPE.encode())]
        else:
            body_out, content = codecs.dumps(payload), _JSON
        head = [*content, (b"content-length", str(len(body_out)).encode())]
        if extra:
            head += extra
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body_out})
        gauge.dec()
        self.metrics.observe((*labels, endpoint), status, time.perf_counter() - start)

    def _check_token(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
            raise Unauthorized("missing or wrong bearer token (Authorization: Bearer <token>)")

    async def _body(self, headers: dict[str, str], receive: Callable) -> bytes:
        """The request body, refused with 413 from Content-Length or as soon as the streamed bytes pass
        the limit — before anything is parsed."""
        limit = self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"request body of {declared} bytes; the limit is {limit}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise asyncio.CancelledError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"request body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# --- handlers: (app, request) -> (status, payload, served model or None) --------------------------------
Handler = Callable[[App, Request], Awaitable[tuple[int, Any, Any]]]


async def _live(app: App, req: Request) -> tuple:
    return 200, {"live": True}, None


async def _ready(app: App, req: Request) -> tuple:
    if app.registry.ready():
        return 200, {"ready": True}, None
    waiting = [n for n in app.registry.names() if n not in {m.name for m in app.registry.served()}]
    return 503, {"ready": False, "error": f"models not loaded yet: {', '.join(waiting)}"}, None


async def _server(app: App, req: Request) -> tuple:
    return 200, app.dataplane.server_metadata(), None


async def _metadata(app: App, req: Request) -> tuple:
    meta, model = app.dataplane.model_metadata(*req.args)
    return 200, meta, model


async def _model_ready(app: App, req: Request) -> tuple:
    return 200, app.dataplane.model_ready(*req.args), None


async def _infer(app: App, req: Request) -> tuple:
    name, version = req.args
    response, model = await app.dataplane.infer(name, version, req.json(), req.headers)
    return 200, response, model


async def _predict_v1(app: App, req: Request) -> tuple:
    response, model = await app.dataplane.predict_v1(req.args[0], req.json(), req.headers)
    return 200, response, model


async def _v1_models(app: App, req: Request) -> tuple:
    return 200, app.dataplane.v1_models(), None


async def _v1_model(app: App, req: Request) -> tuple:
    return 200, app.dataplane.model_ready(req.args[0], None), None


async def _load(app: App, req: Request) -> tuple:
    model = await app.dataplane.load(req.args[0])
    return 200, {"name": model.name, "version": model.version, "state": "READY"}, model


async def _index(app: App, req: Request) -> tuple:
    return 200, app.dataplane.repository_index(), None


async def _metrics(app: App, req: Request) -> tuple:
    return 200, app.metrics.render(), None


_GET, _POST = frozenset({"GET"}), frozenset({"POST"})
_STATIC: dict[str, tuple[str, Handler, frozenset]] = {
    "/v2": ("server", _server, _GET),
    "/v2/health/live": ("health", _live, _GET),
    "/v2/health/ready": ("health", _ready, _GET),
    "/healthz": ("health", _live, _GET),
    "/v2/repository/index": ("repository", _index, _POST),
    "/v1/models": ("v1_models", _v1_models, _GET),
    "/predict": ("v1_predict", _predict_v1, _POST),
    "/metrics": ("metrics", _metrics, _GET),
}


def _route(path: str) -> tuple[str, Handler | None, tuple, frozenset]:
    """``(endpoint label, handler, args, methods)`` of a path; the handler is None for an unknown path."""
    static = _STATIC.get(path.rstrip("/") or "/")
    if static is not None:
        endpoint, handler, methods = static
        return endpoint, handler, (None,) if handler is _predict_v1 else (), methods
    parts = path.strip("/").split("/")
    n = len(parts)
    if n >= 3 and parts[0] == "v2" and parts[1] == "models":
        name, rest = parts[2], parts[3:]
        version = None
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        if not rest:
            return "metadata", _metadata, (name, version), _GET
        if rest == ["infer"]:
            return "infer", _infer, (name, version), _POST
        if rest == ["ready"]:
            return "ready", _model_ready, (name, version), _GET
    elif n == 5 and parts[:3] == ["v2", "repository", "models"] and parts[4] == "load":
        return "load", _load, (parts[3],), _POST
    elif n == 3 and parts[:2] == ["v1", "models"]:
        if parts[2].endswith(":predict"):
            return "v1_predict", _predict_v1, (parts[2][: -len(":predict")],), _POST
        return "v1_model", _v1_model, (parts[2],), _GET
    return "unknown", None, (), frozenset()


# --- assembly -----------------------------------------------------------------------------------------
def _registries(path: Path) -> list[Path]:
    """``path`` itself if it is a registry (numbered versions, or nothing yet); else its subdirectories that
    are registries — so a container's ``/models`` may hold one model or several."""
    children = [p for p in path.iterdir() if p.is_dir()]
    if not children or any(p.name.isdigit() for p in children):
        return [path]
    nested = [p for p in sorted(children) if any(q.name.isdigit() for q in p.iterdir() if q.is_dir())]
    return nested or [path]


def _add_source(sources: dict[str, tuple[Path, str]], path: Path, variant: str | None) -> None:
    name = path.resolve().name
    known = sources.get(name)
    if known is not None and known[0].resolve() != path.resolve():
        raise ValueError(f"two model directories are named {name!r}: {known[0]} and {path}")
    sources[name] = (path, name if variant else "default")


def make_app(directories: Sequence[str | os.PathLike], *, ab: str | Sequence[tuple[Path, float]] | None = None,
             token: str | None = None, max_rows: int = DEFAULT_MAX_ROWS,
             max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_batch_size: int | None = None,
             max_batch_time_ms: float = 2.0, reload_interval: float = 1.0, monitor_chunk: int = 1024) -> App:
    """The server for registry ``directories`` (each served under its directory's name; a directory of
    registries serves each of them) and an optional A/B experiment ``ab`` (``"DIR_A=0.9,DIR_B=0.1"``: served
    under the first variant's name, each variant also under its own). Batching is off unless
    ``max_batch_size`` is given. Raises ``ValueError`` naming a missing directory or a clash of names.
    """
    for name, value, low in (("max_rows", max_rows, 1), ("max_body_bytes", max_body_bytes, 1),
                             ("max_batch_size", 1 if max_batch_size is None else max_batch_size, 1),
                             ("max_batch_time_ms", max_batch_time_ms, 0),
                             ("reload_interval", reload_interval, 1e-3), ("monitor_chunk", monitor_chunk, 1)):
        if not value >= low:
            raise ValueError(f"{name} must be at least {low}; got {value}")
    variants = parse_ab(ab) if isinstance(ab, str) else list(ab or [])
    sources: dict[str, tuple[Path, str]] = {}
    for directory, variant in [*((Path(d), None) for d in directories), *((p, "ab") for p, _ in variants)]:
        if not Path(directory).is_dir():
            raise ValueError(f"model directory {str(directory)!r} does not exist")
        for path in _registries(Path(directory)) if variant is None else [Path(directory)]:
            _add_source(sources, path, variant)
    if not sources:
        raise ValueError("give at least one model directory")
    experiments = {}
    if variants:
        names = tuple(p.resolve().name for p, _ in variants)
        if len(set(names)) != len(names):
            raise ValueError(f"--ab variants need distinct directory names; got {names}")
        experiments[names[0]] = Experiment(names[0], names, tuple(w for _, w in variants))
    registry = ModelRegistry(sources, monitor_chunk=monitor_chunk)
    dataplane = DataPlane(registry, experiments, max_rows=max_rows, max_batch_size=max_batch_size,
                          max_batch_time=max_batch_time_ms / 1000.0)
    metrics = Metrics(registry.served)
    registry.on_loaded = metrics.loaded
    registry.on_refused = lambda name, version, variant: metrics.loads.labels(name, version, variant,
                                                                                "refused").inc()
    dataplane.on_batch = metrics.batch
    return App(dataplane, metrics, token=token, max_body_bytes=max_body_bytes, reload_interval=reload_interval)


def serve(directories: Sequence[str | os.PathLike], *, host: str = "127.0.0.1", port: int = 8080,
          log_level: str = "warning", **options: Any) -> None:
    """Serve ``directories`` with uvicorn (uvloop and httptools where installed) until interrupted.

    ``options`` are those of :func:`make_app`; the token defaults to ``$SCALEML_TOKEN``.
    """
    import uvicorn

    if options.get("token") is None:
        options["token"] = os.environ.get("SCALEML_TOKEN") or None
    app = make_app(directories, **options)
    names = ", ".join(app.registry.names())
    print(f"scaleml serve: {names} on http://{host}:{port} (Open Inference Protocol V2 and V1; metrics at "
          f"/metrics{'; bearer token required' if options['token'] else ''})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on",
                loop="auto", http="auto", server_header=False, date_header=False)
