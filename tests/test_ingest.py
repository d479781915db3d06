"""Ingestion: CSV / CSV.gz / Parquet / .npy -> zarr, bounded memory, located errors, atomic writes."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import scaleml_dask as sm
from scaleml_dask.io.ingest import IngestError, ingest


@pytest.fixture
def table(rng):
    n = 2_345
    cols = {f"f{i}": rng.standard_normal(n) for i in range(3)}
    cols["price"] = rng.standard_normal(n)
    return pa.table(cols)


def _assert_matches(dest, table, chunk_rows):
    ds = sm.open_dataset(dest)
    X = np.column_stack([table.column(f"f{i}").to_numpy() for i in range(3)])
    np.testing.assert_array_equal(ds["X"].values, X)
    np.testing.assert_array_equal(ds["y"].values, table.column("price").to_numpy())
    assert ds.attrs["feature_names"] == ["f0", "f1", "f2"]
    assert ds["X"].data.chunks[0][0] == chunk_rows and ds["X"].data.chunks[1] == (3,)


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "parquet"])
def test_round_trip_exact(tmp_path, table, kind):
    src = tmp_path / f"data.{kind}"
    if kind == "parquet":
        pq.write_table(table, src)
    else:
        with (gzip.open(src, "wb") if kind.endswith("gz") else open(src, "wb")) as f:
            pcsv.write_csv(table, f)
    ingest(src, tmp_path / "out.zarr", target="price", chunk_rows=500)
    _assert_matches(tmp_path / "out.zarr", table, 500)


def test_npy_with_target_column(tmp_path, rng):
    A = rng.standard_normal((1_001, 5))
    np.save(tmp_path / "a.npy", A)
    ingest(tmp_path / "a.npy", tmp_path / "a.zarr", target=4, chunk_rows=128)
    ds = sm.open_dataset(tmp_path / "a.zarr")
    np.testing.assert_array_equal(ds["X"].values, A[:, :4])
    np.testing.assert_array_equal(ds["y"].values, A[:, 4])
    assert ds.attrs["feature_names"] == ["x0", "x1", "x2", "x3"]


def test_default_chunks_near_64mb(tmp_path, rng):
    np.save(tmp_path / "w.npy", rng.standard_normal((10, 1000)))
    ingest(tmp_path / "w.npy", tmp_path / "w.zarr")
    import zarr

    assert zarr.open_group(str(tmp_path / "w.zarr"), mode="r")["X"].chunks == (8388, 1000)


def test_malformed_row_names_line_and_column(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("a,b,y\n1,2,3\n4,5,6\n7,8\n")
    with pytest.raises(IngestError, match=r"bad.csv: line 4 has 2 fields, expected 3 \(first differing column: 3\)"):
        ingest(src, tmp_path / "o.zarr", target="y")
    src.write_text("a,b,y\n1,2,3\n4,oops,6\n7,8,9\n")
    with pytest.raises(IngestError, match=r"line 3, column 'b': 'oops' is not a number"):
        ingest(src, tmp_path / "o.zarr", target="y")


def test_a_column_of_strings_is_categorical_unless_declared_numeric(tmp_path):
    src = tmp_path / "city.csv"
    src.write_text("a,city,y\n1,Paris,3\n4,Oslo,6\n")
    ingest(src, tmp_path / "t.zarr", target="y")
    ds = sm.open_dataset(tmp_path / "t.zarr")
    assert ds["city"].attrs["kind"] == "categorical" and ds["city"].attrs["levels"] == ["Oslo", "Paris"]
    np.testing.assert_array_equal(ds["city"].values, [1, 0])
    with pytest.raises(IngestError, match=r"column 'city' is not numeric \(e.g. 'Paris' on line 2\); drop it or "
                                          r"declare its kind"):
        ingest(src, tmp_path / "o.zarr", target="y", kinds={"city": "numeric"})
    ingest(src, tmp_path / "o.zarr", target="y", drop=["city"])
    np.testing.assert_array_equal(sm.open_dataset(tmp_path / "o.zarr")["X"].values, [[1.0], [4.0]])
    with pytest.raises(IngestError, match=r"no column 'price'"):
        ingest(src, tmp_path / "o.zarr", target="price")


def test_failed_ingest_leaves_existing_store_intact(tmp_path, table):
    good = tmp_path / "good.csv"
    pcsv.write_csv(table, good)
    dest = tmp_path / "dest.zarr"
    ingest(good, dest, target="price", chunk_rows=500)
    bad = tmp_path / "bad.csv"
    lines = good.read_text().splitlines()
    lines[2000] = "1,2,3"  # a short row far into the file, after several chunks were written
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestError, match="line 2001 has 3 fields"):
        ingest(bad, dest, target="price", chunk_rows=500, overwrite=True)
    _assert_matches(dest, table, 500)  # the previous store is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "dest.zarr", "good.csv"]  # no leftovers
    with pytest.raises(IngestError):
        ingest(bad, tmp_path / "new.zarr", target="price")
    assert not (tmp_path / "new.zarr").exists()


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_file_size(tmp_path):
    """A CSV of ~23 chunks (216 MB of text) is ingested with RSS growth of a few chunks only.

    Run in a fresh process; a 3-chunk warm-up ingest first sets up the one-off buffers (parser, codec
    threads) so that what is measured is what grows with the file.
    """
    rows, chunk_rows, d = 1_000_000, 50_000, 10
    rng = np.random.default_rng(0)
    cols = {f"f{i}": rng.standard_normal(rows) for i in range(d)} | {"y": rng.standard_normal(rows)}
    pcsv.write_csv(pa.table(cols), tmp_path / "big.csv")
    pcsv.write_csv(pa.table({k: v[:150_000] for k, v in cols.items()}), tmp_path / "warm.csv")
    del cols
    chunk_bytes = chunk_rows * (d + 1) * 8
    script = textwrap.dedent(f"""
        import resource
        from scaleml_dask.io.ingest import ingest
        ingest({str(tmp_path / 'warm.csv')!r}, {str(tmp_path / 'warm.zarr')!r}, target="y", chunk_rows={chunk_rows})
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ingest({str(tmp_path / 'big.csv')!r}, {str(tmp_path / 'big.zarr')!r}, target="y", chunk_rows={chunk_rows})
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    growth = int(out.stdout.strip().splitlines()[-1])
    file_bytes = (tmp_path / "big.csv").stat().st_size
    assert file_bytes > 20 * chunk_bytes
    assert growth < 8 * chunk_bytes, f"RSS grew {growth / 2**20:.1f} MiB for {chunk_bytes / 2**20:.1f} MiB chunks"
    ds = sm.open_dataset(tmp_path / "big.zarr")
    assert ds["X"].shape == (rows, d) and len(ds["X"].data.chunks[0]) == 20


