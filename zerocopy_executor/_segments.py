"""Segment lifetime: create, attach, hand over and release shared memory, of two kinds.

Segments are memfds on Linux (see _memfd: outside /dev/shm, freed by the kernel when
the last process holding one goes) and named POSIX segments in /dev/shm elsewhere, when
the user asks for them (``ZEROCOPY_EXECUTOR_SEGMENTS=named``), or made by a process
that cannot hold one more descriptor (see _named). This module is the seam: the rest of
the package sees a SegmentBuffer (see _segment_buffer), a name and an identity, whatever
the kind. A memfd's descriptor also says where it is reached: ``name@<holder pid>.<fd>``,
or ``name@h`` when handed over (see wire_name).

Each process keeps a table of the segments it has mapped, so that any view of a
shared array (a slice, a transpose, a view made by another library) is found by its
address, and so that a segment already mapped here is never mapped twice: a result that
is a view of a shared input then truly aliases it (see _mapping_table).

The process that owns a segment releases it when its last view is garbage-collected
(or at its exit): it unlinks a named one (other processes keep their mappings, only
the name goes away), and closes the descriptor it holds of a memfd. Ownership passes
from a worker to the parent with a result (see hand_over, take_ownership).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import weakref
from collections.abc import Callable
from functools import partial
from multiprocessing import util

from . import (
    _fd_reserve,
    _handover,
    _identity,
    _memfd,
    _memory_limit,
    _named,
    _namespace,
    _reaper,
    _segment_buffer,
)
from ._errors import SegmentError
from ._mapping_table import MappingTable
from ._named import unlink, unlink_leftover
from ._segment_buffer import Ownership, SegmentBuffer

__all__ = [
    "SegmentBuffer",
    "attach",
    "create",
    "drain_releases",
    "find",
    "hand_over",
    "is_owned",
    "mapped",
    "on_release",
    "owned_live_names",
    "register_unowned",
    "take_ownership",
    "unlink",
    "unlink_leftover",
    "wire_name",
]

_TABLE: MappingTable[SegmentBuffer] = MappingTable()


def create(nbytes: int, *, tag: str, hooks: tuple[Callable[[str], None], ...] = ()) -> SegmentBuffer:
    """Create, reserve and map a new segment owned by this process.

    Args:
        nbytes: size in bytes, at least 1 (a large segment gets a little more, see
            _segment_buffer.staggered).
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
        buffer = _named.create(name, nbytes)
    _register(buffer, os.getpid(), hooks, held)
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
        held = _memfd.create(name, _segment_buffer.staggered(nbytes))
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return None  # a named segment holds no descriptor
        raise SegmentError(
            _segment_buffer.failure(f"cannot reserve {nbytes} bytes of shared memory", exc, memfd=True)
        ) from exc
    try:
        buffer = _segment_buffer.map_fd(
            held, os.fstat(held), name, populate=True, location="@" + _memfd.location(held)
        )
    except BaseException:
        _memfd.close_held(held)
        raise
    buffer.ownership = Ownership(name, None, held)  # until create() registers it
    return buffer


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
    buffer = _named.open_existing(name, identity, populate)
    _register(buffer, None, ())
    return buffer


def _attach_memfd(
    name: str, where: str, identity: _identity.Identity | None, populate: bool
) -> SegmentBuffer:
    """Map a memfd: opened where its holder keeps it, or handed over to this process (then held here)."""
    try:
        if where == "h":  # posted to this process by its maker (see _handover)
            fd = _handover.take(name)
            try:
                buffer = _segment_buffer.map_checked(name, identity, populate, fd, memfd=True)
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
                open_held, partial(_segment_buffer.map_checked, name, identity, populate, memfd=True)
            )
            buffer.location, held = "@" + where, None
    except (OSError, ValueError) as exc:
        msg = (
            f"cannot open segment {name!r}: {exc}; its holder has released or lost it: keep the array "
            "(and the executor) alive until the futures that use it finish"
        )
        raise SegmentError(msg) from exc
    _register(buffer, None, (), held)
    return buffer


def _hold_if_room(fd: int) -> int | None:
    """Hold a duplicate of a descriptor handed over to this process, if one from 1024 up is free."""
    try:
        return _memfd.hold(fd)
    except OSError:
        return None


def _register(
    buffer: SegmentBuffer,
    owner_pid: int | None,
    hooks: tuple[Callable[[str], None], ...],
    held: int | None = None,
) -> None:
    ownership = Ownership(buffer.name, owner_pid, held)
    ownership.hooks.extend(hooks)
    buffer.ownership = ownership
    ref = _TABLE.add(buffer)
    _reaper.on_death(buffer, _mapping_died, ref, ownership)


def register_unowned(buffer: SegmentBuffer) -> None:
    """List a mapping of shared memory no process of ours owns (a user's block, see _blocks).

    It is found by address and by name as a segment is, and nothing unlinks it.
    """
    _register(buffer, None, ())


def mapped(name: str) -> SegmentBuffer | None:
    """This process's live mapping listed under name, if any."""
    return _TABLE.get(name)


def _mapping_died(ref: weakref.ref[SegmentBuffer], ownership: Ownership) -> None:
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


def _release(ownership: Ownership) -> None:
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
