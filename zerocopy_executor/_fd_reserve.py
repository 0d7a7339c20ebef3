"""A file descriptor held in reserve, so that a segment can be opened when none is left.

Mappings keep no descriptor (see _fdless_mmap), but making one needs the segment's
descriptor for a moment, and that open fails with EMFILE once the process has
reached its limit (``ulimit -n``) with files of its own. A result a worker already
computed lives only in its segment: failing to open it would lose it. So each
process holds one spare descriptor (of "/", taken when the package is imported).
When an open fails for lack of descriptors, the spare is closed, the open is
retried in its slot, and the spare is taken again once the caller has closed its
descriptor, as libuv does for accept(). One caller at a time borrows the slot, and
other threads wait in line meanwhile; one whose open began just before may take the
slot for a moment first, so the borrower tries again for a while. Under ENFILE (the
whole system is out) another process may take it: then the open still fails.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ._fork_safety import at_fork

__all__ = ["with_descriptor"]

T = TypeVar("T")

_SHORTAGE = (errno.EMFILE, errno.ENFILE)
# How long a borrower waits for the freed slot (other threads' opens close at once).
_RETRY_SECONDS = 0.005
_RETRIES = 200


class _Reserve:
    """The spare descriptor (None while borrowed, or when none could be had) and its lock."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.identity = (0, 0)  # the spare's (device, inode)
        self.lock = threading.Lock()
        self.borrower: int | None = None  # the thread holding lock
        at_fork(after_in_child=self._reinit_after_fork)

    def _reinit_after_fork(self) -> None:
        self.lock = threading.Lock()  # a lock held by a parent thread at fork stays held
        self.borrower = None

    def refill(self) -> None:
        """Take the spare descriptor if it is missing (lock held)."""
        if self.fd is None:
            try:
                fd = os.open("/", os.O_RDONLY)  # not inherited by exec'd programs
            except OSError:
                return  # still short: try again at the next open
            status = os.fstat(fd)
            self.fd, self.identity = fd, (status.st_dev, status.st_ino)

    def free(self) -> bool:
        """Close the spare (lock held); False if there was none to close."""
        fd, self.fd = self.fd, None
        if fd is None:
            return False
        try:
            status = os.fstat(fd)
        except OSError:
            return False
        if (status.st_dev, status.st_ino) != self.identity:
            return False  # someone closed it behind our back: that number is not ours now
        os.close(fd)
        return True


_RESERVE = _Reserve()
_RESERVE.refill()


def with_descriptor(open_fd: Callable[[], int], use: Callable[[int], T]) -> T:
    """Open a descriptor, return use(fd), and close it; when none is left, use the reserve's slot.

    Raises:
        OSError: from open_fd (EMFILE or ENFILE only if the reserve could not help),
            or from use.
    """
    if _RESERVE.lock.locked() and _RESERVE.borrower != threading.get_ident():
        # Another thread is borrowing the slot: wait in line instead of taking the slot
        # from it (with several threads opening at once, it could lose it every time).
        return _with_reserve(open_fd, use)
    if _RESERVE.fd is None and _RESERVE.lock.acquire(blocking=False):
        try:  # the spare could not be taken back (or at import): take it now if we can
            _RESERVE.refill()
        finally:
            _RESERVE.lock.release()
    try:
        fd = open_fd()
    except OSError as exc:
        if exc.errno not in _SHORTAGE:
            raise
        return _with_reserve(open_fd, use)
    try:
        return use(fd)
    finally:
        os.close(fd)


def _with_reserve(open_fd: Callable[[], int], use: Callable[[int], T]) -> T:
    with _RESERVE.lock:
        _RESERVE.borrower = threading.get_ident()
        freed = _RESERVE.free()
        try:
            fd = _open_in_freed_slot(open_fd) if freed else open_fd()
            try:
                return use(fd)
            finally:
                os.close(fd)
        finally:
            _RESERVE.refill()
            _RESERVE.borrower = None


def _open_in_freed_slot(open_fd: Callable[[], int]) -> int:
    for _ in range(_RETRIES):
        try:
            return open_fd()
        except OSError as exc:
            if exc.errno not in _SHORTAGE:
                raise
        time.sleep(_RETRY_SECONDS)
    return open_fd()
