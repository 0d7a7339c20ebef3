"""Differential tests: SharedArrayExecutor does what ProcessPoolExecutor does.

Each scenario runs on both classes and asserts one observable outcome: either the
executor class is a parameter and both must pass the same assertions, or a scenario
runs on both and the two outcomes are compared. Scenarios whose behaviour depends on
the start method run under fork, forkserver and spawn (the ``mp_context`` fixture):
pickling of initializers and functions, how workers start (all at once under fork, on
demand otherwise), shutdown, a dropped executor, dying workers. The others, the
Executor API's bookkeeping (futures, callbacks, map's order, constructor checks), use
an explicit fork context (the fastest; never the default).

Tasks that must still be pending or running when the test acts block on a ``Gate``
(a file the test creates), not on a sleep, so nothing here depends on timing.

Where SharedArrayExecutor differs on purpose, the test asserts each class's own
behaviour and its docstring says "intended improvement": lambdas and local functions
(cloudpickle), a result that fails to unpickle (fails one future, not the pool), the
byte order of strided byte-swapped arrays, and np.memmap arguments (the file itself).
``map(buffersize=...)`` is Python 3.14's; PPE runs those tests only from 3.14.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import gc
import inspect
import itertools
import multiprocessing
import operator
import os
import pickle
import re
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool, _RemoteTraceback
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


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path / "gate")
    yield g
    g.open()


@pytest.fixture(params=EXECUTORS, ids=["ppe", "sae"])
def executor_cls(request: pytest.FixtureRequest) -> type[ProcessPoolExecutor]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make_pool(executor_cls: type[ProcessPoolExecutor], gate: Gate) -> Iterator[Callable[..., Any]]:
    """Build executors of the class under test; open the gate and shut them all down after."""
    created: list[ProcessPoolExecutor] = []

    def make(max_workers: int = 2, mp_context: Any = FORK, **kwargs: Any) -> ProcessPoolExecutor:
        executor = executor_cls(max_workers, mp_context=mp_context, **kwargs)
        created.append(executor)
        return executor

    yield make
    gate.open()
    for executor in created:
        executor.shutdown(wait=True, cancel_futures=True)


def error_of(call: Callable[[], object]) -> tuple[type[BaseException], str] | None:
    """The type and message of what call raises (None if it returns)."""
    try:
        call()
    except Exception as exc:  # compared by the caller, not swallowed
        return type(exc), str(exc)
    return None


def describe(exc: BaseException | None) -> tuple[Any, ...] | None:
    """What a user can see of an exception: type, message, type of its cause."""
    if exc is None:
        return None
    return type(exc), str(exc), type(exc.__cause__)


def big(value: float) -> np.ndarray:
    return np.full(BIG, value, dtype=np.float64)


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
    assert _tasks.__file__ in remote
    assert "raise RuntimeError(message)  # marker:" in remote


def test_exception_traceback_of_a_lambda_shows_its_file_and_line_with_us():
    """Intended improvement: a lambda, sent by value, keeps its file and source line in the traceback."""
    with SAE(1, mp_context=FORK) as executor:
        exc = executor.submit(_tasks.raise_from_lambda, "boom").exception(timeout=TIMEOUT)
    remote = str(exc.__cause__)
    assert "<dynamic-code>" not in remote
    assert f'File "{_tasks.__file__}"' in remote
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


# --- map ---------------------------------------------------------------------------


def test_map_preserves_order_at_every_chunksize(make_pool):
    """map() yields results in input order, whatever the chunksize."""
    executor = make_pool()
    for chunksize in (1, 3, 50):
        results = list(executor.map(_tasks.double, range(20), timeout=TIMEOUT, chunksize=chunksize))
        assert results == [2 * i for i in range(20)], chunksize


def test_map_rejects_chunksize_below_one(make_pool):
    """map() with chunksize < 1 raises the same ValueError."""
    executor = make_pool()
    assert error_of(lambda: executor.map(_tasks.double, range(3), chunksize=0)) == (
        ValueError,
        "chunksize must be >= 1.",
    )


def test_map_timeout_raises_timeout_error(make_pool, gate):
    """Iterating map() raises TimeoutError once its timeout has passed."""
    executor = make_pool()
    results = executor.map(_tasks.block_until, [gate.release] * 3, timeout=SHORT)
    with pytest.raises(cf.TimeoutError):
        next(results)


def test_map_exception_surfaces_at_the_failing_chunk(make_pool):
    """map() yields the results before the failing chunk, then raises its exception, then stops."""
    executor = make_pool()
    for chunksize, before in ((1, [0, 10, 20]), (2, [0, 10]), (4, [])):
        results = executor.map(_tasks.fail_on, range(8), [3] * 8, timeout=TIMEOUT, chunksize=chunksize)
        seen = [next(results) for _ in before]
        with pytest.raises(ValueError, match=r"^bad item 3$"):
            next(results)
        assert seen == before, chunksize
        assert list(results) == []


def test_callable_object_state_is_fresh_in_every_task(make_pool):
    """A callable object arrives as its own copy in every task, through map() and submit()."""
    executor = make_pool(max_workers=1)
    counter = _tasks.CallCounter()
    assert list(executor.map(counter, range(4), timeout=TIMEOUT)) == [1, 1, 1, 1]
    assert list(executor.map(counter, range(4), chunksize=2)) == [1, 2, 1, 2]
    assert [executor.submit(counter).result(TIMEOUT) for _ in range(2)] == [1, 1]
    adder = functools.partial(_tasks.add, [1])
    assert executor.submit(adder, [2]).result(TIMEOUT) == [1, 2]
    adder.args[0].append(3)  # a partial's list may change between tasks
    assert executor.submit(adder, [2]).result(TIMEOUT) == [1, 3, 2]


def counted_map(
    executor: ProcessPoolExecutor, fn: Callable[..., Any], items: list[Any]
) -> tuple[list[Any], int]:
    """Run map with submit replaced on the instance, as tqdm's process_map does; count the chunks."""
    calls = []
    original = executor.submit

    def submit(*args: Any, **kwargs: Any) -> cf.Future[Any]:
        future = original(*args, **kwargs)
        future.add_done_callback(calls.append)
        return future

    executor.submit = submit  # type: ignore[method-assign]
    results = list(executor.map(fn, items, timeout=TIMEOUT, chunksize=2))
    wait_for(lambda: len(calls) == (len(items) + 1) // 2)  # done-callbacks may trail the results
    return results, len(calls)


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


@pytest.mark.parametrize("items", [list(range(9)), [big(i) for i in range(3)]], ids=["plain", "arrays"])
def test_map_calls_a_submit_replaced_on_the_instance_for_every_chunk(make_pool, items):
    """A submit() patched on the instance (tqdm's process_map) sees every chunk map sends."""
    results, chunks = counted_map(make_pool(), _tasks.identity, items)
    assert len(results) == len(items)
    assert chunks == (len(items) + 1) // 2


def test_map_calls_a_subclass_submit_for_every_chunk(executor_cls):
    """A subclass that overrides submit() sees every chunk map sends."""
    seen = []

    class Counting(executor_cls):  # type: ignore[valid-type, misc]
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
            seen.append(fn)
            return super().submit(fn, *args, **kwargs)

    with Counting(2, mp_context=FORK) as executor:
        assert list(executor.map(_tasks.double, range(10), chunksize=3)) == [2 * i for i in range(10)]
    assert len(seen) == 4


def test_map_drives_tqdm_process_map_progress(executor_cls):
    """tqdm's executor map counts chunks through a patched submit: its bar reaches the total."""
    concurrent = pytest.importorskip("tqdm.contrib.concurrent")
    tqdm = pytest.importorskip("tqdm")
    bars = []

    class Bar(tqdm.tqdm):  # type: ignore[misc, name-defined]
        def close(self) -> None:
            bars.append(self.n)
            super().close()

    executor_map = concurrent._executor_map  # what process_map runs, with its executor class
    with open(os.devnull, "w") as devnull:
        results = executor_map(
            functools.partial(executor_cls, mp_context=FORK),
            _tasks.double,
            range(12),
            max_workers=2,
            chunksize=3,
            tqdm_class=Bar,
            disable=False,
            file=devnull,
        )
    assert results == [2 * i for i in range(12)]
    assert bars[-1:] == [4]  # one update per chunk


def test_map_multiple_iterables_stop_at_the_shortest(make_pool):
    """map() over iterables of different lengths stops at the shortest, as zip() does."""
    executor = make_pool()
    assert list(executor.map(_tasks.add, range(5), range(10, 13), timeout=TIMEOUT)) == [10, 12, 14]
    assert list(executor.map(_tasks.add, range(3), range(10, 20), chunksize=2)) == [10, 12, 14]


def test_map_empty_iterable_yields_nothing(make_pool):
    """map() over an empty iterable (or no iterable at all) yields nothing."""
    executor = make_pool()
    assert list(executor.map(_tasks.double, [], timeout=TIMEOUT)) == []
    assert list(executor.map(_tasks.double, iter(()), chunksize=4)) == []
    assert list(executor.map(_tasks.pid)) == []


def test_map_consumes_generators(make_pool):
    """map() accepts generators, of scalars and of large arrays, in and out."""
    executor = make_pool()
    scalars = executor.map(_tasks.double, (i for i in range(7)), chunksize=2)
    assert list(scalars) == [0, 2, 4, 6, 8, 10, 12]
    sums = executor.map(_tasks.total, (big(i) for i in range(3)), timeout=TIMEOUT)
    assert list(sums) == [0.0, float(BIG), 2.0 * BIG]
    arrays = list(executor.map(_tasks.make_plain, (BIG for _ in range(2)), (5.0, 6.0), chunksize=2))
    for array, value in zip(arrays, (5.0, 6.0), strict=True):
        np.testing.assert_array_equal(array, big(value))


def has_buffersize(cls: type[ProcessPoolExecutor]) -> bool:
    return "buffersize" in inspect.signature(cls.map).parameters


def test_map_buffersize_yields_what_map_yields(executor_cls):
    """map(buffersize=n) (3.14; ours on every version) yields map()'s results, reading input lazily."""
    if not has_buffersize(executor_cls):
        pytest.skip("ProcessPoolExecutor.map has buffersize from Python 3.14")
    with executor_cls(2, mp_context=FORK) as executor:
        for chunksize in (1, 3):
            results = executor.map(
                _tasks.double, range(10), timeout=TIMEOUT, chunksize=chunksize, buffersize=2
            )
            assert list(results) == [2 * i for i in range(10)]
        endless = executor.map(_tasks.double, itertools.count(), buffersize=2)
        assert list(itertools.islice(endless, 5)) == [0, 2, 4, 6, 8]
        endless.close()
        failing = executor.map(_tasks.fail_on, range(8), [3] * 8, buffersize=2)
        assert [next(failing) for _ in range(3)] == [0, 10, 20]
        with pytest.raises(ValueError, match=r"^bad item 3$"):
            next(failing)


def test_map_buffersize_is_validated_as_in_python_314(executor_cls):
    """A bad buffersize raises 3.14's errors; with a bad chunksize too, the chunksize error wins."""
    if not has_buffersize(executor_cls):
        pytest.skip("ProcessPoolExecutor.map has buffersize from Python 3.14")
    with executor_cls(1, mp_context=FORK) as executor:
        assert error_of(lambda: executor.map(_tasks.double, [], buffersize=0)) == (
            ValueError,
            "buffersize must be None or > 0",
        )
        assert error_of(lambda: executor.map(_tasks.double, [], buffersize="2")) == (
            TypeError,
            "buffersize must be an integer or None",
        )
        # 3.14's ProcessPoolExecutor.map checks chunksize before Executor.map checks buffersize.
        assert error_of(lambda: executor.map(_tasks.double, [], chunksize=0, buffersize=0)) == (
            ValueError,
            "chunksize must be >= 1.",
        )


# --- shutdown and lifetime -----------------------------------------------------------


def test_shutdown_wait_false_lets_pending_futures_finish(make_pool, gate, mp_context):
    """After shutdown(wait=False) the tasks already submitted still run to completion."""
    executor = make_pool(mp_context=mp_context)
    futures = [executor.submit(_tasks.block_until, gate.release, None, i) for i in range(4)]
    executor.shutdown(wait=False)
    gate.open()
    assert [f.result(timeout=TIMEOUT) for f in futures] == [0, 1, 2, 3]


def shut_down_cancelling_behind_a_running_task(executor, gate):
    """Start a blocking task and six behind it, shutdown(wait=False, cancel_futures=True), open the gate."""
    running = executor.submit(_tasks.block_until, gate.release, gate.started, "first")
    others = [executor.submit(_tasks.double, i) for i in range(6)]
    gate.wait_started()
    executor.shutdown(wait=False, cancel_futures=True)
    gate.open()
    return running, others


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


# --- constructor validation ----------------------------------------------------------


def same_construction_error(**kwargs: Any) -> tuple[Any, Any]:
    """Construct both classes with kwargs; return (PPE outcome, SAE outcome)."""

    def build(cls: type[ProcessPoolExecutor]) -> Callable[[], object]:
        def call() -> object:
            executor = cls(**kwargs)
            executor.shutdown()
            return executor

        return call

    return error_of(build(PPE)), error_of(build(SAE))


@pytest.mark.parametrize("max_workers", [0, -1])
def test_constructor_rejects_non_positive_max_workers(max_workers):
    """max_workers <= 0 raises the same ValueError with the same message."""
    ppe, sae = same_construction_error(max_workers=max_workers, mp_context=FORK)
    assert ppe == (ValueError, "max_workers must be greater than 0")
    assert sae == ppe


def test_constructor_rejects_an_uncallable_initializer():
    """A non-callable initializer raises the same TypeError with the same message."""
    ppe, sae = same_construction_error(max_workers=2, mp_context=FORK, initializer=42)
    assert ppe == (TypeError, "initializer must be a callable")
    assert sae == ppe


def test_constructor_checks_max_workers_before_initializer():
    """With both max_workers and initializer invalid, the max_workers error wins, as in PPE."""
    ppe, sae = same_construction_error(max_workers=0, mp_context=FORK, initializer=42)
    assert ppe == (ValueError, "max_workers must be greater than 0")
    assert sae == ppe


@pytest.mark.parametrize("mp_context", ["fork", object(), 3], ids=["str", "object", "int"])
def test_constructor_rejects_a_bad_mp_context(mp_context):
    """An mp_context that is not a multiprocessing context fails the same way."""
    ppe, sae = same_construction_error(max_workers=2, mp_context=mp_context)
    assert ppe is not None
    assert sae == ppe


@needs_311
def test_constructor_rejects_max_tasks_per_child_with_fork():
    """max_tasks_per_child with a fork context raises the same ValueError."""
    ppe, sae = same_construction_error(max_workers=2, mp_context=FORK, max_tasks_per_child=1)
    assert ppe is not None
    assert ppe[0] is ValueError
    assert "fork" in ppe[1]
    assert sae == ppe


@needs_311
@pytest.mark.parametrize("value", [0, -3, "2", 1.5])
def test_constructor_rejects_a_bad_max_tasks_per_child(value):
    """An invalid max_tasks_per_child raises the same error with the same message."""
    context = multiprocessing.get_context("spawn")
    ppe, sae = same_construction_error(max_workers=2, mp_context=context, max_tasks_per_child=value)
    assert ppe is not None
    assert sae == ppe


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="max_tasks_per_child exists from 3.11")
def test_constructor_max_tasks_per_child_before_311_is_a_type_error():
    """Before 3.11 max_tasks_per_child raises TypeError in both (our message is clearer, by design)."""
    context = multiprocessing.get_context("spawn")
    ppe, sae = same_construction_error(max_workers=2, mp_context=context, max_tasks_per_child=1)
    assert ppe is not None
    assert sae is not None
    assert ppe[0] is sae[0] is TypeError


