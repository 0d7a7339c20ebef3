"""Letting go of what sat idle: one daemon thread per owner, alive only while something waits.

Three owners keep things warm for a while and let them go once unused: the parent's
pool of recycled segments (_pool), a worker's cache of mappings (_worker) and the
reusable executors (_reusable). Each holds an IdleExpiry and arms it with the time at
which its oldest idle thing is due; the thread sleeps until then, calls the owner's
``expire()``, which lets go of what is due and returns the next time (or None), and
exits when nothing is left: an idle process keeps no thread for this, and a busy one
wakes only when something can be due.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

from ._fork_safety import at_fork

__all__ = ["IdleExpiry"]


class IdleExpiry:
    """Calls expire() once the earliest armed time has passed, from one daemon thread.

    Args:
        name: the thread's name.
        expire: lets go of what is due; returns the time (``time.monotonic()``) the next
            thing will be due, or None if nothing waits. Called without our lock held.
    """

    def __init__(self, name: str, expire: Callable[[], float | None]) -> None:
        self._name = name
        self._expire = expire
        self._wake = threading.Condition()
        self._due: float | None = None
        self._thread: threading.Thread | None = None
        _ALL.add(self)

    def arm(self, due: float) -> bool:
        """Have expire() called by time due; False if no thread can start (interpreter exit).

        Cheap when a thread already waits for a time as soon: no lock. Safe unlocked,
        because owners change what is idle before arming, and the thread clears its
        time only just before calling expire(), which then sees that change.
        """
        current = self._due
        if current is not None and current <= due and self._thread is not None:
            return True
        with self._wake:
            if self._sooner(due):
                self._wake.notify()
            if self._thread is not None:
                return True
            # A daemon: it must never delay the interpreter's exit.
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            try:
                thread.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                self._due = None
                return False
            self._thread = thread
            return True

    def disarm(self) -> None:
        """Nothing waits any more (its owner closed): the thread ends now, not at the time armed."""
        with self._wake:
            self._due = None
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            try:
                while self._due is not None:
                    wait = self._due - time.monotonic()
                    if wait > 0:
                        self._wake.wait(min(wait, threading.TIMEOUT_MAX))  # a due time may be far off
                        continue
                    self._due = None
                    self._wake.release()  # expire() takes its owner's lock: never both at once
                    try:
                        following = self._expire()
                    finally:
                        self._wake.acquire()
                    if following is not None:
                        self._sooner(following)  # arm() may have set a sooner one meanwhile
            finally:  # also if expire() raised: the next arm() starts a thread again
                self._thread = None

    def _sooner(self, due: float) -> bool:
        """Wake at due if that is sooner than the time set (lock held); whether it was."""
        if self._due is not None and self._due <= due:
            return False
        self._due = due
        return True

    def _forget_after_fork(self) -> None:
        """In a forked child the thread is gone: the next arm() starts one."""
        self._wake = threading.Condition()
        self._due, self._thread = None, None


_ALL: weakref.WeakSet[IdleExpiry] = (
    weakref.WeakSet()
)  # one fork hook for all: a hook each would keep them alive


def _forget_threads_after_fork() -> None:
    for expiry in list(_ALL):
        expiry._forget_after_fork()


at_fork(after_in_child=_forget_threads_after_fork)
