"""ONNX export of the models, built node by node with ``onnx.helper`` (extra ``onnx``).

Each estimator adds its own nodes (``_onnx_graph``, the capability protocol of ``scaleml_dask._deployable``); this
module keeps no list of estimator types. The graph of an estimator takes one input ``X`` (DOUBLE,
``[N, n_features]``) and computes in float64 what the model does:

- LinearRegression, Ridge, SGDRegressor: ``predict = X @ coef + intercept`` (``[N]``);
- PCA: ``transform = (X - mean_) @ W`` with ``W = components_.T`` (divided by ``sqrt(explained_variance_)``
  when whitening) (``[N, n_components]``);
- SGDClassifier: scores ``S = X @ coef_.T + intercept_``; ``predict`` = the class of ``S > 0`` (two
  classes) or of ``argmax S`` (one-vs-rest), and for ``log_loss`` ``predict_proba`` = ``[1 - σ(s), σ(s)]``
  or the normalised one-vs-rest sigmoids, as the estimator;
- KMeans, MiniBatchKMeans: squared distances ``‖x‖² − 2 x·c + ‖c‖²`` (one MatMul, clipped at 0, as the
  estimators compute them); ``predict`` = their ArgMin (INT64 ``[N]``), ``transform`` = their square root.

Outputs are named as everywhere in ``scaleml_dask.deploy`` (``predict``, ``predict_proba``, ``transform``).

A ``Pipeline`` of raw columns (``scaleml_dask.pipeline``) takes one input per column, ``[N, 1]``: STRING for a
categorical column (missing: ``""``), DOUBLE for the others (missing: NaN; booleans 0 / 1, date-times in
seconds since the epoch); ``onnx_inputs`` makes them from raw rows. One-hot encoding is ONNX-ML's
``OneHotEncoder`` over the fitted levels (and ``""``) followed by a 0/1 MatMul that places each level where the
fitted encoder does (dropped, infrequent and missing levels included); ordinal encoding is ONNX-ML's
``LabelEncoder``. Scaling and imputation are the standard ``Sub`` / ``Mul`` / ``Add`` / ``Where(IsNaN)`` operators
in double precision: ONNX-ML's ``Scaler`` and ``Imputer`` compute in float32 only (onnxruntime), which would move
predictions by ~1e-7 relative; in float64 the graph equals the pipeline to ~1e-12. A string target's labels come
out as STRING.

>>> import numpy as np
>>> from scaleml_dask import Ridge
>>> X = np.random.default_rng(0).normal(size=(100, 3)); m = Ridge().fit(X, X @ [1.0, 2.0, 3.0])
>>> import onnxruntime as ort
>>> sess = ort.InferenceSession(to_onnx(m).SerializeToString(), providers=["CPUExecutionProvider"])
>>> bool(np.allclose(sess.run(["predict"], {"X": X})[0], m.predict(X), rtol=1e-12))
True

A pipeline of raw columns:

>>> import pandas as pd
>>> from scaleml_dask.pipeline import make_pipeline
>>> from scaleml_dask.preprocessing import OneHotEncoder
>>> from scaleml_dask.compose import make_column_transformer
>>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "g": ["a", "b", "a", "b"]})
>>> pipe = make_pipeline(make_column_transformer((OneHotEncoder(drop="first"), ["g"]), remainder="passthrough"),
...                      Ridge(alpha=0.1)).fit(df, [1.0, 3.0, 3.0, 5.0])
>>> sess = ort.InferenceSession(to_onnx(pipe).SerializeToString(), providers=["CPUExecutionProvider"])
>>> bool(np.allclose(sess.run(["predict"], onnx_inputs(pipe, df))[0], pipe.predict(df), rtol=1e-12))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Opset and IR version chosen for onnxruntime >= 1.31 (the graph uses only long-standing operators).
OPSET = 17
IR_VERSION = 8


class Graph:
    """What an estimator's ``_onnx_graph(g, X)`` builds with (the capability protocol of
    ``scaleml_dask._deployable``): ``node`` adds an operator and returns its output's name, ``const`` an
    initializer, ``output`` declares a graph output (element types by name: "DOUBLE", "INT64", "STRING"). Names are
    prefixed by ``prefix`` (a pipeline's steps each have their own), but for the declared outputs."""

    def __init__(self, prefix: str = "", parent: Graph | None = None) -> None:
        self.prefix = prefix
        root = parent if parent is not None else self
        self.nodes: list = root.nodes if parent is not None else []
        self.inits: list = root.inits if parent is not None else []
        self.inputs: list = root.inputs if parent is not None else []
        self.outputs: list = root.outputs if parent is not None else []
        self.names: set[str] = root.names if parent is not None else set()
        self.declare = parent.declare if parent is not None else True

    def scope(self, prefix: str, declare: bool = True) -> Graph:
        """A view adding to the same graph with names under ``prefix`` (outputs declared only if ``declare``)."""
        g = Graph(self.prefix + prefix, self)
        g.declare = self.declare and declare
        return g

    def _name(self, name: str) -> str:
        full = name if name in _OUTPUTS and self.declare else self.prefix + name
        while full in self.names:
            full += "'"
        self.names.add(full)
        return full

    def const(self, name: str, value: Any) -> str:
        from onnx import numpy_helper

        a = np.asarray(value)
        a = np.ascontiguousarray(a) if a.dtype.kind != "O" else a
        full = self._name(name)
        self.inits.append(numpy_helper.from_array(a, full))
        return full

    def node(self, op: str, inputs: list[str], output: str, *, domain: str = "", **attrs: Any) -> str:
        from onnx import helper

        if isinstance(attrs.get("to"), str):
            attrs["to"] = _elem(attrs["to"])
        full = self._name(output)
        self.nodes.append(helper.make_node(op, inputs, [full], name=full, domain=domain, **attrs))
        return full

    def input(self, name: str, elem: str, shape: list) -> str:
        from onnx import helper

        self.names.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, _elem(elem), shape))
        return name

    def output(self, name: str, elem: str, shape: list) -> None:
        from onnx import helper

        if self.declare:
            self.outputs.append(helper.make_tensor_value_info(name, _elem(elem), shape))

    def model(self, name: str) -> Any:
        import onnx
        from onnx import helper

        graph = helper.make_graph(self.nodes, name, self.inputs, self.outputs, initializer=self.inits)
        opsets = [helper.make_opsetid("", OPSET)]
        if any(n.domain == ML_DOMAIN for n in self.nodes):
            opsets.append(helper.make_opsetid(ML_DOMAIN, ML_OPSET))
        proto = helper.make_model(graph, producer_name="scaleml_dask", opset_imports=opsets)
        proto.ir_version = IR_VERSION
        onnx.checker.check_model(proto, full_check=True)
        return proto


