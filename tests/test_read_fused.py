"""Reads fused into the consuming task: a fit on a local store reads each chunk once, inside its kernel's task.

The cluster's workers count the chunks their reader opened (``io.read.reads``) and the task stream records what
ran: for a store read through the project's reader, only the estimator's block kernels and its reductions —
no read task of its own — and the numbers equal those of the same blocks given as plain dask arrays.
"""

from __future__ import annotations

from collections import Counter

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from distributed import get_task_stream
from distributed.utils import key_split

import scaleml_dask as sm
from scaleml_dask.io import read
from scaleml_dask.io.synthetic import make_logistic, make_regression
from scaleml_dask.passes import map_row_chunks
from scaleml_dask.sgd import SGDClassifier

ROWS, CHUNK = 4_000, 1_000


def _worker_reads(client) -> int:
    return sum(sum(c.values()) for c in client.run(lambda: dict(read.reads)).values())


def _run(client, fit):
    """``fit()`` on the cluster: (its result, chunks the workers read, task prefixes that ran)."""
    before, here = _worker_reads(client), sum(read.reads.values())
    with get_task_stream(client) as ts:
        out = fit()
    assert sum(read.reads.values()) == here  # nothing read on the client
    return out, _worker_reads(client) - before, Counter(key_split(t["key"]) for t in ts.data)


@pytest.fixture(scope="module")
def regression_store(tmp_path_factory):
    return make_regression(tmp_path_factory.mktemp("fused") / "reg.zarr", ROWS, 5, chunk_rows=CHUNK, seed=3)


@pytest.fixture(scope="module")
def logistic_store(tmp_path_factory):
    return make_logistic(tmp_path_factory.mktemp("fused") / "log.zarr", ROWS, 4, chunk_rows=CHUNK, seed=4)


def _in_memory(path):
    """The store's X and y as dask arrays of the same chunks that are not store reads (the fallback path)."""
    g = zarr.open_group(str(path), mode="r")
    return da.from_array(g["X"][:], chunks=(CHUNK, -1)), da.from_array(g["y"][:], chunks=CHUNK)


@pytest.mark.parametrize("solver", ["auto", "tsqr"])
def test_linear_regression_reads_each_chunk_once_inside_its_kernel(client, regression_store, solver):
    ds = sm.open_dataset(regression_store)
    m, n_reads, tasks = _run(client, lambda: sm.LinearRegression(solver=solver).fit(ds.X, ds.y))
    assert n_reads == 2 * ROWS // CHUNK  # X and y, each chunk once
    assert tasks["block_moments"] == ROWS // CHUNK and set(tasks) == {"block_moments"}
    ref = sm.LinearRegression(solver=solver).fit(*_in_memory(regression_store))
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-12)
    np.testing.assert_allclose(m.stderr_, ref.stderr_, rtol=1e-12)
    assert m.solver_ == ref.solver_


def test_pca_reads_each_chunk_once_per_pass(client, regression_store):
    path = str(regression_store)
    p, n_reads, tasks = _run(client, lambda: sm.PCA(n_components=3, solver="tsqr").fit(path))
    assert n_reads == ROWS // CHUNK and set(tasks) == {"block_moments"}
    ref = sm.PCA(n_components=3, solver="tsqr").fit(_in_memory(regression_store)[0])
    np.testing.assert_allclose(p.explained_variance_, ref.explained_variance_, rtol=1e-12)
    np.testing.assert_allclose(p.components_, ref.components_, rtol=1e-10, atol=1e-12)

    r, n_reads, tasks = _run(client, lambda: sm.PCA(n_components=2, solver="randomized", iterated_power=2,
                                                    random_state=0).fit(path))
    assert n_reads == tasks["block_range"] == 3 * ROWS // CHUNK  # 3 passes
    assert set(tasks) == {"block_range"}  # each pass's test matrix scattered (not a task); the last combine local
    ref = sm.PCA(n_components=2, solver="randomized", iterated_power=2, random_state=0).fit(
        _in_memory(regression_store)[0])
    np.testing.assert_allclose(r.explained_variance_, ref.explained_variance_, rtol=1e-12)


@pytest.mark.parametrize("mode", ["local", "sync"])
def test_sgd_reads_each_chunk_once_inside_its_block_task(client, logistic_store, mode):
    """local reads every chunk each round in ``local_block``; sync (and async: the same code) reads each
    once, in the ``split_block`` tasks whose results stay on their workers, whatever the number of epochs."""
    ds = sm.open_dataset(logistic_store)
    args = {"mode": mode, "batch_size": 500, "classes": [0.0, 1.0], ("rounds" if mode == "local" else "epochs"): 2}
    m, n_reads, tasks = _run(client, lambda: SGDClassifier(**args).fit(ds.X, ds.y))
    n_chunks = ROWS // CHUNK
    first = "local_block" if mode == "local" else "split_block"
    assert n_reads == 2 * n_chunks * (2 if mode == "local" else 1)
    assert tasks[first] == n_chunks * (2 if mode == "local" else 1)
    assert not any(t.startswith("read") or t in ("getitem", "array", "from-value") for t in tasks)
    ref = SGDClassifier(**args).fit(*_in_memory(logistic_store))
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-12)
    assert m.score(ds.X.values, ds.y.values) > 0.7  # Bayes: 0.87 (2 short epochs)


