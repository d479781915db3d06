"""Numba kernels of ``online.MiniBatchKMeans``: the per-centre 1/count update of one row or of one batch.

Both leave the model unchanged and return a status (``_status``) when the input is bad, so the checks ride
along in the pass that does the work. Assignment of a batch is the shared GEMM of ``scaleml_dask._kmeans_kernels``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._status import BAD_LENGTH, OK, first_nonfinite

#: layout of the int64 progress counters: rows learned, steps, rows since the last reassignment check,
#: centres reassigned
P_SEEN, P_STEPS, P_SINCE, P_REASSIGNED = range(4)


@njit(cache=True)
def kmeans_learn_one(centers: np.ndarray, counts: np.ndarray, progress: np.ndarray, x: np.ndarray) -> int:
    """Move the centre nearest to ``x`` by ``(x - c) / count`` (its count first incremented): the running
    mean of the rows it attracted. Returns ``OK``, ``BAD_LENGTH`` or the index of a non-finite feature.

    The reassignment clock advances as scikit-learn's for a batch of one row, which never reassigns (at
    most half a batch does): it restarts every ``10 k`` rows, or when a centre has attracted no row yet."""
    k, d = centers.shape
    if x.shape[0] != d:
        return BAD_LENGTH
    bad = first_nonfinite(x)
    if bad >= 0:
        return bad
    progress[P_SINCE] += 1
    if progress[P_SINCE] >= 10 * k:
        progress[P_SINCE] = 0
    else:
        for c in range(k):
            if counts[c] == 0.0:
                progress[P_SINCE] = 0
                break
    best, best_d2 = 0, math.inf
    for c in range(k):
        d2 = 0.0
        for j in range(d):
            diff = x[j] - centers[c, j]
            d2 += diff * diff
        if d2 < best_d2:
            best, best_d2 = c, d2
    counts[best] += 1.0
    eta = 1.0 / counts[best]
    for j in range(d):
        centers[best, j] += eta * (x[j] - centers[best, j])
    progress[P_SEEN] += 1
    progress[P_STEPS] += 1
    return OK


@njit(cache=True)
def kmeans_learn_many(centers: np.ndarray, counts: np.ndarray, X: np.ndarray, labels: np.ndarray) -> int:
    """Sculley's mini-batch step as scikit-learn's ``_minibatch_update_dense``: every centre that attracted
    rows of the batch becomes ``(count · c + Σ x) / (count + m)``. Returns ``OK`` or the first row holding
    a non-finite value (then nothing is changed)."""
    k, d = centers.shape
    sums = np.zeros((k, d))
    m = np.zeros(k)
    for i in range(X.shape[0]):
        c = labels[i]
        for j in range(d):
            v = X[i, j]
            if not math.isfinite(v):
                return i
            sums[c, j] += v
        m[c] += 1.0
    for c in range(k):
        if m[c] > 0.0:
            total = counts[c] + m[c]
            for j in range(d):
                centers[c, j] = (centers[c, j] * counts[c] + sums[c, j]) / total
            counts[c] = total
    return OK
