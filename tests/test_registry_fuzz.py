"""Property-based fuzz of the registry: model versions mutated every way a file can be wrong, each loaded in a
separate process, so that a crash (a segfault, a bus error) or a hang is a failed example, not a dead test run.

Mutations (hypothesis): any metadata field replaced by a value of any type and nesting, deleted, or a field
added; the ``.npz`` bytes flipped, cut or extended; an array replaced by one of another dtype (object,
structured, void, complex, unicode...), shape, order or size (a zip bomb); views declared over any array with
any dtype, offset, shape and strides and used by the state; the files replaced by a directory, a FIFO, a
symlink to a device, or removed. Each mutation is either left as it is (corruption) or *resealed* — every
checksum recomputed, as a careful tamperer would.

The outcome must be: a ``RegistryError`` naming the version's file, or a model that loads — identical to the
original (same outputs, same continuation) for an unsealed mutation; for a resealed one a working model (it
answers, keeps learning) or, at most, an exception when it is used. Never another exception from loading, never
a crash, never a hang. 300 examples run with the suite (derandomized); a longer run on demand:
``SCALEML_FUZZ_EXAMPLES=5000 pytest tests/test_registry_fuzz.py -k many_more -s`` (random, prints the outcomes).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fitted import batch_models, small_data, small_table, table_pipelines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scaleml_dask as sm
from scaleml_dask import online
from scaleml_dask.deploy.registry import content_sha256, save_model

LOADER = Path(__file__).with_name("registry_loader.py")


class Loader:
    """One long-lived loader process (tests/registry_loader.py), started again after it dies."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()
        self.started = 0

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(LOADER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        self.started += 1

    def load(self, path: Path, timeout: float = 120.0) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else None
        if line:
            return json.loads(line)
        if line is None:
            self.proc.kill()
        code = self.proc.wait(30)
        self.proc = None
        return {"outcome": "hang" if line is None else "crash", "returncode": code}

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def loader():
    lo = Loader()
    yield lo
    lo.close()


@pytest.fixture(scope="module")
def versions(tmp_path_factory, loader):
    """One saved version per kind of state (arrays, views of a buffer, dataclasses, generators, compressed
    arrays, detectors, pipelines of raw columns), and what the loader makes of each unchanged: {name: (version
    dir, fingerprint)}."""
    data = small_data()
    X, y, yc, y3 = data
    batch = batch_models(data)
    models = {"linear": batch["linear"], "pca": batch["pca"], "sgd-clf3": batch["sgd-clf3"],
              "kmeans": sm.KMeans(n_clusters=3, random_state=0).fit(X)}
    models["int8"] = sm.quantize(batch["sgd-clf3"], "int8")[0]
    models["float16"] = sm.quantize(batch["linear"], "float16")[0]
    for name, model, target in (("online-logistic", online.LogisticRegression(optimizer="adam"), yc),
                                ("rls", online.RLS(), y)):
        model.learn_many(X, target)
        models[name] = model
    mb = online.MiniBatchKMeans(n_clusters=3, random_state=0)
    mb.learn_many(X)
    models["minibatch-kmeans"] = mb
    rng = np.random.default_rng(2)
    for name, det in (("adwin", online.ADWIN()), ("page-hinkley", online.PageHinkley())):
        det.update_many(rng.normal(0, 1, 700))
        for v in rng.normal(0, 1, 5):
            det.update(v)
        models[name] = det
    table = small_table()
    models.update(table_pipelines(table))  # nested estimators, encoders' compiled columns, object arrays
    models["table-int8"] = sm.quantize(models["table-reg"], "int8", X_val=table[0], y_val=table[1])[0]
    root = tmp_path_factory.mktemp("fuzz-bases")
    out = {}
    for name, model in models.items():
        data = table[0] if name.startswith("table") else X if hasattr(model, "n_features_in_") else None
        path = save_model(model, root / name, data=data)
        got = loader.load(path.parent)
        assert got["outcome"] == "loaded", (name, got)
        out[name] = (path, got["fingerprint"])
    return out


# --- mutations ----------------------------------------------------------------------------------------------
INTERESTING = [
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63), 10**30, 1e308, -1e-308, 0.5, "", "x", "O", "|O", "<f8",
    "<i8", "|V8", "<c16", "[('a', 'O')]", "../metadata.json", "/etc/passwd", "arrays.npz", "coef_", "_buf",
    {"$float": "nan"}, {"$float": "inf"}, {"$dtype": "O"}, {"$dtype": "<f8"}, {"$scalar": "<i8", "value": 10**30},
    {"$scalar": "|i1", "value": 300}, {"$scalar": "|O", "value": 1}, {"$array": "coef_"}, {"$array": "nope"},
    {"$array": ["coef_"]}, {"$tuple": "ab"}, {"$dict": [[{"$array": "coef_"}, 1]]}, {"$dict": [[1]]},
    {"$generator": "PCG64", "state": {}}, {"$generator": "os", "state": {}},
    {"$dataclass": "scaleml_dask.sgd._trainer:TrainState", "fields": {}}, {"$dataclass": "os:system", "fields": {}},
    {"$pickle": "gASV"}, {"$array": "coef_", "extra": 1}, [[[[[[[[[[1]]]]]]]]]], [1, [2, [3]]], {"a": {"b": {}}},
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(INTERESTING),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON document."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _retyped(value, how: int):
    nested = value
    for _ in range(200):
        nested = [nested]
    return [str(value), [value], {"x": value}, nested, json.dumps(value), None, True, -1, 1e308,
            {"$tuple": [value]}, {"$dict": [["k", value]]}][how % 11]


def _reseal_files(version: Path, meta: dict) -> None:
    for fname, info in list(meta.get("files", {}).items()) if isinstance(meta.get("files"), dict) else []:
        p = version / fname if isinstance(fname, str) and "/" not in fname and fname not in ("", ".", "..") else None
        if isinstance(info, dict) and p is not None and p.is_file() and not p.is_symlink():
            raw = p.read_bytes()
            info.update(sha256=hashlib.sha256(raw).hexdigest(), bytes=len(raw))


def _write(version: Path, meta: dict, reseal: bool) -> None:
    if reseal:
        _reseal_files(version, meta)
        meta["content_sha256"] = content_sha256(meta) if isinstance(meta, dict) else None
    (version / "metadata.json").write_text(json.dumps(meta))


def mutate_field(data, version: Path, meta: dict) -> str:
    paths = [p for p, _ in _paths(meta) if p]
    path = data.draw(st.sampled_from(paths), label="path")
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    op = data.draw(st.sampled_from(["replace", "delete", "insert", "retype"]), label="op")
    if op == "replace":
        parent[key] = data.draw(json_values, label="value")
    elif op == "retype":
        parent[key] = _retyped(parent[key], data.draw(st.integers(0, 10), label="how"))
    elif op == "delete":
        del parent[key]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=10), label="new key")] = data.draw(json_values, label="value")
    else:
        parent.insert(key, data.draw(json_values, label="value"))
    return f"{op} {'.'.join(map(str, path))}"


