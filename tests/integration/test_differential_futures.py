"""submit() and its futures behave as ProcessPoolExecutor's: results, exceptions, callbacks, waits.

The two classes are compared as tests/integration/_differential.py describes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import operator
import os
import sys
import threading
from concurrent.futures.process import _RemoteTraceback
from typing import Any

import numpy as np
import pytest

from tests import _tasks
from tests.integration._differential import (
    BIG,
    FORK,
    SAE,
    SHORT,
    TIMEOUT,
    big,
)

# --- submit, result, exceptions ------------------------------------------------------


def test_submit_returns_result_under_every_start_method(executor_cls, mp_context):
    """submit() returns a Future whose result is the call's value, arrays included."""
    with executor_cls(2, mp_context=mp_context) as executor:
        plain = executor.submit(_tasks.add, 2, 3)
        array = executor.submit(_tasks.total, big(1.5))
        keywords = executor.submit(_tasks.echo_kwargs, 1, fn="f", self="s")
        assert isinstance(plain, cf.Future)
        assert plain.result(timeout=TIMEOUT) == 5
        assert array.result(timeout=TIMEOUT) == 1.5 * BIG
        assert keywords.result(timeout=TIMEOUT) == ((1,), {"fn": "f", "self": "s"})
        returned = executor.submit(_tasks.make_plain, BIG, 2.0).result(timeout=TIMEOUT)
        np.testing.assert_array_equal(returned, big(2.0))


def test_submit_accepts_every_kind_of_picklable_callable(make_pool):
    """Partials, builtins, bound and unbound methods, classes and NumPy functions all run."""
    executor = make_pool()
    calls = [
        (functools.partial(_tasks.add, 10), (5,), 15),
        (operator.mul, (6, 7), 42),
        (str.upper, ("abc",), "ABC"),
        ("a-b".split, ("-",), ["a", "b"]),
        (_tasks.CustomError, (1, "x"), None),
        (np.sum, (np.arange(5),), 10),
        (max, ([3, 9, 4],), 9),
    ]
    for fn, args, expected in calls:
        result = executor.submit(fn, *args).result(timeout=TIMEOUT)
        if expected is None:
            assert type(result) is _tasks.CustomError
            assert result.args == (1, "x")
        else:
            assert result == expected, fn


def test_max_workers_bounds_the_worker_processes(make_pool, mp_context):
    """Tasks run in at most max_workers processes, none of them the caller, however workers start."""
    executor = make_pool(max_workers=2, mp_context=mp_context)
    pids = set(executor.map(_tasks.pid, range(20), timeout=TIMEOUT))
    assert 1 <= len(pids) <= 2
    assert os.getpid() not in pids


def test_exception_keeps_type_message_and_remote_traceback(make_pool):
    """A task's exception keeps its type and message, with the worker traceback as __cause__."""
    executor = make_pool()
    future = executor.submit(_tasks.raise_value_error, "boom 42")
    exc = future.exception(timeout=TIMEOUT)
    assert type(exc) is ValueError
    assert str(exc) == "boom 42"
    assert isinstance(exc.__cause__, _RemoteTraceback)
    remote = str(exc.__cause__)
    assert "raise_value_error" in remote
    assert "raise ValueError(message)" in remote
    assert "ValueError: boom 42" in remote
    with pytest.raises(ValueError, match=r"^boom 42$"):
        future.result(timeout=TIMEOUT)


@pytest.mark.parametrize("method", ["from_classmethod", "from_method"])
def test_exception_traceback_of_a_method_shows_its_file_and_line(make_pool, method):
    """A method's remote traceback names its file and shows the raising line (sent by reference)."""
    executor = make_pool()
    target = getattr(_tasks.Raiser if method == "from_classmethod" else _tasks.Raiser(), method)
    exc = executor.submit(target, "boom").exception(timeout=TIMEOUT)
    remote = str(exc.__cause__)
    assert _tasks.differential.__file__ in remote
    assert "raise RuntimeError(message)  # marker:" in remote


def test_exception_traceback_of_a_lambda_shows_its_file_and_line_with_us():
    """Intended improvement: a lambda, sent by value, keeps its file and source line in the traceback."""
    with SAE(1, mp_context=FORK) as executor:
        exc = executor.submit(_tasks.raise_from_lambda, "boom").exception(timeout=TIMEOUT)
    remote = str(exc.__cause__)
    assert "<dynamic-code>" not in remote
    assert f'File "{_tasks.differential.__file__}"' in remote
    assert "# marker: lambda line" in remote


def test_exception_custom_attributes_survive(make_pool):
    """A custom exception comes back as its own class, with its attributes."""
    executor = make_pool()
    exc = executor.submit(_tasks.raise_custom, 7, "detail").exception(timeout=TIMEOUT)
    assert type(exc) is _tasks.CustomError
    assert (exc.code, exc.detail, exc.args) == (7, "detail", (7, "detail"))
    assert isinstance(exc.__cause__, _RemoteTraceback)


def test_exception_base_exception_subclass_comes_back(make_pool):
    """A task raising SystemExit fails its future with SystemExit; the pool keeps working."""
    executor = make_pool()
    exc = executor.submit(sys.exit, 3).exception(timeout=TIMEOUT)
    assert type(exc) is SystemExit
    # Its args, not .code: importing dask.array installs tblib's exception pickling
    # (dask/multiprocessing.py), which rebuilds SystemExit without its code, for
    # ProcessPoolExecutor as for us, whenever a test before this one imported dask.
    assert exc.args == (3,)
    assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3


