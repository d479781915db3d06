"""A table end to end: a mixed-type CSV -> ingest -> pipeline -> evaluate -> save -> serve raw rows.

The CSV — a catalog table (``demo-table``: numbers with missing values, categories of skewed frequencies, a
boolean, ISO timestamps; planted effects, so the best achievable accuracy is known) written as raw text in the
run's directory, its last chunk held out — is ingested into a table store; a pipeline (impute and scale
the numbers and the timestamp, one-hot the categories with rare levels grouped, then ``SGDClassifier``) is fitted
on it: the preprocessing's statistics in one pass, each chunk transformed inside the classifier's own tasks. It
is evaluated on held-out raw rows (a pandas DataFrame, the path a served request takes) against the planted
model, its one-hot coefficients are set against the planted level effects, and it is saved to the registry
(with the training statistics of its numeric columns, for drift monitoring). Then the saved pipeline is served by
`scaleml serve` on a free 127.0.0.1 port and asked for held-out raw rows in the three request forms — V2 with one
input per column, MLServer's pandas-codec request, V1 records — whose answers must equal the in-memory
pipeline's (the serving part needs the ``serve`` extra; without it the step says so and the rest completes).
"""

from __future__ import annotations

import time
from pathlib import Path

import dask
import numpy as np
import pandas as pd

import scaleml_dask as sm
from scaleml_dask.compose import make_column_selector, make_column_transformer
from scaleml_dask.deploy.registry import check_registry
from scaleml_dask.io.ingest import ingest
from scaleml_dask.io.synthetic import table_chunk, table_levels
from scaleml_dask.io.table import column_info
from scaleml_dask.pipeline import make_pipeline
from scaleml_dask.preprocessing import OneHotEncoder, SimpleImputer, StandardScaler
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main


def raw_files(ds, config: dict) -> tuple[Path, Path, list[int]]:
    """The dataset's rows as raw CSVs in the run's directory (categories as text, booleans, ISO timestamps, empty
    fields for missing values): its last ``held_out_chunks`` chunks held out; and the held-out chunks' indices."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from scaleml_dask.io.table import layout, to_frame

    names = layout(ds)["columns"]
    n_chunks = len(ds[names[0]].data.chunks[0])
    held = list(range(n_chunks - config.get("held_out_chunks", 1), n_chunks))
    out = Path(config["state_dir"])
    out.mkdir(parents=True, exist_ok=True)
    paths = {"train": out / "table.csv", "test": out / "table-test.csv"}
    attrs = {c: dict(ds[c].attrs) for c in names}
    with open(paths["train"], "wb") as train, open(paths["test"], "wb") as test:
        for i in range(n_chunks):
            blocks = dict(zip(names, dask.compute(*[ds[c].data.blocks[i] for c in names])))
            f = test if i in held else train
            pcsv.write_csv(pa.Table.from_pandas(to_frame(blocks, attrs), preserve_index=False), f,
                           pcsv.WriteOptions(include_header=f.tell() == 0, quoting_style="needed"))
    return paths["train"], paths["test"], held


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


def evaluate(pipe, test_csv: Path, ds, held: list[int]) -> dict:
    """Held-out raw rows through the pipeline (in memory, as a served request): log loss and accuracy against
    the planted model's, and the time to predict raw rows."""
    from sklearn.metrics import accuracy_score, log_loss

    frame = pd.read_csv(test_csv)
    y = frame.pop("y").to_numpy()
    t0 = time.perf_counter()
    proba = pipe.predict_proba(frame)[:, 1]
    seconds = time.perf_counter() - t0
    spec, seed = ds.attrs["spec"], ds.attrs["seed"]
    rows = ds["y"].data.chunks[0]
    bayes = sum(table_chunk(seed, i, rows[i], spec=spec)[1] for i in held)
    one = frame.iloc[:1]
    t1 = time.perf_counter()
    for _ in range(20):
        pipe.predict_proba(one)
    return {"held-out rows": len(y), "log loss": float(log_loss(y, proba, labels=[0.0, 1.0])),
            "accuracy": float(accuracy_score(y, proba > 0.5)), "planted model's accuracy": bayes / len(y),
            "raw rows / s (batch)": len(y) / seconds, "one raw row (ms)": 1e3 * (time.perf_counter() - t1) / 20}


def effects_figure(pipe, ds, report) -> Path:
    """The classifier's one-hot coefficients of the first category against the planted level effects."""
    plt = pyplot()
    spec = ds.attrs["spec"]
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


def registry_dir(config: dict) -> Path:
    """The registry the pipeline is saved to."""
    return Path(config["state_dir"]) / "models" / "tables"


def save(pipe, config: dict, metrics: dict, data) -> dict:
    """Save the fitted pipeline to the registry, with the training statistics of ``data``'s numeric columns."""
    directory = registry_dir(config)
    path = sm.save_model(pipe, directory, metrics=metrics, data=data)
    return {"saved": True, "path": str(path), "registry": directory}


def requests(name: str, pipe, frame: pd.DataFrame) -> list[tuple[str, str, dict]]:
    """The held-out raw rows ``frame`` as the three request forms: V2 one input per column (BYTES, FP64, BOOL; null
    missing), MLServer's pandas-codec request, V1 records."""
    from scaleml_dask.deploy._tables import datatype_of

    def plain(v):
        return None if v is None or v != v else v.item() if hasattr(v, "item") else v

    inputs = [{"name": c.name, "shape": [len(frame)], "datatype": datatype_of(c),
               "data": [plain(v) for v in frame[c.name]]} for c in pipe.input_schema_]
    codec = {"parameters": {"content_type": "pd"},
             "inputs": [{**t, "shape": [len(frame), 1],
                         **({"parameters": {"content_type": "str"}} if t["datatype"] == "BYTES" else {})}
                        for t in inputs]}
    records = [{k: plain(v) for k, v in r.items()} for r in frame[pipe.input_schema_.names].to_dict("records")]
    infer = f"/v2/models/{name}/infer"
    return [(f"V2, one input per column, {len(frame)} rows", infer, {"inputs": inputs}),
            (f"pandas codec (MLServer's form), {len(frame)} rows", infer, codec),
            (f"V1 records, {len(frame)} rows", f"/v1/models/{name}:predict", {"instances": records}),
            ("V2, one input per column, 1 row", infer, {"inputs": [{**t, "shape": [1], "data": t["data"][:1]}
                                                                    for t in inputs]})]


