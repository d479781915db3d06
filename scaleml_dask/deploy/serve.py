"""The model server: Open Inference Protocol (KServe V2 REST) and V1, as a plain ASGI app on uvicorn.

Layers (as MLServer, without its weak spots): this module is the transport — routes, auth, size limits,
status codes, metrics, one per request in one place — over the protocol-agnostic :mod:`._dataplane`, which
routes (A/B) to the verified models of :mod:`._models`; tensors are converted by :mod:`._codecs`, adaptive
batching sits in front of a model (:mod:`._batching`), drift is watched by :mod:`.monitor`. A plain ASGI
callable rather than Starlette: measured faster for the same dataplane (``benchmarks/README.md``).

Security defaults: 127.0.0.1; a bearer token (``401`` on every route but health) from a file or the environment,
compared as bytes, and required to bind anything but loopback (unless ``insecure``); every bound of
:mod:`.limits` checked before the work it bounds (body and header bytes before parsing, rows before decoding,
the response's size before the model runs); deadlines for headers, body and idle connections; a bounded
number of connections; model calls in a bounded pool of threads off the event loop (503 with ``Retry-After``
when its queue is full), except those measured cheaper than the hand-off (``_models.INLINE_BELOW_S``); models
loaded only from JSON + ``.npz`` (never pickle); error messages that name no server path. Liveness fails when
the app cannot serve (its watcher stopped, or every inference thread is stuck).
Metrics may have a port of their own (``metrics_port``: ``/metrics`` only, without the token, for a scraper).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from . import _codecs as codecs
from ._dataplane import DataPlane, Experiment
from ._errors import (
    MethodNotAllowed,
    NotFound,
    RequestTimeout,
    ServingError,
    TooLarge,
    Unauthorized,
    UnsupportedMediaType,
    headers_of,
    status_of,
)
from ._metrics import CONTENT_TYPE, Metrics
from ._models import ModelRegistry
from ._workers import InferencePool
from .limits import DEFAULT, Limits

log = logging.getLogger("scaleml_dask.serve")

HEALTH_ROUTES = frozenset({"/v2/health/live", "/v2/health/ready", "/healthz"})
DEFAULT_MAX_ROWS = DEFAULT.max_rows
DEFAULT_MAX_BODY_BYTES = DEFAULT.max_body_bytes
#: The environment variable a token may come from.
TOKEN_ENV = "SCALEML_TOKEN"
_JSON = [(b"content-type", b"application/json")]
#: The endpoints whose responses are models' answers, bounded by ``Limits.max_response_bytes``.
_ANSWERS = frozenset({"infer", "v1_predict"})
_NO_MODEL = ("", "", "")
#: The GIL switch interval of a serving process: the event loop, which parses and answers every request, waits at
#: most this long for the GIL behind an inference thread's model call (Python's default, 5 ms, put the answers'
#: 99th percentile at several times the median under load: ``benchmarks/bench_serve.py``).
SWITCH_INTERVAL_S = 0.0005
#: The request headers the server reads (ASGI gives names in lower case).
_WANTED = frozenset({b"authorization", b"content-length", b"content-encoding", b"x-variant", b"x-routing-key"})


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

    @property
    def booleans(self) -> bool:
        """Whether the body may hold a JSON true / false (a fast scan of the bytes; then the values are checked)."""
        return b"true" in self.body or b"false" in self.body


def _as_token(token: str | bytes | None) -> bytes | None:
    if token is None or token in ("", b""):
        return None
    return token if isinstance(token, bytes) else token.encode("utf-8")


class App:
    """The ASGI application: ``uvicorn.run(App(...))``; models load and reload in the background."""

    def __init__(self, dataplane: DataPlane, metrics: Metrics, *, token: str | bytes | None = None,
                 limits: Limits = DEFAULT, reload_interval: float = 1.0, metrics_port: int | None = None) -> None:
        self.dataplane = dataplane
        self.registry = dataplane.registry
        self.metrics = metrics
        self.token = _as_token(token)
        self.limits = limits
        self.reload_interval = float(reload_interval)
        self.metrics_port = metrics_port  # set by serve() once bound: /metrics is served there, and only there
        self._watcher: asyncio.Task | None = None
        self._in_flight: dict[str, Any] = {}

    def problem(self) -> str | None:
        """Why the app cannot serve (liveness fails), or None."""
        if self._watcher is not None and self._watcher.done():
            return "the model watcher stopped"
        stuck = self.dataplane.pool.stuck(self.limits.stuck_after)
        if stuck is not None:
            return f"every inference thread has been busy on one model call for {stuck:.0f} s"
        return None

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
        self.dataplane.pool.close()

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
        on_metrics_port = self.metrics_port is not None and (scope.get("server") or (None, None))[1] == \
            self.metrics_port
        endpoint, handler, args, methods = _route(path)
        elsewhere = endpoint == "metrics" and not on_metrics_port and self.metrics_port is not None
        if (endpoint == "metrics") != on_metrics_port and self.metrics_port is not None:
            endpoint, handler = "unknown", None  # each port serves its own routes only
        gauge = self._in_flight.get(endpoint)
        if gauge is None:
            gauge = self._in_flight[endpoint] = self.metrics.in_flight.labels(endpoint)
        gauge.inc()
        labels, extra = _NO_MODEL, []
        try:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED}
            if handler is None:
                raise NotFound(f"no route {method} {path[:200]}" + (
                    f" (metrics are served on port {self.metrics_port})" if elsewhere else ""))
            if method not in methods:
                raise MethodNotAllowed(f"{path[:200]} takes {', '.join(sorted(methods))}, not {method}")
            if self.token is not None and path not in HEALTH_ROUTES and not on_metrics_port:
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
            extra = [*extra, *headers_of(exc)]
        except asyncio.CancelledError:  # the client went away
            gauge.dec()
            raise
        except Exception as exc:  # a bug, not bad input: logged, answered as JSON
            log.exception("error answering %s %s", method, path[:200])
            status, payload = 500, {"error": f"internal error: {type(exc).__name__}"}
        if isinstance(payload, bytes):
            body_out, content = payload, [(b"content-type", CONTENT_TYPE.encode())]
        else:
            body_out, content = codecs.dumps(payload), _JSON
        if status == 200 and endpoint in _ANSWERS and len(body_out) > self.limits.max_response_bytes:
            # the estimate before the model ran missed (long ids, wide outputs): refused all the same
            status = 413
            body_out = codecs.dumps({"error": f"the response would be {len(body_out):,} bytes; the limit is "
                                              f"{self.limits.max_response_bytes:,}"})
        head = [*content, (b"content-length", str(len(body_out)).encode())]
        if extra:
            head += extra
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body_out})
        gauge.dec()
        self.metrics.observe((*labels, endpoint), status, time.perf_counter() - start)

    def _check_token(self, headers: dict[str, str]) -> None:
        """The bearer token, compared as bytes in constant time (a header is bytes: latin-1 gives them back)."""
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("latin-1"), self.token):
            raise Unauthorized("missing or wrong bearer token (Authorization: Bearer <token>)")

    async def _body(self, headers: dict[str, str], receive: Callable) -> bytes:
        """The request body, refused with 413 from Content-Length or as soon as the streamed bytes pass
        the limit — before anything is parsed — and with 408 when it does not arrive within the deadline."""
        limit = self.limits.max_body_bytes
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UnsupportedMediaType(f"Content-Encoding {encoding[:40]!r} is not read; send the JSON as it is")
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"request body of {declared} bytes; the limit is {limit}")
        deadline = asyncio.get_running_loop().time() + self.limits.body_timeout
        chunks, size = [], 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(f"request body not received within {self.limits.body_timeout:g} s") from None
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
    problem = app.problem()
    if problem is not None:
        return 503, {"live": False, "error": problem}, None
    return 200, {"live": True}, None


async def _ready(app: App, req: Request) -> tuple:
    states = {n: app.registry.state(n) for n in app.registry.names()}
    unavailable = {n: reason for n, (state, reason) in states.items() if state == "UNAVAILABLE"}
    if app.registry.ready():
        body = {"ready": True}
        if unavailable:  # settled, but not served: reported, not blocking the others
            body["unavailable"] = unavailable
        return 200, body, None
    waiting = [n for n, (state, _) in states.items() if state == "LOADING"]
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
    response, model = await app.dataplane.infer(name, version, req.json(), req.headers, req.booleans)
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
             token: str | bytes | None = None, limits: Limits | None = None, max_rows: int | None = None,
             max_body_bytes: int | None = None, max_batch_size: int | None = None, max_batch_time_ms: float = 2.0,
             reload_interval: float = 1.0, monitor_chunk: int = 1024) -> App:
    """The server for registry ``directories`` (each served under its directory's name; a directory of
    registries serves each of them) and an optional A/B experiment ``ab`` (``"DIR_A=0.9,DIR_B=0.1"``: served
    under the first variant's name, each variant also under its own). Batching is off unless
    ``max_batch_size`` is given. ``limits`` bounds requests and model files (``max_rows`` and
    ``max_body_bytes``, when given, replace its fields). Raises ``ValueError`` naming a missing directory or a
    clash of names.
    """
    limits = (limits or DEFAULT).replace(max_rows=max_rows, max_body_bytes=max_body_bytes)
    for name, value, low in (("max_batch_size", 1 if max_batch_size is None else max_batch_size, 1),
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
    registry = ModelRegistry(sources, monitor_chunk=monitor_chunk, limits=limits)
    metrics = Metrics(registry.served, lambda: registry.retiring)
    pool = InferencePool(limits.inference_threads, limits.max_queue, on_waited=metrics.queue_wait.observe,
                         on_rejected=metrics.rejected.inc)
    metrics.queued.set_function(lambda: pool.waiting)
    dataplane = DataPlane(registry, experiments, limits=limits, pool=pool, max_batch_size=max_batch_size,
                          max_batch_time=max_batch_time_ms / 1000.0)
    registry.on_loaded = metrics.loaded
    registry.on_refused = lambda name, version, variant: metrics.loads.labels(name, version, variant,
                                                                                "refused").inc()
    dataplane.on_batch = metrics.batch
    return App(dataplane, metrics, token=token, limits=limits, reload_interval=reload_interval)


def read_token(token: str | None = None, token_file: str | os.PathLike | None = None) -> bytes | None:
    """The bearer token: from ``token_file`` (its first line), else ``token``, else ``$SCALEML_TOKEN``; as bytes
    (UTF-8). ``ValueError`` for an unreadable or empty token file."""
    if token_file is not None:
        try:
            lines = Path(token_file).read_bytes().splitlines()
        except OSError as exc:
            raise ValueError(f"--token-file {token_file}: {exc.strerror or exc}") from None
        if not lines or not lines[0].strip():
            raise ValueError(f"--token-file {token_file}: empty")
        return lines[0].strip()
    return _as_token(token if token is not None else os.environ.get(TOKEN_ENV))


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` exposes the server to this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0"), is_loopback("::")
    (True, True, False, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    return socket.create_server(address[:2], family=family)


def serve(directories: Sequence[str | os.PathLike], *, host: str = "127.0.0.1", port: int = 8080,
          token: str | None = None, token_file: str | os.PathLike | None = None, insecure: bool = False,
          metrics_port: int | None = None, limits: Limits | None = None, log_level: str = "warning",
          **options: Any) -> None:
    """Serve ``directories`` with uvicorn (uvloop and httptools where installed) until interrupted.

    ``options`` are those of :func:`make_app`. The token comes from ``token_file``, ``token`` or
    ``$SCALEML_TOKEN`` (:func:`read_token`); without one, binding a host other than loopback is refused unless
    ``insecure``. ``metrics_port`` serves ``/metrics`` there (without the token) instead of on ``port``.
    """
    import uvicorn

    secret = read_token(token, token_file)
    if secret is None and not insecure and not is_loopback(host):
        raise ValueError(f"refusing to serve on {host} without a token: give --token-file FILE or ${TOKEN_ENV}, "
                         "or --insecure to serve without authentication")
    limits = (limits or DEFAULT).replace(max_rows=options.pop("max_rows", None),
                                         max_body_bytes=options.pop("max_body_bytes", None))
    app = make_app(directories, token=secret, limits=limits, **options)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    sockets = [_listen(host, port)]
    if metrics_port is not None:
        sockets.append(_listen(host, metrics_port))
        app.metrics_port = sockets[1].getsockname()[1]
    try:
        from ._protocol import guarded

        http: Any = guarded(limits.header_timeout, limits.max_header_bytes)
    except ImportError:  # no httptools (it comes with the serve extra): h11, without the header deadline
        log.warning("httptools is not installed: request headers have no deadline")
        http = "h11"
    names = ", ".join(app.registry.names())
    where = f"metrics on port {app.metrics_port}" if metrics_port is not None else "metrics at /metrics"
    print(f"scaleml serve: {names} on http://{host}:{sockets[0].getsockname()[1]} (Open Inference Protocol V2 "
          f"and V1; {where}; {'bearer token required' if secret else 'NO authentication'})", flush=True)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", loop="auto", http=http,
                            server_header=False, date_header=False, timeout_keep_alive=limits.idle_timeout,
                            limit_concurrency=limits.max_connections)
    uvicorn.Server(config).run(sockets=sockets)
