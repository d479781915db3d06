"""The data catalog: named datasets, generated on first use, checked when opened."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

import scaleml_dask as sm
from scaleml_dask.io.catalog import CatalogError, describe, load_catalog


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "cat.yaml"
    path.write_text(
        "datasets:\n"
        "  small-reg:\n"
        "    path: data/small-reg.zarr\n"
        "    description: tiny regression\n"
        "    generator: {name: regression, n_samples: 1000, n_features: 3, chunk_rows: 300, noise: 0.0,"
        " seed: 5}\n"
        "  nowhere:\n"
        "    path: data/nowhere.zarr\n")
    return path


def test_generated_on_first_use_and_known_truth(catalog, tmp_path):
    assert sm.list_datasets(catalog) == ["nowhere", "small-reg"]
    assert not (tmp_path / "data" / "small-reg.zarr").exists()
    ds = sm.open_dataset("small-reg", catalog=catalog)
    assert (tmp_path / "data" / "small-reg.zarr").is_dir()
    assert ds["X"].dims == ("sample", "feature") and ds["y"].dims == ("sample",)
    assert ds["X"].data.chunks == ((300, 300, 300, 100), (3,))
    X, y = ds["X"].values, ds["y"].values
    coef = np.asarray(ds.attrs["coef"])
    np.testing.assert_allclose(y, X @ coef + ds.attrs["intercept"], atol=1e-12)
    assert ds.attrs["feature_names"] == ["x0", "x1", "x2"]
    info = describe("small-reg", catalog=catalog)
    assert info["n_samples"] == 1000 and info["n_chunks"] == 4 and info["codec"] == "none"


def test_unknown_name_lists_known(catalog):
    with pytest.raises(CatalogError, match="unknown dataset 'nope'.*Known datasets: nowhere, small-reg"):
        sm.open_dataset("nope", catalog=catalog)
    with pytest.raises(CatalogError, match="'nowhere'.*does not exist and has no generator"):
        sm.open_dataset("nowhere", catalog=catalog)


def test_bad_catalog_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  a: {description: x}\n")
    with pytest.raises(CatalogError, match="dataset 'a' needs a 'path'"):
        load_catalog(bad)
    bad.write_text("datasets:\n  a: {path: a.zarr, generator: {name: wavelets}}\n")
    with pytest.raises(CatalogError, match="generator 'wavelets'.*known generators"):
        load_catalog(bad)


def _write(path, **variables):
    xr.Dataset(variables).to_zarr(path, mode="w", consolidated=False)


def test_variables_checked_with_dataset_and_variable_named(tmp_path):
    X = np.zeros((4, 2))
    _write(tmp_path / "noX.zarr", Z=(("sample", "feature"), X))
    with pytest.raises(ValueError, match=r"noX.zarr' has no variable 'X'"):
        sm.open_dataset(tmp_path / "noX.zarr")
    _write(tmp_path / "dims.zarr", X=(("row", "col"), X))
    with pytest.raises(ValueError, match=r"dims.zarr': variable 'X' has dims \('row', 'col'\)"):
        sm.open_dataset(tmp_path / "dims.zarr")
    g = zarr.open_group(str(tmp_path / "str.zarr"), mode="w")
    g.create_array("X", shape=(4, 2), dtype="f8", dimension_names=("sample", "feature"))
    g.create_array("y", shape=(4,), dtype=np.dtypes.StringDType(), dimension_names=("sample",))
    with pytest.raises(ValueError, match=r"str.zarr': variable 'y' has non-numeric dtype"):
        sm.open_dataset(tmp_path / "str.zarr")


def test_a_store_replaced_at_the_same_path_is_opened_afresh(tmp_path, client):
    """Opens are cached by the store's metadata bytes: a store rewritten in place (same shape, same sizes of
    its metadata files) gives its own data, attributes and fit; a caller's edits never reach the cache."""
    from scaleml_dask.io.synthetic import make_regression

    path = tmp_path / "r.zarr"
    make_regression(path, 1200, 3, chunk_rows=500, noise=0.0, seed=1)
    first = sm.open_dataset(path)
    first.attrs["coef"].append(99.0)
    first["X"].attrs["note"] = "mine"
    again = sm.open_dataset(path)
    assert len(again.attrs["coef"]) == 3 and "note" not in again["X"].attrs
    assert again["X"].data.name == first["X"].data.name  # the same reader: the open was cached
    make_regression(path, 1200, 3, chunk_rows=500, noise=0.0, seed=2, overwrite=True)
    fresh = sm.open_dataset(path)
    planted = np.asarray(fresh.attrs["coef"])
    assert not np.allclose(planted, np.asarray(again.attrs["coef"]))
    np.testing.assert_allclose(fresh["y"].values, fresh["X"].values @ planted + fresh.attrs["intercept"], atol=1e-12)
    np.testing.assert_allclose(sm.LinearRegression().fit(str(path)).coef_, planted, atol=1e-10)


def test_an_edited_catalog_file_is_read_again(tmp_path):
    cat = tmp_path / "cat.yaml"
    cat.write_text("datasets:\n  aa: {path: a.zarr}\n")
    assert load_catalog(cat)["aa"].path == str(tmp_path / "a.zarr")
    cat.write_text("datasets:\n  bb: {path: b.zarr}\n")  # same size, maybe the same mtime: the bytes decide
    assert list(load_catalog(cat)) == ["bb"] and load_catalog(cat)["bb"].path == str(tmp_path / "b.zarr")
