"""The models a server holds: loaded from registry directories, verified, by name and version, swappable.

A model's name is its directory's name; the served version is the newest one that verifies. Each model loads,
fails and reloads on its own: whatever is wrong with one (a refused version, a vanished directory, a bug) is
recorded as its state with a reason that names no server path, logged once, and never stops the others.

A new version (found by :meth:`ModelRegistry.refresh` or asked for by :meth:`ModelRegistry.load`) is loaded
and checked beside the old one and swapped in by one assignment: requests that already hold the old model
finish on it (it stays listed, as retiring, while they do); a version that fails verification is refused and
the old one keeps serving. The watcher installs a version only once it has stopped changing (its files' sizes
and times equal at two polls), so one copied in with ``cp`` rather than renamed into place is installed when
complete; a refused version is tried again when its files change.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._codecs import datatype_of
from ._errors import NotFound, NotReady, Unprocessable
from .outputs import apply, probe_input

#: A model call expected to take less than this runs on the event loop: handing it to an inference thread costs
#: more than the call (a one-row linear model: ~0.02 ms of work, a thread hand-off and GIL switch around it);
#: the bound is the serving process's GIL switch interval (``serve.SWITCH_INTERVAL_S``), the longest the loop
#: already waits behind a thread. Throughput on one-row requests: ``benchmarks/README.md``, model serving.
INLINE_BELOW_S = 0.0005

log = logging.getLogger("scaleml_dask.serve")


@dataclass(eq=False)
class ServedModel:
    """One loaded, verified model version and what the server needs to answer for it."""

    name: str
    version: str
    variant: str
    estimator: Any
    metadata: dict
    n_features: int
    feature_names: list[str]
    outputs: list[str]
    output_specs: list[dict]
    monitor: Any = None
    batchers: dict = field(default_factory=dict)
    schema: Any = None  # a model of raw columns (a pipeline): its input schema; rows are given by column
    monitored: list = field(default_factory=list)  # the columns of numbers its drift monitor watches
    in_flight: int = 0  # requests holding this model (on the event loop's thread)
    call_s: float = float("inf")  # recent calls' seconds (an exponential average; inf: none measured yet)
    call_rows: float = 1.0  # and their rows
    calls: int = 0  # calls measured (the first, a cold one, is not averaged)

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.name, self.version, self.variant)

    @property
    def class_name(self) -> str:
        return str(self.metadata.get("class", type(self.estimator).__name__))

    def width(self, output: str) -> int:
        """Values per row of ``output``."""
        shape = next(s["shape"] for s in self.output_specs if s["name"] == output)
        return int(np.prod(shape[1:], dtype=np.int64))

    def cheap(self, rows: int) -> bool:
        """Whether a call on ``rows`` rows is expected to take less than ``INLINE_BELOW_S`` (from the recent
        calls, scaled by rows; never before two calls were measured, so a slow model's first calls are never
        inline)."""
        return self.call_s * max(1.0, rows / self.call_rows) < INLINE_BELOW_S

    def timed_compute(self, X: Any, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        """:meth:`compute`, its duration and rows folded into ``call_s`` / ``call_rows`` (also when it fails)."""
        start = time.perf_counter()
        try:
            return self.compute(X, outputs)
        finally:
            seconds = time.perf_counter() - start
            rows = max(1, len(next(iter(X.values()))) if isinstance(X, dict) else len(X))
            self.calls += 1  # the first call is cold (first-use costs, not what a call costs): not averaged
            if self.calls == 2:
                self.call_s, self.call_rows = seconds, float(rows)
            elif self.calls > 2:
                self.call_s, self.call_rows = 0.8 * self.call_s + 0.2 * seconds, 0.8 * self.call_rows + 0.2 * rows

    def compute(self, X: Any, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The requested outputs on the checked rows ``X`` (an overflow is refused by name after the call,
        not warned about on the server's stderr); for a model of raw columns ``X`` is ``{column: values}``, and a
        value it cannot take (an unknown level under handle_unknown="error") is refused naming the column."""
        from .._tabular import TableInputError

        try:
            with np.errstate(all="ignore"):
                return {name: apply(self.estimator, name, X) for name in outputs}
        except TableInputError as exc:
            if self.schema is None:
                raise
            raise Unprocessable(str(exc)) from None


