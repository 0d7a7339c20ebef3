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
