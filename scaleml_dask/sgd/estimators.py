"""``SGDRegressor`` and ``SGDClassifier``: scikit-learn estimators on a shared base that declares, checks
and documents their common parameters once, and hands the trainer a frozen config in ``fit``."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import dask.array as da
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from .._deployable import SGDWeights
from .._math import sigmoid
from .._repr import FittedSummaryMixin
from ..checkpoint import Checkpointer, fingerprint
from ..passes import distinct_values, shared
from ..validation import (
    SparseInputMixin,
    as_dask_array,
    check_is_fitted,
    check_n_features,
    check_predict_input,
    check_X_y,
    in_memory,
    is_sparse,
    nonfinite_error,
    restored_state_problem,
)
from ._blocks import Problem, as_block, checked_targets
from ._kernels import COMPRESSIONS, PENALTIES, SCHEDULES, init_optimizer
from ._trainer import TrainConfig, Trainer, TrainState

log = logging.getLogger("scaleml_dask.sgd")

MODES = ("sync", "local", "async")


def _positive_int(low: int = 1) -> list:
    return [Interval(Integral, low, None, closed="left")]


class _BaseSGD(SGDWeights, SparseInputMixin, FittedSummaryMixin, BaseEstimator):
    """Shared machinery of ``SGDRegressor`` and ``SGDClassifier`` (see ``scaleml_dask.sgd``)."""

    _parameter_constraints: dict = {
        "mode": [StrOptions(set(MODES))],
        "penalty": [StrOptions({p for p in PENALTIES if p is not None}), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "learning_rate": [StrOptions(set(SCHEDULES))],
        "eta0": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "batch_size": _positive_int(),
        "epochs": _positive_int(),
        "rounds": [*_positive_int(), None],
        "local_epochs": _positive_int(),
        "push_every": _positive_int(),
        "max_staleness": _positive_int(0),
        "compress": [StrOptions({c for c in COMPRESSIONS if c is not None}), None],
        "topk_fraction": [Interval(Real, 0, 1, closed="right")],
        "validation_fraction": [Interval(Real, 0, 0.5, closed="both")],
        "random_state": _positive_int(0),
        "checkpoint_dir": [str, os.PathLike, None],
        "callback": [callable, None],
    }

    def _store_parameters(self, arguments: dict[str, Any]) -> None:
        """Store the arguments of ``__init__`` (its ``locals()``) under their own names, as scikit-learn
        requires, without writing the assignments out in every subclass."""
        for name in self._get_param_names():
            setattr(self, name, arguments[name])

    def _takes_table_blocks(self) -> bool:
        """A pipeline may hand the local epochs its stored chunks as table parts (``sgd._sparse.local_kernel_table``:
        the preprocessing folded into the kernel); the other modes keep each chunk's CSR block."""
        return self.mode == "local"

    @property
    def _n_epochs(self) -> int:
        """Epochs (sync, async) or rounds (local) that ``fit`` runs."""
        if self.mode == "local" and self.rounds is not None:
            return self.rounds
        return self.epochs

    # -- targets --------------------------------------------------------------------------------------
    _labels = False  # the classifier takes labels of any sortable kind (strings, pandas categories), not numbers

    def _fit_classes(self, dy: da.Array) -> np.ndarray | None:
        return None

    def _classes_from_target(self) -> bool:
        """Whether ``fit`` makes a pass over ``y`` for its classes (``passes.distinct_values``): a pipeline then
        finds them in its own statistics pass (``passes.given_distinct``)."""
        return False

    def _first_partial_classes(self, classes: Any) -> np.ndarray | None:
        return None

    # -- fitting --------------------------------------------------------------------------------------
    def _config(self, classes: np.ndarray | None, validation_fraction: float, *, encoded: bool = False
                ) -> TrainConfig:
        """The configuration of the tasks; with ``encoded`` they are given the labels' codes (``_label_codes``) and
        check them against ``0 .. len(classes) - 1``."""
        if encoded:
            classes = np.arange(len(classes))
        problem = Problem(loss=self.loss, penalty=self.penalty, alpha=float(self.alpha),
                          fit_intercept=bool(self.fit_intercept), schedule=self.learning_rate,
                          eta0=float(self.eta0), power_t=float(self.power_t), batch_size=int(self.batch_size),
                          classes=classes, validation_fraction=float(validation_fraction),
                          seed=int(self.random_state), compress=self.compress,
                          topk_fraction=float(self.topk_fraction), ef_key=uuid.uuid4().hex)
        return TrainConfig(mode=self.mode, problem=problem, local_epochs=int(self.local_epochs),
                           push_every=int(self.push_every), max_staleness=int(self.max_staleness),
                           callback=self.callback)

    def _fresh_state(self, n_features: int, classes: np.ndarray | None) -> TrainState:
        shape = (n_features + 1, 1 if classes is None or len(classes) == 2 else len(classes))
        return TrainState(W=np.zeros(shape), opt=init_optimizer(self.learning_rate, shape),
                          rng=np.random.default_rng(self.random_state))

    def _validation(self, validation_data: Any, classes: np.ndarray | None, n_features: int) -> tuple | None:
        if validation_data is None:
            return None
        Xv, yv = check_X_y(*validation_data, accept_sparse=True)
        Xv, yv = as_block(Xv.compute()), np.asarray(yv.compute())
        if Xv.shape[1] != n_features:
            raise ValueError(f"validation_data X has {Xv.shape[1]} features; the training X has {n_features}")
        _check_finite(Xv.data if is_sparse(Xv) else Xv, "X", "in validation_data")
        return Xv, checked_targets(yv, 0, 0, classes)

    def _checkpoint_config(self, dX: da.Array, classes: np.ndarray | None) -> dict[str, Any]:
        params = {k: v for k, v in self.get_params().items() if k not in ("checkpoint_dir", "callback")}
        return {"estimator": type(self).__name__, **params, "n_samples": int(dX.shape[0]),
                "n_features": int(dX.shape[1]), "chunks": fingerprint(dX.chunks[0]),
                "classes": None if classes is None else classes.tolist()}

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None, *, validation_data: tuple[Any, Any] | None = None) -> _BaseSGD:
        """Fit from zero weights (or resume from ``checkpoint_dir``).

        ``X``, ``y``: numpy / dask / xarray / zarr / dataset path or name (then ``y`` may be omitted).
        ``validation_data``: optional ``(X_val, y_val)`` for the held-out loss; without it a seeded
        ``validation_fraction`` of every block is held out.
        """
        declared = getattr(self, "classes", None)
        encoded = _label_codes(y, None if declared is None else self._declared(declared)) if self._labels else None
        dX, dy = check_X_y(X, y if encoded is None else encoded[0], y_numeric=not self._labels, accept_sparse=True)
        if encoded is None:
            dy = _checked_labels(dy, declared)
            classes = self._fit_classes(dy)
        else:
            classes = encoded[1]
        validation = self._validation(validation_data, classes, dX.shape[1])
        config = self._config(classes, 0.0 if validation is not None else self.validation_fraction,
                              encoded=encoded is not None)
        state = self._fresh_state(dX.shape[1], classes)
        checkpointer = None
        if self.checkpoint_dir is not None:
            checkpointer = Checkpointer(self.checkpoint_dir, self._checkpoint_config(dX, classes),
                                        data=X if y is None else (X, y))
            last = checkpointer.latest()
            if last is not None:
                state = TrainState.from_checkpoint(last.arrays, last.meta)
                log.info("sgd: resuming from %s after epoch %d", self.checkpoint_dir, state.epoch)
        state = Trainer(config, state, validation, checkpointer).run(dX, dy, self._n_epochs)
        self._set_fitted(state, classes, dX.shape[1])
        return self

    def _partial_fit(self, X: Any, y: Any, classes: Any) -> _BaseSGD:
        fitted = hasattr(self, "coef_")
        if fitted:
            known = getattr(self, "classes_", None)
            if classes is not None and known is not None and not np.array_equal(np.unique(classes), known):
                raise ValueError(f"classes {np.unique(classes).tolist()} differ from the classes of the "
                                 f"earlier fit {known.tolist()}")
        else:
            known = self._first_partial_classes(classes)
        encoded = _label_codes(y, known) if known is not None else None
        dX, dy = check_X_y(X, y if encoded is None else encoded[0], y_numeric=not self._labels, accept_sparse=True)
        if fitted:
            check_n_features(self, dX.shape[1])
            state = self._state
        else:
            state = self._fresh_state(dX.shape[1], known)
        config = self._config(known, self.validation_fraction, encoded=encoded is not None)
        dy = dy if encoded is not None else _checked_labels(dy, known)
        state = Trainer(config, state, None, None).run(dX, dy, state.epoch + 1)
        self._set_fitted(state, known, dX.shape[1])
        return self

    def _set_fitted(self, st: TrainState, classes: np.ndarray | None, n_features: int) -> None:
        self._state = st
        W = st.W
        if classes is None:
            self.coef_, self.intercept_ = W[:-1, 0].copy(), float(W[-1, 0])
        else:
            self.classes_ = classes
            self.coef_, self.intercept_ = W[:-1].T.copy(), W[-1].copy()
        self.n_features_in_ = n_features
        self.loss_curve_ = np.asarray(st.curve, dtype=np.float64).reshape(-1, 4)
        self.n_iter_ = st.epoch
        self.t_ = float(st.opt["t"])
        self.samples_seen_ = st.samples
        self.bytes_exchanged_ = st.bytes
        self.n_rounds_ = st.rounds
        if self.mode == "async" and st.staleness.size:
            hist = st.staleness
            total = max(int(hist.sum()), 1)
            self.staleness_ = {"bound": self.max_staleness, "max": int(np.flatnonzero(hist).max(initial=0)),
                               "mean": float((hist * np.arange(len(hist))).sum() / total),
                               "histogram": hist.tolist(), "rejected": st.rejected}

    def _check_restored_state(self) -> str | None:
        """What is wrong with a fitted state loaded from a registry (None if nothing): the training state must
        have the shapes the compiled SGD kernels index (weights of ``n_features_in_ + 1`` rows, one column per
        output) and the optimizer memory of ``learning_rate``, so that ``partial_fit`` continues safely."""
        st = self.__dict__.get("_state")
        if st is None:
            return None
        name = type(self).__name__
        if type(st) is not TrainState or not isinstance(st.opt, dict) or not isinstance(st.curve, list):
            return f"{name} state _state is not a training state of this version"
        d = self.__dict__.get("n_features_in_")
        classes = self.__dict__.get("classes_")
        k = 1 if classes is None or (isinstance(classes, np.ndarray) and len(classes) == 2) else len(classes)
        shape = (d + 1 if type(d) is int and d >= 1 else 0, k)
        wanted = init_optimizer(self.learning_rate, (1, 1))
        layout = [("_state.W", st.W, np.float64, shape), ("_state.staleness", st.staleness, np.int64, (None,))]
        layout += [(f"_state.opt[{key!r}]", st.opt.get(key), np.float64, () if key == "t" else shape)
                   for key in wanted]
        counts = [(f"_state.{f}", getattr(st, f), 0, 2**62) for f in ("epoch", "samples", "bytes", "rounds",
                                                                      "rejected")]
        counts.append(("_state.opt keys", 0 if set(st.opt) == set(wanted) else None, 0, 0))
        ok = isinstance(st.rng, np.random.Generator) and isinstance(st.elapsed, (int, float)) and all(
            isinstance(r, (list, tuple)) and len(r) == 4 for r in st.curve)
        ok = ok and (classes is None or (isinstance(classes, np.ndarray) and classes.ndim == 1 and
                                         len(np.unique(classes)) == len(classes) >= 2))
        counts.append(("_state.rng, _state.elapsed, _state.curve, classes_", 0 if ok else None, 0, 0))
        return restored_state_problem(name, layout, counts)

    def _fitted_summary(self) -> list[tuple[str, Any]]:
        curve = self.loss_curve_
        rows = [("mode", self.mode), ("epochs", int(self.n_iter_)), ("rounds", int(self.n_rounds_)),
                ("samples seen", int(self.samples_seen_)), ("bytes exchanged", int(self.bytes_exchanged_))]
        if len(curve):
            rows += [("held-out loss, first → last", f"{curve[0, 3]:.4g} → {curve[-1, 3]:.4g}"),
                     ("loss curve points", len(curve))]
        if getattr(self, "staleness_", None):
            rows.append(("staleness max / mean", f"{self.staleness_['max']} / {self.staleness_['mean']:.2f}"))
        return rows

    # -- prediction -----------------------------------------------------------------------------------
    def _scores(self, X: Any) -> Any:
        """Linear scores (n, n_outputs): numpy for in-memory input, dask otherwise."""
        check_is_fitted(self, "coef_")
        score = self._scorer()  # float64, or the compressed weights as stored (int8 codes, pruned non-zeros)
        if not in_memory(X):
            dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
            check_n_features(self, dX.shape[1])
            return dX.map_blocks(_decision_block, shared(score), dtype=np.float64,  # weights once per worker
                                 chunks=(dX.chunks[0], (self._state.W.shape[1],)), meta=np.empty((0, 0)))
        return score(check_predict_input(self, X, accept_sparse=True))



