"""The sharing side of one executor: its segments, its stats, what to lend, its tasks in flight.

Kept apart from the executor class so that tasks and callbacks hold this, not the
executor: an executor dropped without shutdown() is then collected the way
ProcessPoolExecutor is, while its pending tasks still settle.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from . import _codec, _encoding, _memfd, _namespace, _pool, _replies, _segments, _sweep
from ._config import SharingPolicy
from ._errors import SegmentError, SharedArrayError
from ._messages import NO_ADVICE, WITHDRAWN, TaskMessage
from ._stats import StatsCounter
from ._worker import WorkerSetup

__all__ = ["SharingState", "TaskEnvelope", "TaskTicket"]


class SharingState:
    """Everything the executor's tasks need after the executor itself may be gone."""

    def __init__(self, policy: SharingPolicy, setup: WorkerSetup) -> None:
        self.policy = policy
        self.setup = setup
        self.tag = setup.tag  # in the name of every segment this executor's processes make
        self.stats = StatsCounter()
        # Tasks submitted and not yet settled (set.add and discard need no lock).
        self.in_flight: set[TaskEnvelope | TaskTicket] = set()
        # ProcessPoolExecutor's manager thread, once started: it settles every task sent,
        # so once it has ended no task is left to wait for.
        self.manager: threading.Thread | None = None
        self.segments = _pool.ExecutorSegments(self.tag, _pool_cap_nbytes())
        # What the last reply said to lend for the next results (see LendAdvice).
        self.lend_advice = NO_ADVICE
        self.token = _replies.register(self)  # how map() chunks' replies find us
        _OPEN_STATES.add(self)

    def lends(self) -> bool:
        """Whether tasks get a segment for their result: the last result copied a large array."""
        return self._worth_lending(self.lend_advice.nbytes)

    def _worth_lending(self, nbytes: int) -> bool:
        return nbytes != 0 and nbytes >= self.policy.min_nbytes

    def lend(self, nbytes: int) -> tuple[_segments.SegmentBuffer, Any] | None:
        """A segment of nbytes for the task's result, the last result's size (None if none is worth it)."""
        if not self._worth_lending(nbytes):
            return None
        try:
            return self.segments.allocate(nbytes)
        except SegmentError:
            return None  # the worker will try a fresh segment, and warn if that fails too

    def task_settled(self, task: TaskEnvelope | TaskTicket) -> None:
        self.in_flight.discard(task)

    def close(self) -> None:
        """Once the manager thread has ended, release every segment of ours but results still held.

        What a crashed worker left is released too; a worker still running keeps what
        it owns (it unlinks its own when it exits).
        """
        manager, self.manager = self.manager, None  # its queues hold descriptors: keep it no longer
        if manager is not None:
            manager.join()  # it has settled every task it was given, and joined the workers
        # A task still counted was cut short by a Ctrl-C inside submit() or map(): none
        # will settle it (waiting for it hung shutdown), and no worker uses its segments.
        cut_short, self.in_flight = self.in_flight, set()
        for task in cut_short:
            if isinstance(task, TaskEnvelope):
                task.release(recycle=False)
        _OPEN_STATES.discard(self)
        self.segments.pool.close()
        # Results outlive the executor (README, Semantics): the segments this process holds are
        # spared, and so are those of creators still running (they own them) until they exit.
        _sweep.release_at_close(self.tag)


