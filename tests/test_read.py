"""The chunk reader: bitwise what zarr returns, errors that name the chunk, reads fused into their consumers."""

from __future__ import annotations

import os

import dask
import numpy as np
import pytest
import zarr

from scaleml_dask.io import read, store

CODECS = {
    "none": None,
    "zstd": (zarr.codecs.ZstdCodec(level=0),),
    "blosc-lz4": (zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),),
}
MODE = {"none": "raw", "zstd": "zstd", "blosc-lz4": "blosc"}
LAYOUTS = {"1-d": ((1003,), (250,)), "2-d rows": ((1003, 7), (250, 7)), "2-d blocks": ((1003, 7), (250, 3))}


def _values(shape: tuple, dtype: str, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(shape) * 1000
    return v > 0 if dtype == "bool" else v.astype(dtype)


def _array(path, values: np.ndarray, chunks: tuple, compressors=None, **kw) -> zarr.Array:
    z = zarr.create_array(str(path), shape=values.shape, chunks=chunks, dtype=values.dtype,
                          compressors=compressors, fill_value=0, **kw)
    z[:] = values
    return zarr.open_array(str(path), mode="r")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "bool"])
@pytest.mark.parametrize("codec", CODECS)
def test_bitwise_equal_to_zarr(tmp_path, rng, codec, dtype, layout):
    shape, chunks = LAYOUTS[layout]
    z = _array(tmp_path / "a.zarr", _values(shape, dtype, rng), chunks, CODECS[codec])
    before = read.reads[MODE[codec]]
    got = read.dask_array(z, label="t").compute(scheduler="synchronous")
    want = z[:]
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()
    assert got.flags.c_contiguous
    n_chunks = int(np.prod([-(-s // c) for s, c in zip(shape, chunks)]))
    assert read.reads[MODE[codec]] - before == n_chunks  # the fast path, not zarr, read every chunk


SLICES_2D = [np.s_[800:], np.s_[100:200], np.s_[240:260, 2:5], np.s_[::7], np.s_[5], np.s_[5, 3], np.s_[-3:],
             np.s_[600:10:-3], np.s_[:, 1], np.s_[500:500], np.s_[1002]]


@pytest.mark.parametrize("layout", ["2-d rows", "2-d blocks"])
@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_sliced_reads_equal_zarr(tmp_path, rng, codec, layout):
    """Slices dask fuses into the read (a tail for held-out rows, steps, single rows) return what zarr does."""
    shape, chunks = LAYOUTS[layout]
    z = _array(tmp_path / "a.zarr", _values(shape, "float64", rng), chunks, CODECS[codec])
    X = read.dask_array(z, label="t")
    for sl in SLICES_2D:
        got, want = X[sl].compute(scheduler="synchronous"), z[:][sl]
        assert got.shape == want.shape and np.array_equal(got, want), sl


def test_short_last_chunk_is_a_view_of_its_valid_rows(tmp_path, rng):
    z = _array(tmp_path / "a.zarr", rng.standard_normal((1003, 4)), (250, 4))
    src = read.chunk_source(z)
    last = src.read_chunk((4, 0))
    assert last.shape == (3, 4) and np.array_equal(last, z[1000:])
    assert last.flags.writeable  # a copy-on-write map: consumers may work in place
    last[:] = 0
    assert np.array_equal(src.read_chunk((4, 0)), z[1000:])  # ...without touching the store


@pytest.mark.parametrize("kind", ["sharded", "zarr v2", "big-endian", "transpose filter"])
def test_everything_else_goes_through_zarr(tmp_path, rng, kind):
    values = rng.standard_normal((1003, 6))
    kw: dict = {}
    if kind == "sharded":
        kw = {"shards": (500, 6)}
    elif kind == "zarr v2":
        kw = {"zarr_format": 2}
    elif kind == "big-endian":
        kw = {"serializer": zarr.codecs.BytesCodec(endian="big")}
    else:
        kw = {"filters": (zarr.codecs.TransposeCodec(order=(1, 0)),)}
    z = _array(tmp_path / "a.zarr", values, (250, 6) if kind != "sharded" else (100, 6), **kw)
    src = read.chunk_source(z, label="t")
    assert src.mode == "zarr"
    got = read.dask_array(z, label="t").compute(scheduler="synchronous")
    assert got.tobytes() == z[:].tobytes()


def _chunk_path(z: zarr.Array, coords: tuple) -> str:
    return os.path.join(str(z.store.root), z.path, z.metadata.encode_chunk_key(coords))


@pytest.mark.parametrize("codec", CODECS)
def test_missing_chunk_is_an_error_naming_it(tmp_path, rng, codec):
    z = _array(tmp_path / "a.zarr", rng.standard_normal((1003, 4)), (250, 4), CODECS[codec])
    os.remove(_chunk_path(z, (2, 0)))
    with pytest.raises(store.IntegrityError, match=r"dataset 'demo': array 'X' chunk 2 \(rows 500-749\).*missing"):
        read.dask_array(z, label="demo", name="X").sum().compute(scheduler="synchronous")


def test_missing_chunk_is_an_error_on_the_zarr_path_too(tmp_path, rng):
    z = _array(tmp_path / "a.zarr", rng.standard_normal((1003, 4)), (250, 4), zarr_format=2)
    os.remove(os.path.join(str(z.store.root), "1.0"))
    with pytest.raises(store.IntegrityError, match=r"array 'a' chunk 1 .*missing"):
        read.dask_array(z, label="demo", name="a").compute(scheduler="synchronous")


def test_missing_chunks_read_as_fill_value_only_where_allowed(tmp_path, rng):
    values = rng.standard_normal((1003, 4))
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=values.shape, chunks=(250, 4), dtype="f8",
                          compressors=None, fill_value=-1.0, attributes={read.EMPTY_CHUNKS_ATTR: True})
    z[:] = values
    os.remove(_chunk_path(z, (1, 0)))
    got = read.dask_array(zarr.open_array(str(tmp_path / "a.zarr"), mode="r")).compute(scheduler="synchronous")
    want = values.copy()
    want[250:500] = -1.0
    assert np.array_equal(got, want)


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_chunk_is_an_error_naming_it(tmp_path, rng, codec):
    z = _array(tmp_path / "a.zarr", rng.standard_normal((1003, 4)), (250, 4), CODECS[codec])
    path = _chunk_path(z, (3, 0))
    os.truncate(path, os.path.getsize(path) - 1)
    with pytest.raises(store.IntegrityError, match=r"array 'X' chunk 3 \(rows 750-999\).*truncated"):
        read.dask_array(z, label="demo", name="X").compute(scheduler="synchronous")


def test_a_frame_of_another_size_is_an_error(tmp_path, rng):
    """A valid zstd frame that does not fill the chunk would leave garbage in the buffer: refused."""
    z = _array(tmp_path / "a.zarr", rng.standard_normal((1000, 4)), (250, 4), CODECS["zstd"])
    small = _array(tmp_path / "b.zarr", rng.standard_normal((100, 4)), (100, 4), CODECS["zstd"])
    with open(_chunk_path(small, (0, 0)), "rb") as f, open(_chunk_path(z, (1, 0)), "wb") as g:
        g.write(f.read())
    with pytest.raises(store.IntegrityError, match=r"chunk 1 .*decodes to 3200 bytes; the chunk has 8000"):
        read.chunk_source(z, label="demo").read_chunk((1, 0))


def test_reads_are_fused_into_the_tasks_that_consume_them(tmp_path, rng):
    z = _array(tmp_path / "a.zarr", rng.standard_normal((1003, 4)), (250, 4))
    X = read.dask_array(z, label="t")
    for expr in (X.sum(), X.T @ X, (X * 2.0).mean(axis=0)):
        graph = dict(expr.__dask_graph__())
        assert sum(1 for k in graph if isinstance(k, tuple) and k[0] == X.name) == X.npartitions
        (opt,) = dask.optimize(expr)
        optimized = dict(opt.__dask_graph__())
        assert not any(isinstance(k, tuple) and k[0] == X.name for k in optimized)
        assert len(optimized) <= len(graph) - X.npartitions
        assert np.allclose(opt.compute(scheduler="synchronous"), expr.compute(scheduler="synchronous"))


def test_a_zarr_array_given_to_an_estimator_reads_through_the_reader(tmp_path, rng):
    from scaleml_dask.validation import as_dask_array

    z = _array(tmp_path / "a.zarr", rng.standard_normal((1003, 4)), (250, 4))
    before = read.reads["raw"]
    X = as_dask_array(z, "X", ndim=2)
    assert np.array_equal(X.compute(scheduler="synchronous"), z[:])
    assert read.reads["raw"] - before == 5


def test_a_row_task_carries_only_its_rows_manifest_and_still_checks_it(tmp_path, rng):
    """``for_rows``: the reader a row chunk's task carries holds that row's manifest entries only (so the graph
    does not grow as the chunk count squared), and reads and checks exactly as the whole reader does."""
    path = tmp_path / "d.zarr"
    with store.DatasetWriter(path, n_features=3, chunk_rows=100, y_dtype="f8", codec="zstd") as w:
        w.append(rng.standard_normal((1050, 3)), rng.standard_normal(1050))
    src = read.chunk_source(zarr.open_group(str(path), mode="r")["X"])
    assert len(src.manifest["chunks"]) == 11
    cut = src.for_rows(4)
    assert list(cut.manifest["chunks"]) == [src.chunk_key((4, 0))]
    np.testing.assert_array_equal(cut.read_rows(4), src.read_rows(4))
    assert len(src.for_rows(10).read_rows(10)) == 50
    chunk = path / "X" / src.chunk_key((4, 0))
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(store.IntegrityError, match=r"array 'X' chunk 4 \(rows 400-499\).*(corrupt|decoded)"):
        cut.read_rows(4)