def _check_finite(a: np.ndarray, name: str, where: str) -> None:
    if not np.isfinite(a).all():
        raise nonfinite_error(name, a, where)


def _sorted_labels(values: np.ndarray, name: str) -> np.ndarray:
    """The sorted distinct labels of ``values``: numbers, or strings (fixed-width, also from the object arrays of
    pandas); a missing label (NaN, None) or strings mixed with other values are refused, naming them."""
    flat = values.ravel()
    if flat.dtype == object:
        others = [v for v in flat.tolist() if not isinstance(v, str)]
        if others and len(others) < len(flat):
            raise ValueError(f"{name} mixes string labels with {others[:3]}; labels must be all strings or all "
                             "numbers, none missing")
        flat = flat.astype(str) if not others else np.array(others)
    if flat.dtype.kind in "fc" and np.isnan(flat).any():
        raise ValueError(f"{name} contains NaN labels")
    return np.unique(flat)


def _label_codes(y: Any, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """In-memory string labels (numpy, a list, pandas objects or categories) as int64 codes into their sorted labels
    (or the sorted ``classes``), and those labels: encoded here once, so that the tasks carry integers, not Python
    objects, and the fit is decoded only at its edges (``classes_``, ``predict``). None for any other ``y`` (dask,
    numbers) or for labels the checks in the tasks name by chunk and row (missing, mixed, not among ``classes``)."""
    import pandas as pd

    if y is None or not in_memory(y) or type(y).__module__.startswith("scipy.sparse"):
        return None
    values = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    if values.ndim != 1 or values.dtype.kind not in "OU" or (
            values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) != "string"):
        return None
    values = values.astype(str)
    labels = np.unique(values) if classes is None else classes
    if labels.dtype.kind != "U" or len(labels) < 2:
        return None
    codes = np.searchsorted(labels, values)
    if not np.array_equal(labels[np.minimum(codes, len(labels) - 1)], values):
        return None
    return codes.astype(np.int64), labels


