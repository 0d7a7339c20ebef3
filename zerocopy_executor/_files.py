"""Memory-mapped files by reference: a ``np.memmap`` travels as its file, offset and layout.

A memmap of a file (mode 'r', 'r+' or 'w+'), and any view of one, is shared memory
already: every process that maps the file sees the same pages (joblib passes
memmaps the same way). So it is never copied, and a file larger than /dev/shm, or than
RAM, still works. A copy-on-write ('c') memmap is private to its process: it keeps
copy semantics and takes the ordinary paths.

The descriptor is an ArrayRef whose name is the file's absolute path, whose offset is
the file position of the array's first element (segment names never start with '/'),
and whose file_id is the mapped file's device and inode, read from /proc/self/maps
(Linux; elsewhere None, and unchecked). The receiver opens the path once, without
blocking, refuses anything but a regular file (a FIFO put at the path would block it), a
different file (replaced behind our back) or one now too short (truncated), and maps
the part the view spans through that same descriptor: read-only unless the sender's
view was writable, never growing the file. The mapping keeps no descriptor (see
_fdless_mmap).
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import weakref
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _fd_reserve, _fdless_mmap
from ._errors import SegmentError

__all__ = ["FileId", "is_file_name", "locate", "map_region"]

FileId = tuple[int, int, int]  # device major, device minor, inode


def is_file_name(name: str) -> bool:
    """Whether a descriptor's name is a file path (segment names are never absolute)."""
    return name.startswith("/")


def locate(array: NDArray[Any]) -> tuple[str, int, bool, FileId | None] | None:
    """Return (path, file position of array's first element, writable, file id) for a file memmap view.

    None if array's memory is not a shared mapping of a file (plain memory, an anonymous
    or copy-on-write memmap).
    """
    holder: Any = array
    while isinstance(holder, np.ndarray) and not isinstance(holder.base, mmap.mmap):
        holder = holder.base
    if not isinstance(holder, np.memmap) or holder.filename is None or holder.mode == "c":
        return None
    mapping: mmap.mmap = holder.base  # type: ignore[assignment]  # checked above
    # np.memmap maps the file from its offset rounded down to the allocation granularity.
    mapped_from = holder.offset - holder.offset % mmap.ALLOCATIONGRANULARITY
    mapping_address: int = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
    address: int = array.__array_interface__["data"][0]
    position = mapped_from + (address - mapping_address)
    writeable = bool(array.flags.writeable) and holder.mode != "r"
    return str(holder.filename), position, writeable, _file_id_of(mapping, mapping_address)


# A mapping's file never changes: read /proc/self/maps (0.06-0.2 ms, more with more mappings) once
# per mapping, not once per view sent (map() over the chunks of one memmap sends many).
_FILE_IDS: weakref.WeakKeyDictionary[mmap.mmap, FileId | None] = weakref.WeakKeyDictionary()


def _file_id_of(mapping: mmap.mmap, address: int) -> FileId | None:
    if mapping in _FILE_IDS:
        return _FILE_IDS[mapping]
    file_id = _FILE_IDS[mapping] = _mapped_file_id(address)
    return file_id


def _mapped_file_id(address: int) -> FileId | None:
    """The (device major, minor, inode) of the file mapped at address, from /proc/self/maps."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            for line in maps:
                fields = line.split()
                start, end = (int(x, 16) for x in fields[0].split(b"-"))
                if start <= address < end:
                    major, minor = (int(x, 16) for x in fields[3].split(b":"))
                    return major, minor, int(fields[4])
    except (OSError, ValueError, IndexError):  # not Linux
        return None
    return None


def map_region(
    path: str, low: int, high: int, *, writeable: bool, file_id: FileId | None = None
) -> tuple[mmap.mmap, int]:
    """Map bytes [low, high) of a file; return the mapping and low's offset in it.

    Raises:
        SegmentError: the file is gone, unreadable, not a regular file, another file than
            the sender's, or shorter than high.
    """

    def map_checked(fd: int) -> tuple[mmap.mmap, int]:  # if it is the sender's file, and long enough
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            msg = f"memory-mapped file {path!r} is not a regular file now: it was replaced behind our back"
            raise SegmentError(msg)
        found = (os.major(status.st_dev), os.minor(status.st_dev), status.st_ino)
        if file_id is not None and found != tuple(file_id):
            msg = (
                f"memory-mapped file {path!r} was replaced behind our back (another file is at that path now)"
            )
            raise SegmentError(msg)
        if status.st_size < high:
            msg = (
                f"memory-mapped file {path!r} is {status.st_size} bytes but the array needs bytes "
                f"{low} to {high}; it was truncated or replaced behind our back"
            )
            raise SegmentError(msg)
        start = low - low % mmap.ALLOCATIONGRANULARITY
        try:
            mapping, _ = _fdless_mmap.map_shared(
                mmap.mmap, fd, high - start, offset=start, writeable=writeable
            )
        except (OSError, ValueError) as exc:
            msg = f"cannot map file {path!r}: {exc}; check that it is readable (and writable for 'r+')"
            raise SegmentError(msg) from exc
        return mapping, low - start

    # Without O_NONBLOCK, opening a FIFO put at the path would wait for a writer forever.
    flags = (os.O_RDWR if writeable else os.O_RDONLY) | os.O_NONBLOCK | os.O_NOCTTY
    open_file = partial(os.open, path, flags)
    try:
        return _fd_reserve.with_descriptor(open_file, map_checked)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            msg = (
                f"cannot open memory-mapped file {path!r}: {exc.strerror}; raise the limit "
                "(ulimit -n) or close some files"
            )
        else:
            msg = (
                f"memory-mapped file {path!r} is gone or unreadable ({exc.strerror}); keep the file "
                "(and the memmap) until the futures that use it finish"
            )
        raise SegmentError(msg) from exc
