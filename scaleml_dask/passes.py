"""The one-pass driver: read a row chunk, transform it, run the kernel, tree-reduce — each chunk in one task.

Every estimator's pass goes through here. ``map_row_chunks`` makes one task per row chunk that

1. reads its rows itself when they come from a store (``io.read``: no read task, no transfer between workers,
   no extra copy),
2. applies the per-chunk transforms of ``derived`` arrays (a pipeline's preprocessing) to them inside the same
   task, so no transformed copy is ever written or held, and
3. runs the block kernel on the result: ``kernel(*blocks, chunk_index=i, row_start=r, **kwargs)``;

``tree_reduce`` / ``reduce_here`` combine the kernels' results by a fixed tree (deterministic whatever the
number of workers), and ``one_pass`` is the two together in one ``dask.compute``. Kernels are pure functions on
numpy blocks and depend on nothing above them (``_checks`` for their NaN / weight checks).

Keys: ``map_row_chunks`` names its tasks by a deterministic token of the kernel, the data and the arguments;
``one_pass`` (what a fit runs) adds a fresh token, so that a pass is always computed: two identical graphs
submitted close together would otherwise share keys, and dask.distributed may hand the second the first's
results while they are still held (a fit "timed" at a fraction of a scan). Reuse of statistics across fits is
deliberate where it exists (``_moments.reuse_statistics``), never a side effect of key names.

``row_index(X)`` is the global row index of ``X``'s rows, made inside the consuming task; a ``derived`` array
may select rows (``row_chunks=``): that is how a split of the rows (``model_selection``) costs no copy.

>>> import dask, numpy as np
>>> from scaleml_dask.validation import as_dask_array
>>> X = as_dask_array(np.arange(10.0).reshape(5, 2), chunk_rows=2)
>>> def first_row(b, *, chunk_index, row_start): return row_start, b[0].tolist()
>>> dask.compute(*map_row_chunks(first_row, X))
((0, [0.0, 1.0]), (2, [4.0, 5.0]), (4, [8.0, 9.0]))
>>> twice = derived(lambda b: 2 * b, X, n_columns=2)          # transformed inside the consuming task
>>> one_pass(lambda b, *, chunk_index, row_start: b.sum(axis=0), sum, twice).tolist()
[40.0, 50.0]
"""

from __future__ import annotations

import contextlib
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import dask.array as da
    from dask.delayed import Delayed

__all__ = ["derived", "distinct_values", "fold_row_chunks", "given_distinct", "map_row_chunks", "one_pass",
           "reduce_here", "row_index", "row_offsets", "tree_reduce"]


def row_offsets(chunks: Sequence[int]) -> np.ndarray:
    """Starting row of each chunk."""
    return np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)


# ------------------------------------------------------------------------------------------------------
# per-chunk transforms
# ------------------------------------------------------------------------------------------------------


class _Derivation:
    """``fn(*blocks, **kwargs)``: the callable a ``derived`` array's graph holds (so the entry of ``_DERIVED``
    lives exactly as long as some graph uses it).

    Every task of a pass holds the same derivation — for a pipeline its fitted preprocessing, hundreds of kB —
    and dask.distributed pickles each task's inputs apart (the scheduler, for each task it sends) and a worker
    unpickles them per task. So a derivation pickles as the bytes of ``(fn, kwargs)``, made once per pass (a pass
    over it starts afresh, ``refresh``: a transformer refitted in place since is pickled as it is now), and a
    process unpickles given bytes once (``_restore``): per task the bytes are only copied. The input arrays stay
    behind (a task calls the function only)."""

    __slots__ = ("__name__", "__weakref__", "_pickled", "_token", "arrays", "fn", "kwargs")

    def __init__(self, fn: Callable, arrays: tuple, kwargs: dict) -> None:
        self.fn, self.arrays, self.kwargs = fn, arrays, kwargs
        self.__name__ = getattr(fn, "__name__", "derived")  # how dask names the array
        self._pickled: tuple[bytes, bytes] | None = None
        self._token: tuple | None = None

    def __call__(self, *blocks: Any) -> Any:
        return self.fn(*blocks, **self.kwargs)

    def refresh(self) -> _Derivation:
        """Forget the token and the bytes made so far (a pass over the derivation starts with this)."""
        self._pickled = self._token = None
        return self

    def __dask_tokenize__(self) -> tuple:
        """Made once per pass (a fitted transform's token pickles it; the pass asks for it more than once)."""
        if self._token is None:
            from dask.base import tokenize

            self._token = ("derivation", tokenize(self.fn, self.kwargs), tuple(a.name for a in self.arrays))
        return self._token

    def __reduce__(self) -> tuple:
        if self._pickled is None:
            import hashlib

            import cloudpickle

            payload = cloudpickle.dumps((self.fn, self.kwargs), protocol=5)
            self._pickled = (hashlib.blake2b(payload, digest_size=16).digest(), payload)
        return _restore, self._pickled


