"""W2 (an array in, an array out) as users write the worker function, against its floors.

    python benchmarks/result_variants.py            # 128 and 512 MB, 12 rounds
    python benchmarks/result_variants.py --quick    # 128 MB, 6 rounds
    python benchmarks/result_variants.py --ray      # and Ray, if it is installed

Three ways to write the same task on SharedArrayExecutor (2 workers, forkserver), and
the first on ProcessPoolExecutor:

- ``a * 2``: NumPy allocates the result (W2 as users write it);
- ``zc.empty_like(a)`` then ``np.multiply(a, 2, out=out)``: the README's advice;
- ``np.multiply(a, 2, out=a)``, returning ``a``: no new memory at all, the in-place
  floor (the result is the argument's own copy, which goes back by reference);

and a floor that does the same work as the first two: ``np.multiply(a, 2, out=out)``
into an ``out`` the parent shared once and passes to every call, returning it. Nothing
is allocated and nothing is copied back (the result is the parent's own array), so it
is the same work as ``a * 2`` with none of the cost of returning a new array.

The in-place floor does less work: one array streamed instead of two. The workload
line times both multiplies in this process, on shared arrays, with no executor; its
"bound" is how close to the in-place floor an out-of-place variant with no cost of its
own can come (the floor's time, with its multiply swapped for the out-of-place one).

Timing: every variant has its own executor, all open at once, and they are called in
turns (one call each per round, each round starting with the next variant), so that
the machine's drift hits them alike; median ms per call over the rounds after a
warm-up call (steady state: the first call pays for fresh pages), and the worker's own time in the
function. Memory, in a second pass, one executor at a time: the peak rise of the
process tree's PSS (/dev/shm included) over a few calls, and what is still held once
the last result is dropped (the warm segments the executor keeps for reuse), both
counted from before the executor started.

Reading the ratios: against the same-work floor, a variant's ratio above 1 is what
returning a new array costs. Against the in-place floor, no out-of-place variant can do
better than the workload line's bound: it streams two arrays where the floor streams one.
"""

from __future__ import annotations

import argparse
import contextlib
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
MEMORY_CALLS = 3


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


