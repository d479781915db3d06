"""The models a server holds: loaded from registry directories, verified, by name and version, swappable.

A model's name is its directory's name; the served version is the newest one that verifies. A new version
(found by :meth:`ModelRegistry.refresh` or asked for by :meth:`ModelRegistry.load`) is loaded and checked
beside the old one and swapped in by one assignment: requests that already hold the old model finish on it;
a version that fails verification is refused and the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._codecs import datatype_of
from ._errors import NotFound, NotReady, Unprocessable
from .outputs import apply

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

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.name, self.version, self.variant)

    @property
    def class_name(self) -> str:
        return str(self.metadata.get("class", type(self.estimator).__name__))

    def compute(self, X: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The requested outputs on the checked rows ``X``."""
        return {name: apply(self.estimator, name, X) for name in outputs}


def _probe(estimator: Any, outputs: list[str], row: np.ndarray, where: str) -> list[dict]:
    """Run every output on one row: each must answer one finite row; its datatype and shape are advertised."""
    specs = []
    for name in outputs:
        try:
            a = apply(estimator, name, row)
        except Exception as exc:  # a model that cannot answer is refused, whatever it raised
            raise Unprocessable(f"{where}: output {name!r} fails on a probe row: {exc}") from None
        if a.shape[:1] != (1,) or a.ndim > 2 or (a.dtype.kind in "fc" and not np.isfinite(a).all()):
            raise Unprocessable(f"{where}: output {name!r} gives {a.shape} {a.dtype} on one row")
        specs.append({"name": name, "datatype": datatype_of(a), "shape": [-1, *a.shape[1:]]})
    return specs


def load_served(name: str, directory: Path, version: int, variant: str, monitor_chunk: int) -> ServedModel:
    """Load and verify ``directory``'s ``version`` (checksums by the registry, then a probe row)."""
    from .monitor import DriftMonitor
    from .registry import load_model, read_metadata

    where = f"{directory}/{version}"
    try:
        meta = read_metadata(directory, version)
        estimator = load_model(directory, version)
    except (ValueError, OSError) as exc:  # RegistryError is a ValueError
        raise Unprocessable(f"{where}: {exc}") from None
    n_features = int(meta["n_features"])
    training = meta.get("training") or {}
    mean = training.get("feature_mean")
    row = np.asarray(mean if mean is not None else np.zeros(n_features), dtype=np.float64).reshape(1, -1)
    if row.shape[1] != n_features:
        raise Unprocessable(f"{where}: training feature_mean has {row.shape[1]} values for {n_features} features")
    outputs = list(meta.get("outputs") or [])
    if not outputs:
        raise Unprocessable(f"{where}: the model has no outputs to serve")
    specs = _probe(estimator, outputs, row, where)
    names = meta.get("feature_names") or [f"x{j}" for j in range(n_features)]
    monitor = DriftMonitor(training, chunk=monitor_chunk) if mean is not None else None
    return ServedModel(name, str(version), variant, estimator, meta, n_features, [str(n) for n in names],
                       outputs, specs, monitor)


class ModelRegistry:
    """Served models by name; ``sources`` maps each name to ``(directory, variant)``."""

    def __init__(self, sources: dict[str, tuple[Path, str]], *, monitor_chunk: int = 1024,
                 on_loaded: Any = None, on_refused: Any = None) -> None:
        self.sources = sources
        self.monitor_chunk = monitor_chunk
        self.on_loaded = on_loaded
        self.on_refused = on_refused
        self._models: dict[str, ServedModel] = {}
        self._refused: dict[str, set[int]] = {name: set() for name in sources}
        self._locks = {name: threading.Lock() for name in sources}

    def names(self) -> list[str]:
        return list(self.sources)

    def served(self) -> list[ServedModel]:
        return list(self._models.values())

    def ready(self) -> bool:
        return len(self._models) == len(self.sources)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model serving ``name`` (and ``version``, if given)."""
        model = self._models.get(name)
        if model is None:
            if name not in self.sources:
                raise NotFound(f"unknown model {name!r}; served: {', '.join(self.sources)}")
            raise NotReady(f"model {name!r} is not loaded yet (no verified version in {self.sources[name][0]})")
        if version is not None and version != model.version:
            raise NotFound(f"model {name!r} has no loaded version {version!r}; serving version {model.version}")
        return model

    def _versions(self, name: str) -> list[int]:
        from .registry import list_versions

        return list_versions(self.sources[name][0])

    def _swap(self, name: str, version: int) -> ServedModel:
        directory, variant = self.sources[name]
        try:
            model = load_served(name, directory, version, variant, self.monitor_chunk)
        except Unprocessable as exc:
            self._refused[name].add(version)
            log.warning("refused %s", exc)
            if self.on_refused is not None:
                self.on_refused(name, str(version), variant)
            raise
        previous = self._models.get(name)
        self._models[name] = model  # the swap: one assignment; holders of `previous` finish on it
        log.info("serving %s version %s from %s", name, version, directory)
        if self.on_loaded is not None:
            self.on_loaded(model, previous)
        return model

    def load(self, name: str) -> ServedModel:
        """Load the newest version of ``name`` now (the repository API); refused versions are tried again."""
        if name not in self.sources:
            raise NotFound(f"unknown model {name!r}; served: {', '.join(self.sources)}")
        with self._locks[name]:
            versions = self._versions(name)
            if not versions:
                raise NotReady(f"model {name!r}: no version in {self.sources[name][0]}")
            current = self._models.get(name)
            if current is not None and int(current.version) == versions[-1]:
                return current
            return self._swap(name, versions[-1])

    def refresh(self, name: str) -> ServedModel | None:
        """Load the newest not-yet-refused version if it is newer than the served one; the first time, the
        newest that verifies. Refusals are logged and counted, never raised."""
        with self._locks[name]:
            current = self._models.get(name)
            floor = int(current.version) if current is not None else 0
            for version in reversed(self._versions(name)):
                if version <= floor:
                    return None
                if version in self._refused[name]:
                    continue
                try:
                    return self._swap(name, version)
                except Unprocessable:
                    if current is not None:
                        return None
            return None

    def refresh_all(self) -> None:
        for name in self.sources:
            self.refresh(name)
