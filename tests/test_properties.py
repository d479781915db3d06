"""Property tests (hypothesis): chunking invariance of the moments, CSV ingest round trips, checkpoint round trips.

Small ``max_examples`` and no deadline keep them to a few seconds; the kernels are called on numpy blocks, so no
scheduler is involved.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scaleml_dask as sm
from scaleml_dask._tsqr import block_moments, combine_moments
from scaleml_dask.checkpoint import Checkpointer
from scaleml_dask.io.ingest import _record_end, ingest

FAST = settings(max_examples=25, deadline=None)


def _splits(draw, n: int) -> list[int]:
    cuts = draw(st.lists(st.integers(1, n - 1), max_size=6, unique=True)) if n > 1 else []
    return [0, *sorted(cuts), n]


@FAST
@given(st.data(), st.integers(4, 120), st.integers(1, 4), st.sampled_from(["tsqr", "gram", "auto"]),
       st.booleans(), st.sampled_from([1.0, 1e3]), st.integers(2, 4))
def test_moments_do_not_depend_on_chunking(data, n, d, method, weighted, offset, fan_in):
    """Any split into blocks, combined by any fan-in, gives the moments of the whole: mean, weight, Gram."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    X = rng.standard_normal((n, d)) * rng.uniform(0.1, 10, d) + offset
    y = X @ rng.standard_normal(d) + rng.standard_normal(n)
    w = rng.uniform(0.1, 3.0, n) if weighted else None
    edges = _splits(data.draw, n)
    parts = [block_moments(X[a:b], y[a:b], None if w is None else w[a:b], center=True, method=method)
             for a, b in zip(edges[:-1], edges[1:])]
    while len(parts) > 1:
        parts = [combine_moments(parts[i:i + fan_in]) for i in range(0, len(parts), fan_in)]
    (m,) = parts
    ww = np.ones(n) if w is None else w
    A = np.column_stack([X, y])
    mean = ww @ A / ww.sum()
    gram = (A - mean).T @ ((A - mean) * ww[:, None])
    assert m.n == n and np.isclose(m.weight, ww.sum(), rtol=1e-13)
    np.testing.assert_allclose(m.mean, mean, rtol=1e-11, atol=1e-11 * offset)
    G = m.r if m.gram else m.r.T @ m.r
    np.testing.assert_allclose(G, gram, rtol=1e-9, atol=1e-9 * np.abs(gram).max())
    # PCA reads the spectrum of the X block of the same R: invariant as well
    sv = np.linalg.svd(G[:d, :d], compute_uv=False)
    np.testing.assert_allclose(sv, np.linalg.svd(gram[:d, :d], compute_uv=False), rtol=1e-8,
                               atol=1e-9 * np.abs(gram).max())


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
text = st.text(alphabet=st.sampled_from(list('ab ,"\n;é')), max_size=12)  # a bare CR is a line break (RFC 4180)


@FAST
@given(st.integers(1, 25), st.integers(1, 3), st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
       st.sampled_from(["\n", "\r\n"]), st.booleans(), st.data())
def test_csv_ingest_round_trip(n, d, quoting, newline, trailing, data):
    """Random numbers (any finite float, written with repr) beside a dropped text column with commas, quotes
    and newlines, any quoting and line ending: the store holds exactly the numbers."""
    X = np.array(data.draw(st.lists(st.lists(finite, min_size=d, max_size=d), min_size=n, max_size=n)))
    y = np.array(data.draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n)), dtype=float)
    notes = data.draw(st.lists(text, min_size=n, max_size=n))
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=quoting, lineterminator=newline)
    writer.writerow([*(f"x{j}" for j in range(d)), "note", "target"])
    for i in range(n):
        writer.writerow([*(repr(float(v)) for v in X[i]), notes[i], int(y[i])])
    body = buf.getvalue() if trailing else buf.getvalue()[: -len(newline)]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "t.csv")
        src.write_bytes(body.encode())
        ingest(src, Path(tmp, "t.zarr"), target="target", drop=["note"], chunk_rows=data.draw(st.integers(1, 30)))
        ds = sm.open_dataset(Path(tmp, "t.zarr"))
        np.testing.assert_array_equal(ds["X"].values, X)
        np.testing.assert_array_equal(ds["y"].values, y)
        assert ds.attrs["feature_names"] == [f"x{j}" for j in range(d)]


@FAST
@given(st.lists(st.lists(text, min_size=1, max_size=3), min_size=1, max_size=8), st.data())
def test_piece_cut_falls_between_records(rows, data):
    """Wherever a piece of a CSV ends, the reader cuts it after a whole record: the two sides parse to the rows."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    raw = buf.getvalue().encode()
    k = data.draw(st.integers(0, len(raw)))
    cut = _record_end(raw[:k])
    assert raw[cut - 1:cut] in (b"\n", b"")

    def parse(b: bytes) -> list[list[str]]:
        return list(csv.reader(io.StringIO(b.decode(), newline="")))

    assert parse(raw[:cut]) + parse(raw[cut:]) == parse(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | finite | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10)
arrays = hnp.arrays(st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_]),
                    hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5))


@FAST
@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), arrays, min_size=1, max_size=4),
       st.dictionaries(st.text(max_size=6), json_values, max_size=4), st.integers(0, 10**6))
def test_checkpoint_round_trip(arrs, meta, step):
    """Any arrays (dtypes, 0-d to 2-d, empty) and JSON metadata (big integers, unicode) come back exactly."""
    with tempfile.TemporaryDirectory() as tmp:
        Checkpointer(tmp, {"k": 1}).save(step, arrs, meta)
        back = Checkpointer(tmp, {"k": 1}).latest()
    assert back.step == step and back.meta == meta and set(back.arrays) == set(arrs)
    for k, a in arrs.items():
        assert back.arrays[k].dtype == a.dtype and back.arrays[k].shape == a.shape
        np.testing.assert_array_equal(back.arrays[k], a)
