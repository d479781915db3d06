"""Distributed SGD: accuracy against scikit-learn, planted coefficients, reproducibility, compression,
checkpoint / resume across a killed process, a worker killed mid-fit, and clear errors on bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import dask
import dask.array as da
import numpy as np
import pytest
from distributed.diagnostics.plugin import WorkerPlugin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from scaleml_dask.checkpoint import CheckpointMismatchError
from scaleml_dask.io.synthetic import logistic_chunk, mixture_chunk, regression_chunk
from scaleml_dask.sgd import SGDClassifier, SGDRegressor
from scaleml_dask.sgd import _kernels as kernels

COEF = np.array([1.5, -2.0, 0.5, 1.0, -1.0, 2.5, 0.0, -0.5])


def _logistic(rows: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    return logistic_chunk(7, index, rows, coef=COEF, intercept=0.5)


@pytest.fixture(scope="module")
def logistic_data():
    X, y = _logistic(24_000, 0)
    Xt, yt = _logistic(20_000, 1)
    ref = LogisticRegression().fit(X, y).score(Xt, yt)
    return da.from_array(X, chunks=(6_000, 8)), da.from_array(y, chunks=6_000), Xt, yt, ref


def _held_out_rows(n_blocks: int, rows: int, fraction: float = 0.01, seed: int = 0) -> np.ndarray:
    """The rows a fit holds out: one seeded contiguous range per block."""
    return np.concatenate([np.arange(b * rows + lo, b * rows + hi)
                           for b in range(n_blocks) for lo, hi in [kernels.holdout_range(seed, b, rows, fraction)]])


MODE_ARGS = {"sync": {"epochs": 3, "batch_size": 1000, "eta0": 0.2},  # big averaged batches: larger steps
             "local": {"rounds": 3, "batch_size": 100, "eta0": 0.02},
             "async": {"epochs": 3, "batch_size": 150, "eta0": 0.05}}


@pytest.mark.parametrize("mode", ["sync", "local", "async"])
@pytest.mark.slow
def test_modes_reach_sklearn_accuracy(client, logistic_data, mode):
    dX, dy, Xt, yt, ref = logistic_data
    m = SGDClassifier(mode=mode, **MODE_ARGS[mode]).fit(dX, dy)
    assert abs(m.score(Xt, yt) - ref) <= 0.005
    curve = m.loss_curve_
    assert curve.shape[1] == 4 and len(curve) >= 3
    assert np.all(np.diff(curve[:, 0]) >= 0) and np.all(np.diff(curve[:, 1]) > 0)
    assert np.all(np.diff(curve[:, 2]) > 0)
    # the curve's loss is the log loss on the held-out rows: log(2) for the zero model at the start, and
    # at the end that of the fitted model, close to scikit-learn's on the same rows
    X, y = dX.compute(), dy.compute()
    held = _held_out_rows(4, 6_000)
    assert curve[0, 3] == pytest.approx(np.log(2), rel=1e-12)
    assert curve[-1, 3] == pytest.approx(log_loss(y[held], m.predict_proba(X[held])), rel=1e-9)
    assert curve[-1, 3] < log_loss(y[held], LogisticRegression().fit(X, y).predict_proba(X[held])) + 0.015
    assert curve[-1, 1] == m.samples_seen_ and curve[-1, 2] == m.bytes_exchanged_
    held_out = round(24_000 * 0.01)
    assert abs(m.samples_seen_ / (m.n_iter_ * (24_000 - held_out)) - 1) < 0.05
    if mode == "async":
        assert 0 <= m.staleness_["max"] <= m.max_staleness
        assert sum(m.staleness_["histogram"]) == m.n_rounds_


def test_an_epoch_visits_every_training_row_once_in_contiguous_batches():
    n, batch = 1_000, 64
    lo, hi = kernels.holdout_range(3, 5, n, 0.05)
    assert hi - lo == 50
    i = np.arange(n, dtype=np.float64)
    X, T = np.ascontiguousarray(i[:, None]), np.ascontiguousarray(i[:, None])
    train = np.setdiff1d(i, i[lo:hi])
    for seed in (0, 1):
        total = np.zeros(3)
        firsts = []
        for step in range(kernels.n_batches(n - 50, batch)):
            # squared loss at W = 0: the gradient is -(mean of x*t, mean of t) over the batch
            G, rows = kernels.batch_gradient(np.zeros((2, 1)), X, T, start=hi % n, n_train=n - 50, seed=seed,
                                       block=5, batch_size=batch, step=step, loss="squared",
                                       fit_intercept=True)
            total += rows, -rows * G[0, 0], -rows * G[1, 0]
            firsts.append(G[1, 0])
        np.testing.assert_allclose(total, [len(train), (train**2).sum(), train.sum()])
        assert firsts != sorted(firsts)  # the batches are visited in a shuffled order


@pytest.mark.parametrize("schedule, penalty, fit_intercept", [("constant", "l2", True), ("adam", "l1", False),
                                                               ("adagrad", None, True)])
def test_local_epoch_kernel_takes_the_closed_form_step(schedule, penalty, fit_intercept):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    T = rng.standard_normal((40, 1))
    W = rng.standard_normal((4, 1))
    eta, alpha = 0.1, 0.3
    # one mini-batch holding every row: one full-gradient step from W
    W1, steps, finite = kernels.local_epochs(W, X, T, start=0, n_train=40, seeds=[7], block=0, batch_size=64,
                                       loss="squared", penalty=penalty, alpha=alpha, fit_intercept=fit_intercept,
                                       schedule=schedule, eta0=eta, power_t=0.5, t0=0.0)
    assert finite
    R = X @ W[:-1] + W[-1] - T
    G = np.vstack([X.T @ R, R.sum(axis=0, keepdims=True)]) / 40
    G[:-1] += {"l2": alpha * W[:-1], "l1": alpha * np.sign(W[:-1]), None: 0.0}[penalty]
    if not fit_intercept:
        G[-1] = 0.0
    if schedule == "constant":
        expected = W - eta * G
    elif schedule == "adagrad":
        expected = W - eta * G / (np.abs(G) + 1e-8)
    else:  # adam's first step (Kingma & Ba): m̂ = (0.1 G) / 0.1 = G, v̂ = (0.001 G²) / 0.001 = G²
        expected = W - eta * G / (np.sqrt(G * G) + 1e-8)
    assert steps == 1
    np.testing.assert_allclose(W1, expected, rtol=1e-12, atol=1e-14)
    assert W1 is not W and not np.array_equal(W1, W)


def _placed(client, dX, dy, workers_of_block):
    """``dX``, ``dy`` persisted with block ``i`` on worker ``workers_of_block[i]`` (an index), so that the
    sync tasks group the blocks in a known way (a block's split runs where its rows are)."""
    addrs = sorted(client.scheduler_info()["workers"])

    def place(a, i):
        return client.persist(a.blocks[i], workers=[addrs[workers_of_block[i]]])

    n = len(workers_of_block)
    return (da.concatenate([place(dX, i) for i in range(n)]), da.concatenate([place(dy, i) for i in range(n)]))


def _holders(client):
    """A callback recording, after every epoch, how many workers hold the blocks of the running sync fit
    (the layout asked by ``_placed`` is likely, not certain: work stealing may move a split). Each split
    block lives on exactly one worker (no task but the training ones reads it, so none is ever copied), so
    this is the number of tasks a step sends out."""
    seen = []
    earlier = {k for keys in client.has_what().values() for k in keys}  # other fits' blocks may linger

    def callback(info):
        held = client.has_what().values()
        seen.append(sum(any(str(k).startswith("split_block-") and k not in earlier for k in keys)
                        for keys in held))

    return seen, callback


@pytest.mark.parametrize("layout", [(0, 0, 0, 0), (0, 1, 1, 0)])
def test_sync_bytes_are_counted_exactly(client, logistic_data, layout):
    dX, dy, *_ = logistic_data
    seen, callback = _holders(client)
    m = SGDClassifier(mode="sync", epochs=1, batch_size=1000, callback=callback).fit(
        *_placed(client, dX, dy, layout))
    # 4 blocks of ~5940 training rows -> 6 steps, each: one task per worker holding blocks, which gets the
    # 9 float64 weights, and sends back one gradient per block
    assert m.n_rounds_ == 6 and seen[0] in (1, 2)
    assert m.bytes_exchanged_ == 6 * (seen[0] + 4) * 9 * 8


def test_sync_equals_the_serial_algorithm(client, logistic_data):
    """Whatever the grouping of blocks by worker, a sync fit is the serial mini-batch algorithm: the
    rows-weighted mean of every block's mini-batch gradient, summed in block order, then one Adam step."""
    dX, dy, *_ = logistic_data
    m = SGDClassifier(mode="sync", epochs=2, batch_size=1500, eta0=0.2).fit(*_placed(client, dX, dy, (1, 0, 1, 1)))
    X, T = dX.compute(), kernels.encode_targets(dy.compute(), np.array([0.0, 1.0]))
    blocks = []
    for b in range(4):
        lo, hi = kernels.holdout_range(0, b, 6_000, 0.01)
        blocks.append((X[b * 6_000:(b + 1) * 6_000], T[b * 6_000:(b + 1) * 6_000], hi % 6_000, 6_000 - (hi - lo)))
    W, opt, rng = np.zeros((9, 1)), kernels.init_optimizer("adam", (9, 1)), np.random.default_rng(0)
    for _epoch in range(2):
        seed = int(rng.integers(0, 2**62))
        for step in range(kernels.n_batches(blocks[0][3], 1500)):
            grads = [kernels.batch_gradient(W, Xb, Tb, start=start, n_train=n, seed=seed, block=b, batch_size=1500,
                                      step=step, loss="log_loss", fit_intercept=True)
                     for b, (Xb, Tb, start, n) in enumerate(blocks)]
            G = sum(rows * g for g, rows in grads) / sum(rows for _, rows in grads)
            W = kernels.descent_step(W, G, opt, penalty="l2", alpha=1e-4, schedule="adam", eta0=0.2, power_t=0.5)
    np.testing.assert_array_equal(np.r_[m.coef_.ravel(), m.intercept_], W.ravel())


def test_regressor_recovers_planted_coefficients(client):
    coef = np.array([2.0, -1.0, 0.5, 3.0])
    X, y = regression_chunk(3, 0, 20_000, coef=coef, intercept=-1.0, noise=0.5)
    dX, dy = da.from_array(X, chunks=(5_000, 4)), da.from_array(y, chunks=5_000)
    for mode in ("sync", "local"):
        m = SGDRegressor(mode=mode, learning_rate="invscaling", eta0=0.5, power_t=0.5, alpha=0.0,
                         batch_size=500, epochs=3).fit(dX, dy)
        np.testing.assert_allclose(m.coef_, coef, atol=0.03)
        assert abs(m.intercept_ + 1.0) < 0.03


@pytest.mark.parametrize("mode", ["sync", "local"])
def test_same_seed_same_weights(client, logistic_data, mode):
    dX, dy, *_ = logistic_data
    kw = {"mode": mode, "epochs": 2, "batch_size": 1500}
    a = SGDClassifier(**kw).fit(dX, dy)
    b = SGDClassifier(**kw).fit(dX, dy)
    c = SGDClassifier(random_state=1, **kw).fit(dX, dy)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    assert not np.array_equal(a.coef_, c.coef_)


def test_multiclass_one_vs_rest_and_hinge(client):
    centers = np.array([[0.0, 2.0, 0.0], [2.0, -1.0, 0.0], [-2.0, -1.0, 1.0]])
    X, y = mixture_chunk(5, 0, 12_000, centers=centers, cluster_std=1.0)
    Xt, yt = mixture_chunk(5, 1, 6_000, centers=centers, cluster_std=1.0)
    ref = LogisticRegression().fit(X, y).score(Xt, yt)
    m = SGDClassifier(mode="local", rounds=3, batch_size=100, eta0=0.02).fit(X, y + 10)
    assert m.classes_.tolist() == [10, 11, 12] and m.coef_.shape == (3, 3)
    assert abs(m.score(Xt, yt + 10) - ref) < 0.01
    P = m.predict_proba(Xt)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert np.mean(m.classes_[P.argmax(axis=1)] == m.predict(Xt)) == 1.0
    Xb, yb = _logistic(12_000, 2)
    Xbt, ybt = _logistic(10_000, 3)
    h = SGDClassifier(mode="local", loss="hinge", rounds=3, batch_size=100, eta0=0.02).fit(Xb, yb)
    assert abs(h.score(Xbt, ybt) - LogisticRegression().fit(Xb, yb).score(Xbt, ybt)) < 0.01
    with pytest.raises(AttributeError, match="hinge"):
        h.predict_proba(Xbt)


def test_predict_on_dask_input_stays_lazy(client, logistic_data):
    dX, dy, Xt, yt, _ = logistic_data
    m = SGDClassifier(mode="local", rounds=1, batch_size=200).fit(dX, dy)
    lazy = m.predict(da.from_array(Xt, chunks=(5_000, 8)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), m.predict(Xt))
    proba = m.predict_proba(da.from_array(Xt, chunks=(5_000, 8))).compute()
    np.testing.assert_allclose(proba, m.predict_proba(Xt))


@pytest.mark.parametrize("compress", ["float16", "topk"])
def test_compression_saves_bytes_and_keeps_accuracy(client, logistic_data, compress, monkeypatch):
    import scaleml_dask.sgd._balance as balance

    monkeypatch.setattr(balance, "ENABLED", False)  # the blocks stay where placed: the bytes of a step are known
    dX, dy, Xt, yt, ref = logistic_data
    kw = {"mode": "sync", **MODE_ARGS["sync"]}
    placed = _placed(client, dX, dy, (0, 1, 0, 1))
    plain_seen, plain_cb = _holders(client)
    packed_seen, packed_cb = _holders(client)
    plain = SGDClassifier(callback=plain_cb, **kw).fit(*placed)
    packed = SGDClassifier(compress=compress, topk_fraction=0.25, callback=packed_cb, **kw).fit(*placed)
    # per step: the 9 float64 weights out to each worker holding blocks, a gradient back per block:
    # 9 float64, 9 float16, or the top 3 of 9 as int32 index + float32 value
    back = {None: 9 * 8, "float16": 9 * 2, "topk": 3 * (4 + 4)}
    for m, seen, method in ((plain, plain_seen, None), (packed, packed_seen, compress)):
        workers = seen[0]
        assert seen == [workers] * 3 and workers in (1, 2)
        assert m.n_rounds_ == 18 and m.bytes_exchanged_ == 18 * (workers * 9 * 8 + 4 * back[method])
    assert abs(packed.score(Xt, yt) - ref) <= 0.01


def test_partial_fit_continues_on_new_blocks(client):
    X1, y1 = _logistic(8_000, 10)
    X2, y2 = _logistic(8_000, 11)
    Xt, yt = _logistic(10_000, 12)
    m = SGDClassifier(mode="sync", batch_size=1000, eta0=0.2)
    with pytest.raises(ValueError, match="classes must be given"):
        m.partial_fit(X1, y1)
    m.partial_fit(X1, y1, classes=[0.0, 1.0])
    first = (m.coef_.copy(), m.samples_seen_, len(m.loss_curve_))
    m.partial_fit(da.from_array(X2, chunks=(4_000, 8)), da.from_array(y2, chunks=4_000))
    assert m.n_iter_ == 2 and m.samples_seen_ > first[1] and len(m.loss_curve_) > first[2]
    assert not np.array_equal(m.coef_, first[0])
    ref = LogisticRegression().fit(np.vstack([X1, X2]), np.concatenate([y1, y2])).score(Xt, yt)
    assert m.score(Xt, yt) > ref - 0.01
    with pytest.raises(ValueError, match="differ from the classes"):
        m.partial_fit(X2, y2, classes=[0, 1, 2])


def test_bad_input_gives_clear_errors(client):
    X, y = _logistic(2_000, 20)
    with pytest.raises(ValueError, match=r"labels \[2\.0, 5\.0\] that are not among the classes \[0\.0, 1\.0\]"):
        y_bad = y.copy()
        y_bad[[3, 300]] = [5.0, 2.0]
        SGDClassifier(mode="sync", epochs=1, classes=[0.0, 1.0]).fit(
            da.from_array(X, chunks=(500, 8)), da.from_array(y_bad, chunks=500))
    with pytest.raises(ValueError, match=r"y has 1 class \(\[1\.0\]\)"):
        SGDClassifier(mode="local", epochs=1).fit(X, np.ones(len(y)))
    with pytest.raises(ValueError, match="at least two"):
        SGDClassifier(mode="local", epochs=1, classes=[1]).fit(X, y)
    X_nan = X.copy()
    X_nan[1234, 3] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN in chunk 2 .*row 1234, column 3"):
        SGDClassifier(mode="sync", epochs=1, batch_size=500).fit(da.from_array(X_nan, chunks=(500, 8)),
                                                 da.from_array(y, chunks=500))
    # local mode checks the training rows inside the epoch's pass and the held-out rows apart: both found
    lo, _ = kernels.holdout_range(0, 2, 500, 0.01)  # seed 0 (random_state=0), block 2, 500 rows
    for row in (1234, 1000 + lo):
        X_bad = X.copy()
        X_bad[row, 5] = np.inf
        with pytest.raises(ValueError, match=rf"X contains inf in chunk 2 .*row {row}, column 5"):
            SGDClassifier(mode="local", rounds=1, batch_size=100, random_state=0).fit(
                da.from_array(X_bad, chunks=(500, 8)), da.from_array(y, chunks=500))
    with pytest.raises(ValueError, match="'mode' parameter of SGDClassifier must be a str among"):
        SGDClassifier(mode="gossip").fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features"):
        SGDClassifier(mode="local", epochs=1).fit(X, y).predict(X[:, :3])


def test_resume_after_stop_gives_same_weights_and_other_config_is_refused(client, logistic_data, tmp_path):
    dX, dy, *_ = logistic_data
    kw = {"mode": "local", "rounds": 4, "batch_size": 300, "checkpoint_dir": str(tmp_path / "ck")}
    full = SGDClassifier(**{**kw, "checkpoint_dir": None}).fit(dX, dy)
    stopped = SGDClassifier(**kw, callback=lambda info: info["epoch"] == 2).fit(dX, dy)
    assert stopped.n_iter_ == 2
    seen = []
    resumed = SGDClassifier(**kw, callback=lambda info: seen.append(info["epoch"])).fit(dX, dy)
    assert seen == [3, 4]
    np.testing.assert_array_equal(resumed.coef_, full.coef_)
    np.testing.assert_array_equal(resumed.intercept_, full.intercept_)
    assert resumed.samples_seen_ == full.samples_seen_ and len(resumed.loss_curve_) == len(full.loss_curve_)
    with pytest.raises(CheckpointMismatchError, match="rounds: 4 in the checkpoint vs 5 now"):
        SGDClassifier(**{**kw, "rounds": 5}).fit(dX, dy)


_RESUME_SCRIPT = """
import sys, time, numpy as np, dask.array as da
from distributed import Client
from scaleml_dask.sgd import SGDClassifier
from scaleml_dask.io.synthetic import logistic_chunk

def slow(info):
    print("epoch", info["epoch"], flush=True)
    time.sleep(0.5)

if __name__ == "__main__":
    X, y = logistic_chunk(7, 0, 24_000, coef=np.array({coef}), intercept=0.5)
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        m = SGDClassifier(mode="sync", epochs=4, batch_size=2000, checkpoint_dir=sys.argv[1], callback=slow)
        m.fit(da.from_array(X, chunks=(6_000, 8)), da.from_array(y, chunks=6_000))
    np.save(sys.argv[2], np.concatenate([m.coef_.ravel(), m.intercept_.ravel()]))
"""


@pytest.mark.slow
def test_fit_resumes_after_the_process_is_killed(client, logistic_data, tmp_path):
    dX, dy, *_ = logistic_data
    script = tmp_path / "fit.py"
    script.write_text(textwrap.dedent(_RESUME_SCRIPT.format(coef=COEF.tolist())))
    ck, out = tmp_path / "ck", tmp_path / "w.npy"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, str(script), str(ck), str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 300  # the script's imports and cluster start take long on a busy machine
    while not list(ck.glob("ckpt-*.npz")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    done = sorted(ck.glob("ckpt-*.npz"))
    assert done and done[-1].name < "ckpt-00000004.npz"
    second = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, timeout=400, check=True)
    epochs = [int(line.split()[1]) for line in second.stdout.splitlines() if line.startswith("epoch")]
    assert epochs and epochs[0] > 1 and epochs[-1] == 4  # resumed, not restarted
    full = SGDClassifier(mode="sync", epochs=4, batch_size=2000).fit(dX, dy)
    np.testing.assert_allclose(np.load(out), np.concatenate([full.coef_.ravel(), full.intercept_.ravel()]),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("mode, prefix", [("sync", "sync_gradients"), ("local", "local_block")])
def test_worker_killed_while_running_a_step_gives_the_same_weights(process_client, logistic_data, tmp_path, mode,
                                                                   prefix, caplog):
    """A worker process SIGKILLs itself as its 3rd (sync step) / 5th (local round) training task starts; the
    scheduler saw it leave and recomputed the task (and the lost blocks); the weights and the held-out losses
    equal the undisturbed fit's, since block results are still summed in block order (local mode: the held-out
    rows the killed worker kept are read again)."""
    import logging

    caplog.set_level(logging.INFO, logger="scaleml_dask.sgd")
    from faults import undisturbed_and_killed

    dX, dy, Xt, yt, ref = logistic_data

    def fit():
        with process_client.as_current():
            return SGDClassifier(mode=mode, **MODE_ARGS[mode]).fit(dX, dy)

    # local: in a later round than the first, so that held-out rows kept by the killed worker are lost
    after = 3 if mode == "sync" else 5
    undisturbed, m, record = undisturbed_and_killed(process_client, fit, prefix, tmp_path / "killed", after=after)
    assert record.recomputed[prefix] >= 1
    assert m.n_iter_ == undisturbed.n_iter_
    np.testing.assert_array_equal(m.coef_, undisturbed.coef_)
    np.testing.assert_array_equal(m.intercept_, undisturbed.intercept_)
    np.testing.assert_array_equal(m.loss_curve_[:, 3], undisturbed.loss_curve_[:, 3])
    assert mode == "sync" or "held-out rows of" in caplog.text
    assert abs(m.score(Xt, yt) - ref) <= 0.01


def _fit_on(client, model, X, y):
    """``model.fit(X, y)`` with ``client`` as the current client (in a thread of the test)."""
    with client.as_current():
        return model.fit(X, y)


class _ArmedPlugin(WorkerPlugin):
    """A worker plugin that acts once the file ``armed`` exists, and records in ``flag`` that it did."""

    def __init__(self, armed: str, flag: str) -> None:
        self.armed, self.flag = armed, flag

    def setup(self, worker) -> None:
        self.worker = worker


class _KillServerHost(_ArmedPlugin):
    """Worker plugin: once ``armed`` exists (the callback creates it after epoch 1), the next parameter server
    created on this worker kills the worker's process from inside its 5th push (mid-epoch: an epoch here
    has 40); ``flag`` records the worker's address and pid, and makes this happen once."""

    name = "kill-parameter-server-host"

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "memory" or not str(key).startswith("ParameterServer-") or not os.path.exists(self.armed):
            return
        server, flag, address = self.worker.state.actors[key], self.flag, self.worker.address
        push = server.push

        def push_then_die(*args, **kwargs):
            accepted = push(*args, **kwargs)
            if server.version >= 5 and not os.path.exists(flag):
                with open(flag, "w") as f:
                    f.write(f"{address} {os.getpid()}")
                os.kill(os.getpid(), signal.SIGKILL)
            return accepted

        server.push = push_then_die


@pytest.mark.parametrize("with_checkpoints", [True, False])
def test_async_fit_survives_or_names_the_loss_of_its_parameter_server(process_client, logistic_data, tmp_path, caplog,
                                                                      with_checkpoints):
    import logging
    from concurrent.futures import ThreadPoolExecutor

    import cloudpickle

    from scaleml_dask.sgd import ParameterServerLostError

    dX, dy, Xt, yt, ref = logistic_data
    armed, flag = tmp_path / "armed", tmp_path / "killed"
    epochs = []

    def arm(info):
        epochs.append(info["epoch"])
        armed.touch()

    m = SGDClassifier(mode="async", callback=arm, checkpoint_dir=str(tmp_path / "ck") if with_checkpoints else None,
                      **MODE_ARGS["async"])
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    try:
        process_client.register_plugin(_KillServerHost(str(armed), str(flag)))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    try:
        with caplog.at_level(logging.WARNING, logger="scaleml_dask.sgd"), ThreadPoolExecutor(1) as pool:
            fit = pool.submit(_fit_on, process_client, m, dX, dy)
            if with_checkpoints:
                fit.result(timeout=180)  # resumed from the checkpoint of epoch 1: never hangs
            else:
                with pytest.raises(ParameterServerLostError, match=r"parameter server of async epoch 2 \(on tcp://"
                                   r"[^)]+\) was lost: its worker left the cluster.*checkpoint_dir the fit resumes"):
                    fit.result(timeout=180)
    finally:
        process_client.unregister_worker_plugin(_KillServerHost.name)
        process_client.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker for the next tests
    address, pid = flag.read_text().split()
    assert address not in process_client.scheduler_info()["workers"]  # the worker really left ...
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)  # ... and its process is gone
    if with_checkpoints:
        assert epochs == [1, 2, 3] and m.n_iter_ == 3
        assert any("resuming from the checkpoint of epoch 1" in r.getMessage() for r in caplog.records)
        assert abs(m.score(Xt, yt) - ref) <= 0.01
        assert sum(m.staleness_["histogram"]) == m.n_rounds_  # the lost epoch's pushes are not counted
    else:
        assert epochs == [1]


def test_every_parameter_is_declared_and_checked_by_scikit_learn_on_fit_and_partial_fit():
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = _logistic(200, 30)
    for cls in (SGDRegressor, SGDClassifier):
        assert set(cls._parameter_constraints) == set(cls().get_params())
    bad = {"penalty": "l3", "batch_size": 0, "topk_fraction": 0.0, "validation_fraction": 0.6, "rounds": 0,
           "random_state": -1, "callback": 3, "loss": "squared"}
    for name, value in bad.items():
        for call in ("fit", "partial_fit"):
            m = SGDClassifier(mode="local", classes=[0.0, 1.0], **{name: value})
            with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of SGDClassifier"):
                getattr(m, call)(X, y)
    with pytest.raises(InvalidParameterError, match="'loss' parameter of SGDRegressor must be a str among"):
        SGDRegressor(loss="hinge").fit(X, y)


def test_checkpoint_refuses_to_resume_on_other_data(tmp_path):
    """Same shape and configuration, other values: the checkpoint names the data as what differs."""
    from scaleml_dask.checkpoint import CheckpointMismatchError

    rng = np.random.default_rng(3)
    X = rng.standard_normal((2_000, 3))
    y = (X[:, 0] > 0).astype(int)
    params = dict(mode="local", rounds=1, batch_size=100, checkpoint_dir=str(tmp_path / "ck"))
    with dask.config.set(scheduler="threads"):
        SGDClassifier(**params).fit(X, y)
        with pytest.raises(CheckpointMismatchError, match="data"):
            SGDClassifier(**params).fit(X + 1.0, y)
        SGDClassifier(**params).fit(X, y)  # the same data resumes (nothing left to do)


def test_the_clients_held_out_loss_runs_on_one_blas_thread(client, logistic_data, monkeypatch):
    """The client's held-out losses of sync / async SGD run on one BLAS thread: BLAS threads left spinning after
    them took cores the client shares with the scheduler and workers (benchmarks/cost_model.md)."""
    from threadpoolctl import threadpool_info

    import scaleml_dask.sgd._trainer as trainer

    dX, dy, *_ = logistic_data
    threads, original = [], trainer.mean_loss

    def counting(*args, **kwargs):
        threads.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "mean_loss", counting)
    SGDClassifier(mode="sync", epochs=1, batch_size=1000).fit(dX, dy)
    assert threads and set(threads) == {1}
    assert max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas") >= 1  # restored after


