"""Synthetic datasets with planted truth, written chunk by chunk (in parallel on a cluster).

The generators are deterministic per ``(seed, chunk index)``: each chunk is a pure function that can be made
independently, on any worker, so a dataset is the same whatever the number of workers. ``GENERATORS`` maps the
names used in ``data_catalog.yaml`` to the writers.

>>> import numpy as np
>>> X, y = regression_chunk(0, 3, 5, coef=np.ones(2), intercept=1.0, noise=0.0)
>>> bool(np.allclose(y, X.sum(axis=1) + 1.0))
True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._math import sigmoid
from .store import DatasetWriter, chunk_rows_for, write_chunk
from .synthetic_text import make_text


def _chunk_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index)])


def regression_chunk(seed: int, index: int, rows: int, *, coef: np.ndarray, intercept: float,
                     noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ``index``: X ~ N(0, 1), y = X @ coef + intercept + N(0, noise²)."""
    rng = _chunk_rng(seed, index)
    X = rng.standard_normal((rows, len(coef)))
    y = X @ coef + intercept + noise * rng.standard_normal(rows)
    return X, y


def logistic_chunk(seed: int, index: int, rows: int, *, coef: np.ndarray,
                   intercept: float) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ``index``: X ~ N(0, 1), y ~ Bernoulli(sigmoid(X @ coef + intercept))."""
    rng = _chunk_rng(seed, index)
    X = rng.standard_normal((rows, len(coef)))
    p = sigmoid(X @ coef + intercept)
    y = (rng.random(rows) < p).astype(np.float64)
    return X, y


def mixture_chunk(seed: int, index: int, rows: int, *, centers: np.ndarray,
                  cluster_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ``index``: labels uniform over the clusters, X = center[label] + N(0, cluster_std²)."""
    rng = _chunk_rng(seed, index)
    labels = rng.integers(0, len(centers), rows)
    X = centers[labels] + cluster_std * rng.standard_normal((rows, centers.shape[1]))
    return X, labels.astype(np.int64)


