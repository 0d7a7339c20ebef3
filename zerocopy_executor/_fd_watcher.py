"""A daemon thread that acts each time a descriptor is readable, and steps aside while the process forks.

From Python 3.12, ``os.fork()`` warns (a DeprecationWarning) when the process runs other
threads. ProcessPoolExecutor starts its own only after it has forked its workers, so it
never does; a thread of ours left waiting would make every fork warn: our executor's
workers under the fork start method, the user's own forks after it, and a task that
forks in a worker. So before any fork of this process each watcher's thread is stopped
and joined, and after it the parent starts it again; a forked child has none (its
owner's own fork hook decides what the child keeps).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import weakref
from collections.abc import Callable

from ._fork_safety import at_fork, join_before_fork

__all__ = ["FdWatcher"]


class FdWatcher:
    """Calls on_readable() from a daemon thread each time fd is readable, until fd is closed or stop().

    Args:
        name: the thread's name.
        fd: the descriptor to watch; its owner closes it (after stop()).
        on_readable: reads what is there, or does what fd's readiness means.
    """

    def __init__(self, name: str, fd: int, on_readable: Callable[[], object]) -> None:
        self._name, self._fd, self._on_readable = name, fd, on_readable
        self._wake_read, self._wake_write = _wake_descriptors()  # readable: the thread returns
        self._thread: threading.Thread | None = None
        self._resume = False  # stopped for a fork: start again after it
        _ALL.add(self)
        self._start()

    def stop(self) -> None:
        """Stop the thread for good, and release the watcher's own descriptors."""
        self._pause()
        self._resume = False
        self._close_wake()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name=self._name, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        poller = select.poll()  # not select(): descriptors may be numbered past 1024
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._wake_read in ready:
                os.read(self._wake_read, 8)
                return
            if ready.get(self._fd, 0) & select.POLLNVAL:  # fd closed: nothing more to watch
                return
            self._on_readable()

    def _pause(self) -> None:
        """Before a fork: the thread returns, and is joined (so no fork meets it)."""
        thread, self._thread = self._thread, None
        self._resume = False
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            os.write(self._wake_write, _WAKE)
            join_before_fork(thread)
            self._resume = True

    def _resume_in_parent(self) -> None:
        if self._resume:
            self._resume = False
            self._start()

    def _forget_in_child(self) -> None:
        self._thread, self._resume = None, False
        self._close_wake()

    def _close_wake(self) -> None:
        for fd in {self._wake_read, self._wake_write}:
            with contextlib.suppress(OSError):
                os.close(fd)


_ALL: weakref.WeakSet[FdWatcher] = weakref.WeakSet()  # one set of fork hooks for all
_WAKE = (1).to_bytes(8, sys.byteorder)  # what an eventfd takes; a pipe takes it too


def _wake_descriptors() -> tuple[int, int]:
    """Where to read and write a wake-up: one eventfd (Linux), else a pipe's two ends."""
    if hasattr(os, "eventfd"):
        fd = os.eventfd(0, os.EFD_CLOEXEC)
        return fd, fd
    return os.pipe()


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
