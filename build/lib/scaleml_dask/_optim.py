"""Per-coordinate optimizer updates shared by the compiled kernels of ``online`` and ``sgd``.

Each function takes a coordinate's gradient ``g`` and its optimizer memory and returns the *direction*
(the weight moves by ``-rate * direction``) with the updated memory, so the kernels keep their own state
layouts and step-size rules while the update formulas exist once. Adam is Kingma & Ba's Algorithm 1 with
bias-corrected moments: ``m̂ / (sqrt(v̂) + eps)``, ``m̂ = m / c1``, ``v̂ = v / c2`` (``bias_corrections``).

>>> d, g2 = adagrad_direction(2.0, 0.0, 0.0)
>>> d, g2
(1.0, 4.0)
>>> c1, c2 = bias_corrections(1.0, 0.9, 0.999)
>>> d, m, v = adam_direction(2.0, 0.0, 0.0, 0.9, 0.999, 0.0, c1, c2)
>>> round(d, 12), round(m, 12), round(v, 12)
(1.0, 0.2, 0.004)
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True, inline="always")
def adagrad_direction(g: float, g2: float, eps: float) -> tuple[float, float]:
    """AdaGrad: ``g / (sqrt(G) + eps)`` with ``G`` the running sum of squared gradients; returns (direction, G)."""
    g2 = g2 + g * g
    return g / (math.sqrt(g2) + eps), g2


@njit(cache=True, inline="always")
def bias_corrections(t: float, beta1: float, beta2: float) -> tuple[float, float]:
    """Adam's ``1 - beta1**t`` and ``1 - beta2**t`` for step ``t`` (1-based)."""
    return 1.0 - beta1**t, 1.0 - beta2**t


@njit(cache=True, inline="always")
def adam_direction(g: float, m: float, v: float, beta1: float, beta2: float, eps: float, c1: float,
                   c2: float) -> tuple[float, float, float]:
    """Adam: moments updated with ``g``; returns (``m̂ / (sqrt(v̂) + eps)``, m, v)."""
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    return (m / c1) / (math.sqrt(v / c2) + eps), m, v