@pytest.mark.parametrize("value", [-1, -(1 << 40)])
def test_constructor_rejects_negative_min_nbytes(value):
    """A negative min_nbytes raises ValueError naming min_nbytes and the value (ours only)."""
    with pytest.raises(ValueError, match="min_nbytes") as info:
        SAE(2, mp_context=FORK, min_nbytes=value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [1.5, "1024", None, True, [1]])
def test_constructor_rejects_non_int_min_nbytes(value):
    """A min_nbytes that is not an int raises TypeError naming min_nbytes (ours only)."""
    with pytest.raises(TypeError, match="min_nbytes"):
        SAE(2, mp_context=FORK, min_nbytes=value)


def test_constructor_accepts_zero_min_nbytes():
    """min_nbytes=0 is valid (every non-empty plain array is shared)."""
    with SAE(2, mp_context=FORK, min_nbytes=0) as executor:
        assert executor.submit(_tasks.total, np.ones(3)).result(timeout=TIMEOUT) == 3.0


# --- initializer and max_tasks_per_child ---------------------------------------------


def test_initializer_sets_globals_read_by_tasks(executor_cls, mp_context):
    """A global set by the initializer is what submitted and mapped tasks read."""
    with executor_cls(
        2, mp_context=mp_context, initializer=_tasks.set_global, initargs=("from initializer",)
    ) as executor:
        assert executor.submit(_tasks.get_global).result(timeout=TIMEOUT) == "from initializer"
        assert list(executor.map(_tasks.get_global, range(4), timeout=TIMEOUT)) == ["from initializer"] * 4


