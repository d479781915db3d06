"""Smaller models at a measured cost: int8 / float16 quantization and magnitude pruning of the weights.

Held-out rows may be a CSR matrix (a model over 2**20 hashed text features): they stay sparse, never densified.

Every supported model is a linear map of its input: ``scores = x @ W + b`` with ``W`` of shape
``(n_features, n_outputs)`` — ``coef_`` (LinearRegression, Ridge, RidgeCV), the weights of the SGD models (one column
per output; the intercept ``b`` stays float64), ``components_.T`` for PCA (applied to ``x - mean_``, divided by
``sqrt(explained_variance_)`` when whitening) — or a clusterer (KMeans, MiniBatchKMeans) whose ``W`` is
``cluster_centers_.T``, one column (and one int8 scale) per centre. The estimators say where they keep ``W``
(``_weights`` / ``_set_weights``, the capability protocol of ``scaleml_dask._deployable``); of a ``Pipeline`` the
final estimator is compressed, the held-out raw rows going through its preprocessing.

**int8** (symmetric, zero point 0, one scale per output column ``k``): ``s_k = max_j |W_jk| / 127``,
``q_jk = round(W_jk / s_k)`` in [-127, 127], and the model computes with ``W'_jk = q_jk s_k`` (float64). The
registry stores ``q`` as int8 with the scales and dequantizes at load, so the loaded model is bitwise the
in-memory one. **Bound**: rounding to the nearest integer gives ``|W_jk - W'_jk| <= s_k / 2``, so for each
row ``x`` and output ``k``

    |Δ score_k| = |Σ_j x_j (W_jk - W'_jk)| <= Σ_j |x_j| |W_jk - W'_jk| <= (s_k / 2) Σ_j |x_j|

(with ``x - mean_`` in place of ``x`` for PCA, and divided by ``sqrt(explained_variance_k)`` when
whitening); ``prediction_bound`` evaluates it. Probabilities move less: the logistic sigmoid is
1/4-Lipschitz, so a binary classifier's ``|Δp| <= (s / 8) Σ_j |x_j|``. A clusterer's distances move by at
most the move of the centre (triangle inequality): ``|Δ ‖x - c_k‖| <= ‖c_k - c'_k‖ <= (s_k / 2) sqrt(d)``.

**float16**: ``W' = float16(W)``; round-to-nearest gives ``|W - W'| <= 2^-11 |W|`` for normal numbers
(``2^-25`` absolute below 2^-14), so ``|Δ score_k| <= Σ_j |x_j| (2^-11 |W_jk| + 2^-25)`` (a clusterer's
distance: ``<= ‖2^-11 |c_k| + 2^-25‖``). Weights beyond the float16 range (65504) are refused.

**Pruning** zeroes the ``fraction`` of weights with the smallest magnitude (over the whole ``W``); with
``tolerance=`` it finds by bisection the largest number of weights whose removal keeps the held-out metric
within ``tolerance`` of the original. When that is smaller, the registry stores the weights sparse (the
non-zeros and their positions: ``quantization_`` dtype ``"sparse"``).

An SGD model scores in the form its weights are stored: int8 codes by an int8 gather kernel (the weights of a
2**20-feature model are 1 MiB instead of 8 MiB, so a CSR batch's gathers stay in cache), pruned weights from
their non-zeros (``scaleml_dask._compact_weights``); the other models score with the float64 weights.

Both return ``(new_model, report)``; the report measures on the held-out rows: bytes on disk before/after
(both saved to a temporary registry: the whole version, where fit statistics such as ``cov_params_`` stay
float64, and the weight matrix alone), max and mean |difference| of the compared output (``predict`` for
regressors, ``predict_proba`` — else ``decision_function`` — for classifiers, ``transform`` for PCA), the
metrics before/after (R² for regressors, accuracy and log loss for classifiers, explained variance of the
reconstruction for PCA; for clusterers the agreement of the labels with the original model's, the inertia
and its relative change, and the adjusted Rand index against ``y_val`` when given — ``transform``, the
distances, is the compared output) and scoring latency per 1,000 rows.

>>> import numpy as np
>>> from scaleml_dask import LinearRegression
>>> rng = np.random.default_rng(0); X = rng.normal(size=(500, 20)); y = X @ rng.normal(size=20)
>>> q, report = quantize(LinearRegression().fit(X, y), "int8", X_val=X, y_val=y)
>>> bool(report["max_abs_diff"] <= prediction_bound(q, X).max()), report["metrics_after"]["r2"] > 0.999
(True, True)
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import outputs as _outputs

METHODS = ("int8", "float16")
_SPARSE_BYTES = 12  # a pruned weight stored sparse: its float64 value and int32 position
_F16_MAX = float(np.finfo(np.float16).max)


# ------------------------------------------------------------------------------------------------------
# where each model keeps its weights: the estimators say (the capability protocol of ``scaleml_dask._deployable``)
# ------------------------------------------------------------------------------------------------------


def _kind(model: Any) -> str:
    """How ``model``'s predictions read its weights: "linear", "centred" (PCA) or "distances" (clusterers)."""
    kind = getattr(model, "_compress_kind", None)
    if kind is None or not hasattr(model, "_weights"):
        raise ValueError(f"cannot compress a {type(model).__name__}: it has no weight matrix (estimators with one "
                         "define _weights / _set_weights, scaleml_dask._deployable)")
    return kind


