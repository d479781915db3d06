"""The cost model of benchmarks/cost_model.py: its terms against hand-computed values on given constants."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from cost_model import (  # noqa: E402
    GATHER_HOPS,
    SERIAL,
    Cluster,
    Constants,
    Workload,
    _combines,
    dominant,
    predict,
    project,
)

K = Constants(kernel_s={"moments": 0.1, "sgd_grad": 0.001, "split": 0.05, "sgd_local": 0.2, "kmeans_init": 0.1,
                        "lloyd": 0.1},
              combine_s={"moments": 0.01}, fixed_s={"regression": 0.05, "sgd-sync": 0.2, "kmeans": 0.3},
              worker_task_s=0.002, scheduler_task_s=0.001, client_task_s=0.0005, step_s=0.01,
              link_efficiency=0.9, async_call_s=0.003, async_local_call_s=0.001, async_server_s=0.001,
              kmeans_client_s=1e-4, cores=2.0)


def test_the_tree_has_the_combines_of_a_fan_in_of_eight_with_the_last_on_the_client():
    assert [_combines(c) for c in (1, 8, 9, 64, 65, 512)] == [0, 0, 2, 8, 11, 72]


def test_a_pass_is_its_bottleneck_plus_the_tail_plus_the_fixed_cost():
    w = Workload("regression", 16 * 250_000, 32)  # 16 chunks: 2 combines
    t = predict(w, Cluster(4, link_bps=1e9), K)
    assert t["compute"] == pytest.approx(4 * (0.1 + 0.002))
    assert t["scheduler"] == pytest.approx(18 * 0.001)
    assert t["client"] == pytest.approx(18 * 0.0005)
    part = 34 ** 2 * 8
    # out of its 4 chunk tasks, or into its combine (8 parts, 3 in 4 from other workers): the latter
    assert t["network"] == pytest.approx(max(4, 1 * 8 * 3 / 4) * part / (1e9 / 8 * 0.9))
    cpu = (16 * 0.102 + 2 * (0.01 + 0.002) + 18 * 0.0015) / 2  # 2 cores for 4 workers, scheduler and client
    assert t["cpu"] == pytest.approx(cpu)
    # after the last chunk task: the last combine on a worker, once its inputs from the other workers (8 of the
    # last 8 parts, 3 in 4 from elsewhere) have crossed into its link
    last = 8 * 3 / 4 * part / (1e9 / 8 * 0.9) + 0.01 + 0.002
    assert t[SERIAL] == pytest.approx(last)
    # the parts the workers' combines leave (2) to a client outside the cluster: through the scheduler, two links
    assert GATHER_HOPS == 2
    tail = 2 * 2 * part / (1e9 / 8 * 0.9)
    assert t["total"] == pytest.approx(0.05 + cpu + last + tail)
    assert dominant(t) == "cpu"
    # a cluster of one core per process: the busiest worker's chain of chunks sets the time
    alone = predict(w, Cluster(4, link_bps=1e9, cores=8), K)
    assert alone["total"] == pytest.approx(0.05 + 4 * 0.102 + last + tail)


def test_the_tree_leaves_at_most_eight_parts_to_the_client_and_its_last_combines_follow_the_chunks():
    from cost_model import _last_combines, _levels

    assert [_levels(c) for c in (8, 9, 16, 32, 65, 4000)] == [[], [2], [2], [4], [9, 2], [500, 63, 8]]
    # 4,000 parts: 3 levels on the workers, whose last combines take 8, 4 and 7 inputs (1 in P their own)
    rate, part = 1e9 / 8 * 0.9, 1000.0
    assert _last_combines(4000, 10, part, rate, 0.01, 1.0, K) == pytest.approx(
        (8 + 4 + 7) * 0.9 * part / rate + 3 * 0.012)
    assert _last_combines(8, 10, part, rate, 0.01, 1.0, K) == 0.0  # no combine on the workers
    # under a quota a combine is stretched like any busy stretch (less the burst of a host idle before it)
    assert _last_combines(16, 1, part, rate, 0.01, 5.0, K) == pytest.approx(5 * 0.012)


def test_sync_steps_wait_on_round_trips_and_the_busiest_thread():
    w = Workload("sgd-sync", 8 * 250_000, 32, batch_size=2000)
    t = predict(w, Cluster(4, link_bps=1e9, cores=16), K)
    steps = 124 - 1  # ⌈247,500 / 2000⌉, one of them in the fixed cost
    step = max(0.01 + 3 * 0.0015, 0.01 + 2 * 0.001)
    persist = 2 * (0.05 + 0.002) + 2 * 8 * 0.01 * 250_000 * 33 * 8 / (1e9 / 8 * 0.9)  # held-out rows: 2 links
    assert t["total"] == pytest.approx(0.2 + persist + steps * step)


def test_sgd_local_scores_its_held_out_rows_where_they_are():
    """Local SGD's held-out rows never cross a link: its held-out losses are a round trip each (ψ, those of one
    round in the fixed cost), whatever the link, over one pass per round."""
    w = Workload("sgd-local", 8 * 250_000, 32, epochs=2, fixed="regression")
    slow, fast = (predict(w, Cluster(1, link_bps=r, cores=16), K) for r in (1e8, 1e10))
    tail = [2 * 8 * 33 * 8 / (r / 8 * 0.9) for r in (1e8, 1e10)]  # the tree's last level: weight changes only
    assert slow["total"] == pytest.approx(0.05 + 2 * (8 * (0.2 + 0.002) + tail[0]) + 0.01)
    assert slow["total"] - fast["total"] == pytest.approx(2 * (tail[0] - tail[1]))


def test_projection_names_where_scaling_stops():
    rows = project(Workload("regression", 1_000_000_000, 32), K, workers=(1, 10, 100, 1000))
    # 4,000 chunks of 0.102 s per worker thread against 4,571 tasks of 1 ms on the one scheduler core
    assert [r["dominant"] for r in rows] == ["compute", "compute", "scheduler", "scheduler"]
    rate = 10e9 / 8 * 0.9
    last = (8 + 4 + 7) * 999 / 1000 * 34 ** 2 * 8 / rate + 3 * 0.012  # the last combines of 3 levels
    assert rows[3]["seconds"] == pytest.approx(0.05 + 4571 * 0.001 + last + 2 * 8 * 34 ** 2 * 8 / rate)
    assert rows[0]["speed-up"] == 1 and rows[1]["efficiency"] > 0.99 and rows[3]["efficiency"] < 0.1


def test_a_worker_quota_stretches_the_workers_cpu_work_and_bounds_the_cpus_they_share():
    w = Workload("regression", 16 * 250_000, 32)
    t = predict(w, Cluster(4, link_bps=1e9, worker_cpus=0.25), K)
    assert t["compute"] == pytest.approx(4 * (0.1 + 0.002) * 4)  # a quarter of a core: 4x the time
    cpu = (16 * 0.102 + 2 * (0.01 + 0.002) + 18 * 0.0015) / 2  # 4 x 0.25 worker CPUs + 2: the 2 cores bound
    assert t["cpu"] == pytest.approx(cpu)
    # the hosts' CPU seconds (chunk tasks and combines) over their quotas: a little more than the chain of chunks
    assert t["host CPU"] == pytest.approx((16 * 0.102 + 2 * 0.012) / (4 * 0.25))
    assert dominant(t) == "host CPU"
    # but the chain of chunks, then the last combine (stretched 4x too) and the tail, is longer still
    part, rate = 34 ** 2 * 8, 1e9 / 8 * 0.9
    assert t["total"] == pytest.approx(t["fixed"] + t["compute"] + 6 * part / rate + 4 * 0.012 + 4 * part / rate)
    assert t["total"] > t["host CPU"] + t["fixed"]
    # a sync step waits for the busiest host's CPU: its gradients and its task, stretched 4x
    s = Workload("sgd-sync", 8 * 250_000, 32, batch_size=2000)
    sync = predict(s, Cluster(4, link_bps=1e9, cores=16, worker_cpus=0.25), K)
    assert sync["quota"] == pytest.approx(123 * (0.002 + 2 * 0.001) * 4)


def test_a_quota_makes_every_worker_side_constant_phi_times_larger_and_nothing_else():
    from dataclasses import replace

    w = Workload("regression", 16 * 250_000, 32)
    slow = replace(K, quota_cpu_factor=1.5)
    throttled, free = Cluster(4, link_bps=1e9, worker_cpus=0.25), Cluster(4, link_bps=1e9)
    assert predict(w, throttled, slow)["compute"] == pytest.approx(4 * 1.5 * (0.1 + 0.002) * 4)
    assert predict(w, throttled, slow)["scheduler"] == predict(w, throttled, K)["scheduler"]
    assert predict(w, free, slow) == predict(w, free, K)  # a core per thread: no quota, no φ


def test_a_fused_search_is_its_rounds_and_a_scoring_pass_each_chunk_reporting_to_the_client():
    k = Constants(**{**K.__dict__, "kernel_s": {**K.kernel_s, "search": 0.5}, "fixed_s": {"search": 0.4}})
    w = Workload("search", 8 * 250_000, 32, candidates=16, folds=3, epochs=2)
    t = predict(w, Cluster(2, link_bps=1e9, cores=8), k)
    part = 48 * 33 * 8
    assert t["compute"] == pytest.approx(3 * 4 * (0.5 + 0.002))  # 3 passes of 4 chunks per worker
    assert t["total"] == pytest.approx(0.4 + 3 * (4 * 0.502 + 2 * 8 * part / (1e9 / 8 * 0.9)))


def test_the_workers_cpu_by_the_model_and_constants_under_load():
    from cost_model import under_load, worker_cpu

    w = Workload("regression", 16 * 250_000, 32)
    assert worker_cpu(w, Cluster(4), K) == pytest.approx(16 * 0.102 + 2 * 0.012)
    s = Workload("sgd-sync", 8 * 250_000, 32, batch_size=2000)
    assert worker_cpu(s, Cluster(4), K) == pytest.approx(8 * 0.052 + 123 * (8 * 0.001 + 4 * 0.002))
    slow = under_load(K, 2.0)  # every worker-side constant doubled: so is the busiest worker's chain
    assert predict(w, Cluster(4, cores=8), slow)["compute"] == pytest.approx(2 * 4 * 0.102)
    assert slow.scheduler_task_s == K.scheduler_task_s and slow.step_s == K.step_s


def test_a_quota_leaves_the_tasks_its_share_less_the_idle_workers_own_and_a_short_stretch_runs_unthrottled():
    from dataclasses import replace

    from cost_model import quota_stretch, stretched

    k = replace(K, worker_idle_cpu=0.05, quota_burst_s=0.08)
    assert quota_stretch(Cluster(1, worker_cpus=0.25), k) == pytest.approx(1 / 0.2)  # b = 0.05 of the 0.25
    assert quota_stretch(Cluster(1), k) == 1.0 and quota_stretch(Cluster(1, worker_cpus=4), k) == 1.0
    assert stretched(0.01, 5.0, k) == 0.01  # within the quota a host gets at once: unthrottled
    assert stretched(1.0, 5.0, k) == pytest.approx(5.0 - 0.08)
    w = Workload("kmeans", 250_000, 32, lloyd_iter=3)  # one chunk, 4 passes: one stretch, one burst
    t = predict(w, Cluster(1, link_bps=1e9, worker_cpus=0.25), k)
    cpu = 4 * (0.1 + 0.002)
    assert t["host CPU"] == pytest.approx(cpu * 5 - 0.08)
    # the fixed cost's worker CPU joins the host's stretch (it is in the fixed cost unthrottled)
    fk = replace(k, fixed_worker_s={"kmeans": 0.1})
    t2 = predict(w, Cluster(1, link_bps=1e9, worker_cpus=0.25), fk)
    assert t2["total"] == pytest.approx((cpu + 0.1) * 5 - 0.08 - 0.1 + 0.3)


def test_contention_scales_the_workers_constants_by_the_busy_hosts_only_on_shared_cores():
    from dataclasses import replace

    from cost_model import contention, worker_cpu

    k = replace(K, contention={"1": 1.0, "2": 1.1, "4": 1.3, "8": 1.5})
    assert [contention(k, n) for n in (1, 2, 3, 8, 16)] == pytest.approx([1.0, 1.1, 1.2, 1.5, 1.5])
    w = Workload("regression", 16 * 250_000, 32)
    shared, alone = Cluster(4, link_bps=1e9), Cluster(4, link_bps=1e9, cores=None)
    assert worker_cpu(w, shared, k) == pytest.approx(1.3 * worker_cpu(w, shared, K))  # K.cores = 2: shared
    assert predict(w, replace(shared, cores=64), replace(k, cores=64))["compute"] == pytest.approx(
        1.3 * 4 * 0.102)
    assert predict(w, alone, replace(k, cores=None)) == predict(w, alone, replace(K, cores=None))
    one = Workload("regression", 250_000, 32)  # one chunk keeps one host busy, whatever P
    assert worker_cpu(one, shared, k) == pytest.approx(worker_cpu(one, shared, K))


def test_the_measured_stretch_sets_the_quota_and_leaves_the_same_background_at_other_quotas():
    """f is the wall per CPU second measured on busy stretches (s) at the calibrated quota q; at another quota
    the background it implies, q − 1 / s, is taken out instead of the idle worker's b."""
    from dataclasses import replace

    from cost_model import quota_background, quota_stretch

    k = replace(K, worker_idle_cpu=0.02, quota_slope=6.0, quota_calibrated=0.2)
    assert quota_background(k) == pytest.approx(0.2 - 1 / 6)
    assert quota_stretch(Cluster(1, worker_cpus=0.2), k) == pytest.approx(6.0)
    assert quota_stretch(Cluster(1, worker_cpus=0.4), k) == pytest.approx(1 / (0.4 - (0.2 - 1 / 6)))
    assert quota_stretch(Cluster(1, worker_cpus=0.2), replace(k, quota_slope=None)) == pytest.approx(1 / 0.18)
    w = Workload("regression", 250_000, 32)  # one chunk: the host's stretch of its chain
    assert predict(w, Cluster(1, link_bps=1e9, worker_cpus=0.2), k)["host CPU"] == pytest.approx(0.102 * 6)


