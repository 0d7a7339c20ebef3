"""SharedArrayExecutor: a ProcessPoolExecutor whose large arrays travel through shared memory.

Data flow of one task::

    submit(fn, *args)                        parent
      └─ TaskEnvelope ─ pickled in the call-queue feeder thread (fact 5):
           encode_call: large plain arrays → one copy into a new segment;
                        arrays already shared → ArrayRef only; the rest → pickle
                       ═══ pipe: a few hundred bytes per array ═══
    run_task(payload)                        worker
      ├─ decode: map each segment once, rebuild zero-copy views
      ├─ fn(*args, **kwargs)
      └─ encode_result: large arrays → segments handed over to the parent
                       ═══ pipe ═══
    settle(inner future)                     parent, manager thread
      ├─ decode: map result segments and take ownership (unlinked when the last
      │          view dies), failing only this future if that goes wrong (fact 6)
      ├─ release the argument segments of the task
      └─ resolve the future the user holds

Every segment the executor's processes create is reported to a ledger in a
SharedMemoryManager server (see _ledger), which releases what is left at shutdown, or
when the parent dies.
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
from functools import partial
from multiprocessing import resource_tracker
from multiprocessing.context import BaseContext
from multiprocessing.managers import SharedMemoryManager
from typing import Any, TypeVar

from . import _codec, _mapping, _pool, _segments
from ._config import DEFAULT_MIN_NBYTES, SharingPolicy
from ._errors import SegmentError, SharedArrayError
from ._ledger import LedgerClient, start_ledger
from ._stats import ExecutorStats, StatsCounter
from ._worker import WorkerSetup, initialize, run_task

__all__ = ["SharedArrayExecutor"]

T = TypeVar("T")


class _SharingState:
    """Everything the executor's tasks need after the executor itself may be gone.

    Envelopes and callbacks hold this, not the executor, so that an executor dropped
    without shutdown() is still collected the way ProcessPoolExecutor is.
    """

    def __init__(self, policy: SharingPolicy, context: BaseContext, setup: WorkerSetup) -> None:
        self.policy = policy
        self.context = context
        self.setup = setup
        self.stats = StatsCounter()
        self.live: set[str] = set()  # segments created by this executor, not yet released
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.pending = 0
        self.manager: SharedMemoryManager | None = None
        self.ledger: LedgerClient | None = None
        self.closed = False
        self.pool = _pool.SegmentPool(_pool_cap_nbytes())
        # Size of the largest array the last result copied: lend a segment that size.
        self.lend_nbytes = 0

    def start_ledger(self) -> None:
        """Start the SharedMemoryManager before the first worker (it is in their setup)."""
        with self.lock:
            if self.manager is not None or self.closed:
                return
            self.manager, proxy = start_ledger(self.context)
            self.ledger = LedgerClient(proxy)
            self.setup.ledger_proxy = proxy

    def allocate(self, nbytes: int) -> tuple[_segments.SegmentBuffer, Any]:
        """Lease a warm pooled segment, or create one (owned here, recorded in the ledger)."""
        buffer = self.pool.take(nbytes)
        if buffer is None:
            buffer = _segments.create(nbytes, hooks=(self.forget,))
            self.live.add(buffer.name)
            if self.ledger is not None:
                self.ledger.track(buffer.name)
        return buffer, _pool.lease(buffer, self.pool)

    def lend(self) -> tuple[_segments.SegmentBuffer, Any] | None:
        """A segment for the task's result, sized like the last result (None if none)."""
        if self.lend_nbytes == 0 or self.lend_nbytes < self.policy.min_nbytes:
            return None
        try:
            return self.allocate(self.lend_nbytes)
        except SegmentError:
            return None  # the worker will try a fresh segment, and warn if that fails too

    def adopt(self, buffer: _segments.SegmentBuffer) -> None:
        """Count a result segment handed over by a worker (the ledger knows it already)."""
        self.live.add(buffer.name)
        _segments.on_release(buffer, self.forget)

    def forget(self, name: str) -> None:
        """Called after a segment of ours was unlinked (from a finalizer: no I/O here)."""
        self.live.discard(name)
        if self.ledger is not None and not self.closed:
            self.ledger.forget(name)

    def task_started(self) -> None:
        with self.lock:
            self.pending += 1

    def task_settled(self) -> None:
        with self.lock:
            self.pending -= 1
            if self.pending == 0:
                self.idle.notify_all()

    def close(self) -> None:
        """Release every segment still recorded, except results the user still holds."""
        with self.lock:
            while self.pending:
                self.idle.wait()
            self.closed = True
            manager, ledger, self.manager, self.ledger = self.manager, self.ledger, None, None
        self.pool.close()
        if manager is None or ledger is None:
            return
        # Results outlive the executor (DESIGN.md): their names stay linked until the
        # last view dies here.
        ledger.forget_now(name for name in _segments.owned_live_names() if name in self.live)
        manager.shutdown()


