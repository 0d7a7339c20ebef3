"""A SharedMemoryManager block worked on in place by workers: pass the array, not its name.

The tutorials' way to let a process pool work on one large array without pickling it:
a ``multiprocessing.managers.SharedMemoryManager`` makes a block, the parent views it
with ``np.ndarray(shape, dtype, buffer=shm.buf)``, and every task gets the block's
*name*, the shape, the dtype and its own bounds; the worker attaches with
``SharedMemory(name=...)``, rebuilds the array by hand, works on its rows, deletes its
view and closes the block (in that order, or ``close()`` raises ``BufferError``).

With SharedArrayExecutor the same block is passed as what it is, an array::

    executor.map(standardize, np.array_split(table, CHUNKS))

Each worker gets its rows as a view of the same block (by reference: the block's name,
offset and layout cross the pipe, never its bytes), and the block stays the user's:
the executor never closes or unlinks it, so the manager still frees it at exit.

Run:  python examples/shared_memory_manager.py [--start-method {fork,forkserver,spawn}] [--quick]
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.managers import SharedMemoryManager
from multiprocessing.shared_memory import SharedMemory

import numpy as np

# Plumbing shared by the examples (command line, timing, report): examples/_demo.py
from _demo import best_time, check_nothing_copied, parse_args, print_timings, start_workers

import zerocopy_executor as zc

ROWS, COLUMNS = 8_000, 1_000  # 64 MB of float64
ROWS_QUICK = 1_000
WORKERS = 2
CHUNKS = 16


def standardize(rows):
    """Scale each row of a view of the table to zero mean and unit variance, in place."""
    rows -= rows.mean(axis=1, keepdims=True)
    rows /= rows.std(axis=1, keepdims=True)


def standardize_by_name(name, shape, dtype, start, stop):
    """The tutorials' task: attach the block by name, rebuild the table, work on rows [start, stop)."""
    shm = SharedMemory(name=name)
    table = np.ndarray(shape, dtype=dtype, buffer=shm.buf)
    standardize(table[start:stop])
    del table  # a live view would make close() raise BufferError
    shm.close()


def original(rows):
    """The table's starting values (each run starts from them again)."""
    return np.random.default_rng(7).normal(3.0, 2.0, size=(rows, COLUMNS))


def time_both_ways(shm, start, context, repeats):
    """Standardize the block's table both ways (checked); return the executor and both best times."""
    rows = start.shape[0]
    expected = start.copy()
    standardize(expected)
    table = np.ndarray(start.shape, start.dtype, buffer=shm.buf)  # gone on return, before close()

    with zc.SharedArrayExecutor(WORKERS, mp_context=context) as executor:
        start_workers(executor, WORKERS)
        _, best_shared = best_time(
            repeats,
            lambda: list(executor.map(standardize, np.array_split(table, CHUNKS))),
            reset=lambda: np.copyto(table, start),  # undo the previous run (not timed)
        )
    if not np.allclose(table, expected):
        raise SystemExit("SharedArrayExecutor: the block does not hold the standardized table")

    bounds = [(int(c[0]), int(c[-1]) + 1) for c in np.array_split(np.arange(rows), CHUNKS)]
    by_name = [(shm.name, table.shape, table.dtype.str, low, high) for low, high in bounds]
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        start_workers(pool, WORKERS)
        _, best_classic = best_time(
            repeats,
            lambda: list(pool.map(standardize_by_name, *zip(*by_name, strict=True))),
            reset=lambda: np.copyto(table, start),
        )
    if not np.allclose(table, expected):
        raise SystemExit("ProcessPoolExecutor: the block does not hold the standardized table")
    return executor, best_shared, best_classic


def main():
    args = parse_args(__doc__, f"{ROWS_QUICK:,} rows (default {ROWS:,}), one timed run")
    context = multiprocessing.get_context(args.start_method)
    rows, repeats = (ROWS_QUICK, 1) if args.quick else (ROWS, 3)
    start = original(rows)
    print(
        f"shared_memory_manager: a ({rows:,}, {COLUMNS:,}) float64 table, {start.nbytes / 1e6:.0f} MB, ",
        end="",
    )
    print(f"{CHUNKS} chunks, {WORKERS} workers, {args.start_method}")

    with SharedMemoryManager(ctx=context) as manager:
        shm = manager.SharedMemory(start.nbytes)
        executor, best_shared, best_classic = time_both_ways(shm, start, context, repeats)
        shm.close()  # the manager unlinks the block when it shuts down

    print_timings(
        repeats,
        ("SharedArrayExecutor, views of the block by reference      ", best_shared),
        ("ProcessPoolExecutor, block name + attach by hand per task ", best_classic),
    )
    check_nothing_copied(executor)
    if executor.stats().arrays_by_reference < CHUNKS:
        raise SystemExit(f"expected every chunk by reference, got {executor.stats()}")
    print("OK: both ways standardize the block in place; the executor copied 0 bytes")


if __name__ == "__main__":
    main()
