"""Distributed SGD: the three modes (sync, local = federated averaging, async parameter server) on the same
logistic data, compared by held-out loss against wall time and against bytes exchanged, test accuracy and
the number of communication rounds; plus what compression of the workers' messages saves and costs.

The last ``test_rows`` rows are the test set; each fit holds out its own seeded validation rows for the
loss curve. With ``state_dir`` (set by ``workflow_main``) every fit checkpoints, and a rerun resumes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import scaleml_dask as sm
from scaleml_dask.checkpoint import fingerprint
from scaleml_dask.report import pyplot
from scaleml_dask.runner import script_main


def _fit(name: str, params: dict, dataset: str, X, y, Xt, yt, state_dir: str | None) -> tuple[dict, np.ndarray]:
    # one checkpoint directory per configuration and dataset: a rerun resumes, an edited config starts afresh
    key = fingerprint({**params, "dataset": dataset})[:12]
    ckpt = str(Path(state_dir) / f"sgd-{name}-{key}") if state_dir else None
    t0 = time.perf_counter()
    m = sm.SGDClassifier(checkpoint_dir=ckpt, **params).fit(X, y)
    seconds = time.perf_counter() - t0
    row = {"run": name, "mode": m.mode, "compress": m.compress or "none",
           "test accuracy": float(m.score(Xt, yt)), "held-out loss": float(m.loss_curve_[-1, 3]),
           "rounds": int(m.n_rounds_), "epochs": int(m.n_iter_), "samples seen": int(m.samples_seen_),
           "bytes exchanged": int(m.bytes_exchanged_), "seconds": seconds}
    if m.mode == "async":
        row["max staleness"] = m.staleness_["max"]
        row["mean staleness"] = m.staleness_["mean"]
        row["rejected pushes"] = m.staleness_["rejected"]
    return row, m.loss_curve_


def _plot(curves: dict[str, np.ndarray], report) -> list[Path]:
    plt = pyplot()

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, c in curves.items():
        a.plot(c[:, 0], c[:, 3], marker=".", label=name)
        b.plot(np.maximum(c[:, 2], 1.0), c[:, 3], marker=".", label=name)
    a.set_xlabel("wall time (s)")
    b.set_xlabel("bytes exchanged")
    b.set_xscale("log")
    for ax in (a, b):
        ax.set_ylabel("held-out log loss")
        ax.grid(alpha=0.3)
    a.legend(fontsize=8)
    png = report.save_figure(fig, "sgd_loss_curves")
    return [png]


def run(config: dict, client, report) -> dict:
    """Fit SGDClassifier in each mode of ``config['modes']`` (and the compressed variants) and compare."""
    ds = sm.open_dataset(config["dataset"])
    n = ds.sizes["sample"]
    n_test = int(config.get("test_rows", 50_000))
    X, y = ds["X"].data[: n - n_test], ds["y"].data[: n - n_test]
    Xt, yt = (np.asarray(a) for a in (ds["X"][n - n_test:].values, ds["y"][n - n_test:].values))
    common = dict(config.get("common") or {})
    state_dir = config.get("state_dir")
    rows, curves = [], {}
    for mode, params in (config.get("modes") or {}).items():
        row, curve = _fit(mode, {**common, "mode": mode, **(params or {})}, config["dataset"], X, y, Xt, yt, state_dir)
        rows.append(row)
        curves[mode] = curve
    comp = config.get("compression") or {}
    base = comp.get("mode")
    for method in comp.get("methods", []) if base else []:
        params = {**common, "mode": base, **(config["modes"].get(base) or {}), "compress": method,
                  **(comp.get("params") or {})}
        row, curve = _fit(f"{base}+{method}", params, config["dataset"], X, y, Xt, yt, state_dir)
        rows.append(row)
        curves[f"{base}+{method}"] = curve
    bayes = ds.attrs.get("bayes_accuracy")
    text = (f"{config['dataset']}: {n - n_test:,} training rows in {len(X.chunks[0])} blocks, "
            f"{n_test:,} test rows" + (f"; Bayes accuracy of the planted model {bayes:.4f}" if bayes else "") + ". "
            "Rounds: sync steps, local averaging rounds, async accepted pushes. Bytes: weights sent to the "
            "partitions plus what they send back (compressed size where compressed).")
    report.add_section("Distributed SGD: sync vs local (federated averaging) vs async", text=text,
                       table=rows, figures=_plot(curves, report), data={"bayes_accuracy": bayes})
    return {"runs": {r["run"]: {"accuracy": r["test accuracy"], "rounds": r["rounds"],
                                "bytes": r["bytes exchanged"]} for r in rows}, "bayes_accuracy": bayes}


if __name__ == "__main__":
    raise SystemExit(script_main("sgd", run))
