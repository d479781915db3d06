"""A corpus of hostile requests against a live `scaleml serve` (a subprocess on a free 127.0.0.1 port, a token
from a file, short deadlines), sent with a real HTTP client and, for what an HTTP client will not send, a raw
socket. The invariant, checked after every class: the answer is a 4xx with a JSON error that names no path of
the server, the server process is alive, and the next valid request is answered 200 with the model's exact
predictions. Every route is checked for 401 without the token.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fitted import small_data

import scaleml_dask as sm
from scaleml_dask.deploy import serve as serve_module
from scaleml_dask.deploy.registry import save_model

pytest.importorskip("uvicorn")

TOKEN = "s3crét-tøken ✓".encode()  # not ASCII: compared as bytes
AUTH = {"Authorization": b"Bearer " + TOKEN}
OPTIONS = ["--max-rows", "100", "--max-body-bytes", "100000", "--max-response-bytes", "4096", "--max-outputs", "16",
           "--max-header-bytes", "8192", "--header-timeout", "1", "--body-timeout", "1", "--idle-timeout", "2",
           "--reload-interval", "0.2"]


@contextlib.contextmanager
def scaleml_serve(models: Path, *args: str, env: dict | None = None):
    """`scaleml serve` in a subprocess on a free port; yields (process, base url, metrics port or None)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("scaleml", path=str(Path(sys.executable).parent))
    proc = subprocess.Popen([exe, "serve", str(models), "--port", str(port), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    try:
        banner = proc.stdout.readline()
        assert "scaleml serve:" in banner, (banner, proc.stderr.read() if proc.poll() is not None else "")
        found = re.search(r"metrics on port (\d+)", banner)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=base, timeout=10) as c:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if c.get("/v2/health/ready").status_code == 200:
                        break
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.05)
        yield proc, base, int(found.group(1)) if found else None
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """reg (linear, 5 features, saved with training statistics), clf (two outputs), and broken (a version whose
    metadata is cut short): the server must serve the first two and report the third."""
    X, y, yc, _ = small_data()
    root = tmp_path_factory.mktemp("hostile")
    models = root / "models"
    reg = sm.LinearRegression().fit(X, y)
    clf = sm.SGDClassifier(mode="local", batch_size=50, epochs=2).fit(X, yc)
    save_model(reg, models / "reg", data=X)
    save_model(clf, models / "clf", data=X)
    broken = save_model(reg, models / "broken")
    (broken / "metadata.json").write_bytes((broken / "metadata.json").read_bytes()[:200])
    (root / "token").write_bytes(TOKEN + b"\n")
    with scaleml_serve(models, "--token-file", str(root / "token"), "--metrics-port", "0", *OPTIONS) as running:
        yield (*running, reg, clf, X, root)


def v2(rows, datatype="FP64", name="x"):
    a = np.asarray(rows)
    return {"name": name, "shape": list(a.shape), "datatype": datatype, "data": a.ravel().tolist()}