def weights(model: Any) -> np.ndarray:
    """The weight matrix ``W`` (n_features, n_outputs) of a supported model (a copy)."""
    _kind(model)
    return model._weights()


def _set_weights(model: Any, W: np.ndarray, spec: dict | None) -> None:
    """Write ``W`` into ``model`` wherever its predictions read it, and declare how the registry stores it:
    ``spec`` is ``{"dtype": ..., "scale": (1, n_outputs) or None}``."""
    _kind(model)
    declared = model._set_weights(W, None if spec is None else spec.get("scale"))
    if spec is not None:
        model.quantization_ = {
            path: {"dtype": spec["dtype"], "tail": tail,
                   **({"scale": np.array(s, dtype=np.float64)} if s is not None else {})}
            for path, (s, tail) in declared.items()}


def _pipeline(model: Any) -> bool:
    return hasattr(model, "_final_estimator") and hasattr(model, "preprocess")


def _on_final(act: Callable, model: Any, X_val: Any, y_val: Any, **kwargs: Any) -> tuple[Any, dict]:
    """``act`` (quantize, prune) on a pipeline's final estimator, given the held-out raw rows as the matrix it
    takes (and labels as its codes); the pipeline returned holds the new estimator, the report's bytes are the
    whole pipeline's."""
    final = model._final_estimator
    Xp = None if X_val is None else _computed(model.preprocess(X_val))
    yp = None if y_val is None else _encoded_target(model, y_val)
    new_final, rep = act(final, X_val=Xp, y_val=yp, **kwargs)
    new = copy.deepcopy(model)
    new.steps[-1] = (new.steps[-1][0], new_final)
    rep.update(bytes_before=_bytes_on_disk(model), bytes_after=_bytes_on_disk(new), step=new.steps[-1][0])
    return new, rep


def _computed(X: Any) -> Any:
    """Preprocessed rows in memory: a CSR matrix stays sparse (a text pipeline's 2**20 hashed columns)."""
    return _rows(X.compute() if hasattr(X, "compute") else X)


def _encoded_target(model: Any, y: Any) -> np.ndarray:
    from ..pipeline import _encode_levels

    levels = getattr(model, "_target_levels", None)
    y = y.compute() if hasattr(y, "compute") else y
    return np.asarray(y) if levels is None else _encode_levels(y, levels)


# ------------------------------------------------------------------------------------------------------
# quantization and pruning
# ------------------------------------------------------------------------------------------------------


def quantize(model: Any, dtype: str = "int8", *, X_val: Any = None, y_val: Any = None) -> tuple[Any, dict]:
    """A copy of ``model`` with int8 (per-output scale) or float16 weights, and the report of what it cost.

    Without ``X_val`` the report measures on 1,000 seeded standard normal rows (and has no metrics). Of a
    pipeline, the final estimator is quantized (``X_val``: raw rows, through the pipeline's preprocessing).
    """
    if dtype not in METHODS:
        raise ValueError(f"dtype must be one of {METHODS}; got {dtype!r}")
    if _pipeline(model):
        return _on_final(quantize, model, X_val, y_val, dtype=dtype)
    W = weights(model)
    new = copy.deepcopy(model)
    if dtype == "int8":
        scale = np.max(np.abs(W), axis=0, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(W / scale), -127, 127)
        _set_weights(new, q * scale, {"dtype": "int8", "scale": scale})
    else:
        big = np.abs(W).max(initial=0.0)
        if not big <= _F16_MAX:
            raise ValueError(f"a weight of magnitude {big:.3g} exceeds the float16 range ({_F16_MAX:g})")
        _set_weights(new, W.astype(np.float16).astype(np.float64), {"dtype": "float16", "scale": None})
    return new, report(model, new, X_val, y_val, method=dtype)


