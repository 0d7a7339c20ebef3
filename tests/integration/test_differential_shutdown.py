"""shutdown() and the executor's lifetime behave as ProcessPoolExecutor's.

cancel_futures, shutdown twice, the context manager, an executor dropped without
shutdown(), and an interpreter exiting without it.

The two classes are compared as tests/integration/_differential.py describes.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import subprocess
import sys
import threading
import weakref
from typing import Any

import numpy as np
import pytest

from tests import _tasks
from tests.integration._differential import (
    BIG,
    EXECUTORS,
    FORK,
    ROOT,
    SETTLE,
    TIMEOUT,
    Gate,
    big,
    error_of,
    shut_down_cancelling_behind_a_running_task,
)

# --- shutdown and lifetime -----------------------------------------------------------


def test_shutdown_wait_false_lets_pending_futures_finish(make_pool, gate, mp_context):
    """After shutdown(wait=False) the tasks already submitted still run to completion."""
    executor = make_pool(mp_context=mp_context)
    futures = [executor.submit(_tasks.block_until, gate.release, None, i) for i in range(4)]
    executor.shutdown(wait=False)
    gate.open()
    assert [f.result(timeout=TIMEOUT) for f in futures] == [0, 1, 2, 3]


def test_shutdown_cancel_futures_cancels_only_pending_tasks(make_pool, gate):
    """shutdown(cancel_futures=True) cancels tasks not yet dispatched; running ones finish."""
    running, others = shut_down_cancelling_behind_a_running_task(make_pool(max_workers=1), gate)
    assert running.result(timeout=TIMEOUT) == "first"
    for i, future in enumerate(others):
        try:
            assert future.result(timeout=SETTLE) == 2 * i
        except cf.CancelledError:
            assert future.cancelled()
    # Only the two that fit in the call queue (max_workers + 1) can have been dispatched.
    assert all(f.cancelled() for f in others[2:])


def test_submit_after_shutdown_raises_runtime_error(make_pool):
    """submit() after shutdown() raises RuntimeError with the same message."""
    for wait in (True, False):
        executor = make_pool()
        executor.submit(_tasks.add, 1, 1).result(timeout=TIMEOUT)
        executor.shutdown(wait=wait)
        assert error_of(lambda e=executor: e.submit(_tasks.add, 1, 1)) == (
            RuntimeError,
            "cannot schedule new futures after shutdown",
        )
    unused = make_pool()
    unused.shutdown()
    assert error_of(lambda: unused.submit(_tasks.add, 1, 1)) == (
        RuntimeError,
        "cannot schedule new futures after shutdown",
    )


def test_shutdown_twice_is_harmless(make_pool):
    """shutdown() may be called again, with or without tasks run before."""
    for run_a_task in (True, False):
        executor = make_pool()
        if run_a_task:
            assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3
        executor.shutdown(wait=False)
        executor.shutdown()
        executor.shutdown(wait=True, cancel_futures=True)


def test_shutdown_after_shutdown_wait_false_waits_for_nothing(make_pool, gate):
    """A second shutdown(wait=True) returns at once, though the first let a task run on."""
    executor = make_pool(max_workers=1)
    running = executor.submit(_tasks.block_until, gate.release, gate.started, "first")
    gate.wait_started()
    executor.shutdown(wait=False)
    second = threading.Thread(target=executor.shutdown, kwargs={"wait": True})
    second.start()
    second.join(timeout=SETTLE)
    waited = second.is_alive()
    gate.open()
    second.join(timeout=TIMEOUT)
    assert not waited, "the second shutdown() waited for the running task"
    assert running.result(timeout=TIMEOUT) == "first"


def test_context_manager_returns_executor_and_shuts_down(executor_cls):
    """`with` returns the executor itself, waits for its tasks and then refuses new ones."""
    with executor_cls(2, mp_context=FORK) as executor:
        assert type(executor) is executor_cls
        future = executor.submit(_tasks.total, big(3))
    assert future.done()
    assert future.result(timeout=0) == 3.0 * BIG
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        executor.submit(_tasks.add, 1, 1)


def test_context_manager_lets_exceptions_propagate(executor_cls):
    """An exception inside `with` propagates after the executor has shut down."""
    executor = executor_cls(2, mp_context=FORK)
    futures: list[cf.Future[Any]] = []

    def body() -> None:
        with executor:
            futures.append(executor.submit(_tasks.add, 1, 2))
            raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        body()
    assert futures[0].result(timeout=0) == 3
    with pytest.raises(RuntimeError):
        executor.submit(_tasks.add, 1, 1)


def test_executor_dropped_without_shutdown_completes_futures(executor_cls, tmp_path, mp_context):
    """An executor dropped without shutdown() is collected, and its futures still complete."""
    gate = Gate(tmp_path)
    try:
        executor = executor_cls(2, mp_context=mp_context)
        futures = [executor.submit(_tasks.block_until, gate.release, None, big(i)) for i in range(3)]
        alive = weakref.ref(executor)
        del executor
        gc.collect()
        assert alive() is None
    finally:
        gate.open()
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(future.result(timeout=TIMEOUT), big(i))


SCRIPT_EXIT_WITHOUT_SHUTDOWN = """
import multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
import numpy as np
import zerocopy_executor as zc
from tests import _tasks

cls_name, method, release, out = sys.argv[1:]
cls = {"ProcessPoolExecutor": ProcessPoolExecutor, "SharedArrayExecutor": zc.SharedArrayExecutor}[cls_name]
executor = cls(2, mp_context=multiprocessing.get_context(method))
print(executor.submit(_tasks.total, np.ones(1 << 18)).result(timeout=60), flush=True)
for i in range(4):
    executor.submit(_tasks.block_until, release, f"{out}/ran{i}", np.ones(1 << 18))
open(release, "w").close()
"""


def test_interpreter_exit_without_shutdown_runs_pending_tasks(start_method, tmp_path):
    """A script exiting without shutdown() still runs its pending tasks and exits cleanly."""
    outcomes = {}
    for cls in EXECUTORS:
        out = tmp_path / cls.__name__
        out.mkdir()
        proc = subprocess.run(
            [
                sys.executable,
                "-X",
                "dev",
                "-c",
                SCRIPT_EXIT_WITHOUT_SHUTDOWN,
                *(cls.__name__, start_method),
                str(out / "release"),
                str(out),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        ran = sorted(p.name for p in out.iterdir() if p.name.startswith("ran"))
        outcomes[cls.__name__] = (proc.returncode, proc.stdout, without_fork_warning(proc.stderr), ran)
    assert outcomes["SharedArrayExecutor"] == outcomes["ProcessPoolExecutor"]
    assert outcomes["ProcessPoolExecutor"][3] == ["ran0", "ran1", "ran2", "ran3"]


def without_fork_warning(stderr: str) -> str:
    """Drop Python 3.12+'s fork-with-threads DeprecationWarning, which either executor may
    trigger depending on thread timing (it is filtered in pyproject for the same reason)."""
    lines = stderr.splitlines(keepends=True)
    kept, skip_next = [], False
    for line in lines:
        if "use of fork() may lead to deadlocks" in line:
            skip_next = True  # the warning's source line follows it
            continue
        if skip_next:
            skip_next = False
            continue
        kept.append(line)
    return "".join(kept)
