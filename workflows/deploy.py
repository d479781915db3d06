"""Deployment end to end: fit a classifier, save it to the registry, compress it with measured cost, score the
dataset on the cluster, then serve it on a free 127.0.0.1 port, query it (V2 and V1) and read its metrics.

The server is the real `scaleml serve` command in a subprocess, stopped at the end of the step; it needs the
``serve`` extra (uvicorn, orjson, prometheus-client). After a plain ``pip install scaleml-dask`` the serving part
is skipped with one line saying so, and the rest of the step (and of the demo) runs. The client is the standard
library's, so nothing else is needed to query it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

import scaleml_dask as sm
from scaleml_dask.deploy.compress import plot_tradeoff, tradeoff
from scaleml_dask.deploy.registry import check_registry
from scaleml_dask.runner import script_main

log = logging.getLogger("scaleml_dask.runner")  # a step's lines on the terminal (runner's filter)

#: What `scaleml serve` imports beyond the core install: the `serve` extra.
SERVE_MODULES = ("uvicorn", "orjson", "prometheus_client")


def missing_serve_extra() -> list[str]:
    """The modules of the ``serve`` extra that are not installed."""
    return [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(base: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def running_server(registry: Path):
    """`scaleml serve` of ``registry`` in a subprocess on a free 127.0.0.1 port, ready; yields its base URL and
    stops it after."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "scaleml_dask.cli", "serve", str(registry), "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _http(base, "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"scaleml serve did not become ready: {server.stderr.read().decode()[-500:]}")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def timed_requests(base: str, requests: list[tuple[str, str, dict]], n_requests: int) -> tuple[list[dict], dict]:
    """Send each ``(label, path, body)`` ``n_requests`` times: latency rows, and the last reply of each label."""
    table, last = [], {}
    for label, path, body in requests:
        seconds = []
        for _ in range(n_requests):
            t = time.perf_counter()
            status, raw = _http(base, path, body)
            seconds.append(time.perf_counter() - t)
            if status != 200:
                raise RuntimeError(f"scaleml serve answered {status} to {path}: {raw[:300]!r}")
        table.append({"request": label, "requests": n_requests, "p50 ms": 1e3 * float(np.percentile(seconds, 50)),
                      "p99 ms": 1e3 * float(np.percentile(seconds, 99))})
        last[label] = json.loads(raw)
    return table, last


def _serve(registry: Path, rows: np.ndarray, n_requests: int) -> tuple[list[dict], dict]:
    """Start `scaleml serve`, send V2 / V1 requests, read /metrics, stop; (latency rows, what was checked)."""
    from prometheus_client.parser import text_string_to_metric_families

    name = registry.name

    def v2(X: np.ndarray) -> dict:
        return {"inputs": [{"name": "x", "shape": list(X.shape), "datatype": "FP64", "data": X.ravel().tolist()}]}

    with running_server(registry) as base:
        table, last = timed_requests(base, [
            ("V2 infer, 1 row", f"/v2/models/{name}/infer", v2(rows[:1])),
            ("V2 infer, 100 rows", f"/v2/models/{name}/infer", v2(rows[:100])),
            ("V1 predict, 1 row", f"/v1/models/{name}:predict", {"instances": rows[:1].tolist()})], n_requests)
        metrics = {f.name: f for f in text_string_to_metric_families(_http(base, "/metrics")[1].decode())}
        answered = sum(s.value for s in metrics["scaleml_requests"].samples if s.name.endswith("_total"))
    return table, {"last_reply": last["V1 predict, 1 row"], "requests_counted": answered, "url": base}


def run(config: dict, client, report) -> dict:
    """Fit, save, compress, score and serve one model; report each part."""
    state = Path(config["state_dir"])
    registry = check_registry(state / "models" / "clicks")  # refused before fitting for nothing
    ds = sm.open_dataset(config["dataset"], client=client)
    n = ds.sizes["sample"]
    n_val = min(int(config.get("validation_rows", 20_000)), n // 5)
    X, y = ds["X"].data, ds["y"].data
    t0 = time.perf_counter()
    model = sm.SGDClassifier(**config.get("model", {})).fit(X[: n - n_val], y[: n - n_val])
    fit_s = time.perf_counter() - t0
    X_val, y_val = X[n - n_val:].compute(), y[n - n_val:].compute()
    version = sm.save_model(model, registry, data=config["dataset"],
                            metrics={"accuracy": float(model.score(X_val, y_val))})

    rows = tradeoff(model, X_val, y_val)
    png = plot_tradeoff(rows, report.figure_path("deploy_tradeoff"))
    report.add_section(
        "Deployment: compression", table=rows, figures=[png],
        text=(f"{type(model).__name__} fitted in {fit_s:.1f} s on {n - n_val:,} rows of {config['dataset']!r}; "
              f"saved as version {version.name} of {registry} (JSON + .npz, checksummed, no pickle). Each "
              f"variant is measured on the {n_val:,} held-out rows: size on disk (with its JSON metadata, a few "
              "kB: for a model this small it outweighs the weights, so int8 or float16 files can be larger than the "
              "original even though their weights shrink — see weight_bytes), the largest and mean change of "
              "the predicted probabilities, the change of accuracy, and the scoring time per 1,000 rows."))

    t0 = time.perf_counter()
    out = sm.score(registry, config["dataset"], state / "scores.zarr", client=client, overwrite=True)  # its own
    score_s = time.perf_counter() - t0
    scores = sm.open_dataset(out)
    agree = float((scores["y"].values[-n_val:] == model.predict(X_val)).mean())

    scored = (f"Batch scoring wrote {scores.sizes['sample']:,} predictions and probabilities to {out} in "
              f"{score_s:.1f} s ({len(X.chunks[0])} chunks, one task each); on the held-out rows they agree with "
              f"the in-process model on {agree:.2%}.")
    missing = missing_serve_extra()
    if missing:  # a plain install: the rest of the demo runs; this says what serving needs
        note = (f"serving skipped: it needs the serve extra ({', '.join(missing)} missing): "
                "pip install 'scaleml-dask[serve]'")
        log.warning(note)
        report.add_section("Deployment: batch scoring and serving", text=f"{scored}\n\n{note}.")
        return {"version": str(version), "tradeoff": rows, "serving": None, "scores": str(out), "agree": agree,
                "requests_counted": None}
    served, checked = _serve(registry, X_val, int(config.get("requests", 300)))
    report.add_section(
        "Deployment: batch scoring and serving", table=served,
        text=(f"{scored}\n\n"
              f"`scaleml serve` answered on {checked['url']} (Open Inference Protocol V2 and V1, one client, "
              f"sequential requests: latency includes the client); /metrics counted "
              f"{int(checked['requests_counted'])} requests."))
    return {"version": str(version), "tradeoff": rows, "serving": served, "scores": str(out), "agree": agree,
            "requests_counted": checked["requests_counted"]}


if __name__ == "__main__":
    raise SystemExit(script_main("deploy", run))
