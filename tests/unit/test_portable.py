"""portable.map and portable.submit: one code path across executors that differ (threads only here)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest

from zerocopy_executor import portable

TIMEOUT = 10


class LooseExecutor(futures.Executor):
    """Follows the Executor interface as loosely as dask.distributed's ClientExecutor does.

    submit() takes ``key`` and ``pure`` for itself; map() needs iterables with a length,
    rejects *buffersize* and submits everything at once. Runs on threads.
    """

    def __init__(self, workers: int = 2) -> None:
        self._threads = futures.ThreadPoolExecutor(workers)
        self.futures: list[futures.Future[Any]] = []

    @property
    def submitted(self) -> int:
        return len(self.futures)

    def submit(self, fn, /, *args, key=None, pure=True, **kwargs):
        future = self._threads.submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        lengths = [len(it) for it in iterables]  # TypeError for an iterator, as dask's
        assert len(set(lengths)) <= 1
        return self._threads.map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait=True):  # no cancel_futures, as dask's
        self._threads.shutdown(wait=wait)


class CountingSource:
    """An endless iterator that records how many items were taken."""

    def __init__(self) -> None:
        self.taken = 0

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        self.taken += 1
        return self.taken


def call(x: Any, key: Any = None, pure: Any = None) -> tuple[Any, Any, Any]:
    return x, key, pure


def add(x: int, y: int) -> int:
    return x + y


def fail_on_three(x: int) -> int:
    if x == 3:
        msg = "three"
        raise ValueError(msg)
    return x


@pytest.fixture
def loose() -> Iterator[LooseExecutor]:
    executor = LooseExecutor()
    try:
        yield executor
    finally:
        executor.shutdown()


@pytest.fixture
def threads() -> Iterator[futures.ThreadPoolExecutor]:
    with futures.ThreadPoolExecutor(2) as executor:
        yield executor


def test_loose_executor_takes_keywords_for_itself(loose):
    """The stand-in behaves as dask's executor: submit's key= never reaches the function."""
    assert loose.submit(call, 1, key="k").result(TIMEOUT) == (1, None, None)


def test_submit_passes_reserved_keywords_to_the_function(loose):
    """portable.submit hands key= and pure= to the function, not to the executor."""
    future = portable.submit(loose, call, 1, key="k", pure=False)
    assert future.result(TIMEOUT) == (1, "k", False)


def test_submit_calls_standard_executors_directly(threads):
    """On a standard executor, portable.submit is executor.submit (no partial in between)."""
    future = portable.submit(threads, call, 2, key=len)
    assert future.result(TIMEOUT) == (2, len, None)


def test_map_accepts_iterators_on_a_loose_executor(loose):
    """A generator and itertools.repeat, which a loose map rejects, work through portable.map."""
    with pytest.raises(TypeError):
        loose.map(add, [1, 2], itertools.repeat(10))
    results = portable.map(loose, add, (i for i in range(5)), itertools.repeat(10), timeout=TIMEOUT)
    assert list(results) == [10, 11, 12, 13, 14]


def test_map_buffersize_bounds_items_taken(loose):
    """With buffersize=2 an endless source is read at most buffersize + 1 items ahead."""
    source = CountingSource()
    results = portable.map(loose, add, source, itertools.repeat(0), buffersize=2, timeout=TIMEOUT)
    assert source.taken == 2  # submitted at the call, before iteration
    assert list(itertools.islice(results, 5)) == [1, 2, 3, 4, 5]
    assert source.taken <= 5 + 2
    results.close()


def test_map_buffersize_on_a_standard_executor_without_it(threads):
    """Where the standard map lacks buffersize (before 3.14), portable.map still bounds the look-ahead."""
    source = CountingSource()
    results = portable.map(threads, add, source, itertools.repeat(1), buffersize=3, timeout=TIMEOUT)
    assert list(itertools.islice(results, 4)) == [2, 3, 4, 5]
    assert source.taken <= 4 + 3
    results.close()


def test_map_without_buffersize_submits_everything_at_once(loose):
    """As Executor.map: every call is submitted when map is called, before iteration."""
    results = portable.map(loose, add, range(6), range(6))
    assert loose.submitted == 6
    assert list(results) == [0, 2, 4, 6, 8, 10]


def test_map_raises_the_functions_error_at_its_place(loose):
    """Results before the failing call are yielded; its exception is raised in order."""
    results = portable.map(loose, fail_on_three, range(6), buffersize=2, timeout=TIMEOUT)
    assert next(results) == 0
    assert next(results) == 1
    assert next(results) == 2
    with pytest.raises(ValueError, match="three"):
        next(results)


def test_map_close_cancels_calls_not_started(loose):
    """Closing the iterator after its first result cancels the calls still queued."""
    gate = threading.Event()
    try:
        results = portable.map(loose, gate.wait, [0] + [TIMEOUT] * 5)
        assert next(results) is False  # the first call does not wait
        results.close()
        queued = loose.futures[3:]  # behind the 2 threads that wait on the gate
        assert all(future.cancelled() for future in queued)
    finally:
        gate.set()


def test_map_timeout_raises_and_cancels(loose):
    """A timeout raises TimeoutError at the first late result and cancels the queued calls."""
    gate = threading.Event()
    try:
        results = portable.map(loose, gate.wait, [TIMEOUT] * 4, timeout=0.01)
        with pytest.raises(futures.TimeoutError):
            next(results)
        assert all(future.cancelled() for future in loose.futures[2:])
    finally:
        gate.set()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"chunksize": 0}, ValueError, "chunksize must be >= 1."),
        ({"buffersize": 0}, ValueError, "buffersize must be None or > 0"),
        ({"buffersize": 1.5}, TypeError, "buffersize must be an integer or None"),
    ],
)
def test_map_checks_its_arguments(loose, kwargs, error, match):
    """Bad chunksize or buffersize raise at the call, in ProcessPoolExecutor.map's words."""
    with pytest.raises(error, match=match):
        portable.map(loose, add, [1], [2], **kwargs)
    assert loose.submitted == 0
