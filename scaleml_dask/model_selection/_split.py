"""Splits without copies: ``KFold``, ``StratifiedKFold``, ``ShuffleSplit``, ``StratifiedShuffleSplit`` and
``train_test_split``, each assigning every row by a seeded permutation of its global index (``_folds``).

Nothing is shuffled, copied or written: a split is a *plan* (``SplitPlan``) — a few numbers and keys — that
tells, for any block of rows, which are training rows and which are test rows of each split
(``memberships``). A pass over the data can so feed every split at once (the fused search and
``cross_validate`` do), and a split's rows as an array (``select_rows``) are a ``passes.derived`` selection
made inside the task that reads the chunk. The assignment depends only on the row's index, ``n`` and the seed
(stratified splits: also on the labels of the rows before it), so it is the same whatever the chunking and the
number of workers, and the part sizes are exactly those of scikit-learn's splitters.

``shuffle=False`` (``KFold``, ``StratifiedKFold``) gives contiguous folds, as scikit-learn's do; the default
here is ``shuffle=True`` because stored data are often in time or label order. ``random_state=None`` draws a
seed each time a plan is made (as scikit-learn draws a permutation in each ``split``); give an int for splits
that repeat.

>>> import numpy as np
>>> cv = KFold(3, random_state=0)
>>> [len(test) for _, test in cv.split(np.zeros((10, 1)))]
[4, 3, 3]
>>> a = np.concatenate([test for _, test in cv.split(np.zeros((10, 1)))])
>>> sorted(a.tolist()) == list(range(10))
True
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from .._folds import NONE, TEST, TRAIN, Permutation, fold_bounds

__all__ = ["KFold", "ShuffleSplit", "SplitPlan", "StratifiedKFold", "StratifiedShuffleSplit", "check_cv",
           "class_counts", "select_rows", "train_test_split"]


# ------------------------------------------------------------------------------------------------------
# plans: what each row is in each split
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SplitPlan:
    """The resolved splits of ``n`` rows (small; pickled into every task that needs it).

    ``memberships(rows, y)`` gives, for a block of consecutive global row indices ``rows`` (and their labels,
    for stratified plans), an int8 array ``(n_splits, len(rows))``: ``TRAIN`` (1), ``TEST`` (2) or ``NONE``
    (0) per split and row.
    """

    n: int
    n_splits: int

    needs_y = False

    def memberships(self, rows: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def chunk_counts(self, chunks: Sequence[int], y: Any = None) -> np.ndarray:
        """Rows per (chunk, split, membership code) for this chunking: ``(n_chunks, n_splits, 3)`` (``y``: the
        labels, chunked so, where the plan needs them)."""
        if self.needs_y:
            return _counts_pass(self, y)
        starts = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
        out = np.zeros((len(chunks), self.n_splits, 3), dtype=np.int64)
        for i in range(len(chunks)):
            M = self.memberships(np.arange(starts[i], starts[i + 1]))
            for code in (NONE, TRAIN, TEST):
                out[i, :, code] = (M == code).sum(axis=1)
        return out

    def patterns(self, rows: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The rows grouped by their membership in every split: ``(index, patterns)`` with ``patterns[p]`` the
        memberships ``(n_splits,)`` shared by the rows whose ``index`` is ``p``."""
        M = self.memberships(rows, y)
        code = np.zeros(M.shape[1], dtype=np.int64)
        for s in range(M.shape[0]):
            code = code * 3 + M[s]
        uniq, index = np.unique(code, return_inverse=True)
        first = np.zeros(len(uniq), dtype=np.int64)
        first[index[::-1]] = np.arange(len(index))[::-1]
        return index.astype(np.int64), M[:, first].T.copy()

    def fold_rule(self) -> tuple[Permutation, np.ndarray] | None:
        """``(perm, bounds)`` when a row's pattern is its test fold ``perm.folds(rows, bounds)`` and the patterns
        are the same for every block (k folds): a kernel can then compute it row by row; None otherwise."""
        return None


