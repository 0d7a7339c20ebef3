"""Scenarios under load: many threads, max_tasks_per_child, many live results, descriptor
limits, bounded memory."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np

import zerocopy_executor as zc
from tests._fault_scripts.crashes import task_wait_then
from tests._fault_scripts.probes import (
    TIMEOUT,
    MiB,
    Seen,
    collect,
    context,
    emit,
    fd_count,
    segments_of,
    shm_bytes_of,
)
from tests._fault_scripts.worker_tasks import (
    task_fd_report,
    task_fill_view,
    task_pid_and_shared_result,
    task_shared_result,
    task_slow_double,
    task_slow_total,
    task_total,
)
from tests._processes import descendants

IDLE_WAIT_SECONDS = 15.0


def _live_now_and_when_idle(ex: Any) -> tuple[int, int, float]:
    """live_segments now, then after waiting (up to 15 s) for idle segments to be trimmed."""
    live = ex.stats().live_segments
    t0 = time.monotonic()
    idle_live = live
    while idle_live and time.monotonic() - t0 < IDLE_WAIT_SECONDS:
        time.sleep(0.1)
        collect()
        idle_live = ex.stats().live_segments
    return live, idle_live, time.monotonic() - t0


def _submit_from_threads(ex: Any, n_threads: int, per_thread: int, make_call: Any) -> list[Any]:
    results: list[Any] = [None] * n_threads
    barrier = threading.Barrier(n_threads)

    def run(index: int) -> None:
        barrier.wait()
        futures = [ex.submit(*make_call(index, i)) for i in range(per_thread)]
        results[index] = [f.result(timeout=TIMEOUT) for f in futures]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _fd_trend(counts: list[int]) -> int:
    """How much a worker's descriptor count grew from the first to the last quarter of its tasks."""
    quarter = max(1, len(counts) // 4)
    return max(counts[-quarter:]) - max(counts[:quarter])


def scenario_load_threads(start_method: str, n_tasks: str) -> int:
    """8 threads submit 1 MiB copied arguments at once; count descriptors and live segments.

    Descriptors below 1024, the program's own: a memfd segment's owner holds one from 1024
    up while the segment lives, which the live segments bound.
    """
    seen = Seen()
    n_threads = 8
    per_thread = int(n_tasks) // n_threads
    arrays = [np.full(MiB // 8, float(i)) for i in range(n_threads)]  # 1 MiB each
    collect()
    fds_before_executor = fd_count(below=1024)
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method), min_nbytes=4096)
    for f in [ex.submit(task_fd_report, arrays[0]) for _ in range(8)]:  # warm up both workers
        f.result(timeout=TIMEOUT)
    seen.look()
    helpers = {pid: fd_count(pid, below=1024) for pid in descendants(os.getpid())}
    t0 = time.monotonic()
    # A quarter first, then the rest: descriptors may settle but must not grow with
    # the number of tasks, nor follow the live (or pooled) segments.
    call = lambda t, _i: (task_fd_report, arrays[t])  # noqa: E731
    results = _submit_from_threads(ex, n_threads, per_thread // 4, call)
    collect()
    fds_quarter, live_quarter = fd_count(below=1024), ex.stats().live_segments
    more = _submit_from_threads(ex, n_threads, per_thread - per_thread // 4, call)
    results = [a + b for a, b in zip(results, more, strict=True)]
    del more
    elapsed = time.monotonic() - t0
    wrong = sum(
        total != float(arrays[t].sum()) for t, thread in enumerate(results) for (_, _, total) in thread
    )
    worker_fds: dict[int, list[int]] = {}
    for thread in results:
        for pid, fds, _ in thread:
            worker_fds.setdefault(pid, []).append(fds)
    del results
    collect()
    fds_after = fd_count(below=1024)
    live, idle_live, idle_seconds = _live_now_and_when_idle(ex)
    fds_idle = fd_count(below=1024)
    helpers_after = {pid: fd_count(pid, below=1024) for pid in helpers if os.path.exists(f"/proc/{pid}")}
    seen.look()
    ex.shutdown()
    collect()
    fds_after_shutdown = fd_count(below=1024)
    copied = ex.stats().arrays_copied
    del ex
    collect()
    emit(
        "REPORT",
        wrong=wrong,
        tasks=n_threads * per_thread,
        elapsed=elapsed,
        live=live,
        idle_live=idle_live,
        idle_seconds=idle_seconds,
        fds=[fds_before_executor, fds_quarter, fds_after, fds_idle, fds_after_shutdown, fd_count(below=1024)],
        live_quarter=live_quarter,
        worker_fds={pid: [min(v), max(v), _fd_trend(v)] for pid, v in worker_fds.items()},
        helper_fds={pid: [helpers[pid], helpers_after.get(pid)] for pid in helpers},
        copied=copied,
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


def _check_rows(results: list[Any], views: np.ndarray, per_thread: int, seen: Seen) -> int:
    """Count wrong answers of the max_tasks_per_child scenario (in a frame of its own)."""
    wrong = 0
    for t, thread in enumerate(results):
        for i, (pid, value) in enumerate(thread):
            row = t * per_thread + i
            seen.add(pid)
            if i % 2:
                wrong += not (zc.is_shared(value) and bool((value == row).all()))
            else:
                wrong += value != 1024.0 * row or not bool((views[row] == row).all())
    return wrong


def scenario_load_max_tasks_per_child(start_method: str, n_tasks: str) -> int:
    """max_tasks_per_child=1 with shared arguments and shared results from 8 threads."""
    seen = Seen()
    n_threads = 8
    per_thread = int(n_tasks) // n_threads
    shared = zc.zeros(n_threads * per_thread * 1024)
    views = shared.reshape(n_threads * per_thread, 1024)
    collect()
    fds_before_executor = fd_count()
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method), max_tasks_per_child=1)

    def call(t: int, i: int) -> tuple[Any, ...]:
        row = t * per_thread + i
        if i % 2:
            return (task_pid_and_shared_result, 1024, float(row))
        return (task_fill_view, views[row], float(row))

    results = _submit_from_threads(ex, n_threads, per_thread, call)
    wrong = _check_rows(results, views, per_thread, seen)
    del results
    collect()
    live, idle_live, idle_seconds = _live_now_and_when_idle(ex)
    seen.look()
    ex.shutdown()
    del ex
    collect()
    fds_after = fd_count()
    emit(
        "REPORT",
        wrong=wrong,
        tasks=n_threads * per_thread,
        live=live,
        idle_live=idle_live,
        idle_seconds=idle_seconds,
        fds=[fds_before_executor, fds_after],
        workers=len(seen.pids) - 1,
        left=segments_of(seen.pids - {os.getpid()}),
        procs=seen.listing(),
    )
    return 0


def scenario_many_live_results(start_method: str, n_results: str) -> int:
    """Hold more shared results than a common RLIMIT_NOFILE (1024) allows descriptors."""
    import resource

    seen = Seen()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    held: list[np.ndarray] = []
    error = None
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        # A memfd result is held from descriptor 1024 up (the soft limit raised for it):
        # what must not grow is the descriptors the program itself can use, below 1024.
        fds_before = fd_count(below=1024)
        try:
            for _ in range(int(n_results)):
                held.append(ex.submit(task_shared_result, 1000, 1.0).result(timeout=TIMEOUT))
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
        fds_holding = fd_count(below=1024)
        fds_high = fd_count() - fds_holding
        correct = all(bool((a == 1.0).all()) for a in held)
        count = len(held)
        seen.look()
        del held
        collect()
    collect()
    emit(
        "REPORT",
        error=error,
        held=count,
        correct=correct,
        fds=[fds_before, fds_holding],
        fds_high=fds_high,
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


RESULT_N = 40_000  # float64: 320,000 bytes, above the default min_nbytes: copied, not pickled
_FILLERS: list[int] = []  # descriptors held only to leave a process none


def task_full(n: int, value: float) -> np.ndarray:
    return np.full(n, value)


def fill_descriptor_table() -> int:
    """Open /dev/null until this process has no descriptor left; keep them all."""
    while True:
        try:
            _FILLERS.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            return len(_FILLERS)


def empty_descriptor_table() -> None:
    while _FILLERS:
        os.close(_FILLERS.pop())


def _collect_results(futures: list[Future[Any]]) -> tuple[list[np.ndarray], list[str]]:
    """Results in order (None where lost), and why those were lost."""
    held: list[Any] = []
    lost: list[str] = []
    for future in futures:
        try:
            held.append(future.result(timeout=TIMEOUT))
        except Exception as exc:
            held.append(None)
            lost.append(f"{type(exc).__name__}: {exc}")
    return held, lost


def _share_and_send(ex: Any, n_arrays: int) -> str | None:
    """Share a few arrays with zc.share and send each to a worker; None, or what went wrong."""
    try:
        shared = [zc.share(np.full(RESULT_N, 7.0)) for _ in range(n_arrays)]
        totals = [ex.submit(task_total, a).result(timeout=TIMEOUT) for a in shared]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if totals == [7.0 * RESULT_N] * n_arrays else f"wrong totals {totals}"


def scenario_descriptor_limit(start_method: str, limit: str, n_results: str) -> int:
    """Keep n results of 320 KB under RLIMIT_NOFILE=limit, drop them, then share a few arrays."""
    import resource

    seen = Seen()
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(limit), int(limit)))
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        for f in [ex.submit(task_wait_then, 0, 0.2, False) for _ in range(2)]:  # start both workers
            f.result(timeout=TIMEOUT)
        fds_before = fd_count()
        futures = [ex.submit(task_full, RESULT_N, float(i)) for i in range(int(n_results))]
        held, lost = _collect_results(futures)
        del futures
        fds_holding = fd_count()
        wrong = sum(
            a is not None and not (a.shape == (RESULT_N,) and bool((a == i).all()))
            for i, a in enumerate(held)
        )
        seen.look()
        del held
        collect()
        share_error = _share_and_send(ex, 4)
        stats = ex.stats()
        seen.look()
    collect()
    emit(
        "REPORT",
        lost=len(lost),
        why=lost[:3],
        wrong=wrong,
        fds=[fds_before, fds_holding],
        share_error=share_error,
        arrays_pickled=stats.arrays_pickled,
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


def scenario_descriptor_table_full(start_method: str, where: str) -> int:
    """The parent, its workers or both have no descriptor left: copied arguments and results still cross."""
    import resource

    seen = Seen()
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))  # quick to fill
    fill_workers = where in ("workers", "both")
    init = fill_descriptor_table if fill_workers else None
    with zc.SharedArrayExecutor(2, mp_context=context(start_method), initializer=init) as ex:
        for f in [ex.submit(task_wait_then, 0, 0.2, False) for _ in range(2)]:  # start both workers
            f.result(timeout=TIMEOUT)
        filled = fill_descriptor_table() if where in ("parent", "both") else None
        base = np.arange(RESULT_N, dtype=np.float64)
        try:
            futures = [ex.submit(task_slow_double, base, 0.0) for _ in range(40)]
            held, lost = _collect_results(futures)
            del futures
            wrong = sum(a is not None and not np.array_equal(a, base * 2) for a in held)
            del held
            share_error = _share_and_send(ex, 2)
        finally:
            empty_descriptor_table()
        stats = ex.stats()
        seen.look()
    collect()
    emit(
        "REPORT",
        filled=filled,
        lost=len(lost),
        why=lost[:3],
        wrong=wrong,
        share_error=share_error,
        arrays_pickled=stats.arrays_pickled,
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


def scenario_bounded_memory(start_method: str) -> int:
    """40 arguments of 64 MiB submitted at once to 2 workers; sample our bytes in /dev/shm."""
    seen = Seen()
    big = np.ones(8 * MiB, dtype=np.float64)  # 64 MiB; each submission copies it afresh
    peak = 0
    samples = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, samples
        while not stop.is_set():
            peak = max(peak, shm_bytes_of(os.getpid()))
            samples += 1
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        futures = [ex.submit(task_slow_total, big, 0.05) for _ in range(40)]
        seen.look()
        totals = [f.result(timeout=TIMEOUT) for f in futures]
        seen.look()
        del futures
    stop.set()
    sampler.join()
    emit(
        "REPORT",
        peak=peak,
        samples=samples,
        correct=all(t == big.size for t in totals),
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0
