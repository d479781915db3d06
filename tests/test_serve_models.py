"""The server's models, each on its own: a malformed one is reported (metadata, readiness, the log once) while the
others serve; a version copied in file by file is installed once it is complete; a request in flight when a
new version is swapped in is answered by the old one. A real uvicorn server on a free port, hit by httpx."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time

import httpx
import numpy as np
import pytest
from fitted import small_data
from test_serve import metric_samples, running, total, until, v2

import scaleml_dask as sm
from scaleml_dask.deploy.registry import content_sha256, save_model
from scaleml_dask.deploy.serve import make_app

pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def data():
    return small_data()


def _reseal(version, change):
    meta = json.loads((version / "metadata.json").read_text())
    change(meta)
    meta["content_sha256"] = content_sha256(meta)
    (version / "metadata.json").write_text(json.dumps(meta))


def test_malformed_models_are_reported_once_and_the_others_serve(tmp_path, data, caplog):
    X, y = data[0], data[1]
    model = sm.LinearRegression().fit(X, y)
    for name in ("good", "wrong-type", "directory", "nested"):
        save_model(model, tmp_path / name)
    _reseal(tmp_path / "wrong-type" / "1", lambda m: m.update(n_features="5"))  # a field of the wrong type
    npz = tmp_path / "directory" / "1" / "arrays.npz"  # a file entry that is a directory
    npz.unlink()
    npz.mkdir()
    deep = {"x": 1}
    for _ in range(500):
        deep = [deep]
    _reseal(tmp_path / "nested" / "1", lambda m: m.update(metrics={"deep": deep}))  # deeply nested JSON
    app = make_app(sorted(tmp_path.iterdir()), reload_interval=0.05)
    caplog.set_level(logging.WARNING, logger="scaleml_dask.serve")
    with running(app) as client:
        ok = client.post("/v2/models/good/infer", json={"inputs": [v2(X[:2])]})
        assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == model.predict(X[:2]).tolist()
        ready = client.get("/v2/health/ready").json()
        assert ready["ready"] is True and set(ready["unavailable"]) == {"wrong-type", "directory", "nested"}
        problems = {"wrong-type": "n_features: must be a positive integer or null",
                    "directory": "arrays.npz: is not a regular file",
                    "nested": "values nested deeper than 64 levels"}
        for name, words in problems.items():
            r = client.get(f"/v2/models/{name}")
            assert r.status_code == 503 and words in r.json()["error"], (name, r.json())
            assert str(tmp_path) not in r.json()["error"]  # no server path in what a client sees
            assert client.get(f"/v2/models/{name}/ready").status_code == 503
        polls = app.registry._polled
        time.sleep(0.5)  # ten more polls of the watcher
        assert polls == {"good", "wrong-type", "directory", "nested"}
    refusals = [r for r in caplog.records if "refused version" in r.getMessage()]
    assert sorted(r.getMessage().split(":")[0] for r in refusals) == [
        "model directory", "model nested", "model wrong-type"]  # once each, however many polls
    assert all(r.exc_info is None for r in refusals)  # known problems: one line, no traceback


def test_a_version_copied_in_file_by_file_is_installed_once_complete(tmp_path, data):
    X, y = data[0], data[1]
    old, new = sm.LinearRegression().fit(X, y), sm.Ridge(alpha=300.0).fit(X, y)
    save_model(old, tmp_path / "reg")
    staged = save_model(new, tmp_path / "staging")
    app = make_app([tmp_path / "reg"], reload_interval=0.05)
    body = {"inputs": [v2(X[:2])]}
    with running(app) as client:
        target = tmp_path / "reg" / "2"
        target.mkdir()  # as `cp -r` does: the directory, then each file, written in pieces
        shutil.copy(staged / "metadata.json", target / "metadata.json")
        raw = (staged / "arrays.npz").read_bytes()
        with open(target / "arrays.npz", "wb") as f:
            f.write(raw[: len(raw) // 2])
            f.flush()  # the copy pauses half-way: the watcher tries it once it stops changing, and refuses it

            def refused():
                return total(metric_samples(client.get("/metrics").text), "scaleml_model_loads_total",
                             result="refused", version="2")

            until(lambda: refused() >= 1)
            assert client.post("/v2/models/reg/infer", json=body).json()["model_version"] == "1"
            f.write(raw[len(raw) // 2:])
        # complete now: its files changed since the refusal, so it is tried again once they stop changing
        until(lambda: client.post("/v2/models/reg/infer", json=body).json()["model_version"] == "2")
        r = client.post("/v2/models/reg/infer", json=body).json()
        assert r["outputs"][0]["data"] == new.predict(X[:2]).tolist()
        assert refused() == 1  # the half-written state was tried once, not at every poll


def test_a_request_in_flight_when_the_new_version_loads_is_answered_by_the_old_one(tmp_path, data):
    """A request waits inside version 1's batcher (a long batching window) while version 2 is saved and loaded
    (repository API). The proof that it was in flight at the swap: right after the load returned, the metrics
    count one request held by version 1 while version 2 serves; then it is answered by version 1, and the
    next request by version 2."""
    X, y = data[0], data[1]
    old, new = sm.LinearRegression().fit(X, y), sm.Ridge(alpha=500.0).fit(X, y)
    save_model(old, tmp_path / "reg")
    app = make_app([tmp_path / "reg"], max_batch_size=1000, max_batch_time_ms=3000, reload_interval=3600)
    body = {"inputs": [v2(X[:2])]}

    async def scenario(base):
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            in_flight = asyncio.ensure_future(c.post("/v2/models/reg/infer", json=body))
            while total(metric_samples((await c.get("/metrics")).text), "scaleml_model_requests_in_flight",
                        version="1") < 1:  # until version 1 holds it
                await asyncio.sleep(0.01)
            save_model(new, tmp_path / "reg")
            loaded = (await c.post("/v2/repository/models/reg/load")).json()
            at_swap = metric_samples((await c.get("/metrics")).text)
            done_at_swap = in_flight.done()
            after = (await c.post("/v2/models/reg/infer", json=body)).json()
            return (await in_flight).json(), loaded, at_swap, done_at_swap, after

    with running(app) as client:
        first, loaded, at_swap, done_at_swap, second = asyncio.run(scenario(str(client.base_url)))
    assert loaded["version"] == "2" and not done_at_swap
    assert total(at_swap, "scaleml_model_requests_in_flight", model="reg", version="1") == 1
    assert total(at_swap, "scaleml_model_info", model="reg", version="2") == 1  # version 2 was serving then
    assert first["model_version"] == "1" and first["outputs"][0]["data"] == old.predict(X[:2]).tolist()
    assert second["model_version"] == "2" and second["outputs"][0]["data"] == new.predict(X[:2]).tolist()


def test_a_drift_monitor_error_is_logged_counted_and_the_detectors_restart(tmp_path, data, caplog):
    """An error inside the monitor (here: its training statistics replaced by a width that cannot broadcast) is
    never the request's: it is answered, /metrics too, the error counted and logged, the monitor restarted."""
    X, y = data[0], data[1]
    save_model(sm.LinearRegression().fit(X, y), tmp_path / "reg", data=X)
    app = make_app([tmp_path / "reg"], monitor_chunk=16)
    caplog.set_level(logging.ERROR, logger="scaleml_dask.serve")
    with running(app) as client:
        monitor = app.registry.get("reg").monitor
        monitor.mean = np.zeros(3)  # what no request can do; stands for a bug inside the monitor
        for i in range(3):
            assert client.post("/v2/models/reg/infer", json={"inputs": [v2(X[i * 20:(i + 1) * 20])]}).status_code \
                == 200
        r = client.get("/metrics")
    assert r.status_code == 200
    assert total(metric_samples(r.text), "scaleml_monitor_errors_total", model="reg") == 3
    assert [rec.getMessage() for rec in caplog.records].count("drift monitor error #1; its detectors restart") == 1
