"""Scenarios of dying processes and interrupts: a worker killed, the parent killed, Ctrl-C."""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin on 3.10
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

import zerocopy_executor as zc
from tests._fault_scripts.probes import TIMEOUT, MiB, Seen, collect, context, emit, outcome, segments_of
from tests._fault_scripts.worker_tasks import (
    task_die_holding_result,
    task_identity,
    task_pid_and_total,
    task_shared_result,
    task_slow_double,
    task_slow_total,
    task_total,
)

# --- scenarios -----------------------------------------------------------------


def scenario_worker_killed(start_method: str, how: str) -> int:
    """A worker dies (os._exit or SIGKILL) while 8 MiB arguments and results are in flight."""
    seen = Seen()
    big = np.arange(MiB, dtype=np.float64)  # 8 MiB
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method))
    # Results both copied back (a plain array) and made in the worker (a shared one).
    doubled, made = big * 2, np.full(MiB, 2.0)
    before = [(ex.submit(task_slow_double, big, 0.02 * i), doubled) for i in range(4)]
    before += [(ex.submit(task_shared_result, MiB, 2.0), made) for i in range(4)]
    doomed = ex.submit(task_die_holding_result, big, how, 0.2)
    after = [(ex.submit(task_slow_double, big, 0.05), doubled) for _ in range(4)]
    after += [(ex.submit(task_shared_result, MiB, 2.0), made) for _ in range(8)]
    time.sleep(0.1)
    seen.look()
    outcomes = {
        "before": [outcome(f, expected) for f, expected in before],
        "doomed": outcome(doomed),
        "after": [outcome(f, expected) for f, expected in after],
    }
    seen.look()
    del before, doomed, after
    collect()
    ex.shutdown()
    return report_after_shutdown(seen, ex, outcomes=outcomes)


def task_wait_then(x: int, seconds: float, die: bool) -> int:
    time.sleep(seconds)
    if die:
        os._exit(1)
    return x


def scenario_map_abandoned_then_worker_dies(start_method: str) -> int:
    """map() times out and cancels its queued chunks, then a worker dies: the pool still winds down.

    Before 3.12 the broken pool's clean-up raised at the first cancelled future (gh-107219).
    """
    seen = Seen()
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method))
    n = 12  # chunk 0 dies at 1 s, chunk 1 takes 2 s; map gives up at 0.3 s
    seconds, die = [1.0, 2.0] + [0.0] * (n - 2), [True] + [False] * (n - 1)
    results = ex.map(task_wait_then, range(n), seconds, die, timeout=0.3)
    try:
        first = f"value {next(results)}"
    except FutureTimeout:
        first = "timeout"
    seen.look()
    time.sleep(1.5)  # the worker has died, and the pool broke
    try:
        late = outcome(ex.submit(task_identity, 1))
    except BrokenProcessPool:
        late = "broken"
    seen.look()
    ex.shutdown()
    return report_after_shutdown(seen, ex, first=first, late=late)


def report_after_shutdown(seen: Seen, ex: Any, **fields: Any) -> int:
    """Emit the REPORT a scenario ends with: what is left once ex has shut down."""
    collect()
    left = segments_of(seen.pids)
    emit("REPORT", **fields, left_after_shutdown=left, live=ex.stats().live_segments, procs=seen.listing())
    return 0


def scenario_parent_killed(start_method: str, kind: str) -> int:
    """Run a map over 16 MiB arrays and announce READY; the test SIGKILLs us mid-map."""
    from concurrent.futures import ProcessPoolExecutor

    ctx = context(start_method)
    big = np.ones(2 * MiB, dtype=np.float64)  # 16 MiB
    if kind == "plain":
        ex: Any = ProcessPoolExecutor(2, mp_context=ctx)
    else:
        ex = zc.SharedArrayExecutor(2, mp_context=ctx)
    # A shared result alive in the parent, and shared arrays the workers create too.
    held = ex.submit(task_shared_result, 2 * MiB, 1.0).result(timeout=TIMEOUT)
    results = ex.map(task_pid_and_total, [big] * 40, [0.2] * 40)
    workers = set()
    for i, (pid, total) in enumerate(results):
        workers.add(pid)
        if i == 1:
            emit("READY", pid=os.getpid(), workers=sorted(workers), held=float(held.sum()))
        assert total == big.size
    emit("REPORT", finished=True)  # the test should have killed us long before
    return 1


def _consume_map(ex: Any, big: np.ndarray, seen: Seen) -> int:
    """Iterate a map over large arrays, reading nothing; its futures die with this frame."""
    got = 0
    # Long enough that the interrupt always lands mid-map, even on a loaded machine.
    for _ in ex.map(task_slow_double, [big] * 200, [0.1] * 200):
        got += 1
        if got == 1:
            seen.look()
            emit("READY", pid=os.getpid())
    return got


def scenario_keyboard_interrupt(start_method: str, how: str) -> int:
    """Ctrl-C during a map over large arrays; shutdown(cancel_futures=True); results dropped."""
    seen = Seen()
    big = np.ones(2 * MiB, dtype=np.float64)  # 16 MiB
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method))
    ex.submit(task_total, big).result(timeout=TIMEOUT)  # workers up: the map itself is in flight
    seen.look()
    interrupted = False
    got = None
    # Python's handler, as in an interactive shell: a script started with SIGINT ignored
    # (a background job of a non-interactive shell) would ignore interrupt_main too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if how == "interrupt_main":
        threading.Timer(0.6, _thread.interrupt_main).start()
    # else the test sends SIGINT to this process only, as `kill -INT <pid>` would
    try:
        got = _consume_map(ex, big, seen)
    except KeyboardInterrupt:
        interrupted = True
        seen.look()
        ex.shutdown(cancel_futures=True)
    else:
        ex.shutdown()
    return report_after_shutdown(seen, ex, interrupted=interrupted, got=got)