def test_column_chunked_store_is_read_in_the_kernel_too(client, tmp_path, rng):
    """A store chunked along columns as well: the kernel's task reads the row's chunks side by side."""
    X = rng.standard_normal((1003, 7))
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=X.shape, chunks=(250, 3), dtype="f8", compressors=None)
    z[:] = X
    (sums, n_reads, tasks) = _run(client, lambda: dask.compute(*map_row_chunks(_column_sums, read.dask_array(z))))
    assert n_reads == 5 * 3 and set(tasks) == {"column_sums"}
    np.testing.assert_allclose(np.vstack(sums), np.vstack([X[i:i + 250].sum(axis=0) for i in range(0, 1003, 250)]))


def _column_sums(X, *, chunk_index, row_start):
    return X.sum(axis=0)


def _describe(X, y, w, *, chunk_index, row_start, scale):
    return chunk_index, row_start, float(X.sum()) * scale, None if y is None else float(y.sum()), w


def test_any_dask_input_still_works_and_none_is_passed_through(tmp_path, rng):
    """Store reads, derived arrays and None side by side; blocks, row starts and kwargs as promised."""
    X = rng.standard_normal((10, 3))
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=X.shape, chunks=(4, 3), dtype="f8", compressors=None)
    z[:] = X
    stored = read.dask_array(z)
    derived = da.from_array(X[:, 0], chunks=4) * 2.0
    before = read.reads["raw"]
    tasks = map_row_chunks(_describe, stored, derived, None, scale=10.0)
    assert len({t.key for t in tasks}) == 3 and all(t.key.startswith("describe-") for t in tasks)
    assert [t.key for t in tasks] == [t.key for t in map_row_chunks(_describe, stored, derived, None, scale=10.0)]
    got = dask.compute(*tasks, scheduler="synchronous")
    assert read.reads["raw"] - before == 3
    want = [(i, s, X[s:s + 4].sum() * 10.0, 2.0 * X[s:s + 4, 0].sum(), None) for i, s in enumerate((0, 4, 8))]
    np.testing.assert_allclose([g[:4] for g in got], [w[:4] for w in want])
    assert all(g[4] is None for g in got)
    with pytest.raises(ValueError, match="different row chunks"):
        map_row_chunks(_describe, stored, da.from_array(X[:, 0], chunks=5), None, scale=1.0)


def _scaled(X, *, shift, scale):
    return (X - shift) * scale


def _with_y(X, y):
    return np.column_stack([X, y])


class _Shift:
    """A transform whose state changes in place (as a transformer refitted)."""

    def __init__(self, shift):
        self.shift = shift

    def __call__(self, X):
        return X - self.shift


def _apply(X, *, f):
    return f(X)


def test_a_derived_arrays_function_is_pickled_once_a_pass_and_unpickled_once_a_process(client, regression_store):
    """Every task of a pass holds the derivation (a pipeline's fitted preprocessing, hundreds of kB): its bytes are
    made once and a process unpickles them once; a pass after the transform changed in place pickles it anew."""
    import pickle

    from scaleml_dask.passes import _DERIVED, derived, one_pass

    ds = sm.open_dataset(regression_store)
    f = _Shift(1.0)
    Z = derived(_apply, ds.X.data, n_columns=5, f=f)
    d = _DERIVED[Z.name]
    b = pickle.dumps(d)
    assert pickle.dumps(d) == b
    assert pickle.loads(b) is pickle.loads(b) is not d
    Xn = ds.X.values
    np.testing.assert_allclose(one_pass(_column_sums, sum, Z), (Xn - 1.0).sum(axis=0), rtol=1e-12)
    f.shift = 3.0
    np.testing.assert_allclose(one_pass(_column_sums, sum, Z), (Xn - 3.0).sum(axis=0), rtol=1e-12)
    assert pickle.dumps(d) != b


def test_a_derived_array_is_computed_inside_the_kernels_task(client, regression_store):
    """A per-chunk transform (``passes.derived``, how a pipeline's preprocessing runs) costs no task of its own:
    the kernel's task reads the store's rows, transforms them and runs the kernel; nested transforms too. The
    same derived array computes as any dask array, with the same numbers."""
    from scaleml_dask.passes import derived, one_pass

    ds = sm.open_dataset(regression_store)
    X, y = ds.X.data, ds.y.data
    Z = derived(_scaled, X, n_columns=5, shift=1.0, scale=2.0)
    ZY = derived(_with_y, Z, y, n_columns=6)
    sums, n_reads, tasks = _run(client, lambda: one_pass(_column_sums, sum, ZY))
    assert n_reads == 2 * ROWS // CHUNK  # X and y, each chunk once
    assert set(tasks) == {"column_sums"}  # no read, no transform tasks: both inside the kernel's task
    Xn, yn = ds.X.values, ds.y.values
    want = np.column_stack([(Xn - 1.0) * 2.0, yn]).sum(axis=0)
    np.testing.assert_allclose(sums, want, rtol=1e-12)
    np.testing.assert_allclose(ZY.compute().sum(axis=0), want, rtol=1e-12)  # an ordinary dask array too
    assert ZY.shape == (ROWS, 6) and ZY.chunks[0] == X.chunks[0]
    assert map_row_chunks(_column_sums, ZY)[0].key == map_row_chunks(_column_sums, ZY)[0].key  # deterministic
    sliced = ZY[:, :2]  # not the derived array itself: computed by its own graph, still right
    first = dask.compute(*map_row_chunks(_column_sums, sliced))[0]
    np.testing.assert_allclose(first, ((Xn[:CHUNK, :2] - 1.0) * 2.0).sum(axis=0), rtol=1e-12)
