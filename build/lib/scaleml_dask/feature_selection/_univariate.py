"""Univariate feature selection from one pass: per-chunk sums give scikit-learn's ``f_classif``, ``chi2`` and
``f_regression`` for data larger than memory, dense or sparse.

One pass (``class_sums`` / ``target_sums``) sums, per chunk, what the statistics need: per class the row count, the
column sums and sums of squares (``f_classif``, ``chi2``), or the column sums, sums of squares and products with
``y`` (``f_regression``). The classes are found in the same pass (each chunk's, merged). The statistics then follow
scikit-learn's formulas line by line, so the scores equal its own (``tests/test_feature_selection.py``).

>>> import numpy as np
>>> X = np.array([[1.0, 2.0], [2.0, 2.5], [3.0, 1.0], [4.0, 0.5]]); y = np.array([0, 0, 1, 1])
>>> F, p = f_classif(X, y)
>>> from sklearn.feature_selection import f_classif as sk_f_classif
>>> bool(np.allclose(F, sk_f_classif(X, y)[0]))
True
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy import special, stats

from ..passes import fold_row_chunks, reduce_here
from ..validation import check_X_y

__all__ = ["chi2", "f_classif", "f_regression"]


class ClassSums(NamedTuple):
    """Per class (sorted labels): rows, column sums, column sums of squares; and the smallest value of X."""

    classes: np.ndarray
    counts: np.ndarray  # (K,)
    sums: np.ndarray  # (K, p)
    sumsq: np.ndarray  # (K, p)
    low: float


class TargetSums(NamedTuple):
    n: int
    sx: np.ndarray
    sxx: np.ndarray
    sy: float
    syy: float
    sxy: np.ndarray


def _by_class(X: Any, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(classes, counts, sums, sums of squares) of one block."""
    classes, codes = np.unique(y, return_inverse=True)
    K, p = len(classes), X.shape[1]
    counts = np.bincount(codes, minlength=K).astype(np.float64)
    if hasattr(X, "indptr"):
        import scipy.sparse as sp

        G = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(K, X.shape[0]))
        sums = np.asarray((G @ X).todense())
        sumsq = np.asarray((G @ X.multiply(X)).todense())
    else:
        sums, sumsq = np.zeros((K, p)), np.zeros((K, p))
        np.add.at(sums, codes, X)
        np.add.at(sumsq, codes, X * X)
    return classes, counts, sums, sumsq


def _rows(X: Any, chunk_index: int, row_start: int) -> Any:
    from .._checks import assert_finite_rows, csr_block

    X = csr_block(X) if hasattr(X, "indptr") or hasattr(X, "tocsr") else np.asarray(X, dtype=np.float64)
    assert_finite_rows(X, "X", chunk_index, row_start)
    return X


def class_sums_block(X: Any, y: Any, *, acc: ClassSums | None = None, chunk_index: int = -1,
                     row_start: int = 0) -> ClassSums:
    """The per-class sums of one block, merged into ``acc``."""
    X = _rows(X, chunk_index, row_start)
    values = X.data if hasattr(X, "indptr") else X
    low = float(values.min()) if values.size else 0.0
    part = ClassSums(*_by_class(X, np.asarray(y).reshape(-1)), low)
    return part if acc is None else combine_class_sums([acc, part])


def combine_class_sums(parts: list[ClassSums]) -> ClassSums:
    """Merge per-class sums (the union of the classes, sorted)."""
    classes = np.unique(np.concatenate([p.classes for p in parts]))
    p = parts[0].sums.shape[1]
    counts, sums, sumsq = np.zeros(len(classes)), np.zeros((len(classes), p)), np.zeros((len(classes), p))
    for part in parts:
        idx = np.searchsorted(classes, part.classes)
        counts[idx] += part.counts
        sums[idx] += part.sums
        sumsq[idx] += part.sumsq
    return ClassSums(classes, counts, sums, sumsq, min(part.low for part in parts))


def target_sums_block(X: Any, y: Any, *, acc: TargetSums | None = None, chunk_index: int = -1,
                      row_start: int = 0) -> TargetSums:
    X = _rows(X, chunk_index, row_start)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    sq = X.multiply(X) if hasattr(X, "indptr") else X * X
    part = TargetSums(X.shape[0], np.asarray(X.sum(axis=0)).ravel(), np.asarray(sq.sum(axis=0)).ravel(),
                      float(y.sum()), float(y @ y), np.asarray(X.T @ y).ravel())
    return part if acc is None else combine_target_sums([acc, part])


def combine_target_sums(parts: list[TargetSums]) -> TargetSums:
    return TargetSums(sum(p.n for p in parts), sum(p.sx for p in parts), sum(p.sxx for p in parts),
                      sum(p.sy for p in parts), sum(p.syy for p in parts), sum(p.sxy for p in parts))


