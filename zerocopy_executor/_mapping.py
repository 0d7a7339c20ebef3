"""map(..., buffersize=N) before Python 3.14: stream an iterable with bounded memory.

Python 3.14 added *buffersize* to ``Executor.map`` (gh-74028): at most that many
tasks (chunks, for a process pool) are submitted ahead of the results consumed, so
a generator of large arrays is read lazily instead of all at once. This module gives
the same semantics, through the executor's public ``submit``, on 3.10 to 3.13.
"""

from __future__ import annotations

import collections
import itertools
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from functools import partial
from typing import Any

__all__ = ["check_map_arguments", "map_with_buffer", "run_chunk"]


def check_map_arguments(chunksize: int, buffersize: object) -> None:
    """Raise the errors ProcessPoolExecutor.map raises for these (3.14 wording)."""
    if chunksize < 1:  # checked first, as ProcessPoolExecutor.map does
        msg = "chunksize must be >= 1."
        raise ValueError(msg)
    if buffersize is not None and not isinstance(buffersize, int):
        msg = "buffersize must be an integer or None"
        raise TypeError(msg)
    if buffersize is not None and buffersize < 1:
        msg = "buffersize must be None or > 0"
        raise ValueError(msg)


def run_chunk(fn: Callable[..., Any], chunk: tuple[tuple[Any, ...], ...]) -> list[Any]:
    """Run fn over one chunk of argument tuples in a worker."""
    return [fn(*args) for args in chunk]


def _batched(iterable: Iterable[Any], n: int) -> Iterator[tuple[Any, ...]]:
    iterator = iter(iterable)
    while batch := tuple(itertools.islice(iterator, n)):
        yield batch


def _result_or_cancel(future: Future[Any], timeout: float | None = None) -> Any:
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        del future  # do not keep the result alive through this frame


def map_with_buffer(  # noqa: PLR0913 - map's own parameters, passed through
    executor: Executor,
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    *,
    timeout: float | None,
    chunksize: int,
    buffersize: int,
) -> Iterator[Any]:
    """Submit chunks lazily, never more than buffersize ahead of the consumer."""
    end_time = None if timeout is None else timeout + time.monotonic()
    chunks = _batched(zip(*iterables, strict=False), chunksize)
    task = partial(run_chunk, fn)
    futures = collections.deque(
        executor.submit(task, chunk) for chunk in itertools.islice(chunks, buffersize)
    )
    executor_ref = weakref.ref(executor)

    def result_iterator() -> Iterator[Any]:
        try:
            futures.reverse()  # pop() from the right yields in submission order
            while futures:
                live = executor_ref()
                chunk = next(chunks, None) if live is not None else None
                if live is not None and chunk is not None:
                    futures.appendleft(live.submit(task, chunk))
                del live
                remaining = None if end_time is None else end_time - time.monotonic()
                yield from _result_or_cancel(futures.pop(), remaining)
        finally:
            for future in futures:
                future.cancel()

    return result_iterator()