def prediction_bound(quantized: Any, X: np.ndarray) -> np.ndarray:
    """The bound derived in the module docstring on ``|Δ score|`` per row and output, shape (n, n_outputs).

    Scores are ``predict`` (regressors), ``decision_function`` columns (classifiers), ``transform`` (PCA,
    clusterers' distances).
    """
    if _pipeline(quantized):
        return prediction_bound(quantized._final_estimator, _computed(quantized.preprocess(X)))
    spec = getattr(quantized, "quantization_", None)
    kind = _kind(quantized)
    if not spec or next(iter(spec.values()))["dtype"] not in METHODS:
        raise ValueError(f"this {type(quantized).__name__} was not quantized (no int8 / float16 quantization_)")
    X = _rows(X)
    if kind == "centred":
        X = X - quantized.mean_
    ax = abs(X)
    W = weights(quantized)
    first = next(iter(spec.values()))
    if kind == "distances":  # the move of each centre bounds the change of every distance to it
        if first["dtype"] == "int8":
            move = first["scale"].reshape(-1) / 2.0 * np.sqrt(W.shape[0])
        else:
            move = np.sqrt(((2.0**-11 * np.abs(W) + 2.0**-25) ** 2).sum(axis=0))
        return np.broadcast_to(move * (1.0 + 1e-12), (X.shape[0], W.shape[1])).copy()
    if first["dtype"] == "int8":
        scale = first["scale"].reshape(1, -1)  # (the first path declared holds the per-output scales)
        bound = np.asarray(ax.sum(axis=1)).reshape(-1, 1) * (scale / 2.0)
    else:
        bound = np.asarray(ax @ (2.0**-11 * np.abs(W) + 2.0**-25))
    if kind == "centred" and quantized.whiten:
        bound = bound / np.sqrt(quantized.explained_variance_)
    return bound * (1.0 + 1e-12)  # the product q * s is itself rounded: one ulp per weight


def prune(model: Any, fraction: float | None = None, *, tolerance: float | None = None, X_val: Any,
          y_val: Any = None) -> tuple[Any, dict]:
    """A copy of ``model`` with the smallest-magnitude weights set to zero, and its report.

    ``fraction`` (in [0, 1]) of the weights, or with ``tolerance=`` as many as keep the held-out primary
    metric (R², accuracy, explained variance) within ``tolerance`` below the original's, found by bisection.
    """
    if (fraction is None) == (tolerance is None):
        raise ValueError("give exactly one of fraction= or tolerance=")
    if _pipeline(model):
        return _on_final(prune, model, X_val, y_val, fraction=fraction, tolerance=tolerance)
    W = weights(model)
    order = np.argsort(np.abs(W), axis=None, kind="stable")

    def pruned(k: int) -> Any:
        Wk = W.copy().reshape(-1)
        Wk[order[:k]] = 0.0
        new = copy.deepcopy(model)
        stored_sparse = (W.size - k) * _SPARSE_BYTES < W.size * 8  # the non-zeros and their positions
        _set_weights(new, Wk.reshape(W.shape), {"dtype": "sparse", "scale": None} if stored_sparse else None)
        return new

    if fraction is not None:
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in [0, 1]; got {fraction!r}")
        k = int(round(float(fraction) * W.size))
    else:
        if not float(tolerance) >= 0:
            raise ValueError(f"tolerance must be >= 0; got {tolerance!r}")
        Xv, yv = _held_out(model, X_val, y_val, need_y=True)
        primary = _primary(model)
        ref = _reference(model, Xv)
        floor = _metrics(model, Xv, yv, ref)[primary] - float(tolerance)
        k = _bisect(lambda k: _metrics(pruned(k), Xv, yv, ref)[primary] >= floor, W.size)
    new = pruned(k)
    rep = report(model, new, X_val, y_val, method="prune")
    rep.update(pruned_weights=int(k), pruned_fraction=k / W.size, tolerance=tolerance)
    return new, rep


