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
    assert "<td>—</td>" in html and "nan" not in html  # a missing value reads as a dash in the page
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


def test_runs_started_in_the_same_second_get_distinct_directories(tmp_path):
    from scaleml_dask.runner import publish_run

    final = tmp_path / "w" / "20260101-120000"
    names = []
    for i in range(3):
        tmp = final.with_name(f".20260101-120000.tmp-1-{i:08x}")
        tmp.mkdir(parents=True)
        (tmp / "report.html").write_text(str(i))
        names.append(publish_run(tmp, final).name)
    assert names == ["20260101-120000", "20260101-120000-2", "20260101-120000-3"]
    assert [(final.parent / n / "report.html").read_text() for n in names] == ["0", "1", "2"]


COUNTED_STEP = '''
def run(config, client, report):
    """Counts its real runs in a file and adds a section with a figure."""
    with open(config["log"], "a") as f:
        f.write("ran\\n")
    png = report.figure_path("counted")
    png.write_bytes(b"\\x89PNG counted")
    report.add_section("counted", text=str(client.submit(sum, [1, 2]).result()), figures=[png])
    return {"three": 3}
'''

KILLER_STEP = '''
import os
import signal
from pathlib import Path


def run(config, client, report):
    """SIGKILLs its own process the first time it runs: a crash at a point the test chooses."""
    flag = Path(config["flag"])
    if not flag.exists():
        flag.write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    report.add_section("after the crash", text="completed")
    return {"completed": True}
'''


@pytest.mark.slow
def test_sigkilled_pipeline_leaves_no_visible_run_and_the_rerun_resumes(tmp_path, client):
    """The real pipeline script with steps [counted, killer]: SIGKILLed in its last step, then rerun."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import scaleml_dask.workflows

    from scaleml_dask.io.synthetic import make_regression

    wf = tmp_path / "workflows"  # `scaleml run` looks in ./workflows first
    wf.mkdir()
    package = Path(scaleml_dask.workflows.__file__).parent
    shutil.copy(package / "pipeline.py", wf / "pipeline.py")
    (wf / "counted.py").write_text(COUNTED_STEP)
    (wf / "killer.py").write_text(KILLER_STEP)
    data = make_regression(tmp_path / "r.zarr", 1_000, 2, chunk_rows=500, seed=0)
    (wf / "counted.yaml").write_text(f"log: {tmp_path / 'counted.log'}\n")
    (wf / "killer.yaml").write_text(f"flag: {tmp_path / 'killed.flag'}\n")
    (wf / "pipeline.yaml").write_text(f"datasets: ['{data}']\nsteps: [counted, killer]\n")
    runs = tmp_path / "runs" / "pipeline"
    cmd = [str(Path(sys.executable).with_name("scaleml")), "run", "pipeline", "--config", str(wf / "pipeline.yaml"),
           "--scheduler", client.scheduler.address, "--out", str(tmp_path / "runs"), "--quick"]

    def visible_runs():
        return sorted(p.name for p in runs.iterdir() if not p.name.startswith(".") and p.name != "state")

    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == -9, first.stderr  # SIGKILL, in the killer step
    assert visible_runs() == []
    (stale,) = [p for p in runs.iterdir() if p.name.startswith(".")]  # the killed run's hidden directory
    assert (runs / "state" / "steps" / "counted.json").is_file()

    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    (run_dir,) = visible_runs()
    assert not stale.exists() and [p.name for p in runs.iterdir() if p.name.startswith(".")] == []
    assert (tmp_path / "counted.log").read_text() == "ran\n"  # finished steps replayed, not run again
    doc = json.loads((runs / run_dir / "report.json").read_text())
    titles = [s["title"] for s in doc["sections"]]
    assert titles == ["Datasets", "counted", "after the crash", "One-time costs", "Run"], titles
    assert (runs / run_dir / "counted.png").read_bytes() == b"\x89PNG counted"  # the replayed step's figure
    steps = doc["sections"][-1]["data"]["steps"]
    assert steps["counted"]["three"] == 3 and steps["killer"]["completed"] is True
    assert not (runs / "state" / "steps").exists()  # markers cleared once the run completed
