"""What a model file may name, in one table: estimator classes, values, dataclasses, bit generators and dtypes.

A model file is data. The registry turns the names it holds into Python objects only through these tables, so
nothing is imported, and no dtype built, because a file names it: a class or dataclass is looked up by its
stable public name here (the module to import is this table's, never the file's), and a dtype string must be
one of the plain scalar dtypes the writer produces (booleans, integers, floats of 2-8 bytes, fixed-width
unicode) before numpy sees it — no object, void, structured or subarray dtype can reach an array.

>>> dtype("<f8"), dtype("|b1"), dtype("O"), dtype("[('a', 'O')]")
(dtype('float64'), dtype('bool'), None, None)
>>> resolve("scaleml_dask.linear.Ridge").__name__, resolve("os.system")
('Ridge', None)
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import numpy as np

#: The estimator classes a version may hold: stable public name -> (module, attribute) to import.
CLASSES: dict[str, tuple[str, str]] = {
    "scaleml_dask.linear.LinearRegression": ("scaleml_dask.linear", "LinearRegression"),
    "scaleml_dask.linear.Ridge": ("scaleml_dask.linear", "Ridge"),
    "scaleml_dask.linear_cv.RidgeCV": ("scaleml_dask.linear_cv", "RidgeCV"),
    "scaleml_dask.pca.PCA": ("scaleml_dask.pca", "PCA"),
    "scaleml_dask.decomposition.TruncatedSVD": ("scaleml_dask.decomposition", "TruncatedSVD"),
    "scaleml_dask.sgd.SGDClassifier": ("scaleml_dask.sgd", "SGDClassifier"),
    "scaleml_dask.sgd.SGDRegressor": ("scaleml_dask.sgd", "SGDRegressor"),
    "scaleml_dask.kmeans.KMeans": ("scaleml_dask.kmeans", "KMeans"),
    "scaleml_dask.online.LogisticRegression": ("scaleml_dask.online", "LogisticRegression"),
    "scaleml_dask.online.LinearRegression": ("scaleml_dask.online", "LinearRegression"),
    "scaleml_dask.online.Perceptron": ("scaleml_dask.online", "Perceptron"),
    "scaleml_dask.online.RLS": ("scaleml_dask.online", "RLS"),
    "scaleml_dask.online.MiniBatchKMeans": ("scaleml_dask.online", "MiniBatchKMeans"),
    "scaleml_dask.online.ADWIN": ("scaleml_dask.online", "ADWIN"),
    "scaleml_dask.online.PageHinkley": ("scaleml_dask.online", "PageHinkley"),
    "scaleml_dask.preprocessing.StandardScaler": ("scaleml_dask.preprocessing", "StandardScaler"),
    "scaleml_dask.preprocessing.MinMaxScaler": ("scaleml_dask.preprocessing", "MinMaxScaler"),
    "scaleml_dask.preprocessing.SimpleImputer": ("scaleml_dask.preprocessing", "SimpleImputer"),
    "scaleml_dask.preprocessing.OneHotEncoder": ("scaleml_dask.preprocessing", "OneHotEncoder"),
    "scaleml_dask.preprocessing.OrdinalEncoder": ("scaleml_dask.preprocessing", "OrdinalEncoder"),
    "scaleml_dask.compose.ColumnTransformer": ("scaleml_dask.compose", "ColumnTransformer"),
    "scaleml_dask.feature_extraction.text.HashingVectorizer": ("scaleml_dask.feature_extraction.text",
                                                               "HashingVectorizer"),
    "scaleml_dask.feature_extraction.text.TfidfTransformer": ("scaleml_dask.feature_extraction.text",
                                                              "TfidfTransformer"),
    "scaleml_dask.pipeline.Pipeline": ("scaleml_dask.pipeline", "Pipeline"),
    "scaleml_dask.random_projection.GaussianRandomProjection": ("scaleml_dask.random_projection",
                                                                "GaussianRandomProjection"),
    "scaleml_dask.random_projection.SparseRandomProjection": ("scaleml_dask.random_projection",
                                                              "SparseRandomProjection"),
    "scaleml_dask.feature_selection.SelectKBest": ("scaleml_dask.feature_selection", "SelectKBest"),
    "scaleml_dask.feature_selection.SelectPercentile": ("scaleml_dask.feature_selection", "SelectPercentile"),
    "scaleml_dask.feature_selection.VarianceThreshold": ("scaleml_dask.feature_selection", "VarianceThreshold"),
}

#: Objects (not estimators) a model's state may hold (``{"$value": name, "state": ...}``): rebuilt by the class's
#: ``_from_saved_state(state)`` when it has one, else as a bare instance given the saved attributes.
VALUES: dict[str, tuple[str, str]] = {
    "scaleml_dask._tabular.InputSchema": ("scaleml_dask._tabular", "InputSchema"),
    "scaleml_dask.compose._column_transformer._Passthrough": ("scaleml_dask.compose._column_transformer",
                                                              "_Passthrough"),
    "scaleml_dask.compose.make_column_selector": ("scaleml_dask.compose", "make_column_selector"),
    "scaleml_dask.feature_extraction._table.HashedColumn": ("scaleml_dask.feature_extraction._table",
                                                            "HashedColumn"),
    "scaleml_dask._deployable.CSRMatrix": ("scaleml_dask._deployable", "CSRMatrix"),
}

#: Functions a model's parameters may name (``{"$function": name}``): the score functions of feature selection.
FUNCTIONS: dict[str, tuple[str, str]] = {
    f"scaleml_dask.feature_selection.{f}": ("scaleml_dask.feature_selection", f)
    for f in ("f_classif", "chi2", "f_regression")} | {
    f"sklearn.feature_selection.{f}": ("sklearn.feature_selection", f) for f in ("f_classif", "chi2", "f_regression")}

#: The dataclasses a model's state may hold (``{"$dataclass": name, "fields": ...}``).
DATACLASSES: dict[str, tuple[str, str]] = {
    "scaleml_dask.sgd._trainer:TrainState": ("scaleml_dask.sgd._trainer", "TrainState"),
    "scaleml_dask._tabular:Column": ("scaleml_dask._tabular", "Column"),
    "scaleml_dask.preprocessing._encoders:_Compiled": ("scaleml_dask.preprocessing._encoders", "_Compiled"),
}

#: numpy bit generators a saved ``numpy.random.Generator`` may use.
BIT_GENERATORS: tuple[str, ...] = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")

#: The dtype strings (``dtype.str``) the writer produces: byte order, kind, size.
_DTYPE = re.compile(r"\|b1|[<>|]i1|[<>|]u1|[<>][iu][248]|[<>]f[248]|[<>]U[1-9][0-9]{0,5}")


def dtype(text: Any) -> np.dtype | None:
    """The numpy dtype of ``text`` if it is one of the plain scalar dtypes the writer produces, else None."""
    if type(text) is not str or not _DTYPE.fullmatch(text):
        return None
    return np.dtype(text)


def storable(dt: np.dtype) -> bool:
    """Whether the writer may store an array or scalar of dtype ``dt`` (what :func:`dtype` reads back)."""
    return dtype(dt.str) == dt


def _import(where: tuple[str, str]) -> Any:
    return getattr(importlib.import_module(where[0]), where[1])


def resolve(name: Any) -> type | None:
    """The estimator class listed as ``name`` in :data:`CLASSES`, else None."""
    where = CLASSES.get(name) if type(name) is str else None
    return None if where is None else _import(where)


def resolve_dataclass(name: Any) -> type | None:
    """The dataclass listed as ``name`` in :data:`DATACLASSES`, else None."""
    where = DATACLASSES.get(name) if type(name) is str else None
    return None if where is None else _import(where)


def resolve_value(name: Any) -> type | None:
    """The class listed as ``name`` in :data:`VALUES`, else None."""
    where = VALUES.get(name) if type(name) is str else None
    return None if where is None else _import(where)


def resolve_function(name: Any) -> Any:
    """The function listed as ``name`` in :data:`FUNCTIONS`, else None."""
    where = FUNCTIONS.get(name) if type(name) is str else None
    return None if where is None else _import(where)


def function_name(obj: Any) -> str | None:
    """The name under which the function ``obj`` is listed in :data:`FUNCTIONS`, else None."""
    return next((name for name, where in FUNCTIONS.items() if _import(where) is obj), None)


def name_of(obj: Any, table: dict[str, tuple[str, str]]) -> str | None:
    """The name under which ``type(obj)`` is listed in ``table``, else None."""
    cls = type(obj)
    for name, where in table.items():
        if where[1] == cls.__name__ and _import(where) is cls:
            return name
    return None
