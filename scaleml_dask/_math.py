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
_CONTROLLER: Any = None


def sigmoid(z: Any) -> Any:
    """The logistic function ``1 / (1 + exp(-z))``, as ``(1 + tanh(z / 2)) / 2``: no overflow for any
    finite ``z``. Works on numpy and dask arrays and on scalars."""
    import numpy as np

    return 0.5 * (1.0 + np.tanh(0.5 * z))


def small_blas(size: int) -> Any:
    """A context running BLAS on one thread when the matrices are small (``size`` ≤ ``SMALL_BLAS`` elements), else
    nothing. LAPACK's QR and triangular solve wake OpenBLAS's threads even on a 33 × 33 factor, and those spin
    for a while after: CPU a client shares with the scheduler and the workers (``benchmarks/scale_runs.md``)."""
    return one_blas_thread() if size <= SMALL_BLAS else contextlib.nullcontext()


def one_blas_thread() -> Any:
    """A context running BLAS on one thread — in the main thread (the client's driver: its last combines, its
    solves, SGD's held-out loss), else nothing. BLAS's thread count is the process's, and a limit set and restored
    by threads at once can leave it wrong (one restores what the other set); a dask worker's tasks run BLAS on
    one thread already. One ``threadpoolctl`` controller for the process: making one per call costs more than a
    small solve."""
    global _CONTROLLER
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        import scipy.linalg  # noqa: F401 - its BLAS loaded, so that the controller finds it too
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")
