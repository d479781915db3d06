"""Metrics in one pass: each a mergeable state per row chunk, tree-reduced (``_states``); scikit-learn's function
signatures over numpy or dask input (``_functions``); scorers and the engine that scores several models with
several metrics in the same pass (``_scorer``: ``evaluate``, and what ``cross_validate`` and the searches use).

ROC AUC and average precision are exact while a ranking holds at most ``max_bins`` (65,536) distinct scores;
beyond that scores are binned by their floating-point keys (a fixed relative width) and the error is bounded by
a figure computed from the same state (``ranking_bound``; tested against scikit-learn).

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1]); s = np.array([0.1, 0.4, 0.35, 0.8])
>>> roc_auc_score(y, s), accuracy_score(y, s > 0.5), round(f1_score(y, s > 0.3), 4)
(0.75, 0.75, 0.8)
"""

from ._functions import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    precision_score,
    r2_score,
    ranking_bound,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)
from ._scorer import Scorer, check_scoring, evaluate, get_scorer, get_scorer_names

__all__ = ["Scorer", "accuracy_score", "average_precision_score", "check_scoring", "confusion_matrix", "evaluate",
           "f1_score", "get_scorer", "get_scorer_names", "log_loss", "mean_absolute_error", "mean_squared_error",
           "precision_recall_fscore_support", "precision_score", "r2_score", "ranking_bound", "recall_score",
           "roc_auc_score", "root_mean_squared_error"]
