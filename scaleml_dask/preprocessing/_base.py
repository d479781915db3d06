"""The engine of the table transformers: statistics in one pass, fitting from them, and the per-chunk transform.

**One pass for every statistic.** A transformer (or a ``ColumnTransformer``, or a ``Pipeline`` of them) says which
statistics it needs of each input column (``_table_needs``); one pass over the table (``gather``) computes a
mergeable ``Summary`` per column — count, missing count, mean and sum of squared deviations (Chan's update), min
and max, level counts of a category, and where asked exact value counts or a quantile sketch — and each
transformer is fitted from the summaries of its inputs (``_table_fit``). A transformer also gives the summaries
of its *outputs*, derived exactly from its inputs' (a scaled column's mean and variance, an imputed column's, a
one-hot column's from the level counts), so the next step of a chain is fitted from them too: a pipeline of any
number of these transformers reads its data once to fit.

**One transform code.** ``_table_apply`` maps a block of canonical input columns (``_tabular``) to output
*pieces* — a float column, categorical ``Codes``, a ``OneHot`` column group — and ``assemble`` writes them into one
float64 block (or a CSR matrix) for the next estimator. The same functions run on a stored chunk inside an
estimator's task (``passes.derived``) and on the raw rows of a served request (``InputSchema.canonical``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from .._tabular import Canonical, Column, InputSchema, Table, TableInputError, as_table
from ..passes import thread_value
from ._kernels import fill_csr, fill_dense, first_moments, level_counts, second_moment
from ._sketch import EXACT, QuantileSketch

#: Most distinct values of a numeric column an encoder or ``most_frequent`` counts exactly.
MAX_VALUES = 10_000
#: Largest dense block (bytes) a transform writes for one chunk: wider output is refused with its width (use
#: ``sparse_output`` with an estimator that takes sparse input, or group rare levels).
MAX_DENSE_BLOCK_BYTES = 1 << 30


# ------------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Mergeable statistics of one canonical column (module docstring). ``counts`` (categorical) are per level;
    ``values`` (when asked) are ``(sorted distinct values, counts)``; ``sketch`` (when asked) the quantile sketch
    of the observed values."""

    n: int
    n_missing: int
    mean: float = np.nan
    m2: float = 0.0
    min: float = np.nan
    max: float = np.nan
    counts: np.ndarray | None = None
    values: tuple[np.ndarray, np.ndarray] | None = None
    sketch: QuantileSketch | None = None

    @property
    def count(self) -> int:
        """Observed (non-missing) values."""
        return self.n - self.n_missing

    @property
    def var(self) -> float:
        """Population variance of the observed values (scikit-learn's scalers')."""
        return self.m2 / self.count if self.count else np.nan

    def merge(self, other: Summary) -> Summary:
        a, b = self, other
        na, nb = a.count, b.count
        if na == 0 or nb == 0:
            mean, m2 = (b.mean, b.m2) if na == 0 else (a.mean, a.m2)
        else:
            n = na + nb
            delta = b.mean - a.mean
            mean = a.mean + delta * nb / n
            m2 = a.m2 + b.m2 + delta * delta * na * nb / n
        return Summary(a.n + b.n, a.n_missing + b.n_missing, mean, m2, np.fmin(a.min, b.min), np.fmax(a.max, b.max),
                       None if a.counts is None else a.counts + b.counts,
                       None if a.values is None else _merge_values(a.values, b.values),
                       None if a.sketch is None else QuantileSketch.merge([a.sketch, b.sketch]))

    def quantile(self, q: float) -> float:
        """A quantile of the observed values: exact from ``values``, else from the sketch."""
        if self.values is not None:
            values, counts = self.values
            cum = np.cumsum(counts)
            at = q * (cum[-1] - 1)
            i = int(np.floor(at))
            v0, v1 = values[np.searchsorted(cum, [i, min(i + 1, cum[-1] - 1)], side="right")]
            return float(v0 + (at - i) * (v1 - v0))
        if self.sketch is None:
            raise RuntimeError("a quantile was asked of a column summarised without a sketch")
        return self.sketch.quantile(q)

    def affine(self, a: float, b: float) -> Summary:
        """The summary of ``a·x + b``."""
        lo, hi = sorted((a * self.min + b, a * self.max + b))
        values = None if self.values is None else _order_values(a * self.values[0] + b, self.values[1])
        return replace(self, mean=a * self.mean + b, m2=a * a * self.m2, min=lo, max=hi, values=values,
                       sketch=None if self.sketch is None else self.sketch.affine(a, b), counts=None)

    def filled(self, value: float) -> Summary:
        """The summary once every missing value is ``value``."""
        k = self.n_missing
        if k == 0:
            return self
        fill = Summary(k, 0, float(value), 0.0, float(value), float(value), None,
                       None if self.values is None else (np.array([float(value)]), np.array([k])),
                       None if self.sketch is None else QuantileSketch.of_counts(np.array([value]), np.array([k])))
        return replace(self, n=self.n - k, n_missing=0, counts=None).merge(fill)


