"""Bounded-memory t-SNE: ``TSNE`` and its stages (neighbors, affinity, initialization, optimize).

>>> from scaleml_dask.tsne import TSNE
>>> TSNE(perplexity=5).get_params()["perplexity"]
5
"""

from ._tsne import TSNE

__all__ = ["TSNE"]
