"""Soak: random arrays through SharedArrayExecutor for a while, with workers killed on purpose.

Run from the repository root::

    python -m tests.stress.soak --seconds 600

Each round builds an executor (start method, min_nbytes and max_tasks_per_child
drawn at random), sends batches of tasks over arrays of random dtypes, shapes, sizes
and layouts, plain and shared, nested in containers, and checks every answer byte for
byte. Now and then a batch carries a task that kills its worker (``os._exit`` or
SIGKILL); the executor then breaks, is shut down and is rebuilt. After every shutdown
no segment made by this process tree may remain in /dev/shm.

Prints tasks run, faults injected, wrong results, unexpected errors and leaked
segments; exits 1 if any of the last three is not 0.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import gc
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

import zerocopy_executor as zc
from tests import _fault_scripts as fs

DTYPES = [
    np.dtype(np.bool_),
    np.dtype(np.int8),
    np.dtype(np.uint16),
    np.dtype(np.int32),
    np.dtype(np.int64),
    np.dtype(np.float32),
    np.dtype(np.float64),
    np.dtype(np.complex64),
    np.dtype(np.complex128),
    np.dtype(">i4"),
    np.dtype(">f8"),
    np.dtype("datetime64[ns]"),
    np.dtype([("a", "<i4"), ("b", "<f8"), ("c", "S3")]),
]
LAYOUTS = ["C", "F", "strided", "negative", "transposed", "inner-slice"]
KINDS = ["echo", "copy", "shared_copy", "digest", "nested", "inplace"]
MAX_NBYTES = 8 << 20
RESULT_TIMEOUT = 120
LEAK_GRACE_SECONDS = 5.0


@dataclass
class Tally:
    """What the soak did and found."""

    tasks: int = 0
    faults: int = 0
    wrong: int = 0
    unexpected: int = 0
    leaked: set[str] = field(default_factory=set)
    executors: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, problem: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(problem)


def random_array(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """An array of random dtype, shape, size (0 to 8 MiB) and layout, plain or shared."""
    dtype = DTYPES[rng.integers(len(DTYPES))]
    nbytes = int(np.exp(rng.uniform(0, np.log(MAX_NBYTES))))
    n = max(nbytes // dtype.itemsize, 0) if rng.random() > 0.05 else 0
    ndim = int(rng.integers(0, 4)) if n else 1
    if ndim == 0:
        shape: tuple[int, ...] = ()
    else:
        side = max(round(n ** (1 / ndim)), 1)
        shape = tuple(side if i else max(n // side ** (ndim - 1), 0) for i in range(ndim))
    layout = LAYOUTS[rng.integers(len(LAYOUTS))] if ndim else "C"
    shared = rng.random() < 0.4
    # Make a bigger base so that strided views have something to skip.
    base_shape = tuple(2 * s + 1 for s in shape) if layout in ("strided", "inner-slice") else shape
    order: Literal["C", "F"] = "F" if layout == "F" else "C"
    base = zc.empty(base_shape, dtype, order) if shared else np.empty(base_shape, dtype, order=order)
    raw = base.reshape(-1, order="A").view(np.uint8) if base.size else None
    if raw is not None:
        if dtype == np.bool_:
            raw[...] = rng.integers(0, 2, raw.size, dtype=np.uint8)
        else:
            raw[...] = rng.integers(0, 256, raw.size, dtype=np.uint8)
    view = base
    if layout == "strided":
        view = base[tuple(slice(None, None, 2) for _ in shape)][tuple(slice(0, s) for s in shape)]
    elif layout == "negative":
        view = base[::-1]
    elif layout == "transposed":
        view = base.T
    elif layout == "inner-slice":
        view = base[tuple(slice(1, 1 + s) for s in shape)]
    return view, f"{'shared' if shared else 'plain'} {dtype} {view.shape} {layout}"


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


@dataclass
class Job:
    """One submitted task and how to check it."""

    future: Future[Any]
    kind: str
    label: str
    expected: Any
    target: np.ndarray | None = None  # for inplace: the parent's array that must change


def submit_job(ex: zc.SharedArrayExecutor, rng: np.random.Generator) -> Job:
    kind = KINDS[rng.integers(len(KINDS))]
    a, label = random_array(rng)
    if kind == "inplace":
        target = zc.zeros((int(rng.integers(1, 300_000)),))[:: int(rng.integers(1, 4))]
        value = float(rng.integers(1, 1000))
        return Job(
            ex.submit(fs.task_soak, "inplace", target, value), kind, "shared float64 inplace", value, target
        )
    if kind == "nested":
        b, label_b = random_array(rng)
        arg = {"x": a, "pair": (b, int(rng.integers(100))), "list": [a[..., :1] if a.ndim else a]}
        return Job(ex.submit(fs.task_soak, "echo", arg, None), kind, f"{label} + {label_b}", arg)
    expected = fs.soak_fingerprint(a) if kind == "digest" else a
    return Job(ex.submit(fs.task_soak, kind, a, None), kind, label, expected)


def check(job: Job, tally: Tally, seen: fs.Seen, *, broken_expected: bool) -> None:
    try:
        pid, value = job.future.result(timeout=RESULT_TIMEOUT)
    except BrokenProcessPool:
        if not broken_expected:
            tally.unexpected += 1
            tally.note(f"BrokenProcessPool without an injected fault ({job.kind}: {job.label})")
        return
    except Exception as exc:
        tally.unexpected += 1
        tally.note(f"{job.kind} {job.label}: {type(exc).__name__}: {exc}")
        return
    seen.add(pid)
    if job.kind == "inplace":
        assert job.target is not None
        ok = bool((job.target == job.expected).all()) and value == job.expected * job.target.size
    else:
        ok = same(job.expected, value)
    if not ok:
        tally.wrong += 1
        tally.note(f"wrong result for {job.kind}: {job.label}")


def pick_context(rng: np.random.Generator, only: str | None = None) -> tuple[str, dict[str, Any]]:
    methods = multiprocessing.get_all_start_methods() if only is None else [only]
    method = methods[int(rng.integers(len(methods)))]
    options: dict[str, Any] = {"min_nbytes": [0, 64 << 10, 1 << 20][int(rng.integers(3))]}
    # Only 1: any larger limit hangs ProcessPoolExecutor itself on 3.11 to 3.13.0 once
    # more tasks are queued than the workers' limits add up to (gh-115634).
    if sys.version_info >= (3, 11) and method != "fork" and rng.random() < 0.15:
        options["max_tasks_per_child"] = 1
    return method, options


def run_batch(
    ex: zc.SharedArrayExecutor, rng: np.random.Generator, tally: Tally, seen: fs.Seen, fault_rate: float
) -> bool:
    """Submit and check one batch; True if a worker was killed.

    Its arrays, futures and results die with this frame, before the leak check.
    """
    jobs = [submit_job(ex, rng) for _ in range(int(rng.integers(4, 24)))]
    fault = bool(rng.random() < fault_rate)
    if fault:
        how = "sigkill" if rng.random() < 0.5 else "os_exit"
        position = int(rng.integers(len(jobs) + 1))
        killer = ex.submit(fs.task_soak_die, how, float(rng.uniform(0, 0.05)))
        jobs.insert(position, Job(killer, "die", how, None))
        tally.faults += 1
    seen.look()
    for job in jobs:
        if job.kind != "die":
            check(job, tally, seen, broken_expected=fault)
            tally.tasks += 1
    seen.look()
    return fault


@dataclass(frozen=True)
class Settings:
    """What the command line chose: the share of batches with a fault, and a start method."""

    fault_rate: float
    start_method: str | None = None


def run_round(
    rng: np.random.Generator, tally: Tally, seen: fs.Seen, deadline: float, settings: Settings
) -> None:
    """One executor's life: batches until it breaks (a fault) or the round ends."""
    method, options = pick_context(rng, settings.start_method)
    ex = zc.SharedArrayExecutor(2, mp_context=multiprocessing.get_context(method), **options)
    tally.executors += 1
    try:
        for _ in range(int(rng.integers(3, 12))):
            if time.monotonic() > deadline or run_batch(ex, rng, tally, seen, settings.fault_rate):
                break
    finally:
        ex.shutdown(cancel_futures=True)
    del ex
    gc.collect()
    check_leaks(tally, seen)