# --- edge cases: each an error naming file, line and column, and nothing left at the destination -------------

def _assert_nothing_left(dest):
    assert not dest.exists()
    assert not [p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}")]


def _assert_refused(tmp_path, name, text, match, **kw):
    src = tmp_path / name
    if isinstance(text, bytes):
        src.write_bytes(text)
    else:
        src.write_text(text)
    dest = tmp_path / "out.zarr"
    with pytest.raises(IngestError, match=match):
        ingest(src, dest, **kw)
    _assert_nothing_left(dest)


def test_empty_file_refused(tmp_path):
    _assert_refused(tmp_path, "e.csv", "", r"e.csv: empty file \(no header line\)", target="y")


def test_header_only_refused(tmp_path):
    _assert_refused(tmp_path, "h.csv", "a,b,y\n", r"h.csv: no data rows \(only a header\)", target="y")


def test_row_with_too_few_fields(tmp_path):
    _assert_refused(tmp_path, "few.csv", "a,b,y\n1,2,3\n4,5\n", r"few.csv: line 3 has 2 fields, expected 3", target="y")


def test_row_with_too_many_fields(tmp_path):
    _assert_refused(tmp_path, "many.csv", "a,b,y\n1,2,3\n4,5,6,7\n8,9,10\n",
             r"many.csv: line 3 has 4 fields, expected 3 \(first differing column: 4\)", target="y")


def test_quoted_fields_with_embedded_newlines_across_pieces(tmp_path):
    """A dropped feature holds quoted text with newlines; the reader's piece boundary falls inside one of them."""
    n = 3_000
    note = '"line one\nline two, with a comma\n""quoted"""'
    lines = ["a,note,y"] + [f"{i},{note},{2 * i}" for i in range(n)]
    big = tmp_path / "qbig.csv"  # ~1.5 MB against pieces of 1 MiB: the first cut falls inside quotes
    big.write_text("\n".join(lines[:1] + lines[1:] * 10) + "\n")
    assert big.stat().st_size > 1 << 20
    ingest(big, tmp_path / "q.zarr", target="y", drop=["note"], chunk_rows=1000)
    ds = sm.open_dataset(tmp_path / "q.zarr")
    a = np.tile(np.arange(n, dtype=float), 10)
    np.testing.assert_array_equal(ds["X"].values[:, 0], a)
    np.testing.assert_array_equal(ds["y"].values, 2 * a)
    src = tmp_path / "q.csv"
    src.write_text("a,note,y\n1,\"x\ny\",2\n3,\"z\",oops\n")  # the bad value's line counts the embedded newline
    with pytest.raises(IngestError, match=r"line 4, column 'y': 'oops' is not a number"):
        ingest(src, tmp_path / "bad.zarr", target="y", drop=["note"])


