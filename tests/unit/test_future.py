"""SharedFuture in one process: each task settles exactly once, whoever ends it."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import pickle
import threading
import time

import pytest

from zerocopy_executor import SharedArrayError, _sharing, _worker
from zerocopy_executor._future import SharedFuture
from zerocopy_executor._messages import NO_ADVICE, WITHDRAWN, ReplyMessage


def submitted(state, base=None):
    """A future as submit() leaves it: converted, its envelope in flight."""
    envelope = _sharing.TaskEnvelope(state, (len, ((),), {}))
    state.in_flight.add(envelope)
    with envelope.sealed:
        future = SharedFuture.convert(base or cf.Future(), envelope)
    future.watch()
    return future


def test_a_plain_reply_is_the_result_and_the_task_settles(state):
    future = submitted(state)
    assert future.set_running_or_notify_cancel()
    future.set_result(ReplyMessage([6], None, [], NO_ADVICE).pack())
    assert future.result(timeout=0) == [6]
    assert not state.in_flight


def test_a_reply_that_fails_to_decode_fails_only_its_future(state):
    future = submitted(state)
    future.set_running_or_notify_cancel()
    future.set_result(ReplyMessage(b"not a pickle", {}, [], NO_ADVICE).pack())
    assert isinstance(future.exception(timeout=0), Exception)
    assert not state.in_flight


def test_setting_a_settled_future_again_raises_as_future_does(state):
    future = submitted(state)
    future.set_running_or_notify_cancel()
    future.set_result(ReplyMessage([1], None, [], NO_ADVICE).pack())
    with pytest.raises(cf.InvalidStateError):
        future.set_result(ReplyMessage([2], None, [], NO_ADVICE).pack())
    assert future.result(timeout=0) == [1]


def test_a_future_ended_before_conversion_is_settled_and_notified(state):
    """The pool broke, or shutdown cancelled the task, before submit() converted its future."""
    cancelled, failed = cf.Future(), cf.Future()
    assert cancelled.cancel()
    failed.set_exception(RuntimeError("pool broke"))
    submitted(state, cancelled)
    submitted(state, failed)
    assert not state.in_flight
    assert cf.wait([cancelled, failed], timeout=0).done == {cancelled, failed}


def test_callers_callbacks_run_after_the_task_settled(state):
    """Whichever way a task ends, its segments are released before the caller hears of it."""
    seen = []
    for end in ("result", "exception", "cancel"):
        future = submitted(state)
        future.add_done_callback(lambda f: seen.append(len(state.in_flight)))
        if end == "cancel":
            future.cancel()
            continue
        future.set_running_or_notify_cancel()
        if end == "result":
            future.set_result(ReplyMessage(1, None, [], NO_ADVICE).pack())
        else:
            future.set_exception(ValueError("in the task"))
    assert seen == [0, 0, 0]


def test_a_broken_pool_failing_a_cancelled_future_is_ignored(state):
    """Python 3.10/3.11 fail cancelled tasks too when the pool breaks; Future would raise."""
    future = submitted(state)
    assert future.cancel()
    future.set_exception(RuntimeError("pool broke"))
    assert future.cancelled()


def test_a_task_withdrawn_before_it_was_sent_is_refused_by_the_worker(state):
    """Released while queued (the pool broke): pickling must not raise, the worker refuses it."""
    envelope = _sharing.TaskEnvelope(state, (len, ((),), {}))
    envelope.release(recycle=False)
    task = pickle.loads(pickle.dumps(envelope))
    assert task == (WITHDRAWN, None)
    with pytest.raises(SharedArrayError, match="withdrawn"):
        _worker.run_task(task)


def test_cancel_notifies_waiters_at_once(state):
    """wait() sees a cancelled task as done before the manager thread reaches it."""
    future = submitted(state)
    assert future.cancel()
    assert future.cancel()  # again: still True, and no second notification
    done, _ = cf.wait([future], timeout=0)
    assert done == {future}
    assert future.set_running_or_notify_cancel() is False  # the manager thread, later
    assert not state.in_flight


def test_cancel_after_the_manager_thread_started_the_task_fails(state):
    """Once the manager thread has marked the task running, cancel() returns False and changes nothing."""
    future = submitted(state)
    assert future.set_running_or_notify_cancel() is True
    assert future.cancel() is False
    assert future.running()
    assert cf.wait([future], timeout=0).not_done == {future}
    future.set_result(ReplyMessage(None, None, [], NO_ADVICE).pack())
    assert future.result(timeout=0) is None
    assert not state.in_flight


@pytest.mark.timeout(60)
def test_cancel_racing_the_manager_thread_never_notifies_twice(state):
    """Future raises if notified twice; the race must end in exactly one of two states.

    Which one is up to the scheduler; each ending is also tested on its own above
    (test_cancel_notifies_waiters_at_once, test_cancel_after_the_manager_thread_started_the_task_fails).
    """
    errors: list[BaseException] = []
    outcomes = {"ran": 0, "cancelled": 0}
    head_starts = itertools.cycle([0, 0, 1e-5, 1e-4])  # seconds the manager thread gets
    for _ in range(1500):
        future = submitted(state)
        barrier = threading.Barrier(2)
        answer: list[bool] = []

        def manager(future=future, barrier=barrier, answer=answer):
            barrier.wait()
            try:
                answer.append(future.set_running_or_notify_cancel())
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=manager)
        thread.start()
        barrier.wait()
        time.sleep(next(head_starts))
        try:
            future.cancel()
            future.cancel()
        except BaseException as exc:
            errors.append(exc)
        thread.join()
        if future.cancelled():
            outcomes["cancelled"] += 1
            assert answer == [False]
            assert cf.wait([future], timeout=0).done == {future}
        else:
            outcomes["ran"] += 1
            assert answer == [True]
            assert future.running()
            future.set_result(ReplyMessage(None, None, [], NO_ADVICE).pack())
    assert errors == []
    assert not state.in_flight
    assert sum(outcomes.values()) == 1500, outcomes
