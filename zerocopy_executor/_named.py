"""Named POSIX segments in /dev/shm: create, open and unlink (where memfds are not made).

The rules that keep /dev/shm clean:

- The creator registers the segment with the resource tracker, once. Every process of
  a pool shares that tracker, so opening never registers (gh-82300: before 3.13
  ``SharedMemory(name=...)`` registers on attach, hence the use of ``_posixshmem``).
- Whoever's ``shm_unlink`` succeeds unregisters it, once; unlinking is atomic, so two
  cleaners (an owner and the executor's sweep, see _sweep) never both unregister.
- Pages are reserved with ``posix_fallocate`` at creation: on a full tmpfs the first
  write to an unbacked page raises SIGBUS, a reserved one cannot.
- The process that owns a segment unlinks it when its last view is garbage-collected
  (or at interpreter exit; see _segments). Unlinking while mapped is fine on POSIX:
  other processes keep their mappings, only the name goes away.
- Names (see _namespace) are short, random, never reused, created with ``O_EXCL`` and
  mode 0600, and carry the creator's pid and its executor's tag.
- The descriptor needed for a moment to map one comes from a reserve when the process
  has none left (see _fd_reserve).
"""

from __future__ import annotations

import errno
import os
from functools import partial
from multiprocessing import resource_tracker

from . import _fd_reserve, _identity, _segment_buffer
from ._errors import SegmentError
from ._segment_buffer import SegmentBuffer
from ._shm import posixshmem as _posixshmem  # absent on Windows: see _shm

__all__ = ["create", "open_existing", "unlink", "unlink_leftover"]

_RTYPE = "shared_memory"


def create(name: str, nbytes: int) -> SegmentBuffer:
    """Create, register, reserve and map the named segment name, of about nbytes.

    Raises:
        SegmentError: it could not be created or its pages reserved; nothing is left behind.
    """
    open_new = partial(_posixshmem.shm_open, "/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        return _fd_reserve.with_descriptor(open_new, partial(_fill_new, name, nbytes))
    except OSError as exc:
        raise SegmentError(
            _segment_buffer.failure(f"cannot create a segment of {nbytes} bytes", exc)
        ) from exc


def _reserve(fd: int, nbytes: int) -> None:
    """Back every page now, so a full tmpfs is an OSError here, not SIGBUS later."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:  # macOS: no fallocate; its shm is not a size-limited tmpfs
        return
    fallocate(fd, 0, nbytes)


def _fill_new(name: str, nbytes: int, fd: int) -> SegmentBuffer:
    """Register, size, reserve and map the segment just created as fd; unlink it if that fails."""
    # After the name exists: a registration with no segment behind it would make the
    # tracker warn at exit. A process killed between the two steps leaves a segment
    # unregistered, which unlink_leftover() copes with.
    try:
        # Starts the tracker if this process has none yet: a pipe and a process, which
        # fail when no descriptor is left. Then the name must not outlive the failure.
        resource_tracker.register("/" + name, _RTYPE)
    except BaseException:
        _posixshmem.shm_unlink("/" + name)
        raise
    size = _segment_buffer.staggered(nbytes)
    try:
        os.ftruncate(fd, size)
        _reserve(fd, size)
        return _segment_buffer.map_fd(fd, os.fstat(fd), name, populate=True)
    except OSError as exc:
        unlink(name)
        raise SegmentError(
            _segment_buffer.failure(f"cannot reserve {nbytes} bytes of shared memory", exc)
        ) from exc
    except BaseException:
        unlink(name)
        raise


def open_existing(name: str, identity: _identity.Identity | None, populate: bool) -> SegmentBuffer:
    """Map the named segment name, if it is the one its sender made.

    Raises:
        SegmentError: it is gone, empty, or not the sender's.
    """
    open_name = partial(_posixshmem.shm_open, "/" + name, os.O_RDWR, mode=0o600)
    try:
        return _fd_reserve.with_descriptor(
            open_name, partial(_segment_buffer.map_checked, name, identity, populate)
        )
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise SegmentError(_segment_buffer.failure(f"cannot open segment {name!r}", exc)) from exc
        msg = (
            f"segment {name!r} was unlinked before this process attached it; keep the "
            "array (and the executor) alive until the futures that use it finish"
        )
        raise SegmentError(msg) from exc


def unlink(
    name: str, *, unregister_if_gone: bool = False, identity: _identity.Identity | None = None
) -> bool:
    """Remove a segment's name; return False if it was already gone.

    The caller whose unlink succeeds is the one that unregisters it from the resource
    tracker, so the tracker sees exactly one unregister for its one register. An owner
    passes ``unregister_if_gone``: nobody else unregisters a segment its owner still
    holds (a sweep spares running creators and what the sweeping process owns). Given
    the segment's identity, a name that now stands for another file counts as gone.
    """
    if "@" in name:  # a memfd: its holders close it, nothing unlinks it
        return False
    path = "/" + name
    gone = identity is not None and not _identity.stands_for(name, identity)
    try:
        if not gone:
            _posixshmem.shm_unlink(path)
    except FileNotFoundError:
        gone = True
    if not gone or unregister_if_gone:
        resource_tracker.unregister(path, _RTYPE)
    return not gone


def unlink_leftover(name: str) -> bool:
    """Unlink a segment a dead creator left (a sweep); return False if it was already gone.

    Registered first (its creator may have died before registering it; the tracker keeps
    a set), so the unregister that follows matches one. One sweeper per name (the
    executor's parent, one sweep at a time): two would unregister it twice.
    """
    path = "/" + name
    resource_tracker.register(path, _RTYPE)
    if unlink(name):  # it unregisters
        return True
    resource_tracker.unregister(path, _RTYPE)
    return False
