"""The POSIX shared-memory primitives, or why this process has none.

``_posixshmem`` (the module under ``multiprocessing.shared_memory``) exists on POSIX
systems only. Without it (Windows), or where creating a segment fails for a reason
that waiting will not cure (a /dev/shm that refuses it: read-only, missing, denied),
the package still imports and SharedArrayExecutor still works, as ProcessPoolExecutor:
every array is pickled, and the executor says why, once, when it is made (see
warn_if_unusable); ``zerocopy_executor.empty`` and friends raise SegmentError saying
why. A full /dev/shm is another matter: it may have room for the next array, so each
array that does not fit is pickled with a warning of its own (see _encoding).

Whether segments can be made is found out once per process, by making and unlinking
an empty one (never registered with the resource tracker: it lives for two calls).
"""

from __future__ import annotations

import errno
import os
import warnings
from typing import Protocol

from . import _memfd, _namespace
from ._errors import SegmentError, SharedMemoryFullWarning

__all__ = ["AVAILABLE", "posixshmem", "require", "unusable_reason", "warn_if_unusable"]


class _Primitives(Protocol):
    def shm_open(self, path: str, flags: int, mode: int = ...) -> int: ...
    def shm_unlink(self, path: str) -> None: ...


class _Missing:
    """Stands in for ``_posixshmem`` where it does not exist: every call fails as the system would."""

    def shm_open(self, path: str, flags: int, mode: int = 0o777) -> int:
        raise OSError(errno.ENOSYS, _NO_MODULE)

    def shm_unlink(self, path: str) -> None:
        raise OSError(errno.ENOSYS, _NO_MODULE)


_NO_MODULE = "this platform has no POSIX shared memory: Python has no _posixshmem module here"

posixshmem: _Primitives
try:
    import _posixshmem

    posixshmem = _posixshmem
    AVAILABLE = True
except ImportError:
    posixshmem = _Missing()
    AVAILABLE = False

# Failures that say nothing about shared memory itself: this process is short of
# descriptors or memory, or /dev/shm is full for now (see _segments).
_PASSING = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOSPC, errno.ENOMEM, errno.EEXIST, errno.EINTR})

_REASON: list[str | None] = []  # once known: [None] if segments can be made, else [why not]


def unusable_reason() -> str | None:
    """Why this process cannot make segments, or None if it can (found out once, see the module)."""
    if _REASON:
        return _REASON[0]
    if _memfd.chosen():
        reason: str | None = None  # memfds do not need /dev/shm
    elif not AVAILABLE:
        reason = _NO_MODULE
    else:
        path = "/" + _namespace.new_name(_namespace.process_tag())
        try:
            fd = posixshmem.shm_open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        except OSError as exc:
            if exc.errno in _PASSING:
                return None  # the copy that needs a segment reports it, if it persists
            reason = f"cannot create a segment in {_namespace.SHM_DIR}: {exc.strerror} ({_errno_name(exc)})"
        else:
            os.close(fd)
            posixshmem.shm_unlink(path)
            reason = None
    _REASON.append(reason)
    return reason


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def require(what: str) -> None:
    """Raise SegmentError if this process cannot make segments: what needs one, why, what to do."""
    reason = unusable_reason()
    if reason is None:
        return
    msg = (
        f"cannot make {what}: {reason}; use numpy's own arrays instead (SharedArrayExecutor pickles "
        f"them here, as ProcessPoolExecutor does), or {_remedy()}"
    )
    raise SegmentError(msg)


def _remedy() -> str:
    if not AVAILABLE:
        return "run on a POSIX system (Linux, macOS) to share arrays"
    return f"mount a writable tmpfs on {_namespace.SHM_DIR} to share arrays"


def warn_if_unusable(stacklevel: int) -> bool:
    """Warn once, for an executor being made, if no array can be shared; return whether it warned."""
    reason = unusable_reason()
    if reason is None:
        return False
    message = (
        f"shared memory is unusable ({reason}); SharedArrayExecutor pickles every array, as "
        f"ProcessPoolExecutor does; {_remedy()}"
    )
    warnings.warn(message, SharedMemoryFullWarning, stacklevel=stacklevel + 1)
    return True
