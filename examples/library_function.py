"""A library function that takes any Executor, and goes zero-copy when given a SharedArrayExecutor.

``smooth(data, executor=...)`` is written the way a library would write it: it accepts
any ``concurrent.futures.Executor`` (or none, to run serially) and splits the work into
chunks. Only when the executor is a ``SharedArrayExecutor`` does it allocate its output
in shared memory and let the workers write their parts straight into it; with any other
executor the chunks are computed and returned as ordinary arrays. Every path runs the
same arithmetic on the same chunks, so all results are bit-for-bit identical.

It keeps to the calls every executor understands, so it also runs on dask.distributed's
executor (``examples/scale_out.py`` runs it there): ``map`` gets lists, never an iterator
such as ``itertools.repeat`` (dask's ``map`` needs iterables with a length), and results
come back as return values (in-place writes reach the caller only through shared memory).

Run:  python examples/library_function.py [--start-method {fork,forkserver,spawn}] [--quick]
      (--quick: one million numbers instead of four, one timed run)
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from itertools import pairwise

import numpy as np

# Plumbing shared by the examples (command line, timing, report): examples/_demo.py
from _demo import best_time, check_nothing_copied, parse_args, runs_label, start_workers

import zerocopy_executor as zc

N = 4_000_000
N_QUICK = 1_000_000
WORKERS = 4
WINDOW = 25


# --- the "library" --------------------------------------------------------------------


def moving_average(x, window):
    """Return the means of every run of window consecutive values of x."""
    return np.convolve(x, np.full(window, 1.0 / window), mode="valid")


def moving_average_into(x, out, window):
    """Write moving_average(x, window) into out (a view of a shared array)."""
    out[:] = moving_average(x, window)


def smooth(data, *, window=WINDOW, executor=None, chunks=8):
    """Return the moving average of a 1-d array: len(data) - window + 1 values.

    Args:
        data: a 1-d float64 array. Pass one made by zerocopy_executor (``share``,
            ``empty``...) and a SharedArrayExecutor does not even copy the input.
        window: how many consecutive values each output value averages.
        executor: any concurrent.futures.Executor to split the work over, or None to
            run serially.
        chunks: how many pieces to split the work into.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 1 or not 1 <= window <= data.size:
        raise ValueError(f"need a 1-d array of at least window={window} values, got shape {data.shape}")
    size = data.size - window + 1
    bounds = [(a, b) for a, b in pairwise(np.linspace(0, size, chunks + 1).astype(int)) if b > a]
    # Each output chunk [a, b) needs the inputs [a, b + window - 1): the chunks overlap.
    pieces = [data[a : b + window - 1] for a, b in bounds]
    windows = [window] * len(pieces)  # a list, not itertools.repeat: every executor's map takes one
    if isinstance(executor, zc.SharedArrayExecutor):
        # Zero-copy path: workers write disjoint slices of one shared output in place.
        out = zc.empty_like(data[:size])
        list(executor.map(moving_average_into, pieces, [out[a:b] for a, b in bounds], windows))
        return out
    if executor is None:
        parts = [moving_average(piece, window) for piece in pieces]
    else:
        parts = list(executor.map(moving_average, pieces, windows))
    return np.concatenate(parts)


# --- the demonstration ----------------------------------------------------------------


def timed(executor, data, repeats):
    """Return smooth()'s result and its best time over repeats calls."""
    if executor is not None:
        start_workers(executor, WORKERS)
    return best_time(repeats, lambda: smooth(data, executor=executor))


def main():
    args = parse_args(__doc__, f"{N_QUICK:,} values and one timed run (default: {N:,}, best of 3)")
    context = multiprocessing.get_context(args.start_method)
    n, repeats = (N_QUICK, 1) if args.quick else (N, 3)
    data = zc.empty(n)  # any array works; a shared one is not even copied
    np.random.default_rng(0).standard_normal(out=data)
    print(
        f"library_function: smooth() over {n:,} float64 ({data.nbytes / 1e6:.0f} MB), window {WINDOW}, ",
        end="",
    )
    print(f"{WORKERS} workers, {args.start_method}, {runs_label(repeats)} each")

    results, seconds = {}, {}
    results["serial"], seconds["serial"] = timed(None, data, repeats)
    with ThreadPoolExecutor(WORKERS) as threads:
        results["ThreadPoolExecutor"], seconds["ThreadPoolExecutor"] = timed(threads, data, repeats)
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        results["ProcessPoolExecutor"], seconds["ProcessPoolExecutor"] = timed(pool, data, repeats)
    with zc.SharedArrayExecutor(WORKERS, mp_context=context) as executor:
        results["SharedArrayExecutor"], seconds["SharedArrayExecutor"] = timed(executor, data, repeats)

    reference = np.convolve(data, np.full(WINDOW, 1.0 / WINDOW), mode="valid")
    if not np.allclose(results["serial"], reference, rtol=0, atol=1e-12):
        raise SystemExit("smooth() without an executor disagrees with np.convolve over the whole array")
    for name, result in results.items():
        if not np.array_equal(result, results["serial"]):
            raise SystemExit(f"smooth(executor={name}) differs from the serial result")
        print(f"  {name:<20} {seconds[name] * 1e3:8.1f} ms  shared result: {zc.is_shared(result)}")
    check_nothing_copied(executor)
    print("OK: all four results are identical and match np.convolve; 0 bytes copied")


if __name__ == "__main__":
    main()
