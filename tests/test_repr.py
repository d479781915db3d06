"""Jupyter display: scikit-learn's diagram followed by the fitted summary, for SGD and the online estimators."""

from __future__ import annotations

import re

import numpy as np

import scaleml_dask as sm
from scaleml_dask import online as ol


def _summary(model) -> dict[str, str]:
    """The rows of the fitted-summary table below the diagram: label -> shown value."""
    html = model._repr_html_()
    assert "sk-estimator" in html or "sk-top-container" in html  # scikit-learn's diagram comes first
    return dict(re.findall(r"<tr><th style='text-align:left'>(.*?)</th><td style='text-align:right'>(.*?)</td>", html))


def test_sgd_classifier_and_regressor_show_mode_epochs_loss_history():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 3))
    assert _summary(sm.SGDClassifier(mode="local")) == {}  # not fitted: the diagram only
    clf = sm.SGDClassifier(mode="local", rounds=3, batch_size=100, eta0=0.05).fit(X, (X[:, 0] > 0).astype(int))
    rows = _summary(clf)
    assert rows["mode"] == "local" and rows["epochs"] == str(clf.n_iter_) and rows["rounds"] == "3"
    assert rows["samples seen"] == f"{clf.samples_seen_:,}" and rows["bytes exchanged"] == f"{clf.bytes_exchanged_:,}"
    first, last = clf.loss_curve_[0, 3], clf.loss_curve_[-1, 3]
    assert last < first and rows["held-out loss, first → last"] == f"{first:.4g} → {last:.4g}"
    reg = sm.SGDRegressor(mode="local", rounds=2, batch_size=200).fit(X, X @ [1.0, -2.0, 0.5])
    rows = _summary(reg)
    assert rows["mode"] == "local" and rows["rounds"] == "2" and rows["loss curve points"] == str(len(reg.loss_curve_))


def test_online_learners_show_samples_seen_and_coefficients():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 2))
    assert _summary(ol.LogisticRegression()) == {}
    for model, y in ((ol.LogisticRegression(learning_rate=0.5), (X[:, 0] > 0).astype(int)),
                     (ol.RLS(), X @ [3.0, -1.0] + 2.0)):
        model.learn_many(X, y)
        rows = _summary(model)
        assert rows["samples seen"] == "3,000" and rows["features"] == "2"
        assert rows["max |coef|"] == f"{np.abs(model.coef_).max():.6g}"
        assert rows["intercept"] == f"{model.intercept_:.6g}"
    assert rows["max |coef|"] == "3" and rows["intercept"] == "2"  # RLS: least squares, exact


def test_drift_detectors_show_detections_and_the_last_change():
    values = np.r_[np.zeros(1000), np.ones(1000)] + np.random.default_rng(0).normal(0, 0.1, 2000)
    for detector in (ol.ADWIN(), ol.PageHinkley()):
        assert _summary(detector) == {}
        (hit,) = detector.update_many(values)
        rows = _summary(detector)
        assert rows["detections"] == "1" and rows["values since the last change"] == f"{2000 - hit - 1:,}"
    X = np.random.default_rng(2).standard_normal((20_000, 2))
    y = np.r_[X[:10_000, 0] > 0, X[10_000:, 0] < 0].astype(int)  # the concept flips at 10,000
    m = ol.DriftAdaptive(ol.LogisticRegression(learning_rate=0.5), ol.ADWIN(mode="up"))
    for i in range(0, 20_000, 500):
        m.learn_many(X[i:i + 500], y[i:i + 500])
    rows = _summary(m)
    assert rows["samples seen"] == "20,000" and rows["detections"] == str(len(m.drifts_)) != "0"
    assert rows["last change at sample"] == f"{m.drifts_[-1]:,}" and 10_000 <= m.drifts_[-1] < 12_000
