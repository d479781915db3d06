"""``_math.small_blas``: small factor work on one BLAS thread, the process's BLAS thread count restored after —
also when contexts are inside one another and when the work raises; a thread other than the main one (a dask
worker's, whose BLAS runs on one thread already) leaves the count alone."""

from __future__ import annotations

import threading

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


def test_contexts_inside_one_another_restore_in_turn_and_other_threads_leave_the_count_alone(two_threads):
    with small_blas(10):
        with small_blas(20):
            assert _blas_threads() == {1}
        assert _blas_threads() == {1}
    assert _blas_threads() == {2}
    seen = []

    def elsewhere():
        with small_blas(10):
            seen.append(_blas_threads())

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(10)
    assert seen == [{2}] and _blas_threads() == {2}
