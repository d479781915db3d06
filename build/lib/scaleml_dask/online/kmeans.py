"""Mini-batch k-means on streams (Sculley 2010), with scikit-learn's ``MiniBatchKMeans`` rules.

* **Initialisation** from the first rows: k-means++ (scikit-learn's ``kmeans_plusplus``, seeded) or
  ``init="random"`` on ``init_size`` rows drawn from them, ``n_init`` times, keeping the centres of least
  inertia on those first rows (as scikit-learn's ``MiniBatchKMeans.fit``), or the given centres. Rows are
  buffered until ``max(n_clusters, init_size)`` have arrived (by default the first batch, if it holds
  ``n_clusters`` rows).
* **Steps**: each row of a batch goes to its nearest centre (distances by one GEMM); every centre that
  attracted ``m`` rows becomes ``(count · c + Σ x) / (count + m)``, i.e. each row moves it by ``1 / count``.
  ``learn_one`` is the same step for one row.
* **Dying centres**: when a centre has never attracted a row, or every ``10 · n_clusters`` rows, the centres
  whose count is below ``reassignment_ratio`` × the largest count are moved to random rows of the current
  batch (at most half the batch) and given the smallest remaining count, as scikit-learn does.

Hyperparameters are read at learn time (``set_params`` between batches applies to the next one):
``reassignment_ratio`` at every step, ``random_state`` re-seeds the generator of the random choices;
``n_clusters``, ``init``, ``init_size`` and ``n_init`` shape the initialisation and apply from the next
``reset()``.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .._deployable import CentreWeights
from .._kmeans_kernels import nearest, sq_distances
from ..validation import NotFittedError, check_n_features, is_sparse, nonfinite_error, sparse_refused
from ._kmeans_kernels import P_REASSIGNED, P_SEEN, P_SINCE, P_STEPS, kmeans_learn_many, kmeans_learn_one
from ._status import BAD_LENGTH, OK
from .base import OnlineEstimator


class MiniBatchKMeans(CentreWeights, OnlineEstimator):
    """Streaming k-means: ``learn_many(X)`` / ``learn_one(x)`` update the centres, ``predict_many`` gives
    labels and ``transform_many`` the Euclidean distances to every centre.

    Fitted attributes: ``cluster_centers_`` (k, d), ``counts_`` (rows attracted per centre, reset by a
    reassignment as scikit-learn does), ``n_features_in_``, ``n_seen_`` (rows received), ``n_steps_``
    (updates), ``n_reassigned_`` (centres moved for lack of rows). Rows given as dicts (River-style) are read
    by the keys of the first one, which become ``feature_names_in_``.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> planted = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    >>> X = planted[rng.integers(0, 3, 3000)] + rng.normal(0, 0.5, (3000, 2))
    >>> m = MiniBatchKMeans(3, random_state=0)
    >>> for Xb in np.split(X, 10):
    ...     m.learn_many(Xb)
    >>> sorted((m.cluster_centers_.round(0) + 0.0).tolist()), int(m.counts_.sum()), m.n_steps_
    ([[0.0, 0.0], [0.0, 10.0], [10.0, 0.0]], 3000, 10)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), "array-like"],
        "init_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "reassignment_ratio": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }
    _state_attribute = "cluster_centers_"

    def __init__(self, n_clusters: int = 8, *, init: Any = "k-means++", init_size: int | None = None,
                 n_init: int = 3, reassignment_ratio: float = 0.01, random_state: Any = None) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "clusterer"
        return tags

    # ---------------------------------------------------------------------------------------- state

    def _hyperparameter_changed(self, name: str) -> None:
        super()._hyperparameter_changed(name)
        if name == "random_state" and self._started():
            self._reseed = True

    def _init_state(self, centers: np.ndarray) -> None:
        self.cluster_centers_ = np.ascontiguousarray(centers, dtype=np.float64)
        self.counts_ = np.zeros(len(centers))
        self._progress = np.zeros(4, dtype=np.int64)
        self._reseed = False

    def _pack(self) -> None:
        k = len(self.cluster_centers_)
        if self.n_clusters != k:
            raise ValueError(f"n_clusters was changed to {self.n_clusters} after {type(self).__name__} started "
                             f"with {k} centres; call reset() to start again with {self.n_clusters}")
        if self._reseed:
            self._rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31))
            self._reseed = False
        self._ratio = float(self.reassignment_ratio)
        self._stale = False

    def _state_layout(self) -> list[tuple[str, Any, type, tuple]]:
        k = self.n_clusters
        return [("cluster_centers_", self.cluster_centers_, np.float64, (k, None)),
                ("counts_", getattr(self, "counts_", None), np.float64, (k,)),
                ("_progress", getattr(self, "_progress", None), np.int64, (4,))]

    def _state_counts(self) -> list[tuple[str, Any, int, int]]:
        counts, progress = self.counts_, self._progress
        ok = bool(np.isfinite(counts).all() and (counts >= 0).all() and (progress >= 0).all()
                  and np.isfinite(self.cluster_centers_).all() and self.cluster_centers_.shape[1] >= 1
                  and isinstance(getattr(self, "_rng", None), np.random.Generator)
                  and type(getattr(self, "_reseed", None)) is bool and isinstance(getattr(self, "_ratio", None), float))
        return [("counts_, _progress, cluster_centers_, _rng", 0 if ok else None, 0, 0)]

    def reset(self) -> None:
        """Forget the centres; the next rows initialise them again (with the current hyperparameters)."""
        for name in ("cluster_centers_", "counts_", "_progress", "_pending", "_rng", "feature_names_in_"):
            self.__dict__.pop(name, None)

    @property
    def n_features_in_(self) -> int:
        self._check_learned()
        return self.cluster_centers_.shape[1]

    @property
    def n_seen_(self) -> int:
        """Rows received (learned, or buffered for the initialisation)."""
        if self._started():
            return int(self._progress[P_SEEN])
        pending = self.__dict__.get("_pending")
        return 0 if pending is None else len(pending)

    @property
    def n_steps_(self) -> int:
        """Updates made: one per ``learn_one`` row, one per ``learn_many`` batch."""
        self._check_learned()
        return int(self._progress[P_STEPS])

    @property
    def n_reassigned_(self) -> int:
        """Centres moved to a random row for attracting too few."""
        self._check_learned()
        return int(self._progress[P_REASSIGNED])

    # ---------------------------------------------------------------------------------------- input

    def _check_learned(self) -> None:
        if self._started():
            return
        pending = self.__dict__.get("_pending")
        buffered = "" if pending is None else (f"; it holds {len(pending)} rows and initialises its "
                                               f"{self.n_clusters} centres from {self._init_rows()}")
        raise NotFittedError(f"This {type(self).__name__} instance has not learned anything yet{buffered}; call "
                             "'learn_one' or 'learn_many' first.")

    def _init_rows(self) -> int:
        return max(self.n_clusters, self.init_size or 0)

    def _width(self) -> int | None:
        if self._started():
            return self.cluster_centers_.shape[1]
        pending = self.__dict__.get("_pending")
        return None if pending is None else pending.shape[1]

    def _row(self, x: Any) -> np.ndarray:
        """``x`` (array or dict keyed by feature name) as a float row."""
        if isinstance(x, dict):
            names = self.__dict__.get("feature_names_in_")
            if names is None:
                if self._width() is not None:
                    raise ValueError(f"{type(self).__name__} learned from arrays, without feature names; give "
                                     "rows as arrays")
                self.feature_names_in_ = names = np.array([str(k) for k in x], dtype=str)
            missing = [str(n) for n in names if n not in x]
            if missing or len(x) != len(names):
                extra = sorted(set(map(str, x)) - set(names.tolist()))
                raise ValueError(f"the row lacks features {missing} and has unknown features {extra} (learned "
                                 f"{names.tolist()})")
            x = [x[n] for n in names]
        return _numeric(x, "x", 1, "a 1-d row (n_features,)")

    def _batch(self, X: Any) -> np.ndarray:
        if is_sparse(X):
            raise sparse_refused("X")
        return _numeric(X, "X", 2, "a 2-d array (n_samples, n_features)")

    def _check_width(self, d: int) -> None:
        width = self._width()
        if width is not None and d != width:
            raise ValueError(f"X has {d} features, but {type(self).__name__} is expecting {width} features as "
                             "input.")

    def _in_batch(self, m: int) -> str:
        seen = self.n_seen_
        return f"in this batch (stream rows {seen}-{seen + m - 1})"

    # ------------------------------------------------------------------------------------- learning

    def learn_many(self, X: Any) -> None:
        """One mini-batch step on the rows of ``X`` (buffered until the centres can be initialised)."""
        X = self._batch(X)
        if len(X) == 0:
            return
        if not self._started():
            self._validate_params()
            self._check_width(X.shape[1])
            X = self._buffer(X)
            if X is None:
                return
        elif self._stale:
            self._apply_hyperparameters()
        check_n_features(self, X.shape[1])
        with np.errstate(invalid="ignore"):  # inf rows: refused by the kernel below, naming them
            labels, _ = nearest(X, self.cluster_centers_)
        empty_before = not self.counts_.all()
        status = kmeans_learn_many(self.cluster_centers_, self.counts_, X, labels)
        if status != OK:
            raise nonfinite_error("X", X, self._in_batch(len(X)))
        self._reassign_dying(X, empty_before)
        self._progress[P_SEEN] += len(X)
        self._progress[P_STEPS] += 1

    def learn_one(self, x: Any) -> None:
        """The step for one row (array or dict): its nearest centre moves by ``(x - c) / count``."""
        if not self._started():
            self.learn_many(self._row(x)[None, :])
            return
        if type(x) is not np.ndarray or x.dtype != np.float64 or x.ndim != 1:
            x = self._row(x)
        if self._stale:
            self._apply_hyperparameters()
        status = kmeans_learn_one(self.cluster_centers_, self.counts_, self._progress, x)
        if status != OK:
            if status == BAD_LENGTH:
                check_n_features(self, x.shape[0])
            raise ValueError(f"x contains {'NaN' if np.isnan(x[status]) else 'inf'} in column {status} "
                             f"(stream row {self.n_seen_})")

    def _buffer(self, X: np.ndarray) -> np.ndarray | None:
        """Keep rows until there are enough to initialise; then initialise and return them as one batch."""
        pending = self.__dict__.get("_pending")
        if not np.isfinite(X).all():
            raise nonfinite_error("X", X, self._in_batch(len(X)))
        X = X if pending is None else np.concatenate([pending, X])
        if len(X) < self._init_rows():
            self._pending = X
            return None
        self.__dict__.pop("_pending", None)
        rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31))
        self._start(self._initial_centers(X, rng))
        self._rng = rng
        return X

    def _initial_centers(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        k = self.n_clusters
        if not isinstance(self.init, str):
            C = np.asarray(self.init, dtype=np.float64)
            if C.shape != (k, X.shape[1]):
                raise ValueError(f"init has shape {C.shape}; expected (n_clusters, n_features) = {(k, X.shape[1])}")
            if not np.isfinite(C).all():
                raise nonfinite_error("init", C, "(the initial centres)")
            return C.copy()
        from sklearn.cluster import kmeans_plusplus

        best, best_inertia = None, np.inf
        for _ in range(self.n_init):
            S = X
            if self.init_size is not None and self.init_size < len(X):
                S = X[rng.choice(len(X), size=max(self.init_size, k), replace=False)]
            if self.init == "random":
                C = S[rng.choice(len(S), size=k, replace=False)].copy()
            else:
                C = kmeans_plusplus(S, k, random_state=int(rng.integers(2**31)))[0]
            inertia = nearest(X, C)[1].sum() if self.n_init > 1 else 0.0
            if inertia < best_inertia:
                best, best_inertia = C, inertia
        return best

    def _start(self, centers: np.ndarray) -> None:
        self._init_state(centers)
        self._pack()

    def _reassign_dying(self, X: np.ndarray, empty_before: bool) -> None:
        """scikit-learn's reassignment of the centres that attract too few rows (``_mini_batch_step``): due
        every ``10 · n_clusters`` rows, or when a centre had attracted none before this batch."""
        counts, progress = self.counts_, self._progress
        progress[P_SINCE] += len(X)
        if not (empty_before or progress[P_SINCE] >= 10 * len(counts)):
            return
        progress[P_SINCE] = 0
        if self._ratio <= 0:
            return
        dying = counts < self._ratio * counts.max()
        if dying.sum() > 0.5 * len(X):  # at most half the batch becomes new centres
            dying[np.argsort(counts, kind="stable")[int(0.5 * len(X)):]] = False
        n = int(dying.sum())
        if n == 0 or n == len(counts):  # (every centre, with a ratio > 1: no count left to give them)
            return
        self.cluster_centers_[dying] = X[self._rng.choice(len(X), size=n, replace=False)]
        counts[dying] = counts[~dying].min()
        progress[P_REASSIGNED] += n

    # ---------------------------------------------------------------------------------------- output

    def _predict_input(self, X: Any) -> np.ndarray:
        self._check_learned()
        X = self._batch(X)
        check_n_features(self, X.shape[1])
        if not np.isfinite(X).all():
            raise nonfinite_error("X", X, "")
        return X

    def predict_many(self, X: Any) -> np.ndarray:
        """The index of the nearest centre of every row (int64)."""
        return nearest(self._predict_input(X), self.cluster_centers_)[0]

    def transform_many(self, X: Any) -> np.ndarray:
        """Euclidean distances (n, k) of every row to every centre."""
        return np.sqrt(sq_distances(self._predict_input(X), self.cluster_centers_))

    def predict_one(self, x: Any) -> int:
        """The index of the centre nearest to one row (array or dict)."""
        return int(self.predict_many(self._row(x)[None, :])[0])

    def score_many(self, X: Any) -> float:
        """Minus the inertia of ``X`` (sum of squared distances to the nearest centres), as scikit-learn's
        ``score``."""
        return -float(nearest(self._predict_input(X), self.cluster_centers_)[1].sum())


def _numeric(a: Any, name: str, ndim: int, layout: str) -> np.ndarray:
    """``a`` as C-ordered float64 (the layout the kernels are compiled for) with ``ndim`` dimensions and at least
    one feature; a ValueError naming ``name`` else."""
    try:
        a = np.asarray(a, dtype=np.float64, order="C")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if a.ndim != ndim or a.shape[-1] == 0:
        raise ValueError(f"{name} must be {layout}; got shape {a.shape}")
    return a
