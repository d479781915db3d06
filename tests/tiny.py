"""Small data shared by the tests that run whole workflows or notebooks."""

#: The small demo datasets (what `--quick` and the notebooks use) overridden by name with tiny sizes (the
#: user's catalog layered over the built-in one).
TINY_CATALOG = """datasets:
  demo-regression-small:
    path: r.zarr
    generator: {name: regression, n_samples: 4000, n_features: 5, chunk_rows: 1000, seed: 0}
  demo-logistic-small:
    path: l.zarr
    generator: {name: logistic, n_samples: 60000, n_features: 6, chunk_rows: 15000, seed: 1}
  demo-mixture-small:
    path: m.zarr
    generator: {name: mixture, n_samples: 1500, n_features: 12, n_clusters: 3, chunk_rows: 500, seed: 2}
  demo-drift-small:
    path: d.zarr
    generator: {name: drift, n_samples: 20000, n_features: 4, change_at: 10000, chunk_rows: 5000, seed: 3}
  demo-text-small:
    path: t
    generator: {name: text, n_docs: 6000, chunk_rows: 2000, n_classes: 4, vocabulary: 3000, topic_words: 50,
                topic_rate: 0.1, seed: 4}
  demo-table-small:
    path: t.zarr
    generator: {name: table, n_samples: 6000, n_numeric: 3, levels: [4, 30], chunk_rows: 2000, seed: 4}
"""