#: The derivations this process unpickled, by the digest of their bytes (the last few: a pass uses one or two).
_RESTORED: dict[bytes, _Derivation] = {}
#: At most this many bytes of pickled derivations kept in ``_RESTORED`` (beyond the newest one).
_RESTORED_BYTES = 64 << 20
_restored_lock = threading.Lock()


def _restore(digest: bytes, payload: bytes) -> _Derivation:
    """The derivation pickled as ``payload``: unpickled once per process, then shared by the tasks holding it."""
    with _restored_lock:
        d = _RESTORED.get(digest)
        if d is None:
            import pickle

            fn, kwargs = pickle.loads(payload)
            d = _Derivation(fn, (), kwargs)
            d._pickled, d._token = (digest, payload), ("derivation", digest.hex())
            while _RESTORED and (len(_RESTORED) >= 8 or sum(len(e._pickled[1]) for e in _RESTORED.values())
                                 + len(payload) > _RESTORED_BYTES):
                _RESTORED.pop(next(iter(_RESTORED)))
            _RESTORED[digest] = d
    return d


#: The derivation behind each array ``derived`` made, by the array's name.
_DERIVED: weakref.WeakValueDictionary[str, _Derivation] = weakref.WeakValueDictionary()


def derived(fn: Callable, *arrays: da.Array, n_columns: int | None = None, dtype: Any = np.float64,
            row_chunks: Sequence[int] | None = None, meta: Any = None, **kwargs: Any) -> da.Array:
    """A row-chunked dask array whose row chunk ``i`` is ``fn(*blocks_i, **kwargs)``.

    ``arrays`` (1-d or 2-d, one column chunk, identical row chunks) are the inputs; the result has
    ``n_columns`` columns (None: 1-d), and the inputs' row chunks unless ``row_chunks`` gives the rows ``fn``
    keeps of each chunk (a selection of rows). It is an ordinary dask array — anything can compute, slice or
    map it — but ``map_row_chunks`` recognises it and runs ``fn`` inside the consuming task, right after the
    inputs' rows are read: a pipeline's preprocessing costs no task, no transfer and no stored copy of its own.
    ``meta`` is an empty block of the type ``fn`` returns when it is not numpy (a ``scipy.sparse`` matrix).
    """
    import dask.array as da

    arrays = tuple(_as_dask(a) for a in arrays)
    rows = _common_rows(arrays)
    d = _Derivation(fn, arrays, kwargs)
    pairs: list[Any] = []
    for k, a in enumerate(arrays):
        pairs += [a, "i" if a.ndim == 1 else f"i{k}"]
    out_ind = "i" if n_columns is None else "ij"
    new_axes = {} if n_columns is None else {"j": n_columns}
    meta = np.empty((0,) * len(out_ind), dtype=dtype) if meta is None else meta
    if row_chunks is not None:
        row_chunks = tuple(int(r) for r in row_chunks)
        if len(row_chunks) != len(rows):
            raise ValueError(f"derived: {len(row_chunks)} row chunks given for inputs of {len(rows)}")
    from dask.base import tokenize

    # named explicitly: dask would take the callable's repr, which holds its memory address (so the same
    # transform of the same data would get another name each time)
    name = f"{getattr(fn, '__name__', 'derived').strip('_')}-{tokenize(d, n_columns, dtype, row_chunks)}"
    out = da.blockwise(d, out_ind, *pairs, new_axes=new_axes, concatenate=True, dtype=dtype, meta=meta,
                       adjust_chunks=None if row_chunks is None else {"i": row_chunks}, name=name)
    if out.chunks[0] != (rows if row_chunks is None else row_chunks):  # a guard for the contract above
        raise ValueError("derived: the output's row chunks differ from its inputs'")
    _DERIVED[out.name] = d
    return out


