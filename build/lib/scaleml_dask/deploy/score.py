"""Batch scoring on the cluster: one task per chunk reads, scores and writes it, so memory stays at chunk size
× running tasks whatever the dataset's length.

The result is a dataset of this project (``io.store.DatasetWriter``: built under a temporary name, renamed when
complete), chunked as the input:

- ``X(sample, feature)``: the model's numeric output matrix — ``transform`` (PCA: features ``pc0, ...``;
  clusterers: the distances to the centres ``distance_0, ...``), ``predict_proba`` (classifiers;
  ``proba_<class>``), else ``decision_function`` (``score_<class>``), else ``predict`` (regressors; one
  feature ``predict``); ``transform=False`` skips ``transform`` (a clusterer's X is then its label column);
- ``y(sample)``: ``predict`` (values, labels, or a clusterer's nearest centre) where the model predicts;
- attributes ``outputs`` (``{"X": output, "y": output or null}``), ``model`` (class) and ``source``.

Each chunk's task writes whole zarr chunks of its own rows and nothing else, so a task re-run after a lost
worker rewrites the same bytes: the output does not depend on failures.

>>> import numpy as np, tempfile, os, zarr
>>> from scaleml_dask import LinearRegression
>>> X = np.random.default_rng(0).normal(size=(100, 3)); m = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0])
>>> out = score(m, X, os.path.join(tempfile.mkdtemp(), "s.zarr"))
>>> g = zarr.open_group(str(out), mode="r"); bool(np.allclose(g["y"][:], m.predict(X))), g.attrs["outputs"]
(True, {'X': 'predict', 'y': 'predict'})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import is_clusterer

from . import outputs as _outputs


def score(model: Any, dataset: Any, out: str | os.PathLike, *, client: Any = None, progress: bool = False,
          codec: str | None = None, transform: bool = True, overwrite: bool = False) -> Path:
    """Score ``dataset`` (catalog name, path, xarray, dask or numpy) with ``model`` (or a registry directory)
    chunk by chunk. A pipeline of raw columns scores a table (a table store, its catalog name, or a CSV / Parquet
    file, ingested to a temporary store first): each chunk is read and preprocessed inside its scoring task; a
    string target's labels are written as codes into the levels of the ``y_levels`` attribute. Chunks are scored
    on ``client`` (default: the current dask.distributed client, else the local scheduler); the outputs are
    written to ``out`` atomically, and its path returned. ``progress`` shows a progress bar; ``transform=False``
    leaves out the ``transform`` output (components, a clusterer's distances). A dataset already at ``out`` is
    replaced only with ``overwrite=True``, and only if written here."""
    from .registry import load_model

    source = str(dataset) if isinstance(dataset, (str, os.PathLike)) else None
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    kwargs = {"client": client, "progress": progress, "codec": codec, "transform": transform, "overwrite": overwrite}
    if hasattr(model, "_table_needs") and source is not None and source.lower().endswith(_FILES):
        return _score_file(model, Path(source), out, **kwargs)
    return _score(model, dataset, out, source, **kwargs)


def _score(model: Any, dataset: Any, out: str | os.PathLike, source: str | None, *, client: Any, progress: bool,
           codec: str | None, transform: bool, overwrite: bool) -> Path:
    import dask

    from ..io.store import DatasetWriter
    from ..passes import map_row_chunks
    from ..validation import as_dask_array, is_sparse, sparse_refused
    from .registry import RegistryError, class_name

    if hasattr(model, "_table_needs") and hasattr(model, "preprocess"):  # a pipeline of raw columns
        scored, X = model, model.preprocess(dataset)  # each chunk preprocessed inside its scoring task
        model = model._final_estimator
    else:
        scored, X = model, as_dask_array(dataset, "X", ndim=2, accept_sparse=True)
    if is_sparse(X) and not _takes_sparse(model):
        raise sparse_refused(f"dataset {source or 'X'}")
    d = getattr(model, "n_features_in_", None)
    if d is None:
        raise ValueError(f"a {type(model).__name__} has no outputs to score (not a fitted model?)")
    if X.shape[1] != d:
        raise ValueError(f"dataset {source or 'X'} has {X.shape[1]} features; the model was fitted with {d}")
    plan = _plan(model, transform)
    rows = X.chunks[0][0]
    if any(c != rows for c in X.chunks[0][:-1]):
        X = X.rechunk({0: rows})
    probe = _score_rows(model, plan, np.zeros((1, d)))
    try:
        model_class = class_name(scored)
    except RegistryError:  # any model with the output methods can be scored, registered or not
        model_class = f"{type(scored).__module__}.{type(scored).__qualname__}"
    attrs = {"outputs": {"X": plan[0], "y": plan[1]}, "model": model_class, "source": source}
    levels = getattr(scored, "_target_levels", None)
    if levels is not None and plan[1] is not None:  # a pipeline's labels: y holds their codes into y_levels
        attrs["y_levels"] = [str(v) if not isinstance(v, (bool, int, float)) else v for v in levels.tolist()]
    with DatasetWriter(out, probe[0].shape[1], n_samples=X.shape[0], chunk_rows=rows, dtype=np.float64,
                       y_dtype=None if plan[1] is None else probe[1].dtype, attrs=attrs, codec=codec,
                       overwrite=overwrite,
                       feature_names=_columns(scored, plan[0], probe[0].shape[1])) as w:
        counts = map_row_chunks(score_block, X, model=model, plan=plan, tmp_path=str(w.tmp_path),
                                chunk_rows=rows)  # each task reads, scores and writes its chunk
        if client is None:
            client = _current_client()
        if client is not None:
            futures = client.compute(counts)
            if progress:
                from distributed import progress as show_progress

                show_progress(futures)
            written = client.gather(futures)
        elif progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                written = dask.compute(*counts)
        else:
            written = dask.compute(*counts)
        for _, digests in written:
            w.record(digests)  # the chunks' checksums go into the store's integrity manifest
        n_written = sum(n for n, _ in written)
        if n_written != X.shape[0]:
            raise RuntimeError(f"wrote {n_written} rows of {X.shape[0]}")
    return Path(out)


#: raw table files a pipeline scores directly (ingested to a temporary table store first)
_FILES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")


def _score_file(model: Any, source: Path, out: str | os.PathLike, **kwargs: Any) -> Path:
    """Score a CSV / Parquet file with a pipeline of raw columns: ingested chunk by chunk into a temporary table
    store beside ``out`` (kinds kept, missing values kept), scored from there, the store removed after."""
    import shutil
    import tempfile

    from ..io.ingest import ingest

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.raw-", dir=out.parent))
    try:
        kinds = {c.name: c.kind for c in model.input_schema_ if c.kind in ("categorical", "boolean")}
        table = ingest(source, work / "table.zarr", kinds=kinds)
        return _score(model, table, out, str(source), **kwargs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _plan(model: Any, transform: bool = True) -> tuple[str, str | None]:
    """(output written as X, output written as y or None)."""
    names = [n for n in _outputs.output_names(model) if transform or n != "transform"]
    if not names:
        raise ValueError(f"a {type(model).__name__} has no outputs to score")
    y_out = "predict" if "predict" in names else None
    for x_out in ("transform", "predict_proba"):
        if x_out in names:
            return x_out, y_out
    if hasattr(model, "decision_function"):
        return "decision_function", y_out
    return "predict", y_out


def _score_rows(model: Any, plan: tuple[str, str | None], X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    x_out, y_out = plan
    Z = model.decision_function(X) if x_out == "decision_function" else _outputs.apply(model, x_out, X)
    Z = np.asarray(Z, dtype=np.float64).reshape(X.shape[0], -1)
    return Z, None if y_out is None else _outputs.apply(model, y_out, X)


def _columns(model: Any, x_out: str, width: int) -> list[str]:
    if x_out == "transform":
        return [f"{'distance_' if is_clusterer(model) else 'pc'}{i}" for i in range(width)]
    if x_out == "predict":
        return ["predict"] if width == 1 else [f"predict{i}" for i in range(width)]
    classes = getattr(model, "classes_", None)
    classes = list(classes) if classes is not None and len(classes) == width else list(range(width))
    if x_out == "decision_function" and width == 1:
        return [f"score_{classes[-1] if len(classes) else 1}"]
    return [f"{'proba' if x_out == 'predict_proba' else 'score'}_{c}" for c in classes]


def score_block(X: np.ndarray, *, chunk_index: int, row_start: int, model: Any, plan: tuple[str, str | None],
                tmp_path: str, chunk_rows: int) -> tuple[int, dict]:
    """Score one chunk and write it (runs on a worker); returns (rows written, the written chunks' checksums)."""
    from ..io.store import write_chunk

    Z, y = _score_rows(model, plan, X.astype(np.float64) if hasattr(X, "indptr") else np.asarray(X, dtype=np.float64))
    return len(Z), write_chunk(tmp_path, chunk_index, Z, y, chunk_rows)


def _takes_sparse(model: Any) -> bool:
    """Whether the model says (in its scikit-learn tags) that it takes sparse input."""
    try:
        return bool(model.__sklearn_tags__().input_tags.sparse)
    except AttributeError:
        return False


def _current_client() -> Any:
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None