#: pandas' name of the kind of an object array -> whether its labels are strings (absent: not labels).
_LABEL_KINDS = {"string": True, "integer": False, "floating": False, "mixed-integer-float": False, "boolean": False}


def _checked_labels(dy: da.Array, classes: Any) -> da.Array:
    """Labels in an object array (pandas gives strings so) checked chunk by chunk as they are read: none missing,
    all strings or all numbers, of the kind of ``classes`` if known — else an error naming the chunk and row. Labels
    of another dtype are checked against ``classes`` by their dtype."""
    strings = None if classes is None else np.asarray(classes).dtype.kind in "UO"
    if dy.dtype != object:
        if strings is not None and strings != (dy.dtype.kind in "US"):
            raise ValueError(f"y holds labels of dtype {dy.dtype}, not of the kind of the classes {list(classes)}")
        return dy
    return dy.map_blocks(_check_label_block, strings, dtype=object, meta=np.empty((0,), object))


def _check_label_block(y: np.ndarray, strings: bool | None, block_info: Any = None) -> np.ndarray:
    import pandas as pd

    kind = _LABEL_KINDS.get(pd.api.types.infer_dtype(y, skipna=False))
    if kind is not None and strings in (None, kind):
        return y
    if kind is not None:
        i, what = 0, f"{'string' if kind else 'number'} labels where the classes are {'numbers' if kind else 'strings'}"
    elif pd.isna(y).any():
        i, what = int(np.argmax(pd.isna(y))), "a missing label (None / NaN)"
    else:
        i = int(np.argmax([isinstance(v, str) != isinstance(y[0], str) for v in y]))
        what = f"strings mixed with other labels ({y[0]!r}, {y[i]!r})"
    info = block_info[0] if block_info else {"chunk-location": (0,), "array-location": [(0, len(y))]}
    row = info["array-location"][0][0] + i
    raise ValueError(f"y holds {what} in chunk {info['chunk-location'][0]} (row {row}); labels must be all "
                     "strings or all numbers, none missing")


