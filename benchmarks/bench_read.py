"""The read path: how fast can a chunk go from a zarr store into numpy? This project's reader beside its peers.

Part 1, one thread, one 250,000 x 32 float64 chunk (64 MB) read and summed (the sum touches every byte, which
is when a memory-mapped chunk is really read), page cache warm, codecs none / zstd / blosc-lz4:
zarr-python (its default codec pipeline), zarr-python with the `zarrs` (Rust) codec pipeline, tensorstore,
a raw ``readinto`` of the chunk file into a preallocated buffer (+ numcodecs decoding into it: the floor), and
``scaleml_dask.io.read`` (size check; checksum as it does by default, and with verify=True). Also the cost
of the chunk checksum candidates (crc32c, google-crc32c, xxh3-64) on the same 64 MB.

Part 2, a 2-worker x 1-thread LocalCluster summing every chunk of a 5,000,000 x 32 float64 store (made once
under benchmarks/data/, codecs none and zstd): the same contenders, one task per chunk.

    python benchmarks/bench_read.py [--quick] [--repeat 3] [--no-cluster]
"""

from __future__ import annotations

import argparse
import os
import time
from functools import cache
from pathlib import Path

import numpy as np
import zarr
from _floor import chunk_into_numpy, drop_if_without_manifest

from scaleml_dask.io import read
from scaleml_dask.io.store import DatasetWriter

DATA = Path(__file__).resolve().parent / "data"
CODECS = ("none", "zstd", "blosc-lz4")
CONTENDERS = ("zarr", "zarrs", "tensorstore", "raw readinto (+ decode)", "scaleml reader",
              "scaleml reader, verify=True")


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _chunk_file(path: Path) -> Path:
    return next(p for p in (path / "X" / "c").rglob("*") if p.is_file())


@cache
def _opened(kind: str, path: str):
    """The array (or reading function) of one contender, opened once per process."""
    if kind == "zarr":
        with zarr.config.set({"threading.max_workers": 1}):
            return zarr.open_group(path, mode="r")["X"]
    if kind == "zarrs":
        import zarrs  # noqa: F401  (registers the pipeline)

        with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline", "threading.max_workers": 1}):
            return zarr.open_group(path, mode="r")["X"]
    if kind == "tensorstore":
        import tensorstore as ts

        ctx = ts.Context({"data_copy_concurrency": {"limit": 1}, "file_io_concurrency": {"limit": 1}})
        return ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": os.path.join(path, "X")}},
                       context=ctx, read=True).result()
    if kind.startswith("scaleml reader"):
        return read.chunk_source(zarr.open_group(path, mode="r")["X"], verify=kind.endswith("True") or None)
    if kind.startswith("raw"):
        return read.chunk_source(zarr.open_group(path, mode="r")["X"])
    raise ValueError(kind)


def read_chunk(kind: str, path: str, i: int) -> np.ndarray:
    """Chunk ``i`` (of 2-d row chunks) of the store's ``X`` as numpy, the way contender ``kind`` reads it."""
    a = _opened(kind, path)
    if kind in ("zarr", "zarrs"):
        rows = a.chunks[0]
        with zarr.config.set({"threading.max_workers": 1}):
            return a[i * rows:(i + 1) * rows]
    if kind == "tensorstore":
        rows = a.chunk_layout.read_chunk.shape[0]
        return a[i * rows:(i + 1) * rows].read().result()
    if kind.startswith("scaleml"):
        return a.read_chunk((i, 0))
    return chunk_into_numpy(a, i)


def _make_store(path: Path, codec: str, n: int, rows: int, client=None) -> Path:
    drop_if_without_manifest(path)
    if not path.exists():
        from scaleml_dask.io.synthetic import make_regression

        make_regression(path, n, 32, chunk_rows=rows, codec=codec, client=client)
    return path


