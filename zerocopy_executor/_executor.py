"""SharedArrayExecutor: a ProcessPoolExecutor whose large arrays travel through shared memory.

Data flow of one task, with the module that does each step::

    submit(fn, *args)                                    parent
      └─ _sharing.TaskEnvelope ─ pickled in the call-queue feeder thread, which holds
           about max_workers + 1 items, so shared memory is bounded by the tasks in
           flight. _codec.encode_task → _picklers → _encoding.EncodeSession: large
           plain arrays → one copy into a warm recycled segment, or a new one
           (_pool.ExecutorSegments.allocate → _segments); arrays already shared →
           no copy; either way pickle carries an _arrayref.ArrayRef (reduction);
           the rest → pickle. A warm segment is lent for the result, unless an
           argument was copied into one as large.
                       ═══ pipe: _messages.TaskMessage, a few hundred bytes per array ═══
    _worker.run_task                                     worker
      ├─ _decoding.decode → _arrayref.unpickle: map each segment once (kept mapped
      │          for reuse), rebuild views
      ├─ fn(*args, **kwargs)
      └─ _codec.encode_result → _encoding.EncodeSession: large arrays → into the lent
                        segment or a copied argument's that nothing views any more,
                        else a new segment handed over to the parent (a plain result
                        goes as it is); report views the call kept
                       ═══ pipe: _messages.ReplyMessage ═══
    _future.SharedFuture.set_result(reply)               parent, manager thread
      ├─ _replies.decode_reply → _decoding.decode: map result segments and take
      │          ownership (unlinked when the last view dies), failing only this
      │          future if that goes wrong (an error raised in the manager thread
      │          would break the whole pool)
      ├─ _sharing.TaskEnvelope.settle: the task's segments go back to the pool once
      │          no view is left
      └─ resolve the future the user holds

map() sends a chunk of plain arguments (numbers, strings...) for a function with no
array in it without envelope or SharedFuture: straight to ProcessPoolExecutor.submit,
its results back as they are or as a ChunkReply that decodes itself in the manager
thread (see _replies). Its future is map's own, so no caller sees it. Other chunks go
through submit() as above.

Every segment the executor's processes create carries the executor's tag in its name,
so shutdown() releases whatever a crashed worker left, and workers release everything
if the parent dies (see _namespace). Recycling and its safety rules are described in _pool.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from multiprocessing import resource_tracker
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

from . import _codec, _decoding, _executor_map, _handover, _memfd, _namespace, _segments, _shm
from ._config import DEFAULT_MIN_NBYTES, SharingPolicy
from ._force_shutdown import force_shutdown
from ._future import CancelSafeFuture, SharedFuture
from ._sharing import SharingState, TaskEnvelope, TaskTicket
from ._stats import ExecutorStats
from ._worker import WorkerSetup, initialize, run_chunk, run_plain_chunk, run_task

__all__ = ["SharedArrayExecutor"]

T = TypeVar("T")

# gh-107219: before 3.12 a broken pool's clean-up stops at a cancelled future.
_CANCELLED_FUTURES_BREAK_CLEAN_UP = sys.version_info < (3, 12)
# map() holds a plain chunk's bytes from map() until it is sent: larger chunks go
# through submit(), whose envelope is pickled only when the call-queue feeder thread
# sends it, so what is pinned stays bounded by the tasks in flight.
_PLAIN_CHUNK_MAX_NBYTES = 64 << 10


def _close_in_background(state: SharingState) -> None:
    # A finalizer may run in any thread, even one a pending task needs: never block it.
    # close() waits there for the manager thread, which ends once the tasks are done.
    threading.Thread(target=state.close, name="zerocopy-close").start()


def _close_after_shutdown(state: SharingState, stale_work_items: dict[Any, Any] | None) -> None:
    state.close()  # once the manager thread has joined every worker: no one else owns a segment of ours
    if stale_work_items is not None:
        # After shutdown(cancel_futures=True) ProcessPoolExecutor's manager thread goes on
        # with a new dict of work items, and the executor keeps the old one: every future
        # that finished since, and its result's shared memory, would live as long as the
        # executor. Nothing reads it once that thread is gone.
        stale_work_items.clear()


def require_callable(initializer: object) -> None:
    """Refuse an initializer that is not callable, in ProcessPoolExecutor's words."""
    if initializer is not None and not callable(initializer):
        msg = "initializer must be a callable"  # ProcessPoolExecutor's words
        raise TypeError(msg)


