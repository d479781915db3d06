"""workflows/kmeans.py on the tiny demo mixture: the report's table and figure, ARI against the planted labels."""

from __future__ import annotations

import json

from tiny import TINY_CATALOG

from scaleml_dask.cli import load_workflow
from scaleml_dask.runner import workflow_main


def test_kmeans_workflow_reports_both_clusterers(tmp_path, monkeypatch, client):
    (tmp_path / "cat.yaml").write_text(TINY_CATALOG)
    monkeypatch.setenv("SCALEML_CATALOG", str(tmp_path / "cat.yaml"))
    monkeypatch.setenv("SCALEML_DATA", str(tmp_path / "data"))
    cfg = tmp_path / "kmeans.yaml"
    cfg.write_text(f"cluster: {{address: '{client.scheduler.address}'}}\ndataset: demo-mixture-small\nn_clusters: 3\n"
                   "max_iter: 50\nseed: 0\nminibatch_size: 500\nscatter_sample: 300\n")
    assert workflow_main("kmeans", load_workflow("kmeans").run, ["--config", str(cfg), "--out", str(tmp_path)]) == 0
    (run_dir,) = (tmp_path / "kmeans").glob("2*")
    doc = json.loads((run_dir / "report.json").read_text())
    section = next(s for s in doc["sections"] if s["title"] == "k-means")
    km, mbk = section["table"]
    assert km["k"] == mbk["k"] == 3 and km["iterations"] >= 1 and mbk["iterations"] == 3  # 1,500 rows / 500
    assert km["ARI"] >= 0.99 and mbk["ARI"] >= 0.99  # the tiny mixture's 3 clusters are well separated
    assert min(km["inertia / best"], mbk["inertia / best"]) == 1.0 and max(km["inertia / best"],
                                                                           mbk["inertia / best"]) < 1.01
    assert (run_dir / "kmeans.png").stat().st_size > 5000 and "kmeans.png" in (run_dir / "report.html").read_text()
