"""The fused search of the online gradient learners (``online.LogisticRegression``, ``Perceptron``,
``LinearRegression``): every candidate × split learns in the same read of each chunk.

**Contract.** Fitting a candidate on a split's training rows means what a user of the online API would do with
those rows: a fresh learner with the candidate's parameters calls ``learn_many`` on the rows in stream (row)
order, cut into batches of ``batch_size`` rows — the batches ``iter_batches((X_train, y_train), batch_size)``
yields, the last one shorter — and is then scored on the split's test rows. ``batch_size`` is a fit parameter of
the search (``search.fit(X, y, batch_size=500)``; default 1000, ``iter_batches``' default); the refit learns all
rows the same way (``learn_rows``).

**The pass.** A learner's state passes from chunk to chunk, so the training pass is a *chain* of tasks (one per
chunk, each after the one before; ``passes.map_row_chunks(chain=...)``): a chunk's task reads the chunk, and for
each split runs ``_fused_kernels.online_stream`` — every candidate of that split learns each batch of the
split's training rows at once (the margins and gradients of all of them by two BLAS products), the rows left over
carried to the next chunk's task with the weights and optimizer memory. Then one scoring pass scores every
candidate on every split's test rows (``_fused``'s scoring). Two reads of each chunk in all, for any number of
candidates × splits; each candidate on each split equals the learner trained by ``learn_rows`` on that split's
training rows (to rounding: 1e-10 in the tests).

**Divergence.** A member whose weights stop being finite, or whose loss on the first batch of a chunk (measured
before learning it) exceeds ``divergence_bound`` × the zero model's, is stopped at once, with its candidate on
every split, and reported (chunk, reason); its scores are NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import assert_finite
from .._folds import TEST, TRAIN
from ..metrics._scorer import Scorer
from ._fused import CandidateResult, _Pass, compute_pass, score_jobs, score_keys, scores_by_candidate
from ._fused_kernels import ONLINE_ADAGRAD, ONLINE_ADAM, ONLINE_SGD, online_stream

log = logging.getLogger("scaleml_dask.model_selection")

#: Rows per ``learn_many`` call when the search is not told (``iter_batches``' default).
BATCH_SIZE = 1000
_OPTIMIZERS = {"sgd": ONLINE_SGD, "adagrad": ONLINE_ADAGRAD, "adam": ONLINE_ADAM}
_WEIGHTS_NOT_FINITE, _LOSS_TOO_HIGH = 1, 2


def online_learner(estimator: Any) -> bool:
    """Whether ``estimator`` is one of the online learners (``learn_many`` instead of ``fit``)."""
    from ..online.base import OnlineLearner

    return isinstance(estimator, OnlineLearner)


def online_fusable(estimator: Any) -> str | None:
    """None if the fused online search trains ``estimator``'s candidates, else the reason."""
    from ..online.linear import LinearRegression, LogisticRegression, Perceptron

    if type(estimator) not in (LogisticRegression, Perceptron, LinearRegression):
        return f"{type(estimator).__name__} is not an online gradient learner"
    return None


def learn_rows(learner: Any, X: Any, y: Any, batch_size: int = BATCH_SIZE) -> Any:
    """``learner.learn_many`` over the rows of ``X``, ``y`` in order, in batches of ``batch_size`` rows (the
    contract of a search's fit for online learners); returns the learner.

    >>> import numpy as np
    >>> from scaleml_dask.online import LinearRegression
    >>> X = np.ones((5, 1)); m = learn_rows(LinearRegression(learning_rate=0.5), X, 2.0 * X[:, 0], batch_size=2)
    >>> m.n_updates_, m.n_seen_
    (3, 5)
    """
    from ..online.streams import iter_batches

    for Xb, yb in iter_batches((X, y), batch_size):
        learner.learn_many(Xb, yb)
    return learner