def public_reason(version: int, exc: BaseException) -> str:
    """Why ``version`` was refused, for clients: the file's name within the version and the problem, never a
    path of the server."""
    from .registry import RegistryError

    if isinstance(exc, RegistryError):
        where = f"{Path(exc.path).name}: " if exc.path is not None and Path(exc.path).parent.name == str(version) \
            else ""
        return f"version {version}: {where}{exc.problem}"
    if isinstance(exc, Unprocessable):
        return f"version {version}: {exc}"
    if isinstance(exc, OSError):
        return f"version {version}: cannot be read ({exc.strerror or type(exc).__name__})"
    return f"version {version}: cannot be loaded ({type(exc).__name__})"


def _probe(estimator: Any, outputs: list[str], row: np.ndarray) -> list[dict]:
    """Run every output on one row: each must answer one finite row; its datatype and shape are advertised."""
    specs = []
    for name in outputs:
        try:
            a = apply(estimator, name, row)
        except Exception as exc:  # a model that cannot answer is refused, whatever it raised
            raise Unprocessable(f"output {name!r} fails on a probe row ({type(exc).__name__})") from None
        if a.shape[:1] != (1,) or a.ndim > 2 or (a.dtype.kind in "fc" and not np.isfinite(a).all()):
            raise Unprocessable(f"output {name!r} gives {a.shape} {a.dtype} on one row")
        specs.append({"name": name, "datatype": datatype_of(a), "shape": [-1, *a.shape[1:]]})
    return specs


def load_served(name: str, directory: Path, version: int, variant: str, monitor_chunk: int,
                limits: Any = None) -> ServedModel:
    """Load and verify ``directory``'s ``version`` (every check of the registry, then a probe row)."""
    from .monitor import DriftMonitor
    from .registry import load_model

    estimator, meta = load_model(directory, version, limits=limits, with_metadata=True)
    if meta.get("n_features") is None or not meta.get("outputs"):
        raise Unprocessable("the model has no outputs to serve")
    n_features = int(meta["n_features"])
    training = meta.get("training") or {}
    mean = training.get("feature_mean")
    schema = estimator.input_schema_ if hasattr(estimator, "_table_needs") else None
    if schema is not None:
        row = probe_input(estimator)
    else:
        row = np.asarray(mean if mean is not None else np.zeros(n_features), dtype=np.float64).reshape(1, -1)
    outputs = list(meta["outputs"])
    specs = _probe(estimator, outputs, row)
    names = meta.get("feature_names") or [f"x{j}" for j in range(n_features)]
    monitor = None
    if mean is not None:
        try:
            monitor = DriftMonitor(training, chunk=monitor_chunk)
        except Exception:  # noqa: BLE001 - monitoring is optional: the model serves without it
            log.exception("model %s version %s: no drift monitoring", name, version)
    return ServedModel(name, str(version), variant, estimator, meta, n_features, [str(n) for n in names],
                       outputs, specs, monitor, schema=schema,
                       monitored=list(training.get("columns") or []) if schema is not None else [])


def _signature(path: Path) -> tuple:
    """What changes while a version is being written: its entries' names, sizes and modification times."""
    try:
        return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(path)))
    except OSError:
        return ()


