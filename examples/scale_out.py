"""Scale out: one library function, unchanged, on SharedArrayExecutor and on dask.distributed's executor.

Shared memory ends at the host. Code written against ``concurrent.futures.Executor``
moves to a cluster by handing it another executor: dask.distributed's
``Client.get_executor()``. Here a ``LocalCluster`` of two worker processes (on
loopback, no dashboard) stands in for the cluster, and three things run on both:

1. ``smooth()`` from ``library_function.py``, a library function that takes any
   executor. Its results must be bit-for-bit identical to the serial ones.
2. One large array moved per call: argument in, a number back; then argument in and
   an array of the same size back. Shared memory here; dask's own transfer (pickled
   over TCP, through the scheduler) there. ProcessPoolExecutor is timed too.
3. A stream of frames from a generator, read with bounded look-ahead through
   ``zerocopy_executor.portable.map(..., buffersize=2)``: dask's own ``map`` needs
   iterables with a length and has no *buffersize*.

dask's executor is made with ``pure=False``: otherwise dask hashes every argument
to name the task, and runs identical calls only once.

Run:  python examples/scale_out.py [--start-method {fork,forkserver,spawn}] [--quick]
      (needs dask.distributed: pip install zerocopy_executor[distributed];
      --start-method applies to SharedArrayExecutor and ProcessPoolExecutor, dask
      starts its own workers; --quick: less data and one timed run)
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import statistics
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np

# Plumbing shared by the examples (command line, timing, report): examples/_demo.py
from _demo import best_time, parse_args, runs_label, start_workers

# The library function of library_function.py, imported as any library's would be
from library_function import smooth

import zerocopy_executor as zc
from zerocopy_executor import portable

WORKERS = 2
N = 16_000_000  # smooth() over 128 MB
N_QUICK = 1_000_000
MOVE_MB = 128  # the array moved per call in part 2
MOVE_MB_QUICK = 16
MOVE_CALLS = 5  # timed calls per system in part 2 (after one warm-up); the median is shown
FRAMES, FRAME_VALUES = 16, 1_000_000  # part 3: 16 frames of 8 MB
FRAMES_QUICK, FRAME_VALUES_QUICK = 8, 125_000
BUFFERSIZE = 2


def total(a):
    """Return the sum of an array (array in, a number out)."""
    return float(a.sum())


def plus_one(a):
    """Return a + 1 (array in, array of the same size out)."""
    return a + 1.0


def frame_energy(frame):
    """Return the sum of squares of one frame."""
    return float(np.dot(frame, frame))


class Frames:
    """A producer of frames (small integers, so every sum is exact) that records how far it got ahead."""

    def __init__(self, count, values):
        self.count, self.values = count, values
        self.produced = self.consumed = self.most_ahead = 0

    def __iter__(self):
        for i in range(self.count):
            self.produced += 1
            self.most_ahead = max(self.most_ahead, self.produced - self.consumed)
            yield (np.arange(self.values) % 1024 + i).astype(np.float64)


def stream(executor, frames):
    """Frame energies through portable.map with bounded look-ahead; return them as a list."""
    energies = []
    for energy in portable.map(executor, frame_energy, frames, buffersize=BUFFERSIZE):
        frames.consumed += 1
        energies.append(energy)
    return energies


def median_call_ms(submit_call, calls):
    """Median wall time of calls calls of submit_call().result(), after one warm-up call."""
    submit_call().result()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        submit_call().result()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def move_arrays(executor, array, calls):
    """Median ms of one call total(array) and of one call plus_one(array); check the answers."""
    # A sum's rounding can depend on where the array lies in memory (NumPy's SIMD loops):
    # a copy in another process may differ in the last bits.
    if not math.isclose(executor.submit(total, array).result(), float(array.sum()), rel_tol=1e-9):
        raise SystemExit(f"{type(executor).__name__}: total() came back wrong")
    if not np.array_equal(executor.submit(plus_one, array).result(), array + 1.0):
        raise SystemExit(f"{type(executor).__name__}: plus_one() came back wrong")
    return (
        median_call_ms(lambda: executor.submit(total, array), calls),
        median_call_ms(lambda: executor.submit(plus_one, array), calls),
    )


def run_on(name, executor, work):
    """Run the three parts on one executor; return what each gave and took."""
    start_workers(executor, WORKERS)
    data, repeats, move, frames = work
    smoothed, smooth_seconds = best_time(repeats, lambda: smooth(data, executor=executor))
    moved = move_arrays(executor, move, MOVE_CALLS if repeats > 1 else 1)
    source = Frames(*frames)
    energies = stream(executor, source)
    print(f"  {name:<20} smooth() {smooth_seconds * 1e3:7.1f} ms", end="")
    print(f"  | argument {moved[0]:6.1f} ms, round trip {moved[1]:6.1f} ms", end="")
    print(f"  | stream read at most {source.most_ahead} frames ahead")
    if source.most_ahead > BUFFERSIZE + 1:
        raise SystemExit(
            f"{name}: the producer got {source.most_ahead} frames ahead (buffersize {BUFFERSIZE})"
        )
    return smoothed, energies


def import_dask():
    """Return dask, and dask.distributed's Client and LocalCluster; or exit saying what to install."""
    # Imported here, not at the top: the process pools' workers re-import this script
    # under spawn and forkserver, and need not pay for importing dask.
    try:
        import dask  # noqa: PLC0415 - see above
        from distributed import Client, LocalCluster  # noqa: PLC0415
    except ImportError as exc:
        msg = "scale_out.py needs dask.distributed: pip install zerocopy_executor[distributed]"
        raise SystemExit(msg) from exc
    return dask, Client, LocalCluster