def _group(p: int, rows: int, sparse: bool, K: int = 2) -> int:
    chunk_bytes = 64 * 2**20 if sparse else rows * p * 8
    return max(1, int(np.ceil(4 * 2 * K * p * 8 / max(chunk_bytes, 1))))


def class_sums(X: Any, y: Any) -> ClassSums:
    """One pass: the per-class sums of ``X`` (numpy, scipy.sparse, dask, xarray, zarr, path) by the labels ``y``."""
    dX, dy = check_X_y(X, y, y_numeric=False, accept_sparse=True)
    g = _group(dX.shape[1], max(dX.chunks[0]), not isinstance(dX._meta, np.ndarray))
    s = reduce_here(fold_row_chunks(class_sums_block, dX, dy, group=g), combine_class_sums, split_every=4)
    if len(s.classes) < 2:
        raise ValueError(f"y has {len(s.classes)} class ({s.classes.tolist()}); the test needs at least two")
    return s


def target_sums(X: Any, y: Any) -> TargetSums:
    """One pass: the sums ``f_regression`` needs."""
    dX, dy = check_X_y(X, y, accept_sparse=True)
    g = _group(dX.shape[1], max(dX.chunks[0]), not isinstance(dX._meta, np.ndarray), 1)
    return reduce_here(fold_row_chunks(target_sums_block, dX, dy, group=g), combine_target_sums, split_every=4)


def f_classif_from(s: ClassSums) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``f_oneway`` on the columns, from per-class sums."""
    n_samples = s.counts.sum()
    n_classes = len(s.classes)
    ss_alldata = s.sumsq.sum(axis=0)
    sums_all = s.sums.sum(axis=0)
    square_of_sums_alldata = sums_all**2
    square_of_sums_args = s.sums**2
    sstot = ss_alldata - square_of_sums_alldata / float(n_samples)
    ssbn = 0.0
    for k in range(n_classes):
        ssbn += square_of_sums_args[k] / s.counts[k]
    ssbn -= square_of_sums_alldata / float(n_samples)
    sswn = sstot - ssbn
    dfbn = n_classes - 1
    dfwn = n_samples - n_classes
    msb = ssbn / float(dfbn)
    msw = sswn / float(dfwn)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = msb / msw
    f = np.asarray(f).ravel()
    prob = special.fdtrc(dfbn, dfwn, f)
    return f, prob


def chi2_from(s: ClassSums) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``chi2`` from per-class sums (X must be non-negative: counts, tf-idf)."""
    observed = s.sums
    feature_count = s.sums.sum(axis=0)
    class_prob = s.counts / s.counts.sum()
    expected = np.dot(class_prob.reshape(-1, 1), feature_count.reshape(1, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        chisq = (observed - expected) ** 2 / expected
    chisq = chisq.sum(axis=0)
    return chisq, special.chdtrc(observed.shape[0] - 1, chisq)


def f_regression_from(s: TargetSums, *, center: bool = True, force_finite: bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``f_regression`` (``r_regression`` then the F test) from the sums."""
    n = s.n
    if center:
        y_mean = s.sy / n
        X_means = s.sx / n
        y_norm = np.sqrt(max(s.syy - n * y_mean**2, 0.0))
        X_norms = np.sqrt(np.maximum(s.sxx - n * X_means**2, 0.0))
        cov = s.sxy - y_mean * s.sx
    else:
        y_norm = np.sqrt(s.syy)
        X_norms = np.sqrt(s.sxx)
        cov = s.sxy
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / X_norms / y_norm
    deg_of_freedom = n - (2 if center else 1)
    corr_coef_squared = corr**2
    with np.errstate(divide="ignore", invalid="ignore"):
        f_statistic = corr_coef_squared / (1 - corr_coef_squared) * deg_of_freedom
        p_values = stats.f.sf(f_statistic, 1, deg_of_freedom)
    if force_finite and not np.isfinite(f_statistic).all():
        mask_inf = np.isinf(f_statistic)
        f_statistic[mask_inf] = np.finfo(f_statistic.dtype).max
        mask_nan = np.isnan(f_statistic)
        f_statistic[mask_nan] = 0.0
        p_values[mask_nan] = 1.0
    return f_statistic, p_values


def f_classif(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """ANOVA F-value of each feature against class labels (scikit-learn's ``f_classif``), from one pass."""
    return f_classif_from(class_sums(X, y))


def chi2(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Chi-squared statistic of each non-negative feature against class labels (scikit-learn's ``chi2``), from one
    pass. A negative value is an error naming its column."""
    s = class_sums(X, y)
    if s.low < 0:
        raise ValueError(f"Input X must be non-negative (chi2); it holds {s.low}")
    return chi2_from(s)


def f_regression(X: Any, y: Any, *, center: bool = True, force_finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """F-statistic of each feature's correlation with ``y`` (scikit-learn's ``f_regression``), from one pass."""
    return f_regression_from(target_sums(X, y), center=center, force_finite=force_finite)