def initializer_failure_outcome(cls: type[ProcessPoolExecutor], context: Any) -> tuple[Any, ...]:
    executor = cls(2, mp_context=context, initializer=_tasks.raise_value_error, initargs=("init failed",))
    errors: list[Any] = []
    try:
        for i in range(3):
            # The pool may already be broken by the time of a later submit (under fork
            # the initializer fails at once): then submit itself raises.
            try:
                future = executor.submit(_tasks.add, i, i)
            except BrokenProcessPool as exc:
                errors.append(type(exc))
            else:
                errors.append(type(future.exception(timeout=TIMEOUT)))
        late = error_of(lambda: executor.submit(_tasks.add, 1, 1))
    finally:
        executor.shutdown(wait=True)
    return tuple(errors), late


def test_initializer_failure_breaks_the_pool(mp_context):
    """A raising initializer fails pending tasks and new submits with BrokenProcessPool."""
    for cls in (PPE, SAE):
        errors, late = initializer_failure_outcome(cls, mp_context)
        assert errors == (BrokenProcessPool,) * 3, cls
        assert late is not None
        assert late[0] is BrokenProcessPool, cls


@needs_311
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_max_tasks_per_child_replaces_workers(executor_cls, method):
    """With max_tasks_per_child=1 every task runs in a fresh worker (distinct pids)."""
    context = multiprocessing.get_context(method)
    with executor_cls(1, mp_context=context, max_tasks_per_child=1) as executor:
        pids = [executor.submit(_tasks.pid).result(timeout=TIMEOUT) for _ in range(3)]
        assert executor.submit(_tasks.total, big(1)).result(timeout=TIMEOUT) == float(BIG)
    assert len(set(pids)) == 3
    assert os.getpid() not in pids