class StreamFitted:
    """An online learner as the generic search path and the scorers use an estimator: ``fit`` is ``learn_rows``
    from scratch, ``predict`` / ``predict_proba`` / ``decision_function`` the learner's ``*_many``."""

    def __init__(self, learner: Any, batch_size: int) -> None:
        self.learner, self.batch_size = learner, batch_size

    def fit(self, X: Any, y: Any) -> StreamFitted:
        learn_rows(self.learner, X, y, self.batch_size)
        return self

    def predict(self, X: Any) -> np.ndarray:
        return self.learner.predict_many(np.asarray(X))

    def decision_function(self, X: Any) -> np.ndarray:
        return self.learner._decision_many(np.asarray(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        fn = getattr(self.learner, "predict_proba_many", None)
        if fn is None:
            raise AttributeError(f"{type(self.learner).__name__} has no predict_proba_many")
        return fn(np.asarray(X))


@dataclass(frozen=True)
class _Stream:
    """What each chunk's task of the chain needs (pickled into it)."""

    plan: Any
    classifier: bool
    loss: int
    n_chunks: int
    divergence_bound: float
    opt: np.ndarray  # per candidate
    lr: np.ndarray
    l2: np.ndarray
    fit_intercept: np.ndarray
    beta1: np.ndarray
    beta2: np.ndarray
    eps: np.ndarray


def _targets(y: np.ndarray, classifier: bool, chunk_index: int, row_start: int) -> np.ndarray:
    """``y`` of a chunk as the learners take it: labels 0/1 (classifiers) or finite numbers, else an error naming
    the chunk and the row."""
    y = np.asarray(y).ravel()
    if classifier:
        if y.dtype == bool:
            return y.astype(np.float64)
        bad = ~np.isin(y, (0, 1)) if y.dtype.kind in "iuf" else np.ones(len(y), dtype=bool)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"the online learners learn binary labels 0/1; y has {y[i]!r} in chunk {chunk_index}, "
                             f"row {row_start + i}")
        return y.astype(np.float64)
    if y.dtype.kind not in "iufb":
        raise ValueError(f"y must be numeric; got {y.dtype} in chunk {chunk_index}")
    y = y.astype(np.float64)
    assert_finite(y, "y", chunk_index, row_start)
    return y


def _online_block(X: np.ndarray, y: np.ndarray, *, chunk_index: int, row_start: int, spec: _Stream,
                  state: dict) -> dict:
    """One chunk of the chain: every split's candidates learn the split's training rows of the chunk."""
    from .._scratch import scratch

    X = np.ascontiguousarray(X, dtype=np.float64)
    yv = _targets(y, spec.classifier, chunk_index, row_start)
    M = spec.plan.memberships(np.arange(row_start, row_start + len(X)), np.asarray(y).ravel())
    st = {k: v.copy() for k, v in state.items()}  # the input may be another task's too: never written
    S, d1, N = st["W"].shape
    bs = st["carry_y"].shape[1]
    last = chunk_index == spec.n_chunks - 1
    Xb, yb = scratch("online_Xb", (bs, d1 - 1)), scratch("online_yb", (bs,))
    Z, E, G = scratch("online_Z", (bs, N)), scratch("online_E", (bs, N)), scratch("online_G", (d1 - 1, N))
    for s in range(S):
        rows = np.flatnonzero(M[s] == TRAIN)
        active = st["active"][s]
        before = active.copy()
        first, zero = np.full(N, np.nan), np.zeros(1)
        n_before = int(st["n_carry"][s])
        n_carry, t, batches, bad = online_stream(
            X, yv, rows, st["carry_X"][s], st["carry_y"][s], n_before, last, spec.loss, st["W"][s], st["M1"][s],
            st["M2"][s], float(st["t"][s]), spec.opt, spec.lr, spec.l2, spec.fit_intercept, spec.beta1,
            spec.beta2, spec.eps, active, Xb, yb, Z, E, G, first, zero)
        if bad >= 0:
            assert_finite(X[bad:bad + 1], "X", chunk_index, row_start + bad)
        st["n_carry"][s], st["t"][s] = n_carry, t
        st["seen"][s] += n_before + len(rows) - n_carry
        for c in np.flatnonzero(before & ~active):
            _stop(st, c, chunk_index, _WEIGHTS_NOT_FINITE)
        if batches and zero[0] > 0:
            with np.errstate(invalid="ignore"):
                high = before & active & ~(first <= spec.divergence_bound * zero[0])
            for c in np.flatnonzero(high):
                _stop(st, c, chunk_index, _LOSS_TOO_HIGH)
    return st


def _stop(st: dict, c: int, chunk: int, reason: int) -> None:
    """Candidate ``c`` diverged in ``chunk``: stopped on every split."""
    st["active"][:, c] = False
    if st["diverged"][c] < 0:
        st["diverged"][c], st["reason"][c] = chunk, reason


class FusedOnline:
    """Trains ``candidates`` of an online gradient learner on every split of ``plan`` in one chain pass and
    scores them in one more pass; results as ``FusedSGD``'s (``results``, ``passes_``, ``cv_estimators``)."""

    def __init__(self, estimator: Any, candidates: Sequence[dict], dX: Any, dy: Any, plan: Any,
                 scorers: dict[str, Scorer], *, classes: np.ndarray | None, divergence_bound: float = 10.0,
                 return_train_score: bool = False, batch_size: int = BATCH_SIZE) -> None:
        from sklearn.base import clone, is_classifier

        self.dX, self.dy, self.plan = dX, dy, plan
        self.scorer_names, self.scorers = list(scorers), tuple(scorers.values())
        self.classifier = is_classifier(estimator)
        self.classes = np.array([0.0, 1.0]) if self.classifier else None
        self.divergence_bound = float(divergence_bound)
        self.return_train_score = return_train_score
        self.batch_size = int(batch_size)
        self.learners = [clone(estimator).set_params(**p) for p in candidates]
        for lr in self.learners:
            lr._validate_params()
        self.results = [CandidateResult(dict(p)) for p in candidates]
        self.S = plan.n_splits
        self.passes_ = 0
        self.state: dict | None = None

    def _spec(self) -> _Stream:
        ps = [lr.get_params() for lr in self.learners]
        return _Stream(self.plan, self.classifier, int(self.learners[0]._loss), len(self.dX.chunks[0]),
                       self.divergence_bound,
                       np.array([_OPTIMIZERS[p["optimizer"]] for p in ps], dtype=np.int64),
                       *(np.array([float(p[k]) for p in ps]) for k in ("learning_rate", "l2")),
                       np.array([bool(p["fit_intercept"]) for p in ps]),
                       *(np.array([float(p[k]) for p in ps]) for k in ("beta1", "beta2", "eps")))

    def run(self, stop: Any = None) -> None:
        """Learn every candidate on every split (the chain), then score them (one pass)."""
        import dask

        from ..passes import map_row_chunks

        S, N, d = self.S, len(self.learners), int(self.dX.shape[1])
        shape = (S, d + 1, N)
        state = {"W": np.zeros(shape), "M1": np.zeros(shape), "M2": np.zeros(shape), "t": np.zeros(S),
                 "seen": np.zeros(S, dtype=np.int64), "active": np.ones((S, N), dtype=bool),
                 "carry_X": np.zeros((S, self.batch_size, d)), "carry_y": np.zeros((S, self.batch_size)),
                 "n_carry": np.zeros(S, dtype=np.int64), "diverged": np.full(N, -1, dtype=np.int64),
                 "reason": np.zeros(N, dtype=np.int64)}
        chain = map_row_chunks(_online_block, self.dX, self.dy, unique=True, chain="state", spec=self._spec(),
                               state=state)
        (self.state,) = dask.compute(chain[-1])
        self.passes_ += 1
        st = self.state
        for c, res in enumerate(self.results):
            res.rounds = 1
            res.samples_seen = int(st["seen"].sum()) if st["diverged"][c] < 0 else 0
            if st["diverged"][c] >= 0:
                why = ("weights stopped being finite" if st["reason"][c] == _WEIGHTS_NOT_FINITE else
                       "loss on a batch exceeded divergence_bound x the zero model's")
                res.diverged = (1, f"chunk {int(st['diverged'][c])}: {why}")
                log.info("fused online search: candidate %d %s diverged: %s", c, res.params, res.diverged[1])
        # every member's weights in the fused layout (column c * S + s), scored in one pass
        W = np.ascontiguousarray(st["W"].transpose(1, 2, 0).reshape(d + 1, N * S))
        alive = [c for c in range(N) if st["diverged"][c] < 0]
        keys = score_keys(alive, S, self.return_train_score)
        losses = ["log_loss" if self.classifier else "squared"] * N  # responses: the sigmoid's probabilities
        jobs = score_jobs(keys, S, 1, self.classes, losses)
        from ._fused import fused_pass

        parts = fused_pass(_Pass(self.plan, self.classes, W, (), (), jobs, self.scorers), self.dX, self.dy)
        _, states = compute_pass(parts, self.scorers) if jobs else ([], [])
        self.passes_ += 1
        nan = [math.nan] * S
        per = scores_by_candidate(keys, states, self.scorer_names, self.scorers, S)
        for c, res in enumerate(self.results):
            entry = per.get(c)
            for name in self.scorer_names:
                res.scores[(1, name)] = entry[TEST][name] if entry else nan
                res.bounds[(1, name)] = entry["bound"].get(name, 0.0) if entry else 0.0
                if self.return_train_score:
                    res.train_scores[(1, name)] = entry[TRAIN][name] if entry else nan
            res.evaluated_at = 1

    def cv_estimators(self, c: int) -> list:
        """Candidate ``c``'s learner on each split, in the state the fused chain left it."""
        from sklearn.base import clone

        from ..online._linear_kernels import B_HEAD, B_SEEN, B_STEPS, B_T

        st = self.state
        if st is None or st["diverged"][c] >= 0:
            return []
        out = []
        for s in range(self.S):
            lr = clone(self.learners[c])
            lr._start(st["W"].shape[1] - 1)
            rows = lr._buf[B_HEAD:].reshape(3, -1)
            rows[0], rows[1], rows[2] = st["W"][s][:, c], st["M1"][s][:, c], st["M2"][s][:, c]
            lr._buf[B_STEPS] = lr._buf[B_T] = st["t"][s]
            lr._buf[B_SEEN] = st["seen"][s]
            out.append(lr)
        return out
