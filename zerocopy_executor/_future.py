"""SharedFuture: ProcessPoolExecutor's own future for a task, taught to settle the task.

ProcessPoolExecutor makes its futures itself and resolves them in its manager thread,
where an exception while unpickling a result breaks the whole pool. Our workers reply
with the result still encoded, and SharedFuture.set_result decodes it, so a failure
fails only that future (fact 6). submit() gives the future this class before the task
can be sent (the envelope is sealed until then), so every reply passes through it.
Settling in the one future, rather than in a second one chained by a done-callback,
takes about a sixth off the parent's time per tiny task (W5).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from . import _codec
from ._state import SharingState, TaskEnvelope

__all__ = ["SharedFuture"]

# Who calls Future.set_running_or_notify_cancel, cancel() or the manager thread: the
# first to claim it with dict.setdefault (atomic), as Future raises on a second call.
_CLAIM = "_notify_claim"
_MANAGER = "manager"


class SharedFuture(Future[Any]):
    """A task's future: its segments are released exactly once, before its outcome shows.

    One divergence from ProcessPoolExecutor, in the caller's favour: a cancelled future
    notifies wait() and as_completed() at once. ProcessPoolExecutor notifies them only
    when its manager thread reaches the task, which never happens for the tasks that
    ``shutdown(cancel_futures=True)`` cancels (CPython gh-136655), so those waits hang.
    """

    _task: tuple[TaskEnvelope, SharingState]

    @classmethod
    def adopt(cls, future: Future[Any], envelope: TaskEnvelope, state: SharingState) -> SharedFuture:
        """Make a future ProcessPoolExecutor just created settle this task.

        Call while the envelope is sealed, then call settle_if_done() once it is not.
        """
        future._task = (envelope, state)  # type: ignore[attr-defined]  # before the class: see settle_if_done
        future.__class__ = cls
        return future  # type: ignore[return-value]  # it is one now

    def settle_if_done(self) -> None:
        """Release the task if it ended before adopt() (the pool broke, or shut down)."""
        if self.done():
            self._release(recycle=False)

    def set_result(self, result: Any) -> None:  # the worker's reply: decode it first
        """Sets the return value of work associated with the future."""
        task = vars(self).pop("_task", None)  # atomic: only one caller gets it
        if task is None:  # settled already: let Future raise InvalidStateError
            super().set_result(result)
            return
        envelope, state = task
        value, failure, recycle, kept = None, None, False, []
        try:
            value, tally, kept, copied_nbytes = result
            state.lend_nbytes = copied_nbytes
            if tally is not None:  # encoded (else a plain value, sent as it is)
                if tally:
                    state.stats.add(tally)
                value = _codec.decode(value, _codec.DecodeSession(state.adopt))
            recycle = True
        except BaseException as decode_error:  # fail this future, never the pool (fact 6)
            failure = decode_error
        finally:
            envelope.release(recycle=recycle, kept=kept)
            state.task_settled(envelope)
        if failure is not None:
            super().set_exception(failure)
        else:
            super().set_result(value)

    def set_exception(self, exception: BaseException | None) -> None:
        """Sets the result of the future as being the given exception."""
        self._release(recycle=False)  # a failed task's segments are never recycled
        super().set_exception(exception)

    def cancel(self) -> bool:
        """Cancel the future if possible."""
        if not super().cancel():
            return False
        self._release(recycle=False)  # never sent: nothing of it reached a worker
        claim = object()  # a second cancel() must not claim again
        if vars(self).setdefault(_CLAIM, claim) is claim:
            super().set_running_or_notify_cancel()  # wakes wait() and as_completed() now
        return True

    def set_running_or_notify_cancel(self) -> bool:
        """Mark the future as running or process any cancel notifications."""
        if vars(self).setdefault(_CLAIM, _MANAGER) is not _MANAGER:
            return False  # cancelled, and cancel() notified the waiters
        return super().set_running_or_notify_cancel()

    # Future's own words: the behaviour callers see is Future's.
    set_result.__doc__ = Future.set_result.__doc__
    set_exception.__doc__ = Future.set_exception.__doc__
    cancel.__doc__ = Future.cancel.__doc__
    set_running_or_notify_cancel.__doc__ = Future.set_running_or_notify_cancel.__doc__

    def _release(self, *, recycle: bool) -> None:
        task = vars(self).pop("_task", None)  # atomic: only one caller gets it
        if task is not None:
            envelope, state = task
            envelope.release(recycle=recycle)
            state.task_settled(envelope)
