"""Preprocessing, ColumnTransformer and Pipeline against scikit-learn on small data, in memory and on a store.

Each configuration is built twice from the same recipe — with scikit-learn's classes and with ours — and fitted on
the same table: scikit-learn on a pandas DataFrame, ours on that DataFrame and on the store ingested from its CSV.
The transforms (of rows with unknown levels where the configuration takes them) and the feature names must be
equal. Also: one pass for every statistic (chunk reads counted on the cluster), the median sketch's bound, errors
that name the column, scikit-learn's parameter protocol.
"""

from __future__ import annotations

import types
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import sklearn.compose
import sklearn.impute
import sklearn.pipeline
import sklearn.preprocessing
from distributed import get_task_stream
from distributed.utils import key_split
from sklearn.base import clone

import scaleml_dask as sm
from scaleml_dask import compose, pipeline, preprocessing
from scaleml_dask._tabular import TableInputError
from scaleml_dask.io import read
from scaleml_dask.io.ingest import ingest

SK = types.SimpleNamespace(**{n: getattr(m, n) for m, names in [
    (sklearn.preprocessing, ["StandardScaler", "MinMaxScaler", "OneHotEncoder", "OrdinalEncoder"]),
    (sklearn.impute, ["SimpleImputer"]),
    (sklearn.compose, ["ColumnTransformer", "make_column_transformer", "make_column_selector"]),
    (sklearn.pipeline, ["make_pipeline"])] for n in names})
OURS = types.SimpleNamespace(**{n: getattr(m, n) for m, names in [
    (preprocessing, ["StandardScaler", "MinMaxScaler", "OneHotEncoder", "OrdinalEncoder", "SimpleImputer"]),
    (compose, ["ColumnTransformer", "make_column_transformer", "make_column_selector"]),
    (pipeline, ["make_pipeline"])] for n in names})

N, CHUNK = 3_000, 700
REGIONS = ["north", "south", "east", "west", "center"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    price = np.round(rng.lognormal(3, 0.5, n), 3)
    price[rng.random(n) < 0.06] = np.nan
    region = rng.choice(REGIONS, n, p=[0.4, 0.3, 0.2, 0.09, 0.01]).astype(object)
    region[rng.random(n) < 0.03] = np.nan
    city = np.array([f"c{int(i):02d}" for i in rng.zipf(1.6, n) % 40], dtype=object)
    return pd.DataFrame({"price": price, "qty": rng.integers(0, 9, n), "region": region, "city": city,
                         "flag": rng.random(n) < 0.3})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("prep")
    train = _frame(N, 0)
    train.to_csv(d / "train.csv", index=False)
    ingest(d / "train.csv", d / "train.zarr", chunk_rows=CHUNK)
    test = _frame(200, 1)
    test.loc[:4, "region"] = ["zz-unknown", "north", "south", "zz-unknown", "east"]
    test.loc[5:7, "city"] = "c-unknown"
    return train, test, d / "train.zarr"


def _c1(m):
    return m.make_column_transformer(
        (m.make_pipeline(m.SimpleImputer(strategy="median"), m.StandardScaler()), ["price", "qty"]),
        (m.OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["region", "city"]), remainder="passthrough")


def _c2(m):
    return m.make_column_transformer(
        (m.SimpleImputer(strategy="mean", add_indicator=True), ["price"]),
        (m.MinMaxScaler(feature_range=(-1, 2), clip=True), ["qty"]),
        (m.OneHotEncoder(min_frequency=0.05, handle_unknown="infrequent_if_exist", sparse_output=False), ["region"]),
        (m.OrdinalEncoder(max_categories=5, handle_unknown="use_encoded_value", unknown_value=-1), ["city"]))


def _c3(m):
    return m.make_column_transformer(
        (m.make_pipeline(m.SimpleImputer(strategy="most_frequent"),
                         m.OneHotEncoder(drop="first", max_categories=4, sparse_output=False,
                                         handle_unknown="infrequent_if_exist")), ["region", "city"]),
        (m.make_pipeline(m.SimpleImputer(strategy="constant", fill_value=-1.0), m.StandardScaler()),
         m.make_column_selector(dtype_include=np.number)))


def _c4(m):
    return m.ColumnTransformer(
        [("enc", m.OneHotEncoder(drop="if_binary", handle_unknown="ignore"), ["flag", "region"]),
         ("num", m.StandardScaler(with_mean=False), ["price"])], sparse_threshold=0.9)


def _c5(m):
    return m.ColumnTransformer(
        [("cat", m.make_pipeline(m.SimpleImputer(strategy="constant"), m.OneHotEncoder(
            handle_unknown="infrequent_if_exist", min_frequency=20, sparse_output=False)), ["region"]),
         ("ord", m.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, min_frequency=0.02),
          m.make_column_selector("^ci"))],
        remainder=m.StandardScaler(), transformer_weights={"cat": 2.0, "remainder": 0.5},
        verbose_feature_names_out=False)


