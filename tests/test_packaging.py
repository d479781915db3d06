"""`pip install .` works anywhere: a wheel built from the checkout, installed into a fresh venv without the
source tree on the path and with only what a plain install brings (no extra), runs the catalog, the demo and
every workflow from an empty directory."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
from pathlib import Path

import pytest
from tiny import TINY_CATALOG

REPO = Path(__file__).resolve().parent.parent


def _run(cmd, **kw):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, f"{cmd}: {out.stderr[-3000:]}"
    return out


def core_dependencies(tmp: Path) -> Path:
    """A directory of links to exactly what ``pip install scaleml-dask`` installs (the closure of its
    dependencies without extras), taken from the test venv: the wheel sees those packages, and none of the extras
    the test venv has (httpx, uvicorn, pytest...)."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    def wanted(req: Requirement, extras: set[str]) -> bool:
        return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or {""})

    todo = [(Requirement(r), set()) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
            ["dependencies"]]
    seen: dict[str, set[str]] = {}
    while todo:
        req, _ = todo.pop()
        name = req.name.lower().replace("_", "-")
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        for sub in distribution(req.name).requires or []:
            sub_req = Requirement(sub)
            if wanted(sub_req, seen[name]):
                todo.append((sub_req, set()))
    farm = tmp / "core-site-packages"
    farm.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in seen:
        for f in distribution(name).files or []:
            top = f.parts[0]
            if top != ".." and not (farm / top).exists() and (site / top).exists() and not top.endswith(".pth"):
                (farm / top).symlink_to(site / top)
    return farm


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv holding only the wheel of this checkout and the packages a plain ``pip install`` brings (no extra),
    linked from the test venv through a .pth line (a plain path entry: the editable install's finder is not
    loaded)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "data", "__pycache__",
                                                             "*.egg-info", "build", ".pytest_cache"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src])
    (wheel,) = (tmp / "dist").glob("scaleml_dask-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", wheel])
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "_test_dependencies.pth").write_text(f"{core_dependencies(tmp)}\n")
    return venv


