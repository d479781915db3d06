"""Model selection at scale: every alpha of a ridge path from one pass, a hyperparameter search whose candidates
train in the same read of each chunk, k-means for a list of k sharing each pass, and held-out metrics.

- ``RidgeCV`` on the regression data: alphas × folds from one pass (R² per fold from the folds' moments), the
  coefficient path and the cross-validated R² against alpha; timed beside one ``LinearRegression`` fit.
- A fused search on the logistic data: ``GridSearchCV`` over candidates sampled from alpha × eta0 × penalty ×
  schedule plus two divergent on purpose (every candidate × fold for all rounds), and ``HalvingRandomSearchCV``
  (successive halving, survivors continue) over the same candidates; passes made, time against a plain fit with
  as many passes, each candidate's held-out scores, the diverged ones stopped and reported. The refit best model
  is then scored on a held-out split with several metrics in one pass (ROC AUC with its stated bound).
- ``kmeans_sweep`` on the mixture: inertia (elbow) and a sampled silhouette for each k, from shared passes.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.stats import loguniform
from sklearn.model_selection import ParameterSampler

import scaleml_dask as sm
from scaleml_dask.metrics import evaluate
from scaleml_dask.model_selection import GridSearchCV, HalvingRandomSearchCV, KFold, kmeans_sweep, train_test_split
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main


def _ridge(config: dict, client, report) -> dict:
    ds = sm.open_dataset(config["regression"], client=client)
    X, y = ds["X"].data, ds["y"].data
    alphas = np.logspace(*config.get("alphas", [-3, 5, 50]))
    folds = int(config.get("folds", 5))
    sm.LinearRegression().fit(X[: X.chunks[0][0]], y[: X.chunks[0][0]])  # warm the workers up
    t0 = time.perf_counter()
    sm.LinearRegression().fit(X, y)
    one_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    cv = sm.RidgeCV(alphas, cv=KFold(folds, random_state=0)).fit(X, y)
    seconds = time.perf_counter() - t0
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.semilogx(alphas, cv.coef_path_, lw=1)
    a1.axvline(cv.alpha_, color="#c0392b", lw=1, ls="--")
    a1.set(xlabel="alpha", ylabel="coefficient", title="ridge path (all rows)")
    mean, std = cv.cv_results_["mean_test_score"], cv.cv_results_["std_test_score"]
    a2.semilogx(alphas, mean, color="#3a6ea5")
    a2.fill_between(alphas, mean - std, mean + std, color="#3a6ea5", alpha=0.2)
    a2.axvline(cv.alpha_, color="#c0392b", lw=1, ls="--", label=f"alpha_ = {cv.alpha_:.3g}")
    a2.set(xlabel="alpha", ylabel=f"R² ({folds}-fold mean ± sd)", title="cross-validated R²")
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.title.set_fontsize(9)
    png = report.save_figure(fig, "ridge_path")
    rows = [{"fit": "LinearRegression", "passes": 1, "seconds": one_fit, "× one fit": 1.0},
            {"fit": f"RidgeCV({len(alphas)} alphas, {folds} folds)", "passes": cv.passes_, "seconds": seconds,
             "× one fit": seconds / one_fit, "alpha_": cv.alpha_, "best R²": cv.best_score_}]
    report.add_section("Model selection: every ridge strength from one pass", table=rows, figures=[png], text=(
        f"{X.shape[0]:,} rows × {X.shape[1]} features of {config['regression']!r}. RidgeCV reduces each chunk to "
        f"the moments of its rows per fold in one pass; every alpha × fold ({len(alphas) * folds} fits) and the "
        "path on all rows then come from the small matrices."))
    return {"ridge_alpha": cv.alpha_, "ridge_seconds": seconds, "linear_seconds": one_fit}


def _search_rows(search, top: int) -> list[dict]:
    res = search.cv_results_
    order = np.argsort(res["rank_test_roc_auc"], kind="stable")
    rows = []
    for i in list(order[:top]) + [i for i in order[top:] if res["diverged"][i]]:
        p = res["params"][i]
        rows.append({"alpha": p["alpha"], "eta0": p["eta0"], "penalty": str(p["penalty"]),
                     "schedule": p["learning_rate"], "rounds": int(res["n_rounds"][i]),
                     "ROC AUC": res["mean_test_roc_auc"][i], "accuracy": res["mean_test_accuracy"][i],
                     "held-out loss": res["heldout_loss"][i],
                     "diverged": f"round {res['diverged_round'][i]}" if res["diverged"][i] else ""})
    return rows


def _warm(client) -> None:
    """Compile (or load) the SGD and fused-search kernels here and on every worker."""
    from scaleml_dask.coldstart import first_calls

    families = ["SGD blocks", "fused search"]
    first_calls(families)
    if client is not None:
        client.run(first_calls, families)


def _search(config: dict, client, report) -> dict:
    ds = sm.open_dataset(config["classification"], client=client)
    train, test = train_test_split(ds, test_size=config.get("test_size", 0.1), random_state=0, stratify="y")
    cfg = config.get("search", {})
    base = sm.SGDClassifier(mode="local", classes=[0.0, 1.0], **cfg.get("estimator", {}))
    folds = int(cfg.get("folds", 3))
    n = int(cfg.get("candidates", 16))
    space = {"alpha": loguniform(1e-6, 1e-2), "eta0": [0.001, 0.003, 0.01, 0.03], "penalty": ["l2", "l1"],
             "learning_rate": ["adam", "constant"]}
    diverging = [{"alpha": 1e-4, "eta0": 1e3, "penalty": p, "learning_rate": "constant"} for p in ("l2", "l1")]
    cands = list(ParameterSampler(space, n - len(diverging), random_state=0)) + diverging
    grid = [{k: [v] for k, v in c.items()} for c in cands]  # the same candidates for both searches
    _warm(client)  # no timing below pays for compiling or loading kernels
    scoring = ["roc_auc", "accuracy"]
    t0 = time.perf_counter()
    rs = GridSearchCV(base, grid, cv=KFold(folds, random_state=0), scoring=scoring,
                      refit="roc_auc").fit(train.X, train.y)
    rs_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hs = HalvingRandomSearchCV(base, grid, n_candidates=n, factor=cfg.get("factor", 2), min_resources="exhaust",
                               cv=KFold(folds, random_state=0), scoring=scoring, refit="roc_auc",
                               random_state=0).fit(train.X, train.y)
    hs_s = time.perf_counter() - t0
    rounds = rs.passes_  # the yardstick: one plain fit reading the data as many times as the search did
    t0 = time.perf_counter()
    plain = sm.SGDClassifier(mode="local", classes=[0.0, 1.0], **{**cfg.get("estimator", {}), "rounds": rounds}).fit(
        train.X, train.y)
    plain_s = time.perf_counter() - t0
    summary = [
        {"run": f"plain SGDClassifier fit ({rounds} rounds = the search's passes)", "candidates × folds": 1,
         "passes": rounds, "seconds": plain_s, "× plain fit": 1.0},
        {"run": "GridSearchCV (fused)", "candidates × folds": f"{n} × {folds}", "passes": rs.passes_,
         "seconds": rs_s - rs.refit_time_, "× plain fit": (rs_s - rs.refit_time_) / plain_s,
         "best ROC AUC": rs.best_score_, "diverged": int(rs.cv_results_["diverged"].sum()),
         "refit seconds": rs.refit_time_},
        {"run": "HalvingRandomSearchCV (fused, samples seen)",
         "candidates × folds": " → ".join(map(str, hs.n_candidates_)) + f" × {folds}", "passes": hs.passes_,
         "seconds": hs_s - hs.refit_time_,
         "× plain fit": (hs_s - hs.refit_time_) / plain_s, "best ROC AUC": hs.best_score_,
         "diverged": int(hs.cv_results_["diverged"][hs.cv_results_["iter"] == 0].sum()),
         "refit seconds": hs.refit_time_}]
    best = rs.best_estimator_
    scores = evaluate({"best (search)": best, "best (halving)": hs.best_estimator_, "plain": plain}, test.X,
                      test.y, scoring=["roc_auc", "accuracy", "f1", "neg_log_loss"], return_bounds=True)
    held = [{"model": name, **{k: v for k, v in s.items()}} for name, s in scores.items()]
    report.add_section("Model selection: a search in the same read of each chunk", table=summary, text=(
        f"{int(train.sizes['sample']):,} training rows of {config['classification']!r} (a stratified 90/10 split "
        f"without copies). {n} candidates ({n - len(diverging)} sampled from alpha × eta0 × penalty × schedule, and "
        f"{len(diverging)} with eta0 = 1000 and a constant step, divergent on purpose) × {folds} folds: every "
        "candidate × fold trains in the same read of each "
        "chunk, one compiled kernel updating the whole block of weight vectors; the scoring of a round rides in "
        "the next round's pass (one more pass at the end). Halving: rungs of samples seen, survivors continue "
        "training, a rung reads only the chunks it trains on. Seconds are wall time of each call after the "
        "kernels were warmed, without the refit (its own column); the plain fit reads the data as many times as "
        "the grid search did."))
    report.add_section("Model selection: candidates", table=_search_rows(rs, 8), text=(
        "The best 8 by mean held-out ROC AUC over the folds, then the diverged candidates: stopped as soon as "
        "their held-out loss passed 10× the zero model's, reported, never averaged or ranked."))
    report.add_section("Model selection: held-out metrics in one pass", table=held, text=(
        "The refit models and the plain fit scored on the 10 % held-out rows: every metric of every model in one "
        "pass over them (mergeable per-chunk states). roc_auc_bound is the largest possible distance to the AUC "
        "of exact scores (0: the state kept every distinct score)."))
    return {"search_passes": rs.passes_, "search_seconds": rs_s, "plain_seconds": plain_s,
            "best_params": {k: (float(v) if isinstance(v, float) else v) for k, v in rs.best_params_.items()},
            "best_roc_auc": rs.best_score_, "halving_passes": hs.passes_}


def _sweep(config: dict, client, report) -> dict:
    ds = sm.open_dataset(config["clustering"], client=client)
    ks = [int(k) for k in config.get("n_clusters", [2, 4, 6, 8, 10, 12])]
    t0 = time.perf_counter()
    sweep = kmeans_sweep(ds["X"].data, ks, random_state=0, max_iter=config.get("max_iter", 30),
                         silhouette_sample=config.get("silhouette_sample", 2000))
    seconds = time.perf_counter() - t0
    plt = pyplot()
    fig, a1 = plt.subplots(figsize=(6.5, 3.6))
    a1.plot(sweep.n_clusters_, sweep.inertia_ / sweep.inertia_[0], "o-", color="#3a6ea5", label="inertia / k=2's")
    a1.axvline(sweep.elbow_, color="#3a6ea5", ls="--", lw=1)
    a2 = a1.twinx()
    a2.plot(sweep.n_clusters_, sweep.silhouette_, "s-", color="#c0392b", label="silhouette (sample)")
    a1.set(xlabel="k", ylabel="inertia (relative)", title=f"k-means for k in {ks}: elbow "
           f"{sweep.elbow_}, best silhouette {sweep.best_silhouette_k_}")
    a2.set_ylabel("silhouette")
    a1.title.set_fontsize(9)
    a1.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="upper right")
    png = report.save_figure(fig, "kmeans_sweep")
    rows = [{"k": int(k), "inertia": float(i), "Lloyd passes": int(it), "silhouette": float(s)}
            for k, i, it, s in zip(sweep.n_clusters_, sweep.inertia_, sweep.n_iter_, sweep.silhouette_)]
    report.add_section("Model selection: how many clusters", table=rows, figures=[png], text=(
        f"KMeans for every k in {ks} of {config['clustering']!r} in {sweep.passes_} passes over the "
        f"data ({seconds:.1f} s): one k-means|| initialisation for all k, then Lloyd passes shared by every k "
        f"still iterating (a k fitted alone would take its own {int(sweep.n_iter_.sum())} passes in all). "
        f"Elbow of the inertia curve: k = {sweep.elbow_}; best silhouette on {sweep.silhouette_sample_:,} "
        f"sampled rows: k = {sweep.best_silhouette_k_}."))
    return {"sweep_passes": sweep.passes_, "elbow": sweep.elbow_, "best_silhouette_k": sweep.best_silhouette_k_}


def run(config: dict, client, report) -> dict:
    """RidgeCV with its path, the fused searches, k-means over a list of k."""
    out = _ridge(config, client, report)
    out.update(_search(config, client, report))
    out.update(_sweep(config, client, report))
    return out


if __name__ == "__main__":
    raise SystemExit(script_main("selection", run))