def mutate_npz_bytes(data, version: Path, meta: dict) -> str:
    npz = version / "arrays.npz"
    raw = bytearray(npz.read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1), label="at")
    op = data.draw(st.sampled_from(["flip", "cut", "extend", "splice"]), label="op")
    if op == "flip":
        raw[at] ^= data.draw(st.integers(1, 255), label="bits")
    elif op == "cut":
        del raw[at:]
    elif op == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=64), label="tail")
    else:
        raw[at:at + 8] = data.draw(st.binary(max_size=16), label="bytes")
    npz.write_bytes(bytes(raw))
    return f"{op} npz byte {at}"


def _replacement_array(data, original: np.ndarray) -> np.ndarray:
    kind = data.draw(st.sampled_from(["object", "structured", "void", "complex", "unicode", "int8", "float32",
                                      "bool", "fortran", "shape", "bomb", "scalar", "big-endian"]), label="array")
    n = max(original.size, 1)
    if kind == "object":
        return np.array([object()] * n, dtype=object)
    if kind == "structured":
        return np.zeros(n, dtype=[("a", "<f8"), ("b", "<i4")])
    if kind == "void":
        return np.zeros(n, dtype="V8")
    if kind == "complex":
        return np.ones(original.shape, dtype=np.complex128)
    if kind == "unicode":
        return np.array(["x" * 7] * n)
    if kind == "fortran":
        return np.asfortranarray(np.ones((3, max(n, 2))))
    if kind == "shape":
        return np.ones(data.draw(st.lists(st.integers(0, 6), max_size=4), label="shape"))
    if kind == "bomb":
        return np.zeros(2**22)
    if kind == "scalar":
        return np.float64(3.0) * np.ones(())
    if kind == "big-endian":
        return original.astype(original.dtype.newbyteorder(">")) if original.dtype.kind in "iuf" else original
    return original.astype({"int8": np.int8, "float32": np.float32, "bool": np.bool_}[kind])