class ModelRegistry:
    """Served models by name; ``sources`` maps each name to ``(directory, variant)``."""

    def __init__(self, sources: dict[str, tuple[Path, str]], *, monitor_chunk: int = 1024, limits: Any = None,
                 on_loaded: Any = None, on_refused: Any = None) -> None:
        self.sources = sources
        self.monitor_chunk = monitor_chunk
        self.limits = limits
        self.on_loaded = on_loaded
        self.on_refused = on_refused
        self._models: dict[str, ServedModel] = {}
        self.retiring: list[ServedModel] = []  # replaced models still answering requests they hold
        self._problem: dict[str, str] = {}  # name -> why it is not served (public)
        self._refused: dict[tuple[str, int], tuple] = {}  # (name, version) -> signature when refused
        self._seen: dict[tuple[str, int], tuple] = {}  # (name, version) -> signature at the last poll
        self._logged: set = set()
        self._polled: set[str] = set()
        self._locks = {name: threading.Lock() for name in sources}

    def names(self) -> list[str]:
        return list(self.sources)

    def served(self) -> list[ServedModel]:
        return list(self._models.values())

    def state(self, name: str) -> tuple[str, str | None]:
        """``("READY", None)``, ``("UNAVAILABLE", reason)`` (versions exist, none verifies) or
        ``("LOADING", reason)`` (no version yet, or not polled yet)."""
        if name in self._models:
            return "READY", None
        problem = self._problem.get(name)
        if problem is not None and any(n == name for n, _ in self._refused):
            return "UNAVAILABLE", problem
        return "LOADING", problem or "not loaded yet"

    def ready(self) -> bool:
        """Every model settled: served, or every version it has refused (a broken model does not hold the
        others back; it is reported by :meth:`state`)."""
        return all(self.state(n)[0] != "LOADING" for n in self.sources)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model serving ``name`` (and ``version``, if given)."""
        model = self._models.get(name)
        if model is None:
            if name not in self.sources:
                raise NotFound(f"unknown model {name!r}; served: {', '.join(self.sources)}")
            state, reason = self.state(name)
            raise NotReady(f"model {name!r} is not loaded yet ({reason})" if state == "LOADING"
                           else f"model {name!r} is unavailable: {reason}")
        if version is not None and version != model.version:
            raise NotFound(f"model {name!r} has no loaded version {version!r}; serving version {model.version}")
        return model

    def _once(self, level: int, key: tuple, message: str, *args: Any, exc_info: Any = None) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.log(level, message, *args, exc_info=exc_info)

    def _versions(self, name: str) -> list[int]:
        from .registry import list_versions

        directory = self.sources[name][0]
        try:
            return list_versions(directory)
        except OSError as exc:
            self._problem[name] = f"its directory cannot be read ({exc.strerror or type(exc).__name__})"
            self._once(logging.WARNING, (name, "dir", exc.errno), "model %s: cannot list %s: %s", name, directory,
                       exc)
            return []

    def _swap(self, name: str, version: int) -> ServedModel:
        directory, variant = self.sources[name]
        key = (name, version)
        signature = _signature(directory / str(version))
        try:
            model = load_served(name, directory, version, variant, self.monitor_chunk, self.limits)
        except Exception as exc:  # noqa: BLE001 - one model's failure, whatever it is, is its own
            reason = public_reason(version, exc)
            self._refused[key] = signature
            if name not in self._models:
                self._problem[name] = reason
            known = isinstance(exc, (ValueError, OSError, Unprocessable))
            self._once(logging.WARNING if known else logging.ERROR, (*key, signature),
                       "model %s: refused version %s from %s: %s", name, version, directory, exc,
                       exc_info=None if known else exc)
            if self.on_refused is not None:
                self.on_refused(name, str(version), variant)
            raise Unprocessable(f"model {name!r} {reason}") from None
        previous = self._models.get(name)
        self._models[name] = model  # the swap: one assignment; holders of `previous` finish on it
        self._problem.pop(name, None)
        if previous is not None and previous.in_flight:
            self.retiring.append(previous)
        self.retiring = [m for m in self.retiring if m.in_flight]
        log.info("serving %s version %s from %s", name, version, directory)
        if self.on_loaded is not None:
            self.on_loaded(model, previous)
        return model

    def load(self, name: str) -> ServedModel:
        """Load the newest version of ``name`` now (the repository API), refused or not before."""
        if name not in self.sources:
            raise NotFound(f"unknown model {name!r}; served: {', '.join(self.sources)}")
        with self._locks[name]:
            versions = self._versions(name)
            if not versions:
                raise NotReady(f"model {name!r}: no version to load")
            current = self._models.get(name)
            if current is not None and int(current.version) == versions[-1]:
                return current
            return self._swap(name, versions[-1])

    def refresh(self, name: str) -> ServedModel | None:
        """Install the newest version newer than the served one that has stopped changing and verifies (at the
        first poll, the newest that verifies, at once). Refusals are recorded, logged once and counted, never
        raised."""
        with self._locks[name]:
            first = name not in self._polled
            self._polled.add(name)
            current = self._models.get(name)
            floor = int(current.version) if current is not None else 0
            directory = self.sources[name][0]
            versions = self._versions(name)
            if not versions and name not in self._problem:
                self._problem[name] = "no version saved yet"
            for version in reversed(versions):
                if version <= floor:
                    return None
                key = (name, version)
                signature = _signature(directory / str(version))
                seen, self._seen[key] = self._seen.get(key), signature
                if self._refused.get(key) == signature or (not first and seen != signature):
                    continue  # refused as it is now, or still changing: wait for the next poll
                try:
                    return self._swap(name, version)
                except Unprocessable:
                    continue
            return None

    def refresh_all(self) -> None:
        for name in self.sources:
            try:
                self.refresh(name)
            except Exception:  # noqa: BLE001 - a bug in one model's refresh must not stop the others'
                self._once(logging.ERROR, (name, "refresh"), "model %s: refresh failed", name, exc_info=True)
