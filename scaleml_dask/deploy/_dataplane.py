"""The protocol-agnostic dataplane: infer, metadata, readiness, A/B routing and the repository actions.

It takes parsed requests (dicts, headers) and returns dicts; it knows nothing of HTTP. Transport-independent
errors are raised as :mod:`._errors` classes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _codecs as codecs
from ._batching import AdaptiveBatcher
from ._errors import BadRequest, NotFound, ServingError, Unprocessable
from ._models import ModelRegistry, ServedModel


@dataclass(frozen=True)
class Experiment:
    """A/B routing of one name between variants (served model names) by weight."""

    name: str
    variants: tuple[str, ...]
    weights: tuple[float, ...]

    def choose(self, variant: str | None, key: str | None) -> str:
        """``variant`` if named (sticky by header), else by the hash of ``key``, else at random by weight."""
        if variant is not None:
            if variant not in self.variants:
                raise NotFound(f"no variant {variant!r} in experiment {self.name!r}; "
                               f"variants: {', '.join(self.variants)}")
            return variant
        if key is not None:
            u = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2.0**64
        else:
            u = random.random()
        total = 0.0
        for name, w in zip(self.variants, self.weights):
            total += w
            if u < total:
                return name
        return self.variants[-1]


class DataPlane:
    """Answers inference, metadata and readiness for the models of a :class:`ModelRegistry`."""

    def __init__(self, registry: ModelRegistry, experiments: dict[str, Experiment] | None = None, *,
                 max_rows: int | None = None, max_batch_size: int | None = None,
                 max_batch_time: float = 0.002, on_batch: Any = None) -> None:
        self.registry = registry
        self.experiments = experiments or {}
        self.max_rows = max_rows
        self.max_batch_size = max_batch_size
        self.max_batch_time = max_batch_time
        self.on_batch = on_batch
        names = list(self.experiments) + [n for n in registry.names() if n not in self.experiments]
        self.default_name = names[0]

    # --- routing -------------------------------------------------------------------------------------
    def route(self, name: str, version: str | None, headers: dict[str, str], key: Any = None) -> ServedModel:
        """The model that answers a request to ``name`` (an experiment picks one of its variants)."""
        experiment = self.experiments.get(name)
        if experiment is not None:
            key = headers.get("x-routing-key", None if key is None else str(key))
            name = experiment.choose(headers.get("x-variant"), key)
        return self.registry.get(name, version)

    # --- inference -----------------------------------------------------------------------------------
    def _decode_inputs(self, inputs: Any, model: ServedModel) -> np.ndarray:
        if not isinstance(inputs, list) or not inputs:
            raise BadRequest("'inputs' must be a non-empty list of tensors")
        if len(inputs) == 1:  # a single-input model takes an input of any name, as MLServer does
            return codecs.decode_tensor(inputs[0], model.n_features, self.max_rows)
        # one input per feature, by feature name (columns in the model's order)
        by_name = {t.get("name"): t for t in inputs if isinstance(t, dict)}
        missing = [f for f in model.feature_names if f not in by_name]
        if missing or len(inputs) != model.n_features:
            raise Unprocessable(f"{len(inputs)} inputs: give one input with all {model.n_features} features, or "
                                f"one per feature named {model.feature_names}; missing {missing[:5]}")
        cols = [codecs.decode_tensor(by_name[f], 1, self.max_rows) for f in model.feature_names]
        if len({len(c) for c in cols}) != 1:
            raise BadRequest("inputs per feature have different numbers of rows")
        return np.hstack(cols)

    def _requested(self, outputs: Any, model: ServedModel) -> tuple[str, ...]:
        if outputs is None:
            return (model.outputs[0],)
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and "name" in o for o in outputs):
            raise BadRequest("'outputs' must be a list of {\"name\": ...} objects")
        names = tuple(o["name"] for o in outputs)
        unknown = [n for n in names if n not in model.outputs]
        if unknown or not names:
            raise Unprocessable(f"model {model.name!r} has no output {unknown[0] if unknown else '(none)'!r}; "
                                f"outputs: {', '.join(model.outputs)}")
        return names

    async def _compute(self, model: ServedModel, X: np.ndarray, outputs: tuple[str, ...]) -> dict[str, Any]:
        if self.max_batch_size:
            batcher = model.batchers.get(outputs)
            if batcher is None:
                batcher = model.batchers[outputs] = AdaptiveBatcher(
                    lambda Xb: model.compute(Xb, outputs), self.max_batch_size, self.max_batch_time,
                    on_batch=None if self.on_batch is None else (lambda n: self.on_batch(model, n)))
            out = await batcher.submit(X)
        else:
            out = model.compute(X, outputs)
            if self.on_batch is not None:
                self.on_batch(model, len(X))
        if model.monitor is not None:
            model.monitor.observe(X, out.get(model.outputs[0]))
        return out

    async def infer(self, name: str, version: str | None, body: Any, headers: dict[str, str]
                    ) -> tuple[dict, ServedModel]:
        """V2 ``POST .../infer``."""
        if not isinstance(body, dict):
            raise BadRequest("the request must be a JSON object with 'inputs'")
        if "inputs" not in body:
            raise BadRequest("missing field 'inputs'")
        request_id = body.get("id")
        model = self.route(name, version, headers, request_id)
        try:
            X = self._decode_inputs(body["inputs"], model)
            outputs = self._requested(body.get("outputs"), model)
        except ServingError as exc:
            exc.model = model  # the transport labels the error with the model it was for
            raise
        out = await self._compute(model, X, outputs)
        response = {"model_name": model.name, "model_version": model.version,
                    "id": request_id if request_id is not None else os.urandom(8).hex(),
                    "outputs": [codecs.encode_tensor(n, out[n]) for n in outputs]}
        return response, model

    async def predict_v1(self, name: str | None, body: Any, headers: dict[str, str]) -> tuple[dict, ServedModel]:
        """V1 ``POST /v1/models/{name}:predict`` and ``POST /predict``: ``instances`` -> ``predictions``."""
        if not isinstance(body, dict) or "instances" not in body:
            raise BadRequest("the request must be a JSON object with 'instances'")
        model = self.route(name or self.default_name, None, headers)
        try:
            X = codecs.decode_instances(body["instances"], model.n_features, self.max_rows)
        except ServingError as exc:
            exc.model = model
            raise
        main = model.outputs[0]
        out = await self._compute(model, X, (main,))
        return {"predictions": out[main]}, model

    # --- metadata and readiness ----------------------------------------------------------------------
    def server_metadata(self) -> dict:
        from .. import __version__

        return {"name": "scaleml-dask", "version": __version__, "extensions": ["model_repository"]}

    def model_metadata(self, name: str, version: str | None) -> tuple[dict, ServedModel]:
        experiment = self.experiments.get(name)
        model = self.registry.get(experiment.variants[0] if experiment else name, version)
        meta = {"name": name, "versions": [model.version], "platform": "scaleml_dask",
                "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, model.n_features]}],
                "outputs": model.output_specs,
                "parameters": {"class": model.class_name, "feature_names": model.feature_names}}
        if experiment is not None:
            meta["parameters"]["variants"] = dict(zip(experiment.variants, experiment.weights))
        return meta, model

    def model_ready(self, name: str, version: str | None) -> dict:
        names = self.experiments[name].variants if name in self.experiments else (name,)
        for n in names:
            self.registry.get(n, version)
        return {"name": name, "ready": True}

    def v1_models(self) -> dict:
        return {"models": list(dict.fromkeys([*self.experiments, *self.registry.names()]))}

    def repository_index(self) -> list[dict]:
        served = {m.name: m for m in self.registry.served()}
        return [{"name": n, "version": served[n].version if n in served else None,
                 "state": "READY" if n in served else "UNAVAILABLE"} for n in self.registry.names()]

    async def load(self, name: str) -> ServedModel:
        """``POST /v2/repository/models/{name}/load``: load the newest version now (in a thread)."""
        return await asyncio.to_thread(self.registry.load, name)
