"""Input validation: every accepted input type gives the same dask array; bad input names the problem."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from scaleml_dask.io.store import DatasetWriter
from scaleml_dask.validation import as_dask_array, check_X_y, finite_blocks


@pytest.fixture
def data(rng):
    return rng.standard_normal((1000, 4)), rng.standard_normal(1000)


def test_all_input_kinds_agree(tmp_path, data):
    X, y = data
    with DatasetWriter(tmp_path / "d.zarr", 4, chunk_rows=300, y_dtype="f8") as w:
        w.append(X, y)
    ds = xr.open_zarr(tmp_path / "d.zarr", consolidated=False)
    inputs = [X, da.from_array(X, chunks=(250, 2)), xr.DataArray(X, dims=("sample", "feature")), ds,
              zarr.open_group(str(tmp_path / "d.zarr"), mode="r")["X"], str(tmp_path / "d.zarr")]
    for inp in inputs:
        out = as_dask_array(inp, "X", ndim=2)
        assert len(out.chunks[1]) == 1, type(inp)
        np.testing.assert_array_equal(out.compute(), X)
    dX, dy = check_X_y(str(tmp_path / "d.zarr"), None)
    assert dy.chunks[0] == dX.chunks[0]
    np.testing.assert_array_equal(dy.compute(), y)


def test_errors_name_the_problem(data):
    X, y = data
    with pytest.raises(ValueError, match="X and y have different lengths: X has 1000 rows, y has 999"):
        check_X_y(X, y[:-1])
    with pytest.raises(ValueError, match="X must be a 2-d array"):
        as_dask_array(y, "X", ndim=2)
    with pytest.raises(ValueError, match="X has non-numeric dtype"):
        as_dask_array(np.array([["a", "b"]]), "X", ndim=2)
    with pytest.raises(ValueError, match="y has dtype object"):
        check_X_y(X[:2], np.array([object(), object()]))
    with pytest.raises(ValueError, match="has no variable 'y'"):
        check_X_y(xr.Dataset({"X": (("sample", "feature"), X)}), None)


def test_nan_reported_with_chunk_row_and_column(data):
    X, _ = data
    X = X.copy()
    X[612, 3] = np.nan
    dX = da.from_array(X, chunks=(250, 4))
    with pytest.raises(ValueError, match=r"X contains NaN in chunk 2 \(rows 500-749\), first at row 612, column 3"):
        finite_blocks(dX).sum().compute()
    X[612, 3] = np.inf
    with pytest.raises(ValueError, match="contains inf in chunk 2"):
        finite_blocks(da.from_array(X, chunks=(250, 4))).sum().compute()


def test_finite_check_is_fused_into_the_same_pass(data):
    """The check adds no tasks after optimisation: it runs inside the tasks that read each chunk."""
    X, _ = data
    dX = da.from_array(X, chunks=(250, 4))
    plain = dask.optimize((dX ** 2).sum(axis=0))[0]
    checked = dask.optimize((finite_blocks(dX) ** 2).sum(axis=0))[0]
    assert len(checked.__dask_graph__()) == len(plain.__dask_graph__())
    np.testing.assert_allclose(checked.compute(), (X ** 2).sum(axis=0))
