"""The model server over real HTTP: a uvicorn server on a free 127.0.0.1 port, hit by httpx.

Predictions are compared bitwise with the in-process model, for every estimator type and datatype.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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
from fitted import batch_models, small_data
from prometheus_client.parser import text_string_to_metric_families

import scaleml_dask as sm
from scaleml_dask import online
from scaleml_dask.deploy.registry import load_model, save_model
from scaleml_dask.deploy.serve import make_app

uvicorn = pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app, ready=True):
    """A real uvicorn server for ``app`` in a thread; yields an httpx client bound to it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        wait_until(client, "/v2/health/ready" if ready else "/v2/health/live")
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(10)


def wait_until(client, path, status=200, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if client.get(path).status_code == status:
                return
        time.sleep(0.05)
    raise AssertionError(f"{path} never answered {status}")


def metric_samples(text):
    """{(sample name, frozenset(labels)): value} of a /metrics page, parsed by prometheus_client."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples, name, **labels):
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


# --- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return small_data()


def _models(data):
    X, y, yc, y3 = data
    models = batch_models(data)
    for name, model, target in (("online-logistic", online.LogisticRegression(), yc),
                                ("online-linear", online.LinearRegression(), y),
                                ("perceptron", online.Perceptron(), yc), ("rls", online.RLS(), y)):
        model.learn_many(X, target)
        models[name] = model
    return models


@pytest.fixture(scope="module")
def repo(tmp_path_factory, data):
    """One registry directory per estimator (saved with training statistics), and the in-process models."""
    root = tmp_path_factory.mktemp("models")
    models = _models(data)
    for name, model in models.items():
        save_model(model, root / name, data=data[0])
    (root / "empty").mkdir()  # served, never loaded: 503
    return root, models


@pytest.fixture(scope="module")
def server(repo):
    root, _ = repo
    app = make_app(sorted(root.iterdir()), max_rows=1000, max_body_bytes=200_000, reload_interval=0.2)
    with running(app, ready=False) as client:
        wait_until(client, "/v2/models/linear/ready")
        for name in repo[1]:
            wait_until(client, f"/v2/models/{name}/ready")
        yield client


def v2(data, datatype="FP64", name="input-0", nested=False):
    a = np.asarray(data)
    return {"name": name, "shape": list(a.shape), "datatype": datatype,
            "data": a.tolist() if nested else a.ravel().tolist()}


DATATYPES = {
    "FP64": lambda X: X,
    "FP32": lambda X: X.astype(np.float32),
    "INT64": lambda X: np.round(3 * X).astype(np.int64),
    "INT32": lambda X: np.round(3 * X).astype(np.int32),
    "BOOL": lambda X: X > 0,
}
NAMES = ["linear", "ridge", "pca", "sgd-reg", "sgd-clf", "sgd-clf3", "online-logistic", "online-linear",
         "perceptron", "rls"]


# --- the protocol ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_predictions_equal_the_in_process_model(server, repo, data, name):
    model = repo[1][name]
    meta = server.get(f"/v2/models/{name}").json()
    outputs = [o["name"] for o in meta["outputs"]]
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 5]}]
    from scaleml_dask.deploy.outputs import apply

    for i, (datatype, convert) in enumerate(DATATYPES.items()):
        rows = convert(data[0][i * 7:(i + 1) * 7])
        body = {"id": f"req-{i}", "inputs": [v2(rows, datatype, name=f"any-name-{i}", nested=i % 2 == 1)],
                "outputs": [{"name": o} for o in outputs]}
        r = server.post(f"/v2/models/{name}/infer", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["id"] == f"req-{i}" and got["model_name"] == name and got["model_version"] == "1"
        assert [o["name"] for o in got["outputs"]] == outputs
        X64 = rows.astype(np.float64)
        for out in got["outputs"]:
            want = apply(model, out["name"], X64)
            assert out["shape"] == list(want.shape)
            np.testing.assert_array_equal(np.asarray(out["data"]).reshape(want.shape), want)
    # the default output is the main one; V1 gives the same numbers
    X = data[0][:4]
    r = server.post(f"/v2/models/{name}/infer", json={"inputs": [v2(X)]}).json()
    assert [o["name"] for o in r["outputs"]] == outputs[:1] and r["id"]
    v1 = server.post(f"/v1/models/{name}:predict", json={"instances": X.tolist()})
    np.testing.assert_array_equal(np.asarray(v1.json()["predictions"]), apply(model, outputs[0], X))


def test_loaded_model_is_the_saved_one(repo, data):
    root, models = repo
    X = data[0][:20]
    np.testing.assert_array_equal(load_model(root / "linear").predict(X), models["linear"].predict(X))


def test_metadata_health_and_v1_routes(server):
    assert server.get("/v2").json()["name"] == "scaleml-dask"
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/healthz").status_code == 200
    # the empty directory is served but never loaded: the server is not ready, the model 503
    r = server.get("/v2/health/ready")
    assert r.status_code == 503 and "empty" in r.json()["error"]
    assert server.get("/v2/models/linear/versions/1/ready").json() == {"name": "linear", "ready": True}
    meta = server.get("/v2/models/sgd-clf3/versions/1").json()
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                               {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]}]
    assert set(server.get("/v1/models").json()["models"]) >= set(NAMES)
    assert server.get("/v1/models/pca").json() == {"name": "pca", "ready": True}
    index = {m["name"]: m for m in server.post("/v2/repository/index").json()}
    assert index["linear"]["state"] == "READY" and index["empty"]["state"] == "UNAVAILABLE"


def row(n=5, v=0.5):
    return [v] * n


BAD = [
    # (method, path, body bytes or json, status, words in the error)
    ("POST", "/v2/models/linear/infer", b"{not json", 400, "invalid JSON"),
    ("POST", "/v2/models/linear/infer", b"", 400, "empty body"),
    ("POST", "/v2/models/linear/infer", {"id": "x"}, 400, "'inputs'"),
    ("POST", "/v2/models/linear/infer", [1, 2], 400, "JSON object"),
    ("POST", "/v2/models/linear/infer", {"inputs": []}, 400, "non-empty list"),
    ("POST", "/v2/models/linear/infer", {"inputs": [{"name": "x", "datatype": "FP64", "data": row()}]}, 400,
     "missing field 'shape'"),
    ("POST", "/v2/models/linear/infer", {"inputs": [{"name": "x", "shape": "1,5", "datatype": "FP64",
                                                     "data": row()}]}, 400, "'shape'"),
    ("POST", "/v2/models/linear/infer", {"inputs": [v2([row()], "FP16")]}, 400, "FP16"),
    ("POST", "/v2/models/linear/infer", {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64",
                                                     "data": 3}]}, 400, "'data' must be a list"),
    ("POST", "/v2/models/linear/infer", {"inputs": [{"name": "x", "shape": [2, 5], "datatype": "FP64",
                                                     "data": [row(), row(4)]}]}, 400, "ragged"),
    ("POST", "/v2/models/linear/infer", {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64",
                                                     "data": [1, 2, "three", 4, 5]}]}, 400, "'three'"),
    ("POST", "/v2/models/linear/infer", {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64",
                                                     "data": [1, 2, None, 4, 5]}]}, 400, "None"),
    ("POST", "/v2/models/linear/infer", {"inputs": [{"name": "x", "shape": [2, 5], "datatype": "FP64",
                                                     "data": row()}]}, 400, "holds 10 values"),
    ("POST", "/v2/models/linear/infer", b'{"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64", '
                                        b'"data": [1, 2, NaN, 4, 5]}]}', 400, "invalid JSON"),
    ("POST", "/v2/models/linear/infer", b'{"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64", '
                                        b'"data": [1, 2, 1e999, 4, 5]}]}', 400, "infinity"),
    ("POST", "/v2/models/linear/infer", {"inputs": [v2([row(3)])]}, 422, "3 features per row; the model "
                                                                           "expects 5"),
    ("POST", "/v2/models/linear/infer", {"inputs": [{"name": "x", "shape": [0, 5], "datatype": "FP64",
                                                     "data": []}]}, 422, "empty input"),
    ("POST", "/v2/models/linear/infer", {"inputs": [v2([row(5, 1e39)], "FP32")]}, 422, "overflows FP32"),
    ("POST", "/v2/models/linear/infer", {"inputs": [v2([row(5, 1.5)], "INT64")]}, 422, "integer"),
    ("POST", "/v2/models/linear/infer", {"inputs": [v2([row(5, 2)], "BOOL")]}, 422, "BOOL"),
    ("POST", "/v2/models/linear/infer", {"inputs": [v2([row(5, 2**40)], "INT32")]}, 422, "INT32"),
    ("POST", "/v2/models/linear/infer", {"inputs": [v2([row()])], "outputs": [{"name": "predict_proba"}]}, 422,
     "no output 'predict_proba'"),
    ("POST", "/v2/models/linear/infer", {"inputs": [v2([row()]), v2([row()], name="other")]}, 422,
     "one per feature"),
    ("POST", "/v2/models/linear/infer", {"inputs": [v2([row()] * 1001)]}, 413, "limit is 1000"),
    ("POST", "/v1/models/linear:predict", {"instances": [row()] * 1001}, 413, "limit is 1000"),
    ("POST", "/v1/models/linear:predict", {"rows": [row()]}, 400, "'instances'"),
    ("POST", "/v1/models/linear:predict", {"instances": [row(), row(2)]}, 400, "ragged"),
    ("POST", "/v1/models/linear:predict", {"instances": [row(4)]}, 422, "4 features"),
    ("POST", "/v2/models/nope/infer", {"inputs": [v2([row()])]}, 404, "unknown model 'nope'"),
    ("GET", "/v2/models/linear/versions/7", None, 404, "no loaded version '7'"),
    ("POST", "/v2/models/empty/infer", {"inputs": [v2([row()])]}, 503, "not loaded yet"),
    ("GET", "/v2/models/linear/infer", None, 405, "takes POST"),
    ("GET", "/v3/anything", None, 404, "no route"),
    ("POST", "/v2/repository/models/nope/load", b"", 404, "unknown model"),
]


def test_every_bad_request_gets_its_status_and_a_json_error(server, data):
    for method, path, body, status, words in BAD:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
        r = server.request(method, path, **kwargs)
        assert r.status_code == status, (path, body, r.text)
        assert words in r.json()["error"], (r.json(), words)
    # a bad request disturbs no other: the next good one is answered
    r = server.post("/v2/models/linear/infer", json={"inputs": [v2(data[0][:2])]})
    assert r.status_code == 200


def test_oversized_bodies_are_refused_before_parsing(server):
    # invalid JSON, yet 413: the limit is checked from Content-Length before the body is read
    assert server.post("/v2/models/linear/infer", content=b"x" * 300_000).status_code == 413

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(40):
            yield b"y" * 10_000

    r = server.post("/v2/models/linear/infer", content=chunks())
    assert r.status_code == 413 and "over 200000 bytes" in r.json()["error"]


def test_metrics_count_what_was_sent(repo, data):
    root, _ = repo
    app = make_app([root / "linear", root / "pca"], max_rows=50)
    X = data[0]
    with running(app) as client:
        for i in range(7):
            assert client.post("/v2/models/linear/infer", json={"inputs": [v2(X[i:i + 3])]}).status_code == 200
        for _ in range(2):
            assert client.post("/v2/models/linear/infer", json={"inputs": [v2(X[:2, :3])]}).status_code == 422
        assert client.post("/v1/models/pca:predict", json={"instances": X[:4].tolist()}).status_code == 200
        assert client.post("/v2/models/linear/infer", content=b"{").status_code == 400
        text = client.get("/metrics").text
    s = metric_samples(text)
    lab = {"model": "linear", "version": "1", "variant": "default", "endpoint": "infer"}
    assert total(s, "scaleml_requests_total", code="200", **lab) == 7
    assert total(s, "scaleml_requests_total", code="422", **lab) == 2
    assert total(s, "scaleml_request_errors_total", code="422", **lab) == 2
    assert total(s, "scaleml_request_errors_total", code="400", endpoint="infer") == 1  # before routing
    assert total(s, "scaleml_request_duration_seconds_count", **lab) == 9
    assert total(s, "scaleml_requests_total", model="pca", endpoint="v1_predict", code="200") == 1
    assert total(s, "scaleml_batch_rows_sum", model="linear") == 21
    assert total(s, "scaleml_batch_rows_count", model="pca") == 1
    assert total(s, "scaleml_model_info", model="linear", version="1", n_features="5") == 1
    assert total(s, "scaleml_monitored_rows_total", model="linear") == 21
    hist = [lab for (n, lab) in s if n == "scaleml_request_duration_seconds_bucket"]
    assert any(dict(lab)["le"] == "0.0001" for lab in hist)  # sub-millisecond buckets
    assert "scaleml_requests_in_flight" in text


def test_bearer_token_guards_every_route_but_health(repo, data):
    root, _ = repo
    with running(make_app([root / "linear"], token="s3cret")) as client:
        body = {"inputs": [v2(data[0][:1])]}
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/healthz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            r = client.post("/v2/models/linear/infer", json=body, headers=headers)
            assert r.status_code == 401 and "bearer token" in r.json()["error"]
            assert r.headers["www-authenticate"] == "Bearer"
        assert client.get("/metrics").status_code == 401
        assert client.get("/v2/models/linear").status_code == 401
        ok = client.post("/v2/models/linear/infer", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


# --- operations: A/B, batching, hot reload, drift ----------------------------------------------------------
def test_ab_split_is_weighted_sticky_and_labelled(tmp_path, data):
    X, y = data[0], data[1]
    a = sm.LinearRegression().fit(X, y)
    b = sm.Ridge(alpha=50.0).fit(X, y)
    save_model(a, tmp_path / "champion")
    save_model(b, tmp_path / "challenger")
    app = make_app([], ab=f"{tmp_path / 'champion'}=0.9,{tmp_path / 'challenger'}=0.1")
    body = {"inputs": [v2(X[:1])]}
    with running(app) as client:
        seen = {"champion": 0, "challenger": 0}
        for _ in range(2000):
            r = client.post("/v2/models/champion/infer", json=body)
            variant = r.headers["x-variant"]
            assert r.json()["model_name"] == variant
            want = (a if variant == "champion" else b).predict(X[:1])
            assert r.json()["outputs"][0]["data"] == want.tolist()
            seen[variant] += 1
        # binomial(2000, 0.1): sd 13.4; +-60 is 4.5 sd
        assert abs(seen["challenger"] - 200) < 60, seen
        # sticky: by header, and by the hash of a routing key
        forced = {client.post("/v2/models/champion/infer", json=body,
                              headers={"X-Variant": "challenger"}).headers["x-variant"] for _ in range(20)}
        assert forced == {"challenger"}
        for key in ("user-1", "user-2", "user-3", "user-4"):
            got = {client.post("/v1/models/champion:predict", json={"instances": X[:1].tolist()},
                               headers={"X-Routing-Key": key}).headers["x-variant"] for _ in range(10)}
            assert len(got) == 1
        assert client.post("/v2/models/champion/infer", json=body, headers={"X-Variant": "zzz"}).status_code == 404
        s = metric_samples(client.get("/metrics").text)
    counted = {v: total(s, "scaleml_requests_total", endpoint="infer", code="200", variant=v) for v in seen}
    assert counted["champion"] == seen["champion"] and counted["challenger"] == seen["challenger"] + 20


def test_adaptive_batching_coalesces_concurrent_requests(repo, data):
    root, models = repo
    X = data[0]
    app = make_app([root / "sgd-clf"], max_batch_size=64, max_batch_time_ms=200)

    async def burst(base):
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            reqs = [c.post("/v2/models/sgd-clf/infer",
                           json={"inputs": [v2(X[i:i + 2])], "outputs": [{"name": "predict_proba"}]})
                    for i in range(0, 96, 2)]
            return await asyncio.gather(*reqs)

    with running(app) as client:
        responses = asyncio.run(burst(str(client.base_url)))
        s = metric_samples(client.get("/metrics").text)
    for i, r in zip(range(0, 96, 2), responses):
        got = np.asarray(r.json()["outputs"][0]["data"]).reshape(2, 2)
        np.testing.assert_allclose(got, models["sgd-clf"].predict_proba(X[i:i + 2]), rtol=0, atol=1e-15)
    assert total(s, "scaleml_batch_rows_sum", model="sgd-clf") == 96
    assert total(s, "scaleml_batch_rows_count", model="sgd-clf") < 48  # fewer model calls than requests


@pytest.mark.parametrize("concurrency", [1, 2])
def test_batches_in_flight_up_to_the_inference_threads_each_caller_its_rows(concurrency):
    from scaleml_dask.deploy._batching import AdaptiveBatcher

    async def scenario():
        release, calls = asyncio.Event(), []

        async def model(X):
            calls.append(len(X))
            await release.wait()  # the first batch stays in flight until released
            return {"y": np.asarray(X) * 10}

        batcher = AdaptiveBatcher(model, max_batch_size=4, max_batch_time=0.001, concurrency=concurrency)
        first = asyncio.ensure_future(batcher.submit(np.array([[1.0]])))
        while not calls:
            await asyncio.sleep(0)
        second = asyncio.ensure_future(batcher.submit(np.array([[2.0], [3.0]])))
        for _ in range(200):  # the second batch's gathering time (1 ms) several times over
            await asyncio.sleep(0.001)
            if len(calls) == 2:
                break
        in_flight = list(calls)  # the window: the first batch not yet answered
        release.set()
        a, b = await first, await second
        await asyncio.sleep(0.05)  # the batcher's task ends after its last batch
        return in_flight, a, b, batcher._task

    in_flight, a, b, task = asyncio.run(scenario())
    # one thread: the second request waits for the first batch; two: it is computed while the first is in flight
    assert in_flight == ([1] if concurrency == 1 else [1, 2])
    np.testing.assert_array_equal(a["y"], [[10.0]])
    np.testing.assert_array_equal(b["y"], [[20.0], [30.0]])
    assert task is None  # nothing left running once every batch was answered


def _corrupt_version(staging: Path, model, served: Path, version: int) -> None:
    """Save ``model`` elsewhere, flip a byte of its arrays, and move it in as ``served/version`` at once."""
    path = save_model(model, staging)
    npz = next(path.glob("*.npz"))
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    npz.write_bytes(bytes(raw))
    os.rename(path, served / str(version))


def until(condition, seconds=60.0):
    """Wait for ``condition()`` (events, not durations: the machine may be slow)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.01)