# --- what cannot be pickled ----------------------------------------------------------


def test_unpicklable_argument_fails_only_that_future(executor_cls):
    """An argument that cannot be pickled fails its own future; the pool keeps working."""
    with executor_cls(2, mp_context=FORK) as executor:
        future = executor.submit(_tasks.identity, (big(1), threading.Lock()))
        exc = future.exception(timeout=TIMEOUT)
        assert type(exc) is TypeError
        assert str(exc) == "cannot pickle '_thread.lock' object"
        assert isinstance(exc.__cause__, _RemoteTraceback)
        keyword = executor.submit(_tasks.echo_kwargs, lock=threading.Lock()).exception(timeout=TIMEOUT)
        assert type(keyword) is TypeError
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3
        assert executor.submit(_tasks.total, big(2)).result(timeout=TIMEOUT) == 2.0 * BIG


def test_unpicklable_result_fails_only_that_future(executor_cls):
    """A result that cannot be pickled fails its own future; the pool keeps working."""
    with executor_cls(2, mp_context=FORK) as executor:
        exc = executor.submit(_tasks.return_lock).exception(timeout=TIMEOUT)
        assert type(exc) is TypeError
        assert str(exc) == "cannot pickle '_thread.lock' object"
        assert isinstance(exc.__cause__, _RemoteTraceback)
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3
        np.testing.assert_array_equal(
            executor.submit(_tasks.identity, big(4)).result(timeout=TIMEOUT), big(4)
        )


