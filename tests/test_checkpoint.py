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
