"""The protocol-agnostic dataplane: infer, metadata, readiness, A/B routing and the repository actions.

It takes parsed requests (dicts, headers) and returns dicts; it knows nothing of HTTP. Transport-independent
errors are raised as :mod:`._errors` classes. Model calls run in the inference threads (:mod:`._workers`),
never on the event loop; requests are bounded by :class:`~scaleml_dask.deploy.limits.Limits` (rows, outputs,
the response's size) before the work they would cost, and an output that is not finite is refused by name.
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
from . import _tables
from ._batching import AdaptiveBatcher
from ._errors import BadRequest, NotFound, ServingError, TooLarge, Unprocessable
from ._models import ModelRegistry, ServedModel
from ._workers import InferencePool
from .limits import DEFAULT, Limits

#: Bytes of JSON per value of a response, at most (a float64 in orjson's shortest form, a comma), for the
#: response-size check before a model is called.
BYTES_PER_VALUE = 24


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
                 limits: Limits = DEFAULT, pool: InferencePool | None = None, max_batch_size: int | None = None,
                 max_batch_time: float = 0.002, on_batch: Any = None) -> None:
        self.registry = registry
        self.experiments = experiments or {}
        self.limits = limits
        self.pool = pool if pool is not None else InferencePool(limits.inference_threads, limits.max_queue)
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
            key = headers.get("x-routing-key", key)
            name = experiment.choose(headers.get("x-variant"), key)
        return self.registry.get(name, version)

    # --- inference -----------------------------------------------------------------------------------
    def _decode_inputs(self, inputs: Any, model: ServedModel, booleans: bool) -> Any:
        if model.schema is not None:  # raw columns, one input per column
            return _tables.decode_columns(inputs, model.schema, self.limits.max_rows)[0]
        if not isinstance(inputs, list) or not inputs:
            raise BadRequest("'inputs' must be a non-empty list of tensors")
        rows = self.limits.max_rows
        if len(inputs) == 1:  # a single-input model takes an input of any name, as MLServer does
            return codecs.decode_tensor(inputs[0], model.n_features, rows, booleans=booleans)
        # one input per feature, by feature name (columns in the model's order)
        by_name = {t.get("name"): t for t in inputs if isinstance(t, dict) and type(t.get("name")) is str}
        missing = [f for f in model.feature_names if f not in by_name]
        if missing or len(inputs) != model.n_features:
            raise Unprocessable(f"{len(inputs)} inputs: give one input with all {model.n_features} features, or "
                                f"one per feature named {model.feature_names[:20]}; missing {missing[:5]}")
        cols = [codecs.decode_tensor(by_name[f], 1, rows, booleans=booleans) for f in model.feature_names]
        if len({len(c) for c in cols}) != 1:
            raise BadRequest("inputs per feature have different numbers of rows")
        return np.hstack(cols)

    def _requested(self, outputs: Any, model: ServedModel) -> tuple[str, ...]:
        """The outputs asked for, each once, in the order asked (default: the main one)."""
        if outputs is None:
            return (model.outputs[0],)
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and type(o.get("name")) is str
                                                    for o in outputs):
            raise BadRequest("'outputs' must be a list of {\"name\": ...} objects")
        if len(outputs) > self.limits.max_outputs:
            raise TooLarge(f"'outputs' lists {len(outputs)} entries; the limit is {self.limits.max_outputs} (the "
                           f"model has {len(model.outputs)} outputs)")
        names = tuple(dict.fromkeys(o["name"] for o in outputs))
        unknown = [n for n in names if n not in model.outputs]
        if unknown or not names:
            raise Unprocessable(f"model {model.name!r} has no output {unknown[0][:60] if unknown else '(none)'!r}; "
                                f"outputs: {', '.join(model.outputs)}")
        return names

    def _check_response_size(self, model: ServedModel, rows: int, outputs: tuple[str, ...]) -> None:
        values = rows * sum(model.width(o) for o in outputs)
        estimate = BYTES_PER_VALUE * values + 256
        if estimate > self.limits.max_response_bytes:
            raise TooLarge(f"the response would hold {values:,} values (up to {estimate:,} bytes); the limit is "
                           f"{self.limits.max_response_bytes:,} bytes: ask for fewer rows or outputs")

    async def _compute(self, model: ServedModel, X: Any, outputs: tuple[str, ...]) -> dict[str, Any]:
        table = model.schema is not None  # X: {column: values}
        rows = len(next(iter(X.values()))) if table else len(X)
        self._check_response_size(model, rows, outputs)
        key = tuple(o for o in model.outputs if o in outputs)  # one batcher per subset of the model's outputs
        if self.max_batch_size:
            batcher = model.batchers.get(key)
            if batcher is None:
                batcher = model.batchers[key] = AdaptiveBatcher(
                    lambda Xb: self.pool.run(model.compute, Xb, key), self.max_batch_size, self.max_batch_time,
                    on_batch=None if self.on_batch is None else (lambda n: self.on_batch(model, n)),
                    concurrency=self.pool.threads)
            out = await batcher.submit(X)
        else:  # a call cheaper than a hand-off to a thread runs on the event loop
            out = model.timed_compute(X, key) if model.cheap(rows) else await self.pool.run(model.timed_compute, X, key)
            if self.on_batch is not None:
                self.on_batch(model, rows)
        if model.monitor is not None:
            watched = _watched(model, X) if table else X
            if watched is not None:
                model.monitor.observe(watched, out.get(model.outputs[0]))  # never raises
        for name in outputs:
            a = out[name]
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                row = int(np.argwhere(~np.isfinite(a))[0][0])
                raise Unprocessable(f"output {name!r} is not finite for row {row}: its inputs are out of the range "
                                    "the model computes in")
        return out

    @staticmethod
    def _request_id(body: dict, limit: int) -> str | None:
        request_id = body.get("id")
        if request_id is not None and (type(request_id) is not str or len(request_id) > limit):
            raise BadRequest(f"'id' must be a string of at most {limit} characters; got "
                             f"{type(request_id).__name__}")
        parameters = body.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise BadRequest("'parameters' must be an object")
        return request_id

    async def infer(self, name: str, version: str | None, body: Any, headers: dict[str, str],
                    booleans: bool = True) -> tuple[dict, ServedModel]:
        """V2 ``POST .../infer``. ``booleans=False`` says the body holds no JSON true / false."""
        if not isinstance(body, dict):
            raise BadRequest("the request must be a JSON object with 'inputs'")
        if "inputs" not in body:
            raise BadRequest("missing field 'inputs'")
        request_id = self._request_id(body, self.limits.max_id_chars)
        model = self.route(name, version, headers, request_id)
        model.in_flight += 1
        try:
            X = self._decode_inputs(body["inputs"], model, booleans)
            outputs = self._requested(body.get("outputs"), model)
            out = await self._compute(model, X, outputs)
        except ServingError as exc:
            exc.model = model  # the transport labels the error with the model it was for
            raise
        finally:
            model.in_flight -= 1
        response = {"model_name": model.name, "model_version": model.version,
                    "id": request_id if request_id is not None else os.urandom(8).hex(),
                    "outputs": [codecs.encode_tensor(n, out[n]) for n in outputs]}
        return response, model

    async def predict_v1(self, name: str | None, body: Any, headers: dict[str, str]) -> tuple[dict, ServedModel]:
        """V1 ``POST /v1/models/{name}:predict`` and ``POST /predict``: ``instances`` -> ``predictions``."""
        if not isinstance(body, dict) or "instances" not in body:
            raise BadRequest("the request must be a JSON object with 'instances'")
        model = self.route(name or self.default_name, None, headers)
        model.in_flight += 1
        try:
            if model.schema is not None:  # records {column: value}
                X = _tables.decode_records(body["instances"], model.schema, self.limits.max_rows)[0]
            else:
                X = codecs.decode_instances(body["instances"], model.n_features, self.limits.max_rows)
            main = model.outputs[0]
            out = await self._compute(model, X, (main,))
        except ServingError as exc:
            exc.model = model
            raise
        finally:
            model.in_flight -= 1
        predictions = out[main]
        return {"predictions": predictions.tolist() if predictions.dtype.kind == "O" else predictions}, model

    # --- metadata and readiness ----------------------------------------------------------------------
    def server_metadata(self) -> dict:
        from .. import __version__

        return {"name": "scaleml-dask", "version": __version__, "extensions": ["model_repository"]}

    def model_metadata(self, name: str, version: str | None) -> tuple[dict, ServedModel]:
        experiment = self.experiments.get(name)
        model = self.registry.get(experiment.variants[0] if experiment else name, version)
        inputs = _tables.input_specs(model.schema) if model.schema is not None else [
            {"name": "input-0", "datatype": "FP64", "shape": [-1, model.n_features]}]
        meta = {"name": name, "versions": [model.version], "platform": "scaleml_dask", "inputs": inputs,
                "outputs": model.output_specs,
                "parameters": {"class": model.class_name, "feature_names": model.feature_names}}
        if model.schema is not None:
            meta["parameters"]["content_type"] = "pd"  # raw columns: MLServer's pandas codec's request form
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
        index = []
        for n in self.registry.names():
            state, reason = self.registry.state(n)
            entry = {"name": n, "version": served[n].version if n in served else None,
                     "state": "READY" if state == "READY" else "UNAVAILABLE"}
            if reason is not None:
                entry["reason"] = reason
            index.append(entry)
        return index

    async def load(self, name: str) -> ServedModel:
        """``POST /v2/repository/models/{name}/load``: load the newest version now (in a thread)."""
        return await asyncio.to_thread(self.registry.load, name)


def _watched(model: ServedModel, columns: dict) -> np.ndarray | None:
    """The monitored columns of numbers of a request's raw rows (None if they cannot be read: never an error)."""
    try:
        return _tables.monitored(model.schema, columns, model.monitored)
    except Exception:  # noqa: BLE001 - monitoring must not fail the request it watches
        return None
