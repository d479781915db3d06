"""Sync SGD's blocks split over the worker threads by measured throughput, so a step stops waiting on the slowest.

A sync step sends one task to every worker thread ("slot") that holds blocks and waits for all of them, so the
step takes as long as the slowest slot. Each slot ``s`` is modelled by what it was measured to cost: a fixed
time per task ``a_s`` (the round trip to it and the task's overhead: latency, a throttled CPU's wait for its
quota) and a time per block ``c_s`` (one mini-batch gradient). A step of ``n_s`` blocks per slot then takes
``max_s (a_s + n_s c_s)`` over the slots with blocks. A slot whose fixed time is an outlier — more than
``OUTLIER`` times the lower median of all slots' and at least ``OUTLIER_FLOOR_S`` above it — is a straggler
and gets no blocks: the step no longer waits for it at all. Every other slot keeps at least one block (so that
noise in the timings never concentrates the work on fewer workers), and the remaining blocks go, one at a time,
to the slot whose step would end earliest with it, which minimises the maximum (blocks cost the same everywhere
on a slot). The estimates are medians of each slot's last ``WINDOW`` tasks, robust to a single slow step.

Moving a block to another worker copies it there (dask fetches the persisted block for the task), once; it is
done only when the step time it saves over the steps left in the fit outweighs the copy (at an assumed
``MOVE_BYTES_PER_S``), and when it saves at least ``MIN_GAIN`` of the step. The gradient of a step is the sum
of the blocks' gradients in block order wherever they were computed, so the weights are bitwise those of the
unbalanced fit: balancing changes the time of a step, never its result.

>>> plan = assign_blocks({("a", 0): (0.01, 0.002), ("b", 0): (0.01, 0.008)}, 10)
>>> plan[("a", 0)], plan[("b", 0)]
(8, 2)
"""

from __future__ import annotations

import collections
import heapq
import math
import statistics
from collections.abc import Iterable

Slot = tuple[str, int]  # (worker address, thread index)

#: Tasks per slot whose median gives its estimates of ``a_s`` and ``c_s``.
WINDOW = 9
#: A slot whose fixed time exceeds this many times the lower median (and ``OUTLIER_FLOOR_S`` more) gets no blocks.
OUTLIER = 2.0
OUTLIER_FLOOR_S = 0.002
#: A new plan is adopted only if it shortens the predicted step by at least this fraction.
MIN_GAIN = 0.15
#: The rate at which moving a block is assumed to cost (bytes/s) in the move-or-not decision.
MOVE_BYTES_PER_S = 100e6
#: False: the earlier policy — one task per worker holding blocks, blocks never moved (benchmarks compare).
ENABLED = True


def assign_blocks(costs: dict[Slot, tuple[float, float]], n_blocks: int) -> dict[Slot, int]:
    """How many blocks each slot gets: ``costs[slot] = (a, c)``; none for a straggler, at least one for every
    other slot (while blocks last), the rest minimising ``max(a + n c)`` (greedy, one block at a time to the
    slot that would finish it earliest: optimal for equal blocks). Ties go to the slot listed first."""
    ref = statistics.median_low(a for a, _ in costs.values()) if costs else 0.0
    kept = [s for s, (a, _) in costs.items() if not (a > OUTLIER * ref and a - ref > OUTLIER_FLOOR_S)]
    counts = dict.fromkeys(costs, 0)
    for s in kept[:n_blocks]:
        counts[s] = 1
    order = {s: i for i, s in enumerate(costs)}
    heap = [(costs[s][0] + (counts[s] + 1) * costs[s][1], order[s], s) for s in kept]
    heapq.heapify(heap)
    for _ in range(n_blocks - sum(counts.values())):
        _, i, s = heapq.heappop(heap)
        counts[s] += 1
        a, c = costs[s]
        heapq.heappush(heap, (a + (counts[s] + 1) * c, i, s))
    return counts


def step_time(costs: dict[Slot, tuple[float, float]], counts: dict[Slot, int]) -> float:
    """The predicted time of a step: the slowest slot that has blocks."""
    return max((costs[s][0] + n * costs[s][1] for s, n in counts.items() if n), default=0.0)


