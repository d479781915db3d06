"""``_math.small_blas``: small factor work on one BLAS thread, the process's BLAS thread count restored after —
also when contexts are inside one another and leave in another order, and when the work raises."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from scaleml_dask._math import SMALL_BLAS, small_blas
from scaleml_dask._tsqr import qr_r


def _blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in ThreadpoolController().info() if lib["user_api"] == "blas"}


@pytest.fixture
def two_threads():
    with ThreadpoolController().limit(limits=2, user_api="blas"):
        assert _blas_threads() == {2}
        yield


def test_small_work_runs_on_one_thread_and_the_count_comes_back(two_threads):
    with small_blas(34 * 34):
        assert _blas_threads() == {1}
        r = qr_r(np.random.default_rng(0).normal(size=(8 * 34, 34)))  # a combine's stacked factors
    assert _blas_threads() == {2}
    assert np.allclose(np.abs(np.diag(r)), np.abs(np.diag(np.linalg.qr(r, mode="r"))))
    with small_blas(SMALL_BLAS + 1):  # a chunk: left alone
        assert _blas_threads() == {2}
    with pytest.raises(RuntimeError, match="the work fails"), small_blas(10):
        raise RuntimeError("the work fails")
    assert _blas_threads() == {2}


def test_contexts_inside_one_another_share_the_limit_and_the_last_one_out_restores_it(two_threads):
    outer, inner = small_blas(10), small_blas(20)
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # left first, while the other is still inside
    assert _blas_threads() == {1}
    inner.__exit__(None, None, None)
    assert _blas_threads() == {2}
