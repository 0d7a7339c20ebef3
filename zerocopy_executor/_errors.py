"""Exception and warning classes, re-exported by the package."""

from __future__ import annotations

__all__ = ["SegmentError", "SharedArrayError", "SharedMemoryFullWarning"]


class SharedArrayError(RuntimeError):
    """Base class for errors raised by zerocopy_executor."""


class SegmentError(SharedArrayError):
    """A shared-memory segment could not be created, found or mapped."""


class SharedMemoryFullWarning(RuntimeWarning):
    """Shared memory could not hold an array, so it was pickled instead.

    /dev/shm is full (each array that does not fit warns), or no shared memory is
    usable here at all (no ``_posixshmem``, or /dev/shm refuses segments): then the
    executor warns once, when it is made, and pickles every array.

    A RuntimeWarning (not a ResourceWarning) because it is shown by default: the user
    should learn that the speedup is gone and how to enlarge /dev/shm.
    """
