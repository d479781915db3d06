"""Text: HashingVectorizer equal to scikit-learn's (real multilingual text, every option the kernel implements and
the ones scikit-learn keeps), lazily on text files inside the consuming task, TfidfTransformer from one pass, the
text sources and the generator with planted truth."""

from __future__ import annotations

import dask
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer as SkHashingVectorizer
from sklearn.feature_extraction.text import TfidfTransformer as SkTfidfTransformer

import scaleml_dask as sm
from scaleml_dask.feature_extraction.text import HashingVectorizer, TfidfTransformer
from scaleml_dask.io.store import IntegrityError
from scaleml_dask.io.synthetic_text import TextModel, make_text, read_text_meta
from scaleml_dask.io.text import load_chatterbot_corpus, open_text

LANGUAGES = ("english", "russian", "chinese", "hindi", "german", "turkish", "japanese", "korean", "persian")


@pytest.fixture(scope="module")
def real_text():
    docs, topics = load_chatterbot_corpus(LANGUAGES)
    extra = ["İstanbul ΣΑΣ ὈΔΥΣΣΕΎΣ naïve café_bar x_y 12 ½ ² ٣ Ⅻ \u00a0nbsp\u2003em", "", "a", "ab", "\t\n",
             "ﬁ ligature ǅ titlecase Straße MASSE", "emoji 😀 text 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 bold"]
    return docs + extra, topics


def _same(A, B):
    assert A.shape == B.shape and A.dtype == B.dtype
    np.testing.assert_array_equal(A.indptr, B.indptr)
    np.testing.assert_array_equal(A.indices, B.indices)
    np.testing.assert_array_equal(A.data, B.data)  # bit for bit, explicit zeros included


OPTIONS = [
    {},
    {"n_features": 2**20},
    {"n_features": 7, "norm": None, "alternate_sign": False},
    {"ngram_range": (1, 3), "stop_words": "english"},
    {"ngram_range": (2, 2), "stop_words": ["the", "is", "что", "是"]},
    {"strip_accents": "unicode", "binary": True, "norm": "l1"},
    {"strip_accents": "ascii", "lowercase": False, "dtype": np.float32},
    # not the compiled path: scikit-learn hashes these chunks itself
    {"analyzer": "char_wb", "ngram_range": (2, 4)},
    {"token_pattern": r"(?u)\b\w+\b"},
    {"preprocessor": str.upper, "lowercase": False},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_equal_to_scikit_learn_on_real_text(real_text, options):
    docs, _ = real_text
    got, want = HashingVectorizer(**options).transform(docs), SkHashingVectorizer(**options).transform(docs)
    assert got.shape == (len(docs), options.get("n_features", 2**20)) and got.nnz > len(docs)  # hashed to something
    _same(got, want)


def test_input_kinds_and_errors(real_text):
    docs, _ = real_text
    hv = HashingVectorizer(n_features=2**12)
    want = SkHashingVectorizer(n_features=2**12).transform(docs[:50])
    for given in (docs[:50], np.array(docs[:50], dtype=object), pa.array(docs[:50]), pa.chunked_array([docs[:50]]),
                  [d.encode("utf-8") for d in docs[:50]]):
        _same(hv.transform(given), want)
    with pytest.raises(ValueError, match="string object received"):
        hv.transform("one document")
    with pytest.raises(ValueError, match="document 2 is missing"):
        hv.transform(["a b", "c d", None])
    assert hv.fit(docs) is hv and hv.transform(docs[:3]).shape == (3, 2**12)


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """Generated documents written as Parquet (3 files of 1,000, unequal row groups) and as a text file."""
    d = tmp_path_factory.mktemp("text")
    model = TextModel.make(vocabulary=3000, topic_words=40, seed=5)
    docs, y = model.documents(0, 3000)
    docs = docs.to_pylist()
    docs[17] = "Ünïcødé İstanbul ΣΑΣ — mixed in with the generated ones"
    for k in range(3):
        pq.write_table(pa.table({"body": docs[1000 * k:1000 * (k + 1)], "label": y[1000 * k:1000 * (k + 1)]}),
                       d / f"part-{k}.parquet", row_group_size=400)
    (d / "lines.txt").write_text("\n".join(docs) + "\n", encoding="utf-8")
    return d, docs, y


def test_hashing_is_lazy_and_runs_inside_the_consuming_task(text_files, client):
    d, docs, y = text_files
    ds = open_text(sorted(d.glob("*.parquet")), text="body", target="label")
    assert ds["text"].data.chunks == ((400, 400, 200) * 3,)
    X = HashingVectorizer(n_features=2**16).transform(ds["text"])
    assert isinstance(X._meta, sp.csr_matrix) and X.shape == (3000, 2**16)
    from scaleml_dask.passes import map_row_chunks

    parts = map_row_chunks(lambda b, yb, *, chunk_index, row_start: (b, yb), X, ds["y"])
    assert not [k for k in dict(dask.delayed(parts).__dask_graph__()) if str(k).startswith("read-")]
    blocks = dask.compute(*parts)
    _same(sp.vstack([b for b, _ in blocks], format="csr"), SkHashingVectorizer(n_features=2**16).transform(docs))
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), y)
    lines = open_text(d / "lines.txt", chunk_rows=700)
    assert lines["text"].data.chunks == ((700, 700, 700, 700, 200),)
    _same(HashingVectorizer(n_features=2**16).transform(lines["text"]).compute(),
          SkHashingVectorizer(n_features=2**16).transform(docs))


