"""The k-fold kernels of ``RidgeCV``'s pass against plain numpy references.

``Permutation.folds`` (each row's fold from the seeded permutation, tile by tile in one kernel) equals the
permutation's positions cut by ``np.searchsorted``; the permutation itself is pinned to the values it had before
the kernel was fused (a split must not change under anyone's feet) and equals the network written out in plain
Python integers, whether its rounds are looked up in tables (halves of up to 16 bits) or multiplied out.
``fold_grams`` (the fold computed inside the copy loop) equals the Gram of ``[X | y | 1]`` of each fold's rows
taken with boolean masks — for a block of rows of only some folds, a block smaller than a tile and than a buffer,
blocks that start mid-tile and fill many buffers, contiguous folds (``shuffle=False``) and more folds than the
branch-free lookup takes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from scaleml_dask._cv_kernels import fold_grams, pattern_grams
from scaleml_dask._folds import TILE, Permutation, fold_bounds
from scaleml_dask.model_selection import KFold


def _reference_folds(perm: Permutation, rows: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.searchsorted(bounds, perm(rows), side="right")


def _reference_grams(X: np.ndarray, y: np.ndarray, folds: np.ndarray, k: int) -> np.ndarray:
    A = np.c_[X, y, np.ones(len(y))]
    return np.stack([A[folds == f].T @ A[folds == f] for f in range(k)])


def test_the_permutation_is_the_one_splits_were_made_with():
    p = Permutation.seeded(5_000_000, 0)
    assert p(np.array([0, 1, 2, 3, 4_999_999, 2_500_000])).tolist() == [2034653, 4821760, 1996531, 215424, 4545850,
                                                                       2683868]
    q = Permutation.seeded(1000, 7, 3)
    assert q(np.arange(0, 1000, 97)).tolist() == [116, 332, 841, 508, 803, 438, 584, 476, 282, 935, 666]
    r = Permutation.seeded(1_000_003, 5)(np.arange(1_000_003))
    assert np.array_equal(np.sort(r), np.arange(1_000_003))
    assert hashlib.sha256(r.tobytes()).hexdigest()[:16] == "d4179eaa369dd96f"
    M = KFold(5, random_state=0).make_plan(100_003).memberships(np.arange(100_003))
    assert hashlib.sha256(M.tobytes()).hexdigest()[:16] == "7d33ec843fbb21bf"


_M64 = (1 << 64) - 1


def _perm_of(i: int, p: Permutation) -> int:
    """``p(i)`` in plain Python integers: the 4-round network, hashes multiplied out, walked until below ``n``."""
    bits, low = p.bits
    lo_mask, hi_mask = (1 << low) - 1, (1 << (bits - low)) - 1
    keys = [int(k) for k in p.keys]

    def round_(v: int, key: int, mask: int) -> int:
        h = ((v ^ key) * 0x9E3779B97F4A7C15) & _M64
        h ^= h >> 29
        h = (h * 0xBF58476D1CE4E5B9) & _M64
        return (h ^ (h >> 32)) & mask

    x = i
    while True:
        high, low_half = x >> low, x & lo_mask
        low_half ^= round_(high, keys[0], lo_mask)
        high ^= round_(low_half, keys[1], hi_mask)
        low_half ^= round_(high, keys[2], lo_mask)
        high ^= round_(low_half, keys[3], hi_mask)
        x = (high << low) | low_half
        if x < p.n:
            return x


@pytest.mark.parametrize("n", [5_000_000, 2**40 + 3], ids=["tabulated-rounds", "multiplied-rounds"])
def test_the_permutation_equals_the_network_in_plain_python(n):
    """Halves of up to 16 bits hash by table look-ups, wider ones by multiplies: both are the same network."""
    p = Permutation.seeded(n, 11)
    rows = np.r_[np.arange(0, 300), np.arange(n - 300, n), np.random.default_rng(0).integers(0, n, 400)]
    np.testing.assert_array_equal(p(rows), [_perm_of(int(i), p) for i in rows])
    bounds = fold_bounds(n, 5)
    np.testing.assert_array_equal(p.folds(rows, bounds), _reference_folds(p, rows, bounds))


@pytest.mark.parametrize("k", [5, 23])
def test_folds_in_one_kernel_equal_the_positions_cut_by_searchsorted(k):
    n = 50_021
    perm, bounds = Permutation.seeded(n, 3), fold_bounds(n, k)
    rows = np.random.default_rng(0).permutation(n)[:7_000]  # any rows, in any order, across tiles
    folds = perm.folds(rows, bounds)
    np.testing.assert_array_equal(folds, _reference_folds(perm, rows, bounds))
    assert np.array_equal(np.bincount(perm.folds(np.arange(n), bounds)), np.diff(np.r_[0, bounds]))


N = 40_009  # rows of the data set the blocks below come from


@pytest.mark.parametrize(("row_start", "rows", "k", "shuffle", "sub_rows"), [
    (17, 3, 5, True, 1000),                 # 3 rows: some folds get none
    (TILE - 100, 700, 5, True, 1000),       # smaller than a tile and than a buffer, across a tile boundary
    (5_003, 9_001, 5, True, 64),            # starts mid-tile, fills many buffers of every fold
    (0, 4_000, 3, False, 128),              # contiguous folds: every row in fold 0
    (7_990, 500, 3, False, 1000),           # contiguous folds: the block straddles folds 0 and 1
    (1_234, 6_000, 23, True, 100),          # more folds than the branch-free lookup takes
], ids=["3-rows", "under-a-tile", "many-buffers", "one-fold", "two-folds", "23-folds"])
def test_fold_grams_equal_the_masked_grams(row_start, rows, k, shuffle, sub_rows):
    rng = np.random.default_rng(row_start)
    X = rng.normal(size=(rows, 4)) * [1.0, 100.0, 0.01, 3.0] + 2.0
    y = rng.normal(size=rows)
    plan = KFold(k, shuffle=shuffle, random_state=1).make_plan(N)
    perm, bounds = plan.fold_rule()
    folds = _reference_folds(perm, np.arange(row_start, row_start + rows), bounds)
    G, counts = fold_grams(X, y, row_start, perm, bounds, sub_rows=sub_rows)
    np.testing.assert_array_equal(counts, np.bincount(folds, minlength=k))
    assert (counts == 0).any() == (rows < k or not shuffle)
    np.testing.assert_allclose(G, _reference_grams(X, y, folds, k), rtol=1e-13, atol=1e-9)
    G2, counts2 = pattern_grams(X, y, folds, k, sub_rows=sub_rows)  # the generic kernel: the very same sums
    np.testing.assert_array_equal(G, G2)
    np.testing.assert_array_equal(counts, counts2)


def test_round_tables_are_made_once_per_permutation_and_the_same_numbers():
    """A permutation's round tables are made once per process for its (seed, stream, n) — the same numbers as
    ``round_tables`` — and not carried when the permutation is pickled to a worker."""
    import pickle

    from scaleml_dask._folds import _tables, round_tables

    _tables.cache_clear()
    p, again, other = Permutation.seeded(70_001, 3), Permutation.seeded(70_001, 3), Permutation.seeded(70_001, 4)
    rows = np.arange(0, 70_001, 7)
    first = p(rows)
    assert _tables.cache_info().misses == 1 and p.tables() is again.tables() and _tables.cache_info().hits == 2
    np.testing.assert_array_equal(p.tables(), round_tables(*p.bits, p.keys))
    np.testing.assert_array_equal(again.folds(rows, fold_bounds(70_001, 4)), np.searchsorted(
        fold_bounds(70_001, 4), first, side="right"))
    assert not np.array_equal(other(rows), first) and _tables.cache_info().misses == 2
    assert len(pickle.dumps(p)) < 1000 and pickle.loads(pickle.dumps(p))(rows).tolist() == first.tolist()
