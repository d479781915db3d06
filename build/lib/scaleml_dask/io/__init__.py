"""The io layer: everything that reads or writes datasets, below the estimators.

- ``store``: writing zarr datasets atomically (codecs, the one chunk-size rule);
- ``table``: the layout of tables (named columns of several kinds: numbers, booleans, categories, date-times;
  one 1-d array per column, levels stored once, missing values kept), their writer and reading helpers;
- ``catalog``: named datasets (built-in demo entries + the user's ``data_catalog.yaml``), opened as xarray;
- ``ingest``: CSV / Parquet / .npy files into zarr, chunk by chunk, every column with its kind (``_encode``);
- ``synthetic``: generators of datasets with planted truth.

Submodules are imported on use (``from scaleml_dask.io.store import DatasetWriter``), so that workers writing a
chunk do not import xarray.
"""