def test_hot_reload_under_load_loses_no_request(tmp_path, data):
    X, y = data[0], data[1]
    served = tmp_path / "reg"
    v1 = sm.LinearRegression().fit(X, y)
    v2_model = sm.Ridge(alpha=100.0).fit(X, y)
    v4 = sm.Ridge(alpha=1000.0).fit(X, y)
    save_model(v1, served)
    want = {"1": v1.predict(X[:3]).tolist(), "2": v2_model.predict(X[:3]).tolist(),
            "4": v4.predict(X[:3]).tolist()}
    app = make_app([served], reload_interval=0.05)
    per_thread, stop = [[], [], []], threading.Event()

    def seen(version):  # every client has had an answer from `version`
        return all(any(body["model_version"] == version for _, body in list(rs)) for rs in per_thread)

    with running(app) as client:
        base = str(client.base_url)

        def hammer(results):
            with httpx.Client(base_url=base, timeout=60) as c:
                while not stop.is_set():
                    r = c.post("/v2/models/reg/infer", json={"inputs": [v2(X[:3])]})
                    results.append((r.status_code, r.json()))

        threads = [threading.Thread(target=hammer, args=(results,), daemon=True) for results in per_thread]
        try:
            for t in threads:
                t.start()
            until(lambda: seen("1"))
            save_model(v2_model, served)  # picked up by the watcher while the clients keep asking
            until(lambda: seen("2"))
            _corrupt_version(tmp_path / "staging", v1, served, 3)  # refused: version 2 keeps serving
            until(lambda: total(metric_samples(client.get("/metrics").text), "scaleml_model_loads_total",
                                result="refused") >= 1)
            counts = [len(rs) for rs in per_thread]
            until(lambda: all(len(rs) > c for rs, c in zip(per_thread, counts)))
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert client.get("/v2/models/reg").json()["versions"] == ["2"]
        r = client.post("/v2/repository/models/reg/load")
        assert r.status_code == 422 and "3" in r.json()["error"]  # asked explicitly: the refusal, named
        save_model(v4, served)  # saved as version 4
        r = client.post("/v2/repository/models/reg/load")
        assert r.status_code == 200 and r.json()["version"] == "4"
        after = client.post("/v2/models/reg/infer", json={"inputs": [v2(X[:3])]}).json()
        s = metric_samples(client.get("/metrics").text)
    assert after["model_version"] == "4" and after["outputs"][0]["data"] == want["4"]
    results = [r for rs in per_thread for r in rs]
    assert all(code == 200 for code, _ in results)  # not one request lost or failed
    for rs in per_thread:  # each client sees the old version, then the new one, never the corrupt one
        versions = [body["model_version"] for _, body in rs]
        assert versions[0] == "1" and versions[-1] == "2" and versions == sorted(versions)
    for _, body in results:
        assert body["outputs"][0]["data"] == want[body["model_version"]]
    assert total(s, "scaleml_model_loads_total", model="reg", version="3", result="refused") >= 1
    assert total(s, "scaleml_model_loads_total", model="reg", result="loaded") == 3


