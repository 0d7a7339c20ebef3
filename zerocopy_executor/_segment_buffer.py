"""A mapping of one segment, of either kind: how it is made from a descriptor, and checked.

A mapping keeps no file descriptor (see _fdless_mmap), so live shared arrays are
bounded by memory, not by ``ulimit -n``. A large segment is made a little larger than
asked, by an amount that changes from one segment to the next (see staggered), so that
two arrays are seldom a multiple of 256 MiB apart in any process.
"""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import weakref
from collections.abc import Callable
from typing import Any

from . import _fdless_mmap, _identity, _memfd, _namespace
from ._errors import SegmentError

__all__ = [
    "STAGGER_FROM",
    "STAGGER_STEP",
    "STAGGER_STEPS",
    "Ownership",
    "SegmentBuffer",
    "failure",
    "map_checked",
    "map_fd",
    "staggered",
]

# Large segments get 1 to STAGGER_STEPS times STAGGER_STEP bytes more than asked for,
# in turn (see staggered).
STAGGER_FROM = 4 << 20
STAGGER_STEP = 4096
STAGGER_STEPS = 64
_stagger_turns = itertools.count(os.getpid())


class SegmentBuffer(mmap.mmap):
    """A read-write mapping of one segment (no descriptor kept); arrays view it as their buffer."""

    name: str
    identity: _identity.Identity  # what a receiver checks the name against (see _identity)
    address: int
    ownership: Ownership
    # A memfd's holder: "@<pid>.<fd>", where other processes open it (see _memfd); "" for
    # a named segment.
    location: str = ""
    # False for a memfd handed over to a process that had no descriptor to hold it with:
    # mapped here, but no other process can open it.
    reachable: bool = True
    # Set by _pool for recycled segments: the current use's lease, and whether the
    # segment may be reused when it dies.
    lease: weakref.ref[Any] | None = None
    recyclable: bool = True
    # Set by _arrays for a segment it allocated: the root every array made there views,
    # alive as long as one of them is (a worker checks it before handing the segment over).
    views: weakref.ref[Any] | None = None


class Ownership:
    """Who releases a segment when its mapping dies, the memfd descriptor held, and who to tell."""

    __slots__ = ("held", "holder_pid", "hooks", "name", "owner_pid")

    def __init__(self, name: str, owner_pid: int | None, held: int | None) -> None:
        self.name = name
        self.owner_pid = owner_pid
        # A memfd's held descriptor (see _memfd), closed by the process that holds it when
        # its mapping dies, whoever owns the segment by then.
        self.held = held
        self.holder_pid = os.getpid()
        self.hooks: list[Callable[[str], None]] = []


def map_fd(
    fd: int, status: os.stat_result, name: str, *, populate: bool, location: str = ""
) -> SegmentBuffer:
    """Map the segment open as fd (the caller closes fd), named name, reached at location."""
    # Pre-faulting a whole mapping in one call costs a fraction of faulting it page by
    # page, but is wasted on a task that touches a slice of a big shared array.
    buffer, address = _fdless_mmap.map_shared(SegmentBuffer, fd, status.st_size, populate=populate)
    buffer.name, buffer.identity = name, _identity.of(status)
    buffer.address, buffer.location = address, location
    return buffer


def map_checked(
    name: str, identity: _identity.Identity | None, populate: bool, fd: int, *, memfd: bool = False
) -> SegmentBuffer:
    """Map the segment open as fd, if it is the one its sender made (and a memfd, if it should be)."""
    try:
        status = os.fstat(fd)
        _identity.check(name, _identity.of(status), identity)
        if memfd and not _memfd.is_memfd(status):
            msg = (
                f"refusing to map segment {name!r}: its descriptor names a file, not anonymous shared memory"
            )
            raise SegmentError(msg)
        if status.st_size == 0:
            msg = f"segment {name!r} is empty; it was truncated or replaced behind our back"
            raise SegmentError(msg)
        return map_fd(fd, status, name, populate=populate)
    except OSError as exc:
        raise SegmentError(failure(f"cannot map segment {name!r}", exc)) from exc


def staggered(nbytes: int) -> int:
    """The size to give a segment asked for nbytes: a large one gets 4 to 256 KiB more, in turn.

    AMD Zen cores pick an L1 cache way by a hash of virtual address bits 12 to 27 (the
    "utag" of AMD's optimization guide; Lipp et al., "Take A Way", 2020), so an array
    read while another is written exactly 256 MiB (or a multiple) away collide on every
    line: ``np.multiply(a, 2, out=b)`` over 128 MiB took 11.6 ms instead of 9.0 here.
    The kernel puts a large mapping at the top of a free gap, and the gaps between
    glibc's 64 MiB-aligned malloc arenas end at aligned addresses, so two segments of
    one size would start the same distance below such ends: often a multiple of 256 MiB
    apart. Segments made one after the other (an argument and its result's) differ in
    size instead; one page apart is as fast as far apart.
    """
    if nbytes < STAGGER_FROM:
        return nbytes
    return nbytes + STAGGER_STEP * (1 + next(_stagger_turns) % STAGGER_STEPS)


def failure(what: str, exc: OSError, *, memfd: bool = False) -> str:
    """Say what failed, why, and what to do about it."""
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        # Mappings hold none (see _fdless_mmap): the process's own files fill the table.
        remedy = "too many files are open: raise the limit (ulimit -n) or close some files"
    elif memfd and exc.errno in (errno.ENOSPC, errno.ENOMEM):
        remedy = (
            "the memory limit is reached (a container's or the machine's): raise it (for Docker: "
            "--memory) or share smaller arrays"
        )
    elif exc.errno in (errno.ENOSPC, errno.ENOMEM):
        free = _namespace.shm_free_bytes()
        room = f"{_namespace.SHM_DIR} has {free} bytes free" if free is not None else "shared memory is full"
        remedy = f"{room}; enlarge /dev/shm (for Docker: --shm-size) or share smaller arrays"
    else:
        remedy = "check that /dev/shm is a writable tmpfs"
    return f"{what}: {exc}; {remedy}"
