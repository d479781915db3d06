"""Synthetic datasets with planted truth, written chunk by chunk (in parallel on a cluster).

The generators are deterministic per ``(seed, chunk index)``: each chunk is a pure function that can be made
independently, on any worker, so a dataset is the same whatever the number of workers. ``GENERATORS`` maps the
names used in ``data_catalog.yaml`` to the writers. Each writer replaces a dataset already at its path only with
``overwrite=True``, and only one written here (``io.destination``).

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
              codec: str | None, client: Any, progress: bool, overwrite: bool) -> tuple[Path, float]:
    if n_samples < 1 or n_features < 1:
        raise ValueError(f"n_samples and n_features must be >= 1; got {n_samples}, {n_features}")
    rows = int(chunk_rows or chunk_rows_for(n_features))
    n_chunks = -(-n_samples // rows)
    per_chunk = kwargs if callable(kwargs) else (lambda i: kwargs)
    with DatasetWriter(path, n_features, n_samples=n_samples, chunk_rows=rows, y_dtype=y_dtype,
                       feature_names=[f"x{i}" for i in range(n_features)], attrs=attrs, codec=codec,
                       overwrite=overwrite) as w:
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
                    client: Any = None, progress: bool = False, overwrite: bool = False) -> Path:
    """Linear data with planted coefficients (attrs ``coef``, ``intercept``, ``noise``)."""
    coef = np.round(np.random.default_rng(seed).uniform(-5, 5, n_features), 3)
    attrs = {"generator": "regression", "seed": seed, "coef": coef.tolist(), "intercept": intercept,
             "noise": noise}
    return _generate(path, n_samples, n_features, regression_chunk, seed,
                     {"coef": coef, "intercept": intercept, "noise": noise}, y_dtype=np.float64, attrs=attrs,
                     chunk_rows=chunk_rows, codec=codec, client=client, progress=progress,
                     overwrite=overwrite)[0]


def make_logistic(path: str | os.PathLike, n_samples: int, n_features: int, *, chunk_rows: int | None = None,
                  signal: float = 4.0, intercept: float = 0.5, seed: int = 0, codec: str | None = None,
                  client: Any = None, progress: bool = False, overwrite: bool = False) -> Path:
    """Binary labels from planted logistic weights of norm ``signal`` (attrs ``coef``, ``intercept``,
    ``bayes_accuracy`` — the accuracy of the planted model on these very rows, in expectation)."""
    w = np.random.default_rng(seed).standard_normal(n_features)
    coef = signal * w / np.linalg.norm(w)
    attrs = {"generator": "logistic", "seed": seed, "coef": coef.tolist(), "intercept": intercept}
    out, total = _generate(path, n_samples, n_features, logistic_chunk, seed,
                           {"coef": coef, "intercept": intercept}, y_dtype=np.float64, attrs=attrs,
                           chunk_rows=chunk_rows, codec=codec, client=client, progress=progress,
                     overwrite=overwrite)
    import zarr

    zarr.open_group(str(out), mode="r+").attrs["bayes_accuracy"] = total / n_samples
    return out


def make_mixture(path: str | os.PathLike, n_samples: int, n_features: int, n_clusters: int, *,
                 chunk_rows: int | None = None, cluster_std: float = 1.0, center_std: float = 3.0,
                 seed: int = 0, codec: str | None = None, client: Any = None, progress: bool = False,
                 overwrite: bool = False) -> Path:
    """Gaussian clusters with integer labels ``y`` (attrs ``centers``)."""
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1; got {n_clusters}")
    centers = np.random.default_rng(seed).normal(0.0, center_std, (n_clusters, n_features))
    attrs = {"generator": "mixture", "seed": seed, "centers": centers.tolist(), "cluster_std": cluster_std}
    return _generate(path, n_samples, n_features, mixture_chunk, seed,
                     {"centers": centers, "cluster_std": cluster_std}, y_dtype=np.int64, attrs=attrs,
                     chunk_rows=chunk_rows, codec=codec, client=client, progress=progress,
                     overwrite=overwrite)[0]


def make_drift(path: str | os.PathLike, n_samples: int, n_features: int, *, kind: str = "abrupt",
               change_at: int | None = None, width: int | None = None, signal: float = 4.0,
               chunk_rows: int | None = None, seed: int = 0, codec: str | None = None, client: Any = None,
               progress: bool = False, overwrite: bool = False) -> Path:
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
                     chunk_rows=rows, codec=codec, client=client, progress=progress,
                     overwrite=overwrite)[0]


# ------------------------------------------------------------------------------------------------------
# mixed-type tables
# ------------------------------------------------------------------------------------------------------


def table_spec(seed: int, *, n_numeric: int = 20, levels: tuple[int, ...] = (10, 100, 1000), missing: float = 0.05,
               missing_categorical: float = 0.0, task: str = "classification", noise: float = 1.0,
               zipf: float = 1.1, extras: bool = True) -> dict[str, Any]:
    """The planted truth of a mixed table (what ``table_chunk`` draws from): numeric columns of assorted scales
    and offsets with weights per standard deviation, categorical columns of ``levels`` levels with Zipf(``zipf``)
    frequencies and an effect per level, and (``extras``) a boolean with its effect and a timestamp over 2024 with
    a linear trend."""
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression'; got {task!r}")
    rng = np.random.default_rng([int(seed), 2**31])
    w = rng.standard_normal(n_numeric)
    effects, probs = [], []
    for k in levels:
        effects.append(np.round(rng.normal(0.0, 0.7, k), 4))
        p = 1.0 / np.arange(1, k + 1) ** zipf
        probs.append(rng.permutation(p / p.sum()))  # which level is frequent: not the alphabetical order
    return {"n_numeric": n_numeric, "levels": list(levels), "missing": missing,
            "missing_categorical": missing_categorical, "task": task, "noise": noise,
            "coef": np.round(1.5 * w / np.sqrt(n_numeric), 4).tolist(),
            "loc": np.round(rng.uniform(-50, 50, n_numeric), 2).tolist(),
            "scale": np.round(10.0 ** rng.uniform(-2, 3, n_numeric), 4).tolist(),
            "effects": [e.tolist() for e in effects], "probs": [p.tolist() for p in probs],
            "flag_effect": 0.8 if extras else 0.0, "trend": 1.0 if extras else 0.0, "extras": extras,
            "intercept": -0.3, "start": 1_704_067_200.0, "span": 366 * 86_400.0}


def table_columns(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """The table's columns as ``(name, kind)``: numbers ``x00...``, categories ``cat0...``, ``flag``, ``ts``, ``y``."""
    return ([(f"x{j:02d}", "numeric") for j in range(spec["n_numeric"])]
            + [(f"cat{c}", "categorical") for c in range(len(spec["levels"]))]
            + ([("flag", "boolean"), ("ts", "datetime")] if spec.get("extras", True) else []) + [("y", "numeric")])