def array_flags_outcome(cls: type[ProcessPoolExecutor]) -> dict[str, Any]:
    small = np.arange(10.0)
    small.setflags(write=False)
    large = big(1)
    large.setflags(write=False)
    with cls(1, mp_context=FORK) as executor:
        return {
            "small argument": executor.submit(_tasks.array_kind, small).result(timeout=TIMEOUT),
            "large argument": executor.submit(_tasks.array_kind, large).result(timeout=TIMEOUT),
            "small result": executor.submit(_tasks.identity, small).result(timeout=TIMEOUT).flags.writeable,
            "large result": executor.submit(_tasks.identity, large).result(timeout=TIMEOUT).flags.writeable,
        }


def test_read_only_arrays_arrive_as_they_do_in_process_pool_executor():
    """A read-only array argument or result arrives as writable (or not) as with PPE, whatever its size."""
    assert array_flags_outcome(SAE) == array_flags_outcome(PPE)


def test_read_only_view_of_a_shared_array_arrives_read_only_on_every_python():
    """Intended difference before 3.14: a read-only shared argument is the same memory, still read-only."""
    shared = zc.zeros(BIG)
    view = shared[::2]
    view.setflags(write=False)
    with SAE(1, mp_context=FORK) as executor:
        assert executor.submit(_tasks.array_kind, view).result(timeout=TIMEOUT) == ("ndarray", False)
        assert executor.submit(_tasks.array_kind, shared).result(timeout=TIMEOUT) == ("ndarray", True)
    del view, shared


