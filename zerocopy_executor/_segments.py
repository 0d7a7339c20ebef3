"""Segment lifetime: create, attach and release shared memory, of two kinds.

Segments are memfds on Linux (see _memfd: outside /dev/shm, freed by the kernel when
the last process holding one goes) and named POSIX segments in /dev/shm elsewhere, or
when the user asks for them, or when a process cannot hold one more descriptor. Both
kinds have a name (the key every table uses) and an identity; a memfd's descriptor also
says where it is reached (``name@<holder pid>.<fd>``, or ``name@h`` when handed over:
see wire_name). Everything below the next paragraph is about named segments, but
that mappings are found by address and a segment is never mapped twice holds for both.

Each process keeps a table of the segments it has mapped, so that any view of a
shared array (a slice, a transpose, a view made by another library) is found by its
address, and so that a segment already mapped here is never mapped twice: a result that
is a view of a shared input then truly aliases it (see _mapping_table).

The rules that keep /dev/shm clean:

- The creator registers the segment with the resource tracker, once. Every process of
  a pool shares that tracker, so attaching never registers (gh-82300: before 3.13
  ``SharedMemory(name=...)`` registers on attach, hence the use of ``_posixshmem``).
- Whoever's ``shm_unlink`` succeeds unregisters it, once; unlinking is atomic, so two
  cleaners (an owner and the executor's sweep, see _sweep) never both unregister.
- Pages are reserved with ``posix_fallocate`` at creation: on a full tmpfs the first
  write to an unbacked page raises SIGBUS, a reserved one cannot.
- The process that owns a segment unlinks it when its last view is garbage-collected
  (or at interpreter exit). Unlinking while mapped is fine on POSIX: other processes
  keep their mappings, only the name goes away.
- Names (see _namespace) are short, random, never reused, created with ``O_EXCL`` and
  mode 0600, and carry the creator's pid and its executor's tag.
- A mapping keeps no file descriptor (see _fdless_mmap), so live shared arrays are
  bounded by memory, not by ``ulimit -n``; the descriptor needed for a moment to map
  one comes from a reserve when the process has none left (see _fd_reserve).
- A large segment is made a little larger than asked, by an amount that changes from
  one segment to the next (see _staggered), so that two arrays are seldom a multiple
  of 256 MiB apart in any process.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import mmap
import os
import weakref
from collections.abc import Callable
from functools import partial
from multiprocessing import resource_tracker, util
from typing import Any

from . import _fd_reserve, _fdless_mmap, _handover, _identity, _memfd, _memory_limit, _namespace, _reaper
from ._errors import SegmentError
from ._mapping_table import MappingTable
from ._shm import posixshmem as _posixshmem  # absent on Windows: see _shm

__all__ = [
    "SegmentBuffer",
    "adopt_unowned",
    "attach",
    "create",
    "drain_releases",
    "find",
    "hand_over",
    "is_owned",
    "mapped",
    "on_release",
    "owned_live_names",
    "take_ownership",
    "unlink",
    "unlink_leftover",
    "wire_name",
]

_RTYPE = "shared_memory"

# Large segments get 1 to STAGGER_STEPS times STAGGER_STEP bytes more than asked for,
# in turn (see _staggered).
STAGGER_FROM = 4 << 20
STAGGER_STEP = 4096
STAGGER_STEPS = 64
_stagger_turns = itertools.count(os.getpid())


class SegmentBuffer(mmap.mmap):
    """A read-write mapping of one named segment (no descriptor kept); arrays view it as their buffer."""

    name: str
    identity: _identity.Identity  # what a receiver checks the name against (see _identity)
    address: int
    ownership: _Ownership
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


class _Ownership:
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


_TABLE: MappingTable[SegmentBuffer] = MappingTable()


def _map(fd: int, status: os.stat_result, name: str, *, populate: bool, location: str = "") -> SegmentBuffer:
    # Pre-faulting a whole mapping in one call costs a fraction of faulting it page by
    # page, but is wasted on a task that touches a slice of a big shared array.
    buffer, address = _fdless_mmap.map_shared(SegmentBuffer, fd, status.st_size, populate=populate)
    buffer.name, buffer.identity = name, _identity.of(status)
    buffer.address, buffer.location = address, location
    return buffer


def _reserve(fd: int, nbytes: int) -> None:
    """Back every page now, so a full tmpfs is an OSError here, not SIGBUS later."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:  # macOS: no fallocate; its shm is not a size-limited tmpfs
        return
    fallocate(fd, 0, nbytes)


