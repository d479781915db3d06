"""Status codes of the compiled ``learn`` kernels and the compiled row check they share.

A kernel returns ``OK`` or one of these codes (``>= 0``: the index of a non-finite feature) and then leaves
the model unchanged; ``base.OnlineLearner`` turns a code into the error that names the offending input.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: ``STALE``: the hyperparameters changed since they were packed into the state (``linear``).
OK, BAD_LENGTH, BAD_LABEL, BAD_TARGET, DIVERGED, STALE = -1, -2, -3, -4, -5, -6


@njit(cache=True)
def first_nonfinite(x: np.ndarray) -> int:
    """Index of the first NaN / inf of the row ``x``, or -1."""
    for j in range(x.shape[0]):
        if not math.isfinite(x[j]):
            return j
    return -1