def of_values(values: np.ndarray, counts: np.ndarray, n_missing: int = 0) -> Summary:
    """The exact summary of ``values[i]`` repeated ``counts[i]`` times (and ``n_missing`` missing)."""
    values, counts = _order_values(np.asarray(values, np.float64), np.asarray(counts, np.int64))
    keep = counts > 0
    values, counts = values[keep], counts[keep]
    c = int(counts.sum())
    mean = float(counts @ values / c) if c else np.nan
    m2 = float(counts @ (values - mean) ** 2) if c else 0.0
    return Summary(c + n_missing, n_missing, mean, m2, float(values.min()) if c else np.nan,
                   float(values.max()) if c else np.nan, None, (values, counts), None)


def _order_values(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(values, kind="stable")
    return values[order], counts[order]


def _merge_values(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    v, inverse = np.unique(np.concatenate([a[0], b[0]]), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate([a[1], b[1]]), minlength=len(v)).astype(np.int64)
    return v, counts


def summarize(values: np.ndarray, kind: str, needs: frozenset[str], n_levels: int, name: str) -> Summary:
    """The summary of one canonical block of a column (``needs``: "values", "sketch")."""
    n = len(values)
    if kind == "text":  # documents: only how many are missing (stored as the empty document)
        return Summary(n, int((values == "").sum()) if n else 0)
    if kind == "categorical":
        counts = level_counts(values, n_levels)
        return Summary(n, n - int(counts.sum()), counts=counts)
    values = np.ascontiguousarray(values, dtype=np.float64)
    c, mean, lo, hi = first_moments(values)
    sketch = None
    if "sketch" in needs and c > EXACT:  # the moments' second pass and the sketch's in one
        sketch, m2 = QuantileSketch.with_moments(values, mean, lo, hi)
    else:
        m2 = second_moment(values, mean) if c else 0.0
        if "sketch" in needs:
            sketch = QuantileSketch.of_points(values, c)
    summary = Summary(n, n - c, float(mean), float(m2), float(lo), float(hi), sketch=sketch)
    if "values" in needs:
        v, counts = np.unique(values[~np.isnan(values)] if c < n else values, return_counts=True)
        _check_values(name, len(v))
        summary = replace(summary, values=(v, counts.astype(np.int64)))
    return summary


def _check_values(name: str, n: int) -> None:
    if n > MAX_VALUES:
        raise ValueError(f"column {name!r} has more than {MAX_VALUES:,} distinct values: too many to count as "
                         "categories (bin it, or declare it categorical at ingest)")


#: The key of the target's distinct values among the summaries of a statistics pass (``gather``'s ``target``).
TARGET = ("target",)


def distinct_labels(values: np.ndarray) -> np.ndarray | None:
    """The sorted distinct values of a target block (NaN once, last), or None beyond ``MAX_VALUES`` of them (not
    class labels: the estimator's own pass says so)."""
    v = np.unique(values)
    return v if len(v) <= MAX_VALUES else None


def merge_summaries(parts: Sequence[dict[str, Summary]]) -> dict[str, Summary]:
    """The pass's combine: each column's summaries merged (their sketches all at once: one compression)."""
    out = {}
    for name in parts[0]:
        group = [p[name] for p in parts]
        if name == TARGET:
            out[name] = None if any(g is None for g in group) else distinct_labels(np.concatenate(group))
            continue
        merged = group[0]
        for s in group[1:]:
            merged = replace(merged, sketch=None).merge(replace(s, sketch=None))
        if group[0].sketch is not None:
            merged = replace(merged, sketch=QuantileSketch.merge([s.sketch for s in group]))
        if merged.values is not None:
            _check_values(name, len(merged.values[0]))
        out[name] = merged
    return out


def _stats_block(*blocks: np.ndarray, chunk_index: int, row_start: int, reader: Any,
                 needs: dict[str, frozenset[str]], n_levels: dict[str, int], target: bool = False) -> dict:
    """The pass's kernel: the summaries of one chunk's columns (and, ``target``, the distinct values of the
    last block, the target's, under ``TARGET``)."""
    c = reader(blocks[:-1] if target else blocks)
    out: dict = {name: summarize(c.columns[name], kind, needs[name], n_levels.get(name, 0), name)
                 for name, (_, kind) in reader.where.items()}
    if target:
        out[TARGET] = distinct_labels(np.asarray(blocks[-1]))
    return out


_given = threading.local()


def needs_key(table: Table, needs: Mapping[str, set[str]]) -> tuple:
    """What ``given_summaries`` keys a table's summaries by: the table object and the statistics asked."""
    return id(table), tuple((n, frozenset(needs[n])) for n in table.schema.names if n in needs)


def given_summaries(summaries: Mapping[tuple, dict[str, Summary]]) -> AbstractContextManager:
    """Inside the block (this thread), ``gather`` hands back ``summaries[needs_key(table, needs)]`` instead of
    making a pass: a cross-validation computes every split's training statistics in one pass
    (``model_selection._tables``). The caller keeps the keyed tables alive."""
    return thread_value(_given, summaries)


def gather(table: Table, needs: Mapping[str, set[str]], target: Any = None) -> dict[str, Summary]:
    """Every summary ``needs`` names (column -> statistics beyond the basic ones), in one pass over ``table``;
    with ``target`` (a dask array of the table's rows: its target) also its distinct values, under ``TARGET``
    (a classifier's classes, found in the same pass)."""
    names = [n for n in table.schema.names if n in needs]
    if not names:
        return {}
    given = getattr(_given, "value", None)
    if given is not None and needs_key(table, needs) in given:
        return given[needs_key(table, needs)]
    frozen = {n: frozenset(needs[n]) for n in names}
    levels = {n: len(table.schema[n].levels) for n in names if table.schema[n].kind == "categorical"}
    if not table.lazy:
        return {n: summarize(table.data.columns[n], table.schema[n].kind, frozen[n], levels.get(n, 0), n)
                for n in names}
    from ..passes import one_pass

    sources, _ = table.sources(names)
    extra = [] if target is None else [target]
    return one_pass(_stats_block, merge_summaries, *sources, *extra, reader=table.reader(names, table.schema),
                    needs=frozen, n_levels=levels, target=target is not None)


# ------------------------------------------------------------------------------------------------------
# what flows from step to step
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnState:
    """A column between fitting steps: its (feature) name, kind, levels (categorical), summary, and the input
    column it comes from (named in errors)."""

    name: str
    kind: str
    summary: Summary
    levels: tuple[str, ...] | None = None
    source: str = ""
    dtype: str = ""


@dataclass
class Codes:
    """Categorical codes in flight (canonical: -1 missing, ``-2 - i`` the unknown level ``unknown[i]``) into
    ``levels``."""

    codes: np.ndarray
    unknown: list[str]
    levels: tuple[str, ...] = ()

    def text(self) -> np.ndarray:
        """The values as an object array of level strings (NaN for missing; unknown levels as they came)."""
        table = np.array(list(self.levels) + [np.nan] + self.unknown[::-1], dtype=object)
        return table[np.where(self.codes >= 0, self.codes, len(self.levels) + 1 + self.codes + len(self.unknown))]

    def __len__(self) -> int:
        return len(self.codes)


@dataclass
class Affine:
    """A float column in flight, kept lazy: ``missing`` where ``x`` is NaN (NaN: still missing), else
    ``a·(x - c) + b``. Imputers and scalers compose into it without touching the data; the assembly (or a step
    that needs the values) computes it once, subtracting the centre first as scikit-learn does."""

    x: np.ndarray
    c: float = 0.0
    a: float = 1.0
    b: float = 0.0
    missing: float = np.nan

    def __len__(self) -> int:
        return len(self.x)

    def then(self, c: float, a: float, b: float) -> Affine:
        """This column ``v``, then ``a·(v - c) + b``."""
        missing = a * (self.missing - c) + b
        if self.a == 1.0:  # v - c = x - (self.c - self.b + c): keep one exact subtraction
            return Affine(self.x, self.c - self.b + c, a, b, missing)
        return Affine(self.x, self.c, a * self.a, a * (self.b - c) + b, missing)

    def filled(self, value: float) -> Affine:
        """This column with its missing values replaced by ``value``."""
        return self if self.missing == self.missing else Affine(self.x, self.c, self.a, self.b, float(value))

    def isnan(self) -> np.ndarray:
        return np.isnan(self.x) if self.missing != self.missing else np.zeros(len(self.x), dtype=bool)

    def values(self) -> np.ndarray:
        if self.a == 1.0 and self.b == 0.0 and self.c == 0.0 and self.missing != self.missing:
            return self.x
        out = (self.x - self.c) * self.a + self.b
        if self.missing == self.missing:
            out[np.isnan(self.x)] = self.missing
        return out


@dataclass
class OneHot:
    """A group of ``width`` one-hot columns: row ``r`` has ``value`` in column ``index[r]`` (none where -1)."""

    index: np.ndarray
    width: int
    value: float = 1.0

    def __len__(self) -> int:
        return len(self.index)

    def dense(self) -> list[np.ndarray]:
        out = np.zeros((self.width, len(self.index)))
        rows = np.flatnonzero(self.index >= 0)
        out[self.index[rows], rows] = self.value
        return list(out)


Piece = np.ndarray | Affine | Codes | OneHot  # or a scipy.sparse CSR block of many columns (hashed text)


def _is_block(p: Any) -> bool:
    """Whether piece ``p`` is a CSR block of columns (``HashingVectorizer``'s output)."""
    return hasattr(p, "tocsr")


@dataclass(frozen=True)
class OnnxPiece:
    """A piece in an ONNX graph (``deploy.onnx``): the tensor ``name``, DOUBLE ``[N, width]`` for numbers, or STRING
    ``[N, 1]`` for a category (``levels`` set; ``""`` is missing)."""

    name: str
    width: int = 1
    levels: tuple[str, ...] | None = None


def onnx_numbers(pieces: Sequence[OnnxPiece], what: str) -> None:
    """Refuse a categorical piece where ``what`` takes numbers."""
    for p in pieces:
        if p.levels is not None:
            raise ValueError(f"cannot export {what} to ONNX: it is given a category")


def onnx_affine(g: Any, pieces: Sequence[OnnxPiece], c: np.ndarray, a: np.ndarray, b: np.ndarray | None,
                what: str) -> list[OnnxPiece]:
    """``a·(x - c) + b`` column by column (vectors over all the pieces' columns, in order), as ``Affine.then``."""
    onnx_numbers(pieces, what)
    out, j = [], 0
    for p in pieces:
        k = slice(j, j + p.width)
        j += p.width
        x = g.node("Mul", [g.node("Sub", [p.name, g.const("c", np.asarray(c[k], np.float64))], "centred"),
                           g.const("a", np.asarray(a[k], np.float64))], "scaled")
        if b is not None:
            x = g.node("Add", [x, g.const("b", np.asarray(b[k], np.float64))], "shifted")
        out.append(OnnxPiece(x, p.width))
    return out


def piece_width(p: Piece) -> int:
    return p.width if isinstance(p, OneHot) else p.shape[1] if _is_block(p) else 1


class WideStates(Sequence):
    """The states of a node's ``width`` output columns that are all alike (hashed features ``prefix0``,
    ``prefix1``...), made one at a time on demand: a million of them are never all held."""

    def __init__(self, prefix: str, width: int, summary: Summary, source: str) -> None:
        self.prefix, self.width, self.summary, self.source = prefix, int(width), summary, source

    def __len__(self) -> int:
        return self.width

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.width))]
        if not -self.width <= i < self.width:
            raise IndexError(i)
        return ColumnState(f"{self.prefix}{i % self.width}", "numeric", self.summary, None, self.source)

    def scaled(self, weight: float) -> WideStates:
        return WideStates(self.prefix, self.width, self.summary.affine(weight, 0.0), self.source)


