"""Cold starts of the numba kernels: the first call of each kernel family in a fresh process with an empty
cache, in a fresh process with a warm cache, and the steady state -- side by side, in one run.

Each family (``scaleml_dask.coldstart.FAMILIES``) runs alone in fresh interpreters whose ``NUMBA_CACHE_DIR``
is a new empty directory: the first process compiles and fills it, the second loads from it. Module imports
are not counted (``coldstart.first_calls``). Then the read-only check: the package installed from a wheel
into a virtual environment whose site-packages are not writable, run as an unprivileged user (``nobody``)
without ``NUMBA_CACHE_DIR``, twice: the second process must load the kernels from numba's user-wide cache
(``$HOME/.cache/numba``), since ``__pycache__`` beside the modules cannot be written.

    python benchmarks/bench_coldstart.py [--quick] [--skip-readonly]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from scaleml_dask.coldstart import FAMILIES

REPO = Path(__file__).resolve().parent.parent
_PROBE = ("import json, sys; from scaleml_dask.coldstart import first_calls; "
          "print(json.dumps(first_calls(sys.argv[1:])))")


def _probe(python: str, families: list[str], env: dict, **kw) -> list[dict]:
    out = subprocess.run([python, "-c", _PROBE, *families], capture_output=True, text=True, env=env,
                         timeout=900, **kw)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold_and_warm(families: list[str]) -> list[dict]:
    rows = []
    for name in families:
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            start, cold = _probe(sys.executable, [name], env)
            warm_start, warm = _probe(sys.executable, [name], env)
        rows.append({"family": name, "numba start (ms)": warm_start["first call (ms)"],
                     "first call, empty cache (s)": cold["first call (ms)"] / 1e3,
                     "first call, warm cache (ms)": warm["first call (ms)"],
                     "steady (ms)": warm["steady (ms)"],
                     "empty / steady": cold["first call (ms)"] / warm["steady (ms)"],
                     "warm / steady": warm["first call (ms)"] / warm["steady (ms)"],
                     "cold kernels": cold["kernels"], "warm kernels": warm["kernels"]})
    return rows


def read_only_install(family: str) -> list[dict]:
    """The wheel in a venv whose site-packages are read-only, run as ``nobody`` with a writable HOME."""
    tmp = Path(tempfile.mkdtemp(prefix="coldstart-ro-"))
    try:
        src = tmp / "src"  # a copy: building in the checkout would leave build/ there
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "data", "__pycache__",
                                                                 "*.egg-info", "build"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        tmp / "dist", src], check=True)
        (wheel,) = (tmp / "dist").glob("scaleml_dask-*.whl")
        venv = tmp / "venv"
        # a system interpreter as the venv's base: nobody may not reach one under /root (pyenv)
        base = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        subprocess.run([base, "-m", "venv", "--without-pip", venv], check=True)
        python = str(venv / "bin" / "python")
        site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel],
                       check=True)
        (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        subprocess.run(["chmod", "-R", "a-w", site], check=True)
        home = tmp / "home"
        home.mkdir()
        shutil.chown(home, "nobody")
        tmp.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTHON"))}
        env["HOME"] = str(home)
        runs = [_probe(python, [family], env, user="nobody", cwd=home)[1] for _ in range(2)]
        written = len(list(home.rglob("*.nbi")))
        rows = [{"run as nobody": f"HOME writable, process {i + 1}", "first call (ms)": r["first call (ms)"],
                 "kernels": r["kernels"], "cache index files": f"{written} under HOME, "
                 f"{len(list((site / 'scaleml_dask').rglob('*.nbi')))} in site-packages"} for i, r in enumerate(runs)]
        for label, extra in (("no writable HOME", {}), ("no writable HOME, NUMBA_CACHE_DIR", {
                "NUMBA_CACHE_DIR": str(home / "numba-cache")})):
            try:
                r = _probe(python, [family], {**env, "HOME": "/nonexistent", **extra}, user="nobody", cwd=home)[1]
                rows.append({"run as nobody": label, "first call (ms)": r["first call (ms)"], "kernels": r["kernels"],
                             "cache index files": ""})
            except RuntimeError as exc:
                rows.append({"run as nobody": label, "first call (ms)": float("nan"),
                             "kernels": str(exc).strip().splitlines()[-1][:90], "cache index files": ""})
        return rows
    finally:
        subprocess.run(["chmod", "-R", "u+w", tmp], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:,.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys)
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two small families only")
    ap.add_argument("--skip-readonly", action="store_true", help="no read-only install check")
    args = ap.parse_args(argv)
    families = ["optimizers", "Page-Hinkley"] if args.quick else list(FAMILIES)
    print(_table(cold_and_warm(families)))
    if not args.skip_readonly:
        if os.geteuid() != 0:
            print("\nread-only check skipped: it needs root to run as nobody")
            return
        print("\nread-only site-packages, run as nobody, no NUMBA_CACHE_DIR (numba's user-wide cache):")
        print(_table(read_only_install("Page-Hinkley")))


if __name__ == "__main__":
    main()
