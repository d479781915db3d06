"""The warm-up covers what comes after it: in a fresh process with an empty numba cache, the online kernel
families of ``coldstart.FAMILIES`` (what ``first_calls`` and the demo's one-time costs run) compile every
specialisation that later calls take — 10,000-row ``learn_many`` batches of float64, float32, column-major and
strided rows with float, int and bool labels, ``learn_one`` rows and targets of every common type, the
detectors value by value and in arrays — so nothing compiles mid-stream: zero new signatures after the warm-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

PROBE = r'''
import importlib, json
import numpy as np
from scaleml_dask.coldstart import FAMILIES, first_calls
from scaleml_dask import online as ol

ONLINE = ["online learn_many", "online learn_one", "RLS", "ADWIN", "Page-Hinkley", "MiniBatchKMeans"]
MODULES = {m for f in ONLINE for m in FAMILIES[f][1]} | {"scaleml_dask._kmeans_kernels"}

def signatures():
    return {f"{m}.{n}": [str(s) for s in o.signatures] for m in sorted(MODULES)
            for n, o in vars(importlib.import_module(m)).items() if hasattr(o, "signatures") and hasattr(o, "stats")}

rows = first_calls(ONLINE)
warm = signatures()
rng = np.random.default_rng(1)
X = rng.standard_normal((10_000, 32))
y = rng.random(10_000) > 0.5
for cls in (ol.LogisticRegression, ol.LinearRegression, ol.Perceptron):
    for opt in ("sgd", "adagrad", "adam"):
        for Xb in (X, X.astype(np.float32), np.asfortranarray(X), X[:, ::2]):
            for yb in (y.astype(np.float64), y.astype(np.int64), y, y.astype(np.int32)):
                cls(optimizer=opt).learn_many(Xb, yb)
        m = cls(optimizer=opt)
        for x in (X[0], np.asfortranarray(X)[0], X[0].astype(np.float32)):
            for target in (1, 1.0, True, np.int64(1), np.float32(1.0), np.int32(0), np.bool_(True)):
                m.learn_one(x, target)
r = ol.RLS()
r.learn_many(X, y)
for x in (X[0], np.asfortranarray(X)[0]):
    r.learn_one(x, 1.0)
a = ol.ADWIN()
a.update_many(y.astype(float))
for v in y[:100]:
    a.update(v)
p = ol.PageHinkley()
p.update_many(y)
for v in (1, 1.0, True):
    p.update(v)
k = ol.MiniBatchKMeans(n_clusters=5, random_state=0)
for Xb in (X, np.asfortranarray(X), X[::3], X.astype(np.float32)):
    k.learn_many(Xb)
    k.predict_many(Xb)
k.learn_one(np.asfortranarray(X)[1])
after = signatures()
print(json.dumps({"compiled": [r["kernels"] for r in rows[1:]],
                  "new": {n: [s for s in after[n] if s not in warm.get(n, [])] for n in after}}))
'''


@pytest.mark.slow
def test_nothing_compiles_after_the_warm_up_in_a_fresh_process_with_an_empty_cache():
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.splitlines()[-1])
    assert all(k.startswith("compiled") for k in result["compiled"]), result["compiled"]  # the cache was empty
    assert {n: s for n, s in result["new"].items() if s} == {}


def test_boolean_labels_are_labels_0_and_1_for_every_path():
    """True / False labels (documented as accepted) learn as 1 / 0 in learn_one and learn_many alike (they failed
    to compile before: float(bool) is not defined in a kernel)."""
    import numpy as np

    from scaleml_dask import online

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    labels = X[:, 0] > 0
    for cls in (online.LogisticRegression, online.Perceptron):
        a, b = cls(), cls()
        a.learn_many(X, labels)
        b.learn_many(X, labels.astype(np.int64))
        assert np.array_equal(a.coef_, b.coef_)
        c, d = cls(), cls()
        for x, t in zip(X, labels):
            c.learn_one(x, bool(t))
            d.learn_one(x, int(t))
        assert np.array_equal(c.coef_, d.coef_) and c.n_seen_ == 200