def _c6(m):
    return m.make_column_transformer(
        (m.OneHotEncoder(drop=["south", "c01"], sparse_output=False, handle_unknown="ignore"), ["region", "city"]),
        (m.SimpleImputer(strategy="median", keep_empty_features=True), ["price"]))


CONFIGS = [_c1, _c2, _c3, _c4, _c5, _c6]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.__name__ for c in CONFIGS])
def test_transform_equals_scikit_learn_in_memory_and_on_the_store(data, config):
    train, test, store = data
    ref = config(SK).fit(train)
    ours = config(OURS).fit(train)
    assert list(ours.get_feature_names_out()) == list(ref.get_feature_names_out())
    want, got = ref.transform(test), ours.transform(test)
    assert sp.issparse(got) == sp.issparse(want)
    np.testing.assert_allclose(_dense(got), _dense(want), rtol=1e-12, atol=1e-12)
    on_store = config(OURS).fit(store)
    assert list(on_store.get_feature_names_out()) == list(ref.get_feature_names_out())
    np.testing.assert_allclose(_dense(on_store.transform(test)), _dense(want), rtol=1e-12, atol=1e-12)
    lazy = on_store.transform(store)
    np.testing.assert_allclose(_dense(lazy.compute()), _dense(ref.transform(train)), rtol=1e-12, atol=1e-12)
    assert lazy.chunks[0] == sm.open_dataset(store)["price"].data.chunks[0]


def _dense(a):
    return a.toarray() if sp.issparse(a) else np.asarray(a, dtype=np.float64)


def test_fitted_attributes_equal_scikit_learn(data):
    train, _, _ = data
    cols = ["region", "city"]
    for make in (lambda m: m.OneHotEncoder(max_categories=6, drop="first"),
                 lambda m: m.OrdinalEncoder(min_frequency=30)):
        ref, ours = make(SK).fit(train[cols]), make(OURS).fit(train[cols])
        for a, b in zip(ref.categories_, ours.categories_):
            assert [str(v) for v in a] == [str(v) for v in b]
        for a, b in zip(ref.infrequent_categories_, ours.infrequent_categories_):
            assert (a is None and b is None) or [str(v) for v in a] == [str(v) for v in b]
    ref = SK.OneHotEncoder(max_categories=6, drop="first").fit(train[cols])
    assert list(ref.drop_idx_) == list(OURS.OneHotEncoder(max_categories=6, drop="first").fit(train[cols]).drop_idx_)
    num = ["price", "qty", "flag"]
    for make, attrs in [(lambda m: m.StandardScaler(), ["mean_", "var_", "scale_", "n_samples_seen_"]),
                        (lambda m: m.MinMaxScaler(), ["data_min_", "data_max_", "scale_", "min_"]),
                        (lambda m: m.SimpleImputer(strategy="median"), ["statistics_"])]:
        ref, ours = make(SK).fit(train[num]), make(OURS).fit(train[num])
        for a in attrs:
            np.testing.assert_allclose(np.asarray(getattr(ours, a), float), np.asarray(getattr(ref, a), float),
                                       rtol=1e-13)


