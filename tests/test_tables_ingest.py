"""Mixed-type ingest and the table layout: kinds, levels, missing values, date-times, errors, what a user sees."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr

import scaleml_dask as sm
from scaleml_dask.io import read
from scaleml_dask.io.ingest import IngestError, ingest
from scaleml_dask.io.table import TableError, column_info, to_frame

REGIONS = ["north", "south", "east", "west"]


def _frame(n: int = 60) -> pd.DataFrame:
    """A small mixed table: numbers with gaps, a category whose last level appears only in the last row, booleans,
    ISO date-times with and without offsets, and a numeric target."""
    rng = np.random.default_rng(1)
    price = np.round(rng.uniform(1, 100, n), 2)
    price[[3, 17, 40]] = np.nan
    region = [REGIONS[i % 3] for i in range(n)]
    region[-1] = "zeta-late"  # a level seen first in the last row (and the last chunk)
    region[5] = None
    flag = [bool(i % 2) for i in range(n)]
    flag[7] = None
    when = [f"2024-03-{1 + i % 28:02d}T{i % 24:02d}:15:00Z" for i in range(n)]
    when[8] = None
    when[9] = "2024-03-02T01:15:00+01:00"  # = 2024-03-02T00:15:00Z
    return pd.DataFrame({"price": price, "region": region, "flag": pd.array(flag, dtype="boolean"), "when": when,
                         "qty": rng.integers(1, 9, n), "y": rng.normal(size=n)})


EXPECTED_SECONDS = pd.Timestamp("2024-03-02T00:15:00Z").timestamp()


def _write(frame: pd.DataFrame, path, kind: str) -> None:
    if kind == "parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        return
    text = frame.to_csv(index=False, na_rep="")
    with (gzip.open(path, "wt") if kind.endswith("gz") else open(path, "w")) as f:
        f.write(text)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    frame = _frame()
    _write(frame, d / "m.csv", "csv")
    ingest(d / "m.csv", d / "m.zarr", target="y", chunk_rows=16)
    return frame, d


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "parquet"])
def test_every_column_keeps_its_kind_and_values(tmp_path, kind):
    frame = _frame()
    _write(frame, tmp_path / f"m.{kind}", kind)
    ingest(tmp_path / f"m.{kind}", tmp_path / "m.zarr", target="y", chunk_rows=16)
    ds = sm.open_dataset(tmp_path / "m.zarr")
    assert list(ds.data_vars) == list(frame.columns)
    kinds = {c: ds[c].attrs["kind"] for c in ds.data_vars}
    assert kinds == {"price": "numeric", "region": "categorical", "flag": "boolean", "when": "datetime",
                     "qty": "numeric", "y": "numeric"}
    np.testing.assert_array_equal(ds["price"].values, frame["price"].to_numpy())
    levels = sorted(set(frame["region"].dropna()))
    assert ds["region"].attrs["levels"] == levels  # sorted; the late level included
    codes = ds["region"].values
    assert codes[5] == -1 and [levels[c] for c in np.delete(codes, 5)] == list(frame["region"].drop(5))
    np.testing.assert_array_equal(ds["flag"].values[:9], [0, 1, 0, 1, 0, 1, 0, -1, 0])
    when = ds["when"].values
    assert np.isnan(when[8]) and when[9] == EXPECTED_SECONDS
    assert when[0] == pd.Timestamp("2024-03-01T00:15Z").timestamp()
    assert {c: ds[c].attrs["n_missing"] for c in ds.data_vars} == {"price": 3, "region": 1, "flag": 1, "when": 1,
                                                                    "qty": 0, "y": 0}
    assert ds.attrs["scaleml_table"]["target"] == "y"
    assert all(ds[c].data.chunks[0][0] == 16 for c in ds.data_vars)
    assert sm.io.catalog.verify_dataset(tmp_path / "m.zarr")[1] == []  # manifests match the rewritten codes


def test_levels_do_not_depend_on_chunking_or_order_of_appearance(tmp_path):
    frame = _frame()
    _write(frame, tmp_path / "a.csv", "csv")
    _write(frame.iloc[::-1], tmp_path / "b.csv", "csv")  # the late level now comes first
    stores = []
    for i, (src, rows) in enumerate([("a.csv", 7), ("a.csv", 1000), ("b.csv", 5)]):
        ingest(tmp_path / src, tmp_path / f"{i}.zarr", target="y", chunk_rows=rows)
        stores.append(sm.open_dataset(tmp_path / f"{i}.zarr"))
    assert stores[0]["region"].attrs["levels"] == stores[1]["region"].attrs["levels"] == stores[2]["region"].attrs[
        "levels"]
    np.testing.assert_array_equal(stores[0]["region"].values, stores[1]["region"].values)
    np.testing.assert_array_equal(stores[0]["region"].values, stores[2]["region"].values[::-1])


def test_what_a_user_sees(mixed):
    frame, d = mixed
    ds = sm.open_dataset(d / "m.zarr")
    assert "levels" in repr(ds["region"]) and "'zeta-late'" in repr(ds["region"])
    assert all(type(ds[c].data).__name__ == "Array" for c in ds.data_vars)  # dask
    before = sum(read.reads.values())
    block = {c: ds[c].data.blocks[0].compute() for c in ("region", "flag", "when")}
    assert sum(read.reads.values()) - before == 3  # through the project's reader
    df = to_frame(block, ds)
    assert df["region"].dtype == "category" and list(df["region"].cat.categories) == ds["region"].attrs["levels"]
    assert df["region"].iloc[5] is np.nan or pd.isna(df["region"].iloc[5])
    assert str(df["when"].dt.tz) == "UTC" and df["when"].iloc[0] == pd.Timestamp("2024-03-01T00:15Z")
    info = {c["name"]: c for c in column_info(ds)}
    assert info["region"] == {"name": "region", "kind": "categorical", "dtype": "int32", "n_missing": 1, "n_levels": 4,
                              "target": False}


def test_an_estimator_refuses_codes_and_missing_values_by_name(mixed):
    frame, d = mixed
    with pytest.raises(TableError, match=r"column 'price' has 3 missing values: an estimator does not fit on them; "
                                         r"impute them first"):
        sm.LinearRegression().fit(d / "m.zarr")
    ds = sm.open_dataset(d / "m.zarr")
    with pytest.raises(TableError, match=r"column 'region' is categorical \(4 levels\): an estimator does not fit "
                                         r"on category codes; encode it first, e.g. make_pipeline"):
        sm.KMeans(2).fit(ds[["region", "qty"]])
    with pytest.raises(TableError, match="column 'region' is categorical"):
        sm.PCA(1).fit(ds["region"].expand_dims("feature", axis=1))
    with pytest.raises(TableError, match="column 'region' is categorical"):
        sm.SGDRegressor(mode="local").fit(frame[["region", "qty"]].astype({"region": "category"}), frame["y"])
    m = sm.LinearRegression().fit(ds[["qty", "y"]])  # numbers without gaps: used as they are
    np.testing.assert_allclose(m.coef_, np.polyfit(frame["qty"], frame["y"], 1)[0], rtol=1e-10)


def test_too_diverse_column_refused_by_name_with_the_way_out(tmp_path):
    n = 500
    src = tmp_path / "ids.csv"
    src.write_text("user,x,y\n" + "".join(f"u{i:05d},{i % 7},{i}\n" for i in range(n)))
    with pytest.raises(IngestError, match=r"ids.csv: column 'user' is too diverse to be a category \(500 distinct "
                                          r"values among its first 500: an id or free text\?\): drop it "
                                          r"\(drop=\['user'\], --drop user\)"):
        ingest(src, tmp_path / "o.zarr", target="y")
    assert not (tmp_path / "o.zarr").exists()
    ingest(src, tmp_path / "o.zarr", target="y", drop=["user"])
    ingest(src, tmp_path / "c.zarr", target="y", kinds={"user": "categorical"})  # declared: kept
    assert len(sm.open_dataset(tmp_path / "c.zarr")["user"].attrs["levels"]) == n
    with pytest.raises(IngestError, match=r"column 'user' has more than 100 levels \(max_levels, --max-levels\)"):
        ingest(src, tmp_path / "m.zarr", target="y", kinds={"user": "categorical"}, max_levels=100)


def test_bad_values_name_line_and_column(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("a,when,y\n1,2024-01-01,1\n2,2024-01-02,2\n3,someday,3\n")
    with pytest.raises(IngestError, match=r"t.csv: line 4, column 'when': 'someday' is not a date-time"):
        ingest(src, tmp_path / "o.zarr", target="y", kinds={"when": "datetime"})
    src.write_text("a,b,y\n1,2,3\n4,oops,6\n7,8,9\n")
    with pytest.raises(IngestError, match=r"line 3, column 'b': 'oops' is not a number \(its kind, numeric, was "
                                          r"inferred from lines 2-4; if it is not, declare its kind: "
                                          r"kinds=\{'b': 'categorical'\} \(--kind b=categorical\)\)"):
        ingest(src, tmp_path / "o.zarr", target="y")
    ingest(src, tmp_path / "o.zarr", target="y", kinds={"b": "categorical"})
    assert sm.open_dataset(tmp_path / "o.zarr")["b"].attrs["levels"] == ["2", "8", "oops"]
    src.write_text("a,a/b,y\n1,x,3\n")
    with pytest.raises(TableError, match=r"t.csv: column 'a/b' cannot name a zarr array"):
        ingest(src, tmp_path / "o2.zarr", target="y")
    src.write_text("a,r,y\n1,x,3\n2,,4\n")
    with pytest.raises(IngestError, match=r"line 3, column 'r': missing value \(''\)"):
        ingest(src, tmp_path / "o3.zarr", target="y", na="error")


def test_parquet_timestamps_dates_dictionaries(tmp_path):
    t = pa.table({
        "ts": pa.array([0, 86_400_000_000, None], type=pa.timestamp("us", tz="Europe/Paris")),
        "day": pa.array([0, 1, 2], type=pa.date32()),
        "cat": pa.array(["b", "a", None]).dictionary_encode(),
        "n": pa.array([1, 2, 3], type=pa.int16()),
    })
    pq.write_table(t, tmp_path / "p.parquet")
    ingest(tmp_path / "p.parquet", tmp_path / "p.zarr")
    ds = sm.open_dataset(tmp_path / "p.zarr")
    np.testing.assert_array_equal(ds["ts"].values, [0.0, 86_400.0, np.nan])  # UTC seconds whatever the zone
    np.testing.assert_array_equal(ds["day"].values, [0.0, 86_400.0, 172_800.0])
    assert ds["cat"].attrs["levels"] == ["a", "b"] and ds["cat"].values.tolist() == [1, 0, -1]
    pq.write_table(pa.table({"l": pa.array([[1], [2]]), "y": [1.0, 2.0]}), tmp_path / "bad.parquet")
    with pytest.raises(IngestError, match=r"bad.parquet: column 'l': type list<element: int64> is not supported"):
        ingest(tmp_path / "bad.parquet", tmp_path / "b.zarr", target="y")


def test_cli_ingest_kinds_and_catalog_show(mixed, tmp_path):
    frame, d = mixed
    run = [sys.executable, "-m", "scaleml_dask.cli"]
    out = subprocess.run([*run, "catalog", "show", str(d / "m.zarr")], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert doc["layout"] == "table" and doc["n_samples"] == 60 and doc["target"] == "y"
    assert [(c["name"], c["kind"], c["n_missing"], c["n_levels"]) for c in doc["columns"]] == [
        ("price", "numeric", 3, None), ("region", "categorical", 1, 4), ("flag", "boolean", 1, None),
        ("when", "datetime", 1, None), ("qty", "numeric", 0, None), ("y", "numeric", 0, None)]
    bad = subprocess.run([*run, "ingest", str(d / "m.csv"), str(tmp_path / "o.zarr"), "--target", "y", "--kind",
                          "region=numeric", "-q"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "column 'region' is not numeric" in bad.stderr
    assert not (tmp_path / "o.zarr").exists()
    from scaleml_dask.cli import main

    assert main(["ingest", str(d / "m.csv"), str(tmp_path / "o.zarr"), "--target", "y", "--kind", "qty=categorical",
                 "--na", "keep", "--max-levels", "50", "-q"]) == 0
    assert zarr.open_group(str(tmp_path / "o.zarr"), mode="r")["qty"].attrs["kind"] == "categorical"


def test_a_generated_table_is_the_same_whatever_the_workers(client, tmp_path):
    """Chunks made on the cluster's 2 workers or in this process: the same codes, levels and values."""
    from scaleml_dask.io.synthetic import make_table

    a = make_table(tmp_path / "a.zarr", 2_500, n_numeric=2, levels=(7, 40), chunk_rows=1_000, seed=3, client=client)
    b = make_table(tmp_path / "b.zarr", 2_500, n_numeric=2, levels=(7, 40), chunk_rows=1_000, seed=3)
    da_, db = sm.open_dataset(a), sm.open_dataset(b)
    for c in da_.data_vars:
        np.testing.assert_array_equal(da_[c].values, db[c].values)
        assert da_[c].attrs == db[c].attrs
    assert sm.io.catalog.verify_dataset(a)[1] == []