def default_context(max_tasks_per_child: int | None) -> BaseContext:
    """The start method when none is given, as ProcessPoolExecutor picks it (3.11+)."""
    # Workers that exit after some tasks must not be forked.
    if max_tasks_per_child is not None:
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context()


class SharedArrayExecutor(ProcessPoolExecutor):
    """A ProcessPoolExecutor that sends large NumPy arrays through shared memory.

    Arrays in arguments and results, nested anywhere, take one of three paths: arrays
    already in shared memory (made by :func:`zerocopy_executor.empty` and friends, or
    received from another process) travel by reference with no copy; plain arrays of
    at least ``min_nbytes`` are copied once into a new segment; everything else is
    pickled, as ProcessPoolExecutor would. Functions are pickled with cloudpickle, so
    lambdas and functions defined in ``__main__`` work under every start method; a
    result that pickle refuses (a lambda, an instance of a local class) is pickled by
    value too, as loky returns it.

    Args:
        max_workers: as for ProcessPoolExecutor.
        mp_context: as for ProcessPoolExecutor.
        initializer: as for ProcessPoolExecutor; may also be a lambda.
        initargs: as for ProcessPoolExecutor.
        max_tasks_per_child: as for ProcessPoolExecutor (Python 3.11 and newer).
        min_nbytes: plain arrays of at least this many bytes are shared; smaller ones
            are pickled. Defaults to 256 KiB, the measured crossover.

    Raises:
        ValueError: max_workers or min_nbytes is out of range, or max_tasks_per_child
            is used with the fork start method.
        TypeError: initializer is not callable or min_nbytes is not an int.
    """

    def __init__(  # noqa: PLR0913 - ProcessPoolExecutor's signature plus min_nbytes
        self,
        max_workers: int | None = None,
        mp_context: BaseContext | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        min_nbytes: int = DEFAULT_MIN_NBYTES,
    ) -> None:
        policy = SharingPolicy(min_nbytes)
        extra: dict[str, Any] = {}
        if max_tasks_per_child is not None:
            if sys.version_info < (3, 11):
                msg = "max_tasks_per_child requires Python 3.11 or newer; leave it unset"
                raise TypeError(msg)
            extra["max_tasks_per_child"] = max_tasks_per_child
        context = mp_context if mp_context is not None else default_context(max_tasks_per_child)
        inbox = _handover.inbox_address() if _memfd.chosen() else None
        setup = WorkerSetup(
            os.getpid(), policy, initializer, tuple(initargs), _namespace.new_tag(), inbox=inbox
        )
        super().__init__(max_workers, context, initialize, (setup,), **extra)
        # After the parent's own checks (max_workers first), which start nothing.
        require_callable(initializer)
        # Workers must share our resource tracker; under fork they only inherit it if
        # it runs before the first fork; a second tracker would unregister our
        # segments twice or warn of leaks that are not. Without shared memory: no
        # segment to track.
        if not _shm.warn_if_unusable(stacklevel=2):
            resource_tracker.ensure_running()
        self._sharing = SharingState(policy, setup)
        # Dropped without shutdown(): release as shutdown would, once the tasks are done.
        self._close_when_dropped = weakref.finalize(self, _close_in_background, self._sharing)
        self._close_when_dropped.atexit = False  # no thread can start then: _sharing sweeps at exit instead

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Submits a callable to be executed with the given arguments.

        Schedules the callable to be executed as fn(*args, **kwargs) and returns a
        Future instance representing the execution of the callable. Large arrays in
        the arguments and the result travel through shared memory.

        Returns:
            A Future representing the given call.
        """
        state = self._sharing
        envelope = TaskEnvelope(state, (fn, args, kwargs))
        state.in_flight.add(envelope)  # before the task exists, so close() cannot miss it
        converted = False
        try:
            with envelope.sealed:  # not sent before the future can decode the reply
                future = SharedFuture.convert(super().submit(run_task, envelope), envelope)  # type: ignore[arg-type]
                converted = True
        finally:
            if not converted:  # an error, or Ctrl-C: if the task was queued, it must not send anything
                envelope.settle(recycle=False)
        future.watch()
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """Return an iterator of fn applied to the items of the iterables, in order.

        As ProcessPoolExecutor.map, with Python 3.14's *buffersize* on every version.
        Every chunk goes through :meth:`submit`, as in ProcessPoolExecutor, when
        ``submit`` is overridden or replaced on the instance; otherwise chunks of plain
        arguments (numbers, strings, short containers of them) take a faster path.

        Args:
            fn: A callable that will take as many arguments as there are
                passed iterables.
            *iterables: The argument iterables; the shortest one ends the map.
            timeout: The maximum number of seconds to wait. If None, then there
                is no limit on the wait time.
            chunksize: If greater than one, the iterables will be chopped into
                chunks of size chunksize and submitted to the process pool.
                If set to one, the items in the list will be sent one at a time.
            buffersize: The number of submitted chunks whose results have not yet
                been yielded. If the buffer is full, iteration over the iterables
                pauses until a result is yielded from the buffer. If None, all
                input elements are eagerly collected, as before Python 3.14.

        Returns:
            An iterator equivalent to: map(func, *iterables) but the calls may
            be evaluated out-of-order.

        Raises:
            TimeoutError: If the entire result iterator could not be generated
                before the given timeout.
            Exception: If fn(*args) raises for any values.
        """
        _executor_map.check_map_arguments(chunksize, buffersize)
        return _executor_map.map_chunks(
            _ChunkTasks(self, fn), iterables, timeout=timeout, chunksize=chunksize, buffersize=buffersize
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Clean-up the resources associated with the Executor.

        It is safe to call this method several times. Otherwise, no other
        methods can be called after this one.

        Then every segment the executor created is released, except those behind
        results still referenced (they live on until their last view is collected).
        With ``wait=False`` that happens in the background once the pending tasks
        are done.

        Args:
            wait: If True then shutdown will not return until all running
                futures have finished executing and the resources used by the
                executor have been reclaimed.
            cancel_futures: If True then shutdown will cancel all pending
                futures. Futures that are completed or running will not be
                cancelled.
        """
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if self._close_when_dropped.detach() is None:
            # Shut down before: that call closes. As ProcessPoolExecutor's, this one waits
            # for nothing (after wait=False its manager thread may still be winding down).
            return
        stale = getattr(self, "_pending_work_items", None) if cancel_futures else None
        if not isinstance(stale, dict):
            stale = None
        close = partial(_close_after_shutdown, self._sharing, stale)
        if wait:
            close()
        else:
            threading.Thread(target=close, name="zerocopy-shutdown").start()

    def _start_executor_manager_thread(self) -> None:
        super()._start_executor_manager_thread()  # private, in 3.9 to 3.15
        # Under the lock submit() and shutdown() take: a shutdown racing the first
        # submit() still finds the thread it must wait for before releasing.
        self._sharing.manager = self._executor_manager_thread  # type: ignore[assignment]  # typeshed: _ThreadWakeup

    if not hasattr(ProcessPoolExecutor, "terminate_workers"):  # added in Python 3.14

        def terminate_workers(self) -> None:
            """Attempts to terminate the executor's workers.

            Iterates through all of the current worker processes and terminates
            each one that is still alive.

            After terminating workers, the pool will be in a broken state
            and no longer usable (for instance, new tasks should not be
            submitted).
            """
            force_shutdown(self, "terminate")

        def kill_workers(self) -> None:
            """Attempts to kill the executor's workers.

            Iterates through all of the current worker processes and kills
            each one that is still alive.

            After killing workers, the pool will be in a broken state
            and no longer usable (for instance, new tasks should not be
            submitted).
            """
            force_shutdown(self, "kill")

    def stats(self) -> ExecutorStats:
        """Return a snapshot of the arrays sent so far, in both directions, by path."""
        _segments.drain_releases()  # count segments already collected as released
        return self._sharing.stats.snapshot(live_segments=len(self._sharing.segments.live))