def into_shared_out(a: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    np.multiply(a, 2, out=out)
    return out, time.perf_counter() - start


FLOOR, SAME_WORK = "in place (floor)", "multiply(out=) into a shared out (same work)"
VARIANTS: dict[str, Callable[..., tuple[np.ndarray, float]]] = {
    "a * 2": times_two,
    "empty_like + multiply(out=)": into_empty_like,
    FLOOR: in_place,
    SAME_WORK: into_shared_out,
}


def call(executor: Executor, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[float, float]:
    """Seconds for one call, and in the function; the result is checked, then dropped."""
    start = time.perf_counter()
    result, inside = executor.submit(fn, *args).result()
    wall = time.perf_counter() - start
    if float(result.flat[-1]) != 2.0 * float(args[0].flat[-1]):
        msg = f"{fn.__name__} returned a wrong result"
        raise AssertionError(msg)
    return wall, inside


def time_in_turns(
    make: Callable[[], Executor], args: dict[str, tuple[Any, ...]], rounds: int
) -> dict[str, tuple[float, float]]:
    """Median ms per call and in the function, per variant, each on its own executor, called in turns."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    with contextlib.ExitStack() as stack:
        executors = {name: stack.enter_context(make()) for name in VARIANTS}
        for name, fn in VARIANTS.items():
            call(executors[name], fn, args[name])  # warm-up: workers up, sizes seen
        names = list(VARIANTS)
        for turn in range(rounds):  # each round starts with the next variant: no fixed neighbours
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                samples[name].append(call(executors[name], VARIANTS[name], args[name]))
    return {
        name: (statistics.median(w for w, _ in s) * 1e3, statistics.median(i for _, i in s) * 1e3)
        for name, s in samples.items()
    }


def measure(
    make: Callable[[], Executor], fn: Callable[..., Any], args: tuple[Any, ...], calls: int
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
            call(executor, fn, args)  # warm-up
            walls, insides = zip(*(call(executor, fn, args) for _ in range(calls)), strict=True)
            gc.collect()
            time.sleep(0.2)  # releases happen in a background thread
            peak = sampler.peak()
            held = sampler.sample()["private_shm"] - level
    finally:
        sampler.close()
    return statistics.median(walls) * 1e3, statistics.median(insides) * 1e3, peak.rise, max(held, 0)


def workload(a: np.ndarray, repeats: int = 15) -> tuple[float, float]:
    """Median ms of the out-of-place and the in-place multiply, in turns, here, on shared arrays."""
    src, dst = zc.share(a), zc.zeros_like(a)
    out_of_place, in_place_ = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        np.multiply(src, 2, out=dst)
        middle = time.perf_counter()
        np.multiply(src, 1, out=src)
        out_of_place.append(middle - start)
        in_place_.append(time.perf_counter() - middle)
    return statistics.median(out_of_place) * 1e3, statistics.median(in_place_) * 1e3


def doubled(a: np.ndarray) -> np.ndarray:
    return a * 2


def ray_per_call(a: np.ndarray, calls: int) -> float | None:
    """Median ms per call of ``a * 2`` as a Ray task, the array passed per call.

    The task returns the bare array, as users write it (returning a tuple that holds
    it, as the other variants do, took Ray 310 ms against 65 in one trial at 128 MB).
    """
    try:
        import ray  # optional: only with --ray
    except ImportError:
        return None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        task = ray.remote(doubled)
        ray.get(task.remote(a))  # warm-up
        walls = []
        for _ in range(calls):
            start = time.perf_counter()
            result = ray.get(task.remote(a))
            walls.append(time.perf_counter() - start)
            if float(result.flat[-1]) != 2.0 * float(a.flat[-1]):
                msg = "Ray returned a wrong result"
                raise AssertionError(msg)
            del result
    finally:
        ray.shutdown()
    return statistics.median(walls) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="128 MB only, 6 rounds")
    parser.add_argument("--sizes", default=None, help="MB, comma-separated (default 128,512)")
    parser.add_argument("--ray", action="store_true", help="also time a * 2 as a Ray task")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("128" if args.quick else "128,512")).split(",")]
    rounds = 6 if args.quick else 12
    context = multiprocessing.get_context("forkserver")

    def shared() -> Executor:
        return zc.SharedArrayExecutor(2, mp_context=context)

    def plain() -> Executor:
        return ProcessPoolExecutor(2, mp_context=context)

    # Ray first: once a forkserver runs in this process (ours or ProcessPoolExecutor's),
    # Ray's calls took 3 to 4 times longer here.
    ray_times = {size: ray_per_call(np.ones(size * MB // 8), rounds) for size in sizes} if args.ray else {}
    if args.ray and None in ray_times.values():
        print("(--ray: Ray is not installed; pip install ray)")
    print(
        f"W2 variants, 2 workers, forkserver, median of {rounds} rounds in turns after a warm-up; "
        f"Python {sys.version.split()[0]}, NumPy {np.__version__}; compiled allocator: "
        f"{'yes' if ALLOCATOR else 'no'}\n"
    )
    print(
        "| size | system | function | ms per call | vs in place | vs same work | ms in function "
        "| peak rise MiB | held after MiB |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        a = np.ones(size * MB // 8)
        out = zc.empty_like(a)  # the same-work floor's output: shared once, before any timing
        variant_args = {name: (a, out) if name == SAME_WORK else (a,) for name in VARIANTS}
        times = time_in_turns(shared, variant_args, rounds)
        rows = []
        for name, fn in VARIANTS.items():
            _, _, peak, held = measure(shared, fn, variant_args[name], MEMORY_CALLS)
            rows.append(("SharedArrayExecutor", name, *times[name], f"{peak / MB:,.0f}", f"{held / MB:,.0f}"))
        wall, inside, peak, held = measure(plain, times_two, (a,), rounds)
        rows.append(("ProcessPoolExecutor", "a * 2", wall, inside, f"{peak / MB:,.0f}", f"{held / MB:,.0f}"))
        if ray_times.get(size) is not None:
            rows.append(("Ray (array passed per call)", "a * 2", ray_times[size], None, "-", "-"))
        floor, same_work = times[FLOOR][0], times[SAME_WORK][0]
        for system, name, wall, inside, peak_mib, held_mib in rows:
            inside_ms = "-" if inside is None else f"{inside:.1f}"
            print(
                f"| {size} MB | {system} | `{name}` | {wall:,.1f} | {wall / floor:.2f}x | "
                f"{wall / same_work:.2f}x | {inside_ms} | {peak_mib} | {held_mib} |",
                flush=True,
            )
        del out
        out_of_place, in_place_ms = workload(a)
        bound = (floor - times[FLOOR][1] + out_of_place * times[FLOOR][1] / in_place_ms) / floor
        print(
            f"\n{size} MB, the workload alone (this process, shared arrays, no executor): out of place "
            f"{out_of_place:.1f} ms, in place {in_place_ms:.1f} ms ({out_of_place / in_place_ms:.2f}x). "
            f"Bound: an out-of-place variant with no cost of its own would take {bound:.2f}x the "
            "in-place floor.\n",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
