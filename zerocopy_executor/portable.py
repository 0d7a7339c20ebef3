"""One code path for every ``concurrent.futures`` executor, across the differences that bite.

A library function that takes an ``executor`` argument should run unchanged on
``ProcessPoolExecutor``, ``SharedArrayExecutor`` and executors that only follow the
``concurrent.futures.Executor`` interface loosely, such as dask.distributed's
``Client.get_executor()``. These two functions smooth over what differs:

- :func:`map` takes any iterables (generators, ``itertools.repeat``) and *buffersize*
  on every executor and every Python. dask's ``map`` needs iterables with a length,
  takes no *buffersize*, and submits everything at once; ``ProcessPoolExecutor`` has
  *buffersize* only from Python 3.14.
- :func:`submit` passes every keyword argument to the function. dask's ``submit`` takes
  some for itself (``key``, ``workers``, ``resources``, ``retries``, ``priority``,
  ``pure``, ...) without telling the function.

Executors of the standard library's two families (``SharedArrayExecutor`` is a
``ProcessPoolExecutor``) are called directly, so they keep their own fast paths; any
other executor is driven through its ``submit`` alone. This module needs nothing but
the standard library, so code that uses it runs where zerocopy_executor's workers are
not installed (a dask cluster's workers need only the functions they run).
"""

from __future__ import annotations

import collections
import functools
import inspect
import itertools
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

from ._executor_map import check_map_arguments

__all__ = ["map", "submit"]

T = TypeVar("T")


def submit(executor: Executor, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
    """Schedule ``fn(*args, **kwargs)`` on any executor, every keyword argument reaching fn.

    Args:
        executor: Any ``concurrent.futures.Executor``.
        fn: The callable to run.
        *args: Its positional arguments.
        **kwargs: Its keyword arguments. For an executor outside the standard library's
            families they are bound to fn with ``functools.partial``, so that an executor
            which reads some keywords of ``submit`` itself (dask's reads ``key``,
            ``pure``, ``retries``...) cannot take them.

    Returns:
        The executor's future for the call.
    """
    if kwargs and not _is_standard(executor):
        return executor.submit(functools.partial(fn, **kwargs), *args)
    return executor.submit(fn, *args, **kwargs)


def map(  # shadows the builtin on purpose: called as portable.map, it stands in for Executor.map
    executor: Executor,
    fn: Callable[..., T],
    *iterables: Iterable[Any],
    timeout: float | None = None,
    chunksize: int = 1,
    buffersize: int | None = None,
) -> Iterator[T]:
    """Return an iterator of fn applied to the items of the iterables, in order, on any executor.

    ``executor.map`` as Python 3.14 defines it, for every executor and every Python:
    any iterables (the shortest one ends the map) and *buffersize*.

    Args:
        executor: Any ``concurrent.futures.Executor``.
        fn: A callable that will take as many arguments as there are passed iterables.
        *iterables: The argument iterables: lists, generators, ``itertools.repeat``...
        timeout: The maximum number of seconds to wait, from this call. If None, then
            there is no limit on the wait time.
        chunksize: Passed on to a ``ProcessPoolExecutor``'s own ``map``, which sends
            that many calls per task; ignored elsewhere, as ``ThreadPoolExecutor`` does.
        buffersize: The number of submitted calls whose results have not yet been
            yielded. If the buffer is full, iteration over the iterables pauses until a
            result is yielded from the buffer, so a generator of large arrays is read
            lazily and memory stays bounded. If None, every call is submitted at once.

    Returns:
        An iterator equivalent to ``map(fn, *iterables)``; the calls may be evaluated
        out of order. Closing it early cancels the calls not yet started.

    Raises:
        TimeoutError: If the entire result iterator could not be generated before the
            given timeout (``concurrent.futures.TimeoutError`` before Python 3.11).
        Exception: If ``fn(*args)`` raises for any values.
        ValueError: If *chunksize* < 1 or *buffersize* < 1.
        TypeError: If *buffersize* is not an integer or None.
    """
    check_map_arguments(chunksize, buffersize)  # the errors every executor's map gives
    if _is_standard(executor) and (buffersize is None or _map_takes_buffersize(executor)):
        extra = {} if buffersize is None else {"buffersize": buffersize}
        return executor.map(fn, *iterables, timeout=timeout, chunksize=chunksize, **extra)
    return _map_by_submit(executor, fn, iterables, timeout, buffersize)


def _is_standard(executor: Executor) -> bool:
    """Whether the executor is of the standard library's families, which follow its contract."""
    return isinstance(executor, (ProcessPoolExecutor, ThreadPoolExecutor))


def _map_takes_buffersize(executor: Executor) -> bool:
    """Whether executor.map has *buffersize*: SharedArrayExecutor always, the standard library from 3.14."""
    return "buffersize" in inspect.signature(executor.map).parameters


def _map_by_submit(
    executor: Executor,
    fn: Callable[..., T],
    iterables: tuple[Iterable[Any], ...],
    timeout: float | None,
    buffersize: int | None,
) -> Iterator[T]:
    """Executor.map of Python 3.14 (gh-74028), through submit() alone."""
    end_time = None if timeout is None else timeout + time.monotonic()
    calls = zip(*iterables, strict=False)
    # Submitted here, not when iteration starts, as Executor.map does: a caller that
    # never iterates still gets its calls run, and submit's errors surface at once.
    futures = collections.deque(executor.submit(fn, *args) for args in itertools.islice(calls, buffersize))
    # A weak reference, so that an unfinished iterator does not keep the executor alive.
    executor_ref = weakref.ref(executor)

    def result_iterator() -> Iterator[T]:
        try:
            while futures:
                if buffersize is not None and (live := executor_ref()) is not None:
                    args = next(calls, None)
                    if args is not None:
                        futures.append(live.submit(fn, *args))
                    del live
                remaining = None if end_time is None else end_time - time.monotonic()
                yield _result_or_cancel(futures.popleft(), remaining)
        finally:
            for future in futures:
                future.cancel()

    return result_iterator()


def _result_or_cancel(future: Future[T], timeout: float | None) -> T:
    """The future's result; cancel it if that raised (a timeout), and keep no reference."""
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        del future  # the result must not stay alive through this frame once yielded
