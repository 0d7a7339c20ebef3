"""Anonymous segments (Linux memfd): shared memory outside /dev/shm, freed by the kernel.

A memfd lives outside /dev/shm's mount, so a container's 64 MiB /dev/shm does not bound
it (its pages are charged to the memory cgroup, as /dev/shm's are); nobody can squat,
list or leak its name; and the kernel frees it once no process holds a descriptor or a
mapping of it, so processes killed in any order leave nothing behind.

How another process reaches one:

- The process that owns a segment holds one descriptor of it (a "held" descriptor,
  numbered from 1024 up, so that the process's own files, and ``select()``, keep the
  low numbers), and another process of the same user opens
  ``/proc/<owner pid>/fd/<n>``. The opener keeps no descriptor: its mapping needs none
  (see _fdless_mmap). So a process holds one descriptor per segment it owns, none per
  segment it only maps. When the owner's mapping dies, it closes its descriptor.
- A segment a worker made for a result changes owner: the worker posts its descriptor
  to the parent before replying (see _handover), since it may exit right after.

A receiver checks that what it opened is a memfd with the (owner uid, device, inode)
its sender recorded (see _identity), so a descriptor number that was closed and reused
meanwhile is refused.

Where segments cannot be had this way (no ``os.memfd_create``, no /proc, or a user who
asks with ``ZEROCOPY_EXECUTOR_SEGMENTS=named``), segments are named ones in /dev/shm;
and a process that cannot hold one more descriptor from 1024 up (after raising its
soft ``RLIMIT_NOFILE`` toward the hard one) makes a named segment instead, each time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

try:
    import fcntl
    import resource
except ImportError:  # Windows, which has no memfd either (see _probe)
    _POSIX = False
else:
    _POSIX = True

from . import _memory_limit
from ._fork_safety import at_fork

__all__ = [
    "FIRST_HELD_FD",
    "KIND_VARIABLE",
    "chosen",
    "close_held",
    "create",
    "hold",
    "is_memfd",
    "location",
    "memory_bytes",
    "open_location",
]

KIND_VARIABLE = "ZEROCOPY_EXECUTOR_SEGMENTS"
FIRST_HELD_FD = 1024
# What a process may raise its soft descriptor limit to, at most, for held descriptors.
_MAX_SOFT_LIMIT = 1 << 20

_HELD: set[int] = set()  # descriptors this process holds for segments it owns


def chosen() -> bool:
    """Whether this process makes memfd segments (else named ones): the platform and the user's choice."""
    kind = os.environ.get(KIND_VARIABLE, "").strip().lower()
    if kind == "named":
        return False
    if kind not in ("", "memfd", "auto"):
        msg = f"{KIND_VARIABLE} must be 'memfd', 'named' or unset, got {kind!r}"
        raise ValueError(msg)
    return _CAN_MAKE


def _probe() -> int | None:
    """The device memfds live on, if this system makes them and shows descriptors in /proc."""
    create_memfd = getattr(os, "memfd_create", None)
    if create_memfd is None or not _POSIX or not os.path.isdir(f"/proc/{os.getpid()}/fd"):
        return None
    try:
        fd = create_memfd("zc_probe", os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_dev
    finally:
        os.close(fd)


_DEVICE = _probe()
_CAN_MAKE = _DEVICE is not None


def is_memfd(status: os.stat_result) -> bool:
    """Whether status describes a memfd (and not a file a forged location points at)."""
    return _DEVICE is not None and status.st_dev == _DEVICE and stat.S_ISREG(status.st_mode)


def create(name: str, size: int) -> int:
    """Make a memfd of size bytes, its pages reserved; return its held descriptor.

    Raises:
        OSError: it could not be made, reserved or held (ENOSPC, ENOMEM: the memory
            limit; EMFILE: no held descriptor to be had); nothing is left behind.
    """
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        held = hold(fd)
    finally:
        os.close(fd)
    try:
        os.ftruncate(held, size)
        # Backed now: at the memory limit this is an OSError, not SIGBUS at a first write.
        os.posix_fallocate(held, 0, size)
    except BaseException:
        close_held(held)
        raise
    return held


def hold(fd: int) -> int:
    """Return a duplicate of fd numbered from 1024 up, close-on-exec, that this process holds.

    Raises:
        OSError: (EMFILE) the soft limit could not be raised enough for one more.
    """
    try:
        held = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FIRST_HELD_FD)
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.EINVAL) or not _raise_soft_limit():
            raise OSError(errno.EMFILE, "no descriptor from 1024 up is left for a shared segment") from exc
        held = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FIRST_HELD_FD)
    _HELD.add(held)
    return held


def memory_bytes() -> int | None:
    """The memory memfd segments may use: the cgroup's limit (a container's), else the machine's."""
    limit = _memory_limit.limit_bytes()
    if limit is not None:
        return limit
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _raise_soft_limit() -> bool:
    """Double the soft RLIMIT_NOFILE (at least 4096), up to the hard one; return whether it rose.

    Only the held descriptors, all from 1024 up, use the room: processes this one
    starts inherit the higher soft limit, as they would a shell's ``ulimit -n``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = _MAX_SOFT_LIMIT if hard == resource.RLIM_INFINITY else min(hard, _MAX_SOFT_LIMIT)
    wanted = min(ceiling, max(2 * soft, 4 * FIRST_HELD_FD))
    if wanted <= soft:
        return False
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError):
        return False
    return True


def close_held(fd: int) -> None:
    """Close a descriptor this process held for a segment it owned."""
    _HELD.discard(fd)
    os.close(fd)


def location(fd: int) -> str:
    """Where another process opens the segment this process holds as fd."""
    return f"{os.getpid()}.{fd}"


def open_location(where: str) -> int:
    """Open the segment a holder's location names (see location); the caller closes it.

    Raises:
        OSError: the holder has exited or closed it (ENOENT), or may not be read.
        ValueError: where is not a location.
    """
    pid, _, fd = where.partition(".")
    return os.open(f"/proc/{int(pid)}/fd/{int(fd)}", os.O_RDWR | os.O_CLOEXEC)


def _close_inherited() -> None:
    """In a forked child: close the descriptors the parent held, so its segments die with it."""
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


at_fork(after_in_child=_close_inherited)