def table_levels(k: int) -> list[str]:
    """The level names of a category of ``k`` levels (zero-padded: sorted as their codes)."""
    width = len(str(k - 1))
    return [f"L{i:0{width}d}" for i in range(k)]


def table_chunk(seed: int, index: int, rows: int, *, spec: dict[str, Any]) -> tuple[dict[str, np.ndarray], float]:
    """Chunk ``index`` of a mixed table in the stored form (``io.table``), and the sum over its rows of the planted
    model's accuracy (classification: ``max(p, 1 - p)``) or squared error (regression: ``noise²``)."""
    rng = _chunk_rng(seed, index)
    z = np.full(rows, spec["intercept"])
    cols: dict[str, np.ndarray] = {}
    for j, (w, loc, scale) in enumerate(zip(spec["coef"], spec["loc"], spec["scale"])):
        x = rng.standard_normal(rows)
        z += w * x
        values = np.round(loc + scale * x, 4)  # as a CSV would hold them (and its text short)
        values[rng.random(rows) < spec["missing"]] = np.nan
        cols[f"x{j:02d}"] = values
    for c, (effects, probs) in enumerate(zip(spec["effects"], spec["probs"])):
        cdf = np.cumsum(probs)
        codes = np.minimum(np.searchsorted(cdf, rng.random(rows) * cdf[-1], side="right"), len(probs) - 1)
        z += np.asarray(effects)[codes]
        codes = codes.astype(np.int32)
        if spec["missing_categorical"]:
            codes[rng.random(rows) < spec["missing_categorical"]] = -1
        cols[f"cat{c}"] = codes
    if spec.get("extras", True):
        flag = rng.random(rows) < 0.3
        z += spec["flag_effect"] * flag
        cols["flag"] = flag.astype(np.int8)
        u = rng.random(rows)
        z += spec["trend"] * (u - 0.5)
        cols["ts"] = np.round(spec["start"] + u * spec["span"])
    if spec["task"] == "classification":
        p = sigmoid(z)
        cols["y"] = (rng.random(rows) < p).astype(np.float64)
        extra = float(np.maximum(p, 1 - p).sum())
    else:
        cols["y"] = z + spec["noise"] * rng.standard_normal(rows)
        extra = float(rows * spec["noise"] ** 2)
    return cols, extra


def _make_table_chunk_task(tmp_path: str, index: int, rows: int, chunk_rows: int, seed: int,
                           spec: dict[str, Any]) -> tuple[int, float, dict]:
    from .table import write_table_chunk

    cols, extra = table_chunk(seed, index, rows, spec=spec)
    return rows, extra, write_table_chunk(tmp_path, index, cols, chunk_rows)


