"""SharedFuture: ProcessPoolExecutor's own future for a task, taught to settle the task.

ProcessPoolExecutor makes its futures itself and resolves them in its manager thread,
where an exception while unpickling a result breaks the whole pool. Our workers reply
with the result still encoded, and SharedFuture.set_result decodes it, so a failure
fails only that future (tests/integration/test_differential_pickling.py). submit()
gives the future this class before the task can be sent (the envelope is sealed until
then), so every reply passes through it.
Settling in the one future, rather than in a second one chained by a done-callback,
keeps a tiny task's cost in the parent low (benchmarks/w5_instructions.py measures it).

However else a task ends (an exception, cancellation, or even before submit() could
convert its future), the done-callback installed by convert() settles it: Future runs its
callbacks, on whatever class the future has by then, after every change of state.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from . import _replies
from ._messages import ReplyMessage
from ._sharing import TaskEnvelope

__all__ = ["CancelSafeFuture", "SharedFuture"]

# Who calls Future.set_running_or_notify_cancel on a cancelled future, our done-callback
# or the manager thread: the first to claim it with dict.setdefault (atomic), as Future
# raises on a second call.
_CLAIM = "_notify_claim"
_MANAGER = "manager"


class CancelSafeFuture(Future[Any]):
    """A future that a broken pool cannot fail once it is cancelled.

    On 3.10 and 3.11 a broken pool fails every task it knows of, cancelled ones too,
    and the InvalidStateError Future raises stops its manager thread before the rest
    are failed and the workers stopped (gh-107219, fixed in 3.12).
    """

    def set_exception(self, exception: BaseException | None) -> None:
        """Sets the result of the future as being the given exception."""
        if self.cancelled():
            return
        super().set_exception(exception)

    set_exception.__doc__ = Future.set_exception.__doc__


class SharedFuture(CancelSafeFuture):
    """A task's future: its segments are released exactly once, before its outcome shows.

    One divergence from ProcessPoolExecutor, in the caller's favour: a cancelled future
    notifies wait() and as_completed() at once. ProcessPoolExecutor notifies them only
    when its manager thread reaches the task, which never happens for the tasks that
    ``shutdown(cancel_futures=True)`` cancels (CPython gh-136655), so those waits hang.
    """

    _envelope: TaskEnvelope

    @classmethod
    def convert(cls, future: Future[Any], envelope: TaskEnvelope) -> SharedFuture:
        """Make a future ProcessPoolExecutor just created settle this task.

        Call while the envelope is sealed, then watch() once it is not.
        """
        future._envelope = envelope  # type: ignore[attr-defined]
        future.__class__ = cls
        return future  # type: ignore[return-value]  # it is one now

    def watch(self) -> None:
        """Settle the task when the future ends other than by set_result (or has already).

        First among the callbacks, so the task is settled before the caller's run.
        Not while the envelope is sealed: settling takes its lock.
        """
        self.add_done_callback(_settle_unsettled)

    def set_result(self, result: Any) -> None:  # the worker's reply: decode it first
        """Sets the return value of work associated with the future."""
        envelope = vars(self).pop("_envelope", None)  # atomic: only one caller gets it
        if envelope is None:  # settled already: let Future raise InvalidStateError
            super().set_result(result)
            return
        value, failure, recycle, kept = None, None, False, []
        try:
            reply = ReplyMessage.unpack(result)
            kept = reply.kept
            value = _replies.decode_reply(envelope.state, reply.data, reply.tally, reply.advice)
            recycle = True
        except BaseException as decode_error:  # fail this future, never the pool
            failure = decode_error
        finally:
            envelope.settle(recycle=recycle, kept=kept)
        if failure is not None:
            super().set_exception(failure)
        else:
            super().set_result(value)

    def set_running_or_notify_cancel(self) -> bool:
        """Mark the future as running or process any cancel notifications."""
        if vars(self).setdefault(_CLAIM, _MANAGER) is not _MANAGER:
            return False  # cancelled, and our callback notified the waiters
        return super().set_running_or_notify_cancel()

    # Future's own words: the behaviour callers see is Future's.
    set_result.__doc__ = Future.set_result.__doc__
    set_running_or_notify_cancel.__doc__ = Future.set_running_or_notify_cancel.__doc__


def _settle_unsettled(future: Future[Any]) -> None:
    """Done-callback: settle a task that ended without a reply to decode."""
    envelope = vars(future).pop("_envelope", None)  # atomic: set_result may have taken it
    if envelope is None:
        return
    envelope.settle(recycle=False)  # failed or never sent: nothing to reuse
    if future.cancelled():
        claim = object()
        if vars(future).setdefault(_CLAIM, claim) is claim:
            Future.set_running_or_notify_cancel(future)  # wakes wait() and as_completed() now
