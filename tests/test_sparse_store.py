"""Sparse datasets: a CSR matrix per row chunk in zarr, read by the one read path (inside the consuming task),
surfaced as dask arrays of ``csr_matrix``; integrity (missing / truncated chunk refused by name); validation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
import scipy.sparse as sp

import scaleml_dask as sm
from scaleml_dask.io import read
from scaleml_dask.io.catalog import describe, verify_dataset
from scaleml_dask.io.sparse import CSRChunks, SparseWriter, write_sparse_chunk
from scaleml_dask.io.store import MANIFEST, IntegrityError
from scaleml_dask.passes import map_row_chunks
from scaleml_dask.validation import as_dask_array, check_X_y


def _matrix(n=1000, p=40, density=0.08, seed=0):
    A = sp.random(n, p, density=density, format="csr", random_state=seed, dtype=np.float64)
    keep = np.ones(n)
    keep[7] = 0  # an empty row
    A = sp.csr_matrix(sp.diags(keep) @ A)
    A.eliminate_zeros()
    return A


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """1,000 × 40 rows in 4 row chunks (the last short), 1-3 nnz chunks each, written by unaligned appends."""
    A = _matrix()
    y = np.arange(1000.0)
    path = tmp_path_factory.mktemp("sparse") / "s.zarr"
    with SparseWriter(path, 40, chunk_rows=300, nnz_chunk=400, y_dtype=np.float64) as w:
        for s in range(0, 1000, 170):
            w.append(A[s:s + 170], y[s:s + 170])
    return path, A, y


def test_round_trip_and_layout(stored):
    path, A, y = stored
    ds = sm.open_dataset(path)
    X = ds["X"].data
    assert X.chunks == ((300, 300, 300, 100), (40,)) and isinstance(X._meta, sp.csr_matrix)
    got = X.compute()
    assert isinstance(got, sp.csr_matrix) and (got != A).nnz == 0
    np.testing.assert_array_equal(ds["y"].values, y)
    for i, block in enumerate(X.blocks):  # every row chunk: canonical CSR, the rows it should hold
        b = block.compute()
        assert b.has_canonical_format and (b != A[300 * i:300 * (i + 1)]).nnz == 0
    info = describe(path)
    assert info["format"] == "csr" and info["nnz"] == A.nnz and info["n_features"] == 40
    manifest = json.loads((path / "X" / "data" / MANIFEST).read_text())
    nnz = [A[300 * i:300 * (i + 1)].nnz for i in range(4)]
    assert len(manifest["chunks"]) == sum(-(-k // 400) for k in nnz)  # exactly the chunks written
    assert verify_dataset(path) == (4 + 2 * sum(-(-k // 400) for k in nnz) + 4, [])  # and y's 4 chunks


def test_row_chunks_are_read_inside_the_consuming_task(stored):
    path, A, _ = stored
    X = sm.open_dataset(path)["X"].data
    assert isinstance(read.row_source(X), CSRChunks)
    parts = map_row_chunks(lambda b, *, chunk_index, row_start: (type(b).__name__, b.nnz, row_start), X)
    graph = dict(dask.delayed(parts).__dask_graph__())
    assert not [k for k in graph if str(k).startswith("read-")]  # no read task of its own
    assert dask.compute(*parts) == tuple(("csr_matrix", A[r:r + 300].nnz, r) for r in range(0, 1000, 300))


def test_parallel_writes_in_any_order_equal_appends(tmp_path, stored, client):
    path, A, y = stored
    out = tmp_path / "p.zarr"
    with SparseWriter(out, 40, n_samples=1000, chunk_rows=300, nnz_chunk=400, y_dtype=np.float64) as w:
        futures = [client.submit(write_sparse_chunk, str(w.tmp_path), i, A[300 * i:300 * (i + 1)],
                                 y[300 * i:300 * (i + 1)], 300) for i in (3, 1, 0, 2)]
        for f in futures:
            w.record(f.result())
    assert (sm.open_dataset(out)["X"].data.compute() != A).nnz == 0
    for array in ("indptr", "indices", "data"):
        assert json.loads((out / "X" / array / MANIFEST).read_text()) == \
            json.loads((path / "X" / array / MANIFEST).read_text())


def _chunk_file(path: Path, array: str, coords: tuple[int, ...]) -> Path:
    return path / "X" / array / "c" / "/".join(map(str, coords))


@pytest.mark.parametrize("damage", ["missing", "truncated"])
@pytest.mark.parametrize("array", ["data", "indices", "indptr"])
def test_missing_or_truncated_chunk_is_refused_by_name(tmp_path, damage, array):
    A = _matrix()
    path = tmp_path / "d.zarr"
    with SparseWriter(path, 40, chunk_rows=300, nnz_chunk=400) as w:
        w.append(A)
    f = _chunk_file(path, array, (2, 0))
    if damage == "missing":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:-8])
    X = sm.open_dataset(path)["X"].data
    X.blocks[1].compute()  # the other row chunks read fine
    with pytest.raises(IntegrityError) as err:
        X.blocks[2].compute()
    what = "missing" if damage == "missing" else "truncated"
    assert f"array 'X/{array}' chunk 2/0 (row chunk 2, rows 600-899)" in str(err.value) and what in str(err.value)
    with pytest.raises(IntegrityError, match=f"X/{array}' chunk 2/0"):  # in a pass too
        dask.compute(*map_row_chunks(lambda b, *, chunk_index, row_start: b.nnz, X))
    n, problems = verify_dataset(path)
    assert len(problems) == 1 and f"X/{array}' chunk 2/0" in problems[0]
    if (array, damage) != ("data", "missing"):
        return
    cli = subprocess.run([str(Path(sys.executable).with_name("scaleml")), "verify", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 1 and f"X/{array}' chunk 2/0" in cli.stdout + cli.stderr


def test_corrupt_compressed_chunk_fails_its_checksum(tmp_path):
    A = _matrix()
    path = tmp_path / "z.zarr"
    with SparseWriter(path, 40, chunk_rows=300, nnz_chunk=400, codec="zstd") as w:
        w.append(A)
    f = _chunk_file(path, "data", (1, 0))
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=r"X/data' chunk 1/0 \(row chunk 1, rows 300-599\).*(corrupt|decoded)"):
        sm.open_dataset(path)["X"].data.blocks[1].compute()


def test_validation_accepts_sparse_only_where_asked(stored):
    path, A, y = stored
    for X in (A, A.tocoo(), sp.csr_array(A), sm.open_dataset(path)["X"], as_dask_array(A, accept_sparse=True)):
        d = as_dask_array(X, accept_sparse=True)
        assert isinstance(d._meta, sp.csr_matrix) and (d.compute() != A).nnz == 0
        with pytest.raises(TypeError, match="sparse.*TruncatedSVD.*random projection"):
            as_dask_array(X)
    dX, dy = check_X_y(path, None, accept_sparse=True)
    assert dX.chunks[0] == dy.chunks[0] == (300, 300, 300, 100)
    for refuses in (lambda: sm.LinearRegression().fit(A, y), lambda: sm.LinearRegression().fit(path),
                    lambda: sm.online.RLS().learn_many(A, y), lambda: sm.online.MiniBatchKMeans(2).learn_many(A)):
        with pytest.raises(TypeError, match="sparse.*TruncatedSVD"):  # dense-only estimators name the way on
            refuses()


def test_batch_scoring_of_a_sparse_dataset(stored, tmp_path):
    import zarr

    path, A, y = stored
    labels = (y > 500).astype(int)
    model = sm.SGDClassifier(mode="local", rounds=2, batch_size=20).fit(A, labels)
    out = sm.score(model, path, tmp_path / "scores.zarr")
    g = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(g["y"][:], model.predict(A))
    np.testing.assert_allclose(g["X"][:], model.predict_proba(A), rtol=1e-12)
    with pytest.raises(TypeError, match=r"s.zarr is sparse.*TruncatedSVD"):
        sm.score(sm.LinearRegression().fit(A.toarray(), y), path, tmp_path / "dense-only.zarr")