def place(counts: dict[Slot, int], current: dict[Slot, list[int]], holders: dict[int, set[str]]
          ) -> dict[Slot, list[int]]:
    """Blocks for each slot, moving as few as possible: a worker keeps blocks it holds (``holders``: block ->
    workers holding a copy) up to its slots' total; the rest go where there is room, first to a worker that
    holds a copy already. Within a worker, blocks are dealt to its slots in block order."""
    quota: dict[str, int] = {}
    for (w, _), n in counts.items():
        quota[w] = quota.get(w, 0) + n
    blocks = sorted(b for bs in current.values() for b in bs)
    mine: dict[str, list[int]] = {w: [] for w in quota}
    loose = []
    for b in blocks:
        home = next((w for w in sorted(holders.get(b, ())) if w in quota and len(mine[w]) < quota[w]), None)
        (mine[home].append(b) if home is not None else loose.append(b))
    for b in loose:
        room = [w for w in quota if len(mine[w]) < quota[w]]
        w = next((w for w in room if w in holders.get(b, ())), room[0])
        mine[w].append(b)
    plan: dict[Slot, list[int]] = {}
    for w, bs in mine.items():
        slots = [s for s in counts if s[0] == w]
        it = iter(sorted(bs))
        for s in slots:
            plan[s] = [next(it) for _ in range(counts[s])]
    return plan


class Balancer:
    """Running estimates of every slot's ``(a, c)`` and the plan of blocks per slot (module docstring)."""

    def __init__(self, nthreads: dict[str, int], holders: dict[int, set[str]], block_bytes: list[int]) -> None:
        self.block_bytes = block_bytes
        self.costs: dict[Slot, tuple[float, float]] = {}
        slots = [(w, j) for w in sorted(nthreads) for j in range(max(1, nthreads[w]) if ENABLED else 1)]
        by_worker: dict[str, list[int]] = {}
        for b in sorted(holders):
            by_worker.setdefault(min(holders[b], default=None), []).append(b)
        self.plan: dict[Slot, list[int]] = {s: [] for s in slots}
        for w, bs in by_worker.items():
            mine = [s for s in slots if s[0] == w] or [(w, 0)]
            for i, b in enumerate(bs):
                self.plan.setdefault(mine[i % len(mine)], []).append(b)
        self.moved_bytes = 0
        self._seen: dict[Slot, collections.deque] = {}

    def observe(self, slot: Slot, round_trip: float, compute: float, blocks: int) -> None:
        """One task's measurement: its round trip seen by the client, its compute time, its blocks."""
        seen = self._seen.setdefault(slot, collections.deque(maxlen=WINDOW))
        seen.append((max(round_trip - compute, 0.0), compute / max(blocks, 1)))
        self.costs[slot] = (statistics.median(a for a, _ in seen), statistics.median(c for _, c in seen))

    def rebalance(self, steps_left: int, holders: dict[int, set[str]]) -> bool:
        """Adopt a better plan if it pays for its copies over ``steps_left`` steps; True if the plan changed."""
        if not ENABLED:
            return False
        measured = {s: self.costs[s] for s in self.plan if s in self.costs}
        if any(bs and len(self._seen.get(s, ())) < WINDOW for s, bs in self.plan.items()) or \
                not all(math.isfinite(a + c) for a, c in measured.values()):
            return False  # wait until every slot with blocks has been measured
        n_blocks = sum(len(b) for b in self.plan.values())
        counts = assign_blocks(measured, n_blocks)  # a slot never measured (never had blocks) gets none
        now = step_time(self.costs, {s: len(b) for s, b in self.plan.items()})
        new = step_time(self.costs, counts)
        if new > (1 - MIN_GAIN) * now:
            return False
        plan = {**dict.fromkeys(self.plan, []), **place(counts, self.plan, holders)}
        moved = sum(self.block_bytes[b] for s, bs in plan.items() for b in bs if s[0] not in holders.get(b, ()))
        if (now - new) * steps_left < moved / MOVE_BYTES_PER_S:
            return False
        self.plan, self.moved_bytes = plan, self.moved_bytes + moved
        return True

    def tasks(self, active: Iterable[int]) -> list[tuple[Slot, list[int]]]:
        """The slots with blocks this step (``active``: blocks that still have a mini-batch) and their blocks."""
        live = set(active)
        out = []
        for slot, blocks in self.plan.items():
            mine = [b for b in blocks if b in live]
            if mine:
                out.append((slot, mine))
        return out