def test_drift_counters_rise_on_a_shifted_stream_and_stay_flat_on_training_data(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 4)) * [1.0, 2.0, 0.5, 1.0] + [0.0, 5.0, -1.0, 2.0]
    y = X @ [1.0, 1.0, 2.0, 0.0]
    save_model(sm.LinearRegression().fit(X, y), tmp_path / "reg", data=X)
    stream = rng.normal(size=(2048, 4)) * [1.0, 2.0, 0.5, 1.0] + [0.0, 5.0, -1.0, 2.0]
    with running(make_app([tmp_path / "reg"], monitor_chunk=256)) as client:
        for i in range(0, 2048, 32):
            client.post("/v2/models/reg/infer", json={"inputs": [v2(stream[i:i + 32])]})
        flat = metric_samples(client.get("/metrics").text)
        shifted = stream.copy()
        shifted[:, 2] += 0.5  # one training standard deviation of feature x2
        for i in range(0, 2048, 32):
            client.post("/v2/models/reg/infer", json={"inputs": [v2(shifted[i:i + 32])]})
        drift = metric_samples(client.get("/metrics").text)
    name = "scaleml_feature_drift_detected_total"
    assert total(flat, name) == 0 and total(flat, "scaleml_prediction_drift_detected_total") == 0
    assert total(flat, "scaleml_monitored_rows_total") == 2048
    assert total(drift, name, feature="x2") >= 4  # about once per 256-row chunk while the shift lasts
    assert sum(total(drift, name, feature=f) for f in ("x0", "x1", "x3")) == 0
    assert total(drift, "scaleml_prediction_drift_detected_total") >= 1
    assert 0.8 < total(drift, "scaleml_feature_shift", feature="x2") < 1.2
    assert abs(total(drift, "scaleml_feature_shift", feature="x0")) < 0.3