class StateList(Sequence):
    """Output states of a composition: plain states and ``WideStates`` segments side by side, without expanding
    the segments."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = list(parts)  # ColumnState or WideStates
        self._ends = np.cumsum([len(p) if isinstance(p, WideStates) else 1 for p in self.parts], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = i + len(self) if i < 0 else i
        k = int(np.searchsorted(self._ends, i, side="right"))
        part = self.parts[k]
        return part[i - (int(self._ends[k - 1]) if k else 0)] if isinstance(part, WideStates) else part

    def categorical_sources(self) -> list[str]:
        return [p.source or p.name for p in self.parts if isinstance(p, ColumnState) and p.kind == "categorical"]


def categorical_sources(states: Sequence[ColumnState]) -> list[str]:
    """The input columns of the output states that are still categories (what a numeric step refuses)."""
    if isinstance(states, WideStates):
        return []
    if isinstance(states, StateList):
        return states.categorical_sources()
    return [s.source or s.name for s in states if s.kind == "categorical"]


def as_floats(pieces: Sequence[Piece]) -> list[np.ndarray]:
    """Pieces as float columns (one-hot groups expanded, affine columns computed)."""
    out: list[np.ndarray] = []
    for p in pieces:
        if _is_block(p):
            out += list(np.asarray(p.toarray(), dtype=np.float64).T)
        elif isinstance(p, OneHot):
            out += p.dense()
        elif isinstance(p, Codes):
            raise TypeError("categorical codes reached a numeric step")
        else:
            out.append(p.values() if isinstance(p, Affine) else p)
    return out


def as_affine(pieces: Sequence[Piece]) -> list[Affine]:
    """Float pieces as (lazy) affine columns, for the one-to-one numeric steps."""
    out: list[Affine] = []
    for p in pieces:
        if isinstance(p, Affine):
            out.append(p)
        elif isinstance(p, (OneHot, Codes)) or _is_block(p):
            out += [Affine(x) for x in as_floats([p])]
        else:
            out.append(Affine(p))
    return out


def assemble(pieces: Sequence[Piece], n: int, sparse: bool, dtype: Any = np.float64) -> Any:
    """Pieces side by side: a C-ordered float block, or a CSR matrix (``sparse``)."""
    if any(_is_block(p) for p in pieces):
        return _assemble_blocks(pieces, n, sparse, dtype)
    width = sum(piece_width(p) for p in pieces)
    if any(isinstance(p, Codes) for p in pieces):  # categories out of a standalone transformer: as text
        return np.column_stack([p.text() if isinstance(p, Codes) else np.asarray(p, dtype=object)
                                for p in as_text(pieces)])
    cols = [Affine(p) if isinstance(p, np.ndarray) else p for p in pieces]
    pos, j = [], 0
    for p in cols:
        pos.append(j)
        j += piece_width(p)
    dense = [k for k, p in enumerate(cols) if isinstance(p, Affine)]
    hot = [k for k, p in enumerate(cols) if isinstance(p, OneHot)]
    X = np.stack([cols[k].x for k in dense], out=_scratch("X", (len(dense), n), np.float64)) if dense else \
        np.empty((0, n))
    c = np.array([cols[k].c for k in dense], dtype=np.float64)
    a = np.array([cols[k].a for k in dense], dtype=np.float64)
    b = np.array([cols[k].b for k in dense], dtype=np.float64)
    missing = np.array([cols[k].missing for k in dense], dtype=np.float64)
    H = np.stack([cols[k].index for k in hot], out=_scratch("H", (len(hot), n), np.int64)) if hot else \
        np.empty((0, n), np.int64)
    offset = np.array([pos[k] for k in hot], dtype=np.int64)
    value = np.array([cols[k].value for k in hot], dtype=np.float64)
    dense_pos = np.array([pos[k] for k in dense], dtype=np.int64)
    if sparse:
        order = np.array([dense.index(k) if k in dense else len(dense) + hot.index(k) for k in range(len(cols))],
                         dtype=np.int64)
        block = TableBlock((X, c, a, b, missing, dense_pos, H, offset, value, order), (n, width))
        if sparse == TABLE_BLOCKS and np.dtype(dtype) == np.float64:
            return block
        return block.tocsr(dtype)
    out, stale, stale_offset = _dense_block(n, width, dense_pos, H, offset)
    fill_dense(out, X, c, a, b, missing, dense_pos, H, offset, value, stale, stale_offset)
    return out if np.dtype(dtype) == np.float64 else out.astype(dtype)


#: ``assemble``'s ``sparse`` for a consumer that takes ``TableBlock`` (SGD's local epochs): the rows as their parts.
TABLE_BLOCKS = "table"


@dataclass(frozen=True)
class TableBlock:
    """A chunk's transformed rows kept as ``fill_csr``'s inputs (affine columns, one-hot codes), not written out:
    SGD's local epochs read them row by row inside the kernel (``sgd._sparse.local_kernel_table``), touching only
    the non-zeros; ``tocsr`` and row slices give the same rows as the CSR path."""

    table_parts: tuple
    shape: tuple[int, int]

    def tocsr(self, dtype: Any = np.float64) -> Any:
        import scipy.sparse as sp

        data, indices, indptr = fill_csr(*self.table_parts)
        return sp.csr_matrix((data.astype(dtype, copy=False), indices, indptr), shape=self.shape)

    def __getitem__(self, rows: slice) -> Any:
        """Rows ``rows`` (a slice) as CSR."""
        X, c, a, b, missing, pos, H, offset, value, order = self.table_parts
        lo, hi, _ = rows.indices(self.shape[0])
        hi = max(lo, hi)
        part = (np.ascontiguousarray(X[:, lo:hi]), c, a, b, missing, pos, np.ascontiguousarray(H[:, lo:hi]),
                offset, value, order)
        return TableBlock(part, (hi - lo, self.shape[1])).tocsr()


def _assemble_blocks(pieces: Sequence[Piece], n: int, sparse: bool, dtype: Any) -> Any:
    """``assemble`` of pieces among which CSR blocks: the runs of other pieces assembled as CSR, then all stacked."""
    import scipy.sparse as sp

    parts, run = [], []
    for p in list(pieces) + [None]:
        if p is None or _is_block(p):
            if run:
                parts.append(assemble(run, n, True, dtype))
                run = []
            if p is not None:
                parts.append(sp.csr_matrix(p, dtype=dtype))
        else:
            run.append(p)
    out = parts[0] if len(parts) == 1 else sp.hstack(parts, format="csr", dtype=dtype)
    if sparse:
        return out
    check_dense_width(out.shape[1], n, "the assembled output")
    return out.toarray()


#: Per thread: the last dense block ``assemble`` wrote, with its layout and one-hot cells.
_BLOCKS = threading.local()


def _dense_block(n: int, width: int, pos: np.ndarray, H: np.ndarray,
                 offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block for ``assemble`` and the one-hot cells to clear in it: this thread's last block of the same layout
    when nothing but this cache holds it any more (the kernel that consumed it returned, keeping no view of it),
    with the cells its last fill set; else a new block of zeros. A new block costs its page faults at every chunk
    (dask's workers allocate every large array afresh: ``MALLOC_TRIM_THRESHOLD_``), more than filling it
    (benchmarks/README.md, "Tables"); a consumer that keeps the block (SGD's sync mode, a persisted array) just
    makes the next one new. A thread keeps its last block (the size of one transformed chunk)."""
    key = (n, width, pos.tobytes(), offset.tobytes())
    last = getattr(_BLOCKS, "last", None)
    if last is not None and last[0] == key and sys.getrefcount(last[1]) == 2:  # the tuple's ref and the argument
        out, stale, stale_offset = last[1], last[2], last[3]
    else:
        out, stale, stale_offset = np.zeros((n, width), dtype=np.float64), _NO_CELLS, _NO_OFFSETS
    _BLOCKS.last = (key, out, H, offset)
    return out, (stale if len(stale) else np.empty((0, n), np.int64)), stale_offset


