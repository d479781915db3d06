"""The `scaleml` command, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


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


def test_demo_writes_report(tmp_path):
    cat = tmp_path / "cat.yaml"
    cat.write_text("datasets:\n"
                   "  r:\n    path: r.zarr\n    generator: {name: regression, n_samples: 3000, n_features: 3,"
                   " chunk_rows: 1000, seed: 0}\n"
                   "  m:\n    path: m.zarr\n    generator: {name: mixture, n_samples: 900, n_features: 2,"
                   " n_clusters: 3, seed: 0}\n")
    config = tmp_path / "demo.yaml"
    config.write_text("cluster: {kind: local, n_workers: 1, dashboard_address: '127.0.0.1:0'}\n"
                      "datasets: [r, m]\nsteps: []\n")
    out = scaleml("demo", "--config", str(config), "--out", str(tmp_path / "runs"),
                  env={"SCALEML_CATALOG": str(cat)})
    assert "dask dashboard: http://127.0.0.1:" in out.stdout
    (run_dir,) = (tmp_path / "runs" / "pipeline").iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    table = report["sections"][0]["table"]
    assert [row["dataset"] for row in table] == ["r", "m"] and table[0]["rows"] == 3000
    html = (run_dir / "report.html").read_text()
    assert "datasets_y.png" in html and (run_dir / "datasets_y.png").stat().st_size > 1000
    assert f"report: {run_dir / 'report.html'}" in out.stdout
