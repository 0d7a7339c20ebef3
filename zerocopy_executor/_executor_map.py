"""map(): chunks submitted ahead of the consumer, results yielded in order.

As ProcessPoolExecutor.map, with Python 3.14's *buffersize* on every version
(gh-74028): at most that many tasks (chunks) are submitted ahead of the results
consumed, so a generator of large arrays is read lazily instead of all at once.
How each chunk is sent is the executor's business (ChunkSubmitter); a chunk whose
reply could not be decoded raises here, at its place in the results.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Protocol

from ._replies import DecodeFailure

__all__ = ["Chunk", "ChunkSubmitter", "check_map_arguments", "map_chunks"]

Chunk = tuple[tuple[Any, ...], ...]  # argument tuples


class ChunkSubmitter(Protocol):
    """Sends map()'s chunks; its future's result is the chunk's list of results."""

    def submit_next(self, chunks: Iterator[Chunk]) -> Future[list[Any]] | None:
        """Submit the next chunk; None if there is none, or the executor is gone."""

    def cancel(self, future: Future[list[Any]]) -> None:
        """Cancel a chunk's future, if it has not started."""


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


def _batched(iterable: Iterable[Any], n: int) -> Iterator[Chunk]:
    iterator = iter(iterable)
    while batch := tuple(itertools.islice(iterator, n)):
        yield batch


def _chunk_results(tasks: ChunkSubmitter, future: Future[Any], timeout: float | None) -> list[Any]:
    try:
        results: list[Any] | DecodeFailure = future.result(timeout)
    except BaseException:  # a timeout, or Ctrl-C: the chunk is not wanted any more
        tasks.cancel(future)
        raise
    finally:
        del future  # do not keep the results alive through this frame
    if type(results) is DecodeFailure:
        raise results.error
    return results  # type: ignore[return-value]  # not a DecodeFailure


def map_chunks(
    tasks: ChunkSubmitter,
    iterables: tuple[Iterable[Any], ...],
    *,
    timeout: float | None,
    chunksize: int,
    buffersize: int | None,
) -> Iterator[Any]:
    """Submit map()'s chunks, all at once or buffersize ahead of the consumer; yield results in order."""
    end_time = None if timeout is None else timeout + time.monotonic()
    chunks = _batched(zip(*iterables, strict=False), chunksize)
    futures: collections.deque[Future[list[Any]]] = collections.deque()
    while buffersize is None or len(futures) < buffersize:
        first = tasks.submit_next(chunks)
        if first is None:
            break
        futures.append(first)
    del first

    def result_iterator() -> Iterator[Any]:
        try:
            futures.reverse()  # pop() from the right yields in submission order
            while futures:
                if buffersize is not None and (ahead := tasks.submit_next(chunks)) is not None:
                    futures.appendleft(ahead)  # still ahead when it is popped: no reference kept
                remaining = None if end_time is None else end_time - time.monotonic()
                results = _chunk_results(tasks, futures.pop(), remaining)
                results.reverse()
                while results:  # hold no result once yielded, as ProcessPoolExecutor.map
                    yield results.pop()
        finally:
            for future in futures:
                tasks.cancel(future)

    return result_iterator()