class _KillDataHost(_ArmedPlugin):
    """Worker plugin: once ``armed`` exists (after epoch 1), the first async partition to start on a worker
    that does not host the parameter server kills that worker's process (its blocks and the tasks pinned to
    them go with it); ``flag`` records the worker's address and makes this happen once."""

    name = "kill-data-host"

    def transition(self, key, start, finish, **kwargs) -> None:
        if (finish != "executing" or not str(key).startswith("async_partition-") or self.worker.state.actors
                or not os.path.exists(self.armed) or os.path.exists(self.flag)):
            return
        with open(self.flag, "w") as f:
            f.write(self.worker.address)
        os.kill(os.getpid(), signal.SIGKILL)


def test_async_fit_goes_on_when_a_worker_holding_blocks_leaves(process_client, logistic_data, tmp_path):
    """The async tasks run only on the worker holding their block: when it leaves mid-epoch, the tasks pinned to
    it are submitted again where the recomputed blocks are, and the fit ends (it hung on tasks no worker could
    run)."""
    from concurrent.futures import ThreadPoolExecutor

    import cloudpickle

    dX, dy, Xt, yt, ref = logistic_data
    armed, flag = tmp_path / "armed", tmp_path / "killed"
    m = SGDClassifier(mode="async", callback=lambda info: armed.touch(), **MODE_ARGS["async"])
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        process_client.register_plugin(_KillDataHost(str(armed), str(flag)))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(_fit_on, process_client, m, dX, dy).result(timeout=180)
    finally:
        process_client.unregister_worker_plugin(_KillDataHost.name)
        process_client.wait_for_workers(2, timeout=120)
    assert flag.read_text() not in process_client.scheduler_info()["workers"]  # the worker really left
    assert m.n_iter_ == 3 and m.samples_seen_ >= 3 * 0.99 * 24_000
    assert abs(m.score(Xt, yt) - ref) <= 0.01