def _decision_block(X: np.ndarray, score: Any) -> np.ndarray:
    return score(X)


def _take(index: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return classes[index]


_PARAMETERS = """
    Parameters
    ----------
    mode : "sync" | "local" | "async"
        How the workers cooperate (see ``scaleml_dask.sgd``). ``sync`` and ``async`` need a
        ``distributed`` Client.
    loss : {losses}
    penalty : "l2" | "l1" | None; alpha : float
        Regularisation ``alpha * (0.5 ||coef||² | ||coef||₁)`` added to the mean loss (not the intercept).
    fit_intercept : bool
        Learn the intercept (else it stays 0).
    learning_rate : "constant" | "invscaling" | "adagrad" | "adam"; eta0, power_t : float
        Step ``eta0``, ``eta0 / t**power_t``, AdaGrad or Adam (Kingma & Ba) with base step ``eta0``. On sparse
        input (hashed text) a step costs O(non-zeros of its rows) with ``constant`` / ``invscaling`` and the L2
        penalty or none; AdaGrad, Adam and L1 change every coefficient at every step, O(n_features) a step.
    batch_size : int
        Rows per mini-batch of one block (sync: every partition contributes one per step).
    epochs : int
        Passes over the data (sync, async; and local when ``rounds`` is None).
    rounds, local_epochs : int
        Local mode: averaging rounds, and epochs each partition runs per round.
    push_every, max_staleness : int
        Async mode: mini-batch gradients per push, and how many versions behind a push may be.
    compress : None | "float16" | "topk"; topk_fraction : float
        Compression of what workers send back, with error feedback.
    validation_fraction : float
        Seeded fraction of every block held out for the held-out loss (ignored with ``validation_data``). In
        ``mode="local"`` the held-out rows stay in the memory of the workers that read them, which send back
        their loss (two numbers per block) after every round; sync and async bring them to the client.
    random_state : int
        Seed of the mini-batch order and the held-out split.
    checkpoint_dir : path or None
        Write a checkpoint after every epoch (round); resume from it (also within an async fit whose
        parameter server was lost).
    callback : callable(info: dict) -> bool or None
        Called after every epoch (round) with the last ``loss_curve_`` row, ``epoch``, ``rounds`` and
        ``weights`` (coefficients with the intercept as last row); returning True stops.{extra}

    Attributes
    ----------
    coef_, intercept_ : fitted weights (numpy).
    loss_curve_ : array (n_rows, 4): wall time s, samples seen, bytes exchanged, held-out loss.
    n_iter_ : epochs (rounds) done. n_rounds_ : communication rounds (sync steps, local rounds, async
        accepted pushes). samples_seen_, bytes_exchanged_ : totals. staleness_ : async statistics.
    """


class SGDRegressor(RegressorMixin, _BaseSGD):
    __doc__ = """Linear regression by distributed mini-batch SGD on the squared loss.
    """ + _PARAMETERS.format(losses='"squared"', extra="") + """
    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((2000, 3)); y = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    >>> m = SGDRegressor(mode="local", rounds=8, batch_size=50, eta0=0.05, alpha=0.0).fit(X, y)
    >>> np.round(m.coef_, 1).tolist(), round(m.intercept_, 1)
    ([1.0, -2.0, 0.5], 3.0)
    """

    _parameter_constraints: dict = {**_BaseSGD._parameter_constraints, "loss": [StrOptions({"squared"})]}

    def __init__(self, *, mode: str = "sync", loss: str = "squared", penalty: str | None = "l2",
                 alpha: float = 1e-4, fit_intercept: bool = True, learning_rate: str = "adam",
                 eta0: float = 0.01, power_t: float = 0.5, batch_size: int = 1000, epochs: int = 5,
                 rounds: int | None = None, local_epochs: int = 1, push_every: int = 4,
                 max_staleness: int = 8, compress: str | None = None, topk_fraction: float = 0.1,
                 validation_fraction: float = 0.01, random_state: int = 0, checkpoint_dir: str | None = None,
                 callback: Callable[[dict], bool | None] | None = None) -> None:
        self._store_parameters(locals())

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any) -> SGDRegressor:
        """One more epoch (local: one round) on the blocks of ``X``, ``y``, from the current state."""
        return self._partial_fit(X, y, None)

    def predict(self, X: Any) -> Any:
        """Predicted values: numpy for numpy input, a dask array for dask / xarray / zarr input."""
        return self._scores(X)[:, 0]


