"""Data integrity: stores written here carry a manifest; a missing, short or corrupt chunk is an error naming
the dataset, array and chunk, at read time, in a fit, with ``open_dataset(verify=True)`` and ``scaleml verify``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import scaleml_dask as sm
from scaleml_dask.io import read
from scaleml_dask.io.catalog import open_dataset, verify_dataset
from scaleml_dask.io.store import MANIFEST, DatasetWriter, IntegrityError, checksum
from scaleml_dask.io.synthetic import make_regression


def _chunk(path: Path, array: str, index: int) -> Path:
    g = zarr.open_group(str(path), mode="r")
    a = g[array]
    coords = (index,) + (0,) * (a.ndim - 1)
    return path / array / a.metadata.encode_chunk_key(coords)


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def scaleml(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("scaleml")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def store(tmp_path):
    """A 4-chunk regression store (last chunk short), uncompressed, written on the local process."""
    return make_regression(tmp_path / "r.zarr", 3500, 3, chunk_rows=1000, seed=1)


def test_stores_written_here_record_every_chunk(tmp_path, client, rng):
    """Chunks written by workers in parallel (generator on the cluster) and by appends are all recorded."""
    on_cluster = make_regression(tmp_path / "c.zarr", 3500, 3, chunk_rows=1000, codec="zstd", client=client)
    X, y = rng.standard_normal((2500, 2)), np.zeros(2500)  # an all-zero y: its chunks are written anyway
    with DatasetWriter(tmp_path / "a.zarr", 2, chunk_rows=1000, y_dtype=np.float64) as w:
        for s in range(0, 2500, 700):  # blocks not aligned with chunks
            w.append(X[s:s + 700], y[s:s + 700])
    for path in (on_cluster, tmp_path / "a.zarr"):
        for array in ("X", "y"):
            manifest = json.loads((path / array / MANIFEST).read_text())
            n = 4 if path == on_cluster else 3
            assert manifest["n_chunks"] == n and len(manifest["chunks"]) == n
            for key, (size, digest) in manifest["chunks"].items():
                data = (path / array / key).read_bytes()
                assert len(data) == size and checksum(data) == digest
        n_chunks, problems = verify_dataset(path)
        assert problems == [] and n_chunks == (8 if path == on_cluster else 6)
    np.testing.assert_array_equal(open_dataset(tmp_path / "a.zarr")["X"].values, X)


def test_deleted_chunk_fails_the_fit_instead_of_a_plausible_answer(store, client):
    os.remove(_chunk(store, "X", 2))
    with pytest.raises(IntegrityError, match=r"array 'X' chunk 2 \(rows 2000-2999\).*missing"):
        sm.LinearRegression().fit(str(store))
    out = scaleml("verify", str(store))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "array 'X' chunk 2" in out.stderr and "missing" in out.stderr


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_truncated_chunk_is_an_error(tmp_path, codec):
    path = make_regression(tmp_path / "r.zarr", 3500, 3, chunk_rows=1000, codec=codec, seed=1)
    target = _chunk(path, "y", 1)
    os.truncate(target, os.path.getsize(target) // 2)
    with pytest.raises(IntegrityError, match=r"r.zarr': array 'y' chunk 1 \(rows 1000-1999\).*truncated"):
        open_dataset(path)["y"].sum().compute(scheduler="synchronous")
    n_chunks, problems = verify_dataset(path)
    assert n_chunks == 8 and len(problems) == 1 and "array 'y' chunk 1" in problems[0]


def test_flipped_byte_in_a_compressed_chunk_is_caught_on_read(tmp_path):
    path = make_regression(tmp_path / "r.zarr", 3500, 3, chunk_rows=1000, codec="zstd", seed=1)
    _flip_byte(_chunk(path, "X", 3), 100)
    with pytest.raises(IntegrityError, match=r"array 'X' chunk 3 .*corrupt"):
        open_dataset(path)["X"].compute(scheduler="synchronous")


def test_flipped_byte_in_an_uncompressed_chunk_is_caught_by_full_verification(store):
    _flip_byte(_chunk(store, "X", 0), 17)
    with pytest.raises(IntegrityError, match=r"array 'X' chunk 0 .*corrupt"):
        open_dataset(store, verify=True)
    out = scaleml("verify", str(store))
    assert out.returncode != 0 and "array 'X' chunk 0" in out.stderr and "corrupt" in out.stderr


def test_verify_command_on_a_sound_store(store, tmp_path):
    cat = tmp_path / "cat.yaml"
    cat.write_text(f"datasets:\n  r:\n    path: {store}\n")
    out = subprocess.run([str(Path(sys.executable).with_name("scaleml")), "verify", "r"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "SCALEML_CATALOG": str(cat)})
    assert out.returncode == 0 and out.stdout.strip() == "ok: 8 chunks verified"
    assert open_dataset(store, verify=True)["X"].shape == (3500, 3)
    unknown = scaleml("verify", "nope", "--catalog", str(cat))  # a user's mistake: status 2, not damaged data
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "'nope'" in unknown.stderr


def test_store_from_elsewhere_missing_chunk_is_an_error_unless_allowed(tmp_path, rng):
    values = rng.standard_normal((300, 2))
    g = zarr.open_group(str(tmp_path / "ext.zarr"), mode="w")
    x = g.create_array("X", shape=values.shape, chunks=(100, 2), dtype="f8", compressors=None,
                       dimension_names=("sample", "feature"))
    x[:] = values
    os.remove(_chunk(tmp_path / "ext.zarr", "X", 1))
    with pytest.raises(IntegrityError, match=r"array 'X' chunk 1 \(rows 100-199\).*missing"):
        open_dataset(tmp_path / "ext.zarr")["X"].compute(scheduler="synchronous")
    assert len(verify_dataset(tmp_path / "ext.zarr")[1]) == 1
    x.attrs[read.EMPTY_CHUNKS_ATTR] = True  # written with write_empty_chunks=False on purpose
    got = open_dataset(tmp_path / "ext.zarr")["X"].values
    np.testing.assert_array_equal(got[100:200], 0.0)
    np.testing.assert_array_equal(got[200:], values[200:])
    assert verify_dataset(tmp_path / "ext.zarr") == (3, [])


def test_a_fit_on_a_local_store_reads_through_the_reader(store, client):
    def counts():
        return dict(read.reads)

    before = client.run(counts)
    m = sm.LinearRegression().fit(str(store))
    after = client.run(counts)
    raw = sum(after[w].get("raw", 0) - before[w].get("raw", 0) for w in after)
    assert raw == 8  # X and y, 4 chunks each, every one read once by the fast path
    coef = np.asarray(zarr.open_group(str(store), mode="r").attrs["coef"])
    assert np.max(np.abs(m.coef_ - coef)) < 0.2
