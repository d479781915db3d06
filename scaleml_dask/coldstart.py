"""One-time costs of the compiled kernels: the first call of each numba kernel family against a second one.

A family's first call in a process compiles its kernels, or loads them from numba's on-disk cache (``cache=True``;
``__pycache__`` beside the module, or ``$NUMBA_CACHE_DIR``, or numba's user-wide fallback when the package
directory is not writable). Every later call is the steady state. :func:`first_calls` measures both in the
calling process on tiny inputs, and says from numba's dispatcher statistics whether the kernels were compiled
or loaded; workflow reports show it (``runner``) and ``benchmarks/bench_coldstart.py`` runs it in fresh
processes with an empty and a warm cache.

>>> rows = first_calls(["ADWIN"])
>>> [row["family"] for row in rows], rows[1]["kernels"].split(" (")[0] in KERNEL_SOURCES
(['numba start (typing and lowering registries)', 'ADWIN'], True)
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

#: Where a family's kernels came from at its first call: what the reports' "kernels" column says.
KERNEL_SOURCES = ("compiled", "loaded from cache", "already in memory")


# Each family's call takes every specialisation a later call of the library can take, so that nothing compiles
# after the warm-up: the learners hand their kernels C-ordered float64 batches and float64 targets (they convert
# other input); rows are float64, C-ordered or strided (a row of a column-major array), targets Python / numpy
# ints or floats. tests/test_coldstart_coverage.py checks it in a fresh process with an empty cache.
def _online_learn_many() -> None:
    from .online import LogisticRegression

    rng = np.random.default_rng(0)
    LogisticRegression(optimizer="adam").learn_many(rng.standard_normal((64, 4)), rng.integers(0, 2, 64))


def _online_learn_one() -> None:
    from .online import LogisticRegression

    m = LogisticRegression(optimizer="adam")
    strided = np.asfortranarray(np.ones((2, 4)))[0]
    for x in (np.ones(4), strided):
        for y in (1, 1.0):
            m.learn_one(x, y)


def _rls() -> None:
    from .online import RLS

    r = RLS()
    for x in (np.ones(4), np.asfortranarray(np.ones((2, 4)))[0]):
        r.learn_one(x, 1.0)


def _adwin() -> None:
    from .online import ADWIN

    detector = ADWIN()
    detector.update_many(np.r_[np.zeros(200), np.ones(200)])
    for v in range(2 * detector.clock):  # per value: queued, handed over at each tick
        detector.update(v % 2)


def _page_hinkley() -> None:
    from .online import PageHinkley

    detector = PageHinkley()
    detector.update_many(np.r_[np.zeros(200), np.ones(200)])
    detector.update(1.0)


def _sgd() -> None:
    from .sgd import _kernels as k

    rng = np.random.default_rng(0)
    X, T, W = rng.standard_normal((256, 4)), (rng.random((256, 1)) > 0.5).astype(np.float64), np.zeros((5, 1))
    common = dict(loss="log_loss", fit_intercept=True)
    G, _ = k.batch_gradient(W, X, T, start=0, n_train=256, seed=0, block=0, batch_size=32, step=0, **common)
    k.descent_step(W, G, k.init_optimizer("adam", W.shape), penalty="l2", alpha=1e-4, schedule="adam", eta0=0.01,
                   power_t=0.5)
    k.local_epochs(W, X, T, start=0, n_train=256, seeds=[0], block=0, batch_size=32, penalty="l2", alpha=1e-4,
                   schedule="adam", eta0=0.01, power_t=0.5, t0=0.0, **common)


def _fused_search() -> None:
    from .model_selection import _fused_kernels as k
    from .sgd._kernels import epoch_plan

    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((256, 4)), (rng.random((256, 1)) > 0.5).astype(np.float64)
    offset, order = epoch_plan(0, 0, 256, 32)
    m = 2
    for loss in range(3):
        k.fused_epochs(X, T, np.arange(256), 0, 256, np.array([offset]), order[None, :], 32, loss, np.zeros((5, m)),
                       np.zeros(m, np.int64), np.ones(m, bool), np.ones(m, np.int64), np.full(m, 1e-4),
                       np.full(m, 3, np.int64), np.full(m, 0.01), np.full(m, 0.5), 0.0,
                       *(np.zeros((m, 5)) for _ in range(3)), np.ones(m, bool))
    membership = (np.arange(256) % 2).astype(np.int8)
    membership.flags.writeable = False  # as ``_split.chunk_memberships`` keeps them
    part = np.full(256, -1, dtype=np.int32)
    k.place_part(membership, 1, part, 0)
    k.label_counts(X, part, np.zeros((1, 5, m)), T, np.zeros((1, m)), np.zeros((1, m)), np.zeros((1, m), dtype=bool),
                   np.zeros((1, 2)))


def _tsne_gradient(method: str) -> None:
    from .tsne import affinity, optimize

    rng = np.random.default_rng(0)
    n, k = 200, 10
    indices = np.array([np.roll(np.arange(n), -s)[1:k + 1] for s in range(n)], dtype=np.int64)
    p_cond = affinity.conditional_probabilities(rng.random((n, k)).astype(np.float32) + 0.1, 3.0)
    optimize.gradient(rng.standard_normal((n, 2)), affinity.joint_probabilities(indices, p_cond), method=method)


def _optimizers() -> None:
    from . import _optim

    _optim.adam_direction(0.5, 0.0, 0.0, 0.9, 0.999, 1e-8, 0.1, 0.001)
    _optim.adagrad_direction(0.5, 0.0, 1e-8)


def _kmeans() -> None:
    from ._kmeans_kernels import lloyd_block

    X = np.random.default_rng(0).standard_normal((64, 4))
    lloyd_block(X, None, centers=X[:3].copy(), n_far=3, with_moments=True)
    lloyd_block(X, np.ones(64), centers=X[:3].copy(), n_far=0, with_moments=False)


def _minibatch_kmeans() -> None:
    from .online import MiniBatchKMeans

    X = np.random.default_rng(0).standard_normal((64, 4))
    m = MiniBatchKMeans(n_clusters=3, random_state=0)
    m.learn_many(X)
    m.learn_one(X[0])
    m.learn_one(np.asfortranarray(X)[0])
    m.predict_many(X)


def _table_transforms() -> None:
    from .preprocessing import _kernels as k
    from .preprocessing._sketch import QuantileSketch

    X, H = np.array([[1.0, np.nan]]), np.array([[0, -1]])
    one, idx = np.ones(1), np.zeros(1, dtype=np.int64)
    k.fill_dense(np.zeros((2, 3)), X, one, one, one, one, idx, H, idx + 1, one, H, idx + 1)
    k.fill_csr(X, one, one, one, one, idx, H, idx + 1, one, np.array([0, 1]))
    k.second_moment(X[0], k.first_moments(X[0])[1])
    k.level_counts(H[0].astype(np.int32), 1)  # a stored category's codes
    many = QuantileSketch.of(np.arange(5000.0))  # above EXACT: the compiled histogram, its merges, its bins' bounds
    QuantileSketch.merge([many, QuantileSketch.of(np.arange(0.5, 3.0))]).median_error()


_TSNE_MODULES = ("scaleml_dask.tsne.affinity", "scaleml_dask.tsne.optimize")

#: Kernel family -> (a call on tiny inputs, the modules whose numba dispatchers it compiles)
FAMILIES: dict[str, tuple[Callable[[], None], tuple[str, ...]]] = {
    "online learn_many": (_online_learn_many, ("scaleml_dask.online._linear_kernels",)),
    "online learn_one": (_online_learn_one, ("scaleml_dask.online._linear_kernels",)),
    "RLS": (_rls, ("scaleml_dask.online._rls_kernels",)),
    "ADWIN": (_adwin, ("scaleml_dask.online._drift_kernels",)),
    "Page-Hinkley": (_page_hinkley, ("scaleml_dask.online._drift_kernels",)),
    "SGD blocks": (_sgd, ("scaleml_dask.sgd._kernels",)),
    "fused search": (_fused_search, ("scaleml_dask.model_selection._fused_kernels", "scaleml_dask.sgd._kernels")),
    "t-SNE": (functools.partial(_tsne_gradient, "exact"), _TSNE_MODULES),
    "t-SNE FFT": (functools.partial(_tsne_gradient, "fft"), _TSNE_MODULES),
    "optimizers": (_optimizers, ("scaleml_dask._optim",)),
    "k-means Lloyd": (_kmeans, ("scaleml_dask._kmeans_kernels",)),
    "MiniBatchKMeans": (_minibatch_kmeans, ("scaleml_dask.online._kmeans_kernels",)),
    "table transforms": (_table_transforms, ("scaleml_dask.preprocessing._kernels",
                                             "scaleml_dask.preprocessing._sketch")),
}


def _cache_counts(modules: Iterable[str]) -> tuple[int, int]:
    """(signatures loaded from the on-disk cache, signatures compiled) over the dispatchers of ``modules``."""
    hits = misses = 0
    for name in modules:
        for obj in vars(importlib.import_module(name)).values():
            stats = getattr(obj, "stats", None)
            if stats is not None and hasattr(stats, "cache_hits"):
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
    return hits, misses


def first_calls(families: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """For each family: its first call in this process and a second (steady) one, in milliseconds, and
    whether the first compiled its kernels or loaded them from the cache (module imports are not counted).
    Families whose kernels already ran in this process show a first call near the steady state."""
    from numba.core.registry import cpu_target

    t0 = time.perf_counter()
    cpu_target.typing_context.refresh()  # numba's start: its typing and lowering registries, which the first
    cpu_target.target_context.refresh()  # dispatch of any kernel (compiled or cached) fills once per process
    rows = [{"family": "numba start (typing and lowering registries)", "steady (ms)": 0.0,
             "first call (ms)": 1e3 * (time.perf_counter() - t0), "kernels": "once per process"}]
    for name in FAMILIES if families is None else families:
        call, modules = FAMILIES[name]
        before = _cache_counts(modules)  # imports the modules: their import time is not the kernels' cost
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        call()
        steady = time.perf_counter() - t0
        hits, misses = (a - b for a, b in zip(_cache_counts(modules), before))
        how = KERNEL_SOURCES[0 if misses else 1 if hits else 2]
        rows.append({"family": name, "first call (ms)": 1e3 * first, "steady (ms)": 1e3 * steady,
                     "kernels": f"{how} ({hits + misses} signatures)" if hits + misses else how})
    return rows
