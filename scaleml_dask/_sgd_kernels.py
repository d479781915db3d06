"""Pure numpy kernels of mini-batch SGD: losses and gradients, penalties, step-size rules, compression.

Parameters are one matrix ``W`` of shape ``(n_features + 1, n_outputs)``: the coefficients, then the
intercept row. Targets ``T`` are ``(n, n_outputs)``: the value for squared loss, 0/1 indicators (one
column per class, one-vs-rest; a single column for two classes) for logistic and hinge loss.
Optimizer state is a dict of numpy arrays only, so that it can be checkpointed as it is.

>>> X = np.array([[1.0], [2.0]]); T = np.array([[1.0], [2.0]])
>>> loss, grad = loss_grad(np.zeros((2, 1)), X, T, "squared")
>>> float(loss), grad.ravel().tolist()
(2.5, [-5.0, -3.0])
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numba
import numpy as np
from scipy.special import expit

LOSSES = ("squared", "log_loss", "hinge")
PENALTIES = ("l2", "l1", None)
SCHEDULES = ("constant", "invscaling", "adagrad", "adam")
COMPRESSIONS = (None, "float16", "topk")
_EPS = 1e-8


# ------------------------------------------------------------------------------------------------------
# Targets, losses, gradients
# ------------------------------------------------------------------------------------------------------


def unknown_labels(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels of ``y`` that are not in the sorted array ``classes``."""
    labels = np.unique(y)
    return labels[~np.isin(labels, classes)]


