"""The entry point of workflow scripts: parse, configure logging, connect, run into a report, rename when done.

Workflows (``workflows/<name>.py``) are scripts that define ``run(config, client, report) -> dict`` and end
with ``raise SystemExit(workflow_main("<name>", run))``; ``scaleml run <name>`` and ``scaleml demo`` call the
same function.

Crash safety: a run is written under a hidden name (``runs/<name>/.<time>.tmp-<id>``, marked with its process and
host: ``io.destination``) and renamed to ``runs/<name>/<time>`` (``<time>-2``, ... for runs started in the same
second) only when complete; hidden directories of runs whose process is gone (killed, even by SIGKILL) are
removed by the next run, and so are those of its steps and of the datasets and model versions it was writing. Steps run
through :func:`resumable_step` leave a completion marker in ``<state_dir>/steps``, so the rerun of an
interrupted run replays the finished steps instead of computing them again; the markers are cleared when the
run completes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import inspect
import itertools
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write, canonical_json, fingerprint
from .errors import run_guarded
from .io.destination import clean_stale, own_dir, publish, remove_own, temporary_dir
from .progress import cluster_progress
from .report import Report

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A workflow config that cannot be used; the message names the file (and line and column for YAML)."""


def load_config(path: str | os.PathLike, *, quick: bool = False) -> dict[str, Any]:
    """Read a workflow's YAML config (a mapping). Its ``quick:`` section (a mapping of top-level keys) replaces
    those keys when ``quick`` (``--quick``: the small demo datasets and sizes) and is dropped otherwise."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist")
    try:
        config = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"config file {p}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") \
            from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file {p}: expected a mapping at the top level")
    overrides = config.pop("quick", None) or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"config file {p}: 'quick:' must be a mapping of the keys it replaces")
    return {**config, **overrides} if quick else config


def client_from_config(config: dict[str, Any], scheduler: str | None = None, timeout: float | None = None) -> Any:
    """Connect as the config's ``cluster:`` section says (``--scheduler`` and ``--scheduler-timeout`` win)."""
    from .cluster import connect

    spec = dict(config.get("cluster") or {})
    if timeout is not None:
        spec["timeout"] = timeout
    address = scheduler or spec.pop("address", None)
    kind = spec.pop("kind", "local")
    return connect(address, kind=kind, **spec)


def new_run(out_root: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """(hidden temporary directory to write into, final directory ``<out_root>/<name>/<timestamp>``).

    Removes first the hidden directories that runs whose process is gone left behind.
    """
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    final = Path(out_root) / name / stamp
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final.parent)
    return temporary_dir(final, "run"), final


def publish_run(tmp: Path, final: Path) -> Path:
    """Rename the complete run ``tmp`` to ``final``, or ``final-2``, ``final-3``... if taken; returns the name.

    ``os.rename`` onto an existing non-empty directory fails, so two runs can never take the same name.
    """
    for i in itertools.count(1):
        candidate = final if i == 1 else final.with_name(f"{final.name}-{i}")
        try:
            os.rename(tmp, candidate)
            return candidate
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def resumable_step(name: str, config: dict, run: Callable[[], dict | None], report: Report,
                   state_dir: str | os.PathLike) -> dict:
    """``run()`` one step of a workflow, adding its sections to ``report`` and returning its summary.

    When an interrupted run already finished this step with the same ``config``, its summary, report sections
    and figures are replayed from the completion marker ``<state_dir>/steps/<name>.json`` instead. The marker
    is written atomically after the step's figures were saved beside it, so a kill at any moment leaves
    either no marker or a complete one.
    """
    steps = own_dir(Path(state_dir) / "steps", "steps")
    clean_stale(steps)
    marker, files = steps / f"{name}.json", steps / name
    key = fingerprint(config)
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("fingerprint") == key:
            for figure in {f for section in done["sections"] for f in section["figures"]}:
                shutil.copy2(files / figure, report.out_dir / figure)
            report.sections.extend(done["sections"])
            log.info("step %s: finished by an earlier run, replayed from %s", name, marker)
            return done["summary"]
    first = len(report.sections)
    t0 = time.perf_counter()
    summary = run() or {}
    log.info("step %s: done in %.1f s", name, time.perf_counter() - t0)
    sections = report.sections[first:]
    tmp = temporary_dir(files, "step")
    for figure in {f for section in sections for f in section["figures"]}:
        shutil.copy2(report.out_dir / figure, tmp / figure)
    publish(tmp, files)
    atomic_write(marker, canonical_json({"fingerprint": key, "summary": summary, "sections": sections}))
    return json.loads(canonical_json(summary))


def add_workflow_options(ap: argparse.ArgumentParser, default_config: str | None = None) -> None:
    """The options of every workflow, for ``workflows/<name>.py`` and ``scaleml demo`` / ``scaleml run``."""
    ap.add_argument("--config", default=default_config,
                    help="YAML config (default: %(default)s)" if default_config else
                    "YAML config (default: the workflow's own)")
    ap.add_argument("--scheduler", help="address of an existing dask scheduler, e.g. tcp://host:8786 (default: "
                                        "a new LocalCluster)")
    ap.add_argument("--scheduler-timeout", type=float, metavar="SECONDS",
                    help="give up connecting to --scheduler after this long (default: 15)")
    ap.add_argument("--out", default="runs", help="root directory of run outputs (default: %(default)s)")
    ap.add_argument("--verbose", action="store_true",
                    help="every log record on the terminal (default: in the run's run.log; one line per step)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars (drawn only on a terminal)")
    ap.add_argument("--quick", action="store_true",
                    help="the small demo datasets and sizes (the config's quick: section), for a first look")


