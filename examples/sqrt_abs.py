"""sqrt(abs(x)) over ten million numbers, in place, in chunks spread over four workers.

``zerocopy_executor.share`` copies the data into shared memory once; after that every
chunk goes to a worker as a descriptor of a view, the worker overwrites it in place,
and nothing comes back but ``None``.

For comparison, ProcessPoolExecutor does the same job the ordinary way: 80 MB of
chunks pickled to the workers and 80 MB of results pickled back.

Run:  python examples/sqrt_abs.py [--start-method {fork,forkserver,spawn}] [--quick]
      (--quick: two million numbers, one timed run)
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np

# Plumbing shared by the examples (command line, timing, report): examples/_demo.py
from _demo import best_time, check_nothing_copied, parse_args, print_timings, start_workers

import zerocopy_executor as zc

N = 10_000_000
N_QUICK = 2_000_000
WORKERS = 4
CHUNKS = 16


def sqrt_abs_in_place(chunk):
    """Replace every value of a view of the shared array by sqrt(abs(value))."""
    np.abs(chunk, out=chunk)
    np.sqrt(chunk, out=chunk)


def sqrt_abs(chunk):
    """Return sqrt(abs(chunk)) (the ordinary way: the result is pickled back)."""
    return np.sqrt(np.abs(chunk))


def main():
    args = parse_args(__doc__, f"{N_QUICK:,} values and one timed run (default: {N:,}, best of 3)")
    context = multiprocessing.get_context(args.start_method)
    n, repeats = (N_QUICK, 1) if args.quick else (N, 3)
    source = np.random.default_rng(0).standard_normal(n)
    expected = np.sqrt(np.abs(source))
    print(f"sqrt_abs: {n:,} float64 ({source.nbytes / 1e6:.0f} MB) in {CHUNKS} chunks, ", end="")
    print(f"{WORKERS} workers, {args.start_method}")

    with zc.SharedArrayExecutor(WORKERS, mp_context=context) as executor:
        start_workers(executor, WORKERS)
        data = zc.share(source)  # the one copy, into shared memory
        _, best_shared = best_time(
            repeats,
            lambda: list(executor.map(sqrt_abs_in_place, np.array_split(data, CHUNKS))),
            reset=lambda: np.copyto(data, source),  # undo the previous run (not timed)
        )
        if not np.array_equal(data, expected):
            raise SystemExit("SharedArrayExecutor: the shared array does not hold sqrt(abs(x))")

    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        start_workers(pool, WORKERS)
        result, best_pickled = best_time(
            repeats, lambda: np.concatenate(list(pool.map(sqrt_abs, np.array_split(source, CHUNKS))))
        )
    if not np.array_equal(result, expected):
        raise SystemExit("ProcessPoolExecutor: the reassembled chunks do not hold sqrt(abs(x))")

    print_timings(
        repeats,
        ("SharedArrayExecutor, chunks rewritten in place  ", best_shared),
        ("ProcessPoolExecutor, chunks pickled both ways   ", best_pickled),
    )
    check_nothing_copied(executor)
    print("OK: all values match numpy; 0 bytes copied")


if __name__ == "__main__":
    main()
