"""Serving pipelines of raw columns: save -> load -> `scaleml serve` (a subprocess on a free 127.0.0.1 port) -> the
pipeline's own predictions on raw rows, sent with a real HTTP client as V2 inputs one per column (BYTES for
categories, null for missing), as MLServer's pandas-codec request, and as V1 records; the metadata lists the
columns; bad rows are 4xx naming the column; drift monitoring watches the numeric columns."""

from __future__ import annotations

import math
import re

import httpx
import numpy as np
import pytest
from fitted import small_table, table_pipelines
from test_hostile_requests import scaleml_serve

from scaleml_dask.deploy.registry import save_model

pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    frame, y, labels = small_table()
    pipes = table_pipelines((frame, y, labels))
    models = tmp_path_factory.mktemp("serve-tables") / "models"
    for name, pipe in pipes.items():
        save_model(pipe, models / name, data=frame)
    rows = frame.head(12).astype(object)
    rows.iloc[2, 0] = None  # a missing category (the classifier's encoder ignores it; the imputer fills price)
    rows.iloc[3, 1] = None  # a missing price
    with scaleml_serve(models, "--metrics-port", "0", "--reload-interval", "0.2") as (proc, base, metrics_port):
        yield proc, base, metrics_port, pipes, rows, frame


def _plain(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _v2_columns(rows, pipe):
    """One input per column: BYTES for categories, BOOL, FP64 / INT64 for numbers, null for missing."""
    from scaleml_dask.deploy._tables import datatype_of

    return [{"name": c.name, "shape": [len(rows)], "datatype": datatype_of(c),
             "data": [_plain(v) for v in rows[c.name]]} for c in pipe.input_schema_]


def _pandas_codec(rows):
    """The request MLServer's pandas codec (mlserver.codecs.PandasCodec.encode_request) makes of a DataFrame."""
    types = {"region": ("BYTES", {"content_type": "str"}), "price": ("FP64", None), "qty": ("INT64", None),
             "member": ("BOOL", None)}
    inputs = []
    for name in rows.columns:
        datatype, params = types[name]
        tensor = {"name": name, "shape": [len(rows), 1], "datatype": datatype,
                  "data": [_plain(v) for v in rows[name]]}
        if params:
            tensor["parameters"] = params
        inputs.append(tensor)
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def test_v2_columns_pandas_codec_and_v1_records_give_the_pipelines_predictions(served):
    proc, base, metrics_port, pipes, rows, frame = served
    reg, clf = pipes["table-reg"], pipes["table-clf"]
    reg_rows = rows.copy()
    reg_rows.iloc[2, 0] = "north"  # the regression's encoder refuses a missing region (handle_unknown="error")
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/v2/models/table-reg/infer", json={"inputs": _v2_columns(reg_rows, reg)})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == reg.predict(reg_rows).tolist()  # exact through JSON
        r = c.post("/v2/models/table-clf/infer", json={"inputs": _v2_columns(rows, clf),
                                                      "outputs": [{"name": "predict"}, {"name": "predict_proba"}]})
        assert r.status_code == 200, r.text
        labels, proba = r.json()["outputs"]
        assert labels["datatype"] == "BYTES" and labels["data"] == clf.predict(rows).tolist()
        np.testing.assert_array_equal(np.reshape(proba["data"], proba["shape"]), clf.predict_proba(rows))
        r = c.post("/v2/models/table-reg/infer", json=_pandas_codec(reg_rows))
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == reg.predict(reg_rows).tolist()
        records = [{k: _plain(v) for k, v in rec.items()} for rec in rows.to_dict("records")]
        r = c.post("/v1/models/table-clf:predict", json={"instances": records})
        assert r.status_code == 200 and r.json()["predictions"] == clf.predict(rows).tolist()


def test_metadata_lists_each_column_with_its_datatype(served):
    proc, base, *_ = served
    meta = httpx.get(f"{base}/v2/models/table-clf", timeout=30).json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("region", "BYTES"), ("price", "FP64"), ("qty", "INT64"), ("member", "BOOL")]
    assert meta["inputs"][0]["parameters"] == {"kind": "categorical", "levels": ["east", "north", "south", "west"]}
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("predict", "BYTES"), ("predict_proba", "FP64")]
    assert meta["parameters"]["content_type"] == "pd"


