"""Shared mappings of a file that keep no file descriptor open, on every Python.

``mmap.mmap(fd, n)`` duplicates fd and keeps the duplicate until the mapping is
closed, so a process holding many shared arrays runs out of descriptors (``ulimit
-n``, often 1024) long before memory. Python 3.13 can be told not to
(``trackfd=False``, gh-78502). Before 3.13, the file is mapped with the mmap system
call over an anonymous ``mmap.mmap`` of the same size (``MAP_FIXED`` replaces those
pages atomically): the object is the standard one (length, buffer protocol, weak
references, ``close()``), holds no descriptor (an anonymous mapping has none), and
its munmap, at ``close()`` or collection, removes our mapping, which now occupies
the same addresses.

What it gives up: ``size()``, ``resize()`` and ``fileno()`` know no file (on 3.13
with ``trackfd=False`` just the same); nothing in this package calls them. The
placeholder's pages are never touched, but under strict overcommit
(``vm.overcommit_memory=2``) a writeable one is charged for the moment it exists.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import sys
from typing import Any, TypeVar

import numpy as np

__all__ = ["map_shared"]

M = TypeVar("M", bound=mmap.mmap)

# The same value on Linux, macOS and the BSDs; the mmap module does not export it.
_MAP_FIXED = 0x10
_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc_mmap() -> Any:
    """The C library's mmap, typed; None where the process has no C library to load (Windows)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):
        return None
    # mmap64 takes a 64-bit offset even in a 32-bit process (glibc); elsewhere off_t is 64-bit.
    function = getattr(libc, "mmap64", None) or libc.mmap
    function.restype = ctypes.c_void_p
    function.argtypes = (
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int64,
    )
    return function


_mmap = _libc_mmap() if sys.version_info < (3, 13) else None


def map_shared(  # noqa: PLR0913 - the knobs of one mmap call
    cls: type[M], fd: int, length: int, *, offset: int = 0, writeable: bool = True, populate: bool = False
) -> tuple[M, int]:
    """Map length bytes of fd from offset (MAP_SHARED); return the mapping and its address.

    The mapping does not keep fd: the caller may close it at once.

    Args:
        cls: mmap.mmap or a subclass of it, the type of the mapping returned.
        fd: an open descriptor of the file.
        length: bytes to map, at least 1.
        offset: where in the file, a multiple of mmap.ALLOCATIONGRANULARITY.
        writeable: map read-write (else read-only: the buffer it exports is read-only).
        populate: pre-fault every page now (MAP_POPULATE, where the system has it).

    Raises:
        OSError: the system refused the mapping.
    """
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writeable else 0)
    flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
    if sys.version_info >= (3, 13):
        mapping = cls(fd, length, flags=flags, prot=prot, offset=offset, trackfd=False)
        return mapping, _address_of(mapping, writeable)
    if _mmap is None:
        raise OSError(errno.ENOSYS, "this platform cannot map a file without keeping its descriptor")
    placeholder = cls(-1, length, flags=mmap.MAP_PRIVATE, prot=prot)
    address = _address_of(placeholder, writeable)
    if _mmap(address, length, prot, flags | _MAP_FIXED, fd, offset) in (None, _MAP_FAILED):
        code = ctypes.get_errno()
        # A MAP_FIXED refused by a permission or argument check leaves the placeholder as it was.
        placeholder.close()
        raise OSError(code, os.strerror(code))
    return placeholder, address


def _address_of(mapping: mmap.mmap, writeable: bool) -> int:
    if writeable:
        anchor = ctypes.c_char.from_buffer(mapping)
        address = ctypes.addressof(anchor)
        del anchor  # a live export would pin the mapping
        return address
    # ctypes takes only writable buffers
    data: int = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
    return data
