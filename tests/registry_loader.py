"""A long-lived loader process for the registry fuzz (test_registry_fuzz.py): one version path per stdin line,
one JSON outcome per stdout line. A crash of this process (a segfault, a bus error) is what the fuzz looks for:
the test sees the pipe close and counts the example as failed.

Outcome: ``{"outcome": "refused", "message": ...}`` for a RegistryError, ``{"outcome": "error", "type": ...,
"message": ...}`` for any other exception (a failure too), or ``{"outcome": "loaded", "fingerprint": ...}``: a
digest of the model's outputs on fixed rows and of what it does when it keeps learning (online learners,
detectors, SGD's partial_fit), so a loaded model is exercised, and two identical models have equal digests;
``"loaded, then failed"`` with the exception when that use raised.
"""

from __future__ import annotations

import hashlib
import json
import sys
import traceback
import warnings

import numpy as np


def fingerprint(model) -> str:
    from scaleml_dask.deploy.outputs import apply, output_names

    h = hashlib.sha256(type(model).__name__.encode())

    def add(a) -> None:
        a = np.asarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())

    rng = np.random.default_rng(0)
    if hasattr(model, "update_many"):  # a drift detector: its detections on a fixed stream
        add(model.update_many(np.r_[rng.normal(0, 1, 300), rng.normal(3, 1, 300)]))
        add(model.n_detections)
        return h.hexdigest()
    d = getattr(model, "n_features_in_", None)
    if d is None:
        return h.hexdigest()
    X = rng.normal(size=(16, int(d)))
    for name in output_names(model):
        add(apply(model, name, X))
    y = (X[:, 0] > 0).astype(np.float64)
    if hasattr(model, "learn_many"):  # an online learner keeps learning from where it stopped
        model.learn_many(X, y) if "KMeans" not in type(model).__name__ else model.learn_many(X)
        add(apply(model, output_names(model)[0], X))
    elif hasattr(model, "partial_fit"):
        classes = getattr(model, "classes_", None)
        target = y if classes is None else np.asarray(classes)[(X[:, 0] > 0).astype(int) % len(classes)]
        model.partial_fit(X, target)
        add(apply(model, "predict", X))
    return h.hexdigest()


def main() -> None:
    import scaleml_dask  # noqa: F401 - imported once, before the first request
    from scaleml_dask.deploy.registry import RegistryError, load_model

    warnings.simplefilter("ignore")
    for line in sys.stdin:
        path = line.strip()
        try:
            model = load_model(path)
        except RegistryError as exc:
            out = {"outcome": "refused", "message": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
            out = {"outcome": "error", "type": type(exc).__name__, "message": str(exc)[:500],
                   "traceback": traceback.format_exc()[-2000:]}
        else:
            try:
                out = {"outcome": "loaded", "fingerprint": fingerprint(model)}
            except BaseException as exc:  # noqa: BLE001 - a loaded model that fails when used
                out = {"outcome": "loaded, then failed", "type": type(exc).__name__, "message": str(exc)[:500],
                       "traceback": traceback.format_exc()[-2000:]}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
