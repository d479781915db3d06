"""Run reports and the workflow entry point: complete runs are renamed into place, failed ones leave nothing."""

from __future__ import annotations

import json

import pytest

from scaleml_dask.report import Report
from scaleml_dask.runner import workflow_main


def test_report_html_and_json(tmp_path):
    rep = Report(tmp_path / "r", title="t<1>")
    png = rep.figure_path("fig")
    png.write_bytes(b"\x89PNG")
    rep.add_section("A & B", text="first\n\nsecond", table=[{"x": 1, "v": 1.5e-9}, {"x": 2, "v": float("nan")}],
                    figures=[png], data={"k": [1, 2]})
    html = rep.write().read_text()
    assert "<h1>t&lt;1&gt;</h1>" in html and "<h2>A &amp; B</h2>" in html and "<p>second</p>" in html
    assert "<td>1.500e-09</td>" in html and "<img src='fig.png'" in html
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["sections"][0]["table"][1]["v"] is None and doc["sections"][0]["data"] == {"k": [1, 2]}


def _ok(config, client, report):
    report.add_section("ok", text=str(client.submit(lambda: 41 + 1).result()))
    return {"answer": 42}


def _fails(config, client, report):
    report.add_section("partial")
    raise RuntimeError("boom")


def test_workflow_main_atomic(tmp_path, client):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cluster: {{address: '{client.scheduler.address}'}}\n")
    assert workflow_main("demo-ok", _ok, ["--config", str(cfg), "--out", str(tmp_path)]) == 0
    (run_dir,) = (tmp_path / "demo-ok").iterdir()
    doc = json.loads((run_dir / "report.json").read_text())
    assert doc["sections"][0]["text"] == "42" and doc["sections"][-1]["data"] == {"answer": 42}
    with pytest.raises(RuntimeError, match="boom"):
        workflow_main("demo-bad", _fails, ["--config", str(cfg), "--out", str(tmp_path)])
    assert list((tmp_path / "demo-bad").iterdir()) == []
