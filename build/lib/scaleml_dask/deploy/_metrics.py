"""Prometheus metrics of one server, in their own ``CollectorRegistry`` (several apps may share a process).

Base units, ``_total`` counters, one label set everywhere it applies: ``model``, ``version``, ``variant``,
``endpoint``, plus ``code`` on request counters. The transport records each request once, in one place; the
drift monitors are read at scrape time by a collector, so detecting costs nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

MODEL_LABELS = ("model", "version", "variant")
REQUEST_LABELS = (*MODEL_LABELS, "endpoint")
#: Seconds: from 50 µs (a one-row linear model answers in well under a millisecond) to 2.5 s.
LATENCY_BUCKETS = (5e-5, 1e-4, 2e-4, 3e-4, 5e-4, 7.5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 7.5e-3, 1e-2, 2.5e-2, 5e-2,
                   0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The server's metrics; ``observe`` is the one call per request."""

    def __init__(self, served: Callable[[], Iterable[Any]],
                 retiring: Callable[[], Iterable[Any]] = lambda: ()) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("scaleml_requests", "Requests answered.", (*REQUEST_LABELS, "code"), registry=r)
        self.errors = Counter("scaleml_request_errors", "Requests answered with an error status.",
                              (*REQUEST_LABELS, "code"), registry=r)
        self.latency = Histogram("scaleml_request_duration_seconds", "Time from request to response.",
                                 REQUEST_LABELS, buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("scaleml_requests_in_flight", "Requests being answered.", ("endpoint",),
                               registry=r)
        self.batch_rows = Histogram("scaleml_batch_rows", "Rows per model call (after adaptive batching).",
                                    MODEL_LABELS, buckets=BATCH_BUCKETS, registry=r)
        self.model_info = Gauge("scaleml_model_info", "The loaded models (value 1).",
                                (*MODEL_LABELS, "class", "n_features"), registry=r)
        self.loads = Counter("scaleml_model_loads", "Model versions loaded or refused.",
                             (*MODEL_LABELS, "result"), registry=r)
        self.queue_wait = Histogram("scaleml_queue_duration_seconds", "Time a model call waited for an inference "
                                    "thread.", buckets=LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("scaleml_requests_rejected", "Requests refused with 503 because the inference "
                                "queue was full.", registry=r)
        self.queued = Gauge("scaleml_inference_queue", "Model calls waiting for an inference thread.", registry=r)
        r.register(_DriftCollector(served))
        r.register(_InFlightCollector(served, retiring))
        self._children: dict[tuple, tuple[Any, Any, Any]] = {}

    def observe(self, labels: tuple[str, str, str, str], code: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (labels, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(*labels, str(code)), self.latency.labels(*labels),
                self.errors.labels(*labels, str(code)) if code >= 400 else None)
        children[0].inc()
        children[1].observe(seconds)
        if children[2] is not None:
            children[2].inc()

    def batch(self, model: Any, rows: int) -> None:
        """Count one model call of ``rows`` rows."""
        child = self._children.get(model.labels)
        if child is None:
            child = self._children[model.labels] = self.batch_rows.labels(*model.labels)
        child.observe(rows)

    def loaded(self, model: Any, previous: Any = None) -> None:
        """Record a newly served model (and retire the info series of the one it replaces)."""
        if previous is not None:
            try:
                self.model_info.remove(*previous.labels, previous.class_name, str(previous.n_features))
            except KeyError:
                pass
        self.model_info.labels(*model.labels, model.class_name, str(model.n_features)).set(1)
        self.loads.labels(*model.labels, "loaded").inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _DriftCollector:
    """Reads each served model's :class:`~scaleml_dask.deploy.monitor.DriftMonitor` at scrape time."""

    def __init__(self, served: Callable[[], Iterable[Any]]) -> None:
        self.served = served

    def describe(self) -> list:
        return []

    def collect(self) -> Iterable[Any]:
        labels = [*MODEL_LABELS, "feature"]
        feat = CounterMetricFamily("scaleml_feature_drift_detected", "ADWIN detections of a feature's mean "
                                   "moving away from its training mean.", labels=labels)
        shift = GaugeMetricFamily("scaleml_feature_shift", "Mean of a feature over the last monitored rows, "
                                  "in training standard deviations from the training mean.", labels=labels)
        pred = CounterMetricFamily("scaleml_prediction_drift_detected", "ADWIN detections of the prediction "
                                   "mean moving away from its training mean.", labels=list(MODEL_LABELS))
        pshift = GaugeMetricFamily("scaleml_prediction_shift", "Mean prediction over the last monitored rows, in "
                                   "training standard deviations from the training mean.", labels=list(MODEL_LABELS))
        rows = CounterMetricFamily("scaleml_monitored_rows", "Rows seen by the drift monitor.",
                                   labels=list(MODEL_LABELS))
        skipped = CounterMetricFamily("scaleml_monitor_skipped_rows", "Rows the drift monitor skipped: inputs "
                                      "or prediction not finite, or absurdly far from training.",
                                      labels=list(MODEL_LABELS))
        errors = CounterMetricFamily("scaleml_monitor_errors", "Errors inside the drift monitor (each logged; "
                                     "its detectors restarted).", labels=list(MODEL_LABELS))
        for model in self.served():
            monitor = model.monitor
            if monitor is None:
                continue
            monitor.flush()  # never raises
            lab = list(model.labels)
            for j, name in enumerate(model.monitored or model.feature_names):  # a pipeline's: its numeric columns
                feat.add_metric([*lab, name], float(monitor.feature_detections[j]))
                shift.add_metric([*lab, name], float(monitor.feature_shift[j]))
            if monitor.prediction_mean is not None:
                pred.add_metric(lab, float(monitor.prediction_detections))
                pshift.add_metric(lab, monitor.prediction_shift)
            rows.add_metric(lab, float(monitor.n_observed))
            skipped.add_metric(lab, float(monitor.n_skipped))
            errors.add_metric(lab, float(monitor.n_errors))
        yield from (feat, shift, pred, pshift, rows, skipped, errors)


class _InFlightCollector:
    """Requests each loaded model holds, the ones being replaced included (a swap waits for none of them)."""

    def __init__(self, served: Callable[[], Iterable[Any]], retiring: Callable[[], Iterable[Any]]) -> None:
        self.served, self.retiring = served, retiring

    def describe(self) -> list:
        return []

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily("scaleml_model_requests_in_flight", "Requests being answered by each loaded "
                                   "model version.", labels=list(MODEL_LABELS))
        for model in [*self.served(), *self.retiring()]:
            family.add_metric(list(model.labels), float(model.in_flight))
        yield family