def check_leaks(tally: Tally, seen: fs.Seen) -> None:
    """After a shutdown nothing of ours may stay in /dev/shm; record and remove leftovers."""
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    while (left := fs.segments_of(seen.pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
        gc.collect()
    for name in left:
        if name not in tally.leaked:
            tally.leaked.add(name)
            tally.note(f"segment {name} outlived its executor's shutdown")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(fs.SHM_DIR, name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run (default 600)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--fault-rate", type=float, default=0.15, help="share of batches that kill a worker")
    parser.add_argument(
        "--start-method",
        choices=multiprocessing.get_all_start_methods(),
        help="use only this start method (default: one drawn at random for each executor)",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = np.random.default_rng(seed)
    # A hang fails loudly, with every thread's stack, instead of running forever.
    faulthandler.dump_traceback_later(args.seconds + 300, exit=True)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>` shows where it is
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    method = args.start_method or "any start method"
    print(f"soak: {args.seconds:.0f} s, seed {seed}, {method}, pid {os.getpid()}", flush=True)
    tally = Tally()
    seen = fs.Seen()
    start = time.monotonic()
    deadline = start + args.seconds
    while time.monotonic() < deadline:
        run_round(rng, tally, seen, deadline, Settings(args.fault_rate, args.start_method))
    gc.collect()
    check_leaks(tally, seen)
    elapsed = time.monotonic() - start
    lines = [
        f"elapsed:           {elapsed:.0f} s",
        f"executors built:   {tally.executors}",
        f"tasks run:         {tally.tasks}",
        f"faults injected:   {tally.faults}",
        f"wrong results:     {tally.wrong}",
        f"unexpected errors: {tally.unexpected}",
        f"leaked segments:   {len(tally.leaked)}",
    ]
    print("\n".join(lines), flush=True)
    for problem in tally.problems:
        print(f"  - {problem}", flush=True)
    return 1 if tally.wrong or tally.unexpected or tally.leaked else 0


if __name__ == "__main__":
    sys.exit(main())