def mutate_array(data, version: Path, meta: dict) -> str:
    with np.load(version / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    name = data.draw(st.sampled_from(sorted(arrays)), label="array name")
    a = _replacement_array(data, arrays[name])
    arrays[name] = a
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # object arrays are pickled here, as an attacker's file would hold
    (version / "arrays.npz").write_bytes(buf.getvalue())
    if data.draw(st.booleans(), label="declare it"):  # the metadata says what the file holds
        digest = hashlib.sha256(a.tobytes() if a.dtype.kind != "O" else b"").hexdigest()
        meta["arrays"][name].update(shape=list(a.shape), dtype=a.dtype.str, sha256=digest)
    return f"array {name} -> {a.dtype.str}{list(a.shape)}"


def mutate_values(data, version: Path, meta: dict) -> str:
    """Change a few values of a stored array (counts, sizes and indices a kernel trusts, too)."""
    with np.load(version / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    names = sorted(n for n, a in arrays.items() if a.size and a.dtype.kind in "biuf")
    name = data.draw(st.sampled_from(names), label="array name")
    a = arrays[name].reshape(-1).copy()
    for _ in range(data.draw(st.integers(1, 3), label="values")):
        i = data.draw(st.integers(0, a.size - 1), label="index")
        v = data.draw(st.sampled_from([-1, 0, 1, 2, 3, 7, 64, 65, 1000, 2**31, -(2**31), 1e18, 1e300, -1e300,
                                       float("nan"), float("inf"), 0.5, -0.5]), label="value")
        with np.errstate(all="ignore"):
            a[i] = np.array(v).astype(a.dtype) if a.dtype.kind != "b" else bool(v == v and v)
    arrays[name] = a.reshape(arrays[name].shape)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    (version / "arrays.npz").write_bytes(buf.getvalue())
    meta["arrays"][name]["sha256"] = hashlib.sha256(arrays[name].tobytes()).hexdigest()
    return f"values of {name}"


VIEW_DTYPES = ["|O", "<f8", "<i8", "|u1", "|b1", "|V8", "<c16", "<f4", ">f8", "<U2", "[('a', '<f8')]", 7, None]


def mutate_view(data, version: Path, meta: dict) -> str:
    stored = sorted(meta["arrays"])
    view = {"of": data.draw(st.sampled_from([*stored, "nope"]), label="of"),
            "offset": data.draw(st.integers(-64, 2**20) | st.sampled_from([0, 8, 2**62]), label="offset"),
            "shape": data.draw(st.lists(st.integers(-2, 64) | st.sampled_from([2**31, 2**40]), max_size=3),
                               label="shape"),
            "strides": data.draw(st.lists(st.integers(-64, 64) | st.sampled_from([0, 2**40]), max_size=3),
                                 label="strides"),
            "dtype": data.draw(st.sampled_from(VIEW_DTYPES), label="dtype")}
    meta.setdefault("views", {})["v_"] = view
    refs = [p for p, v in _paths(meta["state"]) if isinstance(v, dict) and "$array" in v]
    if refs and data.draw(st.booleans(), label="replace a reference"):
        target = meta["state"]
        for k in data.draw(st.sampled_from(refs), label="reference"):
            target = target[k]
        target["$array"] = "v_"
    else:
        meta["state"]["$dict"].append(["probe_", {"$array": "v_"}])
    return f"view {view}"


def mutate_file(data, version: Path, meta: dict) -> str:
    which = data.draw(st.sampled_from(["arrays.npz", "metadata.json"]), label="file")
    p = version / which
    op = data.draw(st.sampled_from(["directory", "fifo", "dev-zero", "symlink", "missing", "empty", "sparse"]),
                   label="op")
    keep = p.read_bytes()
    p.unlink()
    if op == "directory":
        p.mkdir()
    elif op == "fifo":
        os.mkfifo(p)
    elif op == "dev-zero":
        p.symlink_to("/dev/zero")
    elif op == "symlink":  # to an identical copy elsewhere: loads as the original
        other = version.parent / f".{which}.copy"
        other.write_bytes(keep)
        p.symlink_to(other)
    elif op == "empty":
        p.write_bytes(b"")
    elif op == "sparse":
        with open(p, "wb") as f:
            f.truncate(2**31)
    return f"{which} -> {op}"


MUTATIONS = {"field": mutate_field, "npz bytes": mutate_npz_bytes, "array": mutate_array, "values": mutate_values,
             "view": mutate_view, "file": mutate_file}


def run_fuzz(loader, versions, examples: int) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    failures: list = []
    work = Path(tempfile.mkdtemp(prefix="scaleml-fuzz-"))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=examples <= 400,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def example(data):
        base = data.draw(st.sampled_from(sorted(versions)), label="base")
        kind = data.draw(st.sampled_from(sorted(MUTATIONS)), label="mutation")
        reseal = kind != "file" and data.draw(st.booleans(), label="reseal")
        src, original = versions[base]
        root = Path(tempfile.mkdtemp(dir=work))
        version = root / base / "1"
        shutil.copytree(src, version)
        try:
            meta = json.loads((version / "metadata.json").read_text())
            what = MUTATIONS[kind](data, version, meta)
            if kind != "file":
                _write(version, meta, reseal)
            out = loader.load(version.parent)
            seen[(out["outcome"], kind, reseal)] += 1
            if out["outcome"] == "loaded, then failed":
                failures.append((base, what, out["type"], out["message"][:300]))
            assert out["outcome"] in ("refused", "loaded", "loaded, then failed"), (base, what, out)
            if out["outcome"] == "refused":  # names the version's file (or the registry, if no version is left)
                assert str(version.parent) in out["message"], (base, what, out)
                assert "(unexpected " not in out["message"], (base, what, out)  # the last guard caught it: a bug
            elif not reseal:  # corruption: refused, or the very same model
                assert out["outcome"] == "loaded" and out["fingerprint"] == original, (base, what, out)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(root)

    try:
        example()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for f in failures:
        print("loaded, then failed when used:", f)
    return seen


def _summary(seen: collections.Counter) -> dict[str, int]:
    by = collections.Counter()
    for (outcome, kind, reseal), n in seen.items():
        by[f"{kind}{' resealed' if reseal else ''}: {outcome}"] += n
    return dict(sorted(by.items()))


def test_mutated_versions_are_refused_or_load_identical_never_crash(loader, versions):
    seen = run_fuzz(loader, versions, 300)
    outcomes = collections.Counter(o for (o, _, _), n in seen.items() for _ in range(n))
    # the fuzz reached past the checksums: resealed mutations were refused by the deeper checks, and loaded
    assert outcomes["refused"] > 50 and outcomes["loaded"] > 5, _summary(seen)
    assert sum(n for (o, k, r), n in seen.items() if r and o == "refused") > 20, _summary(seen)


@pytest.mark.slow
@pytest.mark.skipif("SCALEML_FUZZ_EXAMPLES" not in os.environ, reason="a long fuzz run, on demand: "
                    "SCALEML_FUZZ_EXAMPLES=5000 pytest tests/test_registry_fuzz.py -k many_more -s")
def test_mutated_versions_many_more(loader, versions):
    n = int(os.environ["SCALEML_FUZZ_EXAMPLES"])
    seen = run_fuzz(loader, versions, n)
    print(_summary(seen))
    outcomes = collections.Counter(o for (o, _, _), k in seen.items() for _ in range(k))
    assert set(outcomes) <= {"refused", "loaded", "loaded, then failed"}, _summary(seen)  # never a crash
    assert outcomes["refused"] > n // 10 and outcomes["loaded"] > 0, _summary(seen)  # and it went deep


def test_a_crash_in_the_loader_is_seen_as_a_failed_example(tmp_path):
    """The harness itself: a loader that dies is reported as a crash, and the next load starts a new one."""
    lo = Loader()
    try:
        lo.proc = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGBUS)"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert lo.load(tmp_path) == {"outcome": "crash", "returncode": -7}  # SIGBUS
        assert lo.load(tmp_path / "nothing")["outcome"] == "refused" and lo.started == 1
    finally:
        lo.close()


def test_zip_bomb_is_refused_before_it_is_inflated(versions, tmp_path):
    """A 129 KiB member that inflates to 128 MiB, declared as the 5 coefficients it replaces: refused from the
    zip's declared size, before it is inflated (the load's peak of traced allocations stays far below 128 MiB)."""
    import tracemalloc

    from scaleml_dask.deploy.registry import RegistryError, load_model

    version = tmp_path / "reg" / "1"
    shutil.copytree(versions["linear"][0], version)
    with np.load(version / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["coef_"] = np.zeros(2**24)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    (version / "arrays.npz").write_bytes(buf.getvalue())
    info = zipfile.ZipFile(io.BytesIO(buf.getvalue())).getinfo("coef_.npy")
    assert info.compress_size < 200 * 2**10 and info.file_size > 128 * 2**20  # the bomb
    meta = json.loads((version / "metadata.json").read_text())
    _write(version, meta, reseal=True)
    tracemalloc.start()
    try:
        with pytest.raises(RegistryError, match=r"array 'coef_' inflates to \d+ bytes; its declared <f8 \[5\] "
                                                r"holds 40"):
            load_model(version.parent)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak  # numpy's and zipfile's buffers are traced: nothing near 128 MiB was made
