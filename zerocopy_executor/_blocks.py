"""The standard library's shared memory by reference: arrays in a user's ``SharedMemory`` block.

An array whose memory lies in a ``multiprocessing.shared_memory.SharedMemory`` block
the user made (``np.ndarray(shape, dtype, buffer=shm.buf)``, any view of one, a block
of a ``SharedMemoryManager``) is shared already: its descriptor names the block, and
the receiver maps the block by that name and sees the same pages, as the tutorials'
hand-written pattern does, with no copy.

Finding the block: the array's base chain ends at the block's ``mmap``; this process's
map (/proc/self/maps, Linux) names the file mapped there, /dev/shm/<name>, with its
device, inode and the file offset of the mapping. Read once per ``mmap`` object. Where
there is no /proc such arrays are not recognised, and are copied as plain ones.

Identity: when an array is sent, the name must still stand for the file its mapping
maps (a block the user unlinked, or whose name now stands for another file, is copied
instead), and that file's identity (owner uid, device, inode) travels with the name:
a receiver maps the name only if it opens that very file, as for segments (see
_identity).

The block stays the user's: no process of ours closes the user's ``SharedMemory``
object, unlinks the name, or registers it with the resource tracker. A receiver opens
the name with ``shm_open`` (``SharedMemory(name)`` would register it with the tracker
before 3.13, gh-82300, and the tracker would unlink it when the pool's last process
exits), and lists its mapping with the segments (see _segments.register_unowned), so that a
view of it is found by address (a result that is a view of a block argument goes back
by reference, as a view of a shared input) and the mapping is reused while the name
stands for the same file (users make blocks again under old names); it has no owner,
so nothing unlinks it when it dies.

On the wire a block's name carries BLOCK_PREFIX (segment names start with ``zc_`` and
file names with ``/``), so a descriptor says which kind of shared memory it names.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import weakref
from functools import partial
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import _arrayref, _fd_reserve, _fdless_mmap, _identity, _namespace, _segments, _shm
from ._errors import SegmentError

__all__ = ["BLOCK_PREFIX", "attach", "describe", "is_block_name", "locate"]

BLOCK_PREFIX = "shm:"
_MAPS = "/proc/self/maps"


class _Mapped(NamedTuple):
    """What /proc/self/maps says of one mapping of a block."""

    name: str  # the block's name (no prefix)
    device: int  # st_dev of the mapped file
    inode: int
    offset: int  # the file position of the mapping's first byte
    address: int  # the mapping's first byte


def is_block_name(name: str) -> bool:
    """Whether a descriptor's name is a user's block (see BLOCK_PREFIX)."""
    return name.startswith(BLOCK_PREFIX)


def locate(array: NDArray[Any]) -> tuple[str, int, _identity.Identity] | None:
    """Return (name on the wire, offset of array's first element, identity) for a view of a block.

    None if array's memory is not in a writable shared mapping of a block in /dev/shm
    that its name still stands for.
    """
    holder: Any = array
    while isinstance(holder, np.ndarray):
        holder = holder.base
    if isinstance(holder, memoryview):
        holder = holder.obj
    if type(holder) is not mmap.mmap:  # our segments are a subclass, found by address before
        return None
    mapped = _mapped(holder)
    if mapped is None:
        return None
    identity = _current_identity(mapped)
    if identity is None:
        return None
    data: int = array.__array_interface__["data"][0]
    return BLOCK_PREFIX + mapped.name, mapped.offset + (data - mapped.address), identity


def describe(array: NDArray[Any]) -> _arrayref.ArrayRef | None:
    """The descriptor of array if it is a view of a block (see locate), else None."""
    found = locate(array)
    if found is None:
        return None
    name, offset, identity = found
    return _arrayref.ArrayRef(
        name,
        offset,
        array.shape,
        array.strides,
        array.dtype,
        writeable=bool(array.flags.writeable),
        handover=False,  # the block stays its user's
        lent=False,
        segment_id=identity,
    )


# A mapping's file never changes: read /proc/self/maps (0.06-0.2 ms) once per mapping,
# not once per view sent (map() over the chunks of one block sends many).
_MAPPED: weakref.WeakKeyDictionary[mmap.mmap, _Mapped | None] = weakref.WeakKeyDictionary()


def _mapped(mapping: mmap.mmap) -> _Mapped | None:
    if mapping in _MAPPED:
        return _MAPPED[mapping]
    try:
        address: int = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
    except (TypeError, ValueError):  # closed, or empty
        return None
    found = _MAPPED[mapping] = _read_maps(address)
    return found


def _read_maps(address: int) -> _Mapped | None:
    """The block mapped read-write and shared at address, from /proc/self/maps."""
    try:
        with open(_MAPS, "rb") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                start, end = (int(x, 16) for x in fields[0].split(b"-"))
                if start <= address < end:
                    return _parse(fields, start, address)
    except (OSError, ValueError, IndexError):  # no /proc (not Linux), or a line we cannot read
        return None
    return None


def _parse(fields: list[bytes], start: int, address: int) -> _Mapped | None:
    if len(fields) < 6:  # an anonymous mapping: no path
        return None
    perms, offset, device, inode = fields[1], int(fields[2], 16), fields[3], int(fields[4])
    if not perms.startswith(b"rw") or perms[3:4] != b"s":
        return None  # private (copy-on-write) or read-only: the receiver could not share it
    path = os.fsdecode(fields[5].rstrip(b"\n"))
    directory, _, name = path.rpartition("/")
    if directory != _namespace.SHM_DIR or not name:
        return None
    major, minor = (int(x, 16) for x in device.split(b":"))
    return _Mapped(name, os.makedev(major, minor), inode, offset + (address - start), address)


def _current_identity(mapped: _Mapped) -> _identity.Identity | None:
    """The block's identity, if its name still stands for the file mapped (else None: copy it)."""
    try:
        status = os.stat(f"{_namespace.SHM_DIR}/{mapped.name}", follow_symlinks=False)
    except OSError:  # unlinked by the user: no one else can open it by name
        return None
    if not stat.S_ISREG(status.st_mode) or (status.st_dev, status.st_ino) != (mapped.device, mapped.inode):
        return None
    return _identity.of(status)


def attach(name: str, identity: _identity.Identity | None) -> _segments.SegmentBuffer:
    """Map a user's block named on the wire as name (or reuse this process's mapping of it).

    Raises:
        SegmentError: the block is gone, is not the sender's, or cannot be mapped.
    """
    buffer = _segments.mapped(name)
    # Users do make a block again under the name of one they unlinked: a mapping of the
    # old one is stale then, not a reason to refuse (the new one's identity is checked).
    if buffer is not None and buffer.identity == identity:
        return buffer
    block = name.removeprefix(BLOCK_PREFIX)
    # Read-write, as SharedMemory opens it: on Linux that never waits for a FIFO's other end.
    open_block = partial(_shm.posixshmem.shm_open, "/" + block, os.O_RDWR, mode=0o600)
    try:
        buffer = _fd_reserve.with_descriptor(open_block, partial(_map_block, name, identity))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            msg = (
                f"shared memory block {block!r} was unlinked before this process attached it; "
                "keep the block (do not unlink it) until the futures that use it finish"
            )
        else:
            msg = f"cannot open shared memory block {block!r}: {exc.strerror}; check its permissions"
        raise SegmentError(msg) from exc
    _segments.register_unowned(buffer)
    return buffer


def _map_block(name: str, identity: _identity.Identity | None, fd: int) -> _segments.SegmentBuffer:
    block = name.removeprefix(BLOCK_PREFIX)  # as the user knows it
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        msg = f"shared memory block {block!r} is not a regular file now; it was replaced behind our back"
        raise SegmentError(msg)
    _identity.check(block, _identity.of(status), identity, user_block=True)
    if status.st_size == 0:
        msg = f"shared memory block {block!r} is empty; it was truncated or replaced behind our back"
        raise SegmentError(msg)
    buffer, address = _fdless_mmap.map_shared(_segments.SegmentBuffer, fd, status.st_size)
    buffer.name, buffer.identity, buffer.address = name, _identity.of(status), address
    return buffer