def scenario_interrupt_during_submit(start_method: str, rounds: str) -> int:
    """KeyboardInterrupt lands at random points while map() is still submitting."""
    seen = Seen()
    small = np.ones(MiB // 8, dtype=np.float64)  # 1 MiB: copied with min_nbytes=0
    rng = np.random.default_rng(1234)
    interrupted = interpreter_leaks = 0
    signal.signal(signal.SIGINT, signal.default_int_handler)  # see scenario_keyboard_interrupt
    for _ in range(int(rounds)):
        ex = zc.SharedArrayExecutor(2, mp_context=context(start_method), min_nbytes=0)
        ex.submit(task_total, small).result(timeout=TIMEOUT)
        seen.look()
        timer = threading.Timer(float(rng.uniform(0.0, 0.05)), _thread.interrupt_main)
        try:
            timer.start()
            results = ex.map(task_total, [small] * 400)
            for _ in results:
                pass
            timer.join()  # the interrupt may still come; take it here
            time.sleep(0.05)
        except KeyboardInterrupt:
            interrupted += 1
        finally:
            timer.cancel()
        seen.look()
        interpreter_leaks += release_locks_left_by_interrupted_with(ex)
        ex.shutdown(cancel_futures=True)  # must return, wherever the interrupt landed
        del ex
        collect()
    left = segments_of(seen.pids)
    emit(
        "REPORT",
        interrupted=interrupted,
        interpreter_leaks=interpreter_leaks,
        left_after_shutdown=left,
        procs=seen.listing(),
    )
    return 0


def release_locks_left_by_interrupted_with(ex: Any) -> int:
    """Release the pending futures' locks a Ctrl-C left held in this thread; return how many.

    A Ctrl-C landing just after ``Condition.__enter__`` took a Future's lock, before the
    ``with`` block began, leaves the lock held: the interpreter does not call ``__exit__``
    (python/cpython#148874, fixed in 3.15). ProcessPoolExecutor's manager thread then waits
    on it for ever in shutdown, ours as the standard one; the scenario tests our own
    bookkeeping, so it releases such locks and reports how many it found. The same can
    befall the lock of ProcessPoolExecutor's queue of work ids (``Queue.put`` in submit()):
    a plain Lock, which does not record its holder, but which the manager thread holds
    only for an instant, so one still held after a second was left by this thread.
    """
    released = 0
    for item in list(ex._pending_work_items.copy().values()):
        condition = item.future._condition
        while condition._is_owned():
            condition.release()
            released += 1
    mutex = ex._work_ids.mutex
    if mutex.acquire(timeout=1.0):
        mutex.release()
    else:
        mutex.release()
        released += 1
    return released


def _interrupt_once(owner: type, name: str, *, after: bool) -> None:
    """Make owner.name raise KeyboardInterrupt once: a Ctrl-C landing just before (or after) it."""
    original = getattr(owner, name)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        setattr(owner, name, original)
        if after:
            original(*args, **kwargs)
        raise KeyboardInterrupt

    setattr(owner, name, interrupted)


def _wait_until_one_runs(futures: list[Any]) -> None:
    """Wait until the pool has taken a task: it then runs to the end, whatever shutdown() cancels.

    Without this wait, a loaded machine could reach shutdown(cancel_futures=True) before the
    pool's manager thread moved any task to the workers, and every future would be cancelled.
    """
    deadline = time.monotonic() + TIMEOUT
    while not any(future.running() or future.done() for future in futures):
        if time.monotonic() > deadline:
            raise RuntimeError("no task started within the timeout")
        time.sleep(0.005)


def scenario_interrupt_in_bookkeeping(start_method: str, where: str) -> int:
    """A Ctrl-C lands where a task is counted in flight but nothing will settle it.

    before_watch: submit() made the future but not yet its settling callback, and
    shutdown(cancel_futures=True) cancels it. ticket: map() counted a plain chunk but had
    not submitted it yet. shutdown() must return, and release what the executor made.
    """
    from zerocopy_executor import _future, _sharing  # the two places a Ctrl-C can land in

    seen = Seen()
    big = np.ones(2 * MiB, dtype=np.float64)  # 16 MiB: copied into a segment per task
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method))
    ex.submit(task_total, big).result(timeout=TIMEOUT)
    seen.look()
    # Twelve 0.5 s tasks on two workers, and one of them surely started: when shutdown()
    # comes, some run to the end ("ok") and some are still pending ("CancelledError").
    busy = [ex.submit(task_slow_total, big, 0.5) for _ in range(12)]
    _wait_until_one_runs(busy)
    interrupted = False
    try:
        if where == "before_watch":
            _interrupt_once(_future.SharedFuture, "watch", after=False)
            ex.submit(task_total, big)
        else:
            _interrupt_once(_sharing.TaskTicket, "__init__", after=True)
            ex.map(task_wait_then, range(6), [0.0] * 6, [False] * 6)
    except KeyboardInterrupt:
        interrupted = True
    seen.look()
    ex.shutdown(cancel_futures=True)
    outcomes = sorted({outcome(future) for future in busy})
    del busy
    return report_after_shutdown(seen, ex, interrupted=interrupted, outcomes=outcomes)