class SGDClassifier(ClassifierMixin, _BaseSGD):
    __doc__ = """Linear classifier (logistic or hinge loss; one-vs-rest for more than two classes) by
    distributed mini-batch SGD.
    """ + _PARAMETERS.format(losses='"log_loss" | "hinge"', extra="""
    classes : array-like or None
        The declared classes; labels outside them raise an error naming them. Otherwise taken from ``y``
        (``fit``) or the ``classes`` argument of the first ``partial_fit``.""") + """
    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((4000, 2)); y = (X[:, 0] - X[:, 1] > 0).astype(int)
    >>> clf = SGDClassifier(mode="local", rounds=3, batch_size=100, eta0=0.05).fit(X, y)
    >>> clf.classes_.tolist(), bool(clf.score(X, y) > 0.97)
    ([0, 1], True)
    """

    _parameter_constraints: dict = {**_BaseSGD._parameter_constraints, "loss": [StrOptions({"log_loss", "hinge"})],
                                    "classes": ["array-like", None]}

    def __init__(self, *, mode: str = "sync", loss: str = "log_loss", penalty: str | None = "l2",
                 alpha: float = 1e-4, fit_intercept: bool = True, learning_rate: str = "adam",
                 eta0: float = 0.01, power_t: float = 0.5, batch_size: int = 1000, epochs: int = 5,
                 rounds: int | None = None, local_epochs: int = 1, push_every: int = 4,
                 max_staleness: int = 8, compress: str | None = None, topk_fraction: float = 0.1,
                 validation_fraction: float = 0.01, random_state: int = 0, checkpoint_dir: str | None = None,
                 callback: Callable[[dict], bool | None] | None = None, classes: Any = None) -> None:
        self._store_parameters(locals())

    _labels = True

    @staticmethod
    def _declared(classes: Any) -> np.ndarray:
        declared = _sorted_labels(np.asarray(classes), "classes")
        if declared.size < 2:
            raise ValueError(f"classes must hold at least two labels; got {declared.tolist()}")
        return declared

    def _classes_from_target(self) -> bool:
        return self.classes is None

    def _fit_classes(self, dy: da.Array) -> np.ndarray:
        if self.classes is not None:
            return self._declared(self.classes)
        found = _sorted_labels(distinct_values(dy), "y")
        if found.size < 2:
            raise ValueError(f"y has 1 class ({found.tolist()}); a classifier needs at least two")
        if np.issubdtype(found.dtype, np.floating) and not np.all(found == np.round(found)):
            example = found[found != np.round(found)][0]
            raise ValueError(f"Unknown label type: y holds continuous values (e.g. {example!r}); SGDClassifier "
                             "needs class labels (use SGDRegressor for a continuous target)")
        return found

    def _first_partial_classes(self, classes: Any) -> np.ndarray:
        classes = classes if classes is not None else self.classes
        if classes is None:
            raise ValueError("classes must be given on the first call to partial_fit (or in the constructor)")
        return self._declared(classes)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> SGDClassifier:
        """One more epoch (local: one round) on the blocks of ``X``, ``y``, continuing from the current state.

        ``classes`` is required on the first call unless declared in the constructor.
        """
        return self._partial_fit(X, y, classes)

    def decision_function(self, X: Any) -> Any:
        """Scores: shape (n,) for two classes, (n, n_classes) otherwise."""
        S = self._scores(X)
        return S[:, 0] if S.shape[1] == 1 else S

    def predict(self, X: Any) -> Any:
        """Predicted labels (numpy for numpy input, dask otherwise)."""
        S = self._scores(X)
        idx = (S[:, 0] > 0).astype(np.intp) if S.shape[1] == 1 else S.argmax(axis=1)
        if isinstance(idx, da.Array):
            return idx.map_blocks(_take, self.classes_, dtype=self.classes_.dtype)
        return self.classes_[idx]

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities (log_loss only): the sigmoid for two classes; one-vs-rest sigmoids
        normalised to sum to one otherwise, as scikit-learn does."""
        if self.loss != "log_loss":
            raise AttributeError(f"predict_proba is not available for loss={self.loss!r}; use 'log_loss'")
        S = self._scores(X)
        P = sigmoid(S)
        if S.shape[1] == 1:
            xp = da if isinstance(S, da.Array) else np
            return xp.concatenate([1.0 - P, P], axis=1)
        return P / P.sum(axis=1, keepdims=True)
