"""Random projections and feature selectors in the model registry (arrays + JSON, no pickle): saved, loaded and the
same transform to 1e-12, dense and sparse; a sparse projection's matrix and a selector's score function stored by
value and by name, tampered ones refused by name; a pipeline of raw columns holding them served over HTTP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from fitted import small_table

import scaleml_dask as sm
from scaleml_dask.compose import make_column_transformer
from scaleml_dask.deploy.registry import RegistryError, content_sha256, load_model, save_model
from scaleml_dask.feature_selection import (
    SelectKBest,
    SelectPercentile,
    VarianceThreshold,
    chi2,
    f_classif,
    f_regression,
)
from scaleml_dask.pipeline import make_pipeline
from scaleml_dask.preprocessing import OneHotEncoder, SimpleImputer, StandardScaler
from scaleml_dask.random_projection import GaussianRandomProjection, SparseRandomProjection


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(200, 40)))
    X[:, 5] = 1.0  # a constant column (VarianceThreshold drops it)
    return X, (X[:, 0] + X[:, 3] > 1.6).astype(int), sp.random(50, 40, density=0.2, format="csr", random_state=1)


def test_projections_and_selectors_round_trip(tmp_path, data):
    X, y, S = data
    models = [GaussianRandomProjection(7, random_state=0), SparseRandomProjection(7, random_state=0),
              SparseRandomProjection(7, random_state=1, compute_inverse_components=True, dense_output=True),
              SelectKBest(f_classif, k=4), SelectKBest(chi2, k=2), SelectPercentile(f_regression, percentile=20),
              VarianceThreshold(0.2)]
    for i, m in enumerate(models):
        m.fit(X, y)
        save_model(m, tmp_path / str(i))
        back = load_model(tmp_path / str(i))
        assert type(back) is type(m) and back.get_params() == m.get_params()  # score_func: the same function
        for Z in (X, S):
            a, b = back.transform(Z), m.transform(Z)
            assert sp.issparse(a) == sp.issparse(b)
            np.testing.assert_allclose(a.toarray() if sp.issparse(a) else a, b.toarray() if sp.issparse(b) else b,
                                       rtol=1e-12, atol=1e-12)
    assert sp.issparse(load_model(tmp_path / "1").components_)
    meta = json.loads((tmp_path / "3" / "1" / "metadata.json").read_text())
    assert ["score_func", {"$function": "scaleml_dask.feature_selection.f_classif"}] in meta["params"]["$dict"]


def _edit(model, part, key, value):
    """Set ``key`` of the metadata's ``part`` (params, state) and reseal the content checksum."""
    path = model / "1" / "metadata.json"
    meta = json.loads(path.read_text())
    meta[part]["$dict"] = [[k, value if k == key else v] for k, v in meta[part]["$dict"]]
    meta["content_sha256"] = content_sha256(meta)
    path.write_text(json.dumps(meta))


def test_tampered_projections_and_selectors_are_refused_by_name(tmp_path, data):
    X, y, _ = data
    from scaleml_dask._deployable import CSRMatrix

    state = CSRMatrix(SparseRandomProjection(5, random_state=0).fit(X).components_)._saved_state()
    state["indices"] = state["indices"].copy()
    state["indices"][0] = 10**6  # a column past the matrix: refused before anything multiplies by it
    with pytest.raises(ValueError, match="indices must be < 40"):
        CSRMatrix._from_saved_state(state)
    save_model(GaussianRandomProjection(5, random_state=0).fit(X), tmp_path / "narrow")
    _edit(tmp_path / "narrow", "state", "n_components_", 4)
    with pytest.raises(RegistryError, match=r"components_ is not a \(4, 40\) matrix of floats"):
        load_model(tmp_path / "narrow")
    save_model(SelectKBest(f_classif, k=3).fit(X, y), tmp_path / "short")
    _edit(tmp_path / "short", "state", "n_features_in_", 41)
    with pytest.raises(RegistryError, match=r"SelectKBest state scores_ is float64\[40\] where .* float64\[41\]"):
        load_model(tmp_path / "short")
    save_model(SelectKBest(f_classif, k=3).fit(X, y), tmp_path / "function")
    _edit(tmp_path / "function", "params", "score_func", {"$function": "os.system"})
    with pytest.raises(RegistryError, match=r"params.score_func: function 'os.system' is not one of"):
        load_model(tmp_path / "function")


def test_a_pipeline_with_a_selector_and_a_projection_is_served_on_raw_rows(tmp_path):
    from test_serve import running
    from test_serve_tables import _v2_columns

    from scaleml_dask.deploy.serve import make_app

    frame, _, labels = small_table()
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(), ["region"]), (SimpleImputer(), ["price"]),
                                                 remainder="passthrough"),
                         StandardScaler(), SelectKBest(f_classif, k=5), GaussianRandomProjection(3, random_state=0),
                         sm.SGDClassifier(mode="local", rounds=2, batch_size=50)).fit(frame, labels)
    save_model(pipe, tmp_path / "pipe", data=frame)
    back = load_model(tmp_path / "pipe")
    rows = frame.head(8)
    np.testing.assert_allclose(back.decision_function(rows), pipe.decision_function(rows), rtol=1e-12, atol=1e-12)
    with running(make_app([tmp_path / "pipe"])) as client:
        r = client.post("/v2/models/pipe/infer", json={"inputs": _v2_columns(rows, pipe)})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == pipe.predict(rows).tolist()


def test_a_selector_with_scikit_learns_default_score_function_fits_in_one_pass_and_saves(tmp_path, data):
    """``SelectKBest(k=...)`` keeps scikit-learn's default ``score_func`` (its own ``f_classif``): on data larger
    than memory it is scored by the same one pass as ours (it was refused), and saved by name like ours."""
    import dask.array as da
    from sklearn.feature_selection import SelectKBest as SkSelectKBest

    X, y, _ = data
    ref = SkSelectKBest(k=4).fit(X, y)
    lazy = SelectKBest(k=4).fit(da.from_array(X, chunks=(50, 40)), da.from_array(y, chunks=50))
    np.testing.assert_allclose(lazy.scores_, ref.scores_, rtol=1e-10, atol=1e-12)
    assert lazy.get_support(indices=True).tolist() == ref.get_support(indices=True).tolist()
    save_model(lazy, tmp_path / "sel")
    back = load_model(tmp_path / "sel")
    np.testing.assert_array_equal(back.transform(X), ref.transform(X))
