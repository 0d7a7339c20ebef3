"""The plumbing the example scripts share: command line, warm-up, timing and the final report.

Only mechanics live here; each example keeps its own workload, checks and explanation.
The examples import it as ``from _demo import ...``: Python puts a script's own directory
on ``sys.path``, and workers started by spawn or forkserver inherit that path.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

import zerocopy_executor as zc

T = TypeVar("T")


def parse_args(
    doc: str | None, quick_help: str = "time one run instead of the best of three"
) -> argparse.Namespace:
    """Parse ``--start-method`` and ``--quick``, describing the script by the first line of doc."""
    methods = multiprocessing.get_all_start_methods()
    parser = argparse.ArgumentParser(description=(doc or "").partition("\n")[0])
    parser.add_argument(
        "--start-method",
        choices=methods,
        default="forkserver" if "forkserver" in methods else "spawn",
        help="how workers start (default: forkserver where available, never the platform default)",
    )
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser.parse_args()


def ready(_: object) -> None:
    """Do nothing: used to start every worker before timing."""


def start_workers(executor: Executor, workers: int) -> None:
    """Run one empty task per worker, so that starting the workers is not timed."""
    list(executor.map(ready, range(workers)))


def best_time(
    repeats: int, run: Callable[[], T], *, reset: Callable[[], object] | None = None
) -> tuple[T, float]:
    """Call run() repeats times; return the last result and the shortest time, in seconds.

    reset, if given, is called before each run, outside the timing (to undo an in-place run).
    """
    best = float("inf")
    for _ in range(repeats):
        if reset is not None:
            reset()
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return result, best


def runs_label(repeats: int) -> str:
    """Say how the times were taken: "best of 3" or "one run"."""
    return f"best of {repeats}" if repeats > 1 else "one run"


def print_timings(repeats: int, shared: tuple[str, float], pickled: tuple[str, float]) -> None:
    """Print the zero-copy time, then the ordinary time and how many times longer it took.

    Each argument is (label, seconds); the labels carry their own padding, to align the times.
    """
    (shared_label, shared_seconds), (pickled_label, pickled_seconds) = shared, pickled
    print(f"  {shared_label}{shared_seconds * 1e3:8.1f} ms  ({runs_label(repeats)})")
    ratio = pickled_seconds / shared_seconds
    print(f"  {pickled_label}{pickled_seconds * 1e3:8.1f} ms  ({ratio:.1f}x the time)")


def check_nothing_copied(executor: zc.SharedArrayExecutor) -> None:
    """Print the executor's stats; exit with an error if any array was copied or pickled."""
    stats = executor.stats()
    print(f"  {stats}")
    if stats.bytes_copied or stats.bytes_pickled:
        raise SystemExit(f"expected no array to be copied or pickled, got {stats}")