def test_missing_values_kept_and_counted_by_default_refused_or_filled(tmp_path):
    text = "a,b,y\n1,2,3\n4,,6\n7,NA,9\n"
    (tmp_path / "na.csv").write_text(text)
    ingest(tmp_path / "na.csv", tmp_path / "kept.zarr", target="y")
    ds = sm.open_dataset(tmp_path / "kept.zarr")
    np.testing.assert_array_equal(ds["X"].values, [[1, 2], [4, np.nan], [7, np.nan]])
    assert ds.attrs["n_missing"] == {"a": 0, "b": 2, "y": 0}
    with pytest.raises(ValueError, match=r"column 'b' has 2 missing values: an estimator does not fit on them; "
                                         r"impute them first, e.g. make_pipeline\(make_column_transformer\("
                                         r"\(SimpleImputer\(\), \['b'\]\)"):
        sm.LinearRegression().fit(tmp_path / "kept.zarr")
    _assert_refused(tmp_path, "na.csv", text, r"na.csv: line 3, column 'b': missing value \(''\); pass na='keep'",
                    target="y", na="error")
    ingest(tmp_path / "na.csv", tmp_path / "filled.zarr", target="y", na=-1.0)
    np.testing.assert_array_equal(sm.open_dataset(tmp_path / "filled.zarr")["X"].values, [[1, 2], [4, -1], [7, -1]])
    with pytest.raises(ValueError, match="na must be 'keep', 'error' or a number"):
        ingest(tmp_path / "na.csv", tmp_path / "x.zarr", target="y", na="zero")


def test_missing_value_in_parquet_names_row_and_column(tmp_path):
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [1.0, None, 3.0], "y": [0.0, 1.0, 0.0]}), tmp_path / "n.pq")
    dest = tmp_path / "out.zarr"
    with pytest.raises(IngestError, match=r"n.pq: row 1, column 'b': missing value"):
        ingest(tmp_path / "n.pq", dest, target="y", na="error")
    _assert_nothing_left(dest)
    ingest(tmp_path / "n.pq", dest, target="y", na=0.5)
    np.testing.assert_array_equal(sm.open_dataset(dest)["X"].values[:, 1], [1.0, 0.5, 3.0])


@pytest.mark.parametrize("value", ["1e999", "-inf", "Infinity"])
def test_a_value_that_is_not_finite_is_refused_by_line_and_column(tmp_path, value):
    # 1e999 overflows float64 to inf: kept, it would be refused only at fit, far from its source
    _assert_refused(tmp_path, "inf.csv", f"a,b,y\n1,2,0\n3,{value},1\n",
                    r"inf.csv: column 'b', line 3: -?inf is not a finite number", target="y")
    pq.write_table(pa.table({"a": [1.0, np.inf], "y": [0.0, 1.0]}), tmp_path / "inf.parquet")
    with pytest.raises(IngestError, match=r"inf.parquet: column 'a', row 1: inf is not a finite number"):
        ingest(tmp_path / "inf.parquet", tmp_path / "p.zarr", target="y")
    _assert_nothing_left(tmp_path / "p.zarr")


@pytest.mark.parametrize("typ", [pa.null(), pa.float64()])
def test_all_null_parquet_column_refused(tmp_path, typ):
    t = pa.table({"a": pa.array([1.0, 2.0]), "e": pa.array([None, None], type=typ), "y": pa.array([0.0, 1.0])})
    pq.write_table(t, tmp_path / "z.parquet")
    dest = tmp_path / "out.zarr"
    with pytest.raises(IngestError, match=r"z.parquet: column 'e' is all null \(2 rows\)"):
        ingest(tmp_path / "z.parquet", dest, target="y", na=0.0)  # even with a fill value
    _assert_nothing_left(dest)


@pytest.mark.parametrize("array, match", [
    (np.zeros(5), r"expected a 2-d array, got shape \(5,\)"),
    (np.zeros((2, 2, 2)), r"expected a 2-d array, got shape \(2, 2, 2\)"),
    (np.array([["a", "b"]]), r"dtype <U1 is not a real number type"),
    (np.zeros((2, 2), dtype=complex), r"dtype complex128 is not a real number type"),
])
def test_npy_of_wrong_dtype_or_ndim(tmp_path, array, match):
    np.save(tmp_path / "w.npy", array)
    dest = tmp_path / "out.zarr"
    with pytest.raises(IngestError, match=r"w.npy: " + match):
        ingest(tmp_path / "w.npy", dest)
    _assert_nothing_left(dest)


def test_target_column_that_does_not_exist(tmp_path):
    _assert_refused(tmp_path, "t.csv", "a,b\n1,2\n", r"t.csv: no column 'price' \(columns: \['a', 'b'\]\)",
                    target="price")
    np.save(tmp_path / "t.npy", np.zeros((3, 2)))
    with pytest.raises(IngestError, match=r"t.npy: target column 5 out of range for 2 columns"):
        ingest(tmp_path / "t.npy", tmp_path / "o.zarr", target=5)


def test_duplicate_column_names(tmp_path):
    _assert_refused(tmp_path, "d.csv", "a,b,a,y\n1,2,3,4\n", r"d.csv: duplicate column names: 'a' \(columns 1, 3\)",
             target="y")


def test_sm_ingest_is_callable_again_after_first_use(tmp_path):
    """The function ``sm.ingest`` is not shadowed by a submodule of the same name once it has been used."""
    import scaleml_dask as sm

    (tmp_path / "a.csv").write_text("x,t\n1,2\n3,4\n")
    for i in range(2):
        sm.ingest(tmp_path / "a.csv", tmp_path / f"a{i}.zarr", target="t")
        np.testing.assert_array_equal(sm.open_dataset(tmp_path / f"a{i}.zarr")["y"].values, [2.0, 4.0])
    assert callable(sm.ingest)
