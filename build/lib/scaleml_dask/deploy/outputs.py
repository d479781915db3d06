"""What a model outputs, by the names the registry, the scorer and the server share.

``predict`` (values or labels; a clusterer's nearest centre), ``predict_proba`` (class probabilities) and
``transform`` (components; a clusterer's distances to its centres), as MLServer's scikit-learn runtime names
them. Batch estimators have ``predict`` / ``predict_proba`` / ``transform``; online learners ``predict_many`` /
``predict_proba_many`` / ``transform_many``; drift detectors output nothing.

>>> import numpy as np
>>> from scaleml_dask import LinearRegression
>>> m = LinearRegression(fit_intercept=False).fit(np.eye(3), [1.0, 2.0, 3.0])
>>> output_names(m), apply(m, "predict", np.eye(3)).round(6).tolist()
(['predict'], [1.0, 2.0, 3.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Output name -> the methods that compute it on a numpy block, tried in order.
METHODS = {
    "predict": ("predict", "predict_many"),
    "predict_proba": ("predict_proba", "predict_proba_many"),
    "transform": ("transform", "transform_many"),
}


def _method(model: Any, output: str) -> Any:
    for name in METHODS[output]:
        fn = getattr(model, name, None)
        if fn is not None:
            return fn
    return None


def probe_input(model: Any) -> Any:
    """One row ``model`` takes: zeros for a model of numbers; for a model of raw columns (``input_schema_``: a
    pipeline, a table transformer) a one-row dict — 0 for numbers and date-times, false, the first level, the
    empty document."""
    schema = getattr(model, "input_schema_", None) if hasattr(model, "_table_needs") else None
    if schema is None:
        return np.zeros((1, int(model.n_features_in_)))
    first = {"numeric": 0.0, "datetime": 0.0, "boolean": False, "text": ""}
    return {c.name: [c.levels[0] if c.kind == "categorical" else first[c.kind]] for c in schema}


def output_names(model: Any) -> list[str]:
    """The outputs ``model`` computes, main one first (``predict`` where it exists, else ``transform``).

    An output counts only if it works: ``SGDClassifier(loss="hinge").predict_proba`` raises, so it is not one.
    """
    d = getattr(model, "n_features_in_", None)
    if d is None:
        return []
    probe = probe_input(model)
    names = []
    for output in METHODS:
        fn = _method(model, output)
        if fn is None:
            continue
        try:
            fn(probe)
        except AttributeError:
            continue
        names.append(output)
    return names


def apply(model: Any, output: str, X: np.ndarray) -> np.ndarray:
    """Output ``output`` of ``model`` on the numpy block ``X`` (rows), as a numpy array."""
    if output not in METHODS:
        raise ValueError(f"unknown output {output!r}; choose among {list(METHODS)}")
    fn = _method(model, output)
    if fn is None:
        raise ValueError(f"{type(model).__name__} has no output {output!r}")
    return np.asarray(fn(X))