def test_every_statistic_in_one_pass_read_once_per_chunk(client, data):
    """Five transformers over four columns (a median, means and variances, level counts, value counts): one
    pass, each column's chunk read once, in the statistics kernel's task, on the workers."""
    train, _, store = data
    ct = _c2(OURS)
    ct.transformers.append(("median", OURS.make_pipeline(OURS.SimpleImputer(strategy="median"),
                                                          OURS.StandardScaler()), ["price", "qty"]))
    before = sum(sum(c.values()) for c in client.run(lambda: dict(read.reads)).values())
    with get_task_stream(client) as ts:
        ct.fit(store)
    reads = sum(sum(c.values()) for c in client.run(lambda: dict(read.reads)).values()) - before
    n_chunks = -(-N // CHUNK)
    assert reads == n_chunks * 4  # price, qty, region, city: once each
    assert Counter(key_split(t["key"]) for t in ts.data) == {"stats_block": n_chunks}
    want = _c2(SK).fit(train).transform(train.head(50))
    np.testing.assert_allclose(ct.transform(train.head(50))[:, :want.shape[1]], want, rtol=1e-12)


def test_median_sketch_keeps_its_bounds(rng):
    """On a store-sized column (not exact at this size) the median is within its value bound of numpy's and its
    true rank within its rank bound of the middle."""
    import dask.array as da

    n = 400_000
    x = rng.lognormal(0, 2, n)
    x[rng.random(n) < 0.1] = np.nan
    imp = OURS.SimpleImputer(strategy="median").fit(da.from_array(x[:, None], chunks=(10_000, 1)))
    m, err, value_err = imp.statistics_[0], imp.median_rank_error_[0], imp.median_error_[0]
    obs = x[~np.isnan(x)]
    half = len(obs) / 2
    assert 0 < err <= len(obs) / 1000 and 0 < value_err < 1e-3
    assert (obs < m).sum() <= half + err and (obs <= m).sum() >= half - err
    assert 0 < abs(m - np.median(obs)) <= value_err  # not exact at this size: the bound is what holds


@pytest.mark.parametrize("planted", ["offset normal", "both signs", "heavy tail", "integers", "tiny scale",
                                     "zeros"])
def test_median_sketch_within_its_bound_of_numpy_and_the_same_whatever_the_chunking(rng, planted):
    from scaleml_dask.preprocessing._sketch import QuantileSketch

    n = 120_000
    x = {"offset normal": rng.normal(1e4, 3.0, n), "both signs": rng.standard_normal(n) * 5 - 1,
         "heavy tail": rng.standard_cauchy(n), "integers": rng.integers(-20, 40, n).astype(float),
         "tiny scale": rng.lognormal(-30, 1, n), "zeros": np.where(rng.random(n) < 0.6, 0.0, rng.random(n))}[planted]
    x[rng.random(n) < 0.05] = np.nan
    obs = x[~np.isnan(x)]
    sketches = []
    for cuts in ([0, n], [0, 30_000, 60_000, 90_000, n], [0, 7, 1000, 5000, 77_777, 77_790, n]):
        parts = [QuantileSketch.of(x[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
        sketches.append(QuantileSketch.merge(parts[::-1]) if len(parts) < 5 else
                        QuantileSketch.merge([QuantileSketch.merge(parts[:3]), QuantileSketch.merge(parts[3:])]))
    assert all(s == sketches[0] for s in sketches)  # bit for bit, whatever the chunking and merge order
    s = sketches[0]
    m, (value_err, rank_err) = s.median(), s.median_error()
    exact = np.median(obs)
    assert s.r >= 7 and abs(m - exact) <= value_err <= 2.0 ** -s.r * max(abs(exact), 2.0 ** -16)  # a bin's width
    assert (obs < m).sum() <= len(obs) / 2 + rank_err and (obs <= m).sum() >= len(obs) / 2 - rank_err
    if planted in ("integers", "zeros"):
        assert m == np.median(obs) and value_err == 0  # every value its own bin near the middle
    small = x[:3001]
    assert QuantileSketch.merge([QuantileSketch.of(small[:1000]), QuantileSketch.of(small[1000:])]).median() == \
        np.nanmedian(small)  # at most 4,096 values: exact


def test_median_sketch_of_values_near_the_float64_limits(rng):
    """Keys of ±1e308 differ by more than 2**63: the sketch still finds a resolution (it once failed with
    "negative dimensions"), the median within its bound of numpy's, one chunk or many."""
    from scaleml_dask.preprocessing._sketch import QuantileSketch

    x = rng.choice([-1.0, 1.0], 60_001) * rng.uniform(1e307, np.finfo(float).max, 60_001)
    one, many = QuantileSketch.of(x), QuantileSketch.merge([QuantileSketch.of(x[i:i + 7000]) for i in
                                                             range(0, len(x), 7000)])
    assert one == many
    m, (value_err, rank_err) = one.median(), one.median_error()
    assert np.isfinite(m) and abs(m - np.median(x)) <= value_err
    assert (x < m).sum() <= len(x) / 2 + rank_err and (x <= m).sum() >= len(x) / 2 - rank_err
    frame = pd.DataFrame({"a": [1e308, -1e308, 1e308, np.nan, 5.0] * 1000})  # few values: exact
    assert OURS.SimpleImputer(strategy="median").fit(frame).statistics_[0] == np.nanmedian(frame["a"])


def test_statistics_float64_cannot_hold_are_refused_by_column():
    """Values near ±1.8e308: a variance, a range or a mean past float64 is refused naming the column (once NaN
    scales and NaN outputs an estimator then blamed on the data); a mean float64 can hold is still exact."""
    frame = pd.DataFrame({"ok": [1.0, 2.0, 3.0] * 3, "big": [1e308, -1e308, 2.0] * 3})
    for t, what in ((OURS.StandardScaler(), "mean and variance"), (OURS.MinMaxScaler(), "range")):
        with pytest.raises(TableInputError, match=f"the {what} of column 'big' overflows float64"):
            t.fit(frame)
    assert OURS.SimpleImputer().fit(frame).statistics_[1] == pytest.approx(6.0 / 9, rel=1e-15)
    with pytest.raises(TableInputError, match="the mean of column 'big' overflows"):
        OURS.SimpleImputer().fit(frame.assign(big=[1e308, 1e308, 2.0] * 3))


def test_median_sketch_bins_hold_their_edge_or_their_bounds(rng):
    """Beyond 4,096 values a bin keeps its count and whether every value in it is its edge (its bound nearest
    zero): values with few significant bits give numpy's median exactly; values on their bins' edges in a chunk
    of narrow range (a fine resolution) but off them at the merged, coarser one are marked so in the merge — the
    sketch equal to the whole column's — and the median is then within a bin's width of numpy's."""
    from scaleml_dask.preprocessing._sketch import EXACT, QuantileSketch

    quarters = rng.integers(-400, 400, 50_000) / 4
    narrow = 1 + rng.integers(0, 1024, 30_000) / 1024  # 10 significant bits, alone at r >= 10
    mixed = np.concatenate([narrow, rng.integers(1, 10**6, 20_000).astype(float)])  # merged: r = 9
    for x in (quarters, mixed):
        whole = QuantileSketch.of(x)
        parts = [QuantileSketch.of(x[i:i + 10_000]) for i in range(0, len(x), 10_000)]
        assert QuantileSketch.merge(parts) == whole and whole.n > EXACT
        m, (value_err, rank_err) = whole.median(), whole.median_error()
        if x is quarters:
            assert m == np.median(x) and (value_err, rank_err) == (0.0, 0)
            continue
        assert parts[0].r >= 10 and whole.r == 9 and parts[0].on_edge.all() and not whole.on_edge.all()
        assert 0 < abs(m - np.median(x)) <= value_err <= 2.0 ** -whole.r * abs(m)
        assert (x < m).sum() <= len(x) / 2 + rank_err and (x <= m).sum() >= len(x) / 2 - rank_err


def test_median_sketch_through_scaling_and_imputation():
    """A scaled column's sketch (read through the affine map), then filled: the median of ``a·x + b`` with the
    missing values imputed, exact for few values."""
    from scaleml_dask.preprocessing._base import of_values, summarize

    x = np.array([4.0, np.nan, 1.0, 9.0, np.nan, 2.0, 7.0])
    s = summarize(x, "numeric", frozenset({"sketch"}), 0, "x")
    assert s.affine(-2.0, 1.0).quantile(0.5) == np.median(-2 * x[~np.isnan(x)] + 1)
    filled = s.affine(-2.0, 1.0).filled(100.0)
    assert filled.quantile(0.5) == np.median(np.where(np.isnan(x), 100.0, -2 * x + 1))
    assert of_values(np.array([3.0, 1.0]), np.array([2, 1])).quantile(0.5) == 3.0
    big = np.random.default_rng(1).normal(5.0, 2.0, 10_000)
    big[::7] = np.nan
    with_sketch, alone = (summarize(big, "numeric", frozenset(w), 0, "x") for w in ({"sketch"}, set()))
    assert with_sketch.m2 == alone.m2 and with_sketch.sketch.r < 52  # its squared deviations fused in: same bits


def test_raw_rows_refused_by_column_and_parameters_follow_scikit_learn(data):
    train, test, _ = data
    enc = OURS.OneHotEncoder().fit(train[["region"]])
    with pytest.raises(TableInputError, match=r"column 'region': unknown category 'zz-unknown' \(not seen in fit; "
                                              r"handle_unknown='error'\)") as exc:
        enc.transform(test[["region"]])
    assert exc.value.column == "region"
    pipe = OURS.make_pipeline(_c1(OURS), sm.LinearRegression())
    pipe.fit(train, train["price"].fillna(0) * 2)
    with pytest.raises(TableInputError, match=r"column 'city' is missing") as exc:
        pipe.predict(test.drop(columns="city"))
    assert exc.value.column == "city"
    with pytest.raises(TableInputError, match=r"column 'price': 'cheap' is not a number"):
        pipe.predict(test.assign(price=["cheap"] * len(test)))
    one = pipe.predict({"price": 20.0, "qty": 3, "region": "north", "city": "c03", "flag": True})
    np.testing.assert_allclose(one, pipe.predict(pd.DataFrame([{"price": 20.0, "qty": 3, "region": "north",
                                                               "city": "c03", "flag": True}])))
    params = pipe.get_params()
    assert params["columntransformer__onehotencoder__handle_unknown"] == "ignore"
    pipe.set_params(columntransformer__onehotencoder__handle_unknown="error", linearregression__solver="tsqr")
    twin = clone(pipe)
    assert twin.get_params()["columntransformer__onehotencoder__handle_unknown"] == "error"
    assert twin[-1].solver == "tsqr" and not hasattr(twin[-1], "coef_")
    schema = pipe.fit(train, train["qty"]).input_schema_
    assert schema.to_dict()["columns"][2] == {"name": "region", "kind": "categorical", "dtype": "str",
                                              "levels": sorted(REGIONS)}
    with pytest.raises(TypeError, match="not a table transformer: use those of scaleml_dask.preprocessing"):
        OURS.make_column_transformer((sklearn.preprocessing.StandardScaler(), ["price"])).fit(train)
    with pytest.raises(TableInputError, match=r"StandardScaler: column 'region' is categorical; scale numbers"):
        OURS.StandardScaler().fit(train[["price", "region"]])
