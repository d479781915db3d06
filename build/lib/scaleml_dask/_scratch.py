"""Scratch buffers that a thread keeps from one chunk's task to the next.

dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_`` set, which pins glibc's mmap threshold at 128 kB: every
temporary of that size or more is then a fresh ``mmap``, page-faulted in as it is first written and unmapped when
freed. A kernel that needs the same large temporaries for every chunk asks for them here instead: the buffer of a
given name, shape and dtype is made once per thread and handed back on the next call (its contents are whatever
the last user left). A name is one use: two buffers alive at the same time need two names.

>>> a = scratch("doc", (4, 3)); a[:] = 1.0
>>> b = scratch("doc", (4, 3))
>>> import numpy as np; np.shares_memory(a, b), float(b.sum())  # the same memory, handed back
(True, 12.0)
>>> scratch("doc", (2, 3)).shape  # another shape: a view of the same memory when it fits
(2, 3)
"""

from __future__ import annotations

import threading

import numpy as np

_LOCAL = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
    """A C-contiguous buffer of ``shape`` kept by this thread under ``name`` (contents undefined)."""
    pool = getattr(_LOCAL, "pool", None)
    if pool is None:
        pool = _LOCAL.pool = {}
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    flat = pool.get((name, dtype))
    if flat is None or flat.size < size:
        flat = pool[(name, dtype)] = np.empty(size, dtype=dtype)
    return flat[:size].reshape(shape)
