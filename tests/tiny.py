"""Small data shared by the tests that run whole workflows or notebooks."""

#: The demo datasets overridden by name with small sizes (the user's catalog layered over the built-in one).
TINY_CATALOG = """datasets:
  demo-regression:
    path: r.zarr
    generator: {name: regression, n_samples: 4000, n_features: 5, chunk_rows: 1000, seed: 0}
  demo-logistic:
    path: l.zarr
    generator: {name: logistic, n_samples: 60000, n_features: 6, chunk_rows: 15000, seed: 1}
  demo-mixture:
    path: m.zarr
    generator: {name: mixture, n_samples: 1500, n_features: 12, n_clusters: 3, chunk_rows: 500, seed: 2}
  demo-drift:
    path: d.zarr
    generator: {name: drift, n_samples: 20000, n_features: 4, change_at: 10000, chunk_rows: 5000, seed: 3}
"""
