"""Distributed mini-batch SGD: ``SGDRegressor`` and ``SGDClassifier`` in three modes.

- ``mode="sync"``: the blocks are persisted on the workers (data stay put). Each step is one task per
  worker holding blocks (pinned to it, but allowed elsewhere so that the blocks of a lost worker, once
  recomputed, still take part): the weights go out once per worker, and one reply brings back the mean
  gradient of one seeded mini-batch of each of its blocks. The client sums them row-weighted in block
  order, so the result does not depend on which worker holds which block, and updates the weights. The
  grouping comes from the scheduler (``who_has``) and is refreshed when a task ran on another worker.
  Nothing but the training tasks reads a split block (its held-out rows come from a task on the raw
  block), so no block is copied to a second worker and the grouping, hence the traffic, is exact.
- ``mode="local"``: federated averaging. Each round every partition runs ``local_epochs`` of plain SGD
  over its block (``map_blocks``) starting from the current weights; the client averages the returned
  weights (row-weighted). Few rounds, little traffic. The data are streamed: a round is one pass that
  reads every block once and trains on it in the same task (the held-out rows are taken in the first
  round's tasks too), so data larger than the cluster's memory work; to keep the blocks in memory across
  rounds, pass ``X.persist()``, ``y.persist()``.
- ``mode="async"``: a parameter server (a ``distributed`` Actor) holds the weights and the optimizer.
  Each partition's task pulls the weights, computes the gradients of ``push_every`` mini-batches of its
  block, and pushes their mean; the server applies pushes as they arrive and rejects those more than
  ``max_staleness`` versions behind (the worker then pulls and retries once). Staleness is reported in
  ``staleness_``.

What workers send back can be compressed (``compress="float16"``, or ``"topk"`` sparsification keeping
``topk_fraction`` of the entries), both with error feedback: each partition keeps, in its worker's
memory, what its messages failed to carry and adds it to the next one (sync mode compresses per block, not
per worker, so the error feedback does not depend on the grouping either).

Every mode records ``loss_curve_``, rows of (wall time s, samples seen, bytes exchanged, held-out loss).
Bytes are those of the arrays the protocol sends: weights out (sync: once per task, i.e. per worker and
step), gradients (sync: one per block, several in one reply) / weight deltas / pushes back (their
compressed size); the one-off collection of the held-out rows is not counted. The held-out loss
is the mean training loss (no penalty) on a seeded ``validation_fraction`` of every block (one contiguous
range of rows), which is then not trained on, or on ``validation_data=(X_val, y_val)`` passed to ``fit``.

Mini-batches are seeded and contiguous: each epoch draws a seed from a generator seeded by
``random_state``; by (epoch seed, block index) the training rows of every block are rotated and cut into
contiguous mini-batches, visited in a shuffled order (see ``sgd._kernels``), so every mini-batch is a
sequential read. The held-out rows of a block are one seeded contiguous range. Same seed and chunking give
the same weights in ``sync`` and ``local`` mode, on any number of workers. With ``checkpoint_dir``, weights, optimizer
state, RNG state and progress are written atomically after every epoch (round); ``fit`` with the same
directory and configuration resumes from the last one (a different configuration raises
``CheckpointMismatchError``).

Async mode survives losing its parameter server (the worker holding the Actor leaves): every wait for the
server is bounded, and the epoch then restarts from the last checkpoint with ``checkpoint_dir`` (or from
the start of the fit if none was written yet), else the fit fails with ``ParameterServerLostError`` saying
what happened.

The package: ``_kernels`` (compiled block kernels on numpy: gradients, penalties, step rules, mini-batch
plan, compression), ``_blocks`` (worker side: a block's split, its tasks in each mode, error-feedback memory,
the parameter server), ``_trainer`` (client side: the loops of the three modes, driven by a frozen config),
``estimators`` (``SGDRegressor``, ``SGDClassifier``).
"""

from ._trainer import DivergenceError, DivergenceWarning, ParameterServerLostError
from .estimators import SGDClassifier, SGDRegressor

__all__ = ["DivergenceError", "DivergenceWarning", "ParameterServerLostError", "SGDClassifier", "SGDRegressor"]


