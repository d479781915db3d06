"""Feature selection for data larger than memory: ``VarianceThreshold``, ``SelectKBest`` and ``SelectPercentile`` with
``f_classif``, ``chi2`` and ``f_regression``, every statistic from one pass of per-chunk sums (scikit-learn's
estimators and scores, the same answers)."""

from ._selectors import SelectKBest, SelectPercentile, VarianceThreshold
from ._univariate import chi2, f_classif, f_regression

__all__ = ["SelectKBest", "SelectPercentile", "VarianceThreshold", "chi2", "f_classif", "f_regression"]
