"""Preprocessing of tables with scikit-learn's names and semantics, out of core: scalers, encoders, imputer.

Each transformer fits from statistics gathered in one pass over the data (all transformers of a
``ColumnTransformer`` or ``Pipeline`` in the same pass) and transforms a chunk inside the task of whatever consumes
it (``preprocessing._base``); the same code transforms raw rows in memory (a pandas DataFrame, a dict of columns).
Input: a stored table or matrix (path, catalog name, ``xarray.Dataset``), a dask or numpy array, raw values.

>>> import pandas as pd
>>> from scaleml_dask.preprocessing import StandardScaler
>>> StandardScaler().fit_transform(pd.DataFrame({"a": [1.0, 3.0]})).ravel().tolist()
[-1.0, 1.0]
"""

from ._data import MinMaxScaler, StandardScaler
from ._encoders import OneHotEncoder, OrdinalEncoder
from ._impute import SimpleImputer

__all__ = ["MinMaxScaler", "OneHotEncoder", "OrdinalEncoder", "SimpleImputer", "StandardScaler"]
