"""The entry point of workflow scripts: parse, configure logging, connect, run into a report, rename when done.

Workflows (``workflows/<name>.py``) are scripts that define ``run(config, client, report) -> dict`` and end
with ``raise SystemExit(workflow_main("<name>", run))``; ``scaleml run <name>`` and ``scaleml demo`` call the
same function.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import inspect
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .report import Report


class ConfigError(ValueError):
    """A workflow config that cannot be used; the message names the file (and line and column for YAML)."""


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a workflow's YAML config (a mapping)."""
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
    return config


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
    """(temporary directory to write into, final directory ``<out_root>/<name>/<timestamp>``)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    final = Path(out_root) / name / stamp
    tmp = final.with_name(f".{stamp}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp, final


def workflow_main(name: str, run: Callable[[dict, Any, Report], dict], argv: Sequence[str] | None = None) -> int:
    """Standard entry point of ``workflows/<name>.py``: parse, connect, run into a report, rename when done.

    The run's outputs go to a temporary directory renamed to ``runs/<name>/<timestamp>`` only when the
    workflow completed; ``config["state_dir"]`` (``runs/<name>/state``) persists between runs for checkpoints.
    """
    default_config = Path(inspect.getfile(run)).with_suffix(".yaml")
    ap = argparse.ArgumentParser(prog=f"workflows/{name}.py", description=(inspect.getdoc(run) or "")[:500])
    ap.add_argument("--config", default=str(default_config), help="YAML config (default: %(default)s)")
    ap.add_argument("--scheduler", help="address of an existing dask scheduler, e.g. tcp://host:8786")
    ap.add_argument("--scheduler-timeout", type=float, metavar="SECONDS",
                    help="give up connecting to --scheduler after this long (default: 5)")
    ap.add_argument("--out", default="runs", help="root directory of run outputs (default: %(default)s)")
    args = ap.parse_args(argv)
    configure_logging()
    config = load_config(args.config)
    config.setdefault("state_dir", str(Path(args.out) / name / "state"))
    tmp, final = new_run(args.out, name)
    try:
        with client_from_config(config, args.scheduler, args.scheduler_timeout) as client:
            report = Report(tmp, title=f"scaleml-dask: {name}")
            t0 = time.perf_counter()
            summary = run(config, client, report)
            report.add_section("Run", table=[{"workflow": name, "seconds": time.perf_counter() - t0,
                                              "dashboard": client.dashboard_link}], data=summary or {})
            report.write()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, final)
    print(f"report: {final / 'report.html'}")
    return 0


def configure_logging(level: int = logging.INFO) -> None:
    """Logging of a workflow run: the library's INFO records to stderr, dask.distributed's warnings only."""
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