def test_bad_rows_are_4xx_naming_the_column(served):
    proc, base, metrics_port, pipes, rows, frame = served
    good = _v2_columns(rows.iloc[4:6], pipes["table-reg"])

    def without(name):
        return [t for t in good if t["name"] != name]

    def replaced(name, **change):
        return [{**t, **change} if t["name"] == name else t for t in good]

    cases = [
        ({"inputs": without("price")}, 422, "column 'price' is missing"),
        ({"inputs": replaced("price", datatype="BYTES", data=["1.5", "2"])}, 422, "column 'price' is numeric"),
        ({"inputs": replaced("region", datatype="FP64", data=[1.0, 2.0])}, 422, "column 'region' is categorical"),
        ({"inputs": replaced("region", data=["north", "atlantis"])}, 422, "column 'region': unknown category "
                                                                          "'atlantis'"),
        ({"inputs": replaced("price", data=[1.0, "x"])}, 400, "column 'price': 'x' is not a FP64 value"),
        ({"inputs": replaced("member", data=[True, 2])}, 400, "column 'member': 2 is not a BOOL value"),
        ({"inputs": replaced("qty", data=[1, 2**70])}, 422, "column 'qty': value"),
        ({"inputs": [*good, {**good[0], "name": "colour"}]}, 422, "input 'colour' is not a column"),
        ({"inputs": replaced("qty", shape=[1], data=[1])}, 400, "column 'qty' has 1 rows"),
        ({"inputs": [*good, good[0]]}, 400, "column 'region' is given twice"),
    ]
    with httpx.Client(base_url=base, timeout=30) as c:
        for body, status, message in cases:
            r = c.post("/v2/models/table-reg/infer", json=body)
            assert r.status_code == status and message in r.json()["error"], (message, r.status_code, r.text)
        record = {k: _plain(v) for k, v in rows.iloc[4].to_dict().items()}
        for instances, message in (([{k: v for k, v in record.items() if k != "qty"}], "column 'qty' is missing"),
                                   ([{**record, "region": 3}], "column 'region': 3 is not a categorical"),
                                   ([record, 5], "instance 1 is not a record")):
            r = c.post("/v1/models/table-reg:predict", json={"instances": instances})
            assert 400 <= r.status_code < 500 and message in r.json()["error"], (message, r.text)
        assert c.post("/v2/models/table-reg/infer", json={"inputs": good}).status_code == 200
    assert proc.poll() is None


def _monitor_counts(metrics_port):
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    seen = re.search(r'scaleml_monitored_rows_total\{model="table-reg"[^}]*\} (\S+)', text)
    skipped = re.search(r'scaleml_monitor_skipped_rows_total\{model="table-reg"[^}]*\} (\S+)', text)
    return text, float(seen.group(1)), float(skipped.group(1))


def test_drift_monitoring_watches_the_numeric_columns(served):
    proc, base, metrics_port, pipes, rows, frame = served
    reg = pipes["table-reg"]
    _, seen0, skipped0 = _monitor_counts(metrics_port)
    shifted = frame.head(100).copy()
    shifted["price"] = shifted["price"] + 1e150  # absurdly far from training (monitor.MAX_SHIFT): skipped, counted
    with httpx.Client(base_url=base, timeout=30) as c:
        for part in (frame.head(100), frame.iloc[100:200], shifted):
            assert c.post("/v2/models/table-reg/infer", json={"inputs": _v2_columns(part, reg)}).status_code == 200
    text, seen, skipped = _monitor_counts(metrics_port)
    features = {m for m in re.findall(r'scaleml_feature_shift\{([^}]*)\}', text) if 'model="table-reg"' in m}
    assert {re.search(r'feature="([^"]+)"', m).group(1) for m in features} == {"price", "qty", "member"}
    n_missing = int(frame.head(200)["price"].isna().sum())  # rows with a missing price are not monitored
    assert seen - seen0 == 200 - n_missing and skipped - skipped0 == 100 + n_missing


def test_concurrent_raw_row_requests_are_batched_each_answered_with_its_own_rows(served, tmp_path):
    """Under --max-batch-size, raw-row requests (V2 columns, pandas codec, V1 records) coalesce into one model call
    as numeric ones do; a request the encoder refuses (an unknown level) fails alone, the others of its batch are
    answered."""
    import asyncio

    from test_serve import metric_samples, running, total

    from scaleml_dask.deploy.serve import make_app

    proc, base, metrics_port, pipes, rows, frame = served
    reg = pipes["table-reg"]
    save_model(reg, tmp_path / "table-reg", data=frame)
    parts = [frame.iloc[i:i + 3].astype(object) for i in range(0, 60, 3)]  # 20 requests of 3 rows
    bad = parts[7].copy()
    bad.iloc[1, 0] = "atlantis"
    forms = [lambda p: ("/v2/models/table-reg/infer", {"inputs": _v2_columns(p, reg)}),
             lambda p: ("/v2/models/table-reg/infer", _pandas_codec(p)),
             lambda p: ("/v1/models/table-reg:predict",
                        {"instances": [{k: _plain(v) for k, v in r.items()} for r in p.to_dict("records")]})]

    async def burst(url, frames):
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            return await asyncio.gather(*[c.post(path, json=body) for path, body in
                                          (forms[i % 3](p) for i, p in enumerate(frames))])

    def answer(r):
        return r.json()["outputs"][0]["data"] if "outputs" in r.json() else r.json()["predictions"]

    app = make_app([tmp_path / "table-reg"], max_batch_size=1000, max_batch_time_ms=300)
    with running(app) as client:
        first = asyncio.run(burst(str(client.base_url), parts))
        calls = total(metric_samples(client.get("/metrics").text), "scaleml_batch_rows_count", model="table-reg")
        second = asyncio.run(burst(str(client.base_url), [*parts[:7], bad, *parts[8:]]))
        s = metric_samples(client.get("/metrics").text)
    for i, (r, p) in enumerate(zip(first, parts)):
        assert r.status_code == 200, (i, r.text)
        np.testing.assert_allclose(answer(r), reg.predict(p), rtol=1e-12)  # its own rows, not a neighbour's
    assert total(s, "scaleml_batch_rows_sum", model="table-reg") == 2 * 60
    assert calls < 20 and total(s, "scaleml_batch_rows_count", model="table-reg") - calls < 20  # batches formed
    for i, (r, p) in enumerate(zip(second, parts)):
        if i == 7:
            assert r.status_code == 422 and "column 'region': unknown category 'atlantis'" in r.json()["error"]
        else:
            assert r.status_code == 200, (i, r.text)
            np.testing.assert_allclose(answer(r), reg.predict(p), rtol=1e-12)