def single_chunk(rows: int, repeat: int) -> None:
    X = np.random.default_rng(0).standard_normal((rows, 32))
    print(f"\nOne chunk of {rows:,} x 32 float64 ({X.nbytes / 1e6:.0f} MB), one thread, page cache warm: read it "
          f"and sum it (the sum touches every byte: a memory map is only read then), best of {repeat} "
          f"(ms; x raw readinto)")
    table = {}
    for codec in CODECS:
        path = DATA / f"read-chunk-{rows}-{codec}.zarr"
        if not path.exists():  # written as this project writes stores: with the manifest
            with DatasetWriter(path, 32, chunk_rows=rows, codec=codec) as w:
                w.append(X)
        for kind in CONTENDERS:
            got = read_chunk(kind, str(path), 0)
            assert np.array_equal(got, X), (kind, codec)
        for kind in CONTENDERS:  # round robin would mix page-cache states little here: best of `repeat` each
            table[kind, codec] = _best(lambda k=kind, p=str(path): read_chunk(k, p, 0).sum(), repeat)
    floor = {c: table["raw readinto (+ decode)", c] for c in CODECS}
    print(f"{'reader':<30}" + "".join(f"{c:>20}" for c in CODECS))
    for kind in CONTENDERS:
        print(f"{kind:<30}" + "".join(f"{table[kind, c] * 1e3:11.1f} ({table[kind, c] / floor[c]:5.2f})"
                                      for c in CODECS))
    checksums(X.tobytes(), repeat)


def checksums(data: bytes, repeat: int) -> None:
    import crc32c
    import google_crc32c
    import xxhash

    cands = {"crc32c (crc32c)": lambda: crc32c.crc32c(data), "crc32c (google-crc32c)":
             lambda: google_crc32c.value(data), "xxh3-64 (xxhash)": lambda: xxhash.xxh3_64_intdigest(data)}
    print(f"\nChecksum of the same {len(data) / 1e6:.0f} MB, best of {repeat}")
    times = {k: _best(f, repeat) for k, f in cands.items()}
    for k, t in times.items():
        print(f"{k:<30}{t * 1e3:8.2f} ms {len(data) / t / 1e9:6.1f} GB/s")


def _sum_chunk(kind: str, path: str, i: int) -> float:
    return float(read_chunk(kind, path, i).sum())


def cluster_scan(n: int, rows: int, repeat: int) -> None:
    import dask
    from distributed import Client, LocalCluster

    import scaleml_dask as sm

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        print(f"\nCluster scan: sum of every chunk of a {n:,} x 32 float64 store ({rows:,}-row chunks), "
              f"2 workers x 1 thread, best of {repeat} round robin (s; x raw)")
        kinds = ("zarr (xr.open_zarr)", "zarrs", "tensorstore", "raw readinto (+ decode)",
                 "scaleml open_dataset")
        table: dict = {}
        for codec in ("none", "zstd"):
            path = str(_make_store(DATA / f"read-{n}-{codec}.zarr", codec, n, rows, client))
            n_chunks = -(-n // rows)

            def run(kind, path=path, n_chunks=n_chunks):
                if kind == "zarr (xr.open_zarr)":
                    import xarray as xr

                    return float(xr.open_zarr(path, consolidated=False, chunks={})["X"].data.sum().compute())
                if kind == "scaleml open_dataset":
                    return float(sm.open_dataset(path)["X"].data.sum().compute())
                k = {"zarrs": "zarrs", "tensorstore": "tensorstore"}.get(kind, kind)
                parts = [dask.delayed(_sum_chunk, pure=False)(k, path, i) for i in range(n_chunks)]
                return float(sum(dask.compute(*parts)))

            ref = run("raw readinto (+ decode)")
            for kind in kinds:
                assert abs(run(kind) - ref) <= 1e-6 * abs(ref) + 1e-3, kind  # also warms caches
            for _ in range(repeat):
                for kind in kinds:
                    t0 = time.perf_counter()
                    run(kind)
                    dt = time.perf_counter() - t0
                    table[kind, codec] = min(dt, table.get((kind, codec), float("inf")))
        print(f"{'reader':<30}{'none':>18}{'zstd':>18}")
        for kind in kinds:
            print(f"{kind:<30}" + "".join(
                f"{table[kind, c]:10.2f} ({table[kind, c] / table['raw readinto (+ decode)', c]:5.2f})"
                for c in ("none", "zstd")))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50,000-row chunk, 500,000-row store")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-cluster", action="store_true", help="only the one-chunk table")
    args = ap.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    rows = 50_000 if args.quick else 250_000
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        single_chunk(rows, args.repeat)
    if not args.no_cluster:
        cluster_scan(500_000 if args.quick else 5_000_000, rows, args.repeat)


if __name__ == "__main__":
    main()
