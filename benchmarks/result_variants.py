"""W2 (an array in, an array out) as users write the worker function, against its floor.

    python benchmarks/result_variants.py            # 128 and 512 MB, 12 calls each
    python benchmarks/result_variants.py --quick    # 128 MB, 6 calls

Three ways to write the same task, each on a fresh SharedArrayExecutor (2 workers,
forkserver), and the same task on ProcessPoolExecutor:

- ``a * 2``: NumPy allocates the result (W2 as users write it);
- ``zc.empty_like(a)`` then ``np.multiply(a, 2, out=out)``: the README's advice;
- ``np.multiply(a, 2, out=a)``, returning ``a``: no new memory at all, a proxy for the
  floor (the result is the argument's own copy, which goes back by reference).

Median milliseconds per call after a warm-up call (steady state, DESIGN.md fact 7), the
ratio to the in-place floor, the worker's own time in the function (the out-of-place
multiply streams twice the memory of the in-place one), and memory: the peak rise of
the process tree's PSS (/dev/shm included) during the calls, and what is still held
once the last result is dropped (the warm segments the executor keeps for reuse),
both counted from before the executor started.
Targets (issue #14): empty_like within 1.2x of in-place, ``a * 2`` within 1.5x.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np
from _memory import TreeMemorySampler

import zerocopy_executor as zc

try:
    from zerocopy_executor._allocator import AVAILABLE as ALLOCATOR
except ImportError:  # an older version of the library, measured for comparison
    ALLOCATOR = False

MB = 1 << 20


def times_two(a: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = a * 2
    return out, time.perf_counter() - start


def into_empty_like(a: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = zc.empty_like(a)
    np.multiply(a, 2, out=out)
    return out, time.perf_counter() - start


def in_place(a: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    np.multiply(a, 2, out=a)
    return a, time.perf_counter() - start


VARIANTS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, float]]] = {
    "a * 2": times_two,
    "empty_like + multiply(out=)": into_empty_like,
    "in place (floor)": in_place,
}


def measure(
    make: Callable[[], Executor], fn: Callable[..., Any], a: np.ndarray, calls: int
) -> tuple[float, float, int, int]:
    """Median ms per call and in the function; peak memory rise, and what is held after, in bytes.

    Memory is counted from before the executor starts (its workers' imports included),
    so the peak includes the segments it makes; "held" is what the open executor still
    holds once every result is dropped (its warm segments, kept for reuse).
    """
    gc.collect()
    sampler = TreeMemorySampler()
    level = sampler.sample()["private_shm"]
    try:
        with make() as executor:
            result, _ = executor.submit(fn, a).result()  # warm-up: workers up, sizes seen
            assert float(result.flat[-1]) == 2.0 * float(a.flat[-1])
            del result
            walls, insides = [], []
            for _ in range(calls):
                start = time.perf_counter()
                result, inside = executor.submit(fn, a).result()
                walls.append(time.perf_counter() - start)
                insides.append(inside)
                del result
            gc.collect()
            time.sleep(0.2)  # releases happen in a background thread
            peak = sampler.peak()
            held = sampler.sample()["private_shm"] - level
    finally:
        sampler.close()
    return statistics.median(walls) * 1e3, statistics.median(insides) * 1e3, peak.rise, max(held, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="128 MB only, 6 calls")
    parser.add_argument("--sizes", default=None, help="MB, comma-separated (default 128,512)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("128" if args.quick else "128,512")).split(",")]
    calls = 6 if args.quick else 12
    context = multiprocessing.get_context("forkserver")
    systems: dict[str, Callable[[], Executor]] = {
        "SharedArrayExecutor": lambda: zc.SharedArrayExecutor(2, mp_context=context),
        "ProcessPoolExecutor": lambda: ProcessPoolExecutor(2, mp_context=context),
    }
    print(
        f"W2 variants, 2 workers, forkserver, median of {calls} calls after a warm-up; Python "
        f"{sys.version.split()[0]}, NumPy {np.__version__}; compiled allocator: "
        f"{'yes' if ALLOCATOR else 'no'}\n"
    )
    columns = ("size", "system", "function", "ms per call", "vs floor", "ms in function", "peak rise MiB")
    print("| " + " | ".join((*columns, "held after MiB")) + " |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        a = np.ones(size * MB // 8)
        rows = []
        for name, fn in VARIANTS.items():
            rows.append(("SharedArrayExecutor", name, *measure(systems["SharedArrayExecutor"], fn, a, calls)))
        rows.append(
            ("ProcessPoolExecutor", "a * 2", *measure(systems["ProcessPoolExecutor"], times_two, a, calls))
        )
        floor = rows[2][2]
        for system, name, wall, inside, peak, held in rows:
            print(
                f"| {size} MB | {system} | `{name}` | {wall:.1f} | {wall / floor:.2f}x | {inside:.1f} | "
                f"{peak / MB:,.0f} | {held / MB:,.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
