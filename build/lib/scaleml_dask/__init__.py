"""scaleml-dask: large-scale machine learning on Dask, over zarr stores.

Submodules are imported lazily so that ``import scaleml_dask`` stays fast and optional
dependencies (numba kernels, Kubernetes) load only when used. Importing the package changes nothing in the
process (no environment variables, no logging configuration), except where numba could keep no on-disk cache
at all (see ``_numba_cache``).

>>> import scaleml_dask as sm
>>> sm.__version__
'0.1.0'
"""

from __future__ import annotations

import importlib
from typing import Any

from ._numba_cache import ensure_cache_dir

ensure_cache_dir()

__version__ = "0.1.0"

_EXPORTS = {
    "connect": "cluster",
    "open_dataset": "io.catalog",
    "list_datasets": "io.catalog",
    "CatalogError": "io.catalog",
    "ingest": "io.ingest",
    "LinearRegression": "linear",
    "Ridge": "linear",
    "RidgeCV": "linear_cv",
    "reuse_statistics": "_moments",
    "PCA": "pca",
    "TruncatedSVD": "decomposition",
    "KMeans": "kmeans",
    "SGDClassifier": "sgd",
    "SGDRegressor": "sgd",
    "TSNE": "tsne",
    "save_model": "deploy.registry",
    "load_model": "deploy.registry",
    "quantize": "deploy.compress",
    "prune": "deploy.compress",
    "score": "deploy.score",
    "to_onnx": "deploy.onnx",
}
_SUBMODULES = {"io", "online", "validation", "cluster", "report", "runner", "linear", "pca", "kmeans", "sgd", "tsne",
               "preprocessing", "compose", "pipeline", "checkpoint", "config", "deploy", "metrics", "model_selection",
               "linear_cv", "decomposition", "feature_extraction", "feature_selection", "random_projection"}

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'scaleml_dask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