def encode_targets(y: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """Target matrix for the kernels: ``y`` as a column (regression) or one-vs-rest 0/1 indicators."""
    if classes is None:
        return np.asarray(y, dtype=np.float64).reshape(-1, 1)
    idx = np.searchsorted(classes, y)
    if len(classes) == 2:
        return (idx == 1).astype(np.float64).reshape(-1, 1)
    return (idx[:, None] == np.arange(len(classes))).astype(np.float64)


def decision(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Linear scores ``X @ coef + intercept``, shape ``(n, n_outputs)``."""
    return X @ W[:-1] + W[-1]


def _pointwise(Z: np.ndarray, T: np.ndarray, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample loss and its derivative with respect to the score."""
    if loss == "squared":
        R = Z - T
        return 0.5 * R * R, R
    if loss == "log_loss":
        return np.logaddexp(0.0, Z) - T * Z, expit(Z) - T
    S = 2.0 * T - 1.0  # hinge on labels in {-1, +1}
    margin = 1.0 - S * Z
    active = margin > 0
    return np.where(active, margin, 0.0), np.where(active, -S, 0.0)


def loss_grad(W: np.ndarray, X: np.ndarray, T: np.ndarray, loss: str) -> tuple[float, np.ndarray]:
    """Sum over the rows of the loss, and of its gradient with respect to ``W`` (same shape as ``W``)."""
    L, D = _pointwise(decision(W, X), T, loss)
    G = np.empty_like(W)
    G[:-1] = X.T @ D
    G[-1] = D.sum(axis=0)
    return float(L.sum()), G


def mean_loss(W: np.ndarray, X: np.ndarray, T: np.ndarray, loss: str) -> float:
    """Mean per-sample loss (no penalty); NaN for an empty set."""
    if len(X) == 0:
        return math.nan
    L, _ = _pointwise(decision(W, X), T, loss)
    return float(L.sum() / len(X))


def add_penalty(G: np.ndarray, W: np.ndarray, penalty: str | None, alpha: float) -> None:
    """Add the gradient (L2) or subgradient (L1) of ``alpha * penalty(coef)`` to ``G``; not the intercept."""
    if penalty == "l2":
        G[:-1] += alpha * W[:-1]
    elif penalty == "l1":
        G[:-1] += alpha * np.sign(W[:-1])


# ------------------------------------------------------------------------------------------------------
# Step-size rules
# ------------------------------------------------------------------------------------------------------


def init_optimizer(schedule: str, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Fresh optimizer state: the step counter ``t`` and the moments the rule needs."""
    state = {"t": np.zeros(())}
    if schedule == "adagrad":
        state["g2"] = np.zeros(shape)
    elif schedule == "adam":
        state["m"] = np.zeros(shape)
        state["v"] = np.zeros(shape)
    return state


def optimizer_step(W: np.ndarray, G: np.ndarray, state: dict[str, np.ndarray], schedule: str, eta0: float,
                   power_t: float) -> None:
    """One update of ``W`` (in place) along the gradient ``G``; advances ``state`` in place."""
    state["t"] += 1.0
    t = float(state["t"])
    if schedule == "constant":
        W -= eta0 * G
    elif schedule == "invscaling":
        W -= (eta0 / t**power_t) * G
    elif schedule == "adagrad":
        state["g2"] += G * G
        W -= eta0 * G / (np.sqrt(state["g2"]) + _EPS)
    else:  # adam
        b1, b2 = 0.9, 0.999
        state["m"] *= b1
        state["m"] += (1 - b1) * G
        state["v"] *= b2
        state["v"] += (1 - b2) * G * G
        step = eta0 * math.sqrt(1 - b2**t) / (1 - b1**t)
        W -= step * state["m"] / (np.sqrt(state["v"]) + _EPS)


# ------------------------------------------------------------------------------------------------------
# Mini-batches
# ------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def permutation(seed: int, block: int, n: int) -> np.ndarray:
    """Seeded order of the ``n`` rows of ``block`` in the epoch with seed ``seed`` (cached, read-only)."""
    perm = np.random.default_rng([seed, block]).permutation(n).astype(np.intp)
    perm.flags.writeable = False
    return perm


def n_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def batch_rows(seed: int, block: int, n: int, batch_size: int, step: int) -> np.ndarray:
    """Row indices of mini-batch ``step`` of ``block`` in the epoch with seed ``seed``."""
    return permutation(seed, block, n)[step * batch_size:(step + 1) * batch_size]


def holdout_mask(seed: int, block: int, n: int, fraction: float) -> np.ndarray:
    """Seeded boolean mask of the rows of ``block`` held out for validation."""
    if fraction <= 0:
        return np.zeros(n, dtype=bool)
    return np.random.default_rng([seed, 0x5EED, block]).random(n) < fraction


_LOSS_CODE = {"squared": 0, "log_loss": 1, "hinge": 2}


@numba.njit(cache=True, nogil=True)
def _grad_rows(W, X, T, rows, loss_code, G):  # pragma: no cover - compiled
    """Fused ``loss_grad`` over the rows ``rows`` of the block (no gather copy); adds into ``G``."""
    d, k = X.shape[1], W.shape[1]
    lsum = 0.0
    for r in range(rows.shape[0]):
        i = rows[r]
        for c in range(k):
            z = W[d, c]
            for j in range(d):
                z += X[i, j] * W[j, c]
            t = T[i, c]
            if loss_code == 0:
                g = z - t
                lsum += 0.5 * g * g
            elif loss_code == 1:
                if z > 0:
                    e = math.exp(-z)
                    lsum += z + math.log1p(e) - t * z
                    g = 1.0 / (1.0 + e) - t
                else:
                    e = math.exp(z)
                    lsum += math.log1p(e) - t * z
                    g = e / (1.0 + e) - t
            else:
                s = 2.0 * t - 1.0
                margin = 1.0 - s * z
                g = -s if margin > 0 else 0.0
                lsum += max(margin, 0.0)
            if g != 0.0:
                for j in range(d):
                    G[j, c] += g * X[i, j]
                G[d, c] += g
    return lsum


def batch_gradient(W: np.ndarray, X: np.ndarray, T: np.ndarray, rows: np.ndarray, loss: str,
                   fit_intercept: bool) -> tuple[np.ndarray, float]:
    """Mean gradient (no penalty) and summed loss of the mini-batch ``rows`` (a compiled kernel that
    reads the rows in place; ``X``, ``T`` C-contiguous float64)."""
    G = np.zeros(W.shape)
    lsum = _grad_rows(np.ascontiguousarray(W, dtype=np.float64), X, T, rows, _LOSS_CODE[loss], G)
    G /= len(rows)
    if not fit_intercept:
        G[-1] = 0.0
    return G, lsum


def local_epochs(W: np.ndarray, X: np.ndarray, T: np.ndarray, train: np.ndarray, *, seeds: list[int],
                 block: int, batch_size: int, loss: str, penalty: str | None, alpha: float, fit_intercept: bool,
                 schedule: str, eta0: float, power_t: float, t0: float) -> tuple[np.ndarray, int]:
    """Plain local SGD over the rows ``train`` of the block, one epoch per seed, from ``W`` (copied) with a
    fresh optimizer whose step counter starts at ``t0``. Returns the new weights and the steps taken."""
    W = W.copy()
    state = init_optimizer(schedule, W.shape)
    state["t"] += t0
    steps = 0
    n = len(train)
    for seed in seeds:
        for step in range(n_batches(n, batch_size)):
            rows = train[batch_rows(seed, block, n, batch_size, step)]
            G, _ = batch_gradient(W, X, T, rows, loss, fit_intercept)
            add_penalty(G, W, penalty, alpha)
            optimizer_step(W, G, state, schedule, eta0, power_t)
            steps += 1
    return W, steps


# ------------------------------------------------------------------------------------------------------
# Compression of what workers send
# ------------------------------------------------------------------------------------------------------


def compress(v: np.ndarray, method: str | None, fraction: float) -> tuple[Any, ...]:
    """Encode ``v`` for sending: as is, as float16, or its top-k entries (int32 index, float32 value)."""
    if method is None:
        return ("raw", v)
    if method == "float16":
        return ("float16", v.astype(np.float16))
    flat = v.ravel()
    k = max(1, math.ceil(fraction * flat.size))
    idx = np.sort(np.argpartition(np.abs(flat), flat.size - k)[flat.size - k:]).astype(np.int32)
    return ("topk", idx, flat[idx].astype(np.float32))


def decompress(msg: tuple[Any, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`compress` (up to the precision it dropped)."""
    if msg[0] == "topk":
        out = np.zeros(int(np.prod(shape)))
        out[msg[1]] = msg[2]
        return out.reshape(shape)
    return np.asarray(msg[1], dtype=np.float64).reshape(shape)


def message_nbytes(msg: tuple[Any, ...]) -> int:
    """Bytes of the arrays in a message."""
    return int(sum(a.nbytes for a in msg[1:]))


def compress_with_feedback(v: np.ndarray, residual: np.ndarray | None, method: str | None,
                           fraction: float) -> tuple[tuple[Any, ...], np.ndarray | None]:
    """Compress ``v`` plus the error carried over from earlier messages (error feedback); return the
    message and the new residual (what this message failed to carry)."""
    if method is None:
        return compress(v, None, fraction), None
    if residual is not None and residual.shape == v.shape:
        v = v + residual
    msg = compress(v, method, fraction)
    return msg, v - decompress(msg, v.shape)
