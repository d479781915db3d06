"""The ``scaleml`` command: catalog, ingest, demo, run. Thin: it parses, calls the library, writes results.

A user's mistake (unknown name, bad file, unreachable scheduler...) ends the command with one line on stderr
and exit status 2 (``errors.USER_ERRORS`` says which exceptions are such mistakes and how they read);
``--debug`` (anywhere on the command line) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .errors import UsageError, run_guarded

EPILOG = """examples:
  scaleml catalog list
  scaleml catalog show demo-regression
  scaleml verify data/data.zarr      # every chunk against the store's checksums
  scaleml ingest data.csv.gz data/data.zarr --target price [--kind zip=categorical] [--na keep|error|VALUE]
  scaleml demo                       # demo datasets + all workflows -> runs/pipeline/<time>/report.html
  scaleml demo --quick               # the same on the small demo datasets (about a minute)
  scaleml run regression --scheduler tcp://10.0.0.5:8786
  scaleml serve models/reg --port 8080   # Open Inference Protocol (V2) + V1 on 127.0.0.1
  scaleml score --model models/reg --dataset demo-regression --out runs/scores.zarr
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
        raise UsageError(f"no workflow {name!r}; known workflows: {', '.join(known) or '(none)'}")
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
        raise UsageError("give a dataset name: scaleml catalog show NAME")
    print(json.dumps(describe(args.name, catalog=args.catalog), indent=2))
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from .io.ingest import MAX_LEVELS, ingest

    kinds = {}
    for spec in args.kind or ():
        name, sep, kind = spec.rpartition("=")
        if not sep or not name:
            raise UsageError(f"--kind takes NAME=KIND (e.g. --kind zip=categorical); got {spec!r}")
        kinds[name] = kind
    if args.n_features is not None:
        if not args.text:
            raise UsageError("--n-features hashes the text columns: name them with --text COL")
        from .feature_extraction.text import ingest_hashed

        out = ingest_hashed(args.source, args.dest, text=args.text, n_features=_n_features(args.n_features),
                            target=args.target, drop=args.drop or (), chunk_rows=args.chunk_rows, codec=args.codec,
                            na=args.na, kinds=kinds, progress=not args.quiet, overwrite=args.overwrite)
        print(f"wrote {out}")
        return 0
    out = ingest(args.source, args.dest, target=args.target, drop=args.drop or (), chunk_rows=args.chunk_rows,
                 codec=args.codec, na=args.na, kinds=kinds, max_levels=args.max_levels or MAX_LEVELS,
                 text=args.text or (), progress=not args.quiet, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def _n_features(spec: str) -> int:
    """``--n-features``: an integer or a power of two written ``2**K``."""
    base, sep, power = spec.replace(" ", "").partition("**")
    try:
        n = int(base) ** int(power) if sep else int(base)
    except ValueError:
        raise UsageError(f"--n-features takes an integer or 2**K; got {spec!r}") from None
    if not 1 <= n < 2**31:
        raise UsageError(f"--n-features must be between 1 and 2**31 - 1; got {spec!r}")
    return n


def _verify(args: argparse.Namespace) -> int:
    from .io.catalog import CatalogError, verify_dataset
    from .io.store import IntegrityError

    try:
        n_chunks, problems = verify_dataset(args.dataset, catalog=args.catalog)
    except CatalogError as exc:  # no such dataset: a user's mistake, status 2 like every other command's
        print(f"scaleml verify: {exc}", file=sys.stderr)
        return 2
    except IntegrityError as exc:
        problems = [str(exc)]
    for problem in problems:  # damaged data: status 1
        print(f"scaleml verify: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"ok: {n_chunks} chunks verified")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .runner import workflow_argv, workflow_main

    return workflow_main("pipeline", load_workflow("pipeline").run, workflow_argv(args))


def _run(args: argparse.Namespace) -> int:
    from .runner import workflow_argv, workflow_main

    return workflow_main(args.workflow, load_workflow(args.workflow).run, workflow_argv(args))


def _serve(args: argparse.Namespace) -> int:
    from .deploy.limits import DEFAULT
    from .deploy.serve import serve

    if args.token is not None:
        print("scaleml serve: warning: --token shows the token to every user of this machine (ps, /proc); use "
              "--token-file FILE or $SCALEML_TOKEN", file=sys.stderr)
    try:
        limits = DEFAULT.replace(**{f: getattr(args, f) for f in _SERVE_LIMITS})
        serve(args.dirs, ab=args.ab, host=args.host, port=args.port, token=args.token, token_file=args.token_file,
              insecure=args.insecure, metrics_port=args.metrics_port, limits=limits,
              max_batch_size=args.max_batch_size, max_batch_time_ms=args.max_batch_time_ms,
              reload_interval=args.reload_interval, log_level=args.log_level)
    except ValueError as exc:
        print(f"scaleml serve: {exc}", file=sys.stderr)
        return 2
    return 0


#: The bounds of deploy.limits.Limits that `scaleml serve` takes as options (--max-rows, --header-timeout, ...).
_SERVE_LIMITS = ("max_rows", "max_body_bytes", "max_response_bytes", "max_outputs", "max_header_bytes",
                 "header_timeout", "body_timeout", "idle_timeout", "max_connections", "inference_threads",
                 "max_queue")


def _score(args: argparse.Namespace) -> int:
    from .cluster import connect
    from .deploy.registry import load_model
    from .deploy.score import score
    from .io.destination import claim

    try:
        claim(args.out, "dataset", overwrite=args.overwrite)  # refused before a cluster is started for nothing
        model = load_model(args.model)
        with connect(args.scheduler, quiet=True) as client:
            out = score(model, args.dataset, args.out, client=client, progress=not args.quiet,
                        overwrite=args.overwrite)
            if args.scheduler is None:
                client.cluster.close()
    except (ValueError, KeyError, OSError) as exc:  # registry, catalog and data errors name the problem
        print(f"scaleml score: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    from .runner import add_workflow_options  # the workflows' options, defined once for both entry points

    ap = argparse.ArgumentParser(prog="scaleml", description="Large-scale machine learning on Dask over zarr.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error (also accepted after "
                                                         "the subcommand)")
    sub = ap.add_subparsers(dest="command", required=True)

    c = sub.add_parser("catalog", help="list the catalog's datasets or show one")
    c.add_argument("action", choices=["list", "show"])
    c.add_argument("name", nargs="?", help="dataset name (for show)")
    c.add_argument("--catalog", help="catalog file (default: $SCALEML_CATALOG or ./data_catalog.yaml)")
    c.set_defaults(func=_catalog)

    i = sub.add_parser("ingest", help="convert CSV(.gz) / Parquet / .npy to a zarr dataset, chunk by chunk")
    i.add_argument("source")
    i.add_argument("dest", help="destination .zarr directory (written atomically; never over anything but a "
                                "dataset written here, and that only with --overwrite)")
    i.add_argument("--target", help="column that becomes y (for .npy: a column index)")
    i.add_argument("--drop", nargs="*", help="columns to leave out")
    i.add_argument("--chunk-rows", type=int, help="rows per chunk (default: near 64 MB per chunk)")
    i.add_argument("--codec", help="zarr codec: none (default, fastest to decode), zstd (compressible data), "
                                   "blosc-lz4, blosc-zstd")
    i.add_argument("--na", default="keep", metavar="keep|error|VALUE",
                   help="missing cells (empty, NA, null...): kept as missing and counted (default), an error naming "
                        "line and column, or (numeric columns) filled with VALUE")
    i.add_argument("--kind", action="append", metavar="NAME=KIND",
                   help="declare a column's kind (numeric, boolean, categorical, datetime, text) instead of inferring "
                        "it from the first chunk; repeatable")
    i.add_argument("--text", action="append", metavar="COL",
                   help="keep column COL as text (documents, hashed by a pipeline's HashingVectorizer); repeatable")
    i.add_argument("--n-features", metavar="N",
                   help="store the --text columns hashed to N features (e.g. 2**20): a sparse dataset")
    i.add_argument("--max-levels", type=int, metavar="N",
                   help="most levels a categorical column may have (default 100,000)")
    i.add_argument("--overwrite", action="store_true", help="replace a dataset this project wrote at DEST")
    i.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=_ingest)

    v = sub.add_parser("verify", help="check every chunk of a dataset (existence, size, checksum); "
                                      "one line per problem on stderr, exit status 1 if any (2: no such dataset)")
    v.add_argument("dataset", help="catalog name or path of a zarr store")
    v.add_argument("--catalog", help="catalog file (default: $SCALEML_CATALOG or ./data_catalog.yaml)")
    v.set_defaults(func=_verify)

    for name, helptext, func in (("demo", "make the demo datasets and run every workflow into one report", _demo),
                                 ("run", "run one workflow script from workflows/", _run)):
        p = sub.add_parser(name, help=helptext)
        if name == "run":
            p.add_argument("workflow",
                           help="workflow name, e.g. regression, pca, sgd, online, tsne, kmeans, deploy, pipeline")
        add_workflow_options(p)
        p.set_defaults(func=func)

    s = sub.add_parser("serve", help="serve model registry directories over HTTP (Open Inference Protocol V2, V1)")
    s.add_argument("dirs", nargs="*", metavar="DIR", help="registry directories; each is served under its name")
    s.add_argument("--ab", metavar="DIR_A=W,DIR_B=W", help="A/B experiment: weighted, sticky by X-Variant or "
                                                         "X-Routing-Key, served under DIR_A's name")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    s.add_argument("--port", type=int, default=8080, help="(default: %(default)s)")
    s.add_argument("--token-file", metavar="FILE", help="require 'Authorization: Bearer TOKEN', TOKEN the file's "
                                                        "first line (default: $SCALEML_TOKEN; health routes stay open)")
    s.add_argument("--token", help=argparse.SUPPRESS)  # accepted with a warning: visible in ps
    s.add_argument("--insecure", action="store_true", help="allow a host other than loopback without a token")
    s.add_argument("--metrics-port", type=int, metavar="PORT", help="serve /metrics on this port (without the "
                                                                   "token) instead of the main one")
    s.add_argument("--max-batch-size", type=int, help="adaptive batching: rows per coalesced call (default: off)")
    s.add_argument("--max-batch-time-ms", type=float, default=2.0, help="adaptive batching: longest wait "
                                                                       "(default: %(default)s)")
    from .deploy.limits import DEFAULT, Limits

    for f in dataclasses.fields(Limits):
        if f.name in _SERVE_LIMITS:
            s.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(DEFAULT, f.name)),
                           metavar="N", help=f"{f.metadata['help']} (default: {getattr(DEFAULT, f.name):,})")
    s.add_argument("--reload-interval", type=float, default=1.0, help="seconds between checks for new model "
                                                                     "versions (default: %(default)s)")
    s.add_argument("--log-level", default="warning", help="uvicorn log level (default: %(default)s)")
    s.set_defaults(func=_serve)

    sc = sub.add_parser("score", help="score a dataset with a saved model on the cluster, chunk by chunk")
    sc.add_argument("--model", required=True, metavar="DIR", help="model registry directory (latest version)")
    sc.add_argument("--dataset", required=True, metavar="NAME|PATH",
                    help="catalog name or zarr dataset path (a pipeline of raw columns: also a CSV / Parquet file)")
    sc.add_argument("--out", required=True, metavar="PATH", help="output .zarr dataset (written atomically)")
    sc.add_argument("--scheduler", metavar="ADDR", help="address of an existing scheduler (default: a new "
                                                        "LocalCluster)")
    sc.add_argument("--overwrite", action="store_true", help="replace a dataset this project wrote at --out")
    sc.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sc.set_defaults(func=_score)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scaleml`` console script: a user's mistake is one line on stderr, exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    return run_guarded(f"scaleml {args.command}", lambda: args.func(args), debug="--debug" in argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
