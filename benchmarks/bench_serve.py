"""Model serving: ``scaleml serve`` against MLServer 1.7 (scikit-learn runtime) on the same coefficients.

One run, both servers on 127.0.0.1, one at a time, the load generator in a separate process: ``wrk``
(1 thread, 16 connections, bounded by ``--seconds`` per cell) where installed, else an asyncio client here
(bounded by time and by ``--max-requests``). Cells: single-row V2 infer, 100-row V2 infer, V1 predict (ours
only: MLServer speaks V2), each with adaptive batching off and on (64 requests and 1 ms for MLServer, whose
``max_batch_size`` counts requests; 6,400 rows — 64 of the largest request — and 1 ms for ours, which counts
rows). Reports req/s, p50/p99 latency and errors per cell, and the ratios ours / MLServer.

MLServer 1.7 pins starlette < 0.47 and fastapi 0.115, which conflict with this project's pins, so it runs
from its own venv, made on first use: ``benchmarks/data/mlserver-venv`` (``mlserver==1.7.1``,
``mlserver-sklearn==1.7.1``). It starts here only with ``"parallel_workers": 0`` (its worker pool fails on
uvloop 0.23). It serves ``model.to_sklearn()`` saved with joblib, its format.

``--tables`` serves a pipeline of raw columns (one-hot, impute, scale, a boolean passed through, Ridge) against
MLServer serving the same scikit-learn pipeline, fitted on the same rows (predictions equal to 1e-9; every answer
checked before the load): the same MLServer pandas-codec request bodies of 1 and 100 rows to both, adaptive batching
off and on (MLServer's ``max_batch_size`` 64 counts requests, ours rows: ours is given 64 requests of the largest
cell, 6,400 rows); beside them the floor of any Python server here, uvicorn (as ours is run) reading each body and
answering a fixed response (``floor_app``), under the same load generator.

``--frameworks`` measures the transport choice instead: the same dataplane behind this plain ASGI app and
behind Starlette, and JSON decoding/encoding with the standard library, orjson and msgspec.

``--soak`` runs ``scaleml serve`` (default limits, a token) for ``--soak-minutes`` (10) under mixed traffic from
this process: valid V2 / V1 requests of 1 and 100 rows checked against the model's predictions, a dozen kinds of
invalid ones (bad JSON, wrong shapes, values out of range, outputs listed thousands of times, no token, unknown
model...), /metrics scrapes, and slow clients that open a connection, send half a header and hold it. Every
``--sample`` seconds it records the server's RSS, its open TCP connections, threads and file descriptors, and the
answers by status; at the end the RSS of the last minute against the second minute (after the warm-up).

    python benchmarks/bench_serve.py [--seconds 10] [--rounds 1] [--quick] [--frameworks | --tables]
    python benchmarks/bench_serve.py --soak [--soak-minutes 10] [--sample 10]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
MLSERVER_VENV = DATA / "mlserver-venv"
D = 10
CONNECTIONS = 16
#: what the floor server answers: a one-row V2 response
FLOOR_RESPONSE = (b'{"model_name":"tables","id":"","outputs":[{"name":"predict","shape":[1,1],"datatype":"FP64",'
                  b'"data":[0.5]}]}')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlserver_python() -> Path:
    """The MLServer venv's python, created on first use."""
    python = MLSERVER_VENV / "bin" / "python"
    if not (MLSERVER_VENV / "bin" / "mlserver").exists():
        print(f"creating {MLSERVER_VENV} (mlserver 1.7.1) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlserver==1.7.1", "mlserver-sklearn==1.7.1"],
                       check=True)
    return python


def fit_model():
    import scaleml_dask as sm

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, D))
    y = X @ rng.normal(size=D) + 0.5 + rng.normal(0, 0.1, len(X))
    return sm.LinearRegression().fit(X, y), X


