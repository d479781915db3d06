"""Model selection at scale: splits without copies, cross-validation, and searches that train many candidates in
the same read of each chunk.

- ``train_test_split``, ``KFold``, ``StratifiedKFold``, ``ShuffleSplit``, ``StratifiedShuffleSplit``
  (``_split``): every row assigned by a seeded permutation of its global index, the same whatever the chunking,
  so one pass feeds every split at once.
- ``cross_validate`` (``_validation``): scikit-learn's result layout; the folds' scores of every model in one
  pass (``scaleml_dask.metrics``).
- ``GridSearchCV``, ``RandomizedSearchCV``, ``HalvingRandomSearchCV`` (``_search``): scikit-learn's interface
  for any estimator here; for the SGD estimators (local mode) N candidates × k folds train in the same read of
  each chunk (``_fused``), with successive halving between rounds and divergent candidates stopped at once.
- ``kmeans_sweep`` (``_sweep``): KMeans for a list of ``n_clusters`` sharing each pass.

Submodules load on first use, so that ``RidgeCV`` can use the splits without importing the searches.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KFold": "_split",
    "ShuffleSplit": "_split",
    "StratifiedKFold": "_split",
    "StratifiedShuffleSplit": "_split",
    "check_cv": "_split",
    "train_test_split": "_split",
    "cross_validate": "_validation",
    "GridSearchCV": "_search",
    "RandomizedSearchCV": "_search",
    "HalvingRandomSearchCV": "_search",
    "kmeans_sweep": "_sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'scaleml_dask.model_selection' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