def test_same_object_twice_arrives_as_one_object(executor_cls):
    """An object passed twice in one call, or returned twice, arrives as one object (pickle memo)."""
    with executor_cls(2, mp_context=FORK) as executor:
        for value in (big(1), np.arange(4.0), [1, 2]):
            assert executor.submit(_tasks.same_object, value, value).result(timeout=TIMEOUT) is True
            first, second = executor.submit(_tasks.identity, (value, value)).result(timeout=TIMEOUT)
            assert first is second


def test_memmap_argument_is_the_file_itself_with_us(tmp_path):
    """Intended difference: a file memmap travels by reference (as joblib's); PPE hands over a copy."""
    mapped = np.memmap(tmp_path / "data.bin", dtype=np.float64, mode="w+", shape=(BIG,))
    mapped[:] = 3.0
    outcomes = {}
    for cls in EXECUTORS:
        with cls(1, mp_context=FORK) as executor:
            assert executor.submit(_tasks.total, mapped).result(timeout=TIMEOUT) == 3.0 * BIG
            kind = executor.submit(_tasks.array_kind, mapped).result(timeout=TIMEOUT)
            executor.submit(_tasks.fill_slice, mapped, 0, 10, 7.0).result(timeout=TIMEOUT)
            outcomes[cls] = (kind, float(mapped[0]))
        mapped[:] = 3.0
    assert outcomes == {PPE: (("memmap", True), 3.0), SAE: (("memmap", True), 7.0)}
    del mapped


def test_small_memmap_argument_is_pickled_as_a_memmap_as_with_process_pool_executor(tmp_path):
    """A np.memmap under min_nbytes is pickled as before: it arrives as a memmap, as with PPE."""
    mapped = np.memmap(tmp_path / "small.bin", dtype=np.float64, mode="w+", shape=(100,))
    mapped[:] = 5.0
    seen = {}
    for cls in EXECUTORS:
        with cls(1, mp_context=FORK) as executor:
            kind = executor.submit(_tasks.array_kind, mapped).result(timeout=TIMEOUT)
            seen[cls] = (*kind, executor.submit(_tasks.total, mapped).result(timeout=TIMEOUT))
    assert seen[SAE] == seen[PPE]
    assert seen[SAE][0] == "memmap"
    assert seen[SAE][2] == 500.0
    del mapped


def test_lambda_initializer_runs_with_us_under_every_start_method(mp_context):
    """Intended improvement: a lambda initializer runs here under every method; PPE only under fork."""
    initializer = lambda: _tasks.set_global("set by a lambda")  # noqa: E731 - a lambda is the point
    with SAE(1, mp_context=mp_context, initializer=initializer) as executor:
        assert executor.submit(_tasks.get_global).result(timeout=TIMEOUT) == "set by a lambda"
    if mp_context.get_start_method() == "fork":  # PPE hands the initializer over by fork, unpickled
        with PPE(1, mp_context=mp_context, initializer=initializer) as executor:
            assert executor.submit(_tasks.get_global).result(timeout=TIMEOUT) == "set by a lambda"
    else:
        with (
            pytest.raises((pickle.PicklingError, AttributeError), match="lambda"),
            PPE(1, mp_context=mp_context, initializer=initializer) as executor,
        ):
            executor.submit(_tasks.get_global).result(timeout=TIMEOUT)


