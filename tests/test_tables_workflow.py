"""workflows/tables.py on a tiny table: CSV -> ingest -> pipeline -> evaluate on raw rows -> save -> serve raw
rows, and its report."""

from __future__ import annotations

import json

from tiny import TINY_CATALOG

from scaleml_dask.cli import load_workflow
from scaleml_dask.runner import workflow_main


def test_tables_workflow_reports_each_stage(tmp_path, monkeypatch, client):
    (tmp_path / "cat.yaml").write_text(TINY_CATALOG)
    monkeypatch.setenv("SCALEML_CATALOG", str(tmp_path / "cat.yaml"))
    monkeypatch.setenv("SCALEML_DATA", str(tmp_path / "data"))
    cfg = tmp_path / "tables.yaml"
    cfg.write_text(f"cluster: {{address: '{client.scheduler.address}'}}\ndataset: demo-table-small\n"
                   "held_out_chunks: 1\nchunk_rows: 1000\nmin_frequency: 5\nmax_categories: 10\n"
                   "sgd: {mode: local, rounds: 3, batch_size: 100, eta0: 0.05}\nserved_rows: 50\nrequests: 3\n")
    assert workflow_main("tables", load_workflow("tables").run, ["--config", str(cfg), "--out", str(tmp_path)]) == 0
    (run_dir,) = (tmp_path / "tables").glob("2*")
    doc = json.loads((run_dir / "report.json").read_text())
    titles = [s["title"] for s in doc["sections"]]
    assert titles[:3] == ["Tables: CSV -> ingest -> pipeline -> evaluate -> save", "Tables: held-out raw rows",
                          "Tables: the ingested columns"]
    assert doc["sections"][0]["text"].endswith("then served raw rows.")  # worded from what happened
    measures = {r["measure"]: r["value"] for r in doc["sections"][1]["table"]}
    assert measures["held-out rows"] == 2000  # the last chunk of the tiny demo-table-small
    assert measures["accuracy"] > measures["planted model's accuracy"] - 0.08  # the planted model is the best
    columns = {r["column"]: r for r in doc["sections"][2]["table"]}
    assert columns["cat1"]["kind"] == "categorical" and columns["cat1"]["levels"] <= 30
    assert columns["x00"]["missing"] > 0 and columns["ts"]["kind"] == "datetime"
    assert (run_dir / "tables_effects.png").stat().st_size > 5000
    served = next(s for s in doc["sections"] if s["title"] == "Tables: serving raw rows")
    assert "gave the in-memory pipeline's predictions exactly" in served["text"]  # checked by the step itself
    assert [r["request"].split(",")[0] for r in served["table"]] == [
        "V2", "pandas codec (MLServer's form)", "V1 records", "V2"]
    assert not (tmp_path / "data").exists()  # the raw CSVs and the store are the run's own
