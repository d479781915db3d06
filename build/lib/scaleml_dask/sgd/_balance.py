"""Sync SGD's blocks placed on the workers by measured cost, so that a step stops waiting on the slowest.

A sync step sends one task to every worker that holds blocks (it computes their mini-batch gradients) and
waits for all of them, so the step takes as long as the slowest worker. Each worker ``w`` is modelled by what it
was measured to cost: a fixed time per task ``a_w`` (its round trip up to its gradients at the client: its link's
latency, a throttled CPU's wait for its quota, the task's overhead) and a time per block ``c_w`` (one mini-batch
gradient). A step with ``n_w`` blocks on each worker takes ``max_w (a_w + n_w c_w)`` over the workers with
blocks. Blocks go, one at a time, to the worker whose step would end earliest with it, which minimises that
maximum for a given set of workers (blocks cost the same on one worker). A worker takes part only if the step
is shorter with it: the plans on the ``k`` workers of least fixed time are compared for every ``k``, and one on
fewer workers is chosen only when it is at least ``DROP_GAIN`` shorter — so a straggler (a throttled CPU, or a
slow link whose round trip outweighs the gradients it would compute) gets no blocks and the step no longer waits
for it, while noise in the timings of equal workers never concentrates the work on fewer of them. The estimates
are medians of each worker's last ``WINDOW`` tasks, robust to a single slow step. (One task per worker, not per
thread: a step's gradients take far less than a task's round trip, so more tasks would cost more than they
save.)

Moving a block copies it to its new worker (dask fetches the persisted block for the task), once; a new plan is
adopted only when the step time it saves over the steps left in the fit outweighs its copies (at an assumed
``MOVE_BYTES_PER_S``), and when it saves at least ``MIN_GAIN`` of the step. The model is linear in the blocks,
and a worker need not be (a CPU quota throttles a task that outruns its share of each quota period), so a new
plan is a trial: once ``WINDOW`` steps have run on it, their mean time is compared with that of the steps
before it (the mean, not the median: under a CPU quota most steps run at full speed and every few wait out the
rest of a quota period, and the waits are what the plan changes), and a plan that did not make steps shorter
is undone (its blocks go back where copies of them still are) and no other is tried in that fit. The gradient
of a step is the sum of the blocks' gradients in block order wherever they were computed, so the weights are
bitwise those of the unbalanced fit: balancing changes the time of a step, never its result.

>>> plan = assign_blocks({"a": (0.01, 0.002), "b": (0.01, 0.008)}, 10)
>>> plan["a"], plan["b"]
(8, 2)
"""

from __future__ import annotations

import collections
import heapq
import math
import statistics
from collections.abc import Iterable

#: Tasks per worker whose median gives its estimates of ``a_w`` and ``c_w``.
WINDOW = 9
#: A plan on fewer workers is chosen only if its step is at least this fraction shorter than on more (timings of
#: equal workers differ by noise: well below this).
DROP_GAIN = 0.3
#: A new plan is adopted only if it shortens the predicted step by at least this fraction.
MIN_GAIN = 0.15
#: The rate at which moving a block is assumed to cost (bytes/s) in the move-or-not decision.
MOVE_BYTES_PER_S = 100e6
#: False: the earlier policy — blocks stay where they were computed (benchmarks compare the two).
ENABLED = True


def assign_blocks(costs: dict[str, tuple[float, float]], n_blocks: int) -> dict[str, int]:
    """How many blocks each worker gets: ``costs[w] = (a, c)``. For each ``k``, the ``k`` workers of least fixed
    time each get one block (while blocks last) and the rest go greedily to the worker that would finish it
    earliest (optimal for equal blocks); the plan on fewer workers wins only if ``DROP_GAIN`` shorter. Ties go to
    the worker listed first."""
    order = {w: i for i, w in enumerate(costs)}
    fastest = sorted(costs, key=lambda w: (costs[w][0], order[w]))
    best: dict[str, int] = {}
    best_time = math.inf
    for k in range(len(fastest), 0, -1):
        counts = _greedy({w: costs[w] for w in fastest[:k]}, n_blocks, order)
        t = step_time(costs, counts)
        if t < (1 - DROP_GAIN) * best_time:
            best, best_time = counts, t
    return {**dict.fromkeys(costs, 0), **best}


def _greedy(costs: dict[str, tuple[float, float]], n_blocks: int, order: dict[str, int]) -> dict[str, int]:
    """One block for each worker of ``costs`` (while blocks last), then each next block to the worker whose step
    would end earliest with it."""
    counts = dict.fromkeys(costs, 0)
    for w in list(costs)[:n_blocks]:
        counts[w] = 1
    heap = [(a + (counts[w] + 1) * c, order[w], w) for w, (a, c) in costs.items()]
    heapq.heapify(heap)
    for _ in range(n_blocks - sum(counts.values())):
        _, i, w = heapq.heappop(heap)
        counts[w] += 1
        a, c = costs[w]
        heapq.heappush(heap, (a + (counts[w] + 1) * c, i, w))
    return counts


