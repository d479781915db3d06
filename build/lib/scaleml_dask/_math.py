"""Small numeric functions shared by every layer (generators, kernels, estimators).

>>> float(sigmoid(0.0)), float(sigmoid(40.0))
(0.5, 1.0)
"""

from __future__ import annotations

from typing import Any


def sigmoid(z: Any) -> Any:
    """The logistic function ``1 / (1 + exp(-z))``, as ``(1 + tanh(z / 2)) / 2``: no overflow for any
    finite ``z``. Works on numpy and dask arrays and on scalars."""
    import numpy as np

    return 0.5 * (1.0 + np.tanh(0.5 * z))
