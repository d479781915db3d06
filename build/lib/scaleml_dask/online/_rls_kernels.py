"""Numba kernel of recursive least squares: the exponentially weighted rank-one update of one row."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._status import BAD_TARGET, DIVERGED, OK, first_nonfinite


@njit(cache=True)
def rls_learn_one(w: np.ndarray, P: np.ndarray, x: np.ndarray, y: float, lam: float, intercept: bool) -> int:
    """RLS update of ``w`` (d + 1,) and ``P`` (d + 1, d + 1) with one row; the intercept is the last coordinate
    (its feature the constant 1). With ``intercept`` False the intercept is held at its value (0 if it was
    never learned): only the first d coordinates move. Returns ``OK`` or a status code."""
    d = x.shape[0]
    p = d + 1 if intercept else d
    xa = np.empty(p)
    for j in range(d):
        xa[j] = x[j]
    e = y
    if intercept:
        xa[d] = 1.0
    else:
        e -= w[d]
    for j in range(p):
        e -= w[j] * xa[j]
    if not math.isfinite(e):
        j = first_nonfinite(x)
        if j >= 0:
            return j
        return BAD_TARGET if not math.isfinite(y) else DIVERGED
    Px = np.zeros(p)
    for i in range(p):
        for j in range(p):
            Px[i] += P[i, j] * xa[j]
    denom = lam
    for j in range(p):
        denom += xa[j] * Px[j]
    for j in range(p):
        w[j] += Px[j] * e / denom
    inv_lam = 1.0 / lam
    for i in range(p):
        ki = Px[i] / denom
        for j in range(i, p):
            v = (P[i, j] - ki * Px[j]) * inv_lam
            P[i, j] = v
            P[j, i] = v
    return OK
