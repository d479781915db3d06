"""The median sketch's bins from one definition (``_sketch._bin``): each value inside its bin's bounds, flagged off
its edge exactly when it is not the edge, at every resolution; and the sketches of columns with ties, zeros (both
signs), integers, tiny and heavy-tailed values and NaN pinned to what the code gave before the block loop used it."""

from __future__ import annotations

import hashlib

import numpy as np

from scaleml_dask.preprocessing._sketch import QuantileSketch, _bin_bounds, _bounds_of, _keys


def _columns() -> list[np.ndarray]:
    rng = np.random.default_rng(2026)
    n = 20_011
    return [rng.integers(-50, 50, n).astype(float), np.where(rng.random(n) < 0.5, 0.0, rng.standard_normal(n)),
            np.round(rng.standard_normal(n), 2), rng.lognormal(-25, 2, n) * rng.choice([-1, 1], n),
            np.where(rng.random(n) < 0.1, np.nan, rng.standard_cauchy(n)), rng.choice([0.0, -0.0, 2.0**-20, 1.5], n)]


def test_sketch_outputs_are_those_of_the_code_before_one_bin_definition():
    h = hashlib.sha256()
    for x in _columns():
        sketch, m2 = QuantileSketch.with_moments(x, float(np.nanmean(x)), float(np.nanmin(x)), float(np.nanmax(x)))
        for a in (np.array([sketch.r]), sketch.keys, sketch.counts, sketch.on_edge, np.array([m2])):
            h.update(np.ascontiguousarray(a).tobytes())
        for r in (52, 20, 7, 0):
            h.update(_keys(x[~np.isnan(x)][:500], r).tobytes())
        h.update(np.array([QuantileSketch.of(x).median(), *QuantileSketch.of(x).median_error()]).tobytes())
    assert h.hexdigest() == "66022c5faddb77f40f25350e14c8dc9498228fe47d2a495fb1967650ec6ca5cf"


def test_every_value_lies_in_its_bin_and_is_flagged_off_its_edge_exactly_when_it_is():
    for x in _columns():
        v = x[~np.isnan(x)][:3000]
        for r in (52, 13, 4):
            edge, least, greatest = _bounds_of(_keys(v, r), r).T
            assert np.all((least <= v) & (v <= greatest))
        sketch, _ = QuantileSketch.with_moments(v, float(v.mean()), float(v.min()), float(v.max()))
        on_edge: dict[int, bool] = {}  # at the resolution the histogram chose: each bin's flag from its edge
        for k, value in zip(_keys(v, sketch.r).tolist(), v.tolist()):
            on_edge[k] = on_edge.get(k, True) and value == _bin_bounds(k, sketch.r)[0]
        assert sketch.keys.tolist() == sorted(on_edge)
        assert sketch.on_edge.tolist() == [on_edge[k] for k in sorted(on_edge)]
