"""The compiled hashing-trick kernel: UTF-8 documents → CSR rows equal to scikit-learn's ``HashingVectorizer``.

scikit-learn tokenises each document with the regular expression ``(?u)\\b\\w\\w+\\b`` in Python, joins n-grams
with spaces and hashes every feature string with MurmurHash3 (x86, 32 bit, seed 0) in Cython: the regular
expression and the Python objects cost most of its time. This kernel does the same on the UTF-8 bytes of a whole
row chunk at once: a token is a maximal run of at least two word code points (``\\w`` of a ``str`` pattern:
``str.isalnum()`` or ``_``; the table comes from Python itself), stop words are dropped by comparing bytes, each
n-gram's bytes (tokens joined by one space) are hashed by the same MurmurHash3, the index is
``abs(h) % n_features`` (scikit-learn's rule for ``h = -2**31``) and the sign ``+1`` for ``h >= 0`` (with
``alternate_sign``). Each row's features are then sorted and summed (explicit zeros kept, as
``csr_matrix.sum_duplicates``), set to one if ``binary``, and normalised with scikit-learn's arithmetic (sums
in float64, then a division), so the matrix is equal bit for bit (``tests/test_text.py``).

ASCII documents are lower-cased here, byte by byte (what ``str.lower`` does to ASCII); any other document comes
pre-processed by Python (``str.lower``, accent stripping) in a second buffer, so the result does not depend on
the path a document took.

>>> import numpy as np
>>> murmurhash3_32(np.frombuffer(b"hello", np.uint8), 0, 5)  # sklearn.utils.murmurhash3_32("hello")
613153351
"""

from __future__ import annotations

import numba
import numpy as np

_M32 = np.uint64(0xFFFFFFFF)
_C1 = np.uint64(0xCC9E2D51)
_C2 = np.uint64(0x1B873593)
_N = np.uint64(0xE6546B64)
_F1 = np.uint64(0x85EBCA6B)
_F2 = np.uint64(0xC2B2AE35)


@numba.njit(cache=True, nogil=True, inline="always")
def _rotl(x, r):  # pragma: no cover - compiled
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & _M32


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(k):  # pragma: no cover - compiled
    k = (k * _C1) & _M32
    k = _rotl(k, 15)
    return (k * _C2) & _M32


@numba.njit(cache=True, nogil=True)
def murmurhash3_32(buf, start, stop):  # pragma: no cover - compiled
    """MurmurHash3_x86_32 with seed 0 of ``buf[start:stop]`` (uint8), as a signed 32-bit integer."""
    h = np.uint64(0)
    n = stop - start
    nblocks = n // 4
    for b in range(nblocks):
        i = start + 4 * b
        k = np.uint64(buf[i]) | (np.uint64(buf[i + 1]) << np.uint64(8)) | (np.uint64(buf[i + 2]) << np.uint64(16)) \
            | (np.uint64(buf[i + 3]) << np.uint64(24))
        h ^= _mix(k)
        h = _rotl(h, 13)
        h = (h * np.uint64(5) + _N) & _M32
    tail = start + 4 * nblocks
    k = np.uint64(0)
    rem = n & 3
    if rem == 3:
        k ^= np.uint64(buf[tail + 2]) << np.uint64(16)
    if rem >= 2:
        k ^= np.uint64(buf[tail + 1]) << np.uint64(8)
    if rem >= 1:
        k ^= np.uint64(buf[tail])
        h ^= _mix(k)
    h ^= np.uint64(n)
    h ^= h >> np.uint64(16)
    h = (h * _F1) & _M32
    h ^= h >> np.uint64(13)
    h = (h * _F2) & _M32
    h ^= h >> np.uint64(16)
    v = np.int64(h)
    return v - 4294967296 if v >= 2147483648 else v


@numba.njit(cache=True, nogil=True, inline="always")
def _code_point(buf, i):  # pragma: no cover - compiled
    """(code point, its length in bytes) of the UTF-8 sequence at ``buf[i]`` (valid UTF-8: Python encoded it)."""
    b = np.int64(buf[i])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(buf[i + 1]) & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(buf[i + 1]) & 0x3F) << 6) | (np.int64(buf[i + 2]) & 0x3F), 3
    return (((b & 0x07) << 18) | ((np.int64(buf[i + 1]) & 0x3F) << 12) | ((np.int64(buf[i + 2]) & 0x3F) << 6)
            | (np.int64(buf[i + 3]) & 0x3F)), 4


@numba.njit(cache=True, nogil=True)
def _is_stop(buf, s, e, stop_hashes, stop_offsets, stop_bytes, h):  # pragma: no cover - compiled
    """Whether ``buf[s:e]`` (hash ``h``) is a stop word: binary search of the sorted hashes, then bytes."""
    lo, hi = 0, stop_hashes.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if stop_hashes[mid] < h:
            lo = mid + 1
        else:
            hi = mid
    while lo < stop_hashes.shape[0] and stop_hashes[lo] == h:
        a, b = stop_offsets[lo], stop_offsets[lo + 1]
        if b - a == e - s:
            same = True
            for t in range(e - s):
                if stop_bytes[a + t] != buf[s + t]:
                    same = False
                    break
            if same:
                return True
        lo += 1
    return False