def _staggered(nbytes: int) -> int:
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


def create(nbytes: int, *, tag: str, hooks: tuple[Callable[[str], None], ...] = ()) -> SegmentBuffer:
    """Create, reserve and map a new segment owned by this process.

    Args:
        nbytes: size in bytes, at least 1 (a large segment gets a little more, see
            _staggered).
        tag: the tag of the executor the segment belongs to (see _namespace).
        hooks: called with the name after this process unlinks the segment.

    Raises:
        SegmentError: the segment could not be created or its pages reserved (for
            example /dev/shm is full, or no file descriptor is left); nothing is
            left behind.
    """
    _check_memory_limit(nbytes)
    name = _namespace.new_name(tag)
    buffer = _create_memfd(name, nbytes) if _memfd.chosen() else None
    held = None if buffer is None else buffer.ownership.held
    if buffer is None:
        path = "/" + name
        open_new = partial(_posixshmem.shm_open, path, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        try:
            buffer = _fd_reserve.with_descriptor(open_new, partial(_fill_new, name, nbytes))
        except OSError as exc:
            raise SegmentError(_failure(f"cannot create a segment of {nbytes} bytes", exc)) from exc
    _adopt(buffer, os.getpid(), hooks, held)
    _unlink_owned_at_process_exit()
    return buffer


def _check_memory_limit(nbytes: int) -> None:
    """Refuse a segment the memory limit has no room for: reserving it would wake the OOM killer."""
    room = _memory_limit.room_bytes()
    if room is not None and nbytes > room:
        msg = (
            f"cannot create a segment of {nbytes} bytes: the memory limit (a container's) leaves "
            f"{room} bytes; raise it (for Docker: --memory) or share smaller arrays"
        )
        raise SegmentError(msg)


def _create_memfd(name: str, nbytes: int) -> SegmentBuffer | None:
    """A new memfd segment, mapped and held here; None if no descriptor can be held for it.

    Raises:
        SegmentError: its memory could not be reserved (the memory limit is reached).
    """
    try:
        held = _memfd.create(name, _staggered(nbytes))
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return None  # a named segment holds no descriptor
        raise SegmentError(
            _failure(f"cannot reserve {nbytes} bytes of shared memory", exc, memfd=True)
        ) from exc
    try:
        buffer = _map(held, os.fstat(held), name, populate=True, location="@" + _memfd.location(held))
    except BaseException:
        _memfd.close_held(held)
        raise
    buffer.ownership = _Ownership(name, None, held)  # until create() adopts it
    return buffer


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
    size = _staggered(nbytes)
    try:
        os.ftruncate(fd, size)
        _reserve(fd, size)
        return _map(fd, os.fstat(fd), name, populate=True)
    except OSError as exc:
        unlink(name)
        raise SegmentError(_failure(f"cannot reserve {nbytes} bytes of shared memory", exc)) from exc
    except BaseException:
        unlink(name)
        raise


def _failure(what: str, exc: OSError, *, memfd: bool = False) -> str:
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


def attach(wire: str, identity: _identity.Identity | None, *, populate: bool = False) -> SegmentBuffer:
    """Map an existing segment (or reuse this process's mapping of it).

    Args:
        wire: the segment's name as its sender sent it (see wire_name).
        identity: the segment's identity as its sender recorded it (see _identity); None is refused.
        populate: pre-fault the whole mapping (worth it when the whole segment will be
            touched, as for a copied argument).

    Raises:
        SegmentError: the name is not ours, or the segment is gone, empty, or not the sender's.
    """
    name, _, where = wire.partition("@")
    buffer = _TABLE.get(name)
    if buffer is not None:
        _identity.check(name, buffer.identity, identity)
        if where == "h":  # mapped here already: close the duplicate posted for it
            with contextlib.suppress(OSError):
                os.close(_handover.take(name))
        return buffer
    if _namespace.creator_pid(name) is None:
        msg = f"refusing to attach segment {name!r}: not a zerocopy_executor segment name"
        raise SegmentError(msg)
    if where:
        return _attach_memfd(name, where, identity, populate)
    open_existing = partial(_posixshmem.shm_open, "/" + name, os.O_RDWR, mode=0o600)
    try:
        buffer = _fd_reserve.with_descriptor(open_existing, partial(_map_existing, name, identity, populate))
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise SegmentError(_failure(f"cannot open segment {name!r}", exc)) from exc
        msg = (
            f"segment {name!r} was unlinked before this process attached it; keep the "
            "array (and the executor) alive until the futures that use it finish"
        )
        raise SegmentError(msg) from exc
    _adopt(buffer, None, ())
    return buffer


def _attach_memfd(
    name: str, where: str, identity: _identity.Identity | None, populate: bool
) -> SegmentBuffer:
    """Map a memfd: opened where its holder keeps it, or handed over to this process (then held here)."""
    try:
        if where == "h":  # posted to this process by its maker (see _handover)
            fd = _handover.take(name)
            try:
                buffer = _map_existing(name, identity, populate, fd, memfd=True)
                held = _hold_if_room(fd)
            finally:
                os.close(fd)
            if held is None:  # mapped, but out of others' reach: sent again, it is copied
                buffer.reachable, buffer.recyclable = False, False
            else:
                buffer.location = "@" + _memfd.location(held)
        else:
            open_held = partial(_memfd.open_location, where)
            buffer = _fd_reserve.with_descriptor(
                open_held, partial(_map_existing, name, identity, populate, memfd=True)
            )
            buffer.location, held = "@" + where, None
    except (OSError, ValueError) as exc:
        msg = (
            f"cannot open segment {name!r}: {exc}; its holder has released or lost it: keep the array "
            "(and the executor) alive until the futures that use it finish"
        )
        raise SegmentError(msg) from exc
    _adopt(buffer, None, (), held)
    return buffer


def _hold_if_room(fd: int) -> int | None:
    """Hold a duplicate of a descriptor handed over to this process, if one from 1024 up is free."""
    try:
        return _memfd.hold(fd)
    except OSError:
        return None


def _map_existing(
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
        return _map(fd, status, name, populate=populate)
    except OSError as exc:
        raise SegmentError(_failure(f"cannot map segment {name!r}", exc)) from exc


def _adopt(
    buffer: SegmentBuffer,
    owner_pid: int | None,
    hooks: tuple[Callable[[str], None], ...],
    held: int | None = None,
) -> None:
    ownership = _Ownership(buffer.name, owner_pid, held)
    ownership.hooks.extend(hooks)
    buffer.ownership = ownership
    ref = _TABLE.add(buffer)
    _reaper.on_death(buffer, _mapping_died, ref, ownership)


def adopt_unowned(buffer: SegmentBuffer) -> None:
    """List a mapping of shared memory no process of ours owns (a user's block, see _blocks).

    It is found by address and by name as a segment is, and nothing unlinks it.
    """
    _adopt(buffer, None, ())


def mapped(name: str) -> SegmentBuffer | None:
    """This process's live mapping listed under name, if any."""
    return _TABLE.get(name)


def _mapping_died(ref: weakref.ref[SegmentBuffer], ownership: _Ownership) -> None:
    _TABLE.drop(ref)
    _release(ownership)


def drain_releases() -> None:
    """Do now, in this thread, the unlinks of mappings already collected."""
    _reaper.drain()


def _unlink_owned_at_exit() -> None:
    """At interpreter exit, unlink the segments this process still owns and maps."""
    _reaper.drain()
    for action, args in _reaper.pending():
        if action is _mapping_died:
            _release(args[1])


def _unlink_owned_at_process_exit() -> None:
    """Unlink what this process owns at its exit when multiprocessing started it, too.

    A multiprocessing child started by fork or forkserver (a worker of a plain
    ProcessPoolExecutor or Pool) ends with ``os._exit`` after multiprocessing's own
    finalizers, without atexit: a segment it owns (a ``zc.empty`` array kept in a global)
    would stay until the resource tracker exits. Each child starts with an empty
    registry, so every process that comes to own a segment registers once. Priority 0
    runs after the executors' (20) and the queues' (10) finalizers.
    """
    if _EXIT_HOOK_PID[0] != os.getpid():
        _EXIT_HOOK_PID[0] = os.getpid()
        util.Finalize(None, _unlink_owned_at_exit, exitpriority=0)


_EXIT_HOOK_PID = [0]


def _release(ownership: _Ownership) -> None:
    # Under fork a child inherits its parent's mappings and their finalizers: only the
    # owning process may unlink, once (at exit both atexit and multiprocessing's
    # finalizers may come here); only the holding process closes a memfd's descriptor.
    me = os.getpid()
    held = ownership.held
    if held is not None and ownership.holder_pid == me:
        ownership.held = None
        _memfd.close_held(held)
    if ownership.owner_pid != me:
        return
    ownership.owner_pid = None
    if held is None:
        # The owner holds the registration: if someone unlinked the name behind our back
        # (an administrator, systemd's RemoveIPC), we still unregister it, once.
        unlink(ownership.name, unregister_if_gone=True)
    for hook in ownership.hooks:
        hook(ownership.name)


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


def find(low: int, high: int) -> tuple[SegmentBuffer, int] | None:
    """Return the live mapping holding bytes [low, high) and the offset of low in it."""
    return _TABLE.find(low, high)


def is_owned(buffer: SegmentBuffer) -> bool:
    """Whether this process will unlink the segment when its mapping dies."""
    return buffer.ownership.owner_pid == os.getpid()


def take_ownership(buffer: SegmentBuffer, hooks: tuple[Callable[[str], None], ...] = ()) -> None:
    """Make this process the segment's owner (it was handed over by its creator)."""
    buffer.ownership.owner_pid = os.getpid()
    buffer.ownership.hooks.extend(hooks)
    _unlink_owned_at_process_exit()


def hand_over(buffers: list[SegmentBuffer]) -> None:
    """Hand the segments over: the receiver, not this process, will release them.

    The memfds among them are posted to the receiver first (see _handover): their
    descriptors say "handed over" (see wire_name), and the receiver takes them by name.
    """
    posts = {}
    for buffer in buffers:
        held = buffer.ownership.held
        if buffer.location and held is not None and buffer.ownership.holder_pid == os.getpid():
            posts[buffer.name] = held
    if posts:
        _handover.post(posts)
    for buffer in buffers:
        buffer.ownership.owner_pid = None


def wire_name(buffer: SegmentBuffer, *, handover: bool = False) -> str:
    """The name a descriptor of the segment carries: a memfd's says where it is, or "handed over"."""
    if not buffer.location:
        return buffer.name
    if handover and buffer.ownership.held is not None and buffer.ownership.holder_pid == os.getpid():
        return buffer.name + "@h"  # posted with the payload's other segments by hand_over()
    return buffer.name + buffer.location


def on_release(buffer: SegmentBuffer, hook: Callable[[str], None]) -> None:
    """Call hook with the segment's name after its owner here unlinks it."""
    buffer.ownership.hooks.append(hook)


def owned_live_names() -> list[str]:
    """Names of segments this process owns and still has mapped."""
    return _TABLE.owned_names(os.getpid())


# Registered after the reaper's own drain, so this runs first at exit (atexit is LIFO).
atexit.register(_unlink_owned_at_exit)
