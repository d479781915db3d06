"""Atomic writes and the checkpoint directory: round trip, pruning, configuration guard."""

from __future__ import annotations

import numpy as np
import pytest

from scaleml_dask.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    atomic_save_npz,
    atomic_write,
    fingerprint,
)


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "a.npz"
    atomic_save_npz(target, {"w": np.arange(3.0)})
    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # not bytes: fails after the temporary file was created
    with np.load(target, allow_pickle=False) as z:
        assert z["w"].tolist() == [0.0, 1.0, 2.0]
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_checkpoint_round_trip_keeps_newest(tmp_path):
    ck = Checkpointer(tmp_path, {"epochs": 5, "alpha": np.float64(0.1)}, keep=2)
    assert ck.latest() is None
    state = {"bit_generator": "PCG64", "state": {"state": 2**100 + 7, "inc": 3}}
    for step in range(1, 5):
        ck.save(step, {"w": np.full((2, 3), float(step)), "t": np.array(step * 10.0)},
                {"epoch": step, "rng": state})
    assert ck.steps() == [3, 4]
    last = Checkpointer(tmp_path, {"alpha": 0.1, "epochs": 5}).latest()  # key order does not matter
    assert last.step == 4
    np.testing.assert_array_equal(last.arrays["w"], np.full((2, 3), 4.0))
    assert float(last.arrays["t"]) == 40.0
    assert last.meta == {"epoch": 4, "rng": state}  # big integers survive exactly


def test_different_configuration_is_refused_with_the_differences(tmp_path):
    Checkpointer(tmp_path, {"epochs": 5, "mode": "sync"}).save(1, {"w": np.zeros(2)}, {})
    other = Checkpointer(tmp_path, {"epochs": 7, "mode": "sync"})
    with pytest.raises(CheckpointMismatchError, match=r"epochs: 5 in the checkpoint vs 7 now"):
        other.latest()
    with pytest.raises(CheckpointMismatchError):
        other.save(2, {"w": np.zeros(2)}, {})


def test_fingerprint_is_stable_and_sensitive():
    assert fingerprint({"a": (1, 2), "b": 1.0}) == fingerprint({"b": 1.0, "a": [1, 2]})
    assert fingerprint({"a": (1, 2)}) != fingerprint({"a": (2, 1)})


def test_resume_on_other_data_of_the_same_shape_is_refused(tmp_path, rng):
    X = rng.standard_normal((50, 3))
    Checkpointer(tmp_path, {"epochs": 5}, data=X).save(1, {"w": np.zeros(3)}, {})
    assert Checkpointer(tmp_path, {"epochs": 5}, data=X.copy()).latest().step == 1  # same values: resumes
    other = X.copy()
    other[7, 1] += 1e-12
    with pytest.raises(CheckpointMismatchError, match=r"written for other data \(data.sha256: '[0-9a-f]+' in the "
                                                      r"checkpoint vs '[0-9a-f]+' now\)"):
        Checkpointer(tmp_path, {"epochs": 5}, data=other).latest()
    with pytest.raises(CheckpointMismatchError, match=r"data.shape: \[50, 3\] in the checkpoint vs \[49, 3\] now"):
        Checkpointer(tmp_path, {"epochs": 5}, data=X[:49]).save(2, {"w": np.zeros(3)}, {})


def test_regenerated_store_with_the_same_shape_is_refused(tmp_path):
    import dask.array as da

    import scaleml_dask as sm
    from scaleml_dask.checkpoint import data_fingerprint
    from scaleml_dask.io.synthetic import make_regression

    store = make_regression(tmp_path / "d.zarr", 900, 2, chunk_rows=300, seed=0)
    ckdir = tmp_path / "ck"
    Checkpointer(ckdir, {"epochs": 1}, data=store).save(1, {"w": np.zeros(2)}, {})
    fp = data_fingerprint(sm.open_dataset(store))  # an xarray Dataset opened from the store: the store's print
    assert fp["path"] == str(store.resolve()) and fp["arrays"]["X"]["shape"] == [900, 2]
    assert len(next(v for k, v in fp["arrays"]["X"].items() if k.startswith("chunk "))) == 3
    assert Checkpointer(ckdir, {"epochs": 1}, data=store).latest().step == 1
    make_regression(store, 900, 2, chunk_rows=300, seed=1, overwrite=True)  # other values, same shape, chunking
    with pytest.raises(CheckpointMismatchError, match=r"other data \(data\.arrays\.X\.chunk \w+\.c/0/0: "):
        Checkpointer(ckdir, {"epochs": 1}, data=str(store)).latest()
    a, b = (da.random.default_rng(s).standard_normal((100, 2), chunks=50) for s in (0, 1))
    Checkpointer(tmp_path / "ck2", {}, data=a).save(1, {"w": np.zeros(2)}, {})
    with pytest.raises(CheckpointMismatchError, match=r"data\.dask: "):
        Checkpointer(tmp_path / "ck2", {}, data=b).latest()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    ck = Checkpointer(tmp_path, {"epochs": 5}, keep=3)
    for step in (1, 2, 3):
        ck.save(step, {"w": np.full(1000, float(step))}, {"epoch": step})
    newest = tmp_path / "ckpt-00000003.npz"
    raw = bytearray(newest.read_bytes())
    if damage == "truncate":
        newest.write_bytes(raw[: len(raw) // 2])
    else:
        raw[len(raw) // 3] ^= 0x01  # inside the array's bytes: caught by the zip member's CRC
        newest.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match=r"ckpt-00000003.npz is unreadable .*falling back to the previous one"):
        last = ck.latest()
    assert last.step == 2 and last.meta == {"epoch": 2}
    np.testing.assert_array_equal(last.arrays["w"], np.full(1000, 2.0))
