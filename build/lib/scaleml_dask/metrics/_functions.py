"""The metric functions: scikit-learn's signatures, each computed in one pass over numpy or dask input.

Each function builds one mergeable state (``_states``) per row chunk inside the task that reads the chunk
(``passes.map_row_chunks``; ``y_true``, ``y_pred`` / ``y_score`` and ``sample_weight`` may come from stores,
predictions of a model, or numpy), reduces them by the fixed tree of ``passes.tree_reduce`` and finishes on the
client. ``roc_auc_score`` / ``average_precision_score`` are exact while a ranking has at most ``max_bins``
distinct scores and bounded beyond (``ranking_bound``).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np

from ._states import MAX_BINS, Confusion, ProbaLoss, Ranking, Residuals, ScoreTable

__all__ = ["accuracy_score", "average_precision_score", "confusion_matrix", "f1_score", "log_loss",
           "mean_absolute_error", "mean_squared_error", "precision_recall_fscore_support", "precision_score",
           "r2_score", "ranking_bound", "recall_score", "roc_auc_score", "root_mean_squared_error"]


# ------------------------------------------------------------------------------------------------------
# one pass over aligned arrays
# ------------------------------------------------------------------------------------------------------


def _plain(a: Any) -> Any:
    """numpy / dask as they are; xarray and lists unwrapped; None stays None."""
    if a is None:
        return None
    data = getattr(a, "data", None)
    if data is not None and hasattr(data, "dask"):
        return data
    return a if hasattr(a, "dask") else np.asarray(getattr(a, "values", a))


def _block_state(*blocks: Any, chunk_index: int, row_start: int, make: Any) -> Any:
    return make(*blocks)


def state_of(make: Any, merge: Any, *arrays: Any) -> Any:
    """``merge`` of ``make(*blocks)`` over the row chunks of ``arrays`` (the last may be None: no weights), in
    one pass for dask input; one call for numpy."""
    arrays = [_plain(a) for a in arrays]
    present = [a for a in arrays if a is not None]
    n = {int(a.shape[0]) for a in present}
    if len(n) > 1:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: {sorted(n)}")
    lazy = [a for a in present if hasattr(a, "dask")]
    if not lazy:
        return make(*arrays)
    import dask.array as da

    from ..passes import one_pass

    rows = lazy[0].chunks[0]
    aligned = [None if a is None else (a if hasattr(a, "dask") else da.from_array(a, chunks=(rows,) + a.shape[1:]))
               for a in arrays]
    aligned = [a if a is None or a.chunks[0] == rows else a.rechunk((rows,) + a.chunks[1:]) for a in aligned]
    aligned = [a if a is None or a.ndim < 2 or len(a.chunks[1]) == 1 else a.rechunk({1: -1}) for a in aligned]
    return one_pass(_block_state, merge, *aligned, make=make)


# ------------------------------------------------------------------------------------------------------
# classification from labels
# ------------------------------------------------------------------------------------------------------


def _confusion(y_true: Any, y_pred: Any, sample_weight: Any) -> Confusion:
    return state_of(Confusion.from_block, Confusion.merge, y_true, y_pred, sample_weight)


def accuracy_score(y_true: Any, y_pred: Any, *, normalize: bool = True, sample_weight: Any = None) -> float:
    """Fraction (or weighted count, ``normalize=False``) of correct labels.

    >>> accuracy_score([0, 1, 1, 0], [0, 1, 0, 0])
    0.75
    """
    c = _confusion(y_true, y_pred, sample_weight)
    return accuracy_from(c, normalize)


def accuracy_from(c: Confusion, normalize: bool = True) -> float:
    correct = float(np.trace(c.counts))
    return correct / float(c.counts.sum()) if normalize else correct


def confusion_matrix(y_true: Any, y_pred: Any, *, labels: Any = None, sample_weight: Any = None,
                     normalize: str | None = None) -> np.ndarray:
    """Rows true labels, columns predicted (``labels`` order, default every label seen, sorted).

    >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2]).tolist()
    [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    """
    C = _confusion(y_true, y_pred, sample_weight).matrix(None if labels is None else np.asarray(labels))
    if normalize is not None:
        with np.errstate(all="ignore"):
            if normalize == "true":
                C = C / C.sum(axis=1, keepdims=True)
            elif normalize == "pred":
                C = C / C.sum(axis=0, keepdims=True)
            elif normalize == "all":
                C = C / C.sum()
            else:
                raise ValueError("normalize must be one of {'true', 'pred', 'all', None}")
        return np.nan_to_num(C)
    return C.astype(np.int64) if sample_weight is None else C


def _divide(num: np.ndarray, den: np.ndarray, zero_division: Any, what: str) -> np.ndarray:
    with np.errstate(all="ignore"):
        out = num / den
    bad = den == 0
    if bad.any():
        if isinstance(zero_division, str) and zero_division == "warn":
            from sklearn.exceptions import UndefinedMetricWarning

            warnings.warn(f"{what} is ill-defined and being set to 0.0 in labels with no predicted or true "
                          "samples. Use `zero_division` parameter to control this behavior.", UndefinedMetricWarning,
                          stacklevel=4)
            fill = 0.0
        else:
            fill = float(zero_division)
        out = np.where(bad, fill, out)
    return out


def prf_from(c: Confusion, *, beta: float = 1.0, labels: Any = None, pos_label: Any = 1, average: str | None = None,
             zero_division: Any = "warn") -> tuple:
    """precision, recall, F-beta, support from a confusion state (scikit-learn's rules)."""
    present = c.labels
    if average == "binary":
        if len(present) > 2:
            raise ValueError("Target is multiclass but average='binary'. Please choose another average setting, "
                             "one of [None, 'micro', 'macro', 'weighted'].")
        if len(present) == 2 and pos_label not in present.tolist():
            raise ValueError(f"pos_label={pos_label!r} is not a valid label. It should be one of {present.tolist()}")
        labels = [pos_label]
    elif average not in (None, "micro", "macro", "weighted"):
        raise ValueError(f"average must be one of (None, 'binary', 'micro', 'macro', 'weighted'); got {average!r}")
    labels = present if labels is None else np.asarray(labels)
    idx = np.searchsorted(present, labels)
    safe = np.minimum(idx, len(present) - 1)
    ok = (idx < len(present)) & (present[safe] == labels)
    tp = np.where(ok, np.diag(c.counts)[safe], 0.0)
    pred = np.where(ok, c.counts.sum(axis=0)[safe], 0.0)
    true = np.where(ok, c.counts.sum(axis=1)[safe], 0.0)
    if average == "micro":
        tp, pred, true = np.array([tp.sum()]), np.array([pred.sum()]), np.array([true.sum()])
    precision = _divide(tp, pred, zero_division, "Precision")
    recall = _divide(tp, true, zero_division, "Recall")
    b2 = beta * beta
    f = _divide((1 + b2) * tp, b2 * true + pred, zero_division, "F-score")
    if average is None:
        return precision, recall, f, true.astype(np.int64)
    weights = true if average == "weighted" else None
    if weights is not None and weights.sum() == 0:
        fill = 0.0 if isinstance(zero_division, str) else float(zero_division)
        return fill, fill, fill, None
    return (float(np.average(precision, weights=weights)), float(np.average(recall, weights=weights)),
            float(np.average(f, weights=weights)), None)


def precision_recall_fscore_support(y_true: Any, y_pred: Any, *, beta: float = 1.0, labels: Any = None,
                                    pos_label: Any = 1, average: str | None = None, sample_weight: Any = None,
                                    zero_division: Any = "warn") -> tuple:
    """Precision, recall, F-beta and support per label (``average=None``) or averaged (``"binary"``, ``"micro"``,
    ``"macro"``, ``"weighted"``), as scikit-learn's."""
    return prf_from(_confusion(y_true, y_pred, sample_weight), beta=beta, labels=labels, pos_label=pos_label,
                    average=average, zero_division=zero_division)


def precision_score(y_true: Any, y_pred: Any, *, labels: Any = None, pos_label: Any = 1, average: str = "binary",
                    sample_weight: Any = None, zero_division: Any = "warn") -> Any:
    """Precision ``tp / (tp + fp)``.

    >>> precision_score([0, 1, 1, 0], [0, 1, 1, 1])
    0.6666666666666666
    """
    return precision_recall_fscore_support(y_true, y_pred, labels=labels, pos_label=pos_label, average=average,
                                           sample_weight=sample_weight, zero_division=zero_division)[0]


def recall_score(y_true: Any, y_pred: Any, *, labels: Any = None, pos_label: Any = 1, average: str = "binary",
                 sample_weight: Any = None, zero_division: Any = "warn") -> Any:
    """Recall ``tp / (tp + fn)``."""
    return precision_recall_fscore_support(y_true, y_pred, labels=labels, pos_label=pos_label, average=average,
                                           sample_weight=sample_weight, zero_division=zero_division)[1]


def f1_score(y_true: Any, y_pred: Any, *, labels: Any = None, pos_label: Any = 1, average: str = "binary",
             sample_weight: Any = None, zero_division: Any = "warn") -> Any:
    """F1, the harmonic mean of precision and recall.

    >>> round(f1_score([0, 1, 2, 2], [0, 2, 2, 2], average="macro"), 6)
    0.6
    """
    return precision_recall_fscore_support(y_true, y_pred, labels=labels, pos_label=pos_label, average=average,
                                           sample_weight=sample_weight, zero_division=zero_division)[2]


# ------------------------------------------------------------------------------------------------------
# classification from scores and probabilities
# ------------------------------------------------------------------------------------------------------


def log_loss(y_true: Any, y_proba: Any, *, normalize: bool = True, sample_weight: Any = None,
             labels: Any = None) -> float:
    """Mean (``normalize=False``: summed) negative log-likelihood of the true labels, probabilities clipped to
    ``[eps, 1 - eps]``; the columns of ``y_proba`` are the sorted labels (1-d: the larger label's probability).

    >>> round(log_loss([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]), 6)
    0.228393
    """
    state = state_of(ProbaLoss.from_block, ProbaLoss.merge, y_true, y_proba, sample_weight)
    loss = state.loss(labels)
    return loss if normalize else loss * state.weight


def _tables(y_true: Any, y_score: Any, sample_weight: Any, max_bins: int) -> list[ScoreTable]:
    """One ``ScoreTable`` per score column, in one pass."""
    make = functools.partial(_score_tables, max_bins=max_bins)
    merge = functools.partial(_merge_tables, max_bins=max_bins)
    return state_of(make, merge, y_true, y_score, sample_weight)


def _score_tables(y: np.ndarray, scores: np.ndarray, w: np.ndarray | None = None, *,
                  max_bins: int) -> list[ScoreTable]:
    S = np.asarray(scores, dtype=np.float64)
    S = S.reshape(len(S), -1)
    return [ScoreTable.from_block(y, S[:, c], w, max_bins) for c in range(S.shape[1])]


def _merge_tables(parts: list[list[ScoreTable]], *, max_bins: int) -> list[ScoreTable]:
    return [ScoreTable.merge([p[c] for p in parts], max_bins) for c in range(len(parts[0]))]


def rankings(tables: list[ScoreTable], *, pos_label: Any = None, labels: Any = None,
             multi_class: str = "raise") -> tuple[list[Ranking], np.ndarray]:
    """The rankings a score's tables stand for: binary (one column, or two columns of which the second is the
    positive class) — the positive label against the other; one-vs-rest — each class's column against the rest.
    Returns the rankings and the weight of each positive class (for ``average="weighted"``)."""
    present = tables[0].labels
    if len(tables) == 1 or (len(tables) == 2 and len(present) <= 2 and labels is None):
        if len(present) > 2:
            raise ValueError("multi_class must be in ('ovo', 'ovr') for more than two classes")
        positive = present[-1] if pos_label is None else pos_label
        r = tables[-1].ranking(positive)
        return [r], np.array([r.pos.sum()])
    if multi_class != "ovr":
        raise ValueError("multi_class must be 'ovr' for multiclass scores here ('ovo' is not supported)")
    classes = present if labels is None else np.unique(np.asarray(labels))
    if len(classes) != len(tables):
        raise ValueError(f"Number of classes in y_true ({len(classes)}) not equal to the number of columns in "
                         f"'y_score' ({len(tables)})")
    out = [t.ranking(c) for t, c in zip(tables, classes)]
    return out, np.array([r.pos.sum() for r in out])


def _average(values: list[float], weights: np.ndarray, average: str | None) -> Any:
    if average is None:
        return np.asarray(values)
    if average == "weighted":
        return float(np.average(values, weights=weights))
    if average == "macro":
        return float(np.mean(values))
    raise ValueError(f"average must be 'macro', 'weighted' or None; got {average!r}")


def roc_auc_score(y_true: Any, y_score: Any, *, average: str = "macro", sample_weight: Any = None,
                  multi_class: str = "raise", labels: Any = None, max_bins: int = MAX_BINS) -> Any:
    """Area under the ROC curve: binary (``y_score`` of the larger label: a 1-d score, or probabilities of 2
    columns), or one-vs-rest (``multi_class="ovr"``, ``average`` macro / weighted) for class probabilities.
    Exact while each ranking holds at most ``max_bins`` distinct scores; within ``ranking_bound`` beyond.

    >>> roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    ranks, weights = rankings(_tables(y_true, y_score, sample_weight, max_bins), labels=labels,
                              multi_class=multi_class)
    return _average([r.auc() for r in ranks], weights, average) if len(ranks) > 1 else ranks[0].auc()


def average_precision_score(y_true: Any, y_score: Any, *, average: str = "macro", pos_label: Any = 1,
                            sample_weight: Any = None, max_bins: int = MAX_BINS) -> Any:
    """Average precision Σ (R_k − R_k−1) P_k: binary (``pos_label``) or one-vs-rest for class scores.

    >>> round(average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 6)
    0.833333
    """
    tables = _tables(y_true, y_score, sample_weight, max_bins)
    if len(tables) == 1:
        return tables[0].ranking(pos_label).average_precision()
    ranks, weights = rankings(tables, multi_class="ovr")
    return _average([r.average_precision() for r in ranks], weights, average)


def ranking_bound(y_true: Any, y_score: Any, *, sample_weight: Any = None, max_bins: int = MAX_BINS,
                  pos_label: Any = None) -> dict[str, float]:
    """How far ``roc_auc_score`` / ``average_precision_score`` of this binary ranking can be from those of the
    exact scores: ``{"roc_auc": bound, "average_precision": bound}`` (0.0 when it stayed exact).

    >>> ranking_bound([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.3])
    {'roc_auc': 0.0, 'average_precision': 0.0}
    """
    (r,), _ = rankings(_tables(y_true, y_score, sample_weight, max_bins), pos_label=pos_label)
    return {"roc_auc": r.auc_bound(), "average_precision": r.ap_bound()}


# ------------------------------------------------------------------------------------------------------
# regression
# ------------------------------------------------------------------------------------------------------


def _residuals(y_true: Any, y_pred: Any, sample_weight: Any) -> Residuals:
    for name, a in (("y_true", y_true), ("y_pred", y_pred)):
        if getattr(a, "ndim", 1) > 1 and a.shape[1] > 1:
            raise ValueError(f"{name} has {a.shape[1]} outputs; one output (a 1-d array) is supported")
    return state_of(Residuals.from_block, Residuals.merge, y_true, y_pred, sample_weight)


def r2_score(y_true: Any, y_pred: Any, *, sample_weight: Any = None) -> float:
    """Coefficient of determination 1 − SSE / SST (scikit-learn's, ``force_finite=True``).

    >>> r2_score([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    0.5
    """
    return _residuals(y_true, y_pred, sample_weight).r2()


def mean_squared_error(y_true: Any, y_pred: Any, *, sample_weight: Any = None) -> float:
    """Mean squared error.

    >>> mean_squared_error([1.0, 2.0], [1.0, 4.0])
    2.0
    """
    return _residuals(y_true, y_pred, sample_weight).mse()


def root_mean_squared_error(y_true: Any, y_pred: Any, *, sample_weight: Any = None) -> float:
    """Square root of the mean squared error."""
    return float(np.sqrt(mean_squared_error(y_true, y_pred, sample_weight=sample_weight)))


def mean_absolute_error(y_true: Any, y_pred: Any, *, sample_weight: Any = None) -> float:
    """Mean absolute error.

    >>> mean_absolute_error([1.0, 2.0], [1.5, 4.0])
    1.25
    """
    return _residuals(y_true, y_pred, sample_weight).mae()