def bodies(X: np.ndarray) -> dict[str, bytes]:
    def v2(rows):
        return json.dumps({"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                                       "data": rows.ravel().tolist()}]}).encode()

    return {"v2-1": v2(X[:1]), "v2-100": v2(X[:100]), "v1-1": json.dumps({"instances": X[:1].tolist()}).encode()}


# --- servers ---------------------------------------------------------------------------------------------
def wait_ready(port: int, proc: subprocess.Popen, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on {port} not ready after {seconds} s")


def start_scaleml(model_dir: Path, port: int, batching: bool, batch_rows: int = 64) -> subprocess.Popen:
    """``scaleml serve``; with batching, up to ``batch_rows`` rows a call (MLServer's ``max_batch_size`` counts
    requests, ours rows) and 1 ms, as MLServer is given."""
    exe = shutil.which("scaleml", path=str(Path(sys.executable).parent)) or "scaleml"
    cmd = [exe, "serve", str(model_dir), "--port", str(port)]
    if batching:
        cmd += ["--max-batch-size", str(batch_rows), "--max-batch-time-ms", "1"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start_mlserver(model, root: Path, port: int, batching: bool, name: str = "reg") -> subprocess.Popen:
    """MLServer's scikit-learn runtime serving ``model`` (ours: its ``to_sklearn()``; a scikit-learn one as it is)."""
    import joblib

    python = mlserver_python()
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model.to_sklearn() if hasattr(model, "to_sklearn") else model, model_dir / "model.joblib")
    settings = {"name": name, "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"}}
    if batching:
        settings.update(max_batch_size=64, max_batch_time=0.001)
    (model_dir / "model-settings.json").write_text(json.dumps(settings))
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": 0, "debug": False}))
    env = {**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}"}
    return subprocess.Popen([str(python.parent / "mlserver"), "start", str(root)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, cwd=root)


def floor_app(response: bytes):
    """The floor of any Python model server on this machine: uvicorn (httptools, uvloop, as ``scaleml serve``)
    reading each request's body and answering a fixed V2 response — no decoding, no model."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(response)).encode())]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": response})

    return app


def start_floor(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--floor", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- load ------------------------------------------------------------------------------------------------
def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]


def run_wrk(url: str, body: bytes, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
                              "-s", f.name, url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    if not re.search(r"^\s+99%\s+[\d.]+(us|ms|s|m|h)\s", out, re.M):
        raise RuntimeError(f"wrk against {url} gave no latency distribution:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
            "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
            "errors": errors, "requests": requests}


async def _asyncio_load(url: str, body: bytes, seconds: float, max_requests: int) -> dict:
    import httpx

    latencies, errors = [], 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def worker():
            nonlocal errors
            while time.perf_counter() < deadline and len(latencies) < max_requests:
                t = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers={"content-type": "application/json"})
                except httpx.HTTPError:  # a timeout or a closed connection: an error of this cell, not the run's
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - start
    lat = np.asarray(latencies or [np.nan]) * 1e3
    return {"rps": len(latencies) / elapsed, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "errors": errors, "requests": len(latencies)}


def load(url: str, body: bytes, seconds: float, max_requests: int) -> dict:
    """The load generator, in a separate process: wrk, else this script's asyncio client."""
    if shutil.which("wrk"):
        return run_wrk(url, body, seconds)
    out = subprocess.run([sys.executable, __file__, "--client", url, "--seconds", str(seconds),
                          "--max-requests", str(max_requests)], input=body, capture_output=True)
    if out.returncode:
        raise RuntimeError(f"the load generator failed: {out.stderr.decode()[-1500:]}")
    return json.loads(out.stdout)


# --- the comparison --------------------------------------------------------------------------------------
def _best(results: dict, key: tuple, r: dict) -> None:
    """Keep the round with the highest throughput (this VM's noise only ever slows a run down)."""
    if key not in results or r["rps"] > results[key]["rps"]:
        results[key] = r


def _measure(best: dict, key: tuple, url: str, body: bytes, seconds: float, max_requests: int) -> None:
    """One cell after a second of warm-up, printed, the best of its rounds kept in ``best``."""
    server, cell, batching = key
    load(url, body, 1.0, max_requests)  # warm-up
    r = load(url, body, seconds, max_requests)
    print(f"{server:8} batching={'on ' if batching else 'off'} {cell:7} {r['rps']:9.0f} req/s p50 {r['p50']:6.2f} "
          f"ms p99 {r['p99']:6.2f} ms errors {r['errors']}", flush=True)
    _best(best, key, r)


def compare(seconds: float, max_requests: int, rounds: int) -> list[dict]:
    """Both servers up at once (idle between cells); cells round robin, ``rounds`` times, best kept."""
    model, X = fit_model()
    payloads = bodies(X)
    best: dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        from scaleml_dask.deploy.registry import save_model

        save_model(model, Path(tmp) / "scaleml" / "reg", data=X)
        for batching in (False, True):
            ports = {"scaleml": free_port(), "mlserver": free_port()}
            procs = {"scaleml": start_scaleml(Path(tmp) / "scaleml" / "reg", ports["scaleml"], batching, 6400),
                     "mlserver": start_mlserver(model, Path(tmp) / f"mlserver-{batching}", ports["mlserver"],
                                                batching)}
            try:
                for server, proc in procs.items():
                    wait_ready(ports[server], proc)
                for _ in range(rounds):
                    for cell, body in payloads.items():
                        for server in procs:
                            if cell.startswith("v1") and server == "mlserver":
                                continue  # MLServer has no V1 endpoint
                            path = "/v1/models/reg:predict" if cell.startswith("v1") else "/v2/models/reg/infer"
                            url = f"http://127.0.0.1:{ports[server]}{path}"
                            _measure(best, (server, cell, batching), url, body, seconds, max_requests)
            finally:
                for proc in procs.values():
                    stop(proc)
    return [{"server": k[0], "cell": k[1], "batching": k[2], **r} for k, r in best.items()]


def table(rows: list[dict]) -> str:
    by = {(r["server"], r["cell"], r["batching"]): r for r in rows}
    lines = ["| cell | batching | scaleml req/s | p50 / p99 ms | errors | MLServer req/s | p50 / p99 ms | errors | "
             "req/s ratio | p99 ratio (ours / theirs) |", "|---" * 10 + "|"]
    names = {"v2-1": "V2 infer, 1 row", "v2-100": "V2 infer, 100 rows", "v1-1": "V1 predict, 1 row"}
    for cell in ("v2-1", "v2-100", "v1-1"):
        for batching in (False, True):
            ours, theirs = by.get(("scaleml", cell, batching)), by.get(("mlserver", cell, batching))
            if ours is None:
                continue
            t = ("n/a (no V1)", "", "", "", "") if theirs is None else (
                f"{theirs['rps']:,.0f}", f"{theirs['p50']:.2f} / {theirs['p99']:.2f}", str(theirs["errors"]),
                f"**{ours['rps'] / theirs['rps']:.2f}×**", f"{ours['p99'] / theirs['p99']:.2f}")
            lines.append(f"| {names[cell]} | {'on' if batching else 'off'} | {ours['rps']:,.0f} | "
                         f"{ours['p50']:.2f} / {ours['p99']:.2f} | {ours['errors']} | {t[0]} | {t[1]} | {t[2]} | "
                         f"{t[3]} | {t[4]} |")
    return "\n".join(lines)


# --- raw rows: a pipeline of raw columns against MLServer's pandas codec ------------------------------------
TABLE_ROWS = 20_000


def table_frame(n: int = TABLE_ROWS):
    """A mixed table: two categories (12 and 3 levels), two numbers (one with 5 % missing), a boolean; a target."""
    import pandas as pd

    rng = np.random.default_rng(0)
    region = rng.choice([f"r{i:02d}" for i in range(12)], n)
    channel = rng.choice(["web", "store", "phone"], n, p=[0.6, 0.3, 0.1])
    price = rng.gamma(2.0, 10.0, n)
    qty = rng.integers(1, 10, n).astype(np.float64)
    member = rng.random(n) < 0.4
    y = 0.2 * price + 1.5 * qty + 2.0 * member + pd.Series(region).str[1:].astype(int).to_numpy() * 0.3 + \
        rng.normal(0, 0.5, n)
    price[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({"region": region, "channel": channel, "price": price, "qty": qty, "member": member}), y


def table_pipelines():
    """The same pipeline twice — one-hot the categories, impute and scale the numbers, the boolean passed through,
    LinearRegression — as this project's and as scikit-learn's (what MLServer serves), fitted on the same rows;
    their predictions agree to 1e-9."""
    from sklearn import compose, impute, linear_model, pipeline, preprocessing

    import scaleml_dask as sm
    from scaleml_dask.compose import make_column_transformer
    from scaleml_dask.pipeline import make_pipeline
    from scaleml_dask.preprocessing import OneHotEncoder, SimpleImputer, StandardScaler

    frame, y = table_frame()
    ours = make_pipeline(make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["region", "channel"]),
        (make_pipeline(SimpleImputer(), StandardScaler()), ["price", "qty"]), remainder="passthrough"),
        sm.Ridge(alpha=1.0)).fit(frame, y)
    theirs = pipeline.make_pipeline(compose.make_column_transformer(
        (preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["region", "channel"]),
        (pipeline.make_pipeline(impute.SimpleImputer(), preprocessing.StandardScaler()), ["price", "qty"]),
        remainder="passthrough"), linear_model.Ridge(alpha=1.0)).fit(frame, y)
    gap = np.abs(ours.predict(frame) - theirs.predict(frame)).max()
    if not gap < 1e-9:
        raise RuntimeError(f"the two pipelines differ by {gap:.3g}")
    return ours, theirs, frame


def table_bodies(frame) -> dict[str, bytes]:
    """MLServer's pandas-codec request (``PandasCodec.encode_request``) of 1 and of 100 rows without missing
    values (MLServer's codec reads a null in FP64 data as an object column), sent as it is to both servers."""
    rows = frame.dropna()

    def codec(part) -> bytes:
        inputs = []
        for name, datatype in (("region", "BYTES"), ("channel", "BYTES"), ("price", "FP64"), ("qty", "FP64"),
                               ("member", "BOOL")):
            tensor = {"name": name, "shape": [len(part), 1], "datatype": datatype, "data": part[name].tolist()}
            if datatype == "BYTES":
                tensor["parameters"] = {"content_type": "str"}
            inputs.append(tensor)
        return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()

    return {"pd-1": codec(rows.iloc[:1]), "pd-100": codec(rows.iloc[:100])}


def check_answers(url: str, body: bytes, expected: np.ndarray) -> None:
    import httpx

    r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
    got = np.asarray(r.json()["outputs"][0]["data"], dtype=np.float64)
    if r.status_code != 200 or not np.allclose(got, expected, rtol=1e-9, atol=1e-9):
        raise RuntimeError(f"{url} answered {r.status_code} {r.text[:300]}")


def compare_tables(seconds: float, max_requests: int, rounds: int) -> list[dict]:
    """Raw rows: `scaleml serve` of the pipeline against MLServer serving scikit-learn's, both up at once, the same
    pandas-codec bodies, adaptive batching off then on (both servers), cells round robin ``rounds`` times, best
    kept; every answer checked once first."""
    from scaleml_dask.deploy.registry import save_model

    ours, theirs, frame = table_pipelines()
    payloads = table_bodies(frame)
    rows = frame.dropna()
    best: dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        save_model(ours, Path(tmp) / "scaleml" / "tables", data=frame)
        for batching in (False, True):
            ports = {"scaleml": free_port(), "mlserver": free_port(), "floor": free_port()}
            # MLServer batches up to 64 requests, ours up to as many rows: 64 of the largest request
            procs = {"scaleml": start_scaleml(Path(tmp) / "scaleml" / "tables", ports["scaleml"], batching,
                                              64 * max(int(c.split("-")[1]) for c in payloads)),
                     "mlserver": start_mlserver(theirs, Path(tmp) / f"mlserver-{batching}", ports["mlserver"],
                                                batching, "tables"),
                     "floor": start_floor(ports["floor"])}
            try:
                for server, proc in procs.items():
                    wait_ready(ports[server], proc)
                for cell, body in payloads.items():
                    n = int(cell.split("-")[1])
                    for server in ("scaleml", "mlserver"):
                        check_answers(f"http://127.0.0.1:{ports[server]}/v2/models/tables/infer", body,
                                      theirs.predict(rows.iloc[:n]))
                for _ in range(rounds):
                    for cell, body in payloads.items():
                        for server in procs:
                            url = f"http://127.0.0.1:{ports[server]}/v2/models/tables/infer"
                            _measure(best, (server, cell, batching), url, body, seconds, max_requests)
            finally:
                for proc in procs.values():
                    stop(proc)
    return [{"server": k[0], "cell": k[1], "batching": k[2], **r} for k, r in best.items()]


def tables_table(rows: list[dict]) -> str:
    by = {(r["server"], r["cell"], r["batching"]): r for r in rows}
    lines = ["| raw rows (pandas-codec request) | batching | scaleml req/s | p50 / p99 ms | errors | MLServer req/s | "
             "p50 / p99 ms | errors | req/s ratio | p99 ratio (ours / theirs) | floor req/s | ours / floor | "
             "MLServer / floor |", "|---" * 13 + "|"]
    for batching in (False, True):
        for cell, label in (("pd-1", "1 row"), ("pd-100", "100 rows")):
            ours, theirs = by[("scaleml", cell, batching)], by[("mlserver", cell, batching)]
            floor = max(by[("floor", cell, b)]["rps"] for b in (False, True))
            lines.append(f"| {label} | {'on' if batching else 'off'} | {ours['rps']:,.0f} | {ours['p50']:.2f} / "
                         f"{ours['p99']:.2f} | {ours['errors']} | {theirs['rps']:,.0f} | {theirs['p50']:.2f} / "
                         f"{theirs['p99']:.2f} | {theirs['errors']} | **{ours['rps'] / theirs['rps']:.2f}×** | "
                         f"{ours['p99'] / theirs['p99']:.2f} | {floor:,.0f} | {ours['rps'] / floor:.2f} | "
                         f"{theirs['rps'] / floor:.2f} |")
    return "\n".join(lines)


# --- the transport and JSON choices ------------------------------------------------------------------------
def starlette_app(model_dir: Path, inner=None):
    """The same dataplane behind Starlette, doing the same per-request work as the plain ASGI transport
    (in-flight gauge, one metrics observation, the variant header): what that transport was measured against."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from scaleml_dask.deploy import _codecs as codecs
    from scaleml_dask.deploy._errors import ServingError, status_of
    from scaleml_dask.deploy.serve import make_app

    inner = inner or make_app([model_dir])
    gauge = inner.metrics.in_flight.labels("infer")

    async def infer(request: Request) -> Response:
        start = time.perf_counter()
        gauge.inc()
        labels, headers = ("", "", ""), None
        try:
            body = codecs.loads(await request.body())
            out, model = await inner.dataplane.infer(request.path_params["name"], None, body,
                                                     dict(request.headers))
            labels, headers = model.labels, {"x-variant": model.variant}
            response = Response(codecs.dumps(out), media_type="application/json", headers=headers)
        except ServingError as exc:
            response = Response(codecs.dumps({"error": str(exc)}), status_code=status_of(exc),
                                media_type="application/json")
        gauge.dec()
        inner.metrics.observe((*labels, "infer"), response.status_code, time.perf_counter() - start)
        return response

    async def ready(request: Request) -> Response:
        ok = inner.registry.ready()
        return Response(b'{"ready":%s}' % (b"true" if ok else b"false"), status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        inner.start()
        yield
        await inner.stop()

    return Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"]),
                             Route("/v2/health/ready", ready)], lifespan=lifespan)


def asgi_cost(payloads: dict[str, bytes], model_dir: Path) -> list[str]:
    """CPU time per request of each transport called in-process as ASGI apps (no sockets, no load generator:
    the least noisy measure on a shared machine), best of 7 runs of 2,000 requests."""
    from scaleml_dask.deploy.serve import make_app

    plain = make_app([model_dir])
    plain.registry.refresh_all()
    apps = {"plain ASGI (scaleml serve)": plain, "Starlette": starlette_app(model_dir, plain)}
    lines = ["| transport, in-process (µs per request) | V2 1 row | V2 100 rows |", "|---|---|---|"]
    for kind, app in apps.items():
        cells = []
        for cell in ("v2-1", "v2-100"):
            body = payloads[cell]
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/v2/models/reg/infer", "raw_path": b"/v2/models/reg/infer",
                     "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8080),
                     "client": ("127.0.0.1", 5000),
                     "headers": [(b"content-type", b"application/json"),
                                 (b"content-length", str(len(body)).encode())]}
            statuses = []

            async def receive(body=body):
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message, statuses=statuses):
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            async def run(n, app=app, scope=scope, receive=receive, send=send):
                t = time.perf_counter()
                for _ in range(n):
                    await app(scope, receive, send)
                return (time.perf_counter() - t) / n

            best = min(asyncio.run(run(2000)) for _ in range(7))
            assert set(statuses) == {200}, set(statuses)
            cells.append(f"{best * 1e6:.0f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def json_codecs(payloads: dict[str, bytes]) -> list[str]:
    import msgspec
    import orjson

    lines = ["| JSON library | decode 1 row | decode 100 rows | encode 100 predictions |", "|---|---|---|---|"]
    preds = {"outputs": [{"name": "predict", "shape": [100], "datatype": "FP64",
                          "data": np.random.default_rng(0).normal(size=100)}]}
    as_list = {"outputs": [{**preds["outputs"][0], "data": preds["outputs"][0]["data"].tolist()}]}
    libs = {"json (stdlib)": (json.loads, lambda o: json.dumps(o).encode(), as_list),
            "orjson": (orjson.loads, lambda o: orjson.dumps(o, option=orjson.OPT_SERIALIZE_NUMPY), preds),
            "msgspec": (msgspec.json.decode, msgspec.json.encode, as_list)}
    for name, (dec, enc, obj) in libs.items():
        cells = []
        for fn, arg in ((dec, payloads["v2-1"]), (dec, payloads["v2-100"]), (enc, obj)):
            n = 20_000
            t = time.perf_counter()
            for _ in range(n):
                fn(arg)
            cells.append(f"{(time.perf_counter() - t) / n * 1e6:.1f} µs")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def frameworks(seconds: float, max_requests: int, rounds: int) -> str:
    model, X = fit_model()
    payloads = bodies(X)
    lines = ["| transport (same dataplane) | 1-row req/s | p50 / p99 ms | 100-row req/s | p50 / p99 ms |",
             "|---|---|---|---|---|"]
    best: dict[tuple, dict] = {}
    kinds = ("plain ASGI (scaleml serve)", "Starlette")
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        from scaleml_dask.deploy.registry import save_model

        save_model(model, Path(tmp) / "reg", data=X)
        ports = {k: free_port() for k in kinds}
        procs = {kinds[0]: start_scaleml(Path(tmp) / "reg", ports[kinds[0]], False),
                 kinds[1]: subprocess.Popen([sys.executable, __file__, "--starlette", str(Path(tmp) / "reg"),
                                             str(ports[kinds[1]])], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE)}
        try:
            for kind, proc in procs.items():
                wait_ready(ports[kind], proc)
            for _ in range(rounds):
                for cell in ("v2-1", "v2-100"):
                    for kind in kinds:
                        url = f"http://127.0.0.1:{ports[kind]}/v2/models/reg/infer"
                        load(url, payloads[cell], 1.0, max_requests)
                        r = load(url, payloads[cell], seconds, max_requests)
                        print(f"{kind:28} {cell:7} {r['rps']:9.0f} req/s p99 {r['p99']:6.2f} ms", flush=True)
                        _best(best, (kind, cell), r)
        finally:
            for proc in procs.values():
                stop(proc)
        cost = asgi_cost(payloads, Path(tmp) / "reg")
    for kind in kinds:
        lines.append(f"| {kind} | " + " | ".join(f"{r['rps']:,.0f} | {r['p50']:.2f} / {r['p99']:.2f}"
                                                 for r in (best[kind, "v2-1"], best[kind, "v2-100"])) + " |")
    return "\n".join(lines + [""] + cost + [""] + json_codecs(payloads))


# --- soak: memory and connections under hours of mixed traffic, in minutes -----------------------------------
SOAK_TOKEN = "soak-token"


def _soak_requests(X: np.ndarray, predictions: np.ndarray) -> list[tuple[str, str, bytes, dict, int | None]]:
    """(kind, path, body, headers, expected status or None for 'a 4xx')."""
    auth = {"authorization": f"Bearer {SOAK_TOKEN}", "content-type": "application/json"}
    infer = "/v2/models/reg/infer"

    def v2(rows, datatype="FP64", **extra):
        return json.dumps({"inputs": [{"name": "x", "shape": list(np.shape(rows)), "datatype": datatype,
                                       "data": np.ravel(rows).tolist()}], **extra}).encode()

    row = X[:1]
    return [
        ("valid V2, 1 row", infer, v2(row), auth, 200),
        ("valid V2, 100 rows", infer, v2(X[:100]), auth, 200),
        ("valid V1, 1 row", "/v1/models/reg:predict", json.dumps({"instances": row.tolist()}).encode(), auth, 200),
        ("invalid JSON", infer, b"{nope", auth, None),
        ("wrong feature count", infer, v2(X[:1, :3]), auth, None),
        ("ragged / mismatched shape", infer, json.dumps({"inputs": [{"name": "x", "shape": [2, D], "datatype":
                                                                      "FP64", "data": [1.0]}]}).encode(), auth, None),
        ("INT64 out of range", infer, v2([[1e300] * D], "INT64"), auth, None),
        ("prediction overflows", infer, v2([[1e308] * D]), auth, None),
        ("booleans in FP64", infer, json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64",
                                                            "data": [True, 1.0]}]}).encode(), auth, None),
        ("outputs listed 5,000 times", infer, v2(row, outputs=[{"name": "predict"}] * 5000), auth, None),
        ("unique ids (monitor, labels)", infer, v2(row, id={"nested": "object"}), auth, None),
        ("no token", infer, v2(row), {"content-type": "application/json"}, 401),
        ("unknown model", "/v2/models/nope/infer", v2(row), auth, 404),
    ]


async def _slow_client(port: int, hold: float) -> None:
    """Half a header, then nothing: the server must close it (its header deadline)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v2/models/reg/infer HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await writer.drain()
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(reader.read(), hold)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _soak_traffic(port: int, X: np.ndarray, predictions: np.ndarray, seconds: float, sample: float,
                        pid: int) -> list[dict]:
    import httpx
    import psutil

    requests = _soak_requests(X, predictions)
    want = {1: predictions[:1].tolist(), 100: predictions[:100].tolist()}
    proc = psutil.Process(pid)
    counts: dict[str, int] = {}
    failed: list[str] = []
    wrong = 0
    deadline = time.perf_counter() + seconds
    rng = np.random.default_rng(0)
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60) as client:
        async def worker(seed: int) -> None:
            nonlocal wrong
            pick = np.random.default_rng(seed)
            while time.perf_counter() < deadline:
                kind, path, body, headers, expected = requests[pick.integers(len(requests))]
                try:
                    r = await client.post(path, content=body, headers=headers)
                except httpx.TransportError as exc:  # counted, with what was asked, never hidden
                    counts["transport errors"] = counts.get("transport errors", 0) + 1
                    failed.append(f"{kind}: {type(exc).__name__}")
                    continue
                key = f"{r.status_code // 100}xx"
                counts[key] = counts.get(key, 0) + 1
                ok = r.status_code == expected if expected else 400 <= r.status_code < 500
                if ok and expected == 200:
                    got = r.json().get("predictions") or r.json()["outputs"][0]["data"]
                    ok = got == want[len(got)]
                wrong += not ok

        async def slow() -> None:
            pending = set()
            while time.perf_counter() < deadline:
                pending = {t for t in pending if not t.done()}
                if len(pending) < 20:
                    pending.add(asyncio.ensure_future(_slow_client(port, 30.0)))
                await asyncio.sleep(float(rng.uniform(0.2, 1.0)))
            await asyncio.gather(*pending, return_exceptions=True)

        async def scrape() -> None:
            while time.perf_counter() < deadline:
                try:
                    await client.get("/metrics", headers={"authorization": f"Bearer {SOAK_TOKEN}"})
                except httpx.TransportError as exc:
                    failed.append(f"/metrics: {type(exc).__name__}")
                await asyncio.sleep(5.0)

        samples: list[dict] = []

        async def monitor() -> None:
            t0 = time.perf_counter()
            while time.perf_counter() < deadline:
                await asyncio.sleep(sample)
                conns = [c for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_ESTABLISHED]
                samples.append({"t (s)": round(time.perf_counter() - t0), "RSS (MB)": proc.memory_info().rss / 2**20,
                                "connections": len(conns), "threads": proc.num_threads(), "fds": proc.num_fds(),
                                **dict(counts), "wrong answers": wrong})
                print(f"{samples[-1]}", flush=True)

        await asyncio.gather(*(worker(i) for i in range(CONNECTIONS)), slow(), scrape(), monitor())
    if failed:
        print(f"transport errors: {collections.Counter(failed).most_common()}", flush=True)
    return samples


def soak(minutes: float, sample: float) -> str:
    import psutil

    model, X = fit_model()
    predictions = model.predict(X[:100])
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        from scaleml_dask.deploy.registry import save_model

        save_model(model, Path(tmp) / "reg", data=X)
        port = free_port()
        exe = shutil.which("scaleml", path=str(Path(sys.executable).parent)) or "scaleml"
        proc = subprocess.Popen([exe, "serve", str(Path(tmp) / "reg"), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "SCALEML_TOKEN": SOAK_TOKEN})
        try:
            wait_ready(port, proc)
            samples = asyncio.run(_soak_traffic(port, X, predictions, 60.0 * minutes, sample, proc.pid))
            alive = proc.poll() is None
        finally:
            stop(proc)
    per_min = max(1, round(60 / sample))
    early = float(np.median([s["RSS (MB)"] for s in samples[per_min:2 * per_min]] or [samples[0]["RSS (MB)"]]))
    late = float(np.median([s["RSS (MB)"] for s in samples[-per_min:]]))
    keys = ["t (s)", "RSS (MB)", "connections", "threads", "fds", "2xx", "4xx", "5xx", "transport errors",
            "wrong answers"]
    lines = ["| " + " | ".join(keys) + " |", "|---" * len(keys) + "|"]
    step = max(1, len(samples) // 10)
    for s in samples[step - 1::step]:
        lines.append("| " + " | ".join(f"{s.get(k, 0):,.1f}" if k == "RSS (MB)" else f"{s.get(k, 0):,}"
                                       for k in keys) + " |")
    total = samples[-1]
    lines += ["", f"RSS: second minute {early:.1f} MB, last minute {late:.1f} MB: {late / early:.3f}× "
                  f"({'within' if abs(late / early - 1) <= 0.10 else 'NOT within'} 10 %); peak "
                  f"{max(s['RSS (MB)'] for s in samples):.1f} MB; max connections "
                  f"{max(s['connections'] for s in samples)}; server alive at the end: {alive}; "
                  f"{total.get('2xx', 0) + total.get('4xx', 0) + total.get('5xx', 0):,} answers, "
                  f"{total.get('5xx', 0)} 5xx, {total['wrong answers']} wrong; {psutil.cpu_count()} cores"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per cell (default: %(default)s)")
    ap.add_argument("--max-requests", type=int, default=500_000, help="per cell, asyncio client only")
    ap.add_argument("--rounds", type=int, default=1, help="round-robin repeats, best kept (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="2 s per cell")
    ap.add_argument("--frameworks", action="store_true", help="plain ASGI vs Starlette; JSON libraries")
    ap.add_argument("--tables", action="store_true", help="raw rows: a pipeline of raw columns against MLServer "
                                                          "serving the same scikit-learn pipeline (pandas codec)")
    ap.add_argument("--soak", action="store_true", help="memory and connections under mixed valid / invalid / slow "
                                                        "traffic (see the docstring)")
    ap.add_argument("--soak-minutes", type=float, default=10.0, help="(default: %(default)s; --quick: 1)")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples (default: %(default)s)")
    ap.add_argument("--client", help=argparse.SUPPRESS)  # internal: the asyncio load generator process
    ap.add_argument("--starlette", nargs=2, help=argparse.SUPPRESS)  # internal: the Starlette variant
    ap.add_argument("--floor", type=int, help=argparse.SUPPRESS)  # internal: the floor server on this port
    args = ap.parse_args()
    if args.floor:
        import uvicorn

        uvicorn.run(floor_app(FLOOR_RESPONSE), host="127.0.0.1", port=args.floor, log_level="warning",
                    access_log=False, http="httptools", loop="auto")
        return
    if args.client:
        body = sys.stdin.buffer.read()
        print(json.dumps(asyncio.run(_asyncio_load(args.client, body, args.seconds, args.max_requests))))
        return
    if args.starlette:
        import uvicorn

        uvicorn.run(starlette_app(Path(args.starlette[0])), host="127.0.0.1", port=int(args.starlette[1]),
                    log_level="warning", access_log=False)
        return
    DATA.mkdir(exist_ok=True)
    if args.soak:
        minutes = 1.0 if args.quick else args.soak_minutes
        print(f"soak: {minutes:g} min, {CONNECTIONS} connections of mixed traffic + up to 20 slow clients", flush=True)
        print(soak(minutes, 2.0 if args.quick else args.sample))
        return
    seconds = 2.0 if args.quick else args.seconds
    generator = "wrk -t1 -c16" if shutil.which("wrk") else "asyncio client, 16 connections"
    print(f"load generator: {generator}; {seconds:g} s per cell", flush=True)
    if args.frameworks:
        print(frameworks(seconds, args.max_requests, args.rounds))
        return
    if args.tables:
        print(tables_table(compare_tables(seconds, args.max_requests, args.rounds)))
        return
    print(table(compare(seconds, args.max_requests, args.rounds)))


if __name__ == "__main__":
    main()