def test_done_callback_called_once_with_the_future(make_pool, gate):
    """A done callback runs once with the future itself, also when added after completion."""
    executor = make_pool()
    calls: list[cf.Future[Any]] = []
    called = threading.Event()

    def record(f: cf.Future[Any]) -> None:
        calls.append(f)
        called.set()

    future = executor.submit(_tasks.block_until, gate.release, None, "v")
    future.add_done_callback(record)
    assert calls == []
    gate.open()
    assert future.result(timeout=TIMEOUT) == "v"
    assert called.wait(TIMEOUT)
    assert calls == [future]
    late: list[cf.Future[Any]] = []
    future.add_done_callback(late.append)  # runs at once, in this thread
    assert late == [future]


def test_done_callback_can_submit_a_follow_up_task(make_pool):
    """A done callback may submit another task to the same executor."""
    executor = make_pool()
    follow_up: list[cf.Future[Any]] = []
    submitted = threading.Event()

    def chain(f: cf.Future[Any]) -> None:
        follow_up.append(executor.submit(_tasks.double, f.result()))
        submitted.set()

    executor.submit(_tasks.add, 20, 1).add_done_callback(chain)
    assert submitted.wait(TIMEOUT)
    assert follow_up[0].result(timeout=TIMEOUT) == 42


def test_as_completed_yields_futures_in_completion_order(make_pool, gate):
    """as_completed() yields a finished future before one still blocked, then that one."""
    executor = make_pool()
    blocked = executor.submit(_tasks.block_until, gate.release, None, "late")
    quick = executor.submit(_tasks.double, 21)
    finished = cf.as_completed([blocked, quick], timeout=TIMEOUT)
    assert next(finished) is quick
    gate.open()
    assert next(finished) is blocked
    assert [quick.result(timeout=TIMEOUT), blocked.result(timeout=TIMEOUT)] == [42, "late"]


def test_as_completed_times_out_on_a_blocked_future(make_pool, gate):
    """as_completed() raises TimeoutError when a future does not finish in time."""
    executor = make_pool()
    blocked = executor.submit(_tasks.block_until, gate.release)
    with pytest.raises(cf.TimeoutError):
        list(cf.as_completed([blocked], timeout=SHORT))


def test_wait_first_exception_returns_the_failed_future(make_pool, gate):
    """wait(FIRST_EXCEPTION) returns once a task fails; the blocked one is not done."""
    executor = make_pool()
    blocked = executor.submit(_tasks.block_until, gate.release, None, "ok")
    failing = executor.submit(_tasks.raise_value_error, "fail")
    done, not_done = cf.wait([blocked, failing], timeout=TIMEOUT, return_when=cf.FIRST_EXCEPTION)
    assert (done, not_done) == ({failing}, {blocked})
    gate.open()
    done, not_done = cf.wait([blocked, failing], timeout=TIMEOUT, return_when=cf.ALL_COMPLETED)
    assert (done, not_done) == ({blocked, failing}, set())


def test_wait_times_out_with_the_blocked_future_not_done(make_pool, gate):
    """wait() with a timeout returns the still-blocked future in not_done."""
    executor = make_pool()
    blocked = executor.submit(_tasks.block_until, gate.release)
    assert cf.wait([blocked], timeout=SHORT) == (set(), {blocked})


def test_cancel_succeeds_before_dispatch_and_fails_while_running(make_pool, gate):
    """cancel() is True for a task still waiting for a worker, False for the running one."""
    executor = make_pool(max_workers=1)
    running = executor.submit(_tasks.block_until, gate.release, gate.started, "first")
    # One worker and a call queue of max_workers + 1: the last of these cannot have left
    # the executor's pending queue while the first task blocks.
    queued = [executor.submit(_tasks.double, i) for i in range(5)]
    gate.wait_started()
    cancelled_in_callback: list[bool] = []
    queued[-1].add_done_callback(lambda f: cancelled_in_callback.append(f.cancelled()))
    assert running.running()
    assert running.cancel() is False
    assert queued[-1].cancel() is True
    assert queued[-1].cancelled()
    assert queued[-1].done()
    assert cancelled_in_callback == [True]
    with pytest.raises(cf.CancelledError):
        queued[-1].result(timeout=TIMEOUT)
    gate.open()
    assert running.result(timeout=TIMEOUT) == "first"
    assert [f.result(timeout=TIMEOUT) for f in queued[:-1]] == [0, 2, 4, 6]
    assert not running.cancelled()


def test_future_repr_shows_running_state(make_pool, gate):
    """repr() of a future whose task is running says state=running, as Future's does."""
    executor = make_pool(max_workers=1)
    running = executor.submit(_tasks.block_until, gate.release, gate.started)
    gate.wait_started()
    assert running.running()
    assert "state=running" in repr(running)
    gate.open()
    running.result(timeout=TIMEOUT)
    assert "state=finished returned NoneType" in repr(running)


def test_run_in_executor_awaits_the_result(make_pool):
    """asyncio's loop.run_in_executor() works with the executor and awaits its result."""
    executor = make_pool()

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        calls = [
            loop.run_in_executor(executor, _tasks.add, 1, 2),
            loop.run_in_executor(executor, _tasks.total, big(1)),
        ]
        return await asyncio.wait_for(asyncio.gather(*calls), TIMEOUT)

    assert asyncio.run(main()) == [3, float(BIG)]
