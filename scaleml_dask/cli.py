"""The ``scaleml`` command: catalog, ingest, demo, run. Thin: it parses, calls the library, writes results."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

EPILOG = """examples:
  scaleml catalog list
  scaleml catalog show demo-regression
  scaleml ingest data.csv.gz data/data.zarr --target price
  scaleml demo                       # demo datasets + all workflows -> runs/pipeline/<time>/report.html
  scaleml run regression --scheduler tcp://10.0.0.5:8786
"""


def workflow_dirs() -> list[Path]:
    """Where workflows are looked up: ``./workflows`` (the user's edited copies) first, then the package's."""
    from . import workflows

    return [Path("workflows").resolve(), Path(workflows.__file__).resolve().parent]


def load_workflow(name: str) -> ModuleType:
    """Import ``<dir>/<name>.py`` from the first of ``workflow_dirs()`` that has it, as a module."""
    found = [d / f"{name}.py" for d in workflow_dirs() if (d / f"{name}.py").is_file()]
    if not found or name.startswith("_"):
        known = sorted({p.stem for d in workflow_dirs() for p in d.glob("*.py") if not p.stem.startswith("_")})
        raise SystemExit(f"scaleml: no workflow {name!r}; known workflows: {', '.join(known) or '(none)'}")
    path = found[0]
    spec = importlib.util.spec_from_file_location(f"scaleml_workflow_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _catalog(args: argparse.Namespace) -> int:
    from .io.catalog import describe, load_catalog

    entries = load_catalog(args.catalog)
    if args.action == "list":
        width = max((len(n) for n in entries), default=4)
        for name, e in sorted(entries.items()):
            state = "ready" if Path(e.path).exists() else ("generated on first use" if e.generator else "missing")
            print(f"{name:<{width}}  [{state}]  {e.description}")
        return 0
    if not args.name:
        raise SystemExit("scaleml catalog show: give a dataset name")
    print(json.dumps(describe(args.name, catalog=args.catalog), indent=2))
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from .io.ingest import IngestError, ingest

    try:
        out = ingest(args.source, args.dest, target=args.target, drop=args.drop or (),
                     chunk_rows=args.chunk_rows, codec=args.codec, na=args.na, progress=not args.quiet)
    except IngestError as exc:
        print(f"scaleml ingest: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    argv = ["--out", args.out] + (["--scheduler", args.scheduler] if args.scheduler else [])
    if args.config:
        argv += ["--config", args.config]
    from .runner import workflow_main

    return workflow_main("pipeline", load_workflow("pipeline").run, argv)


def _run(args: argparse.Namespace) -> int:
    argv = ["--out", args.out] + (["--scheduler", args.scheduler] if args.scheduler else [])
    if args.config:
        argv += ["--config", args.config]
    from .runner import workflow_main

    return workflow_main(args.workflow, load_workflow(args.workflow).run, argv)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    ap = argparse.ArgumentParser(prog="scaleml", description="Large-scale machine learning on Dask over zarr.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    c = sub.add_parser("catalog", help="list the catalog's datasets or show one")
    c.add_argument("action", choices=["list", "show"])
    c.add_argument("name", nargs="?", help="dataset name (for show)")
    c.add_argument("--catalog", help="catalog file (default: $SCALEML_CATALOG or ./data_catalog.yaml)")
    c.set_defaults(func=_catalog)

    i = sub.add_parser("ingest", help="convert CSV(.gz) / Parquet / .npy to a zarr dataset, chunk by chunk")
    i.add_argument("source")
    i.add_argument("dest", help="destination .zarr directory (written atomically)")
    i.add_argument("--target", help="column that becomes y (for .npy: a column index)")
    i.add_argument("--drop", nargs="*", help="columns to leave out")
    i.add_argument("--chunk-rows", type=int, help="rows per chunk (default: near 64 MB per chunk)")
    i.add_argument("--codec", help="zarr codec: none (default, fastest to decode), zstd (compressible data), "
                                   "blosc-lz4, blosc-zstd")
    i.add_argument("--na", default="error", metavar="error|VALUE",
                   help="missing cells (empty, NA, null...): an error naming line and column (default), or "
                        "filled with VALUE")
    i.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=_ingest)

    for name, helptext, func in (("demo", "make the demo datasets and run every workflow into one report", _demo),
                                 ("run", "run one workflow script from workflows/", _run)):
        p = sub.add_parser(name, help=helptext)
        if name == "run":
            p.add_argument("workflow", help="workflow name, e.g. regression, pca, sgd, online, tsne, pipeline")
        p.add_argument("--config", help="YAML config (default: the workflow's own)")
        p.add_argument("--scheduler", help="address of an existing scheduler (default: a new LocalCluster)")
        p.add_argument("--out", default="runs", help="where runs are written (default: %(default)s)")
        p.set_defaults(func=func)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scaleml`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