#: the graph outputs (named as everywhere in ``scaleml_dask.deploy``)
_OUTPUTS = ("predict", "predict_proba", "transform")
ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3


def _elem(name: str) -> int:
    from onnx import TensorProto

    return getattr(TensorProto, name)


def to_onnx(model: Any) -> Any:
    """The ``onnx.ModelProto`` computing ``model``'s outputs: from a float64 input ``X``, or for a pipeline of raw
    columns from one input per column (``onnx_inputs`` makes them from raw rows)."""
    if hasattr(model, "_onnx_table_graph"):
        g = Graph()
        model._onnx_table_graph(g)
        return g.model(f"scaleml_dask.{type(model).__name__}")
    if not hasattr(model, "_onnx_graph"):
        raise ValueError(f"cannot export a {type(model).__name__} to ONNX: it has no ONNX graph (estimators with one "
                         "define _onnx_graph, scaleml_dask._deployable)")
    if not hasattr(model, "n_features_in_"):
        raise ValueError(f"this {type(model).__name__} is not fitted; fit it first")
    g = Graph()
    model._onnx_graph(g, g.input("X", "DOUBLE", ["N", int(model.n_features_in_)]))
    return g.model(f"scaleml_dask.{type(model).__name__}")


def onnx_inputs(model: Any, rows: Any) -> dict[str, np.ndarray]:
    """The inputs of a pipeline's ONNX graph for raw rows (a pandas DataFrame, a dict of columns, a list of row
    dicts): one ``[N, 1]`` array per column, strings for categories (``""`` missing, unknown levels as given),
    float64 for the others (NaN missing; booleans 0 / 1, date-times in seconds since the epoch)."""
    schema = model.input_schema_
    c = schema.canonical(rows)
    out = {}
    for col in schema:
        v = c.columns[col.name]
        if col.kind == "categorical":  # codes: >= 0 a level, -1 missing, -2 - i the i-th unknown level
            table = np.array([*col.levels, "", *c.unknown.get(col.name, [])], dtype=object)
            n = len(col.levels)
            v = table[np.where(v >= 0, v, np.where(v == -1, n, n - 1 - v))]
        out[col.name] = np.asarray(v).reshape(-1, 1)
    return out