def test_strided_byte_swapped_array_keeps_its_dtype_with_us():
    """Intended improvement: PPE turns a strided >i4 array into <i4 (NumPy pickling), we keep >i4."""
    strided = np.arange(20, dtype=">i4")[::2]
    dtypes = {}
    for cls in EXECUTORS:
        with cls(1, mp_context=FORK) as executor:
            back = executor.submit(_tasks.identity, strided).result(timeout=TIMEOUT)
        np.testing.assert_array_equal(back, strided)
        dtypes[cls] = back.dtype.str
    assert dtypes == {PPE: "<i4", SAE: ">i4"}


def test_lambda_runs_with_us_but_not_with_process_pool_executor():
    """Intended improvement: a lambda fails to pickle in PPE but runs here (cloudpickle)."""
    with PPE(2, mp_context=FORK) as executor:
        exc = executor.submit(lambda x: x + 1, 1).exception(timeout=TIMEOUT)
        # PicklingError before 3.12 and from 3.14; AttributeError ("Can't pickle local object") between.
        assert isinstance(exc, (pickle.PicklingError, AttributeError)), repr(exc)
        assert "lambda" in str(exc), repr(exc)
    with SAE(2, mp_context=FORK) as executor:
        assert executor.submit(lambda x: x + 1, 1).result(timeout=TIMEOUT) == 2


def test_local_initializer_runs_under_spawn_with_us():
    """Intended improvement: under spawn PPE cannot pickle a local-function initializer, ours runs it."""
    spawn = multiprocessing.get_context("spawn")

    def initializer() -> None:
        _tasks.set_global("set by a local function")

    # PicklingError before 3.12 and from 3.14; AttributeError ("Can't get local object") between.
    with (
        pytest.raises((pickle.PicklingError, AttributeError), match="initializer"),
        PPE(1, mp_context=spawn, initializer=initializer) as executor,
    ):
        executor.submit(_tasks.get_global).result(timeout=TIMEOUT)
    with SAE(1, mp_context=spawn, initializer=initializer) as executor:
        assert executor.submit(_tasks.get_global).result(timeout=TIMEOUT) == "set by a local function"


def test_futures_cancelled_by_shutdown_are_done_for_wait_with_us(gate):
    """Futures cancelled by shutdown(cancel_futures=True) count as done for wait() and as_completed()."""
    # A divergence in our favour, so ours only: PPE cancels them without notifying
    # waiters (their state stays CANCELLED, not CANCELLED_AND_NOTIFIED), so wait()
    # and as_completed() never report them done and time out.
    with SAE(1, mp_context=FORK) as executor:
        running, others = shut_down_cancelling_behind_a_running_task(executor, gate)
        assert running.result(timeout=TIMEOUT) == "first"
        done, not_done = cf.wait(others, timeout=SETTLE)
        assert (len(done), not_done) == (6, set())
        assert set(cf.as_completed(others, timeout=SETTLE)) == set(others)
        assert all(f.cancelled() for f in others[2:])


def test_result_failing_to_unpickle_fails_only_that_future_with_us():
    """Intended improvement (fact 6): PPE breaks the pool, we fail only that future."""
    with PPE(2, mp_context=FORK) as executor:
        exc = executor.submit(_tasks.return_only_in_origin).exception(timeout=TIMEOUT)
        assert type(exc) is BrokenProcessPool
        assert "cannot rebuild outside process" in str(exc.__cause__)
        with pytest.raises(BrokenProcessPool):
            executor.submit(_tasks.add, 1, 2)
    with SAE(2, mp_context=FORK) as executor:
        exc = executor.submit(_tasks.return_only_in_origin).exception(timeout=TIMEOUT)
        assert type(exc) is ValueError
        assert str(exc).startswith("cannot rebuild outside process")
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3


@pytest.mark.parametrize(
    ("bad", "error"), [(_tasks.ErrorAtUnpickle, ValueError), (_tasks.ExitAtUnpickle, SystemExit)]
)
def test_argument_failing_to_unpickle_fails_only_that_future_with_us(bad, error):
    """Intended improvement: an argument a worker cannot unpickle breaks PPE's pool; here, one future."""
    with PPE(1, mp_context=FORK) as executor:
        assert type(executor.submit(_tasks.identity, bad()).exception(timeout=TIMEOUT)) is BrokenProcessPool
        with pytest.raises(BrokenProcessPool):
            executor.submit(_tasks.add, 1, 2)
    with SAE(1, mp_context=FORK) as executor:
        assert type(executor.submit(_tasks.identity, bad()).exception(timeout=TIMEOUT)) is error
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3


