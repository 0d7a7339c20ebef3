"""A daemon thread that acts each time a descriptor is readable, and steps aside while the process forks.

From Python 3.12, ``os.fork()`` warns (a DeprecationWarning) when the process runs other
threads. ProcessPoolExecutor starts its own only after it has forked its workers, so it
never does; a thread of ours left waiting would make every fork warn: our executor's
workers under the fork start method, the user's own forks after it, and a task that
forks in a worker. So before any fork of this process each watcher's thread is stopped
and joined, and after it the parent starts it again; a forked child has none (its
owner's own fork hook decides what the child keeps). Linux only: it wakes its thread
through an eventfd, and what it watches (the memfd inbox, a pidfd) is Linux's.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import weakref
from collections.abc import Callable

from ._fork_safety import at_fork, join_before_fork

__all__ = ["FdWatcher"]


class FdWatcher:
    """Calls on_readable() from a daemon thread each time fd is readable, until stop().

    Args:
        name: the thread's name.
        fd: the descriptor to watch; its owner closes it, after stop().
        on_readable: reads what is there, or does what fd's readiness means.
    """

    def __init__(self, name: str, fd: int, on_readable: Callable[[], object]) -> None:
        self._name, self._fd, self._on_readable = name, fd, on_readable
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)  # readable: the thread returns
        self._lock = threading.Lock()  # two threads may fork at once, or one stop() meanwhile
        self._wanted = True  # until stop(): a fork's pause is only a pause
        self._thread: threading.Thread | None = None
        _ALL.add(self)
        self._resume_in_parent()

    def stop(self) -> None:
        """Stop the thread for good, and close the watcher's own descriptor."""
        with self._lock:
            self._wanted = False
            self._join()
            os.close(self._wake)
            self._wake = -1
        _ALL.discard(self)

    def _watch(self) -> None:
        poller = select.poll()  # not select(): descriptors may be numbered past 1024
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._wake in ready:
                return
            if ready.get(self._fd, 0) & select.POLLNVAL:  # closed under us: end rather than spin
                return
            self._on_readable()

    def _join(self) -> None:
        """Have the thread return and join it (lock held); not from the thread itself."""
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        os.eventfd_write(self._wake, 1)
        join_before_fork(thread)
        self._thread = None

    def _pause(self) -> None:
        """Before a fork: no thread of ours may run into it."""
        with self._lock:
            self._join()

    def _resume_in_parent(self) -> None:
        """After a fork, in the parent (and at the start): the thread runs, unless stop() was called."""
        with self._lock:
            if not self._wanted or self._thread is not None:
                return
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._wake)  # a wake-up its last thread ended without reading
            self._thread = threading.Thread(target=self._watch, name=self._name, daemon=True)
            self._thread.start()

    def _forget_in_child(self) -> None:
        self._lock = threading.Lock()
        self._wanted, self._thread = False, None
        if self._wake >= 0:
            os.close(self._wake)


_ALL: weakref.WeakSet[FdWatcher] = weakref.WeakSet()  # one set of fork hooks for all


def _pause_all() -> None:
    for watcher in list(_ALL):
        watcher._pause()


def _resume_all_in_parent() -> None:
    for watcher in list(_ALL):
        watcher._resume_in_parent()


def _forget_all_in_child() -> None:
    for watcher in list(_ALL):
        watcher._forget_in_child()
    _ALL.clear()


at_fork(before=_pause_all, after_in_parent=_resume_all_in_parent, after_in_child=_forget_all_in_child)
