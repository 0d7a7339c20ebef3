"""Mean, standard deviation and maximum of two million numbers, computed by chunk in four workers.

The numbers are generated straight into one shared block (``zerocopy_executor.empty``);
each worker receives a view of its chunk (a descriptor, not the bytes) and returns a
small dict of statistics, which the parent combines into the statistics of the whole.

For comparison, ProcessPoolExecutor does the same job the ordinary way: every chunk is
pickled to a worker and the small dicts come back.

Run:  python examples/chunk_statistics.py [--start-method {fork,forkserver,spawn}] [--quick]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import zerocopy_executor as zc

N = 2_000_000
WORKERS = 4


def chunk_statistics(chunk):
    """Return the count, mean, standard deviation and maximum of a chunk."""
    return {
        "n": chunk.size,
        "mean": float(chunk.mean()),
        "std": float(chunk.std()),
        "max": float(chunk.max()),
    }


def combine(parts):
    """Combine per-chunk statistics into those of the whole (pooled variance)."""
    n = sum(p["n"] for p in parts)
    mean = sum(p["n"] * p["mean"] for p in parts) / n
    variance = sum(p["n"] * (p["std"] ** 2 + (p["mean"] - mean) ** 2) for p in parts) / n
    return {"n": n, "mean": mean, "std": math.sqrt(variance), "max": max(p["max"] for p in parts)}


def ready(_):
    """Do nothing: used to start every worker before timing."""


def parse_args():
    methods = multiprocessing.get_all_start_methods()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--start-method",
        choices=methods,
        default="forkserver" if "forkserver" in methods else "spawn",
        help="how workers start (default: forkserver where available, never the platform default)",
    )
    parser.add_argument("--quick", action="store_true", help="time one run instead of the best of three")
    return parser.parse_args()


def check(name, got, data):
    expected = {"n": data.size, "mean": data.mean(), "std": data.std(), "max": data.max()}
    if got["n"] != expected["n"] or got["max"] != expected["max"]:
        raise SystemExit(f"{name}: got {got}, numpy says {expected}")
    for key in ("mean", "std"):
        if not math.isclose(got[key], expected[key], rel_tol=1e-9, abs_tol=1e-12):
            raise SystemExit(f"{name}: {key} is {got[key]!r}, numpy says {expected[key]!r}")


def main():
    args = parse_args()
    context = multiprocessing.get_context(args.start_method)
    repeats = 1 if args.quick else 3
    data = zc.empty(N)
    np.random.default_rng(0).standard_normal(out=data)  # generated in place: no copy
    data *= 2.0
    data += 5.0
    print(f"chunk_statistics: {N:,} float64 ({data.nbytes / 1e6:.0f} MB), ", end="")
    print(f"{WORKERS} workers, {args.start_method}")

    with zc.SharedArrayExecutor(WORKERS, mp_context=context) as executor:
        list(executor.map(ready, range(WORKERS)))  # start the workers outside the timing
        best_shared = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            shared_result = combine(list(executor.map(chunk_statistics, np.array_split(data, WORKERS))))
            best_shared = min(best_shared, time.perf_counter() - start)
    check("SharedArrayExecutor", shared_result, data)

    # A shared array is a plain ndarray: ProcessPoolExecutor simply pickles its chunks.
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        list(pool.map(ready, range(WORKERS)))
        best_pickled = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            pickled_result = combine(list(pool.map(chunk_statistics, np.array_split(data, WORKERS))))
            best_pickled = min(best_pickled, time.perf_counter() - start)
    check("ProcessPoolExecutor", pickled_result, data)

    print(
        f"  mean {shared_result['mean']:.6f}  std {shared_result['std']:.6f}  max {shared_result['max']:.6f}"
    )
    label = "best of 3" if repeats == 3 else "one run"
    print(f"  SharedArrayExecutor, chunks by reference  {best_shared * 1e3:8.1f} ms  ({label})")
    print(
        f"  ProcessPoolExecutor, chunks pickled       {best_pickled * 1e3:8.1f} ms"
        f"  ({best_pickled / best_shared:.1f}x the time)"
    )
    stats = executor.stats()
    print(f"  {stats}")
    if stats.bytes_copied or stats.bytes_pickled:
        raise SystemExit(f"expected no array to be copied or pickled, got {stats}")
    print("OK: mean, std and max match numpy; 0 bytes copied")


if __name__ == "__main__":
    main()