def make_table(path: str | os.PathLike, n_samples: int, *, n_numeric: int = 20,
               levels: tuple[int, ...] | list[int] = (10, 100, 1000), missing: float = 0.05,
               missing_categorical: float = 0.0, task: str = "classification", noise: float = 1.0,
               extras: bool = True, chunk_rows: int | None = None, seed: int = 0, codec: str | None = None,
               client: Any = None, progress: bool = False, overwrite: bool = False) -> Path:
    """A mixed-type table (``io.table``'s layout) with planted effects: ``n_numeric`` numbers of assorted scales
    (``missing`` of them missing at random), categories of ``levels`` levels with skewed frequencies, a boolean
    ``flag``, a timestamp ``ts`` and the target ``y`` (``task``: labels from a logistic model, or a linear model
    plus noise). The truth is in the attributes (``spec``; ``bayes_accuracy`` or ``noise``). Chunks are made in
    parallel on ``client`` and are the same whatever the number of workers."""
    from .table import TableWriter

    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1; got {n_samples}")
    spec = table_spec(seed, n_numeric=n_numeric, levels=tuple(levels), missing=missing,
                      missing_categorical=missing_categorical, task=task, noise=noise, extras=extras)
    columns = table_columns(spec)
    writer = TableWriter(path, columns, n_samples=n_samples, chunk_rows=chunk_rows, target="y",
                         attrs={"generator": "table", "seed": seed, "spec": spec}, codec=codec,
                         overwrite=overwrite)
    rows = writer.chunk_rows
    n_chunks = -(-n_samples // rows)
    with writer as w:
        args = [(str(w.tmp_path), i, min(rows, n_samples - i * rows), rows, seed, spec) for i in range(n_chunks)]
        if client is not None:
            results = client.gather(client.map(_make_table_chunk_task, *zip(*args), pure=False))
        else:
            results = [_make_table_chunk_task(*a) for a in args]
        for r in results:
            w.record(r[2])
        for c, k in enumerate(spec["levels"]):
            w.set_levels(f"cat{c}", table_levels(k))
        total = sum(r[1] for r in results)
        w.set_attrs(n_samples=n_samples, **({"bayes_accuracy": total / n_samples} if task == "classification"
                                            else {"noise": noise}))
    return Path(path)


def table_frame(cols: dict[str, np.ndarray], spec: dict[str, Any]) -> Any:
    """A chunk of ``table_chunk`` as raw values: a pandas DataFrame with the categories' level strings (None for
    missing), booleans, ISO 8601 timestamps: what a CSV or a served request holds."""
    import pandas as pd

    out = {}
    for name, kind in table_columns(spec):
        v = cols[name]
        if kind == "categorical":
            levels = np.array(table_levels(spec["levels"][int(name[3:])]) + [None], dtype=object)
            out[name] = levels[v]  # -1 (missing) takes the last entry
        elif kind == "boolean":
            out[name] = v == 1
        elif kind == "datetime":
            out[name] = np.char.add(np.datetime_as_string(v.astype("datetime64[s]"), unit="s"), "Z")
        else:
            out[name] = v
    return pd.DataFrame(out)


def write_table_file(path: str | os.PathLike, n_samples: int, *, chunk_rows: int = 250_000, first_chunk: int = 0,
                     seed: int = 0, **spec_kwargs: Any) -> Path:
    """The rows ``make_table`` would store with the same arguments (from its chunk ``first_chunk`` on: a held-out
    set of the same planted model), as a CSV (``.csv.gz`` compressed) or Parquet (``.parquet``) file, written
    chunk by chunk under a temporary name: the raw file an ingest starts from."""
    import gzip

    spec = table_spec(seed, **spec_kwargs)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    frames = (table_frame(table_chunk(seed, first_chunk + i, min(chunk_rows, n_samples - i * chunk_rows),
                                      spec=spec)[0], spec) for i in range(-(-n_samples // chunk_rows)))
    if path.name.endswith((".parquet", ".pq")):
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        for frame in frames:
            t = pa.Table.from_pandas(frame.assign(ts=pd_timestamps(frame["ts"])) if "ts" in frame else frame,
                                     preserve_index=False)
            writer = writer or pq.ParquetWriter(tmp, t.schema)
            writer.write_table(t)
        writer.close()
    else:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        with gzip.open(tmp, "wb", compresslevel=1) if path.name.endswith(".gz") else open(tmp, "wb") as f:
            for i, frame in enumerate(frames):
                pcsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), f,
                               pcsv.WriteOptions(include_header=i == 0, quoting_style="none"))
    os.replace(tmp, path)
    return path


def pd_timestamps(iso: Any) -> Any:
    import pandas as pd

    return pd.to_datetime(iso, utc=True, format="ISO8601")


GENERATORS: dict[str, Callable[..., Path]] = {
    "regression": make_regression,
    "logistic": make_logistic,
    "mixture": make_mixture,
    "drift": make_drift,
    "text": make_text,
    "table": make_table,
}
