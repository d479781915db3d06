"""One chunk visit of the fused search, component by component, against each component's floor.

The visit is what ``GridSearchCV`` does with one chunk in one round (``bench_search.py``): 3 folds, each a group of
16 members (the benchmark's candidates, log loss), trained one epoch over the fold's training rows of the chunk
(250,000 × 32 rows, 2/3 of them per fold, batches of 1,000) by ``fused_epochs``. Beside it, the plain local-mode
epoch of one member over the whole chunk (``sgd._kernels.local_epochs``: one plain fit's visit of the chunk).

Each component runs alone over every batch of the visit, as the kernel calls it, with its own floor (times: the
least CPU time of the thread over ``--repeat`` runs):

- the gather of a batch's rows alone (``_gather``); floor: as many rows of the chunk read contiguously (memory
  bandwidth, one core);
- the sigmoids of every member-row alone (``_sigmoid_into``); floor: the same loop on a block that stays in the
  L1 cache (its arithmetic rate at the vector width the compiler chose);
- what the kernel runs: the log loss's residuals ``s - t`` with the next batch's rows gathered in the same loop
  (``_log_residuals``); floor: the larger of the two above (memory and arithmetic fully overlapped);
- the two products per batch and panel (margins ``Xb1 @ W``, gradients ``Xb1' S``) as numba calls BLAS; floor:
  their flops at this core's DGEMM rate (a 2,000² ``np.dot``, one thread);
- every member's step (``members_step``);
- the whole visit (``fused_epochs``) against the sum of its parts' floors.

    OPENBLAS_NUM_THREADS=1 python benchmarks/profile_fused_visit.py [--rows 250000] [--batch-size 1000]
        [--candidates 16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import mmap
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as in a dask worker of one thread

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from scaleml_dask.model_selection._fused_kernels import _gather, _log_residuals, members_step  # noqa: E402
from scaleml_dask.sgd._kernels import _sigmoid_into  # noqa: E402

D = 32
FOLDS = 3


@njit(cache=True, nogil=True)
def _gathers(X, T, rows, start, n_train, offset, order, batch_size, Xb1, Tb):  # pragma: no cover - compiled
    for k in range(order.shape[0]):
        lo = order[k] * batch_size
        b = min(lo + batch_size, n_train) - lo
        _gather(X, T, rows, start, rows.shape[0], n_train, offset, lo, 0, b, Xb1, Tb)


@njit(cache=True, nogil=True)
def _residuals(Z, Tb, tcol, S, X, T, rows, start, n_train, offset, order, batch_size, Xn, Tn):  # pragma: no cover
    for k in range(order.shape[0]):
        lo = order[k] * batch_size
        b = min(lo + batch_size, n_train) - lo
        _log_residuals(Z, Tb, tcol, S, X, T, rows, start, rows.shape[0], n_train, offset, lo, 0, b, Xn, Tn)


@njit(cache=True, nogil=True)
def _products(Xb1, W, Z, S, G, n):  # pragma: no cover - compiled
    for _ in range(n):
        np.dot(Xb1, W, Z)
        np.dot(Xb1.T, S, G)


@njit(cache=True, nogil=True)
def _sigmoids(Z, S, n):  # pragma: no cover - compiled
    for _ in range(n):
        _sigmoid_into(Z, S)


@njit(cache=True, nogil=True)
def _steps(W, G, b, fi, pen, al, sch, e0, pt, m, v, g2, on, n):  # pragma: no cover - compiled
    for i in range(n):
        members_step(W, G, b, fi, pen, al, sch, e0, pt, 1.0 + i, m, v, g2, on)


@njit(cache=True, nogil=True)
def _touch(X):  # pragma: no cover - compiled
    s = 0.0
    for i in range(X.shape[0]):
        s += X[i, 0]
    return s


def _best(fn, repeat: int) -> float:
    """The least CPU time of this thread over ``repeat`` calls (one BLAS thread: steadier than wall time on a shared
    machine, the same on a quiet one)."""
    best = np.inf
    for _ in range(repeat):
        t = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t)
    return best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=250_000, help="rows of the chunk")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each component; the best is kept")
    ap.add_argument("--mapped", action="store_true",
                    help="the chunk as the store's reader hands it to a task: a fresh private map of a file in the "
                         "page cache (its first touch in the visit), not an array in anonymous memory")
    args = ap.parse_args(argv)
    from bench_search import candidates

    from scaleml_dask.io.synthetic import logistic_chunk
    from scaleml_dask.model_selection._fused_kernels import fused_epochs, panel_width
    from scaleml_dask.sgd._kernels import (
        _PENALTY_CODE,
        _SCHEDULE_CODE,
        epoch_plan,
        holdout_range,
        local_epochs,
    )

    n, bs, N = args.rows, args.batch_size, args.candidates
    rng = np.random.default_rng(0)
    X, y = logistic_chunk(11, 0, n, coef=rng.normal(size=D) / 4, intercept=0.1)
    T = y.reshape(-1, 1)
    fold = rng.integers(0, FOLDS, n)
    cands = candidates(N)
    pen = np.array([_PENALTY_CODE[c["penalty"]] for c in cands], dtype=np.int64)
    sch = np.array([_SCHEDULE_CODE[c["learning_rate"]] for c in cands], dtype=np.int64)
    al = np.array([c["alpha"] for c in cands])
    e0 = np.array([c["eta0"] for c in cands])
    pt = np.full(N, 0.25)
    fi = np.ones(N, dtype=bool)
    tcol = np.zeros(N, dtype=np.int64)
    groups = []
    for f in range(FOLDS):
        rows = np.flatnonzero(fold != f)
        lo, hi = holdout_range(0, 0, len(rows), 0.01)
        n_train = len(rows) - (hi - lo)
        offset, order = epoch_plan(0, 0, n_train, bs)
        groups.append((rows, hi % len(rows), n_train, offset, order))

    chunk = X
    if args.mapped:
        path = Path(__file__).parent / "data" / f"profile_visit_{n}_{D}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        X.tofile(path)

    def fresh() -> np.ndarray:
        """The chunk a task gets: a fresh private map of the file (``io.read._map``), or the array."""
        if not args.mapped:
            return chunk
        with open(path, "rb") as f:
            m = mmap.mmap(f.fileno(), X.nbytes, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        return np.frombuffer(m, dtype=np.float64).reshape(n, D)

    def visit() -> None:
        X = fresh()
        for rows, start, n_train, offset, order in groups:
            W = np.zeros((D + 1, N))
            moments = [np.zeros((N, D + 1)) for _ in range(3)]
            fused_epochs(X, T, rows, start, n_train, np.array([offset]), order[None], bs, 1, W, tcol, fi, pen, al,
                         sch, e0, pt, 0.0, *moments, np.ones(N, dtype=bool))

    lo, hi = holdout_range(0, 0, n, 0.01)
    c0 = cands[1]

    def plain() -> None:
        local_epochs(np.zeros((D + 1, 1)), fresh(), T, start=hi % n, n_train=n - (hi - lo), seeds=[0], block=0,
                     batch_size=bs, loss="log_loss", penalty=c0["penalty"], alpha=c0["alpha"], fit_intercept=True,
                     schedule=c0["learning_rate"], eta0=c0["eta0"], power_t=0.25, t0=0.0)

    w = panel_width(N, bs, D + 1)
    panels = -(-N // w)
    batches = sum(len(g[4]) for g in groups)
    Xb1 = np.ones((bs, D + 1))
    Tb = T[:bs].copy()
    Wp = rng.normal(size=(D + 1, w)) / 10
    Z, S, G = np.empty((bs, w)), np.empty((bs, w)), np.empty((D + 1, w))
    Xb1[:, :D] = X[:bs]
    np.dot(Xb1, Wp, Z)
    calls = batches * panels

    def gathers() -> None:
        X = fresh()
        for rows, start, n_train, offset, order in groups:
            _gathers(X, T, rows, start, n_train, offset, order, bs, Xb1, Tb)

    def copies() -> None:
        X = fresh()
        for g in groups:
            X[:g[2]].sum()

    Xn, Tn = np.ones((bs, D + 1)), np.empty((bs, 1))

    def residuals() -> None:
        X = fresh()
        for rows, start, n_train, offset, order in groups:
            _residuals(Z, Tb, tcol[:w], S, X, T, rows, start, n_train, offset, order, bs, Xn, Tn)

    A = np.random.default_rng(1).normal(size=(2000, 2000))
    dgemm = 2 * 2000**3 / _best(lambda: A @ A, 5)
    Zs, Ss = Z.ravel().copy(), np.empty(Z.size)
    Zl1, Sl1 = Zs[:512].copy(), np.empty(512)  # in the L1 cache: the loop's own rate
    flat = Z.ravel()
    mw = [np.zeros((w, D + 1)) for _ in range(3)]
    on = np.ones(w, dtype=bool)
    Gs = np.full((D + 1, w), 1e-3)
    args_step = (fi[:w], pen[:w], al[:w], sch[:w], e0[:w], pt[:w])
    def touch() -> None:
        _touch(fresh())

    for fn in (visit, plain, gathers, copies, touch, residuals):
        fn()
    _products(Xb1, Wp, Z, S, G, 1)
    _sigmoids(flat, Ss, 1)
    _sigmoids(Zl1, Sl1, 1)
    _steps(Wp.copy(), Gs, bs, *args_step, *mw, on, 1)
    r = args.repeat
    t_visit = _best(visit, r)
    t_plain = _best(plain, r)
    t_touch = _best(touch, r)
    gather, read = _best(gathers, r), _best(copies, r)
    sigmoids, sigmoids_l1 = (_best(lambda: _sigmoids(flat, Ss, calls), r),
                             _best(lambda: _sigmoids(Zl1, Sl1, calls * Z.size // 512), r))
    rows = [
        ("gather of the rows alone (`_gather`)", gather, read, "a contiguous read of as many rows (`sum`)"),
        ("sigmoids alone (`_sigmoid_into`)", sigmoids, sigmoids_l1, "the same loop, L1-resident"),
        ("**residuals s − t with the next batch gathered in the same loop** (`_log_residuals`)",
         _best(residuals, r), max(read, sigmoids_l1), "the larger of the two floors above"),
        ("2 products per batch × panel (`np.dot` from numba)", _best(lambda: _products(Xb1, Wp, Z, S, G, calls), r),
         calls * 4 * bs * (D + 1) * w / dgemm, f"their flops at DGEMM's {dgemm / 1e9:.0f} GFLOP/s"),
        ("members' steps (`members_step`, 48 × 33 a batch)",
         _best(lambda: _steps(Wp.copy(), Gs, bs, *args_step, *mw, on, calls), r), 0.0, "—"),
    ]
    total, floor = sum(v[1] for v in rows[2:]), sum(v[2] for v in rows[2:])
    print(f"### One visit: {n:,} × {D} chunk{' (mapped)' if args.mapped else ''}, {FOLDS} folds × {N} members "
          f"({batches} batches of {bs}, {panels} panel(s) of {w}); CPU ms of the thread\n")
    print("| component | ms | floor ms | floor is | × floor |\n|---|---|---|---|---|")
    for k, t, f, what in rows:
        print(f"| {k} | {t * 1e3:.2f} | {f * 1e3:.2f} | {what} | {t / f if f else float('nan'):.2f} |")
    print(f"| the kernel's parts (the last three) | {total * 1e3:.2f} | {floor * 1e3:.2f} | | {total / floor:.2f} |")
    print(f"| **whole visit (`fused_epochs`)** | {t_visit * 1e3:.2f} | {floor * 1e3:.2f} | | {t_visit / floor:.2f} |")
    print(f"| plain epoch over the chunk (1 member) | {t_plain * 1e3:.2f} | | | |")
    print(f"| the chunk's first touch (a sum of it{', freshly mapped' if args.mapped else ''}) | {t_touch * 1e3:.2f} "
          "| | | |")
    print(f"\nvisit ÷ plain epoch: {t_visit / t_plain:.1f}; members × rows trained: "
          f"{FOLDS * N} × {batches * bs / FOLDS:,.0f}")


if __name__ == "__main__":
    main()
