"""The cost spectrum of the patterns tutorials teach, for one workload, measured in one run.

    python benchmarks/patterns.py            # 32 MiB (4M float64), 5-50 timed passes each
    python benchmarks/patterns.py --quick    # 2 MiB, 3 timed passes each

The workload: y = sqrt(|x|) over x, float64, in 8 chunks on 2 worker processes; the
parent ends with y as a NumPy array. The same workload, the way each pattern does it:

    Manager().list        x and y are list proxies; a task reads its slice of x through
                          the manager, writes its slice of y back; the parent reads y
    multiprocessing.Array x and y are Array('d') (lock=True, the default), inherited by the
                          workers through initializer, viewed with np.frombuffer(a.get_obj())
    shared_memory         hand-written: two SharedMemory blocks, passed by name; each task
                          attaches both, writes its slice of y, closes (as tutorials do)
    ProcessPoolExecutor   chunks of x pickled to the workers, chunks of y pickled back,
                          concatenated
    SharedArrayExecutor   the ProcessPoolExecutor code unchanged (one import changed):
      (unchanged)         chunks copied into shared memory, results back the same way
    SharedArrayExecutor   x and y in shared memory (zerocopy_executor.share, empty_like);
      (shared arrays)     views of their chunks by reference, y written in place

"setup" is the one-time cost of putting x into the pattern's structure and making room
for y (not starting processes); "pass" is the median of the timed passes, after one
warm-up pass: at least 5, then more until 2 s have passed (at most 50), because the
fast ones are a few milliseconds on a shared machine. Every pass's y is checked
against NumPy's. Ratios are against the last row.
Each system starts its own 2-worker pool (forkserver unless --start-method says).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
from numpy.typing import NDArray

import zerocopy_executor as zc

WORKERS = 2
CHUNKS = 8
N, N_QUICK = 1 << 22, 1 << 18
PASSES, PASSES_QUICK = 5, 3  # at least
MAX_PASSES = 50
BUDGET_SECONDS, BUDGET_SECONDS_QUICK = 2.0, 0.0  # keep timing passes until then


def sqrt_abs(x: NDArray[Any]) -> NDArray[Any]:
    return np.sqrt(np.abs(x))


def sqrt_abs_into(x: NDArray[Any], y: NDArray[Any]) -> None:
    np.sqrt(np.abs(x), out=y)


def ready(_: object = None) -> None:
    """An empty task: used to start every worker before timing."""


# --- Manager().list --------------------------------------------------------------------


def manager_task(xs: Any, ys: Any, start: int, stop: int) -> None:
    ys[start:stop] = sqrt_abs(np.array(xs[start:stop])).tolist()


# --- multiprocessing.Array + np.frombuffer ------------------------------------------------

_ARRAYS: tuple[Any, Any] | None = None  # each worker's inherited (x, y) Arrays


def init_arrays(x: Any, y: Any) -> None:
    global _ARRAYS  # noqa: PLW0603 - the pattern: inherited arrays kept in a worker global
    _ARRAYS = (x, y)


def array_task(start: int, stop: int) -> None:
    assert _ARRAYS is not None
    x, y = (np.frombuffer(a.get_obj()) for a in _ARRAYS)
    sqrt_abs_into(x[start:stop], y[start:stop])


# --- hand-written shared_memory --------------------------------------------------------


def attach(name: str) -> SharedMemory:
    """Attach to a block by name, without registering it with the resource tracker again."""
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)  # gh-82300
    # Before 3.13 attaching registers the name again, with the tracker the parent shares
    # (a set: registering twice is harmless; unregistering here would drop the parent's).
    return SharedMemory(name=name)


def shm_task(x_name: str, y_name: str, n: int, start: int, stop: int) -> None:
    x_block, y_block = attach(x_name), attach(y_name)
    try:
        x = np.ndarray((n,), dtype=np.float64, buffer=x_block.buf)
        y = np.ndarray((n,), dtype=np.float64, buffer=y_block.buf)
        sqrt_abs_into(x[start:stop], y[start:stop])
        del x, y  # views of the buffers must go before close()
    finally:
        x_block.close()
        y_block.close()


# --- the harness --------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    setup: float  # seconds
    passes: list[float]  # seconds

    @property
    def per_pass(self) -> float:
        return statistics.median(self.passes)


def bounds(n: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, CHUNKS + 1).astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


@contextmanager
def started(pool: ProcessPoolExecutor) -> Iterator[ProcessPoolExecutor]:
    with pool:
        list(pool.map(ready, range(WORKERS)))
        yield pool


@dataclass(frozen=True)
class Policy:
    passes: int  # at least
    budget: float  # seconds: keep going until then, up to MAX_PASSES


def timed(run: Callable[[], NDArray[Any]], expected: NDArray[Any], policy: Policy, label: str) -> list[float]:
    """One warm-up pass, then timed passes as the policy says; every result is checked."""
    times: list[float] = []
    began = time.perf_counter()
    for i in itertools.count():
        if i > policy.passes and (i > MAX_PASSES or time.perf_counter() - began > policy.budget):
            break
        start = time.perf_counter()
        y = run()
        elapsed = time.perf_counter() - start
        if not np.array_equal(y, expected):
            raise SystemExit(f"{label}: y differs from NumPy's sqrt(abs(x))")
        if i:
            times.append(elapsed)
        print(f"  {label}: pass {i} {elapsed * 1e3:.1f} ms", file=sys.stderr)
    return times


def measure_manager(context: BaseContext, x: NDArray[Any], expected: NDArray[Any], policy: Policy) -> Row:
    label = "`Manager().list` proxies"
    with context.Manager() as manager, started(ProcessPoolExecutor(WORKERS, mp_context=context)) as pool:
        start = time.perf_counter()
        xs, ys = manager.list(x.tolist()), manager.list([0.0] * x.size)
        setup = time.perf_counter() - start

        def run() -> NDArray[Any]:
            tasks = [pool.submit(manager_task, xs, ys, a, b) for a, b in bounds(x.size)]
            for task in tasks:
                task.result()
            return np.array(ys[:])

        return Row(label, setup, timed(run, expected, policy, label))


def measure_array(context: BaseContext, x: NDArray[Any], expected: NDArray[Any], policy: Policy) -> Row:
    label = "`multiprocessing.Array` + `np.frombuffer`"
    start = time.perf_counter()
    x_array, y_array = context.Array("d", x.size), context.Array("d", x.size)
    np.frombuffer(x_array.get_obj())[:] = x
    y = np.frombuffer(y_array.get_obj())
    setup = time.perf_counter() - start
    pool = ProcessPoolExecutor(
        WORKERS, mp_context=context, initializer=init_arrays, initargs=(x_array, y_array)
    )
    with started(pool):

        def run() -> NDArray[Any]:
            for task in [pool.submit(array_task, a, b) for a, b in bounds(x.size)]:
                task.result()
            return y

        return Row(label, setup, timed(run, expected, policy, label))


def measure_shm(context: BaseContext, x: NDArray[Any], expected: NDArray[Any], policy: Policy) -> Row:
    label = "hand-written `shared_memory`"
    with ExitStack() as stack:
        start = time.perf_counter()
        blocks = []
        for _ in range(2):
            block = SharedMemory(create=True, size=x.nbytes)
            stack.callback(block.unlink)
            stack.callback(block.close)
            blocks.append(block)
        views = [np.ndarray(x.shape, dtype=x.dtype, buffer=block.buf) for block in blocks]
        stack.callback(views.clear)  # views of the blocks must go before close()
        views[0][:] = x
        setup = time.perf_counter() - start
        with started(ProcessPoolExecutor(WORKERS, mp_context=context)) as pool:
            names = (blocks[0].name, blocks[1].name)

            def run() -> NDArray[Any]:
                tasks = [pool.submit(shm_task, *names, x.size, a, b) for a, b in bounds(x.size)]
                for task in tasks:
                    task.result()
                return views[1]

            return Row(label, setup, timed(run, expected, policy, label))


def measure_ppe(context: BaseContext, x: NDArray[Any], expected: NDArray[Any], policy: Policy) -> Row:
    label = "`ProcessPoolExecutor`, pickled"
    with started(ProcessPoolExecutor(WORKERS, mp_context=context)) as pool:
        run = lambda: np.concatenate(list(pool.map(sqrt_abs, np.array_split(x, CHUNKS))))  # noqa: E731
        return Row(label, 0.0, timed(run, expected, policy, label))


def measure_sae_unchanged(
    context: BaseContext, x: NDArray[Any], expected: NDArray[Any], policy: Policy
) -> Row:
    label = "`SharedArrayExecutor`, same code as `ProcessPoolExecutor`"
    with started(zc.SharedArrayExecutor(WORKERS, mp_context=context)) as pool:
        run = lambda: np.concatenate(list(pool.map(sqrt_abs, np.array_split(x, CHUNKS))))  # noqa: E731
        return Row(label, 0.0, timed(run, expected, policy, label))


def measure_sae_shared(context: BaseContext, x: NDArray[Any], expected: NDArray[Any], policy: Policy) -> Row:
    label = "`SharedArrayExecutor`, shared arrays, y in place"
    start = time.perf_counter()
    xs = zc.share(x)
    y = zc.empty_like(xs)
    setup = time.perf_counter() - start
    with started(zc.SharedArrayExecutor(WORKERS, mp_context=context)) as pool:

        def run() -> NDArray[Any]:
            list(pool.map(sqrt_abs_into, np.array_split(xs, CHUNKS), np.array_split(y, CHUNKS)))
            return y

        return Row(label, setup, timed(run, expected, policy, label))


SYSTEMS = (
    measure_manager,
    measure_array,
    measure_shm,
    measure_ppe,
    measure_sae_unchanged,
    measure_sae_shared,
)


def render(rows: list[Row], n: int, start_method: str) -> str:
    reference = rows[-1].per_pass
    lines = [
        f"y = sqrt(|x|) over {n:,} float64 ({n * 8 >> 20} MiB), {CHUNKS} chunks, {WORKERS} workers, "
        f"{start_method}; pass: median after a warm-up",
        "",
        "| pattern | setup ms | pass ms (passes) | pass vs. last row |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        setup = f"{row.setup * 1e3:,.1f}" if row.setup else "-"
        lines.append(
            f"| {row.label} | {setup} | {row.per_pass * 1e3:,.1f} ({len(row.passes)}) "
            f"| {row.per_pass / reference:,.1f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    methods = multiprocessing.get_all_start_methods()
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{N_QUICK:,} values, {PASSES_QUICK} passes")
    parser.add_argument(
        "--start-method", choices=methods, default="forkserver" if "forkserver" in methods else "spawn"
    )
    args = parser.parse_args()
    n, policy = (
        (N_QUICK, Policy(PASSES_QUICK, BUDGET_SECONDS_QUICK))
        if args.quick
        else (N, Policy(PASSES, BUDGET_SECONDS))
    )
    context = multiprocessing.get_context(args.start_method)
    x = np.random.default_rng(0).standard_normal(n)
    expected = sqrt_abs(x)
    rows = [measure(context, x, expected, policy) for measure in SYSTEMS]
    print(render(rows, n, args.start_method))


if __name__ == "__main__":
    main()
