"""``cross_validate``: scikit-learn's function and result layout, with the folds' scores in one pass.

The estimator is fitted on each split's training rows (selected without copies), and every fold's model is
scored with every scorer in a single pass over the data; for the SGD estimators in local mode the folds also
train in the same read of each chunk (the fused path of the searches, with one candidate).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._evaluate import evaluate, prepare

__all__ = ["cross_validate"]


def cross_validate(estimator: Any, X: Any, y: Any = None, *, cv: Any = None, scoring: Any = None,
                   return_train_score: bool = False, return_estimator: bool = False, error_score: Any = np.nan,
                   divergence_bound: float = 10.0, batch_size: int | None = None) -> dict:
    """Fit and score ``estimator`` on each split of ``cv`` (default 5 folds; stratified for classifiers).

    Returns scikit-learn's dict: ``fit_time``, ``score_time``, ``test_<scorer>`` (``test_score`` for one scorer),
    ``train_<scorer>`` with ``return_train_score``, ``estimator`` with ``return_estimator``, each an array over
    the splits; plus ``diverged`` (bool per split set) when a fit diverged. On the fused path the folds share
    their passes, so ``fit_time`` is each fold's share of them and ``score_time`` is 0 (scoring rides along).
    An online learner (``scaleml_dask.online``) learns each split's training rows in order, ``batch_size`` rows
    per ``learn_many`` (default 1000), all folds in one chain pass (``_fused_online``).

    >>> import numpy as np, scaleml_dask as sm
    >>> X = np.random.default_rng(0).normal(size=(900, 3)); y = X @ [1.0, -1.0, 2.0] + 0.5
    >>> res = cross_validate(sm.LinearRegression(), X, y, cv=3, scoring=["r2", "neg_mean_squared_error"])
    >>> sorted(res), np.round(res["test_r2"], 6).tolist()
    (['fit_time', 'score_time', 'test_neg_mean_squared_error', 'test_r2'], [1.0, 1.0, 1.0])
    """
    ctx = prepare(estimator, X, y, cv, scoring, batch_size)
    ev = evaluate(ctx, estimator, [{}], return_train_score=return_train_score, error_score=error_score,
                  divergence_bound=divergence_bound, keep_estimators=return_estimator)
    out: dict[str, Any] = {"fit_time": ev.fit_time[0], "score_time": ev.score_time[0]}
    for name, values in ev.test.items():
        out[f"test_{name}"] = values[0]
        if return_train_score:
            out[f"train_{name}"] = ev.train[name][0]
    if return_estimator:
        out["estimator"] = list(ev.estimators[0])
    if ev.diverged and ev.diverged[0] is not None:
        out["diverged"] = ev.diverged[0]
    return out
