"""Small numeric functions shared by every layer (generators, kernels, estimators).

>>> float(sigmoid(0.0)), float(sigmoid(40.0))
(0.5, 1.0)
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

#: The most elements of a matrix whose factor work (QR, triangular solves) runs on one BLAS thread
#: (``small_blas``): a combine's stacked R factors and a solver's d × d factor, not a chunk.
SMALL_BLAS = 1 << 18


def sigmoid(z: Any) -> Any:
    """The logistic function ``1 / (1 + exp(-z))``, as ``(1 + tanh(z / 2)) / 2``: no overflow for any
    finite ``z``. Works on numpy and dask arrays and on scalars."""
    import numpy as np

    return 0.5 * (1.0 + np.tanh(0.5 * z))


def small_blas(size: int) -> Any:
    """A context running BLAS on one thread when the matrices are small (``size`` ≤ ``SMALL_BLAS`` elements), else
    nothing. LAPACK's QR and triangular solve wake OpenBLAS's threads even on a 33 × 33 factor, and those spin
    for a while after: CPU a client shares with the scheduler and the workers (``benchmarks/scale_runs.md``).
    BLAS's thread count is the process's: contexts inside one another (or in threads at once) share one limit,
    the original restored when the last leaves (``threadpoolctl``'s own limiter, entered twice, would restore it
    early)."""
    return OneBlasThread() if size <= SMALL_BLAS else contextlib.nullcontext()


class OneBlasThread:
    """A context running BLAS on one thread (``small_blas``), whatever the size."""

    _lock = threading.Lock()
    _inside = 0
    _limiter: Any = None
    _controller: Any = None  # one for the process: making one per call costs more than the solve

    def __enter__(self) -> None:
        cls = type(self)
        with cls._lock:
            if cls._inside == 0:
                if cls._controller is None:
                    import scipy.linalg  # noqa: F401 - its BLAS loaded, so that the controller finds it too
                    from threadpoolctl import ThreadpoolController

                    cls._controller = ThreadpoolController()
                cls._limiter = cls._controller.limit(limits=1, user_api="blas")
            cls._inside += 1

    def __exit__(self, *exc: Any) -> None:
        cls = type(self)
        with cls._lock:
            cls._inside -= 1
            if cls._inside == 0:
                cls._limiter.restore_original_limits()
                cls._limiter = None