def test_result_exiting_while_unpickled_fails_only_that_future_with_us():
    """Intended improvement: SystemExit while the parent unpickles a result fails that future, as from fn."""
    with PPE(1, mp_context=FORK) as executor:
        future = executor.submit(_tasks.return_instance, _tasks.ExitAtUnpickle)
        assert type(future.exception(timeout=TIMEOUT)) is BrokenProcessPool
    with SAE(1, mp_context=FORK) as executor:
        future = executor.submit(_tasks.return_instance, _tasks.ExitAtUnpickle)
        assert type(future.exception(timeout=TIMEOUT)) is SystemExit
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3


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


# --- the public surface --------------------------------------------------------------


def public_methods(cls: type) -> dict[str, Any]:
    return {
        name: getattr(cls, name)
        for name in dir(cls)
        if not name.startswith("_") and callable(getattr(cls, name))
    }


def parameters(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """Name, kind and default of each parameter (annotations may differ: we have them, PPE not)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def extends(function: Callable[..., Any], parent: Callable[..., Any]) -> bool:
    """Whether function takes parent's parameters in order, plus only optional keyword-only ones."""
    theirs = parameters(parent)
    mine = parameters(function)
    extra = [p for p in mine if p not in theirs]
    return [p for p in mine if p in theirs] == theirs and all(
        kind is inspect.Parameter.KEYWORD_ONLY and default is not inspect.Parameter.empty
        for _, kind, default in extra
    )


def test_api_keeps_every_public_method_with_its_signature():
    """Every public PPE method (and the constructor) exists on ours and takes the same arguments."""
    ours = public_methods(SAE)
    for name, method in public_methods(PPE).items():
        assert name in ours, name
        assert extends(ours[name], method), name
    for name in ("__init__", "__enter__", "__exit__"):
        assert extends(getattr(SAE, name), getattr(PPE, name)), name


def test_api_map_accepts_the_same_parameters():
    """map() takes PPE's parameters; our only addition is 3.14's keyword-only buffersize."""
    assert extends(SAE.map, PPE.map)
    added = {name for name, _, _ in parameters(SAE.map)} - {name for name, _, _ in parameters(PPE.map)}
    assert added <= {"buffersize"}


def docstring_args(doc: str | None) -> list[str]:
    """The parameter names listed in a Google-style docstring's Args section."""
    text = inspect.cleandoc(doc or "")
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?)+)", text, re.MULTILINE)
    if match is None:
        return []
    return re.findall(r"^ {4}\**(\w+):", match.group(1), re.MULTILINE)


def test_api_docstrings_document_what_the_parent_documents():
    """Public methods keep PPE's docstring, or an override's documents every argument PPE's does."""
    for name, method in public_methods(PPE).items():
        ours = getattr(SAE, name)
        if name not in vars(SAE):
            assert ours.__doc__ == method.__doc__, name
            continue
        assert ours.__doc__, name
        missing = [arg for arg in docstring_args(method.__doc__) if arg not in docstring_args(ours.__doc__)]
        assert missing == [], f"{name}: {missing}"


def test_api_terminate_and_kill_workers_on_every_python():
    """terminate_workers and kill_workers are 3.14's own from 3.14, ours with its docstrings before."""
    for name in ("terminate_workers", "kill_workers"):
        if hasattr(PPE, name):
            assert name not in vars(SAE)
        else:
            assert name in vars(SAE)
            assert "the pool will be in a broken state" in inspect.getdoc(getattr(SAE, name))


def test_api_futures_keep_the_future_docstrings():
    """The futures we return are Futures whose methods keep Future's docstrings."""
    with SAE(1, mp_context=FORK) as executor:
        future = executor.submit(_tasks.add, 1, 2)
        assert future.result(timeout=TIMEOUT) == 3
    assert isinstance(future, cf.Future)
    for name, method in public_methods(cf.Future).items():
        assert getattr(type(future), name).__doc__ == method.__doc__, name
