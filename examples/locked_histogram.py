"""Overlapping writes made safe: four workers add into ONE shared histogram under a lock.

Every worker histograms its chunk of random data (a view of one shared array) and adds
its counts into the same shared ``int64`` histogram. Those writes overlap, so they are
made under a ``multiprocessing.Lock``, handed to every worker once through
``initializer``/``initargs`` and kept in a module global.

The lock must come from the executor's own multiprocessing context: a lock made for
one start method cannot be passed to workers started with another.

For comparison, ProcessPoolExecutor does the same job the ordinary way: every chunk is
pickled to a worker, which returns its counts for the parent to add up.

Run:  python examples/locked_histogram.py [--start-method {fork,forkserver,spawn}] [--quick]
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np

# Plumbing shared by the examples (command line, timing, report): examples/_demo.py
from _demo import best_time, check_nothing_copied, parse_args, print_timings, start_workers

import zerocopy_executor as zc

N = 4_000_000
WORKERS = 4
CHUNKS = 16
BINS = 64
RANGE = (-4.0, 4.0)

_LOCK = None  # set in each worker by init_worker


def init_worker(lock):
    """Keep the executor's lock for this worker's tasks."""
    global _LOCK  # noqa: PLW0603 - one lock per worker process, set once by the initializer
    _LOCK = lock


def histogram_into(chunk, histogram):
    """Histogram a chunk, then add the counts into the shared histogram under the lock."""
    counts, _ = np.histogram(chunk, bins=BINS, range=RANGE)
    with _LOCK:  # += on shared memory is read-modify-write: unsafe without the lock
        histogram += counts


def histogram(chunk):
    """Return the counts of a chunk (the ordinary way: the parent adds them up)."""
    counts, _ = np.histogram(chunk, bins=BINS, range=RANGE)
    return counts


def main():
    args = parse_args(__doc__)
    context = multiprocessing.get_context(args.start_method)
    repeats = 1 if args.quick else 3
    data = zc.empty(N)
    np.random.default_rng(0).standard_normal(out=data)  # generated in place: no copy
    expected, _ = np.histogram(data, bins=BINS, range=RANGE)
    print(f"locked_histogram: {N:,} float64 ({data.nbytes / 1e6:.0f} MB) in {CHUNKS} chunks, ", end="")
    print(f"{BINS} bins, {WORKERS} workers, {args.start_method}")

    lock = context.Lock()  # from the executor's context, or workers cannot receive it
    with zc.SharedArrayExecutor(WORKERS, mp_context=context, initializer=init_worker, initargs=(lock,)) as ex:
        start_workers(ex, WORKERS)
        shared_histogram = zc.zeros(BINS, dtype=np.int64)
        _, best_shared = best_time(
            repeats,
            lambda: list(ex.map(histogram_into, np.array_split(data, CHUNKS), [shared_histogram] * CHUNKS)),
            reset=lambda: shared_histogram.fill(0),  # start every run from zero (not timed)
        )
        if not np.array_equal(shared_histogram, expected):
            raise SystemExit(f"SharedArrayExecutor: histogram {shared_histogram} != numpy's {expected}")

    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        start_workers(pool, WORKERS)
        summed, best_pickled = best_time(
            repeats, lambda: sum(pool.map(histogram, np.array_split(data, CHUNKS)))
        )
    if not np.array_equal(summed, expected):
        raise SystemExit(f"ProcessPoolExecutor: histogram {summed} != numpy's {expected}")

    print(f"  {int(shared_histogram.sum()):,} values counted, {N - int(expected.sum()):,} outside {RANGE}")
    print_timings(
        repeats,
        ("SharedArrayExecutor, one shared histogram + lock  ", best_shared),
        ("ProcessPoolExecutor, chunks pickled, counts summed ", best_pickled),
    )
    check_nothing_copied(ex)
    print("OK: the shared histogram matches np.histogram of all the data; 0 bytes copied")


if __name__ == "__main__":
    main()
