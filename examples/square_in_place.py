"""Square one million numbers in place: four workers, one shared array, no copies, no locks.

The array lives in shared memory (``zerocopy_executor.zeros``), so each worker receives
a small descriptor of its chunk, a view of the same physical pages, and squares it in
place. The chunks are disjoint, so no lock is needed and nothing is sent back.

For comparison, ProcessPoolExecutor does the same job the ordinary way: every chunk is
pickled to a worker, squared there, pickled back and reassembled.

Run:  python examples/square_in_place.py [--start-method {fork,forkserver,spawn}] [--quick]
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np

# Plumbing shared by the examples (command line, timing, report): examples/_demo.py
from _demo import best_time, check_nothing_copied, parse_args, print_timings, start_workers

import zerocopy_executor as zc

N = 1_000_000
WORKERS = 4


def square_in_place(chunk):
    """Square a view of the shared array; the parent sees the writes."""
    np.square(chunk, out=chunk)


def square(chunk):
    """Return the squares of a chunk (the ordinary way: the result is pickled back)."""
    return np.square(chunk)


def main():
    args = parse_args(__doc__)
    context = multiprocessing.get_context(args.start_method)
    repeats = 1 if args.quick else 3
    source = np.random.default_rng(0).uniform(-10.0, 10.0, N)
    expected = np.square(source)
    print(f"square_in_place: {N:,} float64 ({source.nbytes / 1e6:.0f} MB), ", end="")
    print(f"{WORKERS} workers, {args.start_method}")

    with zc.SharedArrayExecutor(WORKERS, mp_context=context) as executor:
        start_workers(executor, WORKERS)
        data = zc.zeros(N)
        _, best_shared = best_time(
            repeats,
            lambda: list(executor.map(square_in_place, np.array_split(data, WORKERS))),
            reset=lambda: np.copyto(data, source),  # undo the previous run (not timed)
        )
        if not np.array_equal(data, expected):
            raise SystemExit("SharedArrayExecutor: the shared array does not hold the squares")

    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        start_workers(pool, WORKERS)
        result, best_pickled = best_time(
            repeats, lambda: np.concatenate(list(pool.map(square, np.array_split(source, WORKERS))))
        )
    if not np.array_equal(result, expected):
        raise SystemExit("ProcessPoolExecutor: the reassembled chunks do not hold the squares")

    print_timings(
        repeats,
        ("SharedArrayExecutor, views squared in place   ", best_shared),
        ("ProcessPoolExecutor, chunks pickled both ways ", best_pickled),
    )
    check_nothing_copied(executor)
    print("OK: all values match numpy; 0 bytes copied")


if __name__ == "__main__":
    main()
