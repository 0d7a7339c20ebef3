"""SharedArrayExecutor: a ProcessPoolExecutor whose large arrays travel through shared memory.

Data flow of one task::

    submit(fn, *args)                        parent
      └─ TaskEnvelope ─ pickled in the call-queue feeder thread (fact 5):
           encode_call: large plain arrays → one copy into a warm recycled segment
                        (or a new one); arrays already shared → ArrayRef only;
                        the rest → pickle. A warm segment is lent for the result.
                       ═══ pipe: a few hundred bytes per array ═══
    run_task(payload)                        worker
      ├─ decode: map each segment once (kept mapped for reuse), rebuild views
      ├─ fn(*args, **kwargs)
      └─ encode_result: large arrays → into the lent segment, or a new segment
                        handed over to the parent; report views the call kept
                       ═══ pipe ═══
    _settle(inner future)                    parent, manager thread
      ├─ decode: map result segments and take ownership (unlinked when the last
      │          view dies), failing only this future if that goes wrong (fact 6)
      ├─ release the task's segments: back to the pool once no view is left
      └─ resolve the future the user holds

Every segment the executor's processes create is reported to a ledger in a
SharedMemoryManager server (see _ledger), which releases what is left at shutdown, or
when the parent dies. Recycling and its safety rules are described in _pool.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import resource_tracker
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

from . import _codec, _mapping, _segments
from ._config import DEFAULT_MIN_NBYTES, SharingPolicy
from ._state import SharingState, TaskEnvelope
from ._stats import ExecutorStats
from ._worker import WorkerSetup, initialize, run_task

__all__ = ["SharedArrayExecutor"]

T = TypeVar("T")


class SharedFuture(Future[T]):
    """The future submit() returns: resolved once the result is decoded in the parent.

    ProcessPoolExecutor unpickles results in its manager thread, where an exception
    breaks the whole pool; decoding here instead fails only this future (fact 6).
    """

    def __init__(self) -> None:
        super().__init__()
        self._inner: Future[Any] | None = None

    def cancel(self) -> bool:
        """Cancel the future if possible."""
        inner = self._inner
        if inner is None:
            return super().cancel()
        return inner.cancel() and self.cancelled()

    cancel.__doc__ = Future.cancel.__doc__  # same contract: the inner task is cancelled

    def running(self) -> bool:
        """Return True if the future is currently executing."""
        inner = self._inner
        return (inner is not None and inner.running()) or super().running()

    running.__doc__ = Future.running.__doc__

    def __repr__(self) -> str:
        inner = self._inner
        if inner is not None and not self.done() and inner.running():
            return f"<{type(self).__name__} at {id(self):#x} state=running>"
        return super().__repr__()


class _Settler:
    """A task's done-callback that forgets its task once it has run.

    Futures keep their callbacks forever (fact 12), and after ``shutdown(cancel_futures=
    True)`` the executor keeps its work items too (CPython rebinds only the manager
    thread's dict): a callback holding the user's future would pin its result.
    """

    __slots__ = ("_task",)

    def __init__(self, outer: SharedFuture[Any], envelope: TaskEnvelope, state: SharingState) -> None:
        self._task: tuple[SharedFuture[Any], TaskEnvelope, SharingState] | None = (outer, envelope, state)

    def __call__(self, inner: Future[Any]) -> None:
        task, self._task = self._task, None
        if task is not None:
            _settle(*task, inner)


def _settle(
    outer: SharedFuture[Any], envelope: TaskEnvelope, state: SharingState, inner: Future[Any]
) -> None:
    """Decode the result, release the task's segments, then resolve the user's future.

    Releasing first means that once a caller sees the outcome, the task's argument
    segments are already recycled or unlinked.
    """
    recycle, kept, failure, value = False, [], None, None
    cancelled = inner.cancelled()
    try:
        failure = None if cancelled else inner.exception()
        if not cancelled and failure is None:
            payload, tally, kept, copied_nbytes = inner.result()
            state.lend_nbytes = copied_nbytes
            if tally is not None:
                state.stats.add(tally)
                value = _codec.decode(payload, _codec.DecodeSession(state.adopt))
            else:  # no arrays at all: nothing to map or adopt
                value = pickle.loads(payload)
            recycle = True
    except BaseException as decode_error:  # fail this future, never the pool (fact 6)
        failure = decode_error
    finally:
        outer._inner = None  # frees the raw payload the inner future holds
        envelope.release(recycle=recycle, kept=kept)
        state.task_settled()
    if cancelled:
        Future.cancel(outer)
        outer.set_running_or_notify_cancel()
    elif failure is not None:
        outer.set_exception(failure)
    else:
        outer.set_result(value)


def _close_in_background(state: SharingState) -> None:
    # A finalizer may run in any thread, even one a pending task needs: never block it.
    threading.Thread(target=state.close, name="zerocopy-close").start()


def _require_callable(initializer: object) -> None:
    if initializer is not None and not callable(initializer):
        msg = "initializer must be a callable"  # ProcessPoolExecutor's words
        raise TypeError(msg)


def _default_context(max_tasks_per_child: int | None) -> BaseContext:
    # As ProcessPoolExecutor picks it (3.11+): workers that exit must not be forked.
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
    lambdas and functions defined in ``__main__`` work under every start method.

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
        context = mp_context if mp_context is not None else _default_context(max_tasks_per_child)
        setup = WorkerSetup(os.getpid(), policy, initializer, tuple(initargs))
        super().__init__(max_workers, context, initialize, (setup,), **extra)
        # After the parent's own checks (max_workers first), which start nothing.
        _require_callable(initializer)
        # Workers must share our resource tracker; under fork they only inherit it if
        # it runs before the first fork (fact 3).
        resource_tracker.ensure_running()
        self._sharing = SharingState(policy, context, setup)
        # Dropped without shutdown(): release as shutdown would, once the tasks are done
        # (the manager's own finalizer would also unlink the results the user holds).
        finalizer = weakref.finalize(self, _close_in_background, self._sharing)
        finalizer.atexit = False  # at exit the manager's own finalizer cleans up

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Submits a callable to be executed with the given arguments.

        Schedules the callable to be executed as fn(*args, **kwargs) and returns a
        Future instance representing the execution of the callable. Large arrays in
        the arguments and the result travel through shared memory.

        Returns:
            A Future representing the given call.
        """
        state = self._sharing
        if not state.closed:
            state.start_ledger()
        envelope = TaskEnvelope(state, (fn, args, kwargs))
        outer: SharedFuture[T] = SharedFuture()
        state.task_started()  # before the task exists, so close() cannot miss it
        settles_itself = False
        try:
            inner = super().submit(run_task, envelope)  # type: ignore[arg-type]  # pickles to bytes
            outer._inner = inner
            inner.add_done_callback(_Settler(outer, envelope, state))
            settles_itself = True
        finally:
            if not settles_itself:  # an error, or Ctrl-C, before the callback was in place
                state.task_settled()
        return outer

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
        _mapping.check_map_arguments(chunksize, buffersize)
        if buffersize is None:
            return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)
        return _mapping.map_with_buffer(
            self, fn, iterables, timeout=timeout, chunksize=chunksize, buffersize=buffersize
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
        if wait:
            self._sharing.close()
        else:
            threading.Thread(target=self._sharing.close, name="zerocopy-shutdown").start()

    def stats(self) -> ExecutorStats:
        """Return a snapshot of the arrays sent so far, in both directions, by path."""
        _segments.drain_releases()  # count segments already collected as released
        return self._sharing.stats.snapshot(live_segments=len(self._sharing.live))
