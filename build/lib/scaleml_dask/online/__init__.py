"""Online learning on never-ending, drifting streams: learners, drift detectors, stream reading, evaluation.

The API follows River (``learn_one`` / ``learn_many`` / ``predict_one`` / ``predict_many`` /
``predict_proba_many``, detectors with ``update``) over NumPy rows instead of dicts, with the per-sample
updates compiled by numba and the mini-batch updates in one compiled pass or BLAS. One module per concern:
``base`` (what learners and detectors share), ``linear`` (gradient learners), ``rls``, ``kmeans``
(``MiniBatchKMeans``), ``drift`` (detectors), ``streams`` (``iter_batches``), ``evaluation``
(``prequential``, ``DriftAdaptive``); the compiled cores beside them (``_linear_kernels``, ``_rls_kernels``,
``_kmeans_kernels``, ``_drift_kernels``, ``_status``).

``learn_many(X, y)`` of the gradient learners takes **one optimizer step on the mean gradient of the
batch**, as River's ``learn_many`` does; a loop of ``learn_one`` takes ``len(X)`` steps. So the two differ
(use a larger ``learning_rate`` with large batches: the batch mean gradient has far less noise).
``RLS.learn_many`` is exact: it equals the loop of ``learn_one`` up to rounding. Hyperparameters follow
scikit-learn (``get_params`` / ``set_params``, checked by its own validation) and are read at learn time.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((4000, 3)); y = (X @ [2.0, -1.0, 0.5] > 0).astype(int)
>>> model = LogisticRegression(learning_rate=1.0)
>>> for Xb, yb in zip(np.split(X, 40), np.split(y, 40)):
...     model.learn_many(Xb, yb)
>>> float((model.predict_many(X) == y).mean()) > 0.97
True
"""

from __future__ import annotations

from ..validation import NotFittedError
from .drift import ADWIN, PageHinkley
from .evaluation import DriftAdaptive, PrequentialResult, prequential
from .kmeans import MiniBatchKMeans
from .linear import LinearRegression, LogisticRegression, Perceptron
from .rls import RLS
from .streams import BatchStream, iter_batches

__all__ = [
    "ADWIN",
    "RLS",
    "BatchStream",
    "DriftAdaptive",
    "LinearRegression",
    "LogisticRegression",
    "MiniBatchKMeans",
    "NotFittedError",
    "PageHinkley",
    "Perceptron",
    "PrequentialResult",
    "iter_batches",
    "prequential",
]
