"""Structured records in one shared array: an int64 id and a float64 value per row, filled by workers.

The tutorials' way to share a table: ``multiprocessing.Array('d', 2 * n)``, viewed with
``np.frombuffer(array.get_obj()).reshape(n, 2)``, handed to a ``Pool`` through its
*initializer* (a ``multiprocessing.Array`` can only be inherited, so a new array needs a
new pool), every column a double. The integer column is then a float: ids above 2**53
(64-bit keys, hashes, nanosecond timestamps) are rounded when stored.

The replacement is a structured NumPy array in shared memory::

    records = zerocopy_executor.empty(n, dtype=[("id", "i8"), ("value", "f8")])
    executor.map(derive_values, np.array_split(records, 16))

Each worker gets views of its rows (by reference, no copy, no initializer, any time)
and fills the value column from the id column in place; named fields keep their
own dtypes.

Run:  python examples/structured_records.py [--start-method {fork,forkserver,spawn}] [--quick]
"""

from __future__ import annotations

import multiprocessing

import numpy as np

# Plumbing shared by the examples (command line, timing, report): examples/_demo.py
from _demo import best_time, check_nothing_copied, parse_args, print_timings, ready, start_workers

import zerocopy_executor as zc

N = 4_000_000  # 64 MB of records
N_QUICK = 500_000
WORKERS = 2
CHUNKS = 16
FIRST_ID = 2**53  # 64-bit keys: from here on, a float64 cannot hold every integer
RECORD = np.dtype([("id", "<i8"), ("value", "<f8")])


def value_of(ids):
    """The derived column: a value computed from each id."""
    return (ids % 1000) / 8.0


def derive_values(rows):
    """Fill the value field of a view of the shared records from its id field, in place."""
    rows["value"] = value_of(rows["id"])


# --- the classic pattern ----------------------------------------------------------------

_TABLE = None  # each Pool worker's multiprocessing.Array, set by init_worker


def init_worker(table):
    """Keep the inherited multiprocessing.Array for this worker's tasks."""
    global _TABLE  # noqa: PLW0603 - the classic pattern: one inherited array per worker process
    _TABLE = table


def derive_values_classic(bounds):
    """Fill column 1 from column 0 for rows [start, stop) of the (n, 2) double table."""
    start, stop = bounds
    table = np.frombuffer(_TABLE.get_obj()).reshape(-1, 2)
    rows = table[start:stop]
    rows[:, 1] = value_of(rows[:, 0].astype(np.int64))  # the id went through a float


def main():
    args = parse_args(__doc__, f"{N_QUICK:,} records (default {N:,}), one timed run")
    context = multiprocessing.get_context(args.start_method)
    n, repeats = (N_QUICK, 1) if args.quick else (N, 3)
    ids = FIRST_ID + 3 * np.arange(n, dtype=np.int64)
    expected = value_of(ids)
    print(f"structured_records: {n:,} records of (int64 id, float64 value), {n * 16 / 1e6:.0f} MB, ", end="")
    print(f"{CHUNKS} chunks, {WORKERS} workers, {args.start_method}")

    with zc.SharedArrayExecutor(WORKERS, mp_context=context) as executor:
        start_workers(executor, WORKERS)
        records = zc.empty(n, dtype=RECORD)
        records["id"] = ids
        _, best_shared = best_time(
            repeats,
            lambda: list(executor.map(derive_values, np.array_split(records, CHUNKS))),
            reset=lambda: records["value"].fill(0),  # undo the previous run (not timed)
        )
        if not (np.array_equal(records["id"], ids) and np.array_equal(records["value"], expected)):
            raise SystemExit("SharedArrayExecutor: the shared records do not hold the expected values")

    table = context.Array("d", 2 * n)  # doubles only; inherited by the pool's workers
    columns = np.frombuffer(table.get_obj()).reshape(n, 2)
    columns[:, 0] = ids  # rounded to the nearest float64
    bounds = [(int(chunk[0]), int(chunk[-1]) + 1) for chunk in np.array_split(np.arange(n), CHUNKS)]
    with context.Pool(WORKERS, initializer=init_worker, initargs=(table,)) as pool:
        pool.map(ready, range(WORKERS))  # start the workers before timing
        _, best_classic = best_time(
            repeats, lambda: pool.map(derive_values_classic, bounds), reset=lambda: columns[:, 1].fill(0)
        )
    ids_changed = int(np.count_nonzero(columns[:, 0].astype(np.int64) != ids))
    values_wrong = int(np.count_nonzero(columns[:, 1] != expected))

    print(
        f"  multiprocessing.Array('d'): {ids_changed:,} of {n:,} ids changed by storing them as floats, ",
        end="",
    )
    print(f"{values_wrong:,} values wrong")
    print_timings(
        repeats,
        ("SharedArrayExecutor, structured array, views by reference  ", best_shared),
        ("Pool + multiprocessing.Array('d') + np.frombuffer          ", best_classic),
    )
    check_nothing_copied(executor)
    if ids_changed == 0:
        raise SystemExit("expected the float64 table to round some ids above 2**53")
    print("OK: the structured records hold every int64 id and its value exactly; 0 bytes copied")


if __name__ == "__main__":
    main()