# --- the command -----------------------------------------------------------------------------------------
def test_scaleml_serve_subprocess_answers_ready(repo):
    root, _ = repo
    port = free_port()
    exe = shutil.which("scaleml", path=str(Path(sys.executable).parent)) or "scaleml"
    proc = subprocess.Popen([exe, "serve", str(root / "linear"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_until(client, "/v2/health/ready")
            assert client.get("/v2/models/linear").json()["name"] == "linear"
    finally:
        proc.terminate()
        proc.wait(10)


def test_scaleml_serve_bad_arguments_one_line_no_traceback(tmp_path):
    exe = shutil.which("scaleml", path=str(Path(sys.executable).parent)) or "scaleml"
    for args in ([str(tmp_path / "missing")], [str(tmp_path), "--ab", "a=0.5"]):
        r = subprocess.run([exe, "serve", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "scaleml serve:" in r.stderr


def test_a_call_cheaper_than_a_thread_hand_off_runs_on_the_loop_and_a_slow_one_never_does(tmp_path, monkeypatch):
    """A model's first calls go to the inference threads (the first, cold, is not averaged); once its calls are
    measured cheaper than ``INLINE_BELOW_S`` they run on the event loop (only the first two waited in the pool's
    queue); a model whose calls take longer stays in the threads, every call."""
    from scaleml_dask.deploy import _models

    X, y, _, _ = small_data()
    save_model(sm.LinearRegression().fit(X, y), tmp_path / "reg")
    body = {"inputs": [{"name": "input-0", "shape": [2, X.shape[1]], "datatype": "FP64",
                        "data": X[:2].ravel().tolist()}]}

    def queued(client) -> float:
        return next(s.value for f in text_string_to_metric_families(client.get("/metrics").text)
                    for s in f.samples if s.name == "scaleml_queue_duration_seconds_count")

    app = make_app([tmp_path / "reg"])
    with running(app) as client:
        for _ in range(5):
            assert client.post("/v2/models/reg/infer", json=body).status_code == 200
        model = app.registry.get("reg")
        assert model.call_s < _models.INLINE_BELOW_S and model.cheap(2)
        assert queued(client) == 2  # the first two calls only

    slow_compute = _models.ServedModel.compute

    def slow(self, X, outputs):
        time.sleep(2 * _models.INLINE_BELOW_S)
        return slow_compute(self, X, outputs)

    monkeypatch.setattr(_models.ServedModel, "compute", slow)
    app = make_app([tmp_path / "reg"])
    with running(app) as client:
        for _ in range(4):
            assert client.post("/v2/models/reg/infer", json=body).status_code == 200
        assert not app.registry.get("reg").cheap(2)
        assert queued(client) == 4  # every call in the threads