def drift_chunk(seed: int, index: int, rows: int, *, coef_before: np.ndarray, coef_after: np.ndarray,
                start: int, change_at: int, width: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ``index`` (first row ``start``) of a logistic stream whose concept changes at ``change_at``.

    ``kind="abrupt"`` switches at once; ``"gradual"`` draws each row from the new concept with probability
    sigmoid(4 (t - change_at) / width), as River's ConceptDriftStream does.
    """
    rng = _chunk_rng(seed, index)
    X = rng.standard_normal((rows, len(coef_before)))
    t = start + np.arange(rows)
    if kind == "abrupt":
        new = t >= change_at
    else:
        new = rng.random(rows) < sigmoid(4.0 * (t - change_at) / max(width, 1))
    z = np.where(new, X @ coef_after, X @ coef_before)
    y = (rng.random(rows) < sigmoid(z)).astype(np.float64)
    return X, y


def _make_chunk_task(tmp_path: str, index: int, rows: int, chunk_rows: int, fn: Callable, seed: int,
                     kwargs: dict) -> tuple[int, float, dict]:
    X, y = fn(seed, index, rows, **kwargs)
    digests = write_chunk(tmp_path, index, X, y, chunk_rows)
    extra = 0.0
    if fn is logistic_chunk:  # the Bayes accuracy: mean of max(p, 1 - p) under the planted model
        p = sigmoid(X @ kwargs["coef"] + kwargs["intercept"])
        extra = float(np.maximum(p, 1 - p).sum())
    return rows, extra, digests


def _generate(path: str | os.PathLike, n_samples: int, n_features: int, fn: Callable, seed: int,
              kwargs: Callable[[int], dict] | dict, *, y_dtype: Any, attrs: dict, chunk_rows: int | None,
              codec: str | None, client: Any, progress: bool) -> tuple[Path, float]:
    if n_samples < 1 or n_features < 1:
        raise ValueError(f"n_samples and n_features must be >= 1; got {n_samples}, {n_features}")
    rows = int(chunk_rows or chunk_rows_for(n_features))
    n_chunks = -(-n_samples // rows)
    per_chunk = kwargs if callable(kwargs) else (lambda i: kwargs)
    with DatasetWriter(path, n_features, n_samples=n_samples, chunk_rows=rows, y_dtype=y_dtype,
                       feature_names=[f"x{i}" for i in range(n_features)], attrs=attrs, codec=codec) as w:
        args = [(str(w.tmp_path), i, min(rows, n_samples - i * rows), rows, fn, seed, per_chunk(i))
                for i in range(n_chunks)]
        if client is not None:
            futures = client.map(_make_chunk_task, *zip(*args), pure=False)
            if progress:
                from distributed import progress as dprogress

                dprogress(futures)
            results = client.gather(futures)
        else:
            it = args
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(args, desc=f"generate {Path(path).name}", unit="chunk")
            results = [_make_chunk_task(*a) for a in it]
        extra = sum(r[1] for r in results)
        for r in results:
            w.record(r[2])
        w.set_attrs(n_samples=n_samples)
    return Path(path), extra


def make_regression(path: str | os.PathLike, n_samples: int, n_features: int, *, chunk_rows: int | None = None,
                    noise: float = 1.0, intercept: float = 3.0, seed: int = 0, codec: str | None = None,
                    client: Any = None, progress: bool = False) -> Path:
    """Linear data with planted coefficients (attrs ``coef``, ``intercept``, ``noise``)."""
    coef = np.round(np.random.default_rng(seed).uniform(-5, 5, n_features), 3)
    attrs = {"generator": "regression", "seed": seed, "coef": coef.tolist(), "intercept": intercept,
             "noise": noise}
    return _generate(path, n_samples, n_features, regression_chunk, seed,
                     {"coef": coef, "intercept": intercept, "noise": noise}, y_dtype=np.float64, attrs=attrs,
                     chunk_rows=chunk_rows, codec=codec, client=client, progress=progress)[0]


def make_logistic(path: str | os.PathLike, n_samples: int, n_features: int, *, chunk_rows: int | None = None,
                  signal: float = 4.0, intercept: float = 0.5, seed: int = 0, codec: str | None = None,
                  client: Any = None, progress: bool = False) -> Path:
    """Binary labels from planted logistic weights of norm ``signal`` (attrs ``coef``, ``intercept``,
    ``bayes_accuracy`` — the accuracy of the planted model on these very rows, in expectation)."""
    w = np.random.default_rng(seed).standard_normal(n_features)
    coef = signal * w / np.linalg.norm(w)
    attrs = {"generator": "logistic", "seed": seed, "coef": coef.tolist(), "intercept": intercept}
    out, total = _generate(path, n_samples, n_features, logistic_chunk, seed,
                           {"coef": coef, "intercept": intercept}, y_dtype=np.float64, attrs=attrs,
                           chunk_rows=chunk_rows, codec=codec, client=client, progress=progress)
    import zarr

    zarr.open_group(str(out), mode="r+").attrs["bayes_accuracy"] = total / n_samples
    return out


def make_mixture(path: str | os.PathLike, n_samples: int, n_features: int, n_clusters: int, *,
                 chunk_rows: int | None = None, cluster_std: float = 1.0, center_std: float = 3.0,
                 seed: int = 0, codec: str | None = None, client: Any = None, progress: bool = False) -> Path:
    """Gaussian clusters with integer labels ``y`` (attrs ``centers``)."""
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1; got {n_clusters}")
    centers = np.random.default_rng(seed).normal(0.0, center_std, (n_clusters, n_features))
    attrs = {"generator": "mixture", "seed": seed, "centers": centers.tolist(), "cluster_std": cluster_std}
    return _generate(path, n_samples, n_features, mixture_chunk, seed,
                     {"centers": centers, "cluster_std": cluster_std}, y_dtype=np.int64, attrs=attrs,
                     chunk_rows=chunk_rows, codec=codec, client=client, progress=progress)[0]


def make_drift(path: str | os.PathLike, n_samples: int, n_features: int, *, kind: str = "abrupt",
               change_at: int | None = None, width: int | None = None, signal: float = 4.0,
               chunk_rows: int | None = None, seed: int = 0, codec: str | None = None, client: Any = None,
               progress: bool = False) -> Path:
    """A logistic stream whose planted weights change at ``change_at`` (attrs ``coef_before``,
    ``coef_after``, ``change_at``, ``width``, ``kind``)."""
    if kind not in ("abrupt", "gradual"):
        raise ValueError(f"kind must be 'abrupt' or 'gradual'; got {kind!r}")
    change_at = n_samples // 2 if change_at is None else int(change_at)
    width = max(1, n_samples // 20) if width is None else int(width)
    rng = np.random.default_rng(seed)
    before, after = rng.standard_normal((2, n_features))
    before, after = signal * before / np.linalg.norm(before), signal * after / np.linalg.norm(after)
    rows = int(chunk_rows or chunk_rows_for(n_features))
    attrs = {"generator": "drift", "seed": seed, "kind": kind, "coef_before": before.tolist(),
             "coef_after": after.tolist(), "change_at": change_at, "width": width}
    kwargs = {"coef_before": before, "coef_after": after, "change_at": change_at, "width": width, "kind": kind}
    return _generate(path, n_samples, n_features, drift_chunk, seed,
                     lambda i: {**kwargs, "start": i * rows}, y_dtype=np.float64, attrs=attrs,
                     chunk_rows=rows, codec=codec, client=client, progress=progress)[0]


GENERATORS: dict[str, Callable[..., Path]] = {
    "regression": make_regression,
    "logistic": make_logistic,
    "mixture": make_mixture,
    "drift": make_drift,
    "text": make_text,
}
