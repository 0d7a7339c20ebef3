"""IdleExpiry: expire() runs once the earliest armed time passes, and the thread ends when nothing waits."""

from __future__ import annotations

import threading
import time

from zerocopy_executor._idle import IdleExpiry


class _Owner:
    """Things idle until their due time; expire() lets go of those due, as _pool and _reusable do."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.due: dict[str, float] = {}
        self.gone: list[str] = []
        self.expiry = IdleExpiry("test-idle", self.expire)

    def keep(self, name: str, seconds: float) -> None:
        with self.lock:
            self.due[name] = time.monotonic() + seconds
            self.expiry.arm(self.due[name])

    def expire(self) -> float | None:
        now = time.monotonic()
        with self.lock:
            for name in [n for n, t in self.due.items() if t <= now]:
                del self.due[name]
                self.gone.append(name)
            return min(self.due.values(), default=None)


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "test-idle"]


def test_things_go_in_the_order_they_are_due_and_the_thread_then_ends() -> None:
    """A later thing armed first does not delay a sooner one; with nothing left, no thread remains."""
    owner = _Owner()
    owner.keep("late", 0.3)
    owner.keep("soon", 0.05)
    assert _wait_for(lambda: owner.gone == ["soon"])
    assert "late" in owner.due  # not before its time
    assert _wait_for(lambda: owner.gone == ["soon", "late"])
    assert _wait_for(lambda: not _threads())


def test_no_thread_runs_before_anything_is_armed_and_one_starts_again_after_it_ended() -> None:
    """An owner with nothing idle keeps no thread; arming after the thread ended starts a new one."""
    owner = _Owner()
    assert not _threads()
    owner.keep("a", 0.01)
    assert _wait_for(lambda: owner.gone == ["a"] and not _threads())
    owner.keep("b", 0.01)
    assert _wait_for(lambda: owner.gone == ["a", "b"])


def test_disarm_ends_the_thread_now_not_at_the_time_armed() -> None:
    """An owner that closes lets its thread go at once, even if something was due an hour later."""
    owner = _Owner()
    owner.keep("hour", 3600.0)
    assert _threads()
    owner.expiry.disarm()
    assert _wait_for(lambda: not _threads())
    assert owner.gone == []


def test_a_time_beyond_what_a_wait_accepts_is_waited_for_without_error() -> None:
    """A due time past threading.TIMEOUT_MAX (an infinite idle timeout) neither raises nor stops expiry."""
    owner = _Owner()
    owner.keep("never", float("inf"))
    owner.keep("soon", 0.01)
    assert _wait_for(lambda: owner.gone == ["soon"])
    owner.expiry.disarm()
    assert _wait_for(lambda: not _threads())


def test_an_expire_that_raises_does_not_stop_later_expiry(monkeypatch) -> None:
    """If expire() raises, its thread ends, and the next arm() starts one that does its work."""
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the raise is the point
    owner = _Owner()
    calls = []

    def fail_once() -> float | None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return _Owner.expire(owner)

    owner.expiry._expire = fail_once
    owner.keep("a", 0.01)
    assert _wait_for(lambda: calls and not _threads())
    owner.keep("b", 0.01)
    assert _wait_for(lambda: owner.gone == ["a", "b"])
