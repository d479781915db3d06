"""Jupyter display of the estimators: scikit-learn's HTML diagram, followed by a table of the fitted state.

>>> from scaleml_dask import LinearRegression
>>> import numpy as np
>>> html = LinearRegression().fit(np.eye(3, 2) + np.arange(6.0).reshape(3, 2) ** 2, [1.0, 2.0, 4.0])._repr_html_()
>>> "R²" in html and "solver used" in html
True
"""

from __future__ import annotations

import html
from typing import Any


class FittedSummaryMixin:
    """Adds ``_fitted_summary() -> list[(label, value)]`` (cheap: from fitted attributes only) below
    scikit-learn's estimator diagram once the estimator is fitted."""

    def _fitted_summary(self) -> list[tuple[str, Any]]:
        return []

    def _repr_html_inner(self) -> str:
        diagram = super()._repr_html_inner()
        try:
            rows = self._fitted_summary()
        except AttributeError:  # not fitted yet
            rows = []
        if not rows:
            return diagram
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:right'>"
                        f"{html.escape(_fmt(v))}</td></tr>" for k, v in rows)
        return f"{diagram}<table style='margin-top:.5em;font-size:90%'>{cells}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
