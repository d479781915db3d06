"""workflows/text.py on tiny generated documents: hashed text → SGD against the planted Bayes accuracy, TruncatedSVD
→ t-SNE map in the report."""

from __future__ import annotations

import json

import pytest
from tiny import TINY_CATALOG

from scaleml_dask.cli import load_workflow
from scaleml_dask.runner import workflow_main


@pytest.mark.slow
def test_text_workflow_reports_classifier_and_map(tmp_path, monkeypatch, client):
    (tmp_path / "cat.yaml").write_text(TINY_CATALOG)
    monkeypatch.setenv("SCALEML_CATALOG", str(tmp_path / "cat.yaml"))
    monkeypatch.setenv("SCALEML_DATA", str(tmp_path / "data"))
    cfg = tmp_path / "text.yaml"
    cfg.write_text(f"cluster: {{address: '{client.scheduler.address}'}}\ndataset: demo-text-small\n"
                   "n_features: 65536\nrounds: 1\nsvd_components: 10\nsvd_iter: 2\nmap_samples: 1000\nperplexity: 15\n")
    assert workflow_main("text", load_workflow("text").run, ["--config", str(cfg), "--out", str(tmp_path)]) == 0
    (run_dir,) = (tmp_path / "text").glob("2*")
    doc = json.loads((run_dir / "report.json").read_text())
    section = next(s for s in doc["sections"] if s["title"].startswith("Text"))
    sgd, svd, tsne = section["table"]
    assert sgd["documents"] == 4000 and tsne["documents"] == 1000
    assert sgd["held-out accuracy"] > sgd["Bayes accuracy"] - 0.1 and sgd["held-out accuracy"] > 0.5  # 4 topics
    assert 0 < svd["explained variance"] < 1
    assert (run_dir / "text_tsne.png").stat().st_size > 5000
    assert "text_tsne.png" in (run_dir / "report.html").read_text()
    rows = next(s for s in doc["sections"] if s["title"].startswith("Text: compression"))["table"]
    by = {r["method"]: r for r in rows}
    assert [r["method"][:5] for r in rows] == ["origi", "int8", "float", "prune", "prune", "prune"]
    assert by["int8"]["bytes"] < by["original"]["bytes"] and by["int8"]["weight_bytes"] == 4 * (65536 + 8)  # 4 topics
    assert rows[-1]["bytes"] < rows[-2]["bytes"] < rows[-3]["bytes"] < by["original"]["bytes"]  # stored sparse
    assert (run_dir / "text_tradeoff.png").stat().st_size > 5000