def _scheduler(python: Path, cwd: Path, env: dict) -> tuple[str, list[subprocess.Popen]]:
    """A `dask scheduler` and two workers run by the wheel's interpreter (so workers import the wheel too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": cwd, "env": env}
    procs = [subprocess.Popen([python, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--dashboard-address", "127.0.0.1:0"], **quiet)]
    procs += [subprocess.Popen([python, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1",
                                "--nthreads", "1", "--no-dashboard"], **quiet) for _ in range(2)]
    return address, procs


@pytest.mark.slow
def test_wheel_runs_catalog_demo_and_workflows_from_an_empty_directory(installed, tmp_path):
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCALEML_CATALOG", "SCALEML_DATA")}
    env.update(MPLBACKEND="Agg", PATH=f"{installed / 'bin'}:{env.get('PATH', '')}")
    python = installed / "bin" / "python"
    where = _run([python, "-c", "import scaleml_dask; print(scaleml_dask.__file__)"], cwd=work, env=env).stdout
    assert where.startswith(str(installed)), where  # the wheel's copy, not the checkout
    scaleml = installed / "bin" / "scaleml"
    listed = _run([scaleml, "catalog", "list"], cwd=work, env=env).stdout
    assert all(f"demo-{n}" in listed for n in ("regression", "logistic", "mixture", "drift")), listed

    (work / "data_catalog.yaml").write_text(TINY_CATALOG)  # adds to / overrides the built-in entries
    env["SCALEML_DATA"] = str(tmp_path / "store")
    shown = json.loads(_run([scaleml, "catalog", "show", "demo-regression-small"], cwd=work, env=env).stdout)
    assert shown["n_samples"] == 4000 and (work / "r.zarr").is_dir()
    for extra in ("httpx", "uvicorn", "pytest", "pynndescent"):  # what a plain install does not bring
        assert subprocess.run([python, "-c", f"import {extra}"], cwd=work, env=env, capture_output=True).returncode
    address, procs = _scheduler(python, work, env)  # workers run by the wheel's interpreter import the wheel
    try:
        time.sleep(1.0)
        demo = _run([scaleml, "demo", "--quick", "--out", "runs", "--scheduler", address], cwd=work, env=env)
        (run_dir,) = (work / "runs" / "pipeline").glob("2*")
        report = json.loads((run_dir / "report.json").read_text())
        titles = [s["title"] for s in report["sections"]]
        # every workflow ran as a step of the pipeline, each from the wheel's own scripts and YAML
        for step in ("Linear regression", "PCA", "k-means", "Distributed SGD", "Online", "t-SNE", "Tables: CSV",
                     "Model selection", "Dimensionality reduction", "Deployment", "One-time costs"):
            assert any(t.startswith(step) for t in titles), (step, titles)
        assert not [t for t in titles if "not available" in t], titles
        # the one step that needs an extra says so in one line, and the rest of the demo completed
        assert "serving skipped: it needs the serve extra" in demo.stderr + demo.stdout
        assert "pip install 'scaleml-dask[serve]'" in json.dumps(report)
        assert not (tmp_path / "store").exists()  # --quick used only the small datasets (tiny here), not the full ones
        assert f"report: {run_dir / 'report.html'}" in demo.stdout
        _run([scaleml, "run", "regression", "--quick", "--out", "runs", "--scheduler", address], cwd=work, env=env)
        (step_dir,) = (work / "runs" / "regression").glob("2*")  # a workflow on its own, too
        assert (step_dir / "report.html").stat().st_size > 1000
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
    bad = subprocess.run([scaleml, "run", "nope"], capture_output=True, text=True, cwd=work, env=env, timeout=60)
    assert bad.returncode != 0
    assert ("known workflows: deploy, dr, kmeans, online, pca, pipeline, regression, selection, sgd, tables, text, tsne"
            in bad.stderr)


_PROBE = "import json; from scaleml_dask.coldstart import first_calls; print(json.dumps(first_calls(['optimizers'])))"


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
                    reason="runs the wheel as the unprivileged user nobody, which needs root and a system python")
def test_numba_cache_works_where_site_packages_is_read_only(installed):
    """The wheel in a venv whose site-packages nobody may write, run as nobody without NUMBA_CACHE_DIR: numba
    falls back to its user-wide cache under $HOME, so a second process loads what the first compiled; with no
    writable home either, the package puts the cache under the temporary directory (numba alone would fail to
    import the kernels: "no locator available")."""
    (wheel,) = (installed.parent / "dist").glob("scaleml_dask-*.whl")
    base = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                          text=True).stdout.strip()
    if base != str(sys.version_info[:2]):
        pytest.skip(f"/usr/bin/python3 is {base}, the test venv {sys.version_info[:2]}")
    deps = Path(sysconfig.get_paths()["purelib"])
    closed = next((d for d in (deps, *deps.parents) if not d.stat().st_mode & 0o001), None)
    if closed is not None:  # e.g. a checkout under a `mktemp -d` directory (mode 700)
        pytest.skip(f"nobody cannot reach the test venv's packages: {closed} is not searchable by others")
    with tempfile.TemporaryDirectory(prefix="scaleml-ro-") as tmp:  # pytest's own temporary root is private
        tmp = Path(tmp)
        tmp.chmod(0o755)
        venv = tmp / "venv"
        _run(["/usr/bin/python3", "-m", "venv", "--without-pip", venv])  # nobody cannot reach a python under /root
        python = venv / "bin" / "python"
        site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel])
        (site / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        _run(["chmod", "-R", "a-w", site])
        home = tmp / "home"
        home.mkdir()
        shutil.chown(home, "nobody")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTHON"))}
        env["HOME"] = str(home)
        try:
            runs = [json.loads(_run([python, "-c", _PROBE], env=env, cwd=home, user="nobody").stdout)[1]
                    for _ in range(2)]
            assert runs[0]["kernels"].startswith("compiled"), runs
            assert runs[1]["kernels"].startswith("loaded from cache"), runs
            assert list(home.rglob("*.nbi")) and not list(site.rglob("*.nbi"))  # user-wide, not site-packages

            scratch = tmp / "tmp"
            scratch.mkdir()
            shutil.chown(scratch, "nobody")
            env.update(HOME="/nonexistent", TMPDIR=str(scratch))
            runs = [json.loads(_run([python, "-c", _PROBE], env=env, cwd=scratch, user="nobody").stdout)[1]
                    for _ in range(2)]
            assert runs[0]["kernels"].startswith("compiled"), runs
            assert runs[1]["kernels"].startswith("loaded from cache"), runs
            (cache,) = scratch.glob("scaleml-numba-cache-*")
            assert list(cache.rglob("*.nbi")) and not list(site.rglob("*.nbi"))
        finally:
            _run(["chmod", "-R", "u+w", site])