class _RowIndex:
    """Array-like of the global row indices ``0..n-1`` chunked as given: ``read_rows(i)`` makes row chunk ``i``
    (nothing is read), ``[slice]`` serves dask's getter when the array is computed by its own graph."""

    __slots__ = ("__weakref__", "chunks", "starts")

    def __init__(self, chunks: tuple[int, ...]) -> None:
        self.chunks = chunks
        self.starts = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)

    shape = property(lambda self: (int(self.starts[-1]),))
    dtype = np.dtype(np.int64)
    ndim = 1

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.arange(int(self.starts[-1]), dtype=np.int64)[key]

    def read_rows(self, index: int) -> np.ndarray:
        return np.arange(self.starts[index], self.starts[index + 1], dtype=np.int64)

    def for_rows(self, index: int) -> _RowIndex:
        return self

    def __dask_tokenize__(self) -> tuple:
        return ("row-index", self.chunks)


#: The source behind each array ``row_index`` made, by the array's name.
_ROW_INDEX: weakref.WeakValueDictionary[str, _RowIndex] = weakref.WeakValueDictionary()


def row_index(X: Any) -> da.Array:
    """The global row index of ``X``'s rows (int64, 1-d, ``X``'s row chunks). Inside a ``map_row_chunks`` task
    (also as the input of a ``derived`` array) its block is made there, from the chunk's row range."""
    import dask.array as da
    from dask.base import tokenize

    chunks = tuple(int(c) for c in _as_dask(X).chunks[0])
    src = _RowIndex(chunks)
    arr = da.from_array(src, chunks=(chunks,), inline_array=True, asarray=False, lock=False,
                        name=f"row-index-{tokenize(src)}", meta=np.empty(0, dtype=np.int64))
    _ROW_INDEX[arr.name] = src
    return arr


# ------------------------------------------------------------------------------------------------------
# the per-chunk task
# ------------------------------------------------------------------------------------------------------


class _Rows:
    """Marks a task input as "read row chunk ``index`` of ``src`` here" (a plain object, so that dask passes
    it to the task as it is)."""

    __slots__ = ("src",)

    def __init__(self, src: Any) -> None:
        self.src = src


class _Plan:
    """How the task rebuilds each kernel argument from its flat inputs: ``("leaf", k)`` takes input ``k``,
    ``("apply", derivation, [plans])`` applies a derivation to the arguments its plans build."""

    __slots__ = ("args",)

    def __init__(self, args: list) -> None:
        self.args = args


class _Kwargs:
    """A pass's keyword arguments holding no dask collection, as one opaque task input: dask walks every
    argument of every task it is given (dicts, tuples, dataclasses, field by field: a stored table's reader is
    slow to walk, benchmarks/README.md "Tables"), this once per pass (``_opaque``)."""

    __slots__ = ("kwargs",)

    def __init__(self, kwargs: dict) -> None:
        self.kwargs = kwargs


def _opaque(kwargs: dict) -> dict | _Kwargs:
    """``kwargs`` wrapped in ``_Kwargs`` unless they hold what dask must see (a dependency)."""
    return kwargs if _depends(kwargs) else _Kwargs(kwargs)


def _depends(x: Any) -> bool:
    """Whether ``x`` holds a dask collection or a distributed future, looked for where dask looks in a task's
    arguments (containers, dataclasses' fields)."""
    import dataclasses

    from dask import is_dask_collection

    if isinstance(x, (str, bytes, int, float, np.ndarray, np.generic)) or x is None:
        return False
    future = getattr(sys.modules.get("distributed"), "Future", None)
    if is_dask_collection(x) or (future is not None and isinstance(x, future)):
        return True
    if isinstance(x, dict):
        return any(_depends(v) for v in x.values())
    if isinstance(x, (list, tuple, set, frozenset, slice)):
        return any(_depends(v) for v in ((x.start, x.stop, x.step) if isinstance(x, slice) else x))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return any(_depends(getattr(x, f.name)) for f in dataclasses.fields(x))
    return False


