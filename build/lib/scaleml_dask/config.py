"""Process settings the library applies where they matter, never at import.

``use_passive_openmp()`` is called by the entry points of numba's parallel kernels (``TSNE.fit``) before the
first parallel region starts, which is when GNU OpenMP reads its environment. OpenMP threads otherwise spin
while waiting: on a machine whose cores are shared with dask workers that made 2-thread kernels slower than
1 thread. Passive waiting after a short spin (10,000 turns) avoids it and spares the wake-up between
back-to-back parallel regions (benchmarks/README.md, "t-SNE"). Values the user set in the environment are
kept.
"""

from __future__ import annotations

import os

OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}


def use_passive_openmp() -> None:
    """Set ``OPENMP_DEFAULTS`` in this process's environment unless already set (effective until the OpenMP
    runtime has started, i.e. before the first parallel numba kernel of the process)."""
    for key, value in OPENMP_DEFAULTS.items():
        os.environ.setdefault(key, value)