def serve(saved: dict, pipe, test_csv: Path, config: dict) -> tuple[list[dict], str]:
    """Serve the saved pipeline, send held-out raw rows in each request form; latency rows and what was checked."""
    from scaleml_dask.cli import load_workflow

    deploy = load_workflow("deploy")
    missing = deploy.missing_serve_extra()
    if missing:
        return [], (f"Serving skipped: it needs the serve extra ({', '.join(missing)} missing): "
                    "pip install 'scaleml-dask[serve]'.")
    frame = pd.read_csv(test_csv, nrows=int(config.get("served_rows", 100)))
    frame = frame[pipe.input_schema_.names]
    expected = pipe.predict(frame).tolist()
    sent = requests(saved["registry"].name, pipe, frame)
    with deploy.running_server(saved["registry"]) as base:
        table, last = deploy.timed_requests(base, sent, int(config.get("requests", 20)))
    for label, *_ in sent[:3]:
        reply = last[label]
        got = reply["outputs"][0]["data"] if "outputs" in reply else reply["predictions"]
        if got != expected:
            raise RuntimeError(f"scaleml serve answered {label} unlike the pipeline: {got[:5]} vs {expected[:5]}")
    return table, (f"`scaleml serve` loaded the saved pipeline and answered held-out raw rows on {base}: categories "
                   "as text, missing values as null; the three request forms gave the in-memory pipeline's "
                   "predictions exactly (one client, sequential requests: latency includes the client).")


def run(config: dict, client, report) -> dict:
    """CSV -> ingest -> pipeline -> evaluate -> save -> serve raw rows, with the report sections."""
    check_registry(registry_dir(config))  # refused before fitting for nothing
    ds = sm.open_dataset(config["dataset"], client=client)
    t0 = time.perf_counter()
    train_csv, test_csv, held = raw_files(ds, config)
    csv_s = time.perf_counter() - t0
    store = Path(config["state_dir"]) / "table.zarr"
    t0 = time.perf_counter()
    ingest(train_csv, store, target="y", chunk_rows=config.get("chunk_rows"))
    ingest_s = time.perf_counter() - t0
    table = sm.open_dataset(store)
    columns = [{"column": c["name"], "kind": c["kind"], "missing": c["n_missing"], "levels": c["n_levels"] or ""}
               for c in column_info(table)]
    pipe = pipeline(config)
    t0 = time.perf_counter()
    pipe.fit(store)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe[:-1].fit(store)
    stats_s = time.perf_counter() - t0
    metrics = evaluate(pipe, test_csv, ds, held)
    figure = effects_figure(pipe, ds, report)
    saved = save(pipe, config, {k: metrics[k] for k in ("log loss", "accuracy")}, store)
    n = int(table[column_info(table)[0]["name"]].shape[0])
    steps = [{"step": "the dataset written as CSV (train and held-out)", "seconds": csv_s, "rows / s": np.nan},
             {"step": "ingest (CSV -> table store)", "seconds": ingest_s, "rows / s": n / ingest_s},
             {"step": "pipeline fit (statistics pass + SGD)", "seconds": fit_s, "rows / s": n / fit_s},
             {"step": "   of which the statistics pass (every transformer)", "seconds": stats_s,
              "rows / s": n / stats_s}]
    width = len(pipe[:-1].get_feature_names_out())
    served, note = serve(saved, pipe, test_csv, config)
    then = "then served raw rows" if served else "serving skipped (see below)"
    report.add_section(
        "Tables: CSV -> ingest -> pipeline -> evaluate -> save",
        text=(f"{n:,} rows of a mixed CSV ({train_csv.stat().st_size / 1e6:,.0f} MB: numbers with "
              f"{100 * ds.attrs['spec']['missing']:.0f} % missing, categories of "
              f"{', '.join(map(str, ds.attrs['spec']['levels']))} levels, a boolean, ISO timestamps) ingested into "
              "a table store, then a pipeline fitted on it: median imputation and scaling, one-hot with rare levels "
              f"grouped ({width} features), SGDClassifier. The "
              "preprocessing reads the data once for every transformer's statistics; each chunk is then transformed "
              "inside the classifier's tasks. Evaluated on held-out raw rows (a DataFrame, as a served request) "
              f"against the planted model. Saved to the registry ({Path(saved['path']).name}), {then}."),
        table=steps, figures=[figure])
    report.add_section("Tables: held-out raw rows", text="The planted model's accuracy is the best achievable.",
                       table=[{"measure": k, "value": v} for k, v in metrics.items()])
    report.add_section("Tables: the ingested columns", text="What `scaleml catalog show` lists for the store.",
                       table=columns)
    report.add_section("Tables: serving raw rows", text=note, table=served or None)
    return {"ingest_seconds": ingest_s, "fit_seconds": fit_s, "statistics_seconds": stats_s, "features": width,
            **metrics, "saved": saved.get("saved", False), "served": served}


if __name__ == "__main__":
    raise SystemExit(script_main("tables", run))
