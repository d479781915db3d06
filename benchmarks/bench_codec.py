"""Which codec for the project's zarr stores? Decode speed against size on one 250,000 x 32 float64 chunk.

Two contents: what the generators write (Gaussian float64: incompressible noise in the low mantissa bits),
and the same values rounded to 2 decimals (as data ingested from CSV often are: compressible). The question
is what each codec costs to decode, because every pass over a store decodes every chunk, and for the
one-pass estimators decoding is the largest part of the time.

    python benchmarks/bench_codec.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import zarr

from scaleml_dask.io.store import CODECS, compressors
from scaleml_dask.io.synthetic import regression_chunk

DATA = Path(__file__).resolve().parent / "data" / "codec"


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 50,000-row chunk")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    rows = 50_000 if args.quick else 250_000
    X, _ = regression_chunk(0, 0, rows, coef=np.ones(32), intercept=0.0, noise=1.0)
    DATA.mkdir(parents=True, exist_ok=True)
    results = []
    for kind, data in (("gaussian", X), ("rounded to 0.01", np.round(X, 2))):
        results += _table(kind, data, rows, args.repeat)
    return results


def _table(kind: str, X: np.ndarray, rows: int, repeat: int) -> list[dict]:
    results = []
    for codec in CODECS:
        path = DATA / f"{codec}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        z = zarr.create_array(str(path), shape=X.shape, chunks=X.shape, dtype=X.dtype,
                              compressors=compressors(codec), zarr_format=3)
        encode = _best(lambda z=z: z.__setitem__(slice(None), X), 3)
        z = zarr.open_array(str(path), mode="r")
        decode = _best(lambda z=z: z[:], repeat)
        assert np.array_equal(z[:], X)
        size = _dir_size(path)
        results.append({"data": kind, "codec": codec, "MB": size / 1e6, "ratio": X.nbytes / size, "encode s": encode,
                        "decode s": decode, "decode GB/s": X.nbytes / decode / 1e9})
    fastest = min(r["decode s"] for r in results)
    print(f"\n{kind}: one chunk of {rows:,} x 32 float64 ({X.nbytes / 1e6:.0f} MB), best of {repeat} reads")
    print(f"{'codec':<14}{'MB':>8}{'ratio':>8}{'encode s':>10}{'decode s':>10}{'GB/s':>8}{'x fastest':>11}")
    for r in results:
        print(f"{r['codec']:<14}{r['MB']:8.1f}{r['ratio']:8.2f}{r['encode s']:10.3f}{r['decode s']:10.3f}"
              f"{r['decode GB/s']:8.2f}{r['decode s'] / fastest:11.2f}")
    return results


if __name__ == "__main__":
    main()