def _kwargs(kwargs: dict | _Kwargs) -> dict:
    return kwargs.kwargs if isinstance(kwargs, _Kwargs) else kwargs


def _build(plan: Any, inputs: Sequence[Any], index: int) -> Any:
    if plan[0] == "leaf":
        x = inputs[plan[1]]
        return x.src.read_rows(index) if isinstance(x, _Rows) else x
    return plan[1](*(_build(p, inputs, index) for p in plan[2]))


def _on_rows(func: Callable, index: int, row_start: int, kwargs: dict | _Kwargs, plan: _Plan, *inputs: Any) -> Any:
    """The task: read the rows it consumes, apply the transforms, run ``func``."""
    blocks = [None if p is None else _build(p, inputs, index) for p in plan.args]
    return func(*blocks, chunk_index=index, row_start=row_start, **_kwargs(kwargs))


def _on_rows_ahead(func: Callable, index: int, row_start: int, kwargs: dict | _Kwargs, plan: _Plan,
                   *inputs: Any) -> Any:
    """``_on_rows`` for a kernel that visits its block out of order (mini-batches in a shuffled order) on a
    store read through the page cache: the block's pages are read in file order first (a fault per page in
    visiting order is a random read), then the kernel is asked to read the next block this worker will run
    (``ZarrChunks.will_need``), so that the disk reads it while this block's kernel computes. At most that one
    block more (per thread) is in the page cache for this worker."""
    blocks = [None if p is None else _build(p, inputs, index) for p in plan.args]
    for b in blocks:
        if isinstance(b, np.ndarray) and b.dtype.kind in "biuf" and b.flags.c_contiguous and b.size:
            b.reshape(-1)[::max(1, _PAGE // b.itemsize)].sum()  # a read per page, in order: the kernel reads ahead
    for i in _queued_here():
        for x in inputs:
            if isinstance(x, _Rows) and hasattr(x.src, "will_need"):  # a store's chunks (not a row index)
                x.src.will_need(i)
    return func(*blocks, chunk_index=index, row_start=row_start, **_kwargs(kwargs))


_PAGE = 4096  # bytes of a memory page


def _queued_here() -> list[int]:
    """The row chunks of the running task's pass that this dask.distributed worker will run next: those queued
    on it, in the order it runs them (by priority), as many as it has threads — the scheduler may send it many
    more (``worker-saturation: inf``), and hinting them all would fill the page cache with chunks read too early.
    None off a worker, or where the worker's state is not what this reads (a hint is only a hint)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return []
    try:
        prefix = str(worker.get_current_task()).rpartition("-")[0] + "-"
        queued = sorted((ts for ts in list(worker.state.ready) if isinstance(ts.key, str)
                         and ts.key.startswith(prefix) and ts.key[len(prefix):].isdigit()),
                        key=lambda ts: ts.priority)
        ahead = max(1, int(worker.state.nthreads))
    except (RuntimeError, AttributeError, TypeError):  # the state changed under the copy, or another distributed
        return []
    return [int(ts.key[len(prefix):]) for ts in queued[:ahead]]


def map_row_chunks(func: Callable, *arrays: Any, unique: bool = False, chain: str | None = None,
                   readahead: bool = False, **kwargs: Any) -> list[Delayed]:
    """One ``dask.delayed`` per row chunk ``i``: ``func(*blocks_i, chunk_index=i, row_start=r_i, **kwargs)``.

    ``arrays`` are row-chunked dask arrays (or xarray variables, or None, passed through as None) with
    identical row chunks. A block of an array read from a store by this project's reader (``io.read``:
    ``open_dataset``, ``as_dask_array`` of a zarr array or path, also after merging its column chunks) is read
    inside the task that consumes it; a ``derived`` array is computed there from its inputs' blocks, read the
    same way. Any other dask array falls back to its own graph for the block (optimized jointly with the other
    fallbacks, so shared keys stay shared). Keys are deterministic and named after ``func``
    (``block_moments-<token>-<i>`` on the dashboard); ``unique=True`` makes them this call's own.

    ``chain="name"`` makes the tasks a chain, for learners whose state passes from chunk to chunk: chunk i's
    keyword ``name`` is chunk i - 1's result (chunk 0's is ``kwargs[name]``), so chunk i runs after chunk i - 1.
    ``readahead=True``: for a ``func`` that visits its block out of order (``_on_rows_ahead``).
    """
    import dask

    plan, columns, starts, name = _row_inputs(func, arrays, kwargs, unique)
    call = dask.delayed(_on_rows_ahead if readahead else _on_rows, pure=True)
    if chain is None:
        fixed = _opaque(kwargs)
        return [call(func, i, int(r), fixed, plan, *(c[i] for c in columns), dask_key_name=f"{name}-{i}")
                for i, r in enumerate(starts)]
    out: list[Delayed] = []
    for i, r in enumerate(starts):
        link = {**kwargs, chain: out[-1]} if out else kwargs
        out.append(call(func, i, int(r), link, plan, *(c[i] for c in columns), dask_key_name=f"{name}-{i}"))
    return out


def fold_row_chunks(func: Callable, *arrays: Any, group: int, **kwargs: Any) -> list[Delayed]:
    """One ``dask.delayed`` per ``group`` consecutive row chunks, folding ``func`` over them in one task:
    ``acc = func(*blocks_i, acc=acc, chunk_index=i, row_start=r_i, **kwargs)`` from ``acc=None``, each chunk read
    (and transformed) inside the task as in ``map_row_chunks``. For kernels whose per-chunk result is larger than
    a chunk (a sketch of every feature: ``decomposition.TruncatedSVD``): one such result per group, not per
    chunk. The groups depend on ``group`` only, so the result does not depend on the number of workers."""
    import dask

    plan, columns, starts, name = _row_inputs(func, arrays, kwargs, False)
    call = dask.delayed(_on_row_group, pure=True)
    fixed = _opaque(kwargs)
    out = []
    for g, lo in enumerate(range(0, len(starts), group)):
        idx = list(range(lo, min(lo + group, len(starts))))
        out.append(call(func, idx, [int(starts[i]) for i in idx], fixed, plan, *([c[i] for i in idx] for c in columns),
                        dask_key_name=f"{name}-g{group}-{g}"))
    return out


def _on_row_group(func: Callable, indices: list[int], row_starts: list[int], kwargs: dict | _Kwargs, plan: _Plan,
                  *columns: list) -> Any:
    """The task of ``fold_row_chunks``: read, transform and fold its chunks one after the other."""
    kwargs = _kwargs(kwargs)
    acc = None
    for k, (index, row_start) in enumerate(zip(indices, row_starts)):
        inputs = [c[k] for c in columns]
        blocks = [None if p is None else _build(p, inputs, index) for p in plan.args]
        acc = func(*blocks, acc=acc, chunk_index=index, row_start=row_start, **kwargs)
    return acc


def _row_inputs(func: Callable, arrays: tuple, kwargs: dict, unique: bool) -> tuple[_Plan, list[list], list[int], str]:
    """What the tasks of a pass over ``arrays`` take: the plan rebuilding each kernel argument, one list of
    per-chunk inputs per leaf array, the chunks' first rows and the pass's name (deterministic unless ``unique``)."""
    import dask
    from dask.base import tokenize

    arrays = tuple(None if a is None else _as_dask(a) for a in arrays)
    present = [a for a in arrays if a is not None]
    if not present:
        raise ValueError("map_row_chunks needs at least one array")
    rows = _common_rows(present)
    starts = row_offsets(rows).tolist()
    leaves: list[tuple[Any, Any]] = []  # (source or None, array)

    def plan_of(a: Any) -> Any:
        if a is None:
            return None
        d = _DERIVED.get(a.name)  # a name is the array's content: any slice or map of it has another
        if d is not None:
            return ("apply", d.refresh(), [plan_of(b) for b in d.arrays])
        from .io.read import row_source

        leaves.append((_ROW_INDEX.get(a.name) or row_source(a), a))
        return ("leaf", len(leaves) - 1)

    plan = _Plan([plan_of(a) for a in arrays])
    others = [a.rechunk({1: -1}) if a.ndim == 2 and len(a.chunks[1]) > 1 else a for s, a in leaves if s is None]
    blocks = iter([b.to_delayed(optimize_graph=False).ravel() for b in dask.optimize(*others)] if others else [])
    columns = [[_Rows(s.for_rows(i)) for i in range(len(starts))] if s is not None else list(next(blocks))
               for s, _ in leaves]
    token = uuid.uuid4().hex if unique else tokenize(  # (unique: a pass's kwargs need no hashing, its weights...)
        func, [s if s is not None else a.name for s, a in leaves], _plan_token(plan), kwargs)
    return plan, columns, starts, f"{getattr(func, '__name__', 'rows').strip('_')}-{token}"


def _plan_token(plan: _Plan) -> Any:
    def token(p: Any) -> Any:
        if p is None or p[0] == "leaf":
            return p
        return ("apply", p[1].__dask_tokenize__(), [token(q) for q in p[2]])

    return [token(p) for p in plan.args]


def _as_dask(a: Any) -> da.Array:
    xr = sys.modules.get("xarray")
    return a.data if xr is not None and isinstance(a, xr.DataArray) else a


def _common_rows(arrays: Sequence[da.Array]) -> tuple[int, ...]:
    rows = arrays[0].chunks[0]
    for a in arrays[1:]:
        if a.chunks[0] != rows:
            raise ValueError(f"map_row_chunks: the arrays have different row chunks ({rows} and {a.chunks[0]})")
    return rows


# ------------------------------------------------------------------------------------------------------
# reduction
# ------------------------------------------------------------------------------------------------------


def tree_reduce(parts: Sequence[Any], combine: Callable[[list], Any], split_every: int = 8) -> Any:
    """Combine delayed ``parts`` by a fixed tree of ``combine`` calls (deterministic given the parts)."""
    return _tree_levels(parts, combine, split_every, 1)[0]


@contextlib.contextmanager
def broadcast(value: Any) -> Iterator[Any]:
    """A large read-only input of every task of a pass (TruncatedSVD's ``p × l`` sketch basis), for the duration
    of the ``with`` block: scattered to every worker when the current scheduler is a dask.distributed client —
    not embedded in the graph, which the scheduler would receive, hold and forward — else a delayed of it.

    The scattered copy has a key of its own (``hash=False``), held until the block ends: a content-hashed key
    is shared by identical values of other passes and fits, and one of them releasing it while another's graph
    still needs it failed tasks with "Missing dependency".
    """
    import dask

    client = _distributed_client()
    if client is None:  # the local schedulers share memory
        yield dask.delayed(value, pure=True)
        return
    future = client.scatter(value, broadcast=True, hash=False)
    try:
        yield future
    finally:
        future.release()


def shared(value: Any) -> Any:
    """A large read-only input of a *lazy* result (``TruncatedSVD.transform``'s ``p × k`` matrix), for as long as
    that result exists: a future of it scattered once to every worker when the current scheduler is a
    dask.distributed client — the lazy array's graph then holds its key, not its bytes, and the copy is released
    with the last array that refers to it — else a delayed of it (the local schedulers share memory). Own key
    (``hash=False``), for the reason given in ``broadcast``."""
    import dask

    client = _distributed_client()
    if client is None:
        return dask.delayed(value, pure=True)
    return client.scatter(value, broadcast=True, hash=False)


def run_everywhere(func: Callable, *args: Any) -> list:
    """``func(*args)`` in every process that runs the current scheduler's tasks — each worker of a
    dask.distributed client (``Client.run``: no task, no graph), else this process — to read or clear what tasks
    left in their process's memory; the answers of the workers that answered."""
    client = _distributed_client()
    if client is None:
        return [func(*args)]
    return [v for v in client.run(func, *args, on_error="return").values() if not isinstance(v, Exception)]


def tasks_out_of_reach() -> bool:
    """Whether the current scheduler runs tasks in processes that :func:`run_everywhere` cannot reach (dask's
    ``processes`` scheduler, without a distributed client): what tasks leave in their memory is lost to the fit."""
    if _distributed_client() is not None:
        return False
    import dask.multiprocessing
    from dask.base import get_scheduler

    return get_scheduler() is dask.multiprocessing.get


def _distributed_client() -> Any:
    """The dask.distributed client that ``dask.compute`` would use now, or None."""
    if "distributed" not in sys.modules:
        return None
    from dask.base import get_scheduler
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:
        return None
    return client if get_scheduler() == client.get else None


def reduce_here(parts: Sequence[Any], combine: Callable[[list], Any], split_every: int = 8, *,
                on_workers: bool = True) -> Any:
    """``dask.compute(tree_reduce(parts, combine, split_every))[0]``, with the tree's last ``combine`` run in
    this process: the same tree and the same answer, but its (at most ``split_every``) inputs come back from
    the one ``dask.compute`` instead of costing a task more, a transfer between workers and a scheduler
    round trip, the fixed cost that small fits pay (benchmarks/README.md, "Growth"). ``on_workers=False`` runs
    the whole tree here, on every part brought back (for parts as small as a linear model's weights: the tree's
    tasks on the workers would cost more than carrying them), still the same tree and the same answer."""
    import dask

    if not on_workers:
        return combine_here(list(dask.compute(*parts)), combine, split_every)
    values = dask.compute(*_tree_levels(parts, combine, split_every, split_every))
    return values[0] if len(values) == 1 else combine(list(values))


def combine_here(values: list, combine: Callable[[list], Any], split_every: int = 8) -> Any:
    """The tree of ``tree_reduce`` applied in this process to computed ``values``: the same groups, so the same
    answer as that tree computed by dask."""
    return _tree_levels(values, combine, split_every, 1, lazy=False)[0]


def one_pass(kernel: Callable, combine: Callable[[list], Any], *arrays: Any, split_every: int = 8,
             **kwargs: Any) -> Any:
    """One pass: ``kernel`` on every row chunk (``map_row_chunks``), reduced by ``combine`` (``reduce_here``),
    under keys of its own: the pass is computed, never handed an identical earlier graph's results."""
    return reduce_here(map_row_chunks(kernel, *arrays, unique=True, **kwargs), combine, split_every)


def _tree_levels(parts: Sequence[Any], combine: Callable[[list], Any], split_every: int, until: int, *,
                 lazy: bool = True) -> list:
    """The levels of the tree of ``tree_reduce`` built until at most ``until`` parts are left: delayed
    ``combine`` calls, or (``lazy=False``) ``combine`` applied here to computed parts — the same groups."""
    import dask

    apply = dask.delayed(combine, pure=True) if lazy else combine
    parts = list(parts)
    while len(parts) > until:
        parts = [apply(parts[i:i + split_every]) for i in range(0, len(parts), split_every)]
    return parts


# ------------------------------------------------------------------------------------------------------
# distinct values found by an earlier pass
# ------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def thread_value(slot: threading.local, value: Any) -> Iterator[None]:
    """``slot.value`` is ``value`` inside the block (in this thread), what it was before after it: results an
    earlier pass found, handed to the code that would otherwise make a pass for them."""
    before = getattr(slot, "value", None)
    slot.value = value
    try:
        yield
    finally:
        slot.value = before


_distinct = threading.local()


def given_distinct(values: dict[str, np.ndarray]) -> contextlib.AbstractContextManager:
    """Inside the block (this thread), ``distinct_values`` of an array named in ``values`` (by its dask name)
    hands back ``values[name]`` instead of making a pass: a pipeline finds its target's classes in its statistics
    pass, and the classifier at its end makes no class pass of its own."""
    return thread_value(_distinct, values)


def distinct_values(a: da.Array) -> np.ndarray:
    """The sorted distinct values of the dask array ``a`` (NaN last, once): a pass over it, unless an earlier
    pass found them (``given_distinct``)."""
    import dask.array as da

    given = getattr(_distinct, "value", None)
    if given is not None and a.name in given:
        return given[a.name]
    return np.unique(da.unique(a).compute())
