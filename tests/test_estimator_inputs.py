"""Bad or unusual estimator input: each a clear error naming the problem, or a documented conversion."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from scaleml_dask import PCA, LinearRegression, Ridge


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture
def data(rng):
    X = rng.standard_normal((600, 3))
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.3


@pytest.mark.parametrize("bad, what", [(np.nan, "NaN"), (np.inf, "inf")])
def test_non_finite_y_and_weights_are_named_with_chunk_and_row(data, bad, what):
    X, y = data
    yb = y.copy()
    yb[345] = bad
    with pytest.raises(ValueError, match=rf"y contains {what} in chunk 1 \(rows 300-599\), first at row 345"):
        LinearRegression().fit(da.from_array(X, chunks=(300, 3)), da.from_array(yb, chunks=300))
    w = np.ones(600)
    w[7] = bad
    with pytest.raises(ValueError, match=rf"sample_weight contains {what} in chunk 0 .*first at row 7"):
        LinearRegression().fit(da.from_array(X, chunks=(300, 3)), y, sample_weight=w)


def test_negative_and_all_zero_weights(data):
    X, y = data
    w = np.ones(600)
    w[450] = -1.0
    with pytest.raises(ValueError, match=r"sample_weight has negative values in chunk 1 \(rows 300-599\)"):
        Ridge().fit(da.from_array(X, chunks=(300, 3)), y, sample_weight=w)
    with pytest.raises(ValueError, match="all weights are zero"):
        LinearRegression().fit(X, y, sample_weight=np.zeros(600))
    with pytest.raises(ValueError, match="sample_weight has 599 values but X has 600 rows"):
        LinearRegression().fit(X, y, sample_weight=np.ones(599))


def test_zero_rows(data):
    X, y = data
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)"):
        LinearRegression().fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="X has 0 samples"):
        PCA().fit(da.zeros((0, 3), chunks=(10, 3)))


def test_y_chunked_differently_from_x_is_rechunked_to_the_same_rows(data):
    X, y = data
    ref = LinearRegression().fit(X, y)
    m = LinearRegression().fit(da.from_array(X, chunks=(100, 3)), da.from_array(y, chunks=250))
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-12)
    with pytest.raises(ValueError, match="X and y have different lengths: X has 600 rows, y has 500"):
        LinearRegression().fit(da.from_array(X, chunks=(100, 3)), da.from_array(y[:500], chunks=250))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int32, np.int64, np.bool_])
def test_float16_int_and_bool_inputs_are_computed_in_float64(data, dtype):
    """Documented conversion: every numeric dtype is read as is and computed in float64 inside each block."""
    X, y = data
    Xc = (X * 4).astype(dtype) if dtype is not np.bool_ else X > 0
    ref = LinearRegression().fit(np.asarray(Xc, dtype=np.float64), y)
    m = LinearRegression().fit(Xc, y)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-9)
    assert m.predict(Xc).dtype == np.float64
    p, p64 = PCA(n_components=2).fit(Xc), PCA(n_components=2).fit(np.asarray(Xc, float))
    np.testing.assert_allclose(p.explained_variance_, p64.explained_variance_, rtol=1e-9)
