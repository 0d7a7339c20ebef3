"""Dying workers, forced shutdown, threads and nested pools: as with ProcessPoolExecutor.

The two classes are compared as tests/integration/_differential.py describes.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool, _RemoteTraceback
from typing import Any

import pytest

from tests import _tasks
from tests.integration._differential import (
    BIG,
    FORK,
    PPE,
    SAE,
    TIMEOUT,
    Gate,
    big,
    error_of,
    wait_for,
)

# --- crashes -------------------------------------------------------------------------


def describe_broken(exc: BaseException | None) -> tuple[Any, ...] | None:
    """Type and message of a pool-breaking error, its cause checked rather than compared.

    From Python 3.15 ProcessPoolExecutor adds, as __cause__, the exit codes of workers
    that died, when the dead worker has been reaped by the time it looks: a race, seen
    both ways with ProcessPoolExecutor itself (12 and 8 times in 20 runs here).
    """
    if exc is None:
        return None
    cause = exc.__cause__
    if cause is not None:
        assert isinstance(cause, _RemoteTraceback)
        assert "terminated abruptly with exit code" in str(cause)
    return type(exc), str(exc)


def killed_worker_outcome(cls: type[ProcessPoolExecutor], context: Any) -> tuple[Any, ...]:
    # One worker: it is started by the first submit, before the executor's manager
    # thread, so its death is always noticed. (A worker that PPE spawns for a later
    # submit under spawn/forkserver may not be watched until the next result: a race
    # in CPython that would make this test wait for the other task.)
    # The pending tasks take small arguments: on 3.10 a worker's death leaves PPE's
    # queue feeder blocked for good on a large call item the dead worker half read
    # (gh-94777, fixed in 3.11), and shutdown() would hang on it.
    executor = cls(1, mp_context=context)
    try:
        killed = executor.submit(_tasks.kill_self, big(2))
        pending = [executor.submit(_tasks.add, i, i) for i in range(3)]
        errors = tuple(describe_broken(f.exception(timeout=TIMEOUT)) for f in [killed, *pending])
        late = error_of(lambda: executor.submit(_tasks.add, 1, 1))
    finally:
        executor.shutdown(wait=True)
    return errors, late


def test_worker_killed_by_signal_breaks_the_pool(mp_context):
    """A worker killed by SIGKILL fails its task, the pending ones and new submits with BrokenProcessPool."""
    ppe = killed_worker_outcome(PPE, mp_context)
    sae = killed_worker_outcome(SAE, mp_context)
    assert all(error is not None and error[0] is BrokenProcessPool for error in ppe[0])
    assert ppe[1] is not None
    assert ppe[1][0] is BrokenProcessPool
    assert sae == ppe


def forced_shutdown_outcome(cls: type[ProcessPoolExecutor], context: Any, how: str, gate: Gate) -> Any:
    executor = cls(1, mp_context=context)
    running = executor.submit(_tasks.block_until, gate.release, gate.started, big(1))
    gate.wait_started()
    pending = executor.submit(_tasks.add, 1, 2)
    workers = [p for p in multiprocessing.active_children() if p.pid != os.getpid()]
    getattr(executor, how)()
    # The queued task was cancelled, or failed if it had already been handed to the worker.
    # Polled: ProcessPoolExecutor leaves such a cancelled future un-notified (gh-136655).
    cf.wait([running], timeout=TIMEOUT)
    wait_for(pending.done)
    pending_ran = not pending.cancelled() and type(pending.exception(timeout=0)) is not BrokenProcessPool
    outcome = (
        type(running.exception(timeout=TIMEOUT)),
        pending_ran,
        error_of(lambda: executor.submit(_tasks.add, 1, 1)),
    )
    executor.shutdown(wait=True)
    for worker in workers:
        worker.join(TIMEOUT)
    return outcome


@pytest.mark.parametrize("how", ["terminate_workers", "kill_workers"])
def test_forced_shutdown_stops_workers_and_releases_everything(mp_context, how, tmp_path):
    """terminate/kill_workers: running and queued tasks break, as on 3.14; nothing leaks."""
    sae = forced_shutdown_outcome(SAE, mp_context, how, Gate(tmp_path / "sae"))
    assert sae[0] is BrokenProcessPool
    assert sae[1] is False
    assert sae[2] is not None
    assert sae[2][0] is BrokenProcessPool
    if hasattr(PPE, how):
        assert forced_shutdown_outcome(PPE, mp_context, how, Gate(tmp_path / "ppe")) == sae


def killed_neighbour_outcome(cls: type[ProcessPoolExecutor], gate: Gate) -> tuple[Any, ...]:
    executor = cls(2, mp_context=FORK)  # fork starts both workers at the first submit
    try:
        running = executor.submit(_tasks.block_until, gate.release, gate.started, big(1))
        gate.wait_started()
        killed = executor.submit(_tasks.kill_self, big(2))
        errors = (
            describe_broken(killed.exception(timeout=TIMEOUT)),
            describe_broken(running.exception(timeout=TIMEOUT)),
        )
    finally:
        gate.open()
        executor.shutdown(wait=True)
    return errors


def test_worker_killed_by_signal_fails_tasks_running_elsewhere(tmp_path):
    """A worker's death also fails a task running in another worker, with BrokenProcessPool."""
    ppe = killed_neighbour_outcome(PPE, Gate(tmp_path / "ppe"))
    sae = killed_neighbour_outcome(SAE, Gate(tmp_path / "sae"))
    assert all(error is not None and error[0] is BrokenProcessPool for error in ppe)
    assert sae == ppe


# --- threads and nesting -------------------------------------------------------------


def test_submit_and_map_from_several_threads_at_once(executor_cls):
    """Several threads submitting and mapping at once each get their own correct results."""
    start = threading.Barrier(4)

    def work(executor: ProcessPoolExecutor, seed: int) -> list[float]:
        start.wait(TIMEOUT)
        futures = [executor.submit(_tasks.total, big(seed * 10 + i)) for i in range(4)]
        mapped = list(executor.map(_tasks.add, range(seed, seed + 5), range(5), timeout=TIMEOUT))
        return [f.result(timeout=TIMEOUT) for f in futures] + mapped

    with executor_cls(2, mp_context=FORK) as executor, cf.ThreadPoolExecutor(4) as threads:
        results = list(threads.map(work, [executor] * 4, range(4), timeout=TIMEOUT))
    for seed, result in enumerate(results):
        expected = [float((seed * 10 + i) * BIG) for i in range(4)] + [seed + 2 * k for k in range(5)]
        assert result == expected


@pytest.mark.parametrize("inner_method", ["forkserver", "spawn"])
def test_pool_inside_a_worker_of_another_pool(executor_cls, inner_method):
    """A task of an outer ProcessPoolExecutor can itself run a pool of the class under test."""
    # The outer pool is not forked: a forked worker inherits the parent's forkserver
    # bookkeeping and then fails in os.waitpid (a CPython issue, the same for both).
    outer_context = multiprocessing.get_context("forkserver")
    with PPE(1, mp_context=outer_context) as outer:
        future = outer.submit(_tasks.sum_in_nested_pool, executor_cls, inner_method, BIG)
        assert future.result(timeout=TIMEOUT) == (float(BIG * (BIG - 1) // 2), [0.0, 2.0, 4.0, 6.0])
