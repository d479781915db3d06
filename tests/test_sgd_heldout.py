"""SGD local mode's held-out loss, scored on the workers that read the held-out rows: the loss curve, a callback's
early stopping and the divergence checks decide exactly as the loss of the held-out rows gathered in one place
(the reference here: ``mean_loss`` on every block's seeded held-out range, at the weights the callback saw)."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

from scaleml_dask.io.synthetic import logistic_chunk, regression_chunk
from scaleml_dask.sgd import DivergenceWarning, SGDClassifier, SGDRegressor
from scaleml_dask.sgd import _kernels as kernels

ROWS, BLOCKS = 4_000, 4
KW = {"mode": "local", "batch_size": 100, "eta0": 0.02, "validation_fraction": 0.05}


def _held(fraction: float, seed: int = 0) -> np.ndarray:
    return np.concatenate([np.arange(b * ROWS + lo, b * ROWS + hi)
                           for b in range(BLOCKS) for lo, hi in [kernels.holdout_range(seed, b, ROWS, fraction)]])


@pytest.fixture(scope="module")
def data():
    X, y = logistic_chunk(11, 0, ROWS * BLOCKS, coef=np.array([1.5, -2.0, 0.5, 1.0]), intercept=0.5)
    return X, y, da.from_array(X, chunks=(ROWS, 4)), da.from_array(y, chunks=ROWS)


def _recorder():
    seen = []

    def callback(info):
        seen.append((info["epoch"], info["weights"], info["heldout_loss"]))

    return seen, callback


def _reference(X, y, weights, loss="log_loss") -> np.ndarray:
    held = _held(KW["validation_fraction"])
    return np.array([kernels.mean_loss(W, X[held], y[held, None].astype(float), loss) for W in weights])


@pytest.mark.parametrize("scheduler", ["distributed", "threads"])
def test_the_curve_is_the_loss_of_the_held_out_rows_at_each_epochs_weights(request, data, scheduler):
    if scheduler == "distributed":
        request.getfixturevalue("client")
    X, y, dX, dy = data
    seen, callback = _recorder()
    m = SGDClassifier(rounds=4, callback=callback, **KW).fit(dX, dy)
    assert [e for e, _, _ in seen] == [1, 2, 3, 4] and m.n_iter_ == 4
    ref = _reference(X, y, [np.zeros((5, 1))] + [W for _, W, _ in seen])
    np.testing.assert_allclose(m.loss_curve_[:, 3], ref, rtol=1e-12)
    assert m.loss_curve_[0, 3] == pytest.approx(np.log(2), rel=1e-14)
    np.testing.assert_allclose([v for _, _, v in seen], ref[1:], rtol=1e-12)  # what the callback was told


def test_early_stopping_by_callback_stops_at_the_epoch_the_held_out_losses_say(client, data):
    """A callback with scikit-learn's n_iter_no_change rule (2 epochs without improving the best loss by tol)
    stops the fit where the reference losses of the unstopped fit say, with that epoch's weights."""
    X, y, dX, dy = data
    seen, callback = _recorder()
    kw = {**KW, "eta0": 0.05}
    SGDClassifier(rounds=8, callback=callback, **kw).fit(dX, dy)
    ref = _reference(X, y, [np.zeros((5, 1))] + [W for _, W, _ in seen])
    tol, patience = 1e-3, 2

    def stop_epoch(losses):
        best, bad = np.inf, 0
        for e, v in enumerate(losses[1:], start=1):
            bad = bad + 1 if v > best - tol else 0
            best = min(best, v)
            if bad >= patience:
                return e
        return None

    expected = stop_epoch(ref)
    assert expected is not None and expected < 8  # the rule does stop this fit early
    state = {"best": np.inf, "bad": 0}

    def no_change(info):
        v = info["heldout_loss"]
        state["bad"] = state["bad"] + 1 if v > state["best"] - tol else 0
        state["best"] = min(state["best"], v)
        return state["bad"] >= patience

    m = SGDClassifier(rounds=8, callback=no_change, **kw).fit(dX, dy)
    assert m.n_iter_ == expected
    W = seen[expected - 1][1]
    np.testing.assert_array_equal(m.coef_, W[:-1].T)
    np.testing.assert_array_equal(m.intercept_, W[-1])


def test_divergence_is_reported_at_the_same_epoch(client):
    """A step size that makes squared-loss SGD grow: the warning names the first epoch whose reference held-out
    loss passes DIVERGENCE_FACTOR x the start's, and the error the first whose held-out loss overflows."""
    X, y = regression_chunk(3, 0, ROWS * BLOCKS, coef=np.array([2.0, -1.0, 0.5, 3.0]), intercept=-1.0, noise=0.5)
    X = X * 3.0
    dX, dy = da.from_array(X, chunks=(ROWS, 4)), da.from_array(y, chunks=ROWS)
    seen, callback = _recorder()
    kw = {"mode": "local", "batch_size": 100, "validation_fraction": 0.05, "learning_rate": "constant",
          "eta0": 0.3, "alpha": 0.0, "callback": callback}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            SGDRegressor(rounds=30, **kw).fit(dX, dy)
            raised = None
        except FloatingPointError as exc:
            raised = exc.epoch
    ref = _reference(X, y, [np.zeros((5, 1))] + [W for _, W, _ in seen], loss="squared")
    finite = [bool(np.isfinite(W).all()) for _, W, _ in seen]
    over = [e for e, v in enumerate(ref) if e > 0 and v > 10.0 * ref[0]]
    assert over, ref  # the fit does diverge
    told = [w for w in caught if issubclass(w.category, DivergenceWarning)]
    assert len(told) == 1 and f"after epoch {over[0]} " in str(told[0].message)
    assert all(finite) and np.isfinite(ref).all()  # every epoch the callback saw was finite
    assert raised == len(seen) + 1 == 18  # the next one is not: the epoch the gathered rows' loss named


def _logged_block(x: np.ndarray, log: str, block_info=None) -> np.ndarray:
    """A block of X as read, one line per read appended to ``log`` (counted across the pool's processes)."""
    with open(log, "a") as f:
        f.write(f"{block_info[0]['chunk-location'][0]}\n")
    return x


def test_the_processes_scheduler_reads_each_block_once_per_round(tmp_path, data):
    """dask's processes scheduler runs the tasks in a pool this process cannot reach: the held-out rows come back
    with the first round's results instead of being kept there (and read again for every held-out loss), so a
    round is one read of each block, and the curve is the threads scheduler's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import dask

    X, y, dX, dy = data
    log = str(tmp_path / "reads")
    logged = dX.map_blocks(_logged_block, log, dtype=dX.dtype)
    spawn = multiprocessing.get_context("spawn")  # as dask's own pools (no fork of this process's threads)
    with ProcessPoolExecutor(1, mp_context=spawn) as pool, dask.config.set(scheduler="processes", pool=pool):
        m = SGDClassifier(rounds=2, **KW).fit(logged, dy)
    reads = open(log).read().split()
    assert sorted(reads) == sorted(str(b) for b in range(BLOCKS) for _ in range(2)), reads
    with dask.config.set(scheduler="threads"):
        ref = SGDClassifier(rounds=2, **KW).fit(dX, dy)
    np.testing.assert_array_equal(m.coef_, ref.coef_)
    np.testing.assert_allclose(m.loss_curve_[:, 3], ref.loss_curve_[:, 3], rtol=1e-13)