def test_tfidf_from_one_pass_equals_scikit_learn(text_files):
    d, docs, _ = text_files
    counts = HashingVectorizer(n_features=2**14, norm=None, alternate_sign=False)
    X = counts.transform(open_text(d / "lines.txt", chunk_rows=700)["text"])
    Xm = SkHashingVectorizer(n_features=2**14, norm=None, alternate_sign=False).transform(docs)
    for params in ({}, {"smooth_idf": False, "sublinear_tf": True, "norm": "l1"}, {"use_idf": False}):
        ours = TfidfTransformer(**params).fit(X)
        ref = SkTfidfTransformer(**params).fit(Xm)
        if params.get("use_idf", True):
            np.testing.assert_array_equal(ours.idf_, ref.idf_)
        _same(ours.transform(X).compute(), sp.csr_matrix(ref.transform(Xm)))
        _same(ours.transform(Xm), sp.csr_matrix(ref.transform(Xm)))


def test_text_sources_refuse_what_changed_or_is_missing(tmp_path):
    pq.write_table(pa.table({"text": ["a b", None, "c d"], "label": [0, 1, 0]}), tmp_path / "n.parquet")
    ds = open_text(tmp_path / "n.parquet", target="label")
    with pytest.raises(ValueError, match=r"n.parquet \(rows 0-2\): column 'text' is missing at row 1"):
        ds["text"].compute()
    with pytest.raises(ValueError, match="no column 'body'"):
        open_text(tmp_path / "n.parquet", text="body")
    (tmp_path / "t.txt").write_text("one doc\nanother doc\n")
    ds = open_text(tmp_path / "t.txt")
    with open(tmp_path / "t.txt", "a") as f:
        f.write("appended later\n")
    with pytest.raises(IntegrityError, match=r"t.txt \(rows 0-1\): the file changed since the dataset was opened"):
        ds["text"].compute()
    (tmp_path / "b.txt").write_bytes(b"fine\n\xff\xfe broken\n")
    with pytest.raises(ValueError, match=r"b.txt \(rows 0-1\): not UTF-8 at byte 5"):
        open_text(tmp_path / "b.txt")["text"].compute()
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        open_text(tmp_path / "nothing-here")


def test_generated_text_is_deterministic_with_planted_truth(tmp_path, client):
    on_cluster = make_text(tmp_path / "a", 2500, chunk_rows=1000, vocabulary=3000, topic_words=40, seed=3,
                           client=client)
    local = make_text(tmp_path / "b", 2500, chunk_rows=1000, vocabulary=3000, topic_words=40, seed=3)
    a, b = sm.open_dataset(on_cluster), sm.open_dataset(local)
    assert a["text"].values.tolist() == b["text"].values.tolist()
    np.testing.assert_array_equal(a["y"].values, b["y"].values)
    meta = read_text_meta(on_cluster)
    assert meta["n_docs"] == 2500 and 0.6 < meta["bayes_accuracy"] < 1.0 and len(meta["topics"]) == 2
    lengths = np.array([len(d.split()) for d in a["text"].values])
    assert 45 < np.median(lengths) < 75 and lengths.max() > 3 * np.median(lengths)  # a heavy right tail
    y = a["y"].values
    topic_word = meta["topics"][1][0]  # the most frequent word of class 1's topic: mostly in class-1 documents
    has = np.array([topic_word in d.lower().split() for d in a["text"].values])
    assert has.sum() > 50 and y[has].mean() > 0.9