class TaskEnvelope:
    """A call whose pickling (in the feeder thread) encodes it, and what that pinned.

    Encoding at pickling time rather than in submit() keeps shared memory bounded by
    the tasks in flight: only about max_workers + 1 call items are pickled ahead.
    """

    __slots__ = ("_buffers", "_call", "_lock", "_pinned", "_released", "_state")

    def __init__(self, state: _SharingState, call: tuple[Any, ...]) -> None:
        self._state = state
        self._call: tuple[Any, ...] | None = call
        self._pinned: list[Any] = []
        self._buffers: list[_segments.SegmentBuffer] = []
        self._lock = threading.Lock()
        self._released = False

    def __reduce__(self) -> tuple[Any, ...]:
        with self._lock:
            if self._released or self._call is None:
                msg = "task was released before it was sent; this is a bug in zerocopy_executor"
                raise SharedArrayError(msg)
            state = self._state
            session = _codec.EncodeSession(state.policy, state.allocate, handover=False)
            lend = state.lend()
            lend_name = None if lend is None else lend[0].name
            payload = _codec.encode_call((*self._call, lend_name), session)
            # The worker attaches by name: keep our mappings (and so the names) until
            # the task is over; the caller's arrays themselves are no longer needed.
            self._pinned, self._buffers, self._call = session.pinned, session.buffers, None
            if lend is not None:
                self._pinned.append(lend[1])
                self._buffers.append(lend[0])
            if session.tally:
                state.stats.add(session.tally)
        return (bytes, (payload,))

    def release(self, *, recycle: bool = True, kept: list[str] | tuple[str, ...] = ()) -> None:
        """Drop the task's segments: each is recycled (or unlinked) once no view of it is left.

        Args:
            recycle: False after a failed task: its segments are unlinked, not reused.
            kept: segments a worker kept views of: never reused.
        """
        with self._lock:
            self._released = True
            for buffer in self._buffers:
                if not recycle or buffer.name in kept:
                    _pool.never_recycle(buffer)
            self._pinned, self._buffers, self._call = [], [], None


class SharedFuture(Future[T]):
    """The future submit() returns: resolved once the result is decoded in the parent.

    ProcessPoolExecutor unpickles results in its manager thread, where an exception
    breaks the whole pool; decoding here instead fails only this future (fact 6).
    """

    def __init__(self) -> None:
        super().__init__()
        self._inner: Future[Any] | None = None

    def cancel(self) -> bool:
        """Cancel the task if it has not started running."""
        inner = self._inner
        if inner is None:
            return super().cancel()
        return inner.cancel() and self.cancelled()

    def running(self) -> bool:
        """Return True if the task is running in a worker."""
        inner = self._inner
        return (inner is not None and inner.running()) or super().running()


def _settle(
    outer: SharedFuture[Any], envelope: TaskEnvelope, state: _SharingState, inner: Future[Any]
) -> None:
    """Decode the result, release the task's segments, then resolve the user's future.

    Releasing first means that once a caller sees the outcome, the task's argument
    segments are already recycled or unlinked.
    """
    recycle, kept, failure, value = False, [], None, None
    try:
        if inner.cancelled():
            return
        failure = inner.exception()
        if failure is None:
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
    if inner.cancelled():
        Future.cancel(outer)
        outer.set_running_or_notify_cancel()
    elif failure is not None:
        outer.set_exception(failure)
    else:
        outer.set_result(value)


def _close_in_background(state: _SharingState) -> None:
    # A finalizer may run in any thread, even one a pending task needs: never block it.
    threading.Thread(target=state.close, name="zerocopy-close").start()


def _pool_cap_nbytes() -> int:
    """Recycle at most a quarter of /dev/shm, and at most 2 GiB."""
    total = _segments.shm_total_bytes()
    return min(2 << 30, (total or 0) // 4)


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
            are pickled. Defaults to 1 MiB, the measured crossover.

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
        _require_callable(initializer)
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
        # Workers must share our resource tracker; under fork they only inherit it if
        # it runs before the first fork (fact 3).
        resource_tracker.ensure_running()
        self._sharing = _SharingState(policy, context, setup)
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
        try:
            inner = super().submit(run_task, envelope)  # type: ignore[arg-type]  # pickles to bytes
        except BaseException:
            state.task_settled()
            raise
        outer._inner = inner
        inner.add_done_callback(partial(_settle, outer, envelope, state))
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

        As ProcessPoolExecutor.shutdown; then every segment the executor created is
        released, except those behind results still referenced (they live on until
        their last view is collected). With ``wait=False`` that happens in the
        background once the pending tasks are done.
        """
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            self._sharing.close()
        else:
            threading.Thread(target=self._sharing.close, name="zerocopy-shutdown").start()

    def stats(self) -> ExecutorStats:
        """Return a snapshot of the arrays sent so far, in both directions, by path."""
        return self._sharing.stats.snapshot(live_segments=len(self._sharing.live))
