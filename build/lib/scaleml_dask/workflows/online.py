"""Online learning on a drifting stream: prequential (test-then-train) accuracy of a streaming logistic
regression, without adaptation and with an ADWIN drift detector that on a detection resets the learner
or re-weights its past, read chunk by chunk from the dataset in bounded memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import scaleml_dask as sm
from scaleml_dask import online as ol
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main


def _plot(results: dict[str, ol.PrequentialResult], change_at: int | None, smooth: int, report) -> Path:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for (name, res), color in zip(results.items(), ("tab:gray", "tab:blue", "tab:green")):
        csum = np.r_[0.0, np.cumsum(res.score)]
        first = np.maximum(np.arange(1, len(csum)) - smooth, 0)  # trailing window: no look-ahead
        curve = (csum[1:] - csum[first]) / (np.arange(1, len(csum)) - first)
        ax.plot(res.n_samples, curve, color=color, label=name)
        if len(res.drifts):
            at = np.searchsorted(res.n_samples, res.drifts).clip(0, len(curve) - 1)
            ax.plot(res.drifts, curve[at], "v", color=color, markersize=9, markeredgecolor="k",
                    label=f"{name}: detections")
    if change_at is not None:
        ax.axvline(change_at, color="tab:red", linestyle="--", label="planted change")
    ax.set_xlabel("samples seen")
    ax.set_ylabel(f"prequential accuracy (mean of the last {smooth} batches)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return report.save_figure(fig, "online_prequential")


def run(config: dict, client, report) -> dict:
    """Prequential accuracy with and without drift adaptation on the configured stream."""
    ds = sm.open_dataset(config["dataset"])
    change_at = ds.attrs.get("change_at")
    batch = int(config.get("batch_size", 500))
    learner = ol.LogisticRegression(**config.get("learner", {}))
    detector = ol.ADWIN(**config.get("detector", {}))
    models = {
        "no adaptation": learner,
        "ADWIN + reset": ol.DriftAdaptive(learner, detector, strategy="reset"),
        "ADWIN + re-weight": ol.DriftAdaptive(learner, detector, strategy="reweight",
                                              forget_factor=float(config.get("forget_factor", 0.01))),
    }
    results, table = {}, []
    for name, model in models.items():
        stream = ol.iter_batches(ds, batch)
        res = ol.prequential(model, stream)
        results[name] = res
        row = {"learner": name, "accuracy (all)": res.mean(), "detections": len(res.drifts),
               "max MB held by the stream": stream.max_bytes_held / 2**20}
        if change_at is not None:
            row["before change"] = res.mean(0, change_at)
            row["after change"] = res.mean(change_at)
            row["first 10,000 after"] = res.mean(change_at, change_at + 10_000)
            after = res.drifts[res.drifts >= change_at]
            row["delay"] = int(after[0] - change_at) if len(after) else None
            row["false alarms"] = int((res.drifts < change_at).sum())
        table.append(row)
    fig = _plot(results, change_at, int(config.get("smooth", 10)), report)
    text = (f"Prequential (test-then-train) accuracy on {config['dataset']} ({ds.sizes['sample']:,} rows, "
            f"batches of {batch}; each batch is predicted, then learned). Learner: {learner!r}; detector: "
            f"{detector!r} on the learner's 0/1 errors. Triangles mark detections, the dashed line the planted "
            "change. Reset restarts the learner; re-weight keeps its weights but shrinks the weight of the "
            "past so its steps grow again.")
    report.add_section("Online learning and drift detection", text=text, table=table, figures=[fig])
    return {"rows": table, "change_at": change_at}


if __name__ == "__main__":
    raise SystemExit(script_main("online", run))
