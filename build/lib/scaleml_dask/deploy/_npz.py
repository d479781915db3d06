"""Reading the arrays of an ``.npz`` as declared, within bounds: never more bytes than the declaration allows.

``numpy.load`` inflates a member before anything checks its size, so a small archive can claim gigabytes.
Here each wanted member's ``.npy`` header is read first and must declare exactly the dtype and shape the
metadata declares (plain scalar dtypes only, C order); then exactly that many bytes are inflated into a
preallocated array, and one byte more must not exist. The zip CRC is checked as the member ends.

>>> import io, numpy as np
>>> buf = io.BytesIO(); np.savez_compressed(buf, a=np.arange(3.0))
>>> read(buf.getvalue(), {"a": (np.dtype("<f8"), (3,))})["a"].tolist()
[0.0, 1.0, 2.0]
>>> read(buf.getvalue(), {"a": (np.dtype("<f8"), (4,))})
Traceback (most recent call last):
...
ValueError: array 'a' is <f8 [3] in the file, the metadata declares <f8 [4]
"""

from __future__ import annotations

import io
import math
import zipfile
from typing import IO

import numpy as np

#: Bytes of a ``.npy`` member's magic and header, at most (numpy writes 64-byte aligned headers; a long
#: shape adds a few characters per dimension).
MAX_HEADER_BYTES = 4096


def read(data: bytes, wanted: dict[str, tuple[np.dtype, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """The arrays ``wanted`` (name -> declared dtype and shape) from the bytes of an ``.npz``; ``ValueError``
    naming the array and the problem otherwise (a bad archive, a missing member, a header or size that is
    not the declared one, a CRC failure)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"not a readable .npz archive: {exc}") from None
    out: dict[str, np.ndarray] = {}
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        missing = sorted(n for n in wanted if f"{n}.npy" not in members)
        if missing:
            raise ValueError(f"arrays {missing} are missing")
        for name, (dtype, shape) in wanted.items():
            info = members[f"{name}.npy"]
            size = math.prod(shape) * dtype.itemsize
            if info.file_size > size + MAX_HEADER_BYTES:
                raise ValueError(f"array {name!r} inflates to {info.file_size} bytes; its declared "
                                 f"{dtype.str} {list(shape)} holds {size}")
            try:
                with archive.open(info) as f:
                    out[name] = _member(f, name, dtype, shape, size)
            except ValueError:
                raise
            except Exception as exc:  # noqa: BLE001 - zip, zlib, bz2, lzma each fail their own way on bad bytes
                raise ValueError(f"array {name!r} cannot be read ({type(exc).__name__}: {exc})") from None
    return out


def _member(f: IO[bytes], name: str, dtype: np.dtype, shape: tuple[int, ...], size: int) -> np.ndarray:
    head = io.BytesIO(f.read(MAX_HEADER_BYTES))
    try:
        major, _ = np.lib.format.read_magic(head)
        read_header = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}[major]
        got_shape, fortran, got_dtype = read_header(head, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, KeyError, TypeError, SyntaxError, EOFError, MemoryError, RecursionError) as exc:
        raise ValueError(f"array {name!r} has no valid .npy header: {exc}") from None
    if got_dtype != dtype or tuple(got_shape) != shape or fortran:
        layout = " (Fortran order)" if fortran else ""
        raise ValueError(f"array {name!r} is {got_dtype.str} {list(got_shape)}{layout} in the file, the metadata "
                         f"declares {dtype.str} {list(shape)}")
    a = np.empty(shape, dtype)
    view = memoryview(a.reshape(-1).view(np.uint8)) if size else memoryview(bytearray(0))
    rest = head.read()  # data bytes already read with the header
    n = len(rest)
    if n > size:
        raise ValueError(f"array {name!r} has more bytes than its declared {dtype.str} {list(shape)}")
    view[:n] = rest
    while n < size:
        got = f.readinto(view[n:])
        if not got:
            raise ValueError(f"array {name!r} is short: {n} of {size} bytes")
        n += got
    if f.read(1):
        raise ValueError(f"array {name!r} has more bytes than its declared {dtype.str} {list(shape)}")
    return a