def start_dask_cluster(local_cluster):
    """A LocalCluster of worker processes, on loopback, quiet."""
    return local_cluster(
        n_workers=WORKERS,
        threads_per_worker=1,  # one task at a time per process, as in a process pool
        processes=True,
        host="127.0.0.1",  # no network beyond loopback
        # Its HTTP server listens even with no dashboard (8787 by default, which another
        # cluster may hold): a free port on loopback, and no dashboard.
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": False},
        # Its INFO to ERROR lines would go to stderr; ERROR includes a heartbeat that meets
        # the scheduler closing at the end (dask/distributed#7105), a race of its own.
        # Failures still reach us: results come back through the client, and are checked.
        silence_logs=logging.CRITICAL,
    )


def main():
    args = parse_args(__doc__, f"{N_QUICK:,} values, {MOVE_MB_QUICK} MB moved, one timed run")
    context = multiprocessing.get_context(args.start_method)
    n, move_mb, frames, repeats = (
        (N_QUICK, MOVE_MB_QUICK, (FRAMES_QUICK, FRAME_VALUES_QUICK), 1)
        if args.quick
        else (N, MOVE_MB, (FRAMES, FRAME_VALUES), 3)
    )
    # dask warns when a task's arguments are large ("Sending large graph"): moving a
    # large array per call is exactly what part 2 measures.
    warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
    data = zc.empty(n)  # a shared array: SharedArrayExecutor does not even copy it; dask pickles it
    np.random.default_rng(0).standard_normal(out=data)
    move = np.random.default_rng(1).standard_normal(move_mb * (1 << 20) // 8)  # a plain array
    work = (data, repeats, move, frames)
    print(
        f"scale_out: smooth() over {n:,} float64 ({data.nbytes / 1e6:.0f} MB), {move_mb} MB moved per ",
        end="",
    )
    print(
        f"call, {frames[0]} frames of {frames[1] * 8 / 1e6:.0f} MB streamed; {WORKERS} worker processes each,"
    )
    moves = f"median of {MOVE_CALLS} calls" if repeats > 1 else "one call"
    print(f"  {args.start_method} for the process pools; {runs_label(repeats)} of smooth(), {moves} per move")

    serial = smooth(data)
    expected_energies = [frame_energy(frame) for frame in Frames(*frames)]
    results = {}
    with zc.SharedArrayExecutor(WORKERS, mp_context=context) as executor:
        results["SharedArrayExecutor"] = run_on("SharedArrayExecutor", executor, work)
        print(f"    {executor.stats()}")

    dask, client_class, local_cluster = import_dask()
    # The workers' and the scheduler's files go to a scratch directory removed at the end,
    # not to a dask-scratch-space directory left in the system's temporary directory.
    with (
        tempfile.TemporaryDirectory(prefix="scale-out-") as scratch,
        dask.config.set({"temporary-directory": scratch}),
    ):
        cluster = start_dask_cluster(local_cluster)
        try:
            with client_class(cluster) as client:
                dask_executor = client.get_executor(pure=False)
                results["dask.distributed"] = run_on("dask.distributed", dask_executor, work)
        finally:
            cluster.close()

    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        start_workers(pool, WORKERS)
        moved = move_arrays(pool, move, MOVE_CALLS if repeats > 1 else 1)
        print(f"  {'ProcessPoolExecutor':<40}  | argument {moved[0]:6.1f} ms, round trip {moved[1]:6.1f} ms")

    for name, (smoothed, energies) in results.items():
        if not np.array_equal(smoothed, serial):
            raise SystemExit(f"smooth(executor={name}) differs from the serial result")
        if energies != expected_energies:
            raise SystemExit(f"{name}: the streamed frame energies differ from the serial ones")
    print("OK: smooth() and the streamed frames give identical results on both executors")


if __name__ == "__main__":
    main()