_NO_CELLS, _NO_OFFSETS = np.empty((0, 0), np.int64), np.empty(0, np.int64)

#: Per thread: the last buffers ``assemble`` stacked a chunk's columns in.
_SCRATCH = threading.local()


def _scratch(slot: str, shape: tuple[int, int], dtype: Any) -> np.ndarray:
    """A buffer to stack a chunk's columns in: this thread's last one of ``slot`` when it has the shape and
    nothing but this cache holds it any more (the consumer of the block it went into returned it, keeping no
    view), else a new one. As ``_dense_block``: a new array costs its page faults at every chunk, more than the
    stacking (``TableBlock``s go to SGD's local epochs: every chunk, every epoch)."""
    buf = getattr(_SCRATCH, slot, None)
    if buf is None or buf.shape != shape or buf.dtype != dtype or sys.getrefcount(buf) > 3:  # here, cache, argument
        buf = np.empty(shape, dtype)
        setattr(_SCRATCH, slot, buf)
    return buf


def as_text(pieces: Sequence[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for p in pieces:
        if _is_block(p):
            out += as_floats([p])
            continue
        out += p.dense() if isinstance(p, OneHot) else [p.values() if isinstance(p, Affine) else p]
    return out


def check_dense_width(width: int, rows: int, what: str) -> None:
    """Refuse a dense block of ``rows`` x ``width`` float64 larger than ``MAX_DENSE_BLOCK_BYTES``, naming it."""
    nbytes = rows * width * 8
    if nbytes > MAX_DENSE_BLOCK_BYTES:
        raise ValueError(f"{what} is {width:,} columns wide: a dense chunk of {rows:,} rows would take "
                         f"{_size(nbytes)} (limit {_size(MAX_DENSE_BLOCK_BYTES)}). Group rare levels "
                         "(OneHotEncoder(min_frequency=..., max_categories=...)), or keep the output sparse "
                         "(sparse_output=True) for an estimator that takes sparse input")


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


# ------------------------------------------------------------------------------------------------------
# the transformers' base
# ------------------------------------------------------------------------------------------------------


class TableNode:
    """What a table transformer, a ``ColumnTransformer`` and a ``Pipeline`` of them implement, so that they
    compose in one statistics pass and one per-chunk transform (module docstring)."""

    def _table_needs(self, schema: InputSchema) -> dict[str, set[str]]:
        """Statistics needed beyond the basic ones, per input column of ``schema`` the node consumes."""
        raise NotImplementedError

    def _table_fit(self, states: list[ColumnState]) -> list[ColumnState]:
        """Fit from the input columns' states; the output columns' states."""
        raise NotImplementedError

    def _table_apply(self, pieces: list[Piece]) -> list[Piece]:
        """The output pieces of a block of input pieces (in the order ``_table_fit`` was given its states)."""
        raise NotImplementedError

    def _table_sparse(self) -> bool:
        """Whether the fitted output is sparse."""
        return False

    def _onnx_apply(self, g: Any, pieces: list[OnnxPiece]) -> list[OnnxPiece]:
        """``_table_apply`` as ONNX nodes added to ``g`` (``deploy.onnx.Graph``): the output pieces' tensors."""
        raise ValueError(f"cannot export a {type(self).__name__} to ONNX")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()  # a table takes missing values, text and categories
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags


class TableTransformer(TableNode, TransformerMixin, BaseEstimator):
    """Base of the column-wise table transformers: ``fit`` / ``transform`` on any table input (``_tabular.as_table``)
    through the one-pass engine; subclasses implement ``_needs``, ``_fit_columns`` and ``_apply_columns`` on the
    canonical columns they get."""

    def _needs(self, kind: str) -> set[str]:
        return set()

    def _table_needs(self, schema: InputSchema) -> dict[str, set[str]]:
        return {c.name: self._needs(c.kind) for c in schema}

    def _table_fit(self, states: list[ColumnState]) -> list[ColumnState]:
        self.n_features_in_ = len(states)
        self.feature_names_in_ = np.array([s.name for s in states], dtype=object)
        self.input_schema_ = InputSchema([Column(s.name, s.kind, s.dtype, s.levels) for s in states])
        out = self._fit_columns(states)
        self._n_out = len(out)
        self._categorical_out = categorical_sources(out)
        return out

    def _fit_columns(self, states: list[ColumnState]) -> list[ColumnState]:
        raise NotImplementedError

    def _table_apply(self, pieces: list[Piece]) -> list[Piece]:
        return self._apply_columns(pieces)

    def _apply_columns(self, pieces: list[Piece]) -> list[Piece]:
        raise NotImplementedError

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> TableTransformer:
        """Fit on ``X`` (a stored table or matrix: path, catalog name, xarray Dataset; a dask, zarr or numpy array;
        a pandas DataFrame or dict of columns), reading it once."""
        fit_node(self, as_table(X))
        return self

    def transform(self, X: Any) -> Any:
        """Transform ``X``: numpy (or scipy.sparse CSR) for in-memory input, a lazy row-chunked dask array
        computed chunk by chunk inside whatever consumes it for out-of-core input."""
        check_is_fitted(self, "input_schema_")
        return transform_node(self, X, self.input_schema_)

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> Any:
        return self.fit(X, y).transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns (scikit-learn's rules for each transformer)."""
        check_is_fitted(self, "input_schema_")
        names = list(self.feature_names_in_) if input_features is None else [str(f) for f in input_features]
        if len(names) != self.n_features_in_:
            raise ValueError(f"input_features has {len(names)} names; the transformer was fitted on "
                             f"{self.n_features_in_} columns")
        return np.array(self._names_out(names), dtype=object)

    def _names_out(self, names: list[str]) -> list[str]:
        return names


def initial_states(table: Table, summaries: Mapping[str, Summary], names: Sequence[str]) -> list[ColumnState]:
    return [ColumnState(n, table.schema[n].kind, summaries[n], table.schema[n].levels, n, table.schema[n].dtype)
            for n in names]


def fit_node(node: TableNode, table: Table, target: Any = None) -> np.ndarray | None:
    """Fit ``node`` on ``table`` from one statistics pass; the distinct values of ``target`` (a dask array of the
    table's rows) found in the same pass, when asked and found (else None)."""
    needs = node._table_needs(table.schema)
    summaries = dict(gather(table, needs, target))
    labels = summaries.pop(TARGET, None)
    node._table_fit(initial_states(table, summaries, [n for n in table.schema.names if n in needs]))
    return labels


def pieces_of(c: Canonical, names: Sequence[str], schema: InputSchema) -> list[Piece]:
    return [Codes(c.columns[n], c.unknown.get(n, []), schema[n].levels) if schema[n].kind == "categorical"
            else c.columns[n] for n in names]


def apply_block(c: Canonical, node: TableNode, names: Sequence[str], schema: InputSchema, sparse: bool) -> Any:
    """Canonical columns through ``node``, assembled (the per-block transform of every path)."""
    return assemble(node._table_apply(pieces_of(c, names, schema)), c.n, sparse)


def _transform_chunk(*blocks: np.ndarray, node: TableNode, reader: Any, names: list[str], schema: InputSchema,
                     sparse: bool) -> Any:
    return apply_block(reader(blocks), node, names, schema, sparse)


def transform_node(node: TableNode, X: Any, schema: InputSchema, *, sparse: bool | None = None,
                   estimator: str = "the transform") -> Any:
    """``node`` (fitted on ``schema``) applied to ``X``: in memory for raw values, else a ``passes.derived`` dask
    array whose chunks are transformed inside the tasks that consume them."""
    sparse = node._table_sparse() if sparse is None else sparse
    names = schema.names
    if _in_memory(X):
        c = schema.canonical(X, names) if not isinstance(X, Table) else X.data
        return apply_block(c, node, names, schema, sparse)
    table = as_table(X)
    _check_width(table, schema, node)
    if not table.lazy:
        return apply_block(_refit_levels(table, schema), node, names, schema, sparse)
    return derived_transform(node, table, schema, sparse, estimator)


def _check_width(table: Table, schema: InputSchema, node: Any) -> None:
    """An array (columns ``x0, x1, ...``) of another width than the fitted one: scikit-learn's error."""
    if table.schema.names[:1] == ["x0"] and schema.names[:1] == ["x0"] and len(table.schema) != len(schema):
        first = getattr(node, "nodes", [node])[0]
        raise ValueError(f"X has {len(table.schema)} features, but {type(first).__name__} is expecting {len(schema)} "
                         "features as input.")


def _refit_levels(table: Table, schema: InputSchema) -> Canonical:
    """An in-memory table's canonical columns in the codes of the fitted ``schema``."""
    out = Canonical(dict(table.data.columns), table.data.n, dict(table.data.unknown))
    for n in schema.names:
        if n not in table.schema:
            raise TableInputError(f"column {n!r} is missing (the input columns are {table.schema.names})", column=n)
        col, fit = table.schema[n], schema[n]
        if col.kind == "categorical" and col.levels != fit.levels:
            from .._tabular import _lookup

            lookup, unknown = _lookup(col.levels, fit.levels)
            out.columns[n] = lookup[out.columns[n]]
            out.unknown[n] = unknown
    return out


def derived_transform(node: TableNode, table: Table, schema: InputSchema, sparse: bool, estimator: str,
                      then: Any = None, width: int | None = None) -> Any:
    """The dask array of ``node``'s output over ``table`` (``then``: a function applied after, to the assembled
    block, with output ``width``)."""
    from ..passes import derived

    names = schema.names
    missing = [n for n in names if n not in table.schema]
    if missing:
        raise TableInputError(f"column {missing[0]!r} is missing (the input columns are {table.schema.names})",
                              column=missing[0])
    sources, _ = table.sources(names)
    reader = table.reader(names, schema)
    out_width = width if width is not None else node_width(node)
    categorical = getattr(node, "_categorical_out", [])
    if categorical and then is None:
        raise TableInputError(f"{estimator}: column {categorical[0]!r} comes out as a category; a transform of "
                              "stored data gives numbers: encode it (OneHotEncoder, OrdinalEncoder)",
                              column=categorical[0])
    rows = max(table.row_chunks)
    if not sparse:
        check_dense_width(out_width, rows, f"the output of {estimator}")
    meta = None if not sparse else _sparse_meta(out_width) if then is None else _meta_after(then, node_width(node))
    fn = _transform_chunk if then is None else _transform_then
    kwargs = {"node": node, "reader": reader, "names": names, "schema": schema, "sparse": sparse}
    if then is not None:
        kwargs["then"] = then
    return derived(fn, *sources, n_columns=out_width, meta=meta, **kwargs)


def _transform_then(*blocks: np.ndarray, node: TableNode, reader: Any, names: list[str], schema: InputSchema,
                    sparse: bool, then: Any) -> Any:
    return then(apply_block(reader(blocks), node, names, schema, sparse))


def node_width(node: TableNode) -> int:
    return int(node._n_out)


def _sparse_meta(width: int) -> Any:
    import scipy.sparse as sp

    return sp.csr_matrix((0, width))


def _meta_after(then: Any, width: int) -> Any:
    """The type ``then`` makes of a sparse block (an empty one of it), or None for numpy: tf-idf keeps CSR."""
    try:
        out = then(_sparse_meta(width))
    except Exception:  # a step that cannot take an empty block: its output is taken to be dense
        return None
    return out[:0] if hasattr(out, "tocsr") else None


def _in_memory(X: Any) -> bool:
    return not hasattr(X, "tocsr") and (hasattr(X, "iloc") or isinstance(X, Mapping)
                                        or (isinstance(X, list) and bool(X) and isinstance(X[0], Mapping)))


def require_finite(transformer: str, state: ColumnState, what: str, *values: float) -> None:
    """Refuse a statistic of an observed column that float64 cannot hold (a mean of values near ±1.8e308, their
    variance, their range), naming the column, rather than fit on NaN / inf."""
    if state.summary.count and not np.all(np.isfinite(values)):
        big = max(abs(state.summary.min), abs(state.summary.max))
        raise TableInputError(f"{transformer}: the {what} of column {state.source or state.name!r} overflows float64 "
                              f"(values up to {big:.3g} in magnitude): scale the column down",
                              column=state.source or state.name)


def require_kind(transformer: str, state: ColumnState, kinds: Sequence[str], fix: str) -> None:
    """Refuse an input column of a kind the transformer cannot take, naming it."""
    if state.kind not in kinds:
        raise TableInputError(f"{transformer}: column {state.source or state.name!r} is {state.kind}; {fix}",
                              column=state.source or state.name)