def step_time(costs: dict[str, tuple[float, float]], counts: dict[str, int]) -> float:
    """The predicted time of a step: the slowest worker that has blocks."""
    return max((costs[w][0] + n * costs[w][1] for w, n in counts.items() if n), default=0.0)


def place(counts: dict[str, int], current: dict[str, list[int]], holders: dict[int, set[str]]
          ) -> dict[str, list[int]]:
    """Blocks for each worker, moving as few as possible: a worker keeps blocks it holds (``holders``: block ->
    workers holding a copy) up to its count; the rest go where there is room, first to a worker that holds a
    copy already."""
    mine: dict[str, list[int]] = {w: [] for w in counts}
    loose = []
    for b in sorted(b for bs in current.values() for b in bs):
        home = next((w for w in sorted(holders.get(b, ())) if w in counts and len(mine[w]) < counts[w]), None)
        (mine[home].append(b) if home is not None else loose.append(b))
    for b in loose:
        room = [w for w in counts if len(mine[w]) < counts[w]]
        mine[next((w for w in room if w in holders.get(b, ())), room[0])].append(b)
    return {w: sorted(bs) for w, bs in mine.items()}


class Balancer:
    """Running estimates of every worker's ``(a, c)`` and the plan of blocks per worker (module docstring)."""

    def __init__(self, holders: dict[int, set[str]], block_bytes: list[int]) -> None:
        self.block_bytes = block_bytes
        self.costs: dict[str, tuple[float, float]] = {}
        self.plan: dict[str | None, list[int]] = {}
        for b in sorted(holders):
            self.plan.setdefault(min(holders[b], default=None), []).append(b)
        self.moved_bytes = 0
        self._seen: dict[str, collections.deque] = {}
        self._steps: collections.deque = collections.deque(maxlen=WINDOW)
        self._trial: tuple[dict, float] | None = None  # the plan before the one on trial, its mean step
        self.frozen = False  # a trial failed: the plan stays as it is for the rest of the fit

    def observe(self, worker: str, round_trip: float, compute: float, blocks: int) -> None:
        """One task's measurement: its round trip seen by the client, its compute time, its blocks."""
        seen = self._seen.setdefault(worker, collections.deque(maxlen=WINDOW))
        seen.append((max(round_trip - compute, 0.0), compute / max(blocks, 1)))
        self.costs[worker] = (statistics.median(a for a, _ in seen), statistics.median(c for _, c in seen))

    def observe_step(self, seconds: float) -> None:
        """A whole step's time, from its tasks' submission to its last gradients at the client."""
        self._steps.append(seconds)

    def rebalance(self, steps_left: int, holders: dict[int, set[str]]) -> bool:
        """Adopt a better plan if it pays for its copies over ``steps_left`` steps, or undo a plan on trial that
        did not shorten the steps; True if the plan changed."""
        if not ENABLED or self.frozen or None in self.plan:
            return False  # a lost block without a holder yet: the trainer starts a new plan when it is back
        if self._trial is not None:
            if len(self._steps) < WINDOW:
                return False
            before, before_step = self._trial
            self._trial = None
            if statistics.fmean(self._steps) < before_step:
                return False  # the trial made steps shorter: kept
            self.plan, self.frozen = {**dict.fromkeys(self.plan, []), **before}, True
            return True
        if any(bs and len(self._seen.get(w, ())) < WINDOW for w, bs in self.plan.items()) or \
                not all(math.isfinite(a + c) for a, c in self.costs.values()):
            return False  # wait until every worker with blocks has been measured enough
        measured = {w: self.costs[w] for w in self.plan if w in self.costs}
        counts = assign_blocks(measured, sum(len(b) for b in self.plan.values()))  # never measured: none
        now = step_time(self.costs, {w: len(b) for w, b in self.plan.items()})
        new = step_time(self.costs, counts)
        if new > (1 - MIN_GAIN) * now:
            return False
        plan = {**dict.fromkeys(self.plan, []), **place(counts, self.plan, holders)}
        moved = sum(self.block_bytes[b] for w, bs in plan.items() for b in bs if w not in holders.get(b, ()))
        if (now - new) * steps_left < moved / MOVE_BYTES_PER_S:
            return False
        if len(self._steps) == WINDOW:  # on trial against the steps measured before it
            self._trial = (self.plan, statistics.fmean(self._steps))
            self._steps.clear()
        self.plan, self.moved_bytes = plan, self.moved_bytes + moved
        return True

    def tasks(self, active: Iterable[int]) -> list[tuple[str | None, list[int]]]:
        """The workers with blocks this step (``active``: blocks that still have a mini-batch), their blocks."""
        live = set(active)
        out = []
        for worker, blocks in self.plan.items():
            mine = [b for b in blocks if b in live]
            if mine:
                out.append((worker, mine))
        return out
