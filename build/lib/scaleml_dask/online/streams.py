"""Streams: a dataset read as NumPy ``(X, y)`` batches, one stored chunk at a time, in bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval, validate_params

from ..passes import map_row_chunks
from ..sgd._blocks import stack_rows


class BatchStream:
    """Iterate a dataset as ``(X, y)`` NumPy batches of ``batch_size`` rows, reading one chunk at a time.

    Made by ``iter_batches``. While iterating it holds the chunk being cut into batches, the rows left over
    from the previous chunk (< ``batch_size``) and, with ``prefetch``, the next chunk being read in a
    background thread: ``bytes_held`` / ``max_bytes_held`` account for exactly that, ``chunks_read`` counts
    reads. ``y`` is None when the dataset has no target.

    >>> import numpy as np
    >>> stream = iter_batches((np.ones((5, 2)), np.arange(5)), 4)
    >>> len(stream), [len(Xb) for Xb, _ in stream], stream.chunks_read, stream.bytes_held
    (2, [4, 1], 1, 0)
    """

    def __init__(self, X: Any, y: Any, batch_size: int, prefetch: bool, scheduler: str | None) -> None:
        self.X, self.y = X, y
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.scheduler = scheduler
        self.n_samples = int(X.shape[0])
        self.chunks_read = 0
        self.bytes_held = 0
        self.max_bytes_held = 0
        row_bytes = X.dtype.itemsize * X.shape[1] + (y.dtype.itemsize if y is not None else 0)
        self.chunk_bytes = [int(r) * row_bytes for r in X.chunks[0]]  # (sparse: an upper bound)
        self._chunks = map_row_chunks(_pair, X, y)  # a chunk of a store is read inside its task

    def __len__(self) -> int:
        return -(-self.n_samples // self.batch_size)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self._chunks[i].compute(scheduler=self.scheduler)

    def _hold(self, nbytes: int) -> None:
        self.bytes_held = nbytes
        self.max_bytes_held = max(self.max_bytes_held, nbytes)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        n_chunks = len(self.chunk_bytes)
        bs = self.batch_size
        rest_X: np.ndarray | None = None
        rest_y: np.ndarray | None = None
        with ThreadPoolExecutor(1) if self.prefetch else _NoPool() as pool:
            pending = pool.submit(self._read, 0)
            for i in range(n_chunks):
                Xc, yc = pending.result()
                self.chunks_read += 1
                ahead = 0
                if i + 1 < n_chunks:
                    pending = pool.submit(self._read, i + 1)
                    ahead = self.chunk_bytes[i + 1] if self.prefetch else 0
                if rest_X is not None:
                    Xc = self._concat(rest_X, Xc)
                    yc = None if yc is None else np.concatenate([rest_y, yc])
                self._hold(self._nbytes(Xc) + (yc.nbytes if yc is not None else 0) + ahead)
                n = Xc.shape[0]
                stop = n - n % bs if i + 1 < n_chunks else n
                for s in range(0, stop, bs):
                    yield Xc[s:s + bs], (None if yc is None else yc[s:s + bs])
                rest_X = Xc[stop:] if stop < n else None
                rest_y = None if (yc is None or rest_X is None) else yc[stop:]
                del Xc, yc
        self._hold(0)


    @staticmethod
    def _concat(a: Any, b: Any) -> Any:
        return stack_rows([a, b])

    @staticmethod
    def _nbytes(a: Any) -> int:
        """Bytes of a dense block, or of a CSR block's three arrays."""
        return a.nbytes if isinstance(a, np.ndarray) else a.data.nbytes + a.indices.nbytes + a.indptr.nbytes