def workflow_argv(args: argparse.Namespace) -> list[str]:
    """The options of :func:`add_workflow_options` in ``args``, back as a command line for :func:`workflow_main`."""
    argv = ["--out", args.out]
    for flag, value in (("--scheduler", args.scheduler), ("--scheduler-timeout", args.scheduler_timeout),
                        ("--config", args.config)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + [flag for flag in ("--verbose", "--quiet", "--quick") if getattr(args, flag[2:])]


def script_main(name: str, run: Callable[[dict, Any, Report], dict], argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python workflows/<name>.py``: :func:`workflow_main` with the ``scaleml`` command's
    handling of a user's mistake (one line on stderr, status 2; ``--debug`` shows the traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_guarded(f"workflows/{name}.py", lambda: workflow_main(name, run, [a for a in argv if a != "--debug"]),
                       debug="--debug" in argv)


def workflow_main(name: str, run: Callable[[dict, Any, Report], dict], argv: Sequence[str] | None = None) -> int:
    """Standard entry point of ``workflows/<name>.py``: parse, connect, run into a report, rename when done.

    The run's outputs go to a hidden temporary directory renamed to ``runs/<name>/<timestamp>`` only when the
    workflow completed; ``config["state_dir"]`` (``runs/<name>/state``) persists between runs for checkpoints
    and the completion markers of :func:`resumable_step`.
    """
    ap = argparse.ArgumentParser(prog=f"workflows/{name}.py", description=(inspect.getdoc(run) or "")[:500])
    add_workflow_options(ap, default_config=str(Path(inspect.getfile(run)).with_suffix(".yaml")))
    args = ap.parse_args(argv)
    config = load_config(args.config, quick=args.quick)
    config["quick"] = args.quick  # a pipeline applies it to its steps' configs too
    config.setdefault("state_dir", str(Path(args.out) / name / "state"))
    tmp, final = new_run(args.out, name)
    handlers = configure_logging(tmp / "run.log", verbose=args.verbose)
    try:
        t0 = time.perf_counter()
        with client_from_config(config, args.scheduler, args.scheduler_timeout) as client:
            report = Report(tmp, title=f"scaleml-dask: {name}")
            report.add_one_time_cost("cluster start (or join) and connection", time.perf_counter() - t0)
            t0 = time.perf_counter()
            with cluster_progress(client, name, enabled=False if args.quiet else None):
                summary = run(config, client, report)
            report.add_section("One-time costs", table=report.one_time_costs,
                               text="Paid once per run or per process, and not counted in the steady figures of "
                                    "the sections above where they are measured apart (see each row).")
            report.add_section("Run", table=[{"workflow": name, "seconds": time.perf_counter() - t0,
                                              "dashboard": client.dashboard_link, **_cluster(client)}],
                               text="Library versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()),
                               data=summary or {})
            report.write()
    except BaseException:
        _close(handlers)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _close(handlers)
    final = publish_run(tmp, final)
    remove_own(Path(config["state_dir"]) / "steps", "steps")  # the run is complete
    print(f"report: {final.resolve() / 'report.html'}")
    return 0


def _cluster(client: Any) -> dict[str, Any]:
    """The cluster a run used: workers, threads and memory."""
    workers = client.scheduler_info().get("workers", {}).values()
    return {"scheduler": client.scheduler.address, "workers": len(workers),
            "threads": sum(w.get("nthreads", 0) for w in workers),
            "memory (GB)": round(sum(w.get("memory_limit", 0) or 0 for w in workers) / 1e9, 1)}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("scaleml-dask", "numpy", "dask", "distributed", "zarr", "xarray", "scikit-learn", "numba"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


class _Terminal(logging.Filter):
    """What a run shows on the terminal without ``--verbose``: its step lines and anyone's errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == __name__ or record.levelno >= logging.ERROR


class _TerminalHandler(logging.Handler):
    """Records to stderr through ``tqdm.write``, so that a progress bar being drawn is not broken."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def configure_logging(log_file: str | os.PathLike, *, verbose: bool = False) -> list[logging.Handler]:
    """Logging of a workflow run: every INFO record (dask.distributed's included) to ``log_file``; on stderr one
    line per step and errors only, or everything with ``verbose``. Returns the handlers it installed."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    terminal = _TerminalHandler()
    terminal.setFormatter(logging.Formatter("%(asctime)s %(message)s" if not verbose else
                                            "%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"))
    if not verbose:
        terminal.addFilter(_Terminal())
    for h in (to_file, terminal):
        root.addHandler(h)
    for name in ("distributed", "httpx"):  # records go to the root's handlers: the file, filtered terminal
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).propagate = True
        for h in list(logging.getLogger(name).handlers):  # distributed installs its own stderr handler
            logging.getLogger(name).removeHandler(h)
    return [to_file, terminal]


def _close(handlers: list[logging.Handler]) -> None:
    root = logging.getLogger()
    for h in handlers:
        root.removeHandler(h)
        h.close()