def _bisect(ok: Callable[[int], bool], n: int) -> int:
    """The largest ``k`` in [0, n] with ``ok(k)``, assuming ``ok`` holds at 0 and fails past some point."""
    if ok(n):
        return n
    lo, hi = 0, n  # ok(lo), not ok(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def tradeoff(model: Any, X_val: Any, y_val: Any = None, *,
             fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)) -> list[dict]:
    """The trade-off as table rows: the original, int8, float16 and pruning at each of ``fractions``, with
    bytes on disk (metadata included: for a small model it outweighs the weights, so ``weight_bytes`` says what
    the compression itself saved), |output difference|, the change of the primary metric and latency per 1,000
    rows."""
    primary = _primary(model)
    runs = [("int8", quantize(model, "int8", X_val=X_val, y_val=y_val)[1]),
            ("float16", quantize(model, "float16", X_val=X_val, y_val=y_val)[1])]
    runs += [(f"prune {100 * f:.4g}%", prune(model, f, X_val=X_val, y_val=y_val)[1]) for f in fractions]
    first = runs[0][1]
    rows = [{"method": "original", "bytes": first["bytes_before"], "size_ratio": 1.0,
             "weight_bytes": first["weight_bytes_before"], "max_abs_diff": 0.0,
             "mean_abs_diff": 0.0, f"{primary}_change": 0.0 if "metric_change" in first else None,
             "ms_per_1000_rows": first["latency_ms_per_1000_rows_before"]}]
    for label, rep in runs:
        rows.append({"method": label, "bytes": rep["bytes_after"],
                     "size_ratio": rep["bytes_after"] / rep["bytes_before"], "weight_bytes": rep["weight_bytes_after"],
                     "max_abs_diff": rep["max_abs_diff"], "mean_abs_diff": rep["mean_abs_diff"],
                     f"{primary}_change": rep.get("metric_change", {}).get(primary),
                     "ms_per_1000_rows": rep["latency_ms_per_1000_rows_after"]})
    return rows


