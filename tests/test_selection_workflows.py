"""The model-selection and dimensionality-reduction demo steps on the tiny demo data: their report sections, with
the numbers that make them what they claim (one pass for RidgeCV, rounds + 1 passes for the fused search, the
diverged candidates reported, every k of the sweep; the classifier on reduced features scored for both datasets,
t-SNE keeping neighbourhoods better than PCA)."""

from __future__ import annotations

import json

import pytest
from tiny import TINY_CATALOG

from scaleml_dask.cli import load_workflow
from scaleml_dask.runner import workflow_main


def _run(name, config, tmp_path, client):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"cluster: {{address: '{client.scheduler.address}'}}\n" + config)
    assert workflow_main(name, load_workflow(name).run, ["--config", str(cfg), "--out", str(tmp_path)]) == 0
    (run_dir,) = (tmp_path / name).glob("2*")
    doc = json.loads((run_dir / "report.json").read_text())
    return {s["title"]: s for s in doc["sections"]}, run_dir


@pytest.mark.slow
def test_selection_and_dr_workflows_report_what_they_claim(tmp_path, monkeypatch, client):
    (tmp_path / "cat.yaml").write_text(TINY_CATALOG)
    monkeypatch.setenv("SCALEML_CATALOG", str(tmp_path / "cat.yaml"))
    monkeypatch.setenv("SCALEML_DATA", str(tmp_path / "data"))
    sections, run_dir = _run("selection", (
        "regression: demo-regression-small\nalphas: [-3, 3, 20]\nfolds: 3\nclassification: demo-logistic-small\n"
        "test_size: 0.1\nsearch: {candidates: 8, folds: 3, factor: 2, estimator: {rounds: 2, batch_size: 200}}\n"
        "clustering: demo-mixture-small\nn_clusters: [2, 3, 4, 5]\nmax_iter: 20\nsilhouette_sample: 300\n"),
        tmp_path, client)
    ridge = sections["Model selection: every ridge strength from one pass"]["table"]
    assert ridge[1]["passes"] == 1 and ridge[1]["best R²"] > 0.9
    runs = sections["Model selection: a search in the same read of each chunk"]["table"]
    assert runs[1]["passes"] == 3 and runs[1]["candidates × folds"] == "8 × 3"
    candidates = sections["Model selection: candidates"]["table"]
    assert all(c["diverged"] == "" for c in candidates[:4]) and sum(bool(c["diverged"]) for c in candidates) == 2
    held = {r["model"]: r for r in sections["Model selection: held-out metrics in one pass"]["table"]}
    assert held["best (search)"]["roc_auc"] > 0.85 and held["best (search)"]["roc_auc_bound"] < 1e-3
    ks = sections["Model selection: how many clusters"]["table"]
    assert [r["k"] for r in ks] == [2, 3, 4, 5] and min(ks, key=lambda r: -r["silhouette"])["k"] == 3
    assert {"ridge_path.png", "kmeans_sweep.png"} <= {p.name for p in run_dir.iterdir()}

    sections, run_dir = _run("dr", (
        "digits: {pca: [5, 20], projection: [20], classifier: {rounds: 5, batch_size: 64, eta0: 0.01}}\n"
        "dataset: demo-logistic-small\npca: [2, 4]\nprojection: [4]\nclassifier: {rounds: 1, batch_size: 200}\n"
        "neighbours: {k: 10, sample: 300}\n"), tmp_path, client)
    rows = sections["Dimensionality reduction: effect on a downstream classifier"]["table"]
    digits = {r["features"]: r for r in rows if r["data"].startswith("digits")}
    assert set(digits) == {"original (64)", "PCA 5", "PCA 20", "random projection 20"}
    assert digits["original (64)"]["accuracy"] > 0.9 and digits["PCA 20"]["ROC AUC"] > 0.95
    assert digits["PCA 5"]["accuracy"] < digits["PCA 20"]["accuracy"]  # information lost at small k
    demo = [r for r in rows if r["data"].startswith("demo-logistic-small")]
    assert [r["features"] for r in demo] == ["original (6)", "PCA 2", "PCA 4", "random projection 4"]
    neighbours = sections["Dimensionality reduction: neighbourhoods kept, PCA vs t-SNE"]["table"]
    by = {(r["data"], r["embedding"]): r for r in neighbours}
    assert by[("digits", "t-SNE (2-d)")]["10-NN recall"] > by[("digits", "PCA (2-d)")]["10-NN recall"]
    assert by[("digits", "t-SNE (2-d)")]["trustworthiness (10-NN)"] > 0.95
    assert {"dr_effect.png", "dr_neighbourhoods.png"} <= {p.name for p in run_dir.iterdir()}
