"""The `scaleml` command, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def scaleml(*args, cwd=None, env=None, check=True):
    exe = Path(sys.executable).with_name("scaleml")
    out = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd,
                         env={**os.environ, "MPLBACKEND": "Agg", **(env or {})}, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_help_is_useful():
    out = scaleml("--help").stdout
    for word in ("catalog", "ingest", "demo", "run", "examples:"):
        assert word in out
    assert "--target" in scaleml("ingest", "--help").stdout


@pytest.mark.slow
def test_catalog_and_ingest(tmp_path):
    cat = tmp_path / "cat.yaml"
    cat.write_text("datasets:\n  tiny:\n    path: tiny.zarr\n    description: a tiny one\n"
                   "    generator: {name: logistic, n_samples: 500, n_features: 2, seed: 0}\n")
    env = {"SCALEML_CATALOG": str(cat)}
    listed = scaleml("catalog", "list", env=env).stdout
    assert "tiny" in listed and "generated on first use" in listed and "a tiny one" in listed
    info = json.loads(scaleml("catalog", "show", "tiny", env=env).stdout)
    assert info["n_samples"] == 500 and info["n_features"] == 2 and info["has_y"]

    (tmp_path / "d.csv").write_text("a,b,t\n1,2,3\n4,5,6\n")
    out = scaleml("ingest", str(tmp_path / "d.csv"), str(tmp_path / "d.zarr"), "--target", "t", "-q")
    assert "wrote" in out.stdout
    import scaleml_dask as sm

    np.testing.assert_array_equal(sm.open_dataset(tmp_path / "d.zarr")["y"].values, [3.0, 6.0])
    (tmp_path / "bad.csv").write_text("a,b,t\n1,2,3\n4,x,6\n")
    bad = scaleml("ingest", str(tmp_path / "bad.csv"), str(tmp_path / "bad.zarr"), "--target", "t", check=False)
    assert bad.returncode == 2 and "line 3, column 'b': 'x' is not a number" in bad.stderr
    assert not (tmp_path / "bad.zarr").exists()


@pytest.mark.slow
def test_demo_writes_report(tmp_path):
    cat = tmp_path / "cat.yaml"
    cat.write_text("datasets:\n"
                   "  r:\n    path: r.zarr\n    generator: {name: regression, n_samples: 3000, n_features: 3,"
                   " chunk_rows: 1000, seed: 0}\n"
                   "  m:\n    path: m.zarr\n    generator: {name: mixture, n_samples: 900, n_features: 2,"
                   " n_clusters: 3, seed: 0}\n")
    config = tmp_path / "demo.yaml"
    config.write_text("cluster: {kind: local, n_workers: 1, dashboard_address: '127.0.0.1:0'}\n"
                      "datasets: [nope]\nsteps: []\nquick: {datasets: [r, m]}\n"  # --quick: r and m
                      "kernels: {client: [ADWIN], workers: [SGD blocks]}\n")
    out = scaleml("demo", "--quick", "--config", str(config), "--out", str(tmp_path / "runs"),
                  env={"SCALEML_CATALOG": str(cat)})
    assert "dask dashboard: http://127.0.0.1:" in out.stdout
    (run_dir,) = (tmp_path / "runs" / "pipeline").iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    table = report["sections"][0]["table"]
    assert [row["dataset"] for row in table] == ["r", "m"] and table[0]["rows"] == 3000
    html = (run_dir / "report.html").read_text()
    assert "datasets_y.png" in html and (run_dir / "datasets_y.png").stat().st_size > 1000
    assert f"report: {run_dir / 'report.html'}" in out.stdout
    # a quiet terminal: dask.distributed's records go to the run's log file only, unless --verbose; no progress
    # bar is drawn into output that is not a terminal (nor into run.log)
    log = (run_dir / "run.log").read_text()
    assert "distributed." not in out.stdout + out.stderr and "distributed.scheduler" in log
    assert not re.search(r"\r|\x1b\[|\d+/\d+ \[|task/s|% Completed", out.stdout + out.stderr + log)
    # one-time costs apart from the steady figures, measured: the cluster start, each kernel family, a first fit
    costs = {row["what"]: row for row in report["sections"][-2]["table"]}
    assert report["sections"][-2]["title"] == "One-time costs" and costs["cluster start (or join) and connection"]
    assert costs["generate r"]["seconds"] > 0 and "generate m" in costs
    first = costs["first call: ADWIN"]
    assert first["where"] == "client" and first["seconds"] > 0 and "steady call" in first["note"]
    assert any(row["where"].startswith("worker tcp://127.0.0.1:") for row in costs.values())
    assert "first fit" in costs["first LinearRegression fit: overhead"]["note"]
    loud = scaleml("demo", "--quick", "--config", str(config), "--out", str(tmp_path / "runs2"), "--verbose",
                   env={"SCALEML_CATALOG": str(cat)})
    assert "distributed.scheduler" in loud.stderr


# --- a user's mistake: exit status 2, one line on stderr naming the problem, no traceback unless --debug ------

def assert_refused(*args, match, env=None, cwd=None):
    out = scaleml(*args, env=env, cwd=cwd, check=False)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


def test_unknown_dataset():
    assert_refused("catalog", "show", "nope",
                   match=r"^scaleml catalog: unknown dataset 'nope'.*Known datasets: .*demo-")


def test_unknown_workflow():
    assert_refused("run", "nope", match=r"^scaleml run: no workflow 'nope'; known workflows: .*regression")


def test_bad_yaml_in_workflow_config_names_file_line_column(tmp_path):
    (tmp_path / "w.yaml").write_text("dataset: demo-regression\nsolvers: [auto,\n")
    assert_refused("run", "regression", "--config", str(tmp_path / "w.yaml"), "--out", str(tmp_path / "runs"),
            match=r"config file .*w\.yaml: not valid YAML \(line 3, column 1\)")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.html"))


def test_a_workflow_script_run_directly_reports_mistakes_like_the_command(tmp_path):
    (tmp_path / "w.yaml").write_text("dataset: demo-regression\nsolvers: [auto,\n")
    script = Path(__file__).resolve().parent.parent / "workflows" / "regression.py"
    out = subprocess.run([sys.executable, str(script), "--config", str(tmp_path / "w.yaml"), "--out",
                          str(tmp_path / "runs")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert re.match(r"workflows/regression\.py: config file .*w\.yaml: not valid YAML \(line 3, column 1\)", lines[0])


def test_bad_catalog_names_file_line_column(tmp_path):
    (tmp_path / "cat.yaml").write_text("datasets:\n  a: {path: a.zarr\n")
    assert_refused("catalog", "list", env={"SCALEML_CATALOG": str(tmp_path / "cat.yaml")},
            match=r"cat\.yaml: not valid YAML \(line 3, column 1\)")
    (tmp_path / "cat.yaml").write_text("datasets:\n  a: {description: no path}\n")
    assert_refused("catalog", "list", env={"SCALEML_CATALOG": str(tmp_path / "cat.yaml")},
            match=r"cat\.yaml: dataset 'a' needs a 'path'")


def test_missing_file(tmp_path):
    assert_refused("ingest", str(tmp_path / "nothere.csv"), str(tmp_path / "o.zarr"),
                   match=r"nothere\.csv: no such file")
    assert_refused("run", "regression", "--config", str(tmp_path / "nothere.yaml"),
            match=r"config file .*nothere\.yaml does not exist")


def test_unreachable_scheduler_fails_within_the_timeout(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert_refused("run", "regression", "--scheduler", f"tcp://127.0.0.1:{port}", "--scheduler-timeout", "1",
            "--out", str(tmp_path / "runs"),
            match=rf"^scaleml run: cannot reach the dask scheduler at tcp://127.0.0.1:{port} within 1 s")
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]  # no run directory left


def test_permission_denied_on_the_output(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,2\n")
    if os.geteuid() == 0:  # root ignores mode bits; sysfs refuses new entries to everyone
        dest = Path("/sys/denied.zarr")
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        dest = tmp_path / "ro" / "denied.zarr"
    assert_refused("ingest", str(tmp_path / "d.csv"), str(dest), "-q",
                   match=rf"^scaleml ingest: permission denied: {dest}$")


def test_a_command_needing_an_extra_a_plain_install_lacks_says_which(tmp_path):
    # as after `pip install scaleml-dask` without [serve]: importing orjson fails as a missing module does
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "orjson.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'orjson'\", name='orjson')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])}
    assert_refused("serve", str(tmp_path), env=env,
                   match=r"^scaleml serve: this needs 'orjson', an optional dependency not installed: "
                         r"pip install 'scaleml-dask\[serve\]'$")


def test_debug_shows_the_traceback():
    out = scaleml("catalog", "show", "nope", "--debug", check=False)
    assert out.returncode == 1 and "Traceback" in out.stderr and "CatalogError" in out.stderr