@numba.njit(cache=True, nogil=True)
def hash_documents(buf, offsets, alt_buf, alt_offsets, alt_index, lower_ascii, is_word, n_features, min_n, max_n,
                   alternate_sign, binary, norm, stop_hashes, stop_offsets, stop_bytes, indices, values,
                   indptr):  # pragma: no cover - compiled
    """Hash the documents ``buf[offsets[r]:offsets[r + 1]]`` (or, where ``alt_index[r] >= 0``, document
    ``alt_index[r]`` of ``alt_buf`` / ``alt_offsets``) into the CSR arrays ``indices`` / ``values`` / ``indptr``
    (preallocated: at most ``(bytes // 2 + 1) * (max_n - min_n + 1)`` entries a document). ``norm``: 0 none,
    1 l1, 2 l2. Returns the number of entries written."""
    n_docs = offsets.shape[0] - 1
    longest = 0
    for r in range(n_docs):
        longest = max(longest, offsets[r + 1] - offsets[r])
    for r in range(alt_offsets.shape[0] - 1):
        longest = max(longest, alt_offsets[r + 1] - alt_offsets[r])
    tok_s = np.empty(longest // 2 + 2, np.int64)
    tok_e = np.empty(longest // 2 + 2, np.int64)
    scratch = np.empty(longest + 2, np.uint8)
    low = np.empty(longest + 1, np.uint8)
    keys = np.empty((longest // 2 + 2) * (max_n - min_n + 1), np.int64)
    nnz = 0
    indptr[0] = 0
    for r in range(n_docs):
        if alt_index[r] >= 0:
            src, s0, e0 = alt_buf, alt_offsets[alt_index[r]], alt_offsets[alt_index[r] + 1]
        else:
            src, s0, e0 = buf, offsets[r], offsets[r + 1]
        length = e0 - s0
        if lower_ascii and alt_index[r] < 0:
            for i in range(length):
                c = src[s0 + i]
                low[i] = c + 32 if 65 <= c <= 90 else c
        else:
            for i in range(length):
                low[i] = src[s0 + i]
        # tokens: maximal runs of >= 2 word code points (ASCII bytes looked up directly, others decoded)
        n_tok = 0
        i = 0
        while i < length:
            c = low[i]
            if c < 128:
                cp, w = np.int64(c), 1
            else:
                cp, w = _code_point(low, i)
            if is_word[cp]:
                start, count = i, 1
                i += w
                while i < length:
                    c = low[i]
                    if c < 128:
                        if not is_word[c]:
                            break
                        i += 1
                    else:
                        cp, w = _code_point(low, i)
                        if not is_word[cp]:
                            break
                        i += w
                    count += 1
                if count >= 2:
                    keep = True
                    if stop_hashes.shape[0] > 0:
                        keep = not _is_stop(low, start, i, stop_hashes, stop_offsets, stop_bytes,
                                            murmurhash3_32(low, start, i))
                    if keep:
                        tok_s[n_tok] = start
                        tok_e[n_tok] = i
                        n_tok += 1
            else:
                i += w
        # n-grams, hashed; keys = index * 2 + (sign > 0) so that one sort groups them by index
        n_keys = 0
        for n in range(min_n, max_n + 1):
            for t in range(n_tok - n + 1):
                if n == 1:
                    h = murmurhash3_32(low, tok_s[t], tok_e[t])
                else:
                    m = 0
                    for u in range(t, t + n):
                        if u > t:
                            scratch[m] = 32
                            m += 1
                        for q in range(tok_s[u], tok_e[u]):
                            scratch[m] = low[q]
                            m += 1
                    h = murmurhash3_32(scratch, 0, m)
                if h == -2147483648:
                    idx = (2147483647 - (n_features - 1)) % n_features
                else:
                    idx = abs(h) % n_features
                positive = 1 if (h >= 0 or not alternate_sign) else 0
                keys[n_keys] = idx * 2 + positive
                n_keys += 1
        row_keys = keys[:n_keys]
        row_keys.sort()
        row_start = nnz
        k = 0
        while k < n_keys:
            idx = row_keys[k] >> 1
            total = 0.0
            while k < n_keys and (row_keys[k] >> 1) == idx:
                total += 1.0 if (row_keys[k] & 1) else -1.0
                k += 1
            indices[nnz] = idx
            values[nnz] = 1.0 if binary else total
            nnz += 1
        if norm > 0:
            s = 0.0
            for j in range(row_start, nnz):
                v = np.float64(values[j])
                s += abs(v) if norm == 1 else v * v
            if s != 0.0:
                if norm == 2:
                    s = np.sqrt(s)
                for j in range(row_start, nnz):
                    values[j] = np.float64(values[j]) / s
        indptr[r + 1] = nnz
    return nnz


@numba.njit(cache=True, nogil=True)
def non_ascii_documents(buf, offsets):  # pragma: no cover - compiled
    """Indices of the documents of ``buf`` / ``offsets`` with a byte >= 0x80."""
    out = np.empty(offsets.shape[0] - 1, np.int64)
    m = 0
    for r in range(offsets.shape[0] - 1):
        for i in range(offsets[r], offsets[r + 1]):
            if buf[i] >= 0x80:
                out[m] = r
                m += 1
                break
    return out[:m]


_WORD: np.ndarray | None = None


def word_table() -> np.ndarray:
    """``is_word[cp]`` for every code point: what ``\\w`` matches in a ``str`` pattern (computed once a process,
    by Python itself: ``str.isalnum()`` or ``_``)."""
    global _WORD
    if _WORD is None:
        table = np.frombuffer(bytes(c.isalnum() for c in map(chr, range(0x110000))), dtype=np.uint8).copy()
        table[ord("_")] = 1
        _WORD = table
    return _WORD