def _submit_is_wrapped(executor: SharedArrayExecutor) -> bool:
    """Whether submit() is not ours: overridden by a subclass, or replaced on the instance."""
    return type(executor).submit is not SharedArrayExecutor.submit or "submit" in vars(executor)


class _ChunkTasks:
    """How map() sends its chunks: plain ones straight to ProcessPoolExecutor.submit.

    A chunk of plain arguments (what pickle handles natively: map over numbers) for
    a function with no array in it, while no result segment is being lent, pins
    nothing. Its future is map's own, never the caller's, so it needs neither an
    envelope nor a SharedFuture: its reply decodes itself (see _replies). This way a
    tiny task costs the parent about what ProcessPoolExecutor's does
    (benchmarks/w5_instructions.py measures it). Any other chunk goes through
    submit(), and so does every chunk when submit() is overridden by a subclass or
    replaced on the instance: clients such as tqdm's ``process_map`` count finished
    chunks that way (tests/integration/test_differential_map.py).
    """

    def __init__(self, executor: SharedArrayExecutor, fn: Callable[..., Any]) -> None:
        self._executor = weakref.ref(executor)  # map's iterator must not keep it alive (as 3.14's)
        self._state = executor._sharing
        self._task = partial(run_chunk, fn)
        # Once for all the chunks; None if every chunk must go through submit().
        self._function = None if _submit_is_wrapped(executor) else _codec.encode_function(fn)

    def submit_next(self, chunks: Iterator[_executor_map.Chunk]) -> Future[list[Any]] | None:
        """Submit the next chunk; None if there is none, or the executor is gone."""
        executor = self._executor()
        chunk = None if executor is None else next(chunks, None)
        if executor is None or chunk is None:
            return None
        function = self._function
        if function is not None and not self._state.lends() and "submit" not in vars(executor):
            plain = _codec.encode_plain(chunk)
            if plain is not None and len(plain) <= _PLAIN_CHUNK_MAX_NBYTES:
                return self._submit_plain(executor, function, plain)
        return executor.submit(self._task, chunk)

    def cancel(self, future: Future[list[Any]]) -> None:
        """Cancel a chunk's future, if it has not started."""
        if _CANCELLED_FUTURES_BREAK_CLEAN_UP and type(future) is Future:
            future.__class__ = CancelSafeFuture  # only now: changing class costs every task 3%
        future.cancel()

    def _submit_plain(
        self, executor: SharedArrayExecutor, function: tuple[_decoding.Payload, bool], plain: bytes
    ) -> Future[list[Any]]:
        state = self._state
        ticket = TaskTicket(state)  # in flight until the reply is decoded
        future = None
        try:
            future = ProcessPoolExecutor.submit(executor, run_plain_chunk, state.token, *function, plain)
        finally:
            if future is None:  # not submitted (or Ctrl-C inside submit(), a risk we take)
                state.task_settled(ticket)
            else:
                future.add_done_callback(ticket)
        return future  # type: ignore[return-value]  # a ChunkReply arrives decoded (see _replies)
