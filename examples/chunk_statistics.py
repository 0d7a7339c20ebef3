"""Mean, standard deviation and maximum of two million numbers, computed by chunk in four workers.

The numbers are generated straight into one shared block (``zerocopy_executor.empty``);
each worker receives a view of its chunk (a descriptor, not the bytes) and returns a
small dict of statistics, which the parent combines into the statistics of the whole.

For comparison, ProcessPoolExecutor does the same job the ordinary way: every chunk is
pickled to a worker and the small dicts come back.

Run:  python examples/chunk_statistics.py [--start-method {fork,forkserver,spawn}] [--quick]
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np

# Plumbing shared by the examples (command line, timing, report): examples/_demo.py
from _demo import best_time, check_nothing_copied, parse_args, print_timings, start_workers

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


def check(name, got, data):
    expected = {"n": data.size, "mean": data.mean(), "std": data.std(), "max": data.max()}
    if got["n"] != expected["n"] or got["max"] != expected["max"]:
        raise SystemExit(f"{name}: got {got}, numpy says {expected}")
    for key in ("mean", "std"):
        if not math.isclose(got[key], expected[key], rel_tol=1e-9, abs_tol=1e-12):
            raise SystemExit(f"{name}: {key} is {got[key]!r}, numpy says {expected[key]!r}")


def main():
    args = parse_args(__doc__)
    context = multiprocessing.get_context(args.start_method)
    repeats = 1 if args.quick else 3
    data = zc.empty(N)
    np.random.default_rng(0).standard_normal(out=data)  # generated in place: no copy
    data *= 2.0
    data += 5.0
    print(f"chunk_statistics: {N:,} float64 ({data.nbytes / 1e6:.0f} MB), ", end="")
    print(f"{WORKERS} workers, {args.start_method}")

    with zc.SharedArrayExecutor(WORKERS, mp_context=context) as executor:
        start_workers(executor, WORKERS)
        shared_result, best_shared = best_time(
            repeats, lambda: combine(list(executor.map(chunk_statistics, np.array_split(data, WORKERS))))
        )
    check("SharedArrayExecutor", shared_result, data)

    # A shared array is a plain ndarray: ProcessPoolExecutor simply pickles its chunks.
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        start_workers(pool, WORKERS)
        pickled_result, best_pickled = best_time(
            repeats, lambda: combine(list(pool.map(chunk_statistics, np.array_split(data, WORKERS))))
        )
    check("ProcessPoolExecutor", pickled_result, data)

    print(
        f"  mean {shared_result['mean']:.6f}  std {shared_result['std']:.6f}  max {shared_result['max']:.6f}"
    )
    print_timings(
        repeats,
        ("SharedArrayExecutor, chunks by reference  ", best_shared),
        ("ProcessPoolExecutor, chunks pickled       ", best_pickled),
    )
    check_nothing_copied(executor)
    print("OK: mean, std and max match numpy; 0 bytes copied")


if __name__ == "__main__":
    main()