class TaskEnvelope:
    """A call whose pickling (in the feeder thread) encodes it, and what that pinned.

    Encoding at pickling time rather than in submit() keeps shared memory bounded by
    the tasks in flight: only about max_workers + 1 call items are pickled ahead.
    """

    __slots__ = ("_buffers", "_call", "_pinned", "_released", "sealed", "state")

    def __init__(self, state: SharingState, call: tuple[Any, ...]) -> None:
        self.state = state
        self._call: tuple[Any, ...] | None = call
        self._pinned: Sequence[Any] = ()  # set when sent (no lists per task before that)
        self._buffers: Sequence[_segments.SegmentBuffer] = ()
        # Held while the envelope must not be pickled, and so not sent, yet.
        self.sealed = threading.Lock()
        self._released = False

    def __reduce__(self) -> tuple[Any, ...]:
        with self.sealed:
            if self._released:  # withdrawn while queued: the pool broke, or submit() failed
                # Raising here would deadlock Python 3.12's broken-pool path (its feeder
                # error handler takes a lock the manager thread holds while joining it).
                return (tuple, (TaskMessage(WITHDRAWN, None).pack(),))
            if self._call is None:
                msg = "task was pickled twice; this is a bug in zerocopy_executor"
                raise SharedArrayError(msg)
            state = self.state
            session = _encoding.EncodeSession(state.policy, state.segments, handover=False)
            fn, args, kwargs = self._call
            function = _codec.encode_callable(fn, session)
            payload = _codec.encode_task(function, args, kwargs, session)
            # A worker writes its result into a copied argument's segment once the call
            # is done with it: lend another only if none would fit a result like the last.
            advice = state.lend_advice  # read once: a reply may replace it meanwhile
            fitting = any(_pool.fits(size, advice.nbytes) for size in session.scratch_sizes)
            lend = None if fitting and not advice.made_during_call else state.lend(advice.nbytes)
            # The worker attaches by name: keep our mappings (and so the names) until
            # the task is over; the caller's arrays themselves are no longer needed.
            if lend is not None:
                session.pinned.append(lend[1])
                session.buffers.append(lend[0])
            lent = None if lend is None else (_segments.wire_name(lend[0]), lend[0].identity)
            self._pinned, self._buffers = session.pinned, session.buffers
            self._call = None  # last: release() looks at it without the lock
            if session.tally:
                state.stats.add(session.tally)
        return (tuple, (TaskMessage(payload, lent).pack(),))

    def settle(self, *, recycle: bool, kept: list[str] | tuple[str, ...] = ()) -> None:
        """The task is over: release its segments and take it out of the tasks in flight.

        Called once per task, by whoever ended it (see _future).
        """
        self.release(recycle=recycle, kept=kept)
        self.state.task_settled(self)

    def release(self, *, recycle: bool = True, kept: list[str] | tuple[str, ...] = ()) -> None:
        """Drop the task's segments: each is recycled (or unlinked) once no view of it is left.

        Args:
            recycle: False after a failed task: its segments are unlinked, not reused.
            kept: segments a worker kept views of: never reused.
        """
        if self._call is None and not self._buffers:
            return  # sent and nothing pinned (a tiny task): nothing to release, no lock
        with self.sealed:
            self._released = True
            for buffer in self._buffers:
                if not recycle or buffer.name in kept:
                    _pool.never_recycle(buffer)
            self._pinned, self._buffers, self._call = (), (), None


class TaskTicket:
    """A task sent with nothing pinned (a plain map() chunk): only counted in flight.

    It is the task's done-callback: close() waits until every reply has been decoded.
    """

    __slots__ = ("state",)

    def __init__(self, state: SharingState) -> None:
        self.state = state
        state.in_flight.add(self)

    def __call__(self, future: object) -> None:
        self.state.task_settled(self)


# Executors not shut down yet: at interpreter exit, what their crashed workers left is
# released (ProcessPoolExecutor's own exit hook has joined their workers by then).
_OPEN_STATES: weakref.WeakSet[SharingState] = weakref.WeakSet()


def _release_at_exit() -> None:
    for state in list(_OPEN_STATES):
        state.segments.pool.close()
        _sweep.release_tagged(state.tag)  # what this process holds, _segments unlinks after us


atexit.register(_release_at_exit)


def _pool_cap_nbytes() -> int:
    """Recycle at most a quarter of where segments live (memory, or /dev/shm), and at most 2 GiB."""
    total = _memfd.memory_bytes() if _memfd.chosen() else _namespace.shm_total_bytes()
    return min(2 << 30, (total or 0) // 4)