class TableBatchStream(BatchStream):
    """Iterate a stored table as ``(DataFrame, y)`` batches of raw values (``io.table.to_frame``: categories as
    ``pd.Categorical`` of their levels, booleans, UTC date-times), one chunk at a time; made by ``iter_batches``.
    What a pipeline's ``learn_many`` takes, as it would take the rows of a served request."""

    def __init__(self, ds: Any, batch_size: int, prefetch: bool, scheduler: str | None) -> None:
        from ..io.table import layout

        lay = layout(ds)
        target = lay.get("target")
        self.columns = [c for c in lay["columns"] if c != target]
        arrays = [ds[c].data for c in self.columns]
        y = None if target is None else _target_array(ds[target])
        self.X, self.y = arrays[0], y
        self.batch_size, self.prefetch, self.scheduler = batch_size, prefetch, scheduler
        self.n_samples = int(arrays[0].shape[0])
        self.chunks_read, self.bytes_held, self.max_bytes_held = 0, 0, 0
        row_bytes = sum(a.dtype.itemsize for a in arrays) + (y.dtype.itemsize if y is not None else 0)
        self.chunk_bytes = [int(r) * row_bytes for r in arrays[0].chunks[0]]
        attrs = {c: dict(ds[c].attrs) for c in self.columns}
        self._chunks = map_row_chunks(_frame_pair, y, *arrays, names=self.columns, attrs=attrs)

    @staticmethod
    def _concat(a: Any, b: Any) -> Any:
        import pandas as pd

        return pd.concat([a, b], ignore_index=True)

    @staticmethod
    def _nbytes(a: Any) -> int:
        return int(a.memory_usage(index=False).sum())


def _target_array(var: Any) -> Any:
    from ..io.table import canonical_array

    return canonical_array(var) if var.attrs.get("kind") != "categorical" else var.data


def _frame_pair(y: np.ndarray | None, *blocks: np.ndarray, chunk_index: int, row_start: int, names: list[str],
                attrs: dict) -> tuple:
    """The task reading one chunk of a table stream: its raw-values DataFrame and ``y``."""
    from ..io.table import to_frame

    frame = to_frame(dict(zip(names, blocks)), attrs)
    frame.index = range(row_start, row_start + len(frame))
    return frame, y


def _pair(X: np.ndarray, y: np.ndarray | None, *, chunk_index: int, row_start: int) -> tuple:
    """The task reading one chunk of the stream: its ``(X, y)``."""
    return X, y


class _NoPool:
    """Synchronous stand-in for a one-thread pool (``prefetch=False``): submit runs the call lazily."""

    def __enter__(self) -> _NoPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def submit(self, fn: Any, *args: Any) -> _Deferred:
        return _Deferred(fn, args)


@dataclass
class _Deferred:
    fn: Any
    args: tuple

    def result(self) -> Any:
        return self.fn(*self.args)


@validate_params({"ds": "no_validation", "batch_size": [Interval(Integral, 1, None, closed="left")],
                  "prefetch": ["boolean"], "scheduler": [str, None]}, prefer_skip_nested_validation=True)
def iter_batches(ds: Any, batch_size: int = 1000, *, prefetch: bool = True,
                 scheduler: str | None = "synchronous") -> BatchStream:
    """Stream a dataset as NumPy ``(X, y)`` batches in bounded memory, one stored chunk at a time.

    ``ds`` is an ``xarray.Dataset`` from ``sm.open_dataset`` (``X`` and optional ``y`` chunked along
    ``sample``), a catalog name or path, or a tuple ``(X, y)`` of NumPy / dask arrays. A table
    (``io.table``) streams as ``(pandas DataFrame of raw values, y)`` batches (``TableBatchStream``), what a
    pipeline's ``learn_many`` takes. Chunks are read by
    ``scheduler`` ("synchronous": in this process, straight from the store; None: dask's default, e.g. the
    cluster), the next one in a background thread while the current one is consumed (``prefetch``).

    >>> import numpy as np
    >>> [(Xb.shape, yb.tolist()) for Xb, yb in iter_batches((np.ones((5, 2)), np.arange(5)), 2)]
    [((2, 2), [0, 1]), ((2, 2), [2, 3]), ((1, 2), [4])]
    """
    from ..validation import as_dask_array, check_X_y, take_y

    if isinstance(ds, tuple):
        X, y = ds
    else:
        if not hasattr(ds, "data_vars"):
            from ..io.catalog import open_dataset

            ds = open_dataset(ds)
        from ..io.table import is_table

        if is_table(ds):
            return TableBatchStream(ds, int(batch_size), prefetch, scheduler)
        X, y = ds, take_y(ds)
    X, y = check_X_y(X, y, accept_sparse=True) if y is not None else (as_dask_array(X, "X", ndim=2,
                                                                                      accept_sparse=True), None)
    return BatchStream(X, y, int(batch_size), prefetch, scheduler)