class KeptArrays:
    """Arrays a process keeps between the passes of a search, least recently used first out past ``budget``
    bytes (thread-safe): what a pass derives from a chunk the same way each time it reads the chunk."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._arrays: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Any) -> np.ndarray:
        """The array kept under ``key``, or ``make()`` kept under it."""
        with self._lock:
            a = self._arrays.get(key)
            if a is not None:
                self._arrays.move_to_end(key)
                return a
        a = make()
        with self._lock:
            self._arrays[key] = a
            while sum(v.nbytes for v in self._arrays.values()) > self.budget and len(self._arrays) > 1:
                self._arrays.popitem(last=False)
        return a


#: Chunk memberships a process keeps between passes (``chunk_memberships``), at most 64 MiB.
_MEMBERSHIPS = KeptArrays(64 * 2**20)


def chunk_memberships(plan: SplitPlan, row_start: int, y: np.ndarray) -> np.ndarray:
    """``plan.memberships`` of the chunk of ``len(y)`` rows at ``row_start`` (read-only), kept by the process
    (``_MEMBERSHIPS``): a search reads the same chunks pass after pass, and a chunk's memberships are the same
    each time — they depend on the plan (its token), the rows and, for a stratified plan, the labels the plan was
    made from."""
    from dask.base import tokenize

    def make() -> np.ndarray:
        M = plan.memberships(np.arange(row_start, row_start + len(y)), y)
        M.flags.writeable = False
        return M

    return _MEMBERSHIPS.get((tokenize(plan), int(row_start), len(y)), make)


@dataclass(frozen=True, eq=False)
class _KFoldPlan(SplitPlan):
    perm: Permutation = field(default=None)
    bounds: np.ndarray = field(default=None)

    def memberships(self, rows: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        f = self.perm.folds(rows, self.bounds)
        return np.where(f[None, :] == np.arange(self.n_splits)[:, None], TEST, TRAIN).astype(np.int8)

    def patterns(self, rows: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        k = self.n_splits  # the pattern of a row is its test fold
        return self.perm.folds(rows, self.bounds), np.where(np.eye(k, dtype=bool), TEST, TRAIN).astype(np.int8)

    def fold_rule(self) -> tuple[Permutation, np.ndarray]:
        return self.perm, self.bounds

    def chunk_counts(self, chunks: Sequence[int], y: Any = None) -> np.ndarray:
        """Each chunk's test rows per fold counted straight from their folds (``Permutation.folds``: no
        memberships), the chunks in threads (the kernels release the GIL): a search plans its rounds from these
        counts before its first pass, while the workers wait."""
        from concurrent.futures import ThreadPoolExecutor

        starts = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
        out = np.zeros((len(chunks), self.n_splits, 3), dtype=np.int64)

        def count(i: int) -> None:
            tests = np.bincount(self.perm.folds(np.arange(starts[i], starts[i + 1]), self.bounds),
                                minlength=self.n_splits)
            out[i, :, TEST] = tests
            out[i, :, TRAIN] = starts[i + 1] - starts[i] - tests

        if starts[-1] < 2**20:  # a thread pool costs more than it saves
            for i in range(len(chunks)):
                count(i)
        else:
            with ThreadPoolExecutor(min(len(chunks), 4)) as pool:
                list(pool.map(count, range(len(chunks))))
        return out


@dataclass(frozen=True, eq=False)
class _ShufflePlan(SplitPlan):
    perms: tuple = ()
    n_test: int = 0
    n_train: int = 0

    def memberships(self, rows: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        M = np.empty((self.n_splits, len(rows)), dtype=np.int8)
        for s, perm in enumerate(self.perms):
            p = perm(rows)
            M[s] = np.where(p < self.n_test, TEST, np.where(p < self.n_test + self.n_train, TRAIN, NONE))
        return M


@dataclass(frozen=True, eq=False)
class _StratifiedPlan(SplitPlan):
    """Per class ``c`` its rows are ranked in row order (rank = rows of class ``c`` before the chunk, from one
    pass over ``y``, plus the rank inside the chunk), and the rank goes through the class's own permutation;
    folds (or test / train sizes) are then cut per class, so every class is spread over the folds as evenly as
    scikit-learn's stratified splitters spread it."""

    classes: np.ndarray = field(default=None)
    starts: np.ndarray = field(default=None)  # (n_chunks + 1,) row starts of the planned chunking
    offsets: np.ndarray = field(default=None)  # (n_chunks + 1, n_classes) rows of each class before each chunk
    perms: tuple = ()  # [split][class] (shuffle plans) or [class] (k-fold)
    bounds: tuple = ()  # k-fold: per class the fold bounds; shuffle: per class (n_test_c, n_train_c)
    kfold: bool = True

    needs_y = True

    def _ranks(self, rows: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        chunk = int(np.searchsorted(self.starts, rows[0], side="right")) - 1
        if self.starts[chunk] != rows[0] or len(rows) != self.starts[chunk + 1] - rows[0]:
            raise ValueError(f"a stratified split plan was made for other chunks: rows {rows[0]}-{rows[-1]} are not "
                             "one of its chunks")
        cls = encode_labels(y, self.classes)
        counts = np.bincount(cls, minlength=len(self.classes))
        order = np.argsort(cls, kind="stable")
        within = np.arange(len(cls)) - np.repeat(np.cumsum(counts) - counts, counts)
        ranks = np.empty(len(cls), dtype=np.int64)
        ranks[order] = within + self.offsets[chunk][cls[order]]
        return cls, ranks

    def memberships(self, rows: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        if y is None:
            raise ValueError("a stratified split needs the labels y of the block")
        cls, ranks = self._ranks(np.asarray(rows), np.asarray(y).ravel())
        M = np.empty((self.n_splits, len(cls)), dtype=np.int8)
        for c in range(len(self.classes)):
            m = cls == c
            if not m.any():
                continue
            M[:, m] = self._of_class(c, ranks[m])
        return M

    def _of_class(self, c: int, ranks: np.ndarray) -> np.ndarray:
        if self.kfold:
            f = self.perms[c].folds(ranks, self.bounds[c])
            return np.where(f[None, :] == np.arange(self.n_splits)[:, None], TEST, TRAIN)
        n_test, n_train = self.bounds[c]
        out = np.empty((self.n_splits, len(ranks)), dtype=np.int8)
        for s in range(self.n_splits):
            p = self.perms[s][c](ranks)
            out[s] = np.where(p < n_test, TEST, np.where(p < n_test + n_train, TRAIN, NONE))
        return out

    def chunk_counts(self, chunks: Sequence[int], y: Any = None) -> np.ndarray:
        if tuple(np.diff(self.starts)) != tuple(int(c) for c in chunks):
            raise ValueError("a stratified split plan counts rows for the chunking it was made for")
        out = np.zeros((len(chunks), self.n_splits, 3), dtype=np.int64)
        for i in range(len(chunks)):  # the class's rows in chunk i have the ranks offsets[i, c] .. offsets[i+1, c]
            for c in range(len(self.classes)):
                ranks = np.arange(self.offsets[i, c], self.offsets[i + 1, c])
                if len(ranks):
                    M = self._of_class(c, ranks)
                    for code in (NONE, TRAIN, TEST):
                        out[i, :, code] += (M == code).sum(axis=1)
        return out


@dataclass(frozen=True, eq=False)
class _IndexPlan(SplitPlan):
    """Splits given as index arrays (an iterable of ``(train, test)``, or another library's splitter): a dense
    membership table, for data small enough to hold one int8 per row and split."""

    table: np.ndarray = field(default=None)  # (n_splits, n) int8

    def memberships(self, rows: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        return self.table[:, np.asarray(rows)]


@dataclass(frozen=True, eq=False)
class _HeadTailPlan(SplitPlan):
    """No shuffle: the first ``n_train`` rows train, the last ``n_test`` test (``train_test_split(shuffle=False)``)."""

    n_train: int = 0
    n_test: int = 0

    def memberships(self, rows: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        rows = np.asarray(rows)
        return np.where(rows >= self.n - self.n_test, TEST, np.where(rows < self.n_train, TRAIN, NONE)
                        ).astype(np.int8)[None, :]


@dataclass(frozen=True, eq=False)
class _SubsamplePlan(SplitPlan):
    """``base`` restricted to a seeded subsample of ``keep`` rows (the others are in no part of any split): the
    n_samples resource of successive halving on the generic path, as scikit-learn's ``_SubsampleMetaSplitter``."""

    base: SplitPlan = field(default=None)
    perm: Permutation = field(default=None)
    keep: int = 0

    @property
    def needs_y(self) -> bool:  # type: ignore[override]
        return self.base.needs_y

    @classmethod
    def of(cls, base: SplitPlan, keep: int, random_state: Any) -> SplitPlan:
        if keep >= base.n:
            return base
        return cls(base.n, base.n_splits, base=base, perm=Permutation.seeded(base.n, _seed(random_state), 0x5AB),
                   keep=int(keep))

    def memberships(self, rows: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        M = self.base.memberships(rows, y)
        M[:, self.perm(rows) >= self.keep] = NONE
        return M


def _counts_of_block(y: np.ndarray, *, chunk_index: int, row_start: int, plan: SplitPlan) -> np.ndarray:
    M = plan.memberships(np.arange(row_start, row_start + len(y)), np.asarray(y).ravel())
    return np.stack([(M == code).sum(axis=1) for code in (NONE, TRAIN, TEST)], axis=1)


def _counts_pass(plan: SplitPlan, y: Any) -> np.ndarray:
    """``chunk_counts`` of a plan that needs the labels: one pass over ``y`` (numpy: its rows as one chunk)."""
    if y is None:
        raise ValueError("this split plan needs the labels y to count its rows")
    if not hasattr(y, "dask"):
        return _counts_of_block(np.asarray(y), chunk_index=0, row_start=0, plan=plan)[None]
    import dask

    from ..passes import map_row_chunks

    return np.stack(dask.compute(*map_row_chunks(_counts_of_block, y, plan=plan)))


def encode_labels(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of each label in the sorted ``classes``; a ValueError naming labels that are not among them."""
    idx = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
    bad = classes[idx] != y
    if bad.any():
        raise ValueError(f"y has labels {np.unique(y[bad])[:10].tolist()} that are not among the classes "
                         f"{classes[:20].tolist()} the split was planned for")
    return idx.astype(np.int64)


# ------------------------------------------------------------------------------------------------------
# the splitters
# ------------------------------------------------------------------------------------------------------


def _seed(random_state: Any) -> int:
    """An int seed: the int itself, one drawn from a RandomState / Generator, or fresh entropy for None."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(random_state, Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    raise ValueError(f"random_state must be None, an int, a RandomState or a Generator; got {random_state!r}")


class _Splitter:
    """What the splitters share: scikit-learn's ``split`` / ``get_n_splits`` (index arrays, for small data and
    for other libraries) over the plan (``make_plan``) that the passes here use."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return int(self.n_splits)

    def make_plan(self, n: int, chunks: Sequence[int] | None = None, y: Any = None) -> SplitPlan:
        """The plan of this splitter for ``n`` rows (stratified: labels ``y`` chunked as ``chunks``)."""
        raise NotImplementedError

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(train, test)`` index arrays of each split, as scikit-learn's splitters yield them."""
        n = _n_rows(X)
        yv = None if y is None else np.asarray(y.compute() if hasattr(y, "compute") else y).ravel()
        plan = self.make_plan(n, None if yv is None else (n,), yv)
        M = plan.memberships(np.arange(n), yv)
        for s in range(plan.n_splits):
            yield np.flatnonzero(M[s] == TRAIN), np.flatnonzero(M[s] == TEST)


class KFold(_Splitter):
    """K folds of (almost) equal size; with ``shuffle`` (the default here) each row's fold comes from a seeded
    permutation of its index, else the folds are contiguous (scikit-learn's ``KFold(shuffle=False)``).

    >>> [t.tolist() for _, t in KFold(2, shuffle=False).split(np.zeros((5, 1)))]
    [[0, 1, 2], [3, 4]]
    """

    def __init__(self, n_splits: int = 5, *, shuffle: bool = True, random_state: Any = None) -> None:
        if not isinstance(n_splits, Integral) or n_splits < 2:
            raise ValueError(f"n_splits must be an int of at least 2; got {n_splits!r}")
        self.n_splits = int(n_splits)
        self.shuffle = shuffle
        self.random_state = random_state

    def make_plan(self, n: int, chunks: Sequence[int] | None = None, y: Any = None) -> SplitPlan:
        if n < self.n_splits:
            raise ValueError(f"Cannot have number of splits n_splits={self.n_splits} greater than the number of "
                             f"samples: n_samples={n}.")
        seed = _seed(self.random_state) if self.shuffle else None
        return _KFoldPlan(n, self.n_splits, perm=Permutation.seeded(n, seed), bounds=fold_bounds(n, self.n_splits))


class StratifiedKFold(_Splitter):
    """K folds that spread every class evenly: per class, its rows (in row order) go through a seeded permutation
    and are cut into ``n_splits`` ranges whose sizes differ by at most one; the classes' one-larger ranges are
    rotated over the folds, so the fold sizes differ by at most one too (scikit-learn's guarantees).

    >>> y = np.array([0] * 6 + [1] * 3)
    >>> [np.bincount(y[t]).tolist() for _, t in StratifiedKFold(3, random_state=0).split(np.zeros((9, 1)), y)]
    [[2, 1], [2, 1], [2, 1]]
    """

    def __init__(self, n_splits: int = 5, *, shuffle: bool = True, random_state: Any = None) -> None:
        KFold.__init__(self, n_splits, shuffle=shuffle, random_state=random_state)

    def make_plan(self, n: int, chunks: Sequence[int] | None = None, y: Any = None) -> SplitPlan:
        classes, counts, offsets, starts = _class_table(n, chunks, y, "StratifiedKFold")
        least = int(counts.sum(axis=0).min())
        if counts.sum(axis=0).max() < self.n_splits:
            raise ValueError(f"n_splits={self.n_splits} cannot be greater than the number of members in each class")
        if least < self.n_splits:
            import warnings

            warnings.warn(f"The least populated class in y has only {least} members, which is less than "
                          f"n_splits={self.n_splits}.", UserWarning, stacklevel=3)
        seed = _seed(self.random_state) if self.shuffle else None
        totals = counts.sum(axis=0)
        rotate = np.concatenate([[0], np.cumsum(totals % self.n_splits)[:-1]]) % self.n_splits
        perms = tuple(Permutation.seeded(int(t), seed, c) for c, t in enumerate(totals))
        bounds = tuple(fold_bounds(int(t), self.n_splits, int(r)) for t, r in zip(totals, rotate))
        return _StratifiedPlan(n, self.n_splits, classes=classes, starts=starts, offsets=offsets, perms=perms,
                               bounds=bounds, kfold=True)


def _test_train_sizes(n: int, test_size: Any, train_size: Any, default_test: float = 0.25) -> tuple[int, int]:
    """scikit-learn's rule (``_validate_shuffle_split``): floats are fractions (test rounded up, train down),
    ints are counts; the one not given is the rest."""
    if test_size is None and train_size is None:
        test_size = default_test
    for name, v in (("test_size", test_size), ("train_size", train_size)):
        if v is None:
            continue
        if isinstance(v, Real) and not isinstance(v, Integral) and not 0 < v < 1:
            raise ValueError(f"{name}={v} should be either positive and smaller than the number of samples {n} "
                             "or a float in the (0, 1) range")
        if isinstance(v, Integral) and not 0 < v < n:
            raise ValueError(f"{name}={v} should be either positive and smaller than the number of samples {n} "
                             "or a float in the (0, 1) range")
    n_test = (math.ceil(test_size * n) if isinstance(test_size, Real) and not isinstance(test_size, Integral)
              else None if test_size is None else int(test_size))
    n_train = (math.floor(train_size * n) if isinstance(train_size, Real) and not isinstance(train_size, Integral)
               else None if train_size is None else int(train_size))
    if n_test is None:
        n_test = n - n_train
    if n_train is None:
        n_train = n - n_test
    if n_train + n_test > n:
        raise ValueError(f"The sum of train_size and test_size = {n_train + n_test}, should be smaller than the "
                         f"number of samples {n}. Reduce test_size and/or train_size.")
    if n_train == 0:
        raise ValueError(f"With n_samples={n}, test_size={test_size} and train_size={train_size}, the resulting "
                         "train set will be empty. Adjust any of the aforementioned parameters.")
    return n_test, n_train


class ShuffleSplit(_Splitter):
    """``n_splits`` independent random train / test splits of exactly scikit-learn's sizes (``test_size`` and
    ``train_size`` as fractions or counts; rows in neither part when they do not add up to all rows).

    >>> [len(t) for _, t in ShuffleSplit(3, test_size=0.2, random_state=0).split(np.zeros((10, 1)))]
    [2, 2, 2]
    """

    _default_test = 0.1

    def __init__(self, n_splits: int = 10, *, test_size: Any = None, train_size: Any = None,
                 random_state: Any = None) -> None:
        if not isinstance(n_splits, Integral) or n_splits < 1:
            raise ValueError(f"n_splits must be a positive int; got {n_splits!r}")
        self.n_splits = int(n_splits)
        self.test_size = test_size
        self.train_size = train_size
        self.random_state = random_state

    def make_plan(self, n: int, chunks: Sequence[int] | None = None, y: Any = None) -> SplitPlan:
        n_test, n_train = _test_train_sizes(n, self.test_size, self.train_size, self._default_test)
        seed = _seed(self.random_state)
        perms = tuple(Permutation.seeded(n, seed, s) for s in range(self.n_splits))
        return _ShufflePlan(n, self.n_splits, perms=perms, n_test=n_test, n_train=n_train)


class StratifiedShuffleSplit(ShuffleSplit):
    """``ShuffleSplit`` that keeps the class proportions: the test (and train) count of each class is its share
    of the total, the remainders given to the classes with the largest fractional parts (as scikit-learn's
    ``_approximate_mode``, ties to the lower class).

    >>> y = np.array([0] * 8 + [1] * 4)
    >>> [np.bincount(y[t]).tolist() for _, t in StratifiedShuffleSplit(2, test_size=0.25, random_state=0)
    ...  .split(np.zeros((12, 1)), y)]
    [[2, 1], [2, 1]]
    """

    def make_plan(self, n: int, chunks: Sequence[int] | None = None, y: Any = None) -> SplitPlan:
        classes, counts, offsets, starts = _class_table(n, chunks, y, "StratifiedShuffleSplit")
        n_test, n_train = _test_train_sizes(n, self.test_size, self.train_size, self._default_test)
        totals = counts.sum(axis=0)
        if totals.min() < 2:
            raise ValueError("The least populated class in y has only 1 member, which is too few. The minimum "
                             "number of groups for any class cannot be less than 2.")
        test_c = _apportion(n_test, totals)
        train_c = _apportion(n_train, totals - test_c)
        seed = _seed(self.random_state)
        perms = tuple(tuple(Permutation.seeded(int(t), seed, s, c) for c, t in enumerate(totals))
                      for s in range(self.n_splits))
        return _StratifiedPlan(n, self.n_splits, classes=classes, starts=starts, offsets=offsets, perms=perms,
                               bounds=tuple(zip(test_c.tolist(), train_c.tolist())), kfold=False)


def _apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``weights`` (integers, largest remainders first, ties to the lower
    index), never more than a weight."""
    share = total * weights / weights.sum()
    out = np.floor(share).astype(np.int64)
    order = np.lexsort((np.arange(len(weights)), -(share - out)))
    for i in order[: total - out.sum()]:
        out[i] += 1
    return np.minimum(out, weights)


def class_counts(y: Any, chunks: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sorted labels of ``y`` and their count in each row chunk ``(n_chunks, n_classes)``: one pass over
    ``y`` (numpy or dask; a dask ``y`` counts by its own chunks)."""
    if hasattr(y, "dask"):
        import dask

        from ..passes import map_row_chunks

        parts = dask.compute(*map_row_chunks(_unique_counts, y))
    else:
        y = np.asarray(y).ravel()
        bounds = np.cumsum([0, *(chunks or [len(y)])])
        parts = [_unique_counts(y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    classes = np.unique(np.concatenate([p[0] for p in parts]))
    if classes.dtype.kind == "f" and np.isnan(classes).any():
        raise ValueError("y contains NaN labels")
    table = np.zeros((len(parts), len(classes)), dtype=np.int64)
    for i, (labels, counts) in enumerate(parts):
        table[i, np.searchsorted(classes, labels)] = counts
    return classes, table


def _unique_counts(y: np.ndarray, *, chunk_index: int = 0, row_start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return np.unique(np.asarray(y).ravel(), return_counts=True)


def _class_table(n: int, chunks: Sequence[int] | None, y: Any, who: str) -> tuple:
    if y is None:
        raise ValueError(f"{who} needs the labels y")
    chunks = tuple(int(c) for c in (y.chunks[0] if hasattr(y, "chunks") and hasattr(y, "dask") else chunks or (n,)))
    classes, counts = class_counts(y, chunks)
    if counts.sum() != n:
        raise ValueError(f"y has {counts.sum()} labels for {n} rows")
    offsets = np.vstack([np.zeros((1, len(classes)), dtype=np.int64), np.cumsum(counts, axis=0)])
    starts = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
    return classes, counts, offsets, starts


class _IndexSplits(_Splitter):
    """Splits given as ``(train, test)`` index arrays, or by another library's splitter (``split`` on the
    row count; with ``y`` when it needs labels)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return len(self._splits(X, y)) if not hasattr(self.source, "get_n_splits") else \
            int(self.source.get_n_splits(X, y, groups))

    def _splits(self, n: Any, y: Any) -> list:
        if hasattr(self.source, "split"):
            yv = None if y is None else np.asarray(y.compute() if hasattr(y, "compute") else y).ravel()
            return list(self.source.split(np.zeros((int(n), 1)), yv))
        return list(self.source)

    def make_plan(self, n: int, chunks: Sequence[int] | None = None, y: Any = None) -> SplitPlan:
        splits = self._splits(n, y)
        table = np.zeros((len(splits), n), dtype=np.int8)
        for s, (train, test) in enumerate(splits):
            table[s, np.asarray(train, dtype=np.int64)] = TRAIN
            table[s, np.asarray(test, dtype=np.int64)] = TEST
        return _IndexPlan(n, len(splits), table=table)


def check_cv(cv: Any = 5, y: Any = None, *, classifier: bool = False) -> _Splitter:
    """scikit-learn's rule: an int is ``StratifiedKFold`` for a classifier, else ``KFold``
    (``random_state=0``: the same folds for every candidate and every call); a splitter of this module as it is;
    anything with ``split`` or an iterable of ``(train, test)`` index arrays through a dense table."""
    if cv is None:
        cv = 5
    if isinstance(cv, Integral):
        return StratifiedKFold(cv, random_state=0) if classifier and y is not None else KFold(cv, random_state=0)
    if isinstance(cv, _Splitter):
        return cv
    if hasattr(cv, "split") or isinstance(cv, Iterable):
        return _IndexSplits(cv)
    raise ValueError(f"cv must be an int, a splitter or an iterable of (train, test) index arrays; got {cv!r}")


def _n_rows(X: Any) -> int:
    if isinstance(X, Integral):
        return int(X)
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


# ------------------------------------------------------------------------------------------------------
# a split's rows as arrays
# ------------------------------------------------------------------------------------------------------


def _take(block: np.ndarray, rows: np.ndarray, *y: np.ndarray, plan: SplitPlan, split: int, code: int) -> np.ndarray:
    keep = plan.memberships(rows, y[0] if y else None)[split] == code
    return block[keep]


def select_rows(a: Any, plan: SplitPlan, split: int, code: int, *, y: Any = None,
                counts: np.ndarray | None = None) -> Any:
    """The rows of ``a`` that are ``code`` (``TRAIN`` / ``TEST``) in ``split`` of ``plan``: for a dask array a
    ``passes.derived`` selection (made in the consuming task, its chunks known in advance), for numpy the rows
    themselves. ``y``: the labels a stratified plan needs; ``counts``: ``plan.chunk_counts`` if known."""
    from ..passes import derived, row_index

    if not hasattr(a, "dask"):
        a = np.asarray(a)
        M = plan.memberships(np.arange(len(a)), None if y is None else np.asarray(y).ravel())
        return a[M[split] == code]
    if counts is None:
        counts = plan.chunk_counts(a.chunks[0], y)
    extra = () if not plan.needs_y else (y.rechunk((a.chunks[0],)) if y.chunks[0] != a.chunks[0] else y,)
    return derived(_take, a, row_index(a), *extra, n_columns=a.shape[1] if a.ndim == 2 else None, dtype=a.dtype,
                   row_chunks=tuple(counts[:, split, code]), plan=plan, split=split, code=code)


def train_test_split(*arrays: Any, test_size: Any = None, train_size: Any = None, random_state: Any = None,
                     shuffle: bool = True, stratify: Any = None) -> list:
    """Split arrays (or a dataset) into train and test rows, scikit-learn's way, without copying anything.

    ``arrays``: numpy, dask or xarray arrays with the same number of rows (returned as ``[a_train, a_test,
    b_train, b_test, ...]``), or one dataset — an xarray Dataset, a path or a catalog name — returned as
    ``[train, test]`` Datasets whose variables along ``sample`` are selected. Dask and dataset results are lazy
    selections made inside the task that reads each chunk; numpy in, numpy out; pandas in, pandas out (a table
    in memory a pipeline takes). ``stratify``: labels (an array)
    or, for a dataset, the name of its variable (e.g. ``"y"``). ``shuffle=False`` keeps the last rows for test.

    >>> X = np.arange(20).reshape(10, 2); y = np.arange(10)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    >>> X_train.shape, X_test.shape, sorted(np.concatenate([y_train, y_test]).tolist()) == list(range(10))
    ((7, 2), (3, 2), True)
    """
    if not arrays:
        raise ValueError("At least one array required as input")
    dataset = _as_dataset(arrays[0]) if len(arrays) == 1 else None
    first = dataset["X"] if dataset is not None and "X" in dataset else (
        next(iter(dataset.data_vars.values())) if dataset is not None else arrays[0])
    n = _n_rows(first)
    data = getattr(first, "data", first)
    chunks = data.chunks[0] if hasattr(data, "dask") else None
    if isinstance(stratify, str):
        if dataset is None:
            raise ValueError(f"stratify={stratify!r} names a variable; it needs a dataset (or pass the labels)")
        stratify = dataset[stratify].data
    if stratify is not None:
        stratify = getattr(stratify, "data", stratify)
        if not shuffle:
            raise ValueError("Stratified train/test split is not implemented for shuffle=False")
        if chunks is not None:
            import dask.array as da

            stratify = da.asarray(stratify).rechunk((chunks,))
        plan = StratifiedShuffleSplit(1, test_size=test_size, train_size=train_size,
                                      random_state=random_state).make_plan(n, chunks, stratify)
    elif shuffle:
        plan = ShuffleSplit(1, test_size=test_size, train_size=train_size,
                            random_state=random_state).make_plan(n, chunks)
    else:
        n_test, n_train = _test_train_sizes(n, test_size, train_size)
        plan = _HeadTailPlan(n, 1, n_train=n_train, n_test=n_test)
    if dataset is not None:
        return [_select_dataset(dataset, plan, code, stratify) for code in (TRAIN, TEST)]
    out = []
    counts = plan.chunk_counts(chunks, stratify) if chunks is not None else None
    memberships = None
    for a in arrays:
        if _n_rows(a) != n:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: [{n}, {_n_rows(a)}]")
        if hasattr(a, "iloc"):  # pandas in, pandas out (its index and column types kept), as scikit-learn does
            if memberships is None:
                labels = None if stratify is None else np.asarray(getattr(stratify, "compute", lambda: stratify)())
                memberships = plan.memberships(np.arange(n), None if labels is None else labels.ravel())
            out += [a.iloc[np.flatnonzero(memberships[0] == code)] for code in (TRAIN, TEST)]
            continue
        a = getattr(a, "data", a) if not isinstance(a, np.ndarray) else a
        if hasattr(a, "dask") and chunks is not None and a.chunks[0] != chunks:
            a = a.rechunk((chunks,) + a.chunks[1:])
        if chunks is None and hasattr(a, "dask"):
            a = a.compute()
        out += [select_rows(a, plan, 0, code, y=stratify, counts=counts) for code in (TRAIN, TEST)]
    return out


def _as_dataset(a: Any) -> Any:
    import sys

    if isinstance(a, (str, Path)):
        from ..io.catalog import open_dataset

        return open_dataset(a)
    xr = sys.modules.get("xarray")
    return a if xr is not None and isinstance(a, xr.Dataset) else None


def _select_dataset(ds: Any, plan: SplitPlan, code: int, y: Any) -> Any:
    import xarray as xr

    variables = {}
    counts = None
    for name, var in ds.data_vars.items():
        if "sample" not in var.dims or var.dims[0] != "sample":
            variables[name] = var
            continue
        data = var.data
        if counts is None:
            counts = plan.chunk_counts(data.chunks[0], y)
        variables[name] = (var.dims, select_rows(data, plan, 0, code, y=y, counts=counts), var.attrs)
    return xr.Dataset(variables, attrs=dict(ds.attrs))
