"""A table end to end: a mixed-type CSV -> ingest -> pipeline -> evaluate -> save.

The CSV (numbers with missing values, categories of skewed frequencies, a boolean, ISO timestamps; planted
effects, so the best achievable accuracy is known) is ingested into a table store; a pipeline (impute and scale
the numbers and the timestamp, one-hot the categories with rare levels grouped, then ``SGDClassifier``) is fitted
on it: the preprocessing's statistics in one pass, each chunk transformed inside the classifier's own tasks. It
is evaluated on held-out raw rows (a pandas DataFrame, the path a served request takes) against the planted
model, its one-hot coefficients are set against the planted level effects, and it is saved to the registry.
Serving the saved model on raw rows is the next stage (``deploy``'s server).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

import scaleml_dask as sm
from scaleml_dask.compose import make_column_selector, make_column_transformer
from scaleml_dask.io.catalog import data_dir
from scaleml_dask.io.ingest import ingest
from scaleml_dask.io.synthetic import table_chunk, table_levels, table_spec, write_table_file
from scaleml_dask.io.table import column_info
from scaleml_dask.pipeline import make_pipeline
from scaleml_dask.preprocessing import OneHotEncoder, SimpleImputer, StandardScaler
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main


def _spec_kwargs(config: dict) -> dict:
    return {"n_numeric": config.get("n_numeric", 20), "levels": tuple(config.get("levels", (10, 100, 1000))),
            "missing": config.get("missing", 0.05), "seed": config.get("seed", 7)}


def raw_files(config: dict, report) -> tuple[Path, Path]:
    """The training and held-out CSVs (made once in the data directory, reused by later runs)."""
    rows, test_rows, chunk = config["rows"], config["test_rows"], config["chunk_rows"]
    kw = _spec_kwargs(config)
    tag = f"{kw['seed']}-{rows}-{'-'.join(map(str, kw['levels']))}"
    train, test = data_dir() / f"demo-table-{tag}.csv", data_dir() / f"demo-table-{tag}-test.csv"
    for path, n, first in ((train, rows, 0), (test, test_rows, _test_chunk(config))):
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            write_table_file(path, n, chunk_rows=chunk, first_chunk=first, **kw)
            report.add_one_time_cost(f"write {path.name}", time.perf_counter() - t0,
                                     note="the raw CSV, made on first use; later runs reuse it")
    return train, test


def _test_chunk(config: dict) -> int:
    """The first chunk index of the held-out rows: past the training rows (same planted model, other rows)."""
    return -(-config["rows"] // config["chunk_rows"]) + 1


def pipeline(config: dict):
    """Impute (median) and scale the numbers and the timestamp, one-hot the categories (rare levels grouped),
    the boolean as 0 / 1; then the classifier."""
    numbers = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    onehot = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=config.get("min_frequency", 20),
                           max_categories=config.get("max_categories", 50))
    pre = make_column_transformer((numbers, make_column_selector(dtype_include=["numeric", "datetime"])),
                                  (onehot, make_column_selector(dtype_include="categorical")),
                                  remainder="passthrough")
    sgd = config.get("sgd", {})
    return make_pipeline(pre, sm.SGDClassifier(mode=sgd.get("mode", "local"), rounds=sgd.get("rounds", 3),
                                               batch_size=sgd.get("batch_size", 1000), eta0=sgd.get("eta0", 0.01),
                                               alpha=sgd.get("alpha", 1e-5), random_state=0))


def evaluate(pipe, test_csv: Path, config: dict) -> dict:
    """Held-out raw rows through the pipeline (in memory, as a served request): log loss and accuracy against
    the planted model's, and the time to predict raw rows."""
    from sklearn.metrics import accuracy_score, log_loss

    frame = pd.read_csv(test_csv)
    y = frame.pop("y").to_numpy()
    t0 = time.perf_counter()
    proba = pipe.predict_proba(frame)[:, 1]
    seconds = time.perf_counter() - t0
    spec = table_spec(**_spec_kwargs(config))
    chunk, first = config["chunk_rows"], _test_chunk(config)
    bayes = sum(table_chunk(config.get("seed", 7), first + i, min(chunk, len(y) - i * chunk), spec=spec)[1]
                for i in range(-(-len(y) // chunk)))
    one = frame.iloc[:1]
    t1 = time.perf_counter()
    for _ in range(20):
        pipe.predict_proba(one)
    return {"held-out rows": len(y), "log loss": float(log_loss(y, proba)),
            "accuracy": float(accuracy_score(y, proba > 0.5)), "planted model's accuracy": bayes / len(y),
            "raw rows / s (batch)": len(y) / seconds, "one raw row (ms)": 1e3 * (time.perf_counter() - t1) / 20}


def effects_figure(pipe, config: dict, report) -> Path:
    """The classifier's one-hot coefficients of the first category against the planted level effects."""
    plt = pyplot()
    spec = table_spec(**_spec_kwargs(config))
    names = list(pipe[:-1].get_feature_names_out())
    coef = pipe[-1].coef_.ravel()
    levels = table_levels(spec["levels"][0])
    planted, learned = [], []
    for level, effect in zip(levels, spec["effects"][0]):
        name = f"onehotencoder__cat0_{level}"
        if name in names:
            planted.append(effect)
            learned.append(coef[names.index(name)])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(planted, np.asarray(learned) - np.mean(learned) + np.mean(planted), color="#3a6ea5")
    lo, hi = min(planted), max(planted)
    ax.plot([lo, hi], [lo, hi], color="#999", lw=1)
    ax.set(xlabel="planted effect of the level", ylabel="learned coefficient (centred)",
           title="cat0: one-hot coefficients vs the truth")
    ax.title.set_fontsize(9)
    return report.save_figure(fig, "tables_effects")


def save(pipe, config: dict, metrics: dict) -> dict:
    """Save the fitted pipeline to the registry (as the next stage, serving raw rows, loads it)."""
    from scaleml_dask.deploy.registry import RegistryError

    directory = Path(config["state_dir"]) / "models" / "tables"
    try:
        path = sm.save_model(pipe, directory, metrics=metrics)
    except RegistryError as exc:
        return {"saved": False, "note": f"not saved: {exc}", "input schema": pipe.input_schema_.to_dict()}
    return {"saved": True, "path": str(path)}


def run(config: dict, client, report) -> dict:
    """CSV -> ingest -> pipeline -> evaluate -> save, with the report section."""
    train_csv, test_csv = raw_files(config, report)
    store = Path(config["state_dir"]) / "table.zarr"
    t0 = time.perf_counter()
    ingest(train_csv, store, target="y", chunk_rows=config["chunk_rows"])
    ingest_s = time.perf_counter() - t0
    ds = sm.open_dataset(store)
    columns = [{"column": c["name"], "kind": c["kind"], "missing": c["n_missing"], "levels": c["n_levels"] or ""}
               for c in column_info(ds)]
    pipe = pipeline(config)
    t0 = time.perf_counter()
    pipe.fit(store)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe[:-1].fit(store)
    stats_s = time.perf_counter() - t0
    metrics = evaluate(pipe, test_csv, config)
    figure = effects_figure(pipe, config, report)
    saved = save(pipe, config, {k: metrics[k] for k in ("log loss", "accuracy")})
    n = config["rows"]
    steps = [{"step": "ingest (CSV -> table store)", "seconds": ingest_s, "rows / s": n / ingest_s},
             {"step": "pipeline fit (statistics pass + SGD)", "seconds": fit_s, "rows / s": n / fit_s},
             {"step": "   of which the statistics pass (every transformer)", "seconds": stats_s,
              "rows / s": n / stats_s}]
    width = len(pipe[:-1].get_feature_names_out())
    report.add_section(
        "Tables: CSV -> ingest -> pipeline -> evaluate -> save",
        text=(f"{n:,} rows of a mixed CSV ({train_csv.stat().st_size / 1e6:,.0f} MB: numbers with "
              f"{100 * config.get('missing', 0.05):.0f} % missing, categories of "
              f"{', '.join(map(str, config['levels']))} levels, a boolean, ISO timestamps) ingested into a table "
              f"store, then a pipeline fitted on it: median imputation and scaling, one-hot with rare levels grouped "
              f"({width} features), SGDClassifier. The "
              "preprocessing reads the data once for every transformer's statistics; each chunk is then transformed "
              "inside the classifier's tasks. Evaluated on held-out raw rows (a DataFrame, as a served request) "
              f"against the planted model. {saved.get('note', 'Saved to ' + saved.get('path', ''))}"),
        table=steps, figures=[figure])
    report.add_section("Tables: held-out raw rows", text="The planted model's accuracy is the best achievable.",
                       table=[{"measure": k, "value": v} for k, v in metrics.items()])
    report.add_section("Tables: the ingested columns", text="What `scaleml catalog show` lists for the store.",
                       table=columns)
    return {"ingest_seconds": ingest_s, "fit_seconds": fit_s, "statistics_seconds": stats_s, "features": width,
            **metrics, "saved": saved.get("saved", False)}


if __name__ == "__main__":
    raise SystemExit(script_main("tables", run))
