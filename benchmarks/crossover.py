"""Where sharing a plain array starts to beat pickling it: the evidence for min_nbytes.

    python benchmarks/crossover.py                  # W1: array in, scalar out
    python benchmarks/crossover.py --task add       # W2: array in, same-size array out

For float64 arrays of 16 KB to 8 MB (powers of two) it times the round trip of one
task on two SharedArrayExecutors side by side: ``min_nbytes=0`` (every array is
copied into shared memory) and ``min_nbytes=sys.maxsize`` (every array is pickled,
as ProcessPoolExecutor would). The two are timed in alternating batches so that a
change in the machine's load hits both alike; each cell is a median, after warm-up
calls (steady state: recycled segments are warm). The crossover is the smallest size
from which sharing is faster at every larger size measured.

With ``--cold`` each sample is instead the first call at that size on a fresh pair of
executors (started and warmed up with a one-element array first), so sharing pays for
a new segment and its fresh pages (first touch costs more than the copy): the crossover for arrays whose
size a program does not repeat.
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from _systems import add_one, sample_sum

import zerocopy_executor

KB = 1 << 10
SIZES = [16 * KB << i for i in range(10)]  # 16 KB ... 8 MB
TASKS: dict[str, Callable[..., Any]] = {"sum": sample_sum, "add": add_one}


def _human(nbytes: int) -> str:
    return f"{nbytes // (1 << 20)} MB" if nbytes >= 1 << 20 else f"{nbytes // KB} KB"


def time_batch(
    executor: zerocopy_executor.SharedArrayExecutor, fn: Callable[..., Any], a: Any, n: int
) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        executor.submit(fn, a).result()
        times.append(time.perf_counter() - t0)
    return times


def measure(
    executors: dict[str, zerocopy_executor.SharedArrayExecutor],
    fn: Callable[..., Any],
    nbytes: int,
    args: argparse.Namespace,
) -> dict[str, float]:
    """Median round trip per executor at one size, in seconds."""
    a = np.arange(nbytes // 8, dtype=np.float64)
    samples: dict[str, list[float]] = {name: [] for name in executors}
    for executor in executors.values():
        time_batch(executor, fn, a, args.warmup)
    start = time.perf_counter()
    rounds = 0
    while rounds < args.min_rounds or (
        time.perf_counter() - start < args.budget and rounds < args.max_rounds
    ):
        for name, executor in executors.items():
            samples[name] += time_batch(executor, fn, a, args.batch)
        rounds += 1
    return {name: statistics.median(times) for name, times in samples.items()}


def measure_cold(
    context: multiprocessing.context.BaseContext,
    fn: Callable[..., Any],
    nbytes: int,
    args: argparse.Namespace,
) -> dict[str, float]:
    """Median first-call round trip per mode at one size, each on fresh executors, in seconds."""
    a = np.arange(nbytes // 8, dtype=np.float64)
    samples: dict[str, list[float]] = {"share": [], "pickle": []}
    for _ in range(args.cold_repeats):
        for name, min_nbytes in (("share", 0), ("pickle", sys.maxsize)):
            with zerocopy_executor.SharedArrayExecutor(
                2, mp_context=context, min_nbytes=min_nbytes
            ) as executor:
                for _ in range(2):  # both workers started, the ledger too
                    executor.submit(fn, np.zeros(1)).result()
                samples[name] += time_batch(executor, fn, a, 1)
    return {name: statistics.median(times) for name, times in samples.items()}


def measure_all(
    context: multiprocessing.context.BaseContext, fn: Callable[..., Any], args: argparse.Namespace
) -> Iterator[tuple[int, dict[str, float]]]:
    """Yield (size, medians) for every size, steady state or cold (--cold)."""
    if args.cold:
        for nbytes in SIZES:
            yield nbytes, measure_cold(context, fn, nbytes, args)
        return
    with (
        zerocopy_executor.SharedArrayExecutor(2, mp_context=context, min_nbytes=0) as share,
        zerocopy_executor.SharedArrayExecutor(2, mp_context=context, min_nbytes=sys.maxsize) as pickle,
    ):
        for nbytes in SIZES:
            yield nbytes, measure({"share": share, "pickle": pickle}, fn, nbytes, args)


def crossover(rows: list[tuple[int, float, float]]) -> int | None:
    """The smallest size from which sharing wins at every larger size, or None."""
    found = None
    for nbytes, shared, pickled in reversed(rows):
        if shared >= pickled:
            break
        found = nbytes
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--task", choices=sorted(TASKS), default="sum", help="sum: W1 (default); add: W2")
    parser.add_argument(
        "--start-method", default="forkserver", choices=multiprocessing.get_all_start_methods()
    )
    parser.add_argument("--batch", type=int, default=10, help="calls per batch (alternating executors)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per executor and size")
    parser.add_argument("--min-rounds", type=int, default=3)
    parser.add_argument("--max-rounds", type=int, default=50)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per size, after min-rounds")
    parser.add_argument("--cold", action="store_true", help="time first calls on fresh executors instead")
    parser.add_argument(
        "--cold-repeats", type=int, default=5, help="fresh executor pairs per size with --cold"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    context = multiprocessing.get_context(args.start_method)
    fn = TASKS[args.task]
    default = inspect.signature(zerocopy_executor.SharedArrayExecutor).parameters["min_nbytes"].default
    rows: list[tuple[int, float, float]] = []
    for nbytes, medians in measure_all(context, fn, args):
        rows.append((nbytes, medians["share"], medians["pickle"]))
        sys.stderr.write(f"{_human(nbytes)}: share {medians['share'] * 1e3:.3f} ms, ")
        sys.stderr.write(f"pickle {medians['pickle'] * 1e3:.3f} ms\n")
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    mode = "first call on fresh executors" if args.cold else "steady state"
    print(f"# min_nbytes crossover: task {args.task!r} ({fn.__name__}), {mode}, {args.start_method}")
    print(f"\nzerocopy_executor {zerocopy_executor.__version__}, load average {load} at the end.\n")
    print("| size | min_nbytes=0 (share) ms | min_nbytes=max (pickle) ms | pickle / share | faster |")
    print("| --- | --- | --- | --- | --- |")
    for nbytes, shared, pickled in rows:
        faster = "share" if shared < pickled else "pickle"
        cells = [
            _human(nbytes),
            f"{shared * 1e3:.3f}",
            f"{pickled * 1e3:.3f}",
            f"{pickled / shared:.2f}x",
            faster,
        ]
        print("| " + " | ".join(cells) + " |")
    found = crossover(rows)
    print()
    if found is None:
        print(f"Crossover: none; pickling was faster at {_human(SIZES[-1])}.")
    else:
        print(f"Crossover: sharing is faster from {_human(found)} up (every larger size measured).")
    print(judge(rows, found, default))
    return 0


def judge(rows: list[tuple[int, float, float]], found: int | None, default: int) -> str:
    """Say whether the default threshold matches the crossover measured."""
    head = f"The default min_nbytes ({_human(default)})"
    if found is None:
        return f"{head} is NOT supported: sharing never won consistently."
    if found > default:
        slower = [(n, s / p) for n, s, p in rows if default <= n < found]
        worst = max((r for _, r in slower), default=1.0)
        return f"{head} is too low: from it up to {_human(found)} sharing was up to {worst:.2f}x slower."
    missed = [(n, p / s) for n, s, p in rows if found <= n < default]
    if not missed:
        return f"{head} matches the crossover."
    best = max(r for _, r in missed)
    return (
        f"{head} is conservative: between {_human(found)} and {_human(default)} pickling is kept "
        f"although sharing was up to {best:.2f}x faster there."
    )


if __name__ == "__main__":
    sys.exit(main())
