"""What the differential tests share: SharedArrayExecutor does what ProcessPoolExecutor does.

The ``test_differential_*`` modules split one suite by concern (futures, map, shutdown,
constructor, pickling and the intended differences, crashes and threads, the public API).
Each scenario runs on both classes and asserts one observable outcome: either the
executor class is a parameter and both must pass the same assertions, or a scenario
runs on both and the two outcomes are compared. Scenarios whose behaviour depends on
the start method run under fork, forkserver and spawn (the ``mp_context`` fixture):
pickling of initializers and functions, how workers start (all at once under fork, on
demand otherwise), shutdown, a dropped executor, dying workers. The others, the
Executor API's bookkeeping (futures, callbacks, map's order, constructor checks), use
an explicit fork context (the fastest; never the default).

Tasks that must still be pending or running when the test acts block on a ``Gate``
(a file the test creates), not on a sleep, so nothing here depends on timing. The
fixtures ``executor_cls``, ``make_pool`` and ``gate`` live in ``conftest.py``.

Where SharedArrayExecutor differs on purpose, the test asserts each class's own
behaviour and its docstring says "intended improvement": lambdas and local functions
(cloudpickle), a result that fails to unpickle (fails one future, not the pool), the
byte order of strided byte-swapped arrays, and np.memmap arguments (the file itself).
``map(buffersize=...)`` is Python 3.14's; PPE runs those tests only from 3.14.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks

TIMEOUT = 60
SHORT = 0.3  # seconds, for waits that must time out (the tasks are blocked on a gate)
SETTLE = 10  # seconds, for futures that are cancelled or trivial once the gate is open
BIG = 1 << 18  # float64 elements: 2 MiB, above the default min_nbytes, so it is copied to shm
FORK = multiprocessing.get_context("fork")
EXECUTORS = [ProcessPoolExecutor, zc.SharedArrayExecutor]
SAE = zc.SharedArrayExecutor
PPE = ProcessPoolExecutor
ROOT = Path(__file__).resolve().parents[2]

needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="max_tasks_per_child is new in 3.11")


class Gate:
    """A cross-process gate made of files: tasks block until the test opens it."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.release = str(directory / "release")
        self.started = str(directory / "started")

    def open(self) -> None:
        Path(self.release).touch()

    def wait_started(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(self.started):
            assert time.monotonic() < deadline, "the blocking task never started"
            time.sleep(0.01)


def error_of(call: Callable[[], object]) -> tuple[type[BaseException], str] | None:
    """The type and message of what call raises (None if it returns)."""
    try:
        call()
    except Exception as exc:  # compared by the caller, not swallowed
        return type(exc), str(exc)
    return None


def big(value: float) -> np.ndarray:
    return np.full(BIG, value, dtype=np.float64)


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def shut_down_cancelling_behind_a_running_task(
    executor: ProcessPoolExecutor, gate: Gate
) -> tuple[Future[Any], list[Future[Any]]]:
    """Start a blocking task and six behind it, shutdown(wait=False, cancel_futures=True), open the gate."""
    running = executor.submit(_tasks.block_until, gate.release, gate.started, "first")
    others = [executor.submit(_tasks.double, i) for i in range(6)]
    gate.wait_started()
    executor.shutdown(wait=False, cancel_futures=True)
    gate.open()
    return running, others
