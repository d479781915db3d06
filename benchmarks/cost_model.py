"""What a fit costs on a dask cluster, term by term, from constants measured on this machine.

A fit is a fixed cost — opening the store, checking the input, the client's own work (a QR / SVD of the combined
factor, reducing k-means|| candidates, held-out losses), the round trips of its ``dask.compute`` calls, a
parameter server's start — plus its work: *passes* over the row chunks (each one ``dask.compute``, reduced by
a tree) and, for sync and async SGD, *steps* over blocks held in cluster memory. The fixed cost is measured per
method as the whole fit of a one-chunk store (the same passes and round trips, no data to speak of); the
work is modelled. A pass is a pipeline whose time is that of its bottleneck, plus what can only start after
its last chunk task — the tree's last combines on the workers and the last transfer to the client:

    pass = max(compute, cpu, scheduler, client, network, storage) + last combines + tail

- compute   = stretch(⌈C / (P T)⌉ (t_k + ω))     the busiest worker thread's chain of chunk tasks
- cpu       = (C (t_k + ω) + m (t_c + ω) + (C + m)(σ + γ)) / min(cores, P T / f + 2)
              every process sharing ``cores`` CPUs (the harness: this VM's 2 for all; a real cluster: one per
              worker thread — then the term is absent)
- scheduler = (C + m) σ                           the scheduler is one process on one core: serial
- client    = (C + m) γ                           graph building and communication on the client
- network   = max(C / P, ⌈m / P⌉ 8 (P − 1) / P) s / (e R)   partial results through the busiest worker link:
              leaving its chunk tasks, or arriving at its combines (8 inputs each, all but 1/P from elsewhere)
- storage   = C b / P / S                         chunk bytes read over the network from shared storage

A worker host with a CPU quota of q cores (``Cluster.worker_cpus``) makes every worker-side CPU constant φ
times larger (measured as the tasks' CPU under the quota and CFS period of the runs over without, the idle
background taken out; the wide PCA's kernel has its own φ) and stretches its threads' CPU work by
f = max(1, T / (q − b')), b' the part of the quota the tasks do not get: q − 1 / s at the calibrated quota, s
the wall per CPU second of busy stretches under it (``quota_background``; b, an idle worker's own CPU, if s
was not measured): t_k, t_c and ω are stretched by f in ``compute``, P T / f CPUs in ``cpu``. A fit takes
at least its busiest host's CPU seconds stretched so (``host CPU``: a P-th of the workers' CPU seconds,
``worker_cpu``, plus the parameter server's if it is there). A busy stretch of c CPU seconds takes
stretch(c) = max(c, f c − β): CFS bandwidth control gives a host idle for a period its whole quota at once, so
a short stretch runs unthrottled (s and β from one least-squares line, wall = s c − β, through spins of
30–500 ms after an idle spell). In ``compute`` each
pass's chain is one stretch (β per pass); in ``host CPU`` the whole fit is one (β once per fit), the worker
CPU of its fixed cost (``fixed_worker_s``, measured unthrottled with it) joining it on one host. On worker
hosts sharing the machine's cores (``cores``), every worker-side constant is also κ(n) times larger, n =
min(P, C) hosts busy at once (the moments kernel's CPU per chunk with n quota'd hosts running it at once over
with one, measured apart from any fit: ``--calibrate-contention``; SGD local's and the search's kernels have
their own κ(n), ``contention_kernels``, their chunk tasks run in loops the same way). ``cores``, κ(n) and the
``cpu`` terms are terms of a harness whose processes share a machine's cores; a cluster of a core per process
(``project``) has none of them.
- last combines = Σ over the tree's levels on the workers (C > 8) of
              g (P − 1) / P s / (e R) + stretch(t_c + ω)
              each level's last combine waits for its last inputs: the transfer of its g = min(8, the level's
              parts) inputs from other workers into its worker's link, then its own CPU (stretched under a quota);
              for C ≤ 8 there is no combine on the workers
- tail      = h n s / (e R)                       the parts that reach the client: what the workers' combines
                                                  leave (n = C for C ≤ 8, else ⌈C / 8^L⌉ ≤ 8 after L levels), or
                                                  every chunk's (n = C: the search)
  h = 2 links crossed: a client outside the cluster gathers through the scheduler (distributed's default when
  ``direct_to_workers`` is unset: worker → scheduler, then scheduler → client, each message whole before it is
  sent on); the held-out rows sync / async SGD's split carries to the client (C v r (d + 1) 8 bytes) cross both
  too.

C chunks of r rows and b bytes, m combine tasks (fan-in 8, the last combine on the client), P workers of T
threads, t_k / t_c the chunk / combine task's time on one core (read from the page cache + kernel), ω / σ / γ
the worker's / scheduler's / client's CPU per task besides the kernel, s the bytes of one chunk's partial
result, R the link rate (bit/s / 8), e the share of it an HTB-shaped link delivered to TCP, S a worker's storage
bandwidth (None: the data are local, their read is in t_k).

Per method (``predict``; ``fixed_s[method]`` measured):
- regression, PCA: one pass, s = (d + 2)² 8 bytes (the Gram / R factor of [X | y | 1]);
- KMeans: the k-means|| pass (s = a chunk's candidates, (1 + 2 k · rounds)(d + 1) 8), one Lloyd pass per
  iteration (s ≈ (2 k d + 2 k) 8), and the client's reduction of min(C (1 + 2 k · rounds), 200,000)
  candidates (κ_c per candidate; the tree's combines summarise past 200,000, their cost not modelled); data
  that fit in a quarter of the workers' memory are first persisted, which maps the page cache (its round trip
  is in the fixed cost);
- SGD local: one pass per round, the chunks' weight changes summed by the tree (s = (d + 1) 8); the held-out
  rows (a fraction v of each chunk's) stay on the workers that read them, and each held-out loss is one round
  trip to every worker (ψ) bringing back two numbers per chunk (a one-round fit's two are in its fixed cost);
- SGD sync: the persisting pass (``split_block``), the held-out rows to the client, then
  S = ⌈r (1 − v) / B⌉ steps per epoch, each
  ``max(ψ + (Q − 1)(σ_s + γ_s), ψ + ⌈C / Q⌉ t_g, quota, cpu)`` for Q busy threads (ψ: a step's round trip
  with one task, t_g: one block's mini-batch gradient; σ_s / γ_s the scheduler's / client's CPU per further
  task of a step, measured with 1 and 2 tasks a step; quota = f (⌈Q / P⌉ ω_s + ⌈C / Q⌉ t_g), the busiest
  host's CPU per step under its quota, ω_s a step task's worker CPU besides its gradients: the weights in, the
  gradients out; on shared cores cpu = (σ_0 + γ_0 + Q (σ_s + γ_s + ω_s) + C t_g) / (cores − P b), every
  process's CPU of a step, σ_0 / γ_0 the rest of a step's, over the cores the workers' idle background leaves);
- SGD async: as sync up to the steps; then every block pushes ⌈S / p⌉ times (p gradients each, two actor calls
  of α), its worker's blocks one after another, against the parameter server's serial ρ per push:
  ``epoch = max(⌈C / (P T)⌉ ⌈S / p⌉ (2 α + p t_g), C ⌈S / p⌉ ρ)``, α the mean of a call to a server on the
  same worker (α_local, 1 block in P) and on another (α_remote); under a quota the server's host is the busiest
  (``host CPU``: its share of the workers' work plus every push's ρ);
- search (the fused search of ``model_selection``: N candidates × k folds, R rounds of local SGD): R + 1 passes
  (the last one scores only), every chunk's N k weight changes to the client (s = N k (d + 1) 8), t_k the
  fused task's time per chunk (``kernel_s["search"]``, measured for the benchmark's N k, averaged over its
  passes; the training part grows with N k, so other sizes need their own measurement).

``constants.json`` beside this module holds what ``bench_scale.py --calibrate`` measured (date and conditions
in its notes); ``project`` evaluates a method from 1 to 1,000 workers, each on a core of its own, and names the
term that dominates at each size.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

CONSTANTS = Path(__file__).with_name("constants.json")
FAN_IN = 8
GATHER_HOPS = 2  # links a result crosses to a client outside the cluster: worker -> scheduler -> client
MAX_CANDIDATES = 200_000  # k-means||: the most candidates a combine passes on (``MAX_CANDIDATE_ROWS``)
SERIAL = "last combines"  # the term of a pass that follows its bottleneck: the tree's combines after the last chunk


@dataclass(frozen=True)
class Constants:
    """Measured on one machine (``bench_scale.py --calibrate``); seconds unless named otherwise."""

    kernel_s: dict[str, float]         # per chunk task (sgd_grad: per block and step), one core, page cache warm
    combine_s: dict[str, float]        # per combine task of the tree
    fixed_s: dict[str, float]          # the whole fit of a one-chunk store, per method
    worker_task_s: float               # ω: worker CPU per task besides the kernel
    scheduler_task_s: float            # σ: scheduler CPU per task
    client_task_s: float               # γ: client CPU per task
    step_s: float                      # ψ: a sync step with one trivial task (submit, wait, gather)
    link_efficiency: float             # e: TCP throughput / an HTB link's nominal rate
    async_call_s: float                # α_remote: an actor call's round trip between two workers (pull or push)
    async_local_call_s: float          # α_local: the same, the actor on the calling task's own worker
    async_server_s: float              # ρ: the parameter server's CPU per push
    kmeans_client_s: float             # κ_c: client seconds per k-means|| candidate (weighted k-means++ and Lloyd)
    sync_task_s: float | None = None   # ω_s: worker CPU per sync step's task besides its gradients (None: ω)
    # the scheduler's and the client's CPU in a sync step: {"scheduler" / "client": {"per_task", "per_step"}}
    # (σ_s, γ_s per task of the step and σ_0, γ_0 per step; None: σ and γ per task, nothing per step)
    sync_step_cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    quota_cpu_factor: float = 1.0      # φ: a worker's CPU per task under a CPU quota below a core / without one
    quota_cpu_factor_wide: float | None = None  # φ of the wide PCA's kernel (None: φ)
    quota_burst_s: float = 0.0         # β: wall a busy stretch on a quota'd host saves against the linear stretch
    worker_idle_cpu: float = 0.0       # b: CPU seconds per second an idle worker process spends (its event loop)
    quota_slope: float | None = None   # s: wall per CPU second of a busy stretch under the quota (None: 1 / (q − b))
    quota_calibrated: float | None = None  # the quota q (cores) s was measured under
    contention: dict[str, float] = field(default_factory=dict)  # κ(n): CPU per task, n quota'd hosts busy / 1
    contention_wide: dict[str, float] = field(default_factory=dict)  # κ(n) of the wide PCA's kernel
    contention_kernels: dict[str, dict[str, float]] = field(default_factory=dict)  # κ(n) of kernels measured apart
    reference_s: dict[str, float] = field(default_factory=dict)  # the speed probe's kernels at calibration
    fixed_worker_s: dict[str, float] = field(default_factory=dict)  # the worker CPU in ``fixed_s`` (one worker)
    cores: float | None = None         # CPUs the cluster's processes share (None: enough for every process)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def sync_task(self) -> float:
        return self.worker_task_s if self.sync_task_s is None else self.sync_task_s

    @classmethod
    def load(cls, path: Path = CONSTANTS) -> Constants:
        return cls(**json.loads(Path(path).read_text()))

    def save(self, path: Path = CONSTANTS) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")


@dataclass(frozen=True)
class Workload:
    """What is fitted: ``method`` in ``METHODS``, the data's shape and chunking, the method's settings."""

    method: str
    rows: int
    features: int
    chunk_rows: int = 250_000
    k: int = 20                    # KMeans
    lloyd_iter: int = 3
    init_rounds: int = 5
    epochs: int = 1                # SGD
    batch_size: int = 2000
    push_every: int = 4
    validation_fraction: float = 0.01
    candidates: int = 16           # search: candidates x folds, ``epochs`` rounds
    folds: int = 3
    fixed: str | None = None       # the key of ``fixed_s`` (default: ``method``)

    @property
    def chunks(self) -> int:
        return -(-self.rows // self.chunk_rows)


@dataclass(frozen=True)
class Cluster:
    """P workers of T threads; links of ``link_bps`` (None: unshaped); ``storage_bps`` per worker (None: the
    data are local to every worker); ``cores`` shared by all processes (None: each has its own); ``worker_cpus``
    the CPU quota of each worker host (None: a core per thread)."""

    workers: int
    threads: int = 1
    link_bps: float | None = None
    storage_bps: float | None = None
    cores: float | None = None
    worker_cpus: float | None = None


METHODS = ("regression", "pca", "kmeans", "sgd-local", "sgd-sync", "sgd-async", "search")


def _combines(c: int) -> int:
    """Combine tasks of the tree over ``c`` parts (fan-in 8), the last combine on the client."""
    return sum(_levels(c))


def _levels(c: int) -> list[int]:
    """The parts each level of the tree's combines on the workers leaves, over ``c`` parts (fan-in 8): the last
    is what reaches the client (at most 8; ``c`` itself, no level, for ``c`` ≤ 8)."""
    out = []
    while c > FAN_IN:
        c = -(-c // FAN_IN)
        out.append(c)
    return out


def _last_combines(C: int, P: int, part_bytes: float, rate: float, t_c: float, f: float,
                   k: Constants) -> float:
    """The tree's combines on the workers after the last chunk task: each level's last combine waits for its last
    inputs, so it and the transfer of its inputs from other workers (min(8, its level's parts) (P − 1) / P of them,
    through its worker's link) follow the pass's chunk tasks one after the other — the time line of a wide PCA's
    pass (``profile_pass.py``: the last combine starts after the chunk tasks end and the transfers of its
    inputs)."""
    out, c = 0.0, C
    for parts in _levels(C):
        last = c - (parts - 1) * FAN_IN  # inputs of the level's last combine
        out += last * (P - 1) / P * part_bytes / rate + stretched(t_c + k.worker_task_s, f, k)
        c = parts
    return out


def _rate(cl: Cluster, k: Constants) -> float:
    """Bytes per second of one link."""
    return math.inf if cl.link_bps is None else cl.link_bps / 8 * k.link_efficiency


def _cores(cl: Cluster, k: Constants) -> float | None:
    return cl.cores if cl.cores is not None else k.cores


def one_pass(w: Workload, cl: Cluster, k: Constants, kernel: str, part_bytes: float, *, tree: bool = True,
             client_extra: float = 0.0) -> dict[str, float]:
    """The terms of one pass over ``w``'s chunks (module docstring) and its ``total``."""
    C, P, T = w.chunks, cl.workers, cl.threads
    m = _combines(C) if tree else 0
    t_k, t_c = k.kernel_s[kernel], k.combine_s.get(kernel, 0.0)
    rate = _rate(cl, k)
    terms = {
        "compute": stretched(math.ceil(C / (P * T)) * (t_k + k.worker_task_s), quota_stretch(cl, k), k),
        "scheduler": (C + m) * k.scheduler_task_s,
        "client": (C + m) * k.client_task_s + client_extra,
        "network": (max(C / P, math.ceil(m / P) * FAN_IN * (P - 1) / P) * part_bytes / rate
                    if P > 1 and tree else 0.0),
        "storage": 0.0 if cl.storage_bps is None else C * w.chunk_rows * (w.features + 1) * 8 / P / cl.storage_bps,
    }
    cores = _cores(cl, k)
    if cores is not None:
        cpu = C * (t_k + k.worker_task_s) + m * (t_c + k.worker_task_s) + (C + m) * (
            k.scheduler_task_s + k.client_task_s) + client_extra
        terms["cpu"] = cpu / min(cores, worker_cores(cl, k) + 2)
    reaching = ((_levels(C) or [C])[-1]) if tree else C  # the parts that reach the client
    tail = GATHER_HOPS * reaching * part_bytes / rate
    last = _last_combines(C, P, part_bytes, rate, t_c, quota_stretch(cl, k), k) if tree else 0.0
    terms["total"] = max(terms.values()) + last + tail
    terms[SERIAL] = last
    return terms


def predict(w: Workload, cl: Cluster, k: Constants) -> dict[str, float]:
    """The predicted wall time of fitting ``w`` on ``cl`` (``total``), its ``fixed`` part and its terms (summed
    over passes and steps)."""
    k = effective(k, cl, w)
    d, C = w.features, w.chunks
    if w.method in ("regression", "pca"):
        work = one_pass(w, cl, k, "moments", (d + 2) ** 2 * 8)
    elif w.method == "sgd-local":
        work = _times(one_pass(w, cl, k, "sgd_local", (d + 1) * 8), w.epochs)
        # the held-out losses, scored where the rows are: a round trip each (ψ), those of a one-round fit in
        # the fixed cost
        work["total"] += (w.epochs - 1) * k.step_s
    elif w.method == "kmeans":
        cand = 1 + 2 * w.k * w.init_rounds
        reaching = min(cand * C, MAX_CANDIDATES)  # the tree summarises past its limit (``_kmeans_kernels``)
        work = one_pass(w, cl, k, "kmeans_init", cand * (d + 1) * 8, client_extra=k.kmeans_client_s * reaching)
        work = _plus(work, _times(one_pass(w, cl, k, "lloyd", (2 * w.k * d + 2 * w.k) * 8), w.lloyd_iter))
    elif w.method == "search":
        # every candidate x split trains in the same read of each chunk; each chunk's weight changes to the
        # client (as SGD local), the scorers' states by the tree; R rounds + the scoring pass
        part = w.candidates * w.folds * (d + 1) * 8
        work = _times(one_pass(w, cl, k, "search", part, tree=False), w.epochs + 1)
    elif w.method in ("sgd-sync", "sgd-async"):
        work = one_pass(w, cl, k, "split", 0.0, tree=False)
        work["total"] += GATHER_HOPS * C * w.validation_fraction * w.chunk_rows * (d + 1) * 8 / _rate(cl, k)
        epoch = _sync_epoch(w, cl, k) if w.method == "sgd-sync" else _async_epoch(w, cl, k)
        work = _plus(work, _times(epoch, w.epochs))
    else:
        raise ValueError(f"method {w.method!r}: expected one of {METHODS}")
    out = dict(work)
    if cl.worker_cpus:  # under a quota, the busiest host's CPU work cannot take less than it over its quota
        server = w.epochs * C * math.ceil(_steps(w) / w.push_every) * k.async_server_s if (
            w.method == "sgd-async") else 0.0  # the parameter server's pushes, all on one host
        host = (worker_cpu(w, cl, k) - server) / cl.workers + server
        fw = k.fixed_worker_s.get(w.fixed or w.method, 0.0)  # the fixed cost's worker CPU: on one host
        out["host CPU"] = stretched(host / cl.threads + fw, quota_stretch(cl, k), k) - fw
    out["fixed"] = k.fixed_s[w.fixed or w.method]
    out["total"] = max(work["total"], out.get("host CPU", 0.0)) + out["fixed"]
    return out


def effective(k: Constants, cl: Cluster, w: Workload) -> Constants:
    """``k`` as the workers of ``cl`` pay it fitting ``w``: φ under a quota, and on worker hosts sharing the
    machine's cores, κ(n) for the n = min(P, C) hosts busy at once."""
    k = under_quota(k, cl)
    if _cores(cl, k) is None or not k.contention:
        return k
    busy = min(cl.workers, w.chunks)
    base = contention(k, busy)
    own = {name: contention(k, busy, table) / base for name, table in k.contention_kernels.items()}
    k = under_load(k, base)
    return replace(k, kernel_s={n: v * own.get(n, 1.0) for n, v in k.kernel_s.items()})


def _steps(w: Workload) -> int:
    return math.ceil(w.chunk_rows * (1 - w.validation_fraction) / w.batch_size)


def _sync_epoch(w: Workload, cl: Cluster, k: Constants) -> dict[str, float]:
    """The steps of one epoch, less the one step a one-chunk fit makes (it is in the fixed cost)."""
    C = w.chunks
    Q = min(C, cl.workers * cl.threads)
    t_g = k.kernel_s["sgd_grad"]
    sched, client = (k.sync_step_cpu.get(name, {"per_task": v, "per_step": 0.0}) for name, v in (
        ("scheduler", k.scheduler_task_s), ("client", k.client_task_s)))
    per_task = sched["per_task"] + client["per_task"]
    terms = {"round trips": k.step_s + (Q - 1) * per_task,
             "compute": k.step_s + math.ceil(C / Q) * t_g,
             "network": k.step_s + 2 * (w.features + 1) * 8 / _rate(cl, k)}
    if quota_stretch(cl, k) > 1:  # the busiest worker's CPU per step, stretched by its quota
        terms["quota"] = (k.sync_task * math.ceil(Q / cl.workers) + math.ceil(C / Q) * t_g) * quota_stretch(cl, k)
    cores = _cores(cl, k)
    if cores is not None:  # every process's CPU of a step on the shared cores, less the workers' idle background
        step_cpu = sched["per_step"] + client["per_step"] + Q * (per_task + k.sync_task) + C * t_g
        terms["cpu"] = step_cpu / min(cores - cl.workers * k.worker_idle_cpu, min(Q, worker_cores(cl, k)) + 2)
    step = max(terms.values())
    S = _steps(w) - 1
    out = {name: S * v for name, v in terms.items()}
    out["total"] = S * step
    return out


def _async_epoch(w: Workload, cl: Cluster, k: Constants) -> dict[str, float]:
    C, P, T = w.chunks, cl.workers, cl.threads
    pushes = math.ceil(_steps(w) / w.push_every)
    t_g = k.kernel_s["sgd_grad"]
    call = (k.async_local_call_s + (P - 1) * k.async_call_s) / P
    f = quota_stretch(cl, k)
    terms = {"workers": math.ceil(C / (P * T)) * pushes * (2 * call + w.push_every * t_g * f),
             "server": C * pushes * k.async_server_s * f}
    cores = _cores(cl, k)
    if cores is not None:
        terms["cpu"] = C * pushes * (w.push_every * t_g + k.async_server_s + 2 * k.worker_task_s) / min(
            cores, worker_cores(cl, k) + 2)
    out = dict(terms)
    out["total"] = max(terms.values())
    return out


def _times(terms: dict[str, float], n: int) -> dict[str, float]:
    return {name: n * v for name, v in terms.items()}


def _plus(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {name: a.get(name, 0.0) + b.get(name, 0.0) for name in {**a, **b}}


def worker_cpu(w: Workload, cl: Cluster, k: Constants) -> float:
    """The CPU seconds all workers spend on ``w`` by the model (kernels, combines, per-task work, the server)."""
    k = effective(k, cl, w)
    C, m = w.chunks, _combines(w.chunks)
    omega = k.worker_task_s

    def pass_(kernel: str, tree: bool = True) -> float:
        return C * (k.kernel_s[kernel] + omega) + (m * (k.combine_s.get(kernel, 0.0) + omega) if tree else 0.0)

    if w.method in ("regression", "pca"):
        return pass_("moments")
    if w.method == "sgd-local":
        return w.epochs * pass_("sgd_local")
    if w.method == "kmeans":
        return pass_("kmeans_init") + w.lloyd_iter * pass_("lloyd")
    if w.method == "search":
        return (w.epochs + 1) * pass_("search", tree=False)
    steps = _steps(w) - 1
    if w.method == "sgd-sync":
        tasks = min(C, cl.workers * cl.threads)  # per step
        return pass_("split", tree=False) + w.epochs * steps * (C * k.kernel_s["sgd_grad"] + tasks * k.sync_task)
    pushes = math.ceil(_steps(w) / w.push_every)
    return pass_("split", tree=False) + w.epochs * C * pushes * (
        w.push_every * k.kernel_s["sgd_grad"] + 2 * omega + k.async_server_s)


def contention(k: Constants, busy: int, table: dict[str, float] | None = None) -> float:
    """κ(n): a task's CPU with ``busy`` quota'd worker hosts busy on the shared cores over with one
    (``bench_scale.py --calibrate-contention``; ``table``: a kernel's own, else the moments kernel's), linear
    between the measured n, constant past the last."""
    table = k.contention if table is None else table
    if not table or busy <= 1:
        return 1.0
    pts = sorted((int(n), v) for n, v in table.items())
    if busy >= pts[-1][0]:
        return pts[-1][1]
    for (n0, v0), (n1, v1) in zip(pts, pts[1:], strict=False):
        if n0 <= busy <= n1:
            return v0 + (v1 - v0) * (busy - n0) / (n1 - n0)
    return 1.0


def quota_stretch(cl: Cluster, k: Constants) -> float:
    """f: how much longer a worker thread's CPU work takes under its host's quota q, of which the worker
    process's own background is not the tasks': max(1, T / (q − b')), b' = ``quota_background`` (the measured
    stretch's, so that f = T s at the calibrated quota)."""
    if cl.worker_cpus is None:
        return 1.0
    return max(1.0, cl.threads / max(cl.worker_cpus - quota_background(k), 1e-3))


def quota_background(k: Constants) -> float:
    """The part of a host's quota its tasks do not get: q − 1 / s, s the wall per CPU second measured on busy
    stretches under the quota q (``--calibrate-quota``: one least-squares line through them), else b."""
    if k.quota_slope is None or k.quota_calibrated is None:
        return k.worker_idle_cpu
    return k.quota_calibrated - 1.0 / k.quota_slope


def worker_cores(cl: Cluster, k: Constants) -> float:
    """CPUs all worker threads can use at once for tasks: P T / f."""
    return cl.workers * cl.threads / quota_stretch(cl, k)


def stretched(cpu: float, f: float, k: Constants) -> float:
    """Wall time of ``cpu`` seconds of one thread's work stretched ``f`` times by its host's quota, less the
    burst β of one busy stretch (CFS bandwidth control: a host idle for a period starts with its whole quota;
    measured, ``--calibrate-quota``), never less than ``cpu`` itself. ``one_pass`` takes every pass's chain of
    chunk tasks as a stretch of its own (β per pass: between passes the host idles while the client gathers
    and submits); the host-CPU bound of ``predict`` takes the fit's CPU as one stretch (β once per fit). On the
    recorded harness runs β once per fit in the compute term too put fewer predictions within 25 %."""
    if f <= 1:
        return cpu
    return max(cpu, cpu * f - k.quota_burst_s)


def under_quota(k: Constants, cl: Cluster) -> Constants:
    """``k`` for workers throttled by a CPU quota below a core per thread: every worker-side constant times φ,
    the tasks' CPU under the quota over without it (measured, ``--calibrate-quota``: close to 1, a throttled
    task costs about the CPU it costs unthrottled; its wall time is stretched by ``quota_stretch``)."""
    if quota_stretch(cl, k) <= 1 or k.quota_cpu_factor == 1:
        return k
    return under_load(k, k.quota_cpu_factor)


def under_load(k: Constants, factor: float) -> Constants:
    """``k`` with every worker-side CPU constant (kernels, combines, ω, the server's ρ) times ``factor``: the
    constants of a run whose workers' CPU per task was ``factor`` × the calibration's (a loaded machine; φ and κ
    are then in ``factor``)."""
    return Constants(**{**asdict(k), "kernel_s": {n: v * factor for n, v in k.kernel_s.items()},
                        "combine_s": {n: v * factor for n, v in k.combine_s.items()},
                        "worker_task_s": k.worker_task_s * factor, "async_server_s": k.async_server_s * factor,
                        "sync_task_s": k.sync_task * factor, "quota_cpu_factor": 1.0,
                        "quota_cpu_factor_wide": None, "contention": {}, "contention_wide": {},
                        "contention_kernels": {}})


def dominant(terms: dict[str, float]) -> str:
    """The name of the largest term (what sets the time; not the tree's combines after the last chunk task,
    which follow it)."""
    return max((v, name) for name, v in terms.items() if name not in ("total", SERIAL))[1]


def project(w: Workload, k: Constants, workers: tuple[int, ...] = (1, 10, 100, 1000), link_bps: float = 10e9,
            storage_bps: float | None = None) -> list[dict]:
    """``w`` on 1 to 1,000 workers, each worker on a core of its own: total, speed-up, efficiency and the
    dominant term at each size."""
    rows, base = [], None
    alone = Constants(**{**asdict(k), "cores": None})
    for p in workers:
        t = predict(w, Cluster(p, link_bps=link_bps, storage_bps=storage_bps, cores=None), alone)
        base = base or t["total"]
        rows.append({"workers": p, "seconds": t["total"], "speed-up": base / t["total"],
                     "efficiency": base / t["total"] / p, "dominant": dominant(t)})
    return rows