def raw(port: int, data: bytes, *, then: bytes = b"", wait: float = 0.0, timeout: float = 10.0) -> tuple:
    """Send ``data`` (then ``then`` after ``wait`` s) on a raw connection; read until the server answers and
    closes, or ``timeout``. Returns (status or None, body bytes, whether the server closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if then:
            time.sleep(wait)
            with contextlib.suppress(OSError):
                s.sendall(then)
        buf, closed = b"", False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                closed = True
                break
            buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.I)
            if length and len(body) >= int(length.group(1)):
                break
    m = re.match(rb"HTTP/1\.1 (\d{3})", buf)
    return (int(m.group(1)) if m else None), buf.partition(b"\r\n\r\n")[2], closed


def trickle(port: int, head: bytes, seconds: float) -> tuple:
    """Headers, then one body byte every 0.2 s for ``seconds``: the body's deadline is total, not per byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds + 5) as s:
        s.sendall(head)
        s.setblocking(False)
        buf, t0 = b"", time.monotonic()
        while time.monotonic() - t0 < seconds and b"\r\n\r\n" not in buf:
            with contextlib.suppress(OSError):
                s.sendall(b" ")
            time.sleep(0.2)
            with contextlib.suppress(BlockingIOError, OSError):
                buf += s.recv(65536)
    m = re.match(rb"HTTP/1\.1 (\d{3})", buf)
    return (int(m.group(1)) if m else None), buf.partition(b"\r\n\r\n")[2], True


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: x", b"Authorization: Bearer " + TOKEN]
    lines += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in headers or {}):
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _corpus(X: np.ndarray) -> list[tuple[str, str, str, object, dict | None]]:
    """(class, method, path, body: bytes | JSON | callable(port) for raw socket classes, extra headers)."""
    row = X[:1].tolist()[0]
    infer = "/v2/models/reg/infer"
    nested = json.dumps({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64",
                                     "data": "[" * 100_000 + "]" * 100_000}]}).encode()
    many = {"inputs": [v2(X[:2])], "outputs": [{"name": "predict"}] * 10_000}
    return [
        # --- not a valid request: 400
        ("invalid JSON", "POST", infer, b"{not json", None),
        ("empty body", "POST", infer, b"", None),
        ("a JSON array", "POST", infer, [1, 2], None),
        ("no inputs", "POST", infer, {"id": "x"}, None),
        ("inputs empty", "POST", infer, {"inputs": []}, None),
        ("input not an object", "POST", infer, {"inputs": [3]}, None),
        ("input without shape", "POST", infer, {"inputs": [{"name": "x", "datatype": "FP64", "data": row}]}, None),
        ("shape not a list", "POST", infer, {"inputs": [{**v2([row]), "shape": "1,5"}]}, None),
        ("negative shape", "POST", infer, {"inputs": [{**v2([row]), "shape": [-1, 5]}]}, None),
        ("3-d shape", "POST", infer, {"inputs": [{**v2([row]), "shape": [1, 1, 5]}]}, None),
        ("unsupported datatype", "POST", infer, {"inputs": [v2([row], "FP16")]}, None),
        ("data not a list", "POST", infer, {"inputs": [{**v2([row]), "data": 3}]}, None),
        ("ragged rows", "POST", infer, {"inputs": [{**v2([row, row]), "data": [row, row[:4]]}]}, None),
        ("a string among numbers", "POST", infer, {"inputs": [{**v2([row]), "data": [1, 2, "x", 4, 5]}]}, None),
        ("null among numbers", "POST", infer, {"inputs": [{**v2([row]), "data": [1, 2, None, 4, 5]}]}, None),
        ("NaN literal", "POST", infer, b'{"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64", '
                                       b'"data": [1, 2, NaN, 4, 5]}]}', None),
        ("a number beyond float64", "POST", infer, b'{"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64", '
                                                   b'"data": [1, 2, 1e999, 4, 5]}]}', None),
        ("an integer beyond 64 bits", "POST", infer, b'{"inputs": [{"name": "x", "shape": [1, 5], "datatype": '
                                                     b'"INT64", "data": [1, 2, 1180591620717411303424, 4, 5]}]}',
         None),
        ("shape and data disagree", "POST", infer, {"inputs": [{**v2([row]), "shape": [2, 5]}]}, None),
        ("nested unlike the shape", "POST", infer, {"inputs": [{**v2([row, row]), "data": [[row, row]],
                                                               "shape": [2, 5]}]}, None),
        ("booleans in FP64 data", "POST", infer, {"inputs": [{**v2([row]), "data": [1.0, True, 0.5, False, 2.0]}]},
         None),
        ("id an object", "POST", infer, {"id": {"a": 1}, "inputs": [v2([row])]}, None),
        ("id too long", "POST", infer, {"id": "i" * 10_000, "inputs": [v2([row])]}, None),
        ("parameters not an object", "POST", infer, {"parameters": [1], "inputs": [v2([row])]}, None),
        ("input name not a string", "POST", infer, {"inputs": [{**v2([row]), "name": ["x"]}]}, None),
        ("JSON nested 100,000 deep", "POST", infer, nested, None),
        ("outputs not a list", "POST", infer, {"inputs": [v2([row])], "outputs": "predict"}, None),
        ("V1 instances not a list", "POST", "/v1/models/reg:predict", {"instances": 5}, None),
        ("V1 ragged instances", "POST", "/v1/models/reg:predict", {"instances": [row, row[:2]]}, None),
        # --- valid, but not for this model: 422
        ("wrong feature count", "POST", infer, {"inputs": [v2([row[:3]])]}, None),
        ("empty input", "POST", infer, {"inputs": [{"name": "x", "shape": [0, 5], "datatype": "FP64", "data": []}]},
         None),
        ("empty INT32 input", "POST", infer, {"inputs": [{"name": "x", "shape": [0, 5], "datatype": "INT32",
                                                         "data": []}]}, None),
        ("INT64 value 1e300", "POST", infer, {"inputs": [v2([[1, 2, 1e300, 4, 5]], "INT64")]}, None),
        ("INT32 overflow", "POST", infer, {"inputs": [v2([[1, 2, 2**40, 4, 5]], "INT32")]}, None),
        ("INT not an integer", "POST", infer, {"inputs": [v2([[1, 2, 1.5, 4, 5]], "INT64")]}, None),
        ("BOOL value 2", "POST", infer, {"inputs": [v2([[1, 0, 2, 1, 0]], "BOOL")]}, None),
        ("FP32 overflow", "POST", infer, {"inputs": [v2([[1, 2, 1e39, 4, 5]], "FP32")]}, None),
        ("prediction overflows (1e308)", "POST", infer, {"inputs": [v2([[1e308] * 5])]}, None),
        ("unknown output", "POST", infer, {"inputs": [v2([row])], "outputs": [{"name": "transform"}]}, None),
        ("per-feature inputs missing one", "POST", infer, {"inputs": [v2([[1.0]], name=f"x{j}") for j in range(4)]},
         None),
        ("V1 wrong feature count", "POST", "/v1/models/reg:predict", {"instances": [row[:4]]}, None),
        # --- beyond the limits: 413, 415, 431
        ("too many rows", "POST", infer, {"inputs": [v2(X[:101])]}, None),
        ("10,000 outputs listed", "POST", "/v2/models/clf/infer", many, None),
        ("response over the limit", "POST", "/v2/models/clf/infer",
         {"inputs": [v2(X[:100])], "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}, None),
        ("body over the limit (Content-Length)", "POST", infer, b"x" * 200_000, None),
        ("body over the limit (streamed)", "POST", infer, lambda port: raw(port, request_bytes(
            "POST", infer, b"186a0\r\n" + b"y" * 100_000 + b"\r\n1\r\ny\r\n0\r\n\r\n",
            {"Transfer-Encoding": "chunked"}))[:2], None),
        ("gzip body", "POST", infer, b"\x1f\x8b\x08\x00", {"Content-Encoding": "gzip"}),
        ("Expect 100-continue with a huge length", "POST", infer, lambda port: raw(port, request_bytes(
            "POST", infer, headers={"Expect": "100-continue", "Content-Length": "999999999"}))[:2], None),
        ("headers over the limit", "GET", "/v2", lambda port: raw(port, request_bytes(
            "GET", "/v2", headers={"X-Junk": "j" * 20_000}))[:2], None),
        ("URL over the limit", "GET", "/v2", lambda port: raw(port, request_bytes("GET", "/v2?" + "q" * 20_000))[:2],
         None),
        # --- unknown things: 404, 405, 401
        ("unknown model", "POST", "/v2/models/nope/infer", {"inputs": [v2([row])]}, None),
        ("unknown version", "POST", "/v2/models/reg/versions/9/infer", {"inputs": [v2([row])]}, None),
        ("unknown route", "GET", "/v3/x", None, None),
        ("a path escaping the root", "GET", "/v2/models/../../etc/passwd", None, None),
        ("wrong method", "GET", infer, None, None),
        ("no token", "POST", infer, {"inputs": [v2([row])]}, {"Authorization": ""}),
        ("wrong token", "POST", infer, {"inputs": [v2([row])]}, {"Authorization": "Bearer nope"}),
        ("token in another scheme", "POST", infer, {"inputs": [v2([row])]}, {"Authorization": b"Basic " + TOKEN}),
        ("the token's bytes in latin-1", "POST", infer, {"inputs": [v2([row])]},
         {"Authorization": b"Bearer " + TOKEN.decode().encode("latin-1", "replace")}),
        # --- slow and broken clients (raw sockets): 408, 400
        ("headers never completed", "GET", "/v2", lambda port: raw(port, b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-A: ")[:2],
         None),
        ("connection opened, nothing sent", "GET", "/v2", lambda port: raw(port, b"")[:2], None),
        ("body held open", "POST", infer, lambda port: raw(port, request_bytes(
            "POST", infer, headers={"Content-Length": "1000"}) + b"{")[:2], None),
        ("body trickled past the deadline", "POST", infer, lambda port: trickle(port, request_bytes(
            "POST", infer, headers={"Content-Length": "1000"}), 3.0)[:2], None),
        ("not HTTP", "GET", "/", lambda port: raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
         [:2], None),
    ]


def test_every_hostile_request_is_a_4xx_and_the_server_serves_the_next(served):
    proc, base, metrics_port, reg, clf, X, root = served
    corpus = _corpus(X)
    assert len({name for name, *_ in corpus}) >= 40
    port = int(base.rsplit(":", 1)[1])
    valid = {"id": "ok", "inputs": [v2(X[:3])]}
    seen = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for name, method, path, body, headers in corpus:
            if callable(body):
                status, text = body(port)
            else:
                kwargs = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
                r = client.request(method, path, headers={**AUTH, **(headers or {})}, **kwargs)
                status, text = r.status_code, r.content
            seen[name] = status
            assert status is not None and 400 <= status < 500, (name, status, text[:300])
            if text:
                error = json.loads(text)["error"] if text.startswith(b"{") else text.decode("latin-1")
                assert str(root) not in error and "/tmp" not in error, (name, error)  # no server path
            assert proc.poll() is None, (name, proc.stderr.read())
            ok = client.post("/v2/models/reg/infer", json=valid, headers=AUTH)
            assert ok.status_code == 200, (name, ok.text)
            assert ok.json()["outputs"][0]["data"] == reg.predict(X[:3]).tolist(), name
    # what each class got, by the one table of statuses
    assert seen["body over the limit (streamed)"] == seen["10,000 outputs listed"] == 413
    assert seen["gzip body"] == 415 and seen["headers over the limit"] == seen["URL over the limit"] == 431
    assert seen["headers never completed"] == seen["body held open"] == seen["body trickled past the deadline"] == 408
    assert seen["no token"] == seen["wrong token"] == seen["the token's bytes in latin-1"] == 401
    assert seen["prediction overflows (1e308)"] == seen["INT64 value 1e300"] == 422


def test_the_answers_name_the_problem(served):
    proc, base, metrics_port, reg, clf, X, root = served
    with httpx.Client(base_url=base, timeout=30, headers=AUTH) as c:
        r = c.post("/v2/models/reg/infer", json={"inputs": [v2([[1e308] * 5])]})
        assert r.status_code == 422 and "output 'predict' is not finite for row 0" in r.json()["error"]
        r = c.post("/v2/models/reg/infer", json={"inputs": [v2([[1, 2, 1e300, 4, 5]], "INT64")]})
        assert "value at [0, 2] is outside the INT64 range" in r.json()["error"]
        r = c.post("/v2/models/reg/infer", json={"inputs": [{**v2(X[:1]), "data": [1.0, True, 0.5, False, 2.0]}]})
        assert r.status_code == 400 and "true/false among the values of a FP64 tensor" in r.json()["error"]
        r = c.post("/v2/models/reg/infer", json={"inputs": [v2(X[:1])], "outputs": [{"name": "predict"}] * 16})
        assert r.status_code == 200 and [o["name"] for o in r.json()["outputs"]] == ["predict"]  # answered once
        r = c.post("/v2/models/broken/infer", json={"inputs": [v2(X[:1])]})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "version 1: metadata.json: not valid JSON" in r.json()["error"]
        ready = c.get("/v2/health/ready").json()  # the broken model does not hold the others back
        assert ready["ready"] is True and "metadata.json: not valid JSON" in ready["unavailable"]["broken"]
        index = {m["name"]: m for m in c.post("/v2/repository/index").json()}
        assert index["broken"]["state"] == "UNAVAILABLE" and index["reg"]["state"] == "READY"
    # the monitor saw the overflowing request and was not poisoned by it: metrics answer, and keep counting
    with httpx.Client(base_url=f"http://127.0.0.1:{metrics_port}", timeout=30) as m:
        before = m.get("/metrics")
        assert before.status_code == 200 and "scaleml_monitor_skipped_rows_total" in before.text
    with httpx.Client(base_url=base, timeout=30, headers=AUTH) as c:
        for i in range(0, 600, 100):  # more than the monitor's chunk of rows: it flushes
            assert c.post("/v2/models/reg/infer", json={"inputs": [v2(X[i:i + 100])]}).status_code == 200
    after = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30)
    assert after.status_code == 200
    assert re.search(r'scaleml_monitor_errors_total\{model="reg",[^}]*\} 0\.0', after.text)


def _routes() -> list[tuple[str, str]]:
    """Every route of the server (static and templated), as (method, path) on model 'reg'."""
    static = [(sorted(methods)[0], path) for path, (_, _, methods) in serve_module._STATIC.items()]
    templated = [("GET", "/v2/models/reg"), ("GET", "/v2/models/reg/versions/1"), ("GET", "/v2/models/reg/ready"),
                 ("GET", "/v2/models/reg/versions/1/ready"), ("POST", "/v2/models/reg/infer"),
                 ("POST", "/v2/models/reg/versions/1/infer"), ("POST", "/v2/repository/models/reg/load"),
                 ("GET", "/v1/models/reg"), ("POST", "/v1/models/reg:predict")]
    return static + templated


def test_every_route_needs_the_token_but_health(served):
    proc, base, metrics_port, *_ = served
    routes = _routes()
    handlers = {serve_module._route(path)[1] for _, path in routes}
    every = {obj for name, obj in vars(serve_module).items()
             if inspect.iscoroutinefunction(obj) and list(inspect.signature(obj).parameters) == ["app", "req"]}
    assert handlers == every  # a route added to the server is added here
    with httpx.Client(base_url=base, timeout=30) as c:
        for method, path in routes:
            r = c.request(method, path, json={"inputs": []} if method == "POST" else None)
            if path in serve_module.HEALTH_ROUTES:
                assert r.status_code in (200, 503), path
            elif path == "/metrics":  # on its own port here
                assert r.status_code == 404 and f"port {metrics_port}" in r.json()["error"], path
            else:
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (method, path)
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 200  # a scraper needs no token
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/v2/models/reg").status_code == 404  # metrics only


def test_the_queue_is_bounded_and_a_full_one_answers_503_with_retry_after(tmp_path):
    """One inference thread, kept busy; one request waits in the queue (of one); the next is refused at once with
    503 and Retry-After, counted; when the thread is free the waiting one is answered, and so is the next."""
    import asyncio

    from test_serve import running

    from scaleml_dask.deploy.limits import Limits
    from scaleml_dask.deploy.serve import make_app

    X, y, _, _ = small_data()
    reg = sm.LinearRegression().fit(X, y)
    save_model(reg, tmp_path / "reg")
    app = make_app([tmp_path / "reg"], limits=Limits(inference_threads=1, max_queue=1))
    pool, release = app.dataplane.pool, threading.Event()
    body = {"inputs": [v2(X[:3])]}
    with running(app) as client:
        blocker = threading.Thread(target=lambda: asyncio.run(pool.run(release.wait)))
        blocker.start()
        waiting = {}
        queued = threading.Thread(target=lambda: waiting.update(r=client.post("/v2/models/reg/infer", json=body)))
        try:
            deadline = time.monotonic() + 30
            while not pool._running:  # the blocker holds the thread
                assert time.monotonic() < deadline
                time.sleep(0.01)
            queued.start()
            while pool.waiting < 1:  # the request is in the queue
                assert time.monotonic() < deadline
                time.sleep(0.01)
            r = client.post("/v2/models/reg/infer", json=body)
            assert r.status_code == 503 and r.headers["retry-after"] == "1" and "queue" in r.json()["error"]
            # the event loop is free while the only inference thread is busy: other requests are answered
            assert client.get("/v2/models/reg").status_code == 200 and pool._running
        finally:
            release.set()
            blocker.join(30)
            queued.join(30)
        assert waiting["r"].status_code == 200 and waiting["r"].json()["outputs"][0]["data"] == \
            reg.predict(X[:3]).tolist()
        text = client.get("/metrics").text
        assert re.search(r"^scaleml_requests_rejected_total 1\.0$", text, re.M)
        assert re.search(r"^scaleml_queue_duration_seconds_count [1-9]", text, re.M)
        assert client.post("/v2/models/reg/infer", json=body).status_code == 200


def test_liveness_fails_while_every_inference_thread_is_stuck(tmp_path):
    """A call that blocks the only inference thread longer than stuck_after turns /v2/health/live to 503; it
    recovers when the call ends."""
    import asyncio

    from test_serve import running

    from scaleml_dask.deploy.limits import Limits
    from scaleml_dask.deploy.serve import make_app

    X, y, _, _ = small_data()
    save_model(sm.LinearRegression().fit(X, y), tmp_path / "reg")
    app = make_app([tmp_path / "reg"], limits=Limits(inference_threads=1, stuck_after=0.2))
    release = threading.Event()
    with running(app) as client:
        assert client.get("/v2/health/live").status_code == 200
        blocker = threading.Thread(target=lambda: asyncio.run(app.dataplane.pool.run(release.wait)))
        blocker.start()
        try:
            deadline = time.monotonic() + 30
            while (r := client.get("/v2/health/live")).status_code == 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert r.status_code == 503 and "busy on one model call" in r.json()["error"]
        finally:
            release.set()
            blocker.join(30)
        assert client.get("/v2/health/live").status_code == 200


def test_binding_beyond_loopback_needs_a_token_and_a_token_on_the_command_line_warns(tmp_path):
    exe = shutil.which("scaleml", path=str(Path(sys.executable).parent))
    X, y, _, _ = small_data()
    save_model(sm.LinearRegression().fit(X, y), tmp_path / "reg")
    env = {k: v for k, v in os.environ.items() if k != "SCALEML_TOKEN"}
    r = subprocess.run([exe, "serve", str(tmp_path / "reg"), "--host", "0.0.0.0", "--port", "0"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "refusing to serve on 0.0.0.0 without a token" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([exe, "serve", str(tmp_path / "reg"), "--token-file", str(tmp_path / "nope")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--token-file" in r.stderr and "No such file" in r.stderr
    with scaleml_serve(tmp_path / "reg", "--token", "abc") as (proc, base, _):
        assert httpx.get(f"{base}/v2/models/reg", headers={"Authorization": "Bearer abc"}).status_code == 200
    assert "warning: --token shows the token to every user" in proc.stderr.read()
    with scaleml_serve(tmp_path / "reg", "--host", "0.0.0.0", env={"SCALEML_TOKEN": "from-env"}) as (proc, base, _):
        assert httpx.get(f"{base}/v2/models/reg").status_code == 401
        assert httpx.get(f"{base}/v2/models/reg", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_connections_are_bounded_and_slow_ones_closed(tmp_path):
    """Three connections holding half a header fill --max-connections 3: the next is answered 503 at once; once
    the header deadline closes them (408), requests are served again."""
    X, y, _, _ = small_data()
    reg = sm.LinearRegression().fit(X, y)
    save_model(reg, tmp_path / "reg")
    with scaleml_serve(tmp_path / "reg", "--max-connections", "3", "--header-timeout", "2") as (proc, base, _):
        port = int(base.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            for s in held:
                s.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            time.sleep(0.2)  # (the server has accepted them: the 503 below is the proof)
            assert httpx.get(f"{base}/v2", timeout=10).status_code == 503
            for s in held:  # each closed by the server after its header deadline, with a 408
                s.settimeout(30)
                assert s.recv(4096).startswith(b"HTTP/1.1 408")
        finally:
            for s in held:
                s.close()
        r = httpx.post(f"{base}/v2/models/reg/infer", json={"inputs": [v2(X[:2])]}, timeout=10)
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == reg.predict(X[:2]).tolist()


def test_a_call_abandoned_while_queued_leaves_the_queue_and_never_runs():
    """A client that goes away while its model call waits for a thread takes it out of the queue (else the
    queue would fill with ghosts and refuse everyone): the call is not run, and the queue is empty again."""
    import asyncio

    from scaleml_dask.deploy._workers import InferencePool

    pool, release, ran = InferencePool(threads=1, max_queue=2), threading.Event(), []

    async def scenario():
        busy = asyncio.ensure_future(pool.run(release.wait))
        while not pool._running:
            await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(pool.run(ran.append, "ran"))
        await asyncio.sleep(0.05)
        assert pool.waiting == 1
        queued.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await queued
        assert pool.waiting == 0
        release.set()
        await busy
        assert await pool.run(sum, [1, 2]) == 3  # the thread serves the next call: the abandoned one did not run

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        pool.close()
    assert ran == []