def test_a_kernel_measured_under_contention_on_its_own_takes_its_own_factor():
    from dataclasses import replace

    from cost_model import worker_cpu

    k = replace(K, contention={"1": 1.0, "8": 1.1}, contention_kernels={"sgd_local": {"1": 1.0, "8": 1.5}})
    shared = Cluster(8, link_bps=1e9)  # K.cores = 2: the hosts share them
    local = Workload("sgd-local", 8 * 250_000, 32)
    assert worker_cpu(local, shared, k) == pytest.approx(8 * (0.2 * 1.5 + 0.002 * 1.1))
    regression = Workload("regression", 8 * 250_000, 32)
    assert worker_cpu(regression, shared, k) == pytest.approx(1.1 * worker_cpu(regression, shared, K))


def test_a_sync_step_on_shared_cores_takes_every_processs_cpu_of_the_step():
    """On the harness's shared cores a sync step lasts at least the CPU the scheduler, the client (per step and
    per task, measured) and the workers spend on it over the cores the workers' idle background leaves."""
    from dataclasses import replace

    k = replace(K, worker_idle_cpu=0.025, sync_step_cpu={"scheduler": {"per_task": 0.0015, "per_step": 0.001},
                                                         "client": {"per_task": 0.0005, "per_step": 0.002}})
    w = Workload("sgd-sync", 8 * 250_000, 32, batch_size=2000)
    t = predict(w, Cluster(8, link_bps=1e9), k)
    step_cpu = 0.001 + 0.002 + 8 * (0.002 + 0.002) + 8 * 0.001
    split = 8 * (0.05 + 0.002 + 0.0015) / 2  # the persisting pass's own cpu term
    assert t["cpu"] == pytest.approx(split + 123 * step_cpu / (2 - 8 * 0.025))
    assert t["round trips"] == pytest.approx(123 * (0.01 + 7 * 0.002))


def test_repeated_calibrations_merge_into_their_median_with_each_constants_spread(tmp_path):
    from dataclasses import asdict, replace

    from bench_scale import median_constants

    paths = []
    for i, ms in enumerate((0.020, 0.016, 0.018)):
        p = tmp_path / f"k{i}.json"
        replace(K, fixed_s={**K.fixed_s, "regression": ms}, notes={"date": f"d{i}"}).save(p)
        paths.append(p)
    k, spread = median_constants(paths)
    assert k.fixed_s["regression"] == pytest.approx(0.018) and k.step_s == K.step_s
    row = next(r for r in spread if r["constant"] == "fixed_s.regression")
    assert row["spread"] == pytest.approx(0.004 / 0.018)
    assert k.notes["median of"] == "d0, d1, d2" and asdict(k)["kernel_s"] == K.kernel_s
