"""Synthetic text with planted truth: documents of a Zipf vocabulary with class-dependent topic words.

The model (what ``TextModel`` holds, and what the dataset's ``TEXT_META`` file records):

- a vocabulary of ``vocabulary`` pronounceable pseudo-words (two to eight letters, the frequent ones short), with
  Zipf–Mandelbrot background frequencies ``p(r) ∝ 1 / (r + 2.7) ** zipf`` by rank, as word counts of real text;
- per class, ``topic_words`` words of middle rank (not the most frequent: those are function words), each with its
  own Zipf weight inside the topic;
- a document: its class uniform over ``n_classes``, its length log-normal (median ``median_length`` tokens,
  log-sd ``length_sigma``: the heavy right tail of real document lengths), each token from the class's topic with
  probability ``topic_rate``, else from the background; the first letter capitalised, a full stop at the end.

Because tokens are drawn independently given the class, multinomial naive Bayes with the true probabilities is
the Bayes classifier: its accuracy on a fresh seeded sample, ``bayes_accuracy``, is the best any classifier can
reach, and the ceiling a fitted model is measured against. Chunks are deterministic per ``(seed, chunk index)``
and written in parallel (one Parquet file per chunk, one row group), so the data do not depend on the number of
workers.

>>> m = TextModel.make(vocabulary=2000, n_classes=2, topic_words=50, seed=0)
>>> docs, y = m.documents(0, 3)
>>> first = docs[0].as_py()
>>> len(docs), y.tolist(), first[0].isupper(), first.endswith("."), round(m.bayes_accuracy(2000), 2)
(3, [1, 1, 1], True, True, 0.94)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from . import destination

#: The file a generated text dataset carries: the generator's parameters, the planted topics, the Bayes accuracy.
TEXT_META = "scaleml_text.json"
_CONSONANTS = "bcdfghklmnprstvwz"
_VOWELS = "aeiouy"


@dataclass(frozen=True)
class TextModel:
    """The planted model: vocabulary, background and topic distributions, the length distribution."""

    words: tuple[str, ...]
    background: np.ndarray  # (V,) probabilities by rank
    topics: np.ndarray  # (n_classes, topic_words) word ids
    topic_weights: np.ndarray  # (topic_words,) probabilities inside a topic
    topic_rate: float
    median_length: float
    length_sigma: float
    seed: int

    @classmethod
    def make(cls, *, vocabulary: int = 50_000, n_classes: int = 2, topic_words: int = 300, topic_rate: float = 0.05,
             zipf: float = 1.05, median_length: float = 60.0, length_sigma: float = 0.75, seed: int = 0) -> TextModel:
        if vocabulary < 10 or n_classes < 2 or topic_words < 1:
            raise ValueError("need vocabulary >= 10, n_classes >= 2, topic_words >= 1")
        if n_classes * topic_words > vocabulary // 2:
            raise ValueError(f"{n_classes} topics of {topic_words} words need a vocabulary of at least "
                             f"{2 * n_classes * topic_words} words")
        rng = np.random.default_rng([seed, 0x7E47])
        words = _pseudo_words(vocabulary, rng)
        ranks = np.arange(vocabulary, dtype=np.float64)
        background = 1.0 / (ranks + 2.7) ** zipf
        background /= background.sum()
        lo = min(100, vocabulary // 10)
        pool = rng.permutation(np.arange(lo, vocabulary))[: n_classes * topic_words]
        topics = pool.reshape(n_classes, topic_words)
        topic_weights = 1.0 / (np.arange(topic_words) + 1.0)
        topic_weights /= topic_weights.sum()
        return cls(tuple(words), background, topics, topic_weights, float(topic_rate), float(median_length),
                   float(length_sigma), int(seed))

    @property
    def n_classes(self) -> int:
        return self.topics.shape[0]

    def token_ids(self, index: int, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chunk ``index``: (labels, document offsets into the tokens, token word ids)."""
        rng = np.random.default_rng([self.seed, int(index)])
        y = rng.integers(0, self.n_classes, n_docs)
        lengths = np.clip(np.round(rng.lognormal(np.log(self.median_length), self.length_sigma, n_docs)), 1, 5000)
        offsets = np.zeros(n_docs + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths.astype(np.int64))
        n = int(offsets[-1])
        cdf = np.cumsum(self.background)
        ids = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)
        topical = rng.random(n) < self.topic_rate
        k = int(topical.sum())
        tcdf = np.cumsum(self.topic_weights)
        which = np.minimum(np.searchsorted(tcdf, rng.random(k) * tcdf[-1], side="right"), len(tcdf) - 1)
        doc_of = np.repeat(np.arange(n_docs), np.diff(offsets))
        ids[topical] = self.topics[y[doc_of[topical]], which]
        return y.astype(np.int64), offsets, ids.astype(np.int64)

    def documents(self, index: int, n_docs: int) -> tuple[Any, np.ndarray]:
        """Chunk ``index`` of ``n_docs`` documents as an Arrow string array, and their labels."""
        import pyarrow as pa

        y, offsets, ids = self.token_ids(index, n_docs)
        wbytes, woffsets = self._word_buffer()
        buf, doc_offsets = _render(wbytes, woffsets, ids, offsets)
        arr = pa.LargeStringArray.from_buffers(n_docs, pa.py_buffer(doc_offsets), pa.py_buffer(buf))
        return arr, y

    def _word_buffer(self) -> tuple[np.ndarray, np.ndarray]:
        enc = [w.encode("ascii") for w in self.words]
        offsets = np.zeros(len(enc) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(e) for e in enc])
        return np.frombuffer(b"".join(enc), dtype=np.uint8), offsets

    def log_likelihoods(self, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """(n_docs, n_classes) log-likelihood of each document's tokens under each class."""
        out = np.empty((len(offsets) - 1, self.n_classes))
        for c in range(self.n_classes):
            p = (1 - self.topic_rate) * self.background
            np.add.at(p, self.topics[c], self.topic_rate * self.topic_weights)
            out[:, c] = np.add.reduceat(np.log(p)[ids], offsets[:-1]) if len(ids) else 0.0
        return out

    def bayes_accuracy(self, n_docs: int = 20_000) -> float:
        """Accuracy of the Bayes classifier (naive Bayes with the true probabilities) on a fresh sample."""
        y, offsets, ids = self.token_ids(2**31 - 1, n_docs)
        return float(np.mean(self.log_likelihoods(ids, offsets).argmax(axis=1) == y))

    def describe(self) -> dict:
        return {"vocabulary": len(self.words), "n_classes": self.n_classes, "topic_words": self.topics.shape[1],
                "topic_rate": self.topic_rate, "median_length": self.median_length,
                "length_sigma": self.length_sigma, "seed": self.seed,
                "topics": [[self.words[i] for i in t[:10]] for t in self.topics]}


def _pseudo_words(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct pronounceable words, shorter ones first (they get the frequent ranks)."""
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    seen: set[str] = set()
    words: list[str] = []
    k = 1
    while len(words) < n:
        count = min(len(syllables) ** k, 4 * (n - len(words)) + 16)
        picks = rng.integers(0, len(syllables), size=(count, k))
        for row in picks:
            w = "".join(syllables[j] for j in row)
            if w not in seen:
                seen.add(w)
                words.append(w)
                if len(words) == n:
                    break
        k += 1
    return words


@numba.njit(cache=True, nogil=True)
def _render(wbytes, woffsets, ids, offsets):  # pragma: no cover - compiled
    """The documents' UTF-8 bytes (words joined by spaces, capitalised, a full stop at the end) and offsets."""
    n_docs = offsets.shape[0] - 1
    total = 0
    for t in range(ids.shape[0]):
        total += woffsets[ids[t] + 1] - woffsets[ids[t]] + 1
    buf = np.empty(total + n_docs, np.uint8)
    doc_offsets = np.empty(n_docs + 1, np.int64)
    pos = 0
    for d in range(n_docs):
        doc_offsets[d] = pos
        for t in range(offsets[d], offsets[d + 1]):
            if t > offsets[d]:
                buf[pos] = 32
                pos += 1
            w = ids[t]
            first = pos
            for q in range(woffsets[w], woffsets[w + 1]):
                buf[pos] = wbytes[q]
                pos += 1
            if t == offsets[d]:
                buf[first] -= 32
        buf[pos] = 46
        pos += 1
    doc_offsets[n_docs] = pos
    return buf[:pos], doc_offsets


def _write_chunk(tmp: str, index: int, n_docs: int, model: TextModel) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs, y = model.documents(index, n_docs)
    name = f"part-{index:05d}.parquet"
    pq.write_table(pa.table({"text": docs, "label": y}), os.path.join(tmp, name), row_group_size=n_docs,
                   compression="zstd")
    return name


def make_text(path: str | os.PathLike, n_docs: int, *, chunk_rows: int = 100_000, n_classes: int = 2,
              vocabulary: int = 50_000, topic_words: int = 300, topic_rate: float = 0.05,
              median_length: float = 60.0, length_sigma: float = 0.75, seed: int = 0, first_chunk: int = 0,
              client: Any = None, progress: bool = False, overwrite: bool = False) -> Path:
    """Write ``n_docs`` generated documents as a directory of Parquet files (``text``, ``label``), atomically
    (a text dataset written here is replaced only with ``overwrite=True``, anything else refused:
    ``io.destination``).

    One file of ``chunk_rows`` documents (one row group) per chunk, made in parallel on ``client`` if given. The
    directory's ``TEXT_META`` records the parameters, the first topic words of each class and the Bayes accuracy.
    ``first_chunk``: the chunks drawn are ``first_chunk, first_chunk + 1, ...`` of the model of ``seed``: other
    documents from the same model (a held-out set).

    >>> import tempfile, os
    >>> path = make_text(os.path.join(tempfile.mkdtemp(), "docs"), 500, chunk_rows=200, vocabulary=2000,
    ...                  topic_words=40)
    >>> sorted(os.listdir(path))[1:], read_text_meta(path)["n_docs"]  # after the owner marker
    (['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet', 'scaleml_text.json'], 500)
    """
    if n_docs < 1 or chunk_rows < 1:
        raise ValueError(f"n_docs and chunk_rows must be >= 1; got {n_docs}, {chunk_rows}")
    model = TextModel.make(vocabulary=vocabulary, n_classes=n_classes, topic_words=topic_words,
                           topic_rate=topic_rate, median_length=median_length, length_sigma=length_sigma, seed=seed)
    dest = destination.claim(path, "text-dataset", overwrite=overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    destination.clean_stale(dest.parent)
    tmp = destination.temporary_dir(dest, "text-dataset")
    try:
        args = [(str(tmp), first_chunk + i, min(chunk_rows, n_docs - i * chunk_rows), model)
                for i in range(-(-n_docs // chunk_rows))]
        if client is not None:
            futures = client.map(_write_chunk, *zip(*args), pure=False)
            if progress:
                from distributed import progress as dprogress

                dprogress(futures)
            client.gather(futures)
        else:
            it = args
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(args, desc=f"generate {dest.name}", unit="chunk")
            for a in it:
                _write_chunk(*a)
        meta = {"generator": "text", "n_docs": n_docs, "chunk_rows": chunk_rows, "first_chunk": first_chunk,
                "text_column": "text",
                "target_column": "label", "bayes_accuracy": model.bayes_accuracy(), **model.describe()}
        Path(tmp, TEXT_META).write_text(json.dumps(meta, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return destination.publish(tmp, dest)


def read_text_meta(path: str | os.PathLike) -> dict:
    """The ``TEXT_META`` of a generated text dataset."""
    return json.loads(Path(path, TEXT_META).read_text())
