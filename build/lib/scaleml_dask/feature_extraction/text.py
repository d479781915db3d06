"""Text to sparse features, out of core: the hashing trick and tf-idf, equal to scikit-learn's.

``HashingVectorizer`` is stateless: on in-memory documents (a list, a numpy or pandas column, an Arrow array) it
returns the ``csr_matrix`` scikit-learn's ``HashingVectorizer`` returns, equal bit for bit, computed by a compiled
kernel (``_hashing``) for the usual options (word analyzer, the default token pattern, any n-gram range, stop
words, lowercase, accent stripping, binary, norms, alternate signs) and by scikit-learn itself for the rest
(callables, character n-grams, other token patterns). On a column of documents that is a dask array (a text
dataset's ``text`` variable: ``io.text.open_text``) it returns a lazy dask array of ``csr_matrix`` row chunks
whose hashing runs inside the task that consumes each chunk (``passes.derived``): no hashed copy is written
unless asked (``io.sparse.write_sparse``).

``TfidfTransformer`` learns ``idf_`` from one pass of per-chunk document frequencies (scikit-learn's formula
and arithmetic) and transforms chunk by chunk, also lazily.

>>> docs = ["the quick brown fox", "the lazy dog", "quick quick fox"]
>>> X = HashingVectorizer(n_features=2**10).transform(docs)
>>> X.shape, X.nnz
((3, 1024), 9)
>>> from sklearn.feature_extraction.text import HashingVectorizer as SkHashingVectorizer
>>> (X != SkHashingVectorizer(n_features=2**10).transform(docs)).nnz
0
>>> T = TfidfTransformer().fit(X)
>>> T.transform(X).shape
(3, 1024)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer as _SkHashingVectorizer
from sklearn.feature_extraction.text import TfidfTransformer as _SkTfidfTransformer
from sklearn.utils.validation import check_is_fitted

__all__ = ["HashingVectorizer", "TfidfTransformer", "hash_block", "ingest_hashed"]

#: scikit-learn's default token pattern, the one the compiled kernel implements.
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"


@dataclass(frozen=True)
class HashSpec:
    """A HashingVectorizer's parameters, small and hashable: what a row chunk's task needs to hash it."""

    params: tuple

    @property
    def kw(self) -> dict:
        return dict(self.params)

    @property
    def fast(self) -> bool:
        """Whether the compiled kernel implements these options (else scikit-learn hashes the chunk)."""
        p = self.kw
        return (p["analyzer"] == "word" and p["preprocessor"] is None and p["tokenizer"] is None
                and p["token_pattern"] == DEFAULT_TOKEN_PATTERN and p["input"] == "content"
                and (p["strip_accents"] in (None, "ascii", "unicode"))
                and np.dtype(p["dtype"]) in (np.float32, np.float64))


def _is_lazy(X: Any) -> bool:
    xr = sys.modules.get("xarray")
    if xr is not None and isinstance(X, xr.DataArray):
        return True
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(X, da.Array)


class HashingVectorizer(_SkHashingVectorizer):
    """scikit-learn's ``HashingVectorizer`` (same parameters, same output), fast, and lazy on dask columns.

    ``transform`` of in-memory documents returns a ``csr_matrix`` equal to scikit-learn's; of a dask array of
    documents (1-d, object or string dtype: e.g. ``open_text(...)["text"]``), a dask array of ``csr_matrix`` row
    chunks hashed inside the tasks that consume them. It holds no state: ``fit`` only checks the parameters.

    Examples
    --------
    >>> hv = HashingVectorizer(n_features=16, norm=None, alternate_sign=False)
    >>> hv.transform(["a b ab ab abc"]).toarray().astype(int).tolist()
    [[0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
    """

    def _spec(self) -> HashSpec:
        return HashSpec(tuple(sorted(self.get_params().items())))

    def transform(self, X: Any) -> Any:
        """Hash the documents ``X``: a ``csr_matrix`` for in-memory input, a lazy dask array of them for a dask
        (or xarray) column."""
        if isinstance(X, str):
            raise ValueError("Iterable over raw text documents expected, string object received.")
        self._validate_params()
        self._validate_ngram_range()
        if _is_lazy(X):
            import scipy.sparse as sp

            from ..passes import derived

            data = X.data if hasattr(X, "dims") else X
            if data.ndim != 1:
                raise ValueError(f"the documents must be a 1-d column; got shape {data.shape}")
            return derived(hash_block, data, n_columns=self.n_features, dtype=np.dtype(self.dtype),
                           meta=sp.csr_matrix((0, 0), dtype=self.dtype), spec=self._spec())
        return hash_block(X, spec=self._spec())

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """``transform`` (the vectorizer is stateless)."""
        return self.fit(X, y).transform(X)

    def fit(self, X: Any, y: Any = None) -> HashingVectorizer:
        """Check the parameters (nothing to learn); ``X`` is not read."""
        if isinstance(X, str):
            raise ValueError("Iterable over raw text documents expected, string object received.")
        self._validate_params()
        self._validate_ngram_range()
        return self

    def partial_fit(self, X: Any, y: Any = None) -> HashingVectorizer:
        """``fit`` (nothing to learn)."""
        return self.fit(X, y)

    def _as_table_node(self) -> Any:
        """This vectorizer as a branch of a ``compose.ColumnTransformer`` on one text column of a table."""
        from ._table import HashedColumn

        return HashedColumn(self)


def hash_block(docs: Any, *, spec: HashSpec, chunk_index: int = -1, row_start: int = 0) -> Any:
    """The ``csr_matrix`` of one block of documents (any sequence of str, an Arrow string array), equal to
    scikit-learn's ``HashingVectorizer(**spec).transform(docs)``."""
    import scipy.sparse as sp

    kw = spec.kw
    if spec.fast:
        out = _hash_fast(docs, kw, row_start)
        if out is not None:
            return out
    X = _SkHashingVectorizer(**kw).transform(_as_list(docs, row_start))
    return sp.csr_matrix(X)


def _as_list(docs: Any, row_start: int) -> list:
    if hasattr(docs, "to_pylist"):
        docs = docs.to_pylist()
    elif hasattr(docs, "tolist"):
        docs = docs.tolist()
    docs = list(docs)
    for i, d in enumerate(docs):
        if d is None or (isinstance(d, float) and np.isnan(d)):
            raise ValueError(f"document {row_start + i} is missing (None / NaN); a document must be a string")
    return docs


def _arrow_strings(docs: Any, row_start: int) -> Any:
    """``docs`` as one Arrow large_string array (no missing values), or None if they are not all str."""
    import pyarrow as pa

    if isinstance(docs, pa.ChunkedArray):
        docs = docs.combine_chunks()
    if not isinstance(docs, pa.Array):
        try:
            docs = pa.array(docs if not hasattr(docs, "to_numpy") else docs.to_numpy(), type=pa.large_string(),
                            from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
    elif not pa.types.is_large_string(docs.type):
        if not (pa.types.is_string(docs.type) or pa.types.is_string_view(docs.type)):
            return None
        docs = docs.cast(pa.large_string())
    if docs.null_count:
        first = int(np.flatnonzero(np.asarray(docs.is_null()))[0])
        raise ValueError(f"document {row_start + first} is missing (null); a document must be a string")
    return docs


def _buffers(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, offsets from 0) of an Arrow large_string array, without copying the bytes."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    buf = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    if offsets[0] != 0:
        buf, offsets = buf[offsets[0]:offsets[-1]], offsets - offsets[0]
    return buf, offsets


_STOP_CACHE: dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _stop_arrays(stop: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stop words as (sorted murmur hashes, byte offsets, bytes) for the kernel."""
    from sklearn.utils import murmurhash3_32

    key = None if stop is None else tuple(sorted(stop))
    if key not in _STOP_CACHE:
        words = sorted((murmurhash3_32(w, positive=False), w.encode("utf-8")) for w in (key or ()))
        hashes = np.array([h for h, _ in words], dtype=np.int64)
        offsets = np.zeros(len(words) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(b) for _, b in words])
        data = np.frombuffer(b"".join(b for _, b in words), dtype=np.uint8).copy()
        _STOP_CACHE[key] = (hashes, offsets, data)
    return _STOP_CACHE[key]


def _hash_fast(docs: Any, kw: dict, row_start: int) -> Any:
    """The compiled path; None when the documents are not all strings (scikit-learn then decides)."""
    import scipy.sparse as sp

    from ._hashing import hash_documents, non_ascii_documents, word_table

    arr = _arrow_strings(docs, row_start)
    if arr is None:
        return None
    buf, offsets = _buffers(arr)
    n = len(arr)
    alt_index = np.full(n, -1, dtype=np.int64)
    alt_buf, alt_offsets = np.empty(0, np.uint8), np.zeros(1, np.int64)
    if kw["lowercase"] or kw["strip_accents"]:
        rows = non_ascii_documents(buf, offsets)
        if len(rows):
            pre = _SkHashingVectorizer(**kw).build_preprocessor()
            enc = [pre(arr[int(r)].as_py()).encode("utf-8") for r in rows]
            alt_buf = np.frombuffer(b"".join(enc), dtype=np.uint8)
            alt_offsets = np.zeros(len(enc) + 1, dtype=np.int64)
            alt_offsets[1:] = np.cumsum([len(e) for e in enc])
            alt_index[rows] = np.arange(len(rows))
    tmp = _SkHashingVectorizer(**kw)
    stop = _stop_arrays(tmp.get_stop_words())
    min_n, max_n = kw["ngram_range"]
    orders = max(0, max_n - min_n + 1)
    capacity = (len(buf) // 2 + len(alt_buf) // 2 + 2 * n + 1) * max(1, orders)
    dtype = np.dtype(kw["dtype"])
    indices = np.empty(capacity, dtype=np.int32)
    values = np.empty(capacity, dtype=dtype)
    indptr = np.empty(n + 1, dtype=np.int32 if capacity < 2**31 else np.int64)
    norm = {None: 0, "l1": 1, "l2": 2}[kw["norm"]]
    nnz = hash_documents(buf, offsets, alt_buf, alt_offsets, alt_index, bool(kw["lowercase"]), word_table(),
                         int(kw["n_features"]), int(min_n), int(max_n), bool(kw["alternate_sign"]),
                         bool(kw["binary"]), norm, *stop, indices, values, indptr)
    return sp.csr_matrix((values[:nnz].copy(), indices[:nnz].copy(), indptr), shape=(n, int(kw["n_features"])))


# ------------------------------------------------------------------------------------------------------
# tf-idf
# ------------------------------------------------------------------------------------------------------


class TfidfTransformer(_SkTfidfTransformer):
    """scikit-learn's ``TfidfTransformer`` (same parameters, same ``idf_``, same output) on data larger than memory:
    ``fit`` on a dask array (of ``csr_matrix`` or dense chunks) learns the document frequencies in one pass;
    ``transform`` of a dask array is lazy, chunk by chunk.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> counts = sp.csr_matrix(np.array([[3, 0, 1], [2, 0, 0], [3, 0, 0], [4, 0, 0], [3, 2, 0], [3, 0, 2]]))
    >>> np.round(TfidfTransformer().fit(counts).idf_, 3).tolist()
    [1.0, 2.253, 1.847]
    """

    def fit(self, X: Any, y: Any = None) -> TfidfTransformer:
        """Learn ``idf_`` (one pass over a dask array; scikit-learn's own fit for in-memory input)."""
        if not _is_lazy(X):
            return super().fit(X, y)
        self._validate_params()
        from ..passes import one_pass
        from ..validation import as_dask_array

        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        n, p = dX.shape
        dtype = dX.dtype if dX.dtype in (np.float64, np.float32) else np.dtype(np.float64)
        self.n_features_in_ = p
        if self.use_idf:
            df = one_pass(_document_frequency, _sum, dX).astype(dtype, copy=False)
            df += float(self.smooth_idf)
            n_samples = n + int(self.smooth_idf)
            self.idf_ = np.full_like(df, fill_value=n_samples, dtype=dtype)
            self.idf_ /= df
            np.log(self.idf_, out=self.idf_)
            self.idf_ += 1.0
        return self

    def transform(self, X: Any, copy: bool = True) -> Any:
        """tf-idf of ``X``: a ``csr_matrix`` for in-memory input, a lazy dask array of them for dask input."""
        if not _is_lazy(X):
            import scipy.sparse as sp

            return sp.csr_matrix(super().transform(X, copy=copy))
        import scipy.sparse as sp

        from ..passes import derived
        from ..validation import as_dask_array, check_n_features

        dX = as_dask_array(X, "X", ndim=2, accept_sparse=True)
        if hasattr(self, "n_features_in_"):
            check_n_features(self, dX.shape[1])
        if self.use_idf:
            check_is_fitted(self, "idf_")
        dtype = dX.dtype if dX.dtype in (np.float64, np.float32) else np.dtype(np.float64)
        state = {"norm": self.norm, "use_idf": self.use_idf, "smooth_idf": self.smooth_idf,
                 "sublinear_tf": self.sublinear_tf}
        return derived(tfidf_block, dX, n_columns=dX.shape[1], dtype=dtype, meta=sp.csr_matrix((0, 0), dtype=dtype),
                       params=state, idf=getattr(self, "idf_", None))


def _document_frequency(X: Any, *, chunk_index: int, row_start: int) -> np.ndarray:
    """Documents (rows) holding each feature in one block, as scikit-learn counts them (stored entries of CSR)."""
    import scipy.sparse as sp

    X = sp.csr_matrix(X)
    return np.bincount(X.indices, minlength=X.shape[1]).astype(np.int64)


def _sum(parts: list) -> Any:
    return sum(parts[1:], parts[0])


def tfidf_block(X: Any, *, params: dict, idf: np.ndarray | None, chunk_index: int = -1, row_start: int = 0) -> Any:
    """tf-idf of one block with learned ``idf`` (scikit-learn's ``transform`` itself)."""
    import scipy.sparse as sp

    t = _SkTfidfTransformer(**params)
    t.n_features_in_ = X.shape[1]
    if idf is not None:
        t.idf_ = idf
    return sp.csr_matrix(t.transform(X))


from ._table import ingest_hashed  # noqa: E402 - defined beside the table node (which imports this module lazily)
