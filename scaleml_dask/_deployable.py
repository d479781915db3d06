"""The capability protocol that plugs an estimator into deployment once: state, weights, an ONNX graph.

``scaleml_dask.deploy`` keeps no list of estimator types; it asks the estimator what it can do:

- **State** (``deploy.registry``): every estimator listed in ``deploy._loadable.CLASSES`` is saved as its
  hyperparameters and its state — ``_saved_state()`` when the class defines it, else its fitted attributes —
  as arrays and JSON; estimators nested in either (a pipeline's steps, a ``ColumnTransformer``'s transformers)
  are saved the same way. On load, ``_check_restored_state()`` (optional) returns what is inconsistent in a
  restored state (a problem string, or None) before anything computes with it.
- **Weights** (``deploy.compress``): ``_compress_kind`` says how predictions read the weight matrix — ``"linear"``
  (``x @ W + b``), ``"centred"`` (``(x - mean_) @ W``, PCA), ``"distances"`` (to the columns of ``W``, clusterers);
  ``_weights()`` gives ``W`` (n_features, n_outputs) and ``_set_weights(W, scale)`` writes it wherever the
  predictions read it, returning ``{attribute path: (its int8 scale or None, rows kept in float64)}`` so that the
  registry stores each compressed copy (``scale`` is the per-output ``(1, n_outputs)`` scale, or None).
- **ONNX** (``deploy.onnx``): ``_onnx_graph(g, X)`` adds the nodes computing the outputs from the float64
  tensor named ``X`` to the graph builder ``g`` (``g.node``, ``g.const``, ``g.output``; ``deploy.onnx.Graph``).

The mixins below give the protocol to the estimators that share a form. A new estimator plugs in by adding its
row to ``deploy._loadable.CLASSES`` and, where it has them, these methods.

>>> import numpy as np
>>> from scaleml_dask import Ridge
>>> m = Ridge().fit(np.eye(3), [1.0, 2.0, 3.0])
>>> m._compress_kind, m._weights().shape
('linear', (3, 1))
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


class CSRMatrix:
    """A ``scipy.sparse`` matrix in a model's state (``SparseRandomProjection.components_``) as the registry stores
    it: its CSR arrays and shape (a value of ``deploy._loadable.VALUES``), rebuilt as a CSR matrix whose every
    index is checked before anything multiplies by it."""

    def __init__(self, matrix: Any) -> None:
        self.matrix = matrix.tocsr()

    def _saved_state(self) -> dict[str, Any]:
        m = self.matrix
        return {"data": m.data, "indices": m.indices, "indptr": m.indptr, "shape": list(m.shape)}

    @classmethod
    def _from_saved_state(cls, state: dict[str, Any]) -> Any:
        import scipy.sparse as sp

        data, indices, indptr, shape = (state[k] for k in ("data", "indices", "indptr", "shape"))
        if not (all(isinstance(a, np.ndarray) and a.ndim == 1 for a in (data, indices, indptr))
                and data.dtype.kind == "f" and indices.dtype.kind == indptr.dtype.kind == "i"
                and isinstance(shape, list) and len(shape) == 2 and all(type(v) is int and v >= 0 for v in shape)):
            raise ValueError("a CSR matrix needs float data, integer indices and indptr (1-d) and a shape of two sizes")
        m = sp.csr_matrix((data, indices, indptr), shape=tuple(shape))
        m.check_format(full_check=True)  # indptr monotone and of n_rows + 1, every index inside the shape
        return m


def _fitted(model: Any, attribute: str) -> None:
    if not hasattr(model, attribute):
        raise ValueError(f"this {type(model).__name__} is not fitted; fit it first")


def _scaled(scale: np.ndarray | None, how: Any) -> np.ndarray | None:
    return None if scale is None else how(scale)


class LinearWeights:
    """``predict = x @ coef_ + intercept_`` (LinearRegression, Ridge, RidgeCV)."""

    _compress_kind: ClassVar[str] = "linear"

    def _weights(self) -> np.ndarray:
        _fitted(self, "coef_")
        return np.asarray(self.coef_, dtype=np.float64).reshape(-1, 1).copy()

    def _set_weights(self, W: np.ndarray, scale: np.ndarray | None) -> dict[str, tuple]:
        self.coef_ = W[:, 0].copy()
        return {"coef_": (_scaled(scale, lambda s: s[0]), 0)}

    def _onnx_graph(self, g: Any, X: str) -> None:
        _fitted(self, "coef_")
        W = np.asarray(self.coef_, dtype=np.float64).reshape(-1, 1)
        scores = g.node("Add", [g.node("MatMul", [X, g.const("W", W)], "XW"),
                                g.const("b", np.asarray(self.intercept_, dtype=np.float64).reshape(-1))], "scores")
        g.node("Reshape", [scores, g.const("flat", np.array([-1], dtype=np.int64))], "predict")
        g.output("predict", "DOUBLE", ["N"])


class ComponentWeights:
    """``transform = (x - mean_) @ components_.T`` (divided by ``sqrt(explained_variance_)`` when whitening)."""

    _compress_kind: ClassVar[str] = "centred"

    def _weights(self) -> np.ndarray:
        _fitted(self, "components_")
        return self.components_.T.copy()

    def _set_weights(self, W: np.ndarray, scale: np.ndarray | None) -> dict[str, tuple]:
        self.components_ = np.ascontiguousarray(W.T)
        return {"components_": (_scaled(scale, lambda s: s.T), 0)}

    def _onnx_graph(self, g: Any, X: str) -> None:
        _fitted(self, "components_")
        W = self.components_.T / (np.sqrt(self.explained_variance_) if self.whiten else 1.0)
        centred = g.node("Sub", [X, g.const("mean", self.mean_.astype(np.float64))], "centered")
        g.node("MatMul", [centred, g.const("W", W)], "transform")
        g.output("transform", "DOUBLE", ["N", W.shape[1]])


class CentreWeights:
    """Distances to ``cluster_centers_`` (KMeans, MiniBatchKMeans): ``W = cluster_centers_.T``."""

    _compress_kind: ClassVar[str] = "distances"

    def _weights(self) -> np.ndarray:
        _fitted(self, "cluster_centers_")
        return self.cluster_centers_.T.copy()

    def _set_weights(self, W: np.ndarray, scale: np.ndarray | None) -> dict[str, tuple]:
        self.cluster_centers_ = np.ascontiguousarray(W.T)
        return {"cluster_centers_": (_scaled(scale, lambda s: s.T), 0)}

    def _onnx_graph(self, g: Any, X: str) -> None:
        """Squared distances ``‖x‖² − 2 x·c + ‖c‖²`` (one MatMul, clipped at 0, as the estimators compute them):
        ``predict`` their ArgMin, ``transform`` their square root."""
        _fitted(self, "cluster_centers_")
        C = np.asarray(self.cluster_centers_, dtype=np.float64)
        axis1 = g.const("axis1", np.array([1], dtype=np.int64))
        x_sq = g.node("ReduceSum", [g.node("Mul", [X, X], "XX"), axis1], "x_sq", keepdims=1)
        cross = g.node("MatMul", [X, g.const("minus_2CT", -2.0 * C.T)], "cross")
        d2 = g.node("Add", [g.node("Add", [cross, x_sq], "partial"), g.const("c_sq", np.einsum("ij,ij->i", C, C))],
                    "d2_raw")
        d2 = g.node("Max", [d2, g.const("zero", np.array(0.0))], "d2")
        g.node("ArgMin", [d2], "predict", axis=1, keepdims=0)
        g.output("predict", "INT64", ["N"])
        g.node("Sqrt", [d2], "transform")
        g.output("transform", "DOUBLE", ["N", len(C)])


class SGDWeights:
    """The SGD models: scores ``x @ W + b`` from the trainer's state ``_state.W`` (its last row the intercept,
    kept float64), mirrored in ``coef_``."""

    _compress_kind: ClassVar[str] = "linear"

    def _weights(self) -> np.ndarray:
        _fitted(self, "coef_")
        return self._state.W[:-1].copy()

    def _set_weights(self, W: np.ndarray, scale: np.ndarray | None) -> dict[str, tuple]:
        st = self._state
        st.W = np.vstack([W, st.W[-1:]])
        declared = {"_state.W": (scale, 1)}
        if np.ndim(self.coef_) == 1:  # regressor: (n_features,); classifiers (n_outputs, n_features)
            self.coef_ = st.W[:-1, 0].copy()
            declared["coef_"] = (_scaled(scale, lambda s: s[0]), 0)
        else:
            self.coef_ = st.W[:-1].T.copy()
            declared["coef_"] = (_scaled(scale, lambda s: s.T), 0)
        return declared

    def _scorer(self) -> Any:
        """The callable giving the scores ``x @ W + b`` from the weights as compressed (int8 codes, pruned
        non-zeros: ``scaleml_dask._compact_weights``), or float64."""
        from ._compact_weights import scorer

        return scorer(self._state.W, (self.__dict__.get("quantization_") or {}).get("_state.W"))

    def _onnx_graph(self, g: Any, X: str) -> None:
        """Scores ``S = x @ coef_.T + intercept_``; a classifier's ``predict`` the class of ``S > 0`` (two
        classes) or of ``argmax S``, and for ``log_loss`` ``predict_proba`` as the estimator computes it."""
        _fitted(self, "coef_")
        coef = np.asarray(self.coef_, dtype=np.float64)
        W = coef.reshape(-1, 1) if coef.ndim == 1 else coef.T
        b = np.asarray(self.intercept_, dtype=np.float64).reshape(-1)
        scores = g.node("Add", [g.node("MatMul", [X, g.const("W", W)], "XW"), g.const("b", b)], "scores")
        flat = g.const("flat", np.array([-1], dtype=np.int64))
        if not hasattr(self, "classes_"):
            g.node("Reshape", [scores, flat], "predict")
            g.output("predict", "DOUBLE", ["N"])
            return
        classes = np.asarray(self.classes_)
        elem = "INT64" if classes.dtype.kind in "iub" else "DOUBLE" if classes.dtype.kind == "f" else "STRING"
        labels = g.const("classes", classes.astype({"INT64": np.int64, "DOUBLE": np.float64, "STRING": object}[elem]))
        binary = len(classes) == 2
        if binary:
            positive = g.node("Greater", [g.node("Reshape", [scores, flat], "s"), g.const("zero", np.array(0.0))],
                              "positive")
            index = g.node("Cast", [positive], "index", to="INT64")
        else:
            index = g.node("ArgMax", [scores], "index", axis=1, keepdims=0)
        g.node("Gather", [labels, index], "predict", axis=0)
        g.output("predict", elem, ["N"])
        if self.loss != "log_loss":
            return
        p = g.node("Sigmoid", [scores], "sigmoid")
        if binary:
            g.node("Concat", [g.node("Sub", [g.const("one", np.array(1.0)), p], "p0"), p], "predict_proba", axis=1)
        else:
            total = g.node("ReduceSum", [p, g.const("axis1", np.array([1], dtype=np.int64))], "total", keepdims=1)
            g.node("Div", [p, total], "predict_proba")
        g.output("predict_proba", "DOUBLE", ["N", len(classes)])