def plot_tradeoff(rows: list[dict], path: str | Path) -> Path:
    """A PNG of ``tradeoff`` rows: size on disk against the change of the metric (or the max difference)."""
    from ..report import pyplot

    key = next(k for k in rows[0] if k.endswith("_change"))
    use_metric = all(r[key] is not None for r in rows)
    ylabel = key.replace("_", " ") if use_metric else "max |output difference|"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        y = r[key] if use_metric else r["max_abs_diff"]
        ax.scatter(r["size_ratio"], y, color="#3a6ea5")
        ax.annotate(r["method"], (r["size_ratio"], y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("bytes on disk / original")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------------------


def report(before: Any, after: Any, X_val: Any = None, y_val: Any = None, *, method: str = "") -> dict:
    """Compare two versions of a model on held-out rows: bytes on disk, output differences, metrics, latency."""
    X, y = _held_out(before, X_val, y_val, need_y=False)
    output = _compared_output(before)
    a, b = _outputs_of(before, output, X), _outputs_of(after, output, X)
    diff = np.abs(a - b)
    rep: dict[str, Any] = {
        "method": method,
        "bytes_before": _bytes_on_disk(before),
        "bytes_after": _bytes_on_disk(after),
        "weight_bytes_before": _weight_bytes(before),
        "weight_bytes_after": _weight_bytes(after),
        "compared_output": output,
        "n_rows": int(X.shape[0]),
        "data": "X_val" if X_val is not None else "1,000 standard normal rows (no X_val given)",
        "max_abs_diff": float(diff.max(initial=0.0)),
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "latency_ms_per_1000_rows_before": _latency(before, output, X),
        "latency_ms_per_1000_rows_after": _latency(after, output, X),
    }
    if y is not None or _kind(before) in ("centred", "distances"):
        ref = _reference(before, X)
        m0, m1 = _metrics(before, X, y, ref), _metrics(after, X, y, ref)
        rep.update(metrics_before=m0, metrics_after=m1, metric_change={k: m1[k] - m0[k] for k in m0})
        if ref is not None:
            rep["relative_inertia_change"] = m1["inertia"] / m0["inertia"] - 1.0 if m0["inertia"] else 0.0
    return rep


def _held_out(model: Any, X_val: Any, y_val: Any, *, need_y: bool) -> tuple[np.ndarray, np.ndarray | None]:
    d = model.n_features_in_
    if X_val is None:
        return np.random.default_rng(0).standard_normal((1000, d)), None
    X = _rows(X_val.compute() if hasattr(X_val, "compute") else X_val)
    if X.ndim != 2 or X.shape[1] != d or X.shape[0] == 0:
        raise ValueError(f"X_val must be a non-empty (n, {d}) array; got shape {X.shape}")
    y = None if y_val is None else np.asarray(y_val.compute() if hasattr(y_val, "compute") else y_val)
    if y is not None and y.shape != (X.shape[0],):
        raise ValueError(f"y_val must have one value per row of X_val ({X.shape[0]}); got shape {y.shape}")
    if need_y and y is None and _kind(model) not in ("centred", "distances"):
        raise ValueError(f"y_val is required to measure a {type(model).__name__}'s held-out metric")
    return X, y


def _rows(X: Any) -> Any:
    """Held-out rows as float64: a CSR matrix stays sparse (hashed text: 2**20 columns), the rest numpy."""
    if hasattr(X, "tocsr"):
        return X.tocsr().astype(np.float64)
    return np.asarray(X, dtype=np.float64)


def _primary(model: Any) -> str:
    kind = _kind(model)
    if kind == "centred":
        return "explained_variance"
    if kind == "distances":
        return "label_agreement"
    return "accuracy" if hasattr(model, "classes_") else "r2"


def _reference(model: Any, X: np.ndarray) -> np.ndarray | None:
    """A clusterer's labels of ``X``: what a compressed copy's labels are compared with (None otherwise)."""
    return _outputs.apply(model, "predict", X) if _kind(model) == "distances" else None


def _metrics(model: Any, X: np.ndarray, y: np.ndarray | None, reference: np.ndarray | None = None
             ) -> dict[str, float]:
    from sklearn import metrics

    if _kind(model) == "distances":
        from .._kmeans_kernels import nearest

        labels, d2 = nearest(X, model.cluster_centers_)
        out = {"label_agreement": float(np.mean(labels == reference)), "inertia": float(d2.sum())}
        if y is not None:
            out["adjusted_rand"] = float(metrics.adjusted_rand_score(y, labels))
        return out
    if _kind(model) == "centred":
        R = model.inverse_transform(model.transform(X))
        sst = float(np.sum((X - X.mean(axis=0)) ** 2))
        return {"explained_variance": 1.0 - float(np.sum((X - R) ** 2)) / sst if sst > 0 else float("nan")}
    if hasattr(model, "classes_"):
        out = {"accuracy": float(metrics.accuracy_score(y, model.predict(X)))}
        if "predict_proba" in _outputs.output_names(model):
            out["log_loss"] = float(metrics.log_loss(y, model.predict_proba(X), labels=model.classes_))
        return out
    return {"r2": float(metrics.r2_score(y, model.predict(X)))}


def _compared_output(model: Any) -> str:
    names = _outputs.output_names(model)
    if _kind(model) == "distances":
        return "transform"
    if hasattr(model, "classes_"):
        return "predict_proba" if "predict_proba" in names else "decision_function"
    return names[0]


def _outputs_of(model: Any, output: str, X: np.ndarray) -> np.ndarray:
    if output == "decision_function":
        return np.asarray(model.decision_function(X), dtype=np.float64)
    return _outputs.apply(model, output, X).astype(np.float64)


def _latency(model: Any, output: str, X: np.ndarray, repeats: int = 5) -> float:
    """Best of ``repeats`` timings of the output on ``X``, in milliseconds per 1,000 rows."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _outputs_of(model, output, X)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3 * 1000.0 / X.shape[0]


def _weight_bytes(model: Any) -> int:
    """Bytes of the weight matrix as the registry stores it (int8 + scales, float16, or float64)."""
    W = weights(model)
    spec = next(iter((getattr(model, "quantization_", None) or {"": {"dtype": "float64"}}).values()))
    if spec["dtype"] == "int8":
        return W.size + 8 * W.shape[1]
    if spec["dtype"] == "sparse":
        return np.count_nonzero(W) * _SPARSE_BYTES
    return W.size * (2 if spec["dtype"] == "float16" else 8)


def _bytes_on_disk(model: Any) -> int:
    from .registry import save_model

    with tempfile.TemporaryDirectory() as d:
        path = save_model(model, Path(d) / "m")
        return sum(p.stat().st_size for p in path.iterdir())
