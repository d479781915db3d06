"""Out-of-core linear regression: OLS by each solver (one pass each) and ridge, on a catalog dataset.

Reports the coefficients with 95% confidence intervals against the planted ones (when the dataset was
generated), a statsmodels-style summary, R², the condition number and the time of each solver next to a
plain scan of the data (the I/O floor). Every fit reads the data, except the ridge fits after the first:
they reuse its pass on purpose (``sm.reuse_statistics``: same data fingerprint), and the table says so — a
time there measures the work its row names.
"""

from __future__ import annotations

import time

import dask
import numpy as np

import scaleml_dask as sm
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main


def _plot(model, planted, report):
    plt = pyplot()

    ci = model.conf_int()
    j = np.arange(len(model.coef_))
    ref = np.zeros_like(model.coef_) if planted is None else planted
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(j) + 2), 3.4))
    ax.errorbar(j, model.coef_ - ref, yerr=[model.coef_ - ci[:, 0], ci[:, 1] - model.coef_], fmt="o", ms=4,
                capsize=3, color="#3a6ea5", label="estimate ± 95% CI")
    ax.axhline(0.0, color="#c0392b", lw=1, label="planted" if planted is not None else None)
    ax.set_ylabel("coefficient − planted" if planted is not None else "coefficient")
    ax.set_xlabel("feature")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    png = report.save_figure(fig, "regression_coefficients")
    return png


def run(config: dict, client, report) -> dict:
    """Fit LinearRegression with each configured solver and Ridge for each alpha; report and compare."""
    ds = sm.open_dataset(config["dataset"], client=client)
    X, y = ds["X"].data, ds["y"].data
    planted = np.asarray(ds.attrs["coef"]) if "coef" in ds.attrs else None
    dask.compute(X[:1].sum(), y[:1].sum())  # warm up the workers (imports), so the scan times the I/O
    t0 = time.perf_counter()
    dask.compute(X.sum(), y.sum())
    rows = [{"fit": "scan (X.sum() + y.sum())", "seconds": time.perf_counter() - t0}]
    scan = rows[0]["seconds"]
    models = {}
    for solver in config.get("solvers", ["auto"]):
        t0 = time.perf_counter()
        m = sm.LinearRegression(solver=solver).fit(X, y)
        models[solver] = m
        rows.append({"fit": f"LinearRegression(solver={solver!r})", "used": m.solver_, "data": "one pass",
                     "seconds": time.perf_counter() - t0, "R²": m.r2_,
                     "max |coef - planted|": None if planted is None else float(np.abs(m.coef_ - planted).max())})
    with sm.reuse_statistics():  # the ridge fits share one pass, deliberately (same data fingerprint)
        for alpha in config.get("ridge_alphas", []):
            t0 = time.perf_counter()
            r = sm.Ridge(alpha=alpha).fit(X, y)
            rows.append({"fit": f"Ridge(alpha={alpha:g})", "used": r.solver_,
                         "data": "reused (same fingerprint)" if r.statistics_reused_ else "one pass",
                         "seconds": time.perf_counter() - t0, "R²": r.r2_, "max |coef - planted|": None
                         if planted is None else float(np.abs(r.coef_ - planted).max())})
    for row in rows:
        row["× scan"] = row["seconds"] / scan
    main = next(iter(models.values()))
    png = _plot(main, planted, report)
    names = list(ds.attrs.get("feature_names") or [f"x{j}" for j in range(main.n_features_in_)])
    text = (f"{main.n_samples_:,} rows × {main.n_features_in_} features of {config['dataset']!r}, one pass per "
            f"fit. R² {main.r2_:.6g}, RSS {main.rss_:.6g}, condition number of [1 | X] "
            f"{main.condition_number_:.3g}; solver used by {type(main).__name__}(solver={main.solver!r}): "
            f"{main.solver_}. The first fit also pays one-time costs (the workers' first imports and compiled "
            "kernels); the times of the others are the steady state.")
    report.add_section("Linear regression", text=text, table=rows, figures=[png])
    ci = main.conf_int()
    coef_rows = [{"": "const", "coef": main.intercept_, "std err": main.intercept_stderr_}]
    coef_rows += [{"": name, "coef": b, "std err": se, "t": t, "P>|t|": pv, "[0.025": lo, "0.975]": hi,
                   "planted": None if planted is None else float(planted[j])}
                  for j, (name, b, se, t, pv, (lo, hi)) in enumerate(zip(names, main.coef_, main.stderr_,
                                                                         main.tvalues_, main.pvalues_, ci))]
    report.add_section("Linear regression: coefficients", table=coef_rows,
                       text=f"Classical OLS standard errors on {main.df_resid_:,} residual degrees of freedom; "
                            "95% confidence intervals.")
    return {"coef": main.coef_.tolist(), "intercept": main.intercept_, "r2": main.r2_, "solver": main.solver_,
            "condition_number": main.condition_number_, "timings": rows}


if __name__ == "__main__":
    raise SystemExit(script_main("regression", run))
