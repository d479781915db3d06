"""Careless destinations: what this project writes replaces only what it wrote itself, and only when asked
(``--overwrite``); anything else at the destination is refused by name and left untouched; symlinks are
followed or refused; nothing hidden is left behind, also by writers killed with SIGKILL (removed by the next
writer beside them once their process is gone)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import scaleml_dask as sm
from scaleml_dask.io.destination import MARKER, DestinationError, clean_stale, read_marker
from scaleml_dask.io.ingest import ingest
from scaleml_dask.io.synthetic import make_regression

SCALEML = shutil.which("scaleml", path=str(Path(sys.executable).parent))


def _cli(*args, cwd):
    return subprocess.run([SCALEML, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def _csv(path: Path, rows: int = 50, seed: int = 0) -> Path:
    X = np.random.default_rng(seed).normal(size=(rows, 3))
    path.write_text("a,b,y\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in X) + "\n")
    return path


def _project(path: Path) -> dict[str, bytes]:
    """A user's folder with their files in it; returns its contents to compare with later."""
    (path / "notes").mkdir(parents=True)
    (path / "analysis.py").write_text("print('mine')\n")
    (path / "notes" / "todo.md").write_text("- everything\n")
    return _contents(path)


def _contents(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_ingest_and_score_refuse_a_folder_they_did_not_write_and_leave_it_untouched(tmp_path):
    project = tmp_path / "project"
    before = _project(project)
    src = _csv(tmp_path / "data.csv")
    r = _cli("ingest", src, project, "--target", "y", "--overwrite", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert f"{project} exists and was not written by scaleml_dask" in r.stderr and "refusing" in r.stderr
    assert _contents(project) == before and _hidden(tmp_path) == []
    # an earlier dataset: refused without --overwrite (naming it), replaced with it, nothing hidden left
    out = tmp_path / "out.zarr"
    assert _cli("ingest", src, out, "--target", "y", cwd=tmp_path).returncode == 0
    r = _cli("ingest", _csv(tmp_path / "other.csv", 80, seed=1), out, "--target", "y", cwd=tmp_path)
    assert r.returncode == 2 and f"{out} exists (a dataset written by scaleml_dask); pass" in r.stderr
    assert sm.open_dataset(out).sizes["sample"] == 50
    assert _cli("ingest", tmp_path / "other.csv", out, "--target", "y", "--overwrite", cwd=tmp_path).returncode == 0
    assert sm.open_dataset(out).sizes["sample"] == 80 and _hidden(tmp_path) == []
    # score --out onto the user's folder: refused the same way
    X = np.random.default_rng(0).normal(size=(40, 2))
    sm.save_model(sm.LinearRegression().fit(X, X @ [1.0, 2.0]), tmp_path / "models" / "reg")
    make_regression(tmp_path / "d.zarr", 40, 2, chunk_rows=20)
    r = _cli("score", "--model", tmp_path / "models" / "reg", "--dataset", tmp_path / "d.zarr", "--out", project,
             cwd=tmp_path)
    assert r.returncode == 2 and "was not written by scaleml_dask" in r.stderr
    assert _contents(project) == before and _hidden(tmp_path) == []


@pytest.mark.parametrize("writer", ["generator", "ingest", "score", "pca"])
def test_every_dataset_writer_refuses_what_it_did_not_write(tmp_path, writer):
    X = np.random.default_rng(0).normal(size=(60, 3))
    src = _csv(tmp_path / "data.csv")
    write = {
        "generator": lambda dest, **kw: make_regression(dest, 60, 3, chunk_rows=30, **kw),
        "ingest": lambda dest, **kw: ingest(src, dest, target="y", **kw),
        "score": lambda dest, **kw: sm.score(sm.LinearRegression().fit(X, X[:, 0]), X, dest, **kw),
        "pca": lambda dest, **kw: sm.PCA(n_components=2).fit(X).to_zarr(X, dest, **kw),
    }[writer]
    folder, afile = tmp_path / "folder", tmp_path / "file.zarr"
    before = _project(folder)
    afile.write_text("not a dataset")
    for dest in (folder, afile):
        with pytest.raises(DestinationError, match=f"{dest} exists and was not written by scaleml_dask"):
            write(dest, overwrite=True)
    assert _contents(folder) == before and afile.read_text() == "not a dataset"
    ours = write(tmp_path / "ours.zarr")
    with pytest.raises(DestinationError, match="pass overwrite=True"):
        write(ours)
    write(ours, overwrite=True)
    run_dir = tmp_path / "run"  # a directory this project wrote, but not a dataset
    run_dir.mkdir()
    (run_dir / MARKER).write_text(json.dumps({"by": "scaleml_dask", "kind": "run"}))
    with pytest.raises(DestinationError, match="is a run written by scaleml_dask, not a dataset"):
        write(run_dir, overwrite=True)
    assert _hidden(tmp_path) == []


def test_symlinked_destinations_are_written_through_or_refused(tmp_path):
    real = make_regression(tmp_path / "store" / "real.zarr", 40, 2, chunk_rows=20, seed=0)
    link = tmp_path / "link.zarr"
    link.symlink_to(real)
    make_regression(link, 60, 2, chunk_rows=20, seed=1, overwrite=True)
    assert link.is_symlink() and link.resolve() == real  # the link kept, what it points at replaced
    assert sm.open_dataset(link).sizes["sample"] == 60 == sm.open_dataset(real).sizes["sample"]
    assert _hidden(tmp_path) == [] and _hidden(tmp_path / "store") == []
    dangling = tmp_path / "dangling.zarr"
    dangling.symlink_to(tmp_path / "nowhere" / "x.zarr")
    with pytest.raises(DestinationError, match="is a symlink to .*, which does not exist"):
        make_regression(dangling, 40, 2, chunk_rows=20)
    assert not (tmp_path / "nowhere").exists()
    mine = tmp_path / "mine"
    _project(mine)
    (tmp_path / "to-mine.zarr").symlink_to(mine)
    with pytest.raises(DestinationError, match=r"to-mine\.zarr \(-> .*mine\) exists and was not written"):
        make_regression(tmp_path / "to-mine.zarr", 40, 2, chunk_rows=20, overwrite=True)


KILLED_WRITER = """
import os, signal, sys
import numpy as np
from scaleml_dask.io.store import DatasetWriter
with DatasetWriter(sys.argv[1], 2, chunk_rows=10) as w:
    w.append(np.ones((30, 2)))
    print(w.tmp_path, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()  # alive until the test says
"""


def test_temporaries_of_killed_writers_are_removed_by_the_next_write_and_live_ones_kept(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(KILLED_WRITER))
    killed = subprocess.run([sys.executable, str(script), str(tmp_path / "data" / "a.zarr"), "kill"],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    dead_tmp = Path(killed.stdout.strip())
    assert dead_tmp.is_dir() and read_marker(dead_tmp)["pid"] != os.getpid()  # what SIGKILL left
    live = subprocess.Popen([sys.executable, str(script), str(tmp_path / "data" / "b.zarr"), "wait"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        live_tmp = Path(live.stdout.readline().strip())
        other_host = tmp_path / "data" / ".c.zarr.tmp-0123456789ab"  # a writer on another host (shared disk)
        other_host.mkdir()
        (other_host / MARKER).write_text(json.dumps({"by": "scaleml_dask", "kind": "dataset", "pid": 1,
                                                     "host": "elsewhere", "started": 0.0}))
        make_regression(tmp_path / "data" / "d.zarr", 40, 2, chunk_rows=20)  # the next writer beside them
        assert not dead_tmp.exists() and live_tmp.is_dir() and other_host.is_dir()
        assert clean_stale(tmp_path / "data") == []  # nothing else to remove while the live one runs
    finally:
        live.communicate("\n", timeout=120)
    assert live.returncode == 0 and not live_tmp.exists()  # it finished and renamed its store into place
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [".c.zarr.tmp-0123456789ab", "b.zarr",
                                                                      "d.zarr"]


def test_save_model_refuses_a_folder_holding_anything_but_its_versions_and_leaves_it_untouched(tmp_path):
    from scaleml_dask.deploy.registry import RegistryError, list_versions

    X = np.random.default_rng(0).normal(size=(40, 2))
    model = sm.LinearRegression().fit(X, X @ [1.0, 2.0])
    project = tmp_path / "project"
    before = _project(project)
    with pytest.raises(RegistryError, match=rf"^{re.escape(str(project))}: holds analysis\.py, notes/, which are not "
                                            "model versions saved by scaleml_dask; refusing to save a model beside"):
        sm.save_model(model, project)
    assert _contents(project) == before and _hidden(project) == [] and _hidden(tmp_path) == []
    (tmp_path / "afile").write_text("mine\n")
    afile = re.escape(str(tmp_path / "afile"))
    with pytest.raises(RegistryError, match=rf"^{afile}: is a file, not a model registry directory"):
        sm.save_model(model, tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "mine\n"
    # an empty folder, then a registry of ours: a new version each time, never one replaced
    (tmp_path / "empty").mkdir()
    assert sm.save_model(model, tmp_path / "empty").name == "1" == sm.save_model(model, tmp_path / "reg").name
    assert sm.save_model(model, tmp_path / "reg").name == "2"
    (tmp_path / "reg" / "3").mkdir()  # a number that is not a version of ours
    (tmp_path / "reg" / "README").write_text("mine\n")
    with pytest.raises(RegistryError, match=r"reg: holds 3/, README, which are not model versions"):
        sm.save_model(model, tmp_path / "reg")
    assert list_versions(tmp_path / "reg") == [1, 2] and (tmp_path / "reg" / "README").read_text() == "mine\n"


def test_the_deploy_workflow_refuses_a_registry_folder_it_did_not_write_before_fitting(tmp_path):
    state = tmp_path / "state"
    project = state / "models" / "clicks"
    before = _project(project)
    (tmp_path / "w.yaml").write_text(f"dataset: nothere-dataset\nstate_dir: {state}\n"
                                     "cluster: {n_workers: 1, dashboard_address: '127.0.0.1:0'}\n")
    r = _cli("run", "deploy", "--config", tmp_path / "w.yaml", "--out", tmp_path / "runs", "-q", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{project}: holds analysis.py, notes/, which are not model versions" in lines[0]
    assert _contents(project) == before and _hidden(project) == []
