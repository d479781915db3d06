"""ONNX export of the linear models and PCA, built node by node with ``onnx.helper`` (extra ``onnx``).

The graph takes one input ``X`` (DOUBLE, ``[N, n_features]``) and computes in float64 what the model does:

- LinearRegression, Ridge, SGDRegressor: ``predict = X @ coef + intercept`` (``[N]``);
- PCA: ``transform = (X - mean_) @ W`` with ``W = components_.T`` (divided by ``sqrt(explained_variance_)``
  when whitening) (``[N, n_components]``);
- SGDClassifier: scores ``S = X @ coef_.T + intercept_``; ``predict`` = the class of ``S > 0`` (two
  classes) or of ``argmax S`` (one-vs-rest), and for ``log_loss`` ``predict_proba`` = ``[1 - σ(s), σ(s)]``
  or the normalised one-vs-rest sigmoids, as the estimator;
- KMeans, MiniBatchKMeans: squared distances ``‖x‖² − 2 x·c + ‖c‖²`` (one MatMul, clipped at 0, as the
  estimators compute them); ``predict`` = their ArgMin (INT64 ``[N]``), ``transform`` = their square root.

Outputs are named as everywhere in ``scaleml_dask.deploy`` (``predict``, ``predict_proba``, ``transform``).

>>> import numpy as np
>>> from scaleml_dask import Ridge
>>> X = np.random.default_rng(0).normal(size=(100, 3)); m = Ridge().fit(X, X @ [1.0, 2.0, 3.0])
>>> import onnxruntime as ort
>>> sess = ort.InferenceSession(to_onnx(m).SerializeToString(), providers=["CPUExecutionProvider"])
>>> bool(np.allclose(sess.run(["predict"], {"X": X})[0], m.predict(X), rtol=1e-12))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Opset and IR version chosen for onnxruntime >= 1.31 (the graph uses only long-standing operators).
OPSET = 17
IR_VERSION = 8


def to_onnx(model: Any) -> Any:
    """The ``onnx.ModelProto`` computing ``model``'s outputs from a float64 input ``X``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..kmeans import KMeans
    from ..linear import LinearRegression, Ridge
    from ..online import MiniBatchKMeans
    from ..pca import PCA
    from ..sgd import SGDClassifier, SGDRegressor
    from ..validation import check_is_fitted, check_learned

    clusterer = isinstance(model, (KMeans, MiniBatchKMeans))
    if not clusterer and not isinstance(model, (LinearRegression, Ridge, PCA, SGDRegressor, SGDClassifier)):
        raise ValueError(f"cannot export a {type(model).__name__} to ONNX: supported are LinearRegression, "
                         "Ridge, PCA, SGDRegressor, SGDClassifier, KMeans and MiniBatchKMeans")
    attribute = "cluster_centers_" if clusterer else "components_" if isinstance(model, PCA) else "coef_"
    (check_learned if isinstance(model, MiniBatchKMeans) else check_is_fitted)(model, attribute)
    d = int(model.n_features_in_)
    nodes: list = []
    inits: list = []
    outputs: list = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def declare(name: str, elem: int, shape: list) -> None:
        outputs.append(helper.make_tensor_value_info(name, elem, shape))

    if clusterer:
        _clusterer(model, node, const, declare)
    elif isinstance(model, PCA):
        W = model.components_.T / (np.sqrt(model.explained_variance_) if model.whiten else 1.0)
        centered = node("Sub", ["X", const("mean", model.mean_.astype(np.float64))], "centered")
        node("MatMul", [centered, const("W", np.ascontiguousarray(W, dtype=np.float64))], "transform")
        declare("transform", TensorProto.DOUBLE, ["N", W.shape[1]])
    else:
        coef = np.asarray(model.coef_, dtype=np.float64)
        W = coef.reshape(-1, 1) if coef.ndim == 1 else coef.T
        b = np.asarray(model.intercept_, dtype=np.float64).reshape(-1)
        scores = node("Add", [node("MatMul", ["X", const("W", np.ascontiguousarray(W))], "XW"), const("b", b)],
                      "scores")
        if not isinstance(model, SGDClassifier):
            node("Reshape", [scores, const("flat", np.array([-1], dtype=np.int64))], "predict")
            declare("predict", TensorProto.DOUBLE, ["N"])
        else:
            _classifier(model, scores, node, const, declare)
    graph = helper.make_graph(nodes, f"scaleml_dask.{type(model).__name__}", [
        helper.make_tensor_value_info("X", TensorProto.DOUBLE, ["N", d])], outputs, initializer=inits)
    proto = helper.make_model(graph, producer_name="scaleml_dask", opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _classifier(model: Any, scores: str, node: Any, const: Any, declare: Any) -> None:
    from onnx import TensorProto

    classes = np.asarray(model.classes_)
    if classes.dtype.kind in "iub":  # the SGD models take numeric labels only
        classes, elem = classes.astype(np.int64), TensorProto.INT64
    else:
        classes, elem = classes.astype(np.float64), TensorProto.DOUBLE
    labels = const("classes", classes)
    binary = len(classes) == 2
    if binary:
        s = node("Reshape", [scores, const("flat", np.array([-1], dtype=np.int64))], "s")
        positive = node("Greater", [s, const("zero", np.array(0.0))], "positive")
        index = node("Cast", [positive], "index", to=TensorProto.INT64)
    else:
        index = node("ArgMax", [scores], "index", axis=1, keepdims=0)
    node("Gather", [labels, index], "predict", axis=0)
    declare("predict", elem, ["N"])
    if model.loss != "log_loss":
        return
    p = node("Sigmoid", [scores], "sigmoid")
    if binary:
        node("Concat", [node("Sub", [const("one", np.array(1.0)), p], "p0"), p], "predict_proba", axis=1)
    else:
        total = node("ReduceSum", [p, const("axis1", np.array([1], dtype=np.int64))], "total", keepdims=1)
        node("Div", [p, total], "predict_proba")
    declare("predict_proba", TensorProto.DOUBLE, ["N", len(classes)])


def _clusterer(model: Any, node: Any, const: Any, declare: Any) -> None:
    from onnx import TensorProto

    C = np.ascontiguousarray(model.cluster_centers_, dtype=np.float64)
    axis1 = const("axis1", np.array([1], dtype=np.int64))
    x_sq = node("ReduceSum", [node("Mul", ["X", "X"], "XX"), axis1], "x_sq", keepdims=1)
    cross = node("MatMul", ["X", const("minus_2CT", np.ascontiguousarray(-2.0 * C.T))], "cross")
    d2 = node("Add", [node("Add", [cross, x_sq], "partial"), const("c_sq", np.einsum("ij,ij->i", C, C))], "d2_raw")
    d2 = node("Max", [d2, const("zero", np.array(0.0))], "d2")
    node("ArgMin", [d2], "predict", axis=1, keepdims=0)
    declare("predict", TensorProto.INT64, ["N"])
    node("Sqrt", [d2], "transform")
    declare("transform", TensorProto.DOUBLE, ["N", len(C)])
