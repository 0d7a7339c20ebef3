"""Memory-mapped files by reference: a ``np.memmap`` travels as its file, offset and layout.

A memmap of a file (mode 'r', 'r+' or 'w+'), and any view of one, is shared memory
already: every process that maps the file sees the same pages (DESIGN.md; joblib passes
memmaps the same way). So it is never copied, and a file larger than /dev/shm, or than
RAM, still works. A copy-on-write ('c') memmap is private to its process: it keeps
copy semantics and takes the ordinary paths.

The descriptor is an ArrayRef whose name is the file's absolute path and whose offset
is the file position of the array's first element (segment names never start with '/').
The receiver maps the part of the file the view spans, read-only unless the sender's
view was writable, and raises SegmentError if the file is gone or now too short.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._errors import SegmentError

__all__ = ["is_file_name", "locate", "map_region"]


def is_file_name(name: str) -> bool:
    """Whether a descriptor's name is a file path (segment names are never absolute)."""
    return name.startswith("/")


def locate(array: NDArray[Any]) -> tuple[str, int, bool] | None:
    """Return (path, file position of array's first element, writable) for a view of a file memmap.

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
    return str(holder.filename), position, bool(array.flags.writeable) and holder.mode != "r"


def map_region(path: str, low: int, high: int, *, writeable: bool) -> tuple[np.memmap[Any, Any], int]:
    """Map bytes [low, high) of a file; return the mapping and low's offset in it.

    Raises:
        SegmentError: the file is gone, unreadable, or shorter than high.
    """
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        msg = (
            f"memory-mapped file {path!r} is gone ({exc.strerror}); keep the file (and the "
            "memmap) until the futures that use it finish"
        )
        raise SegmentError(msg) from exc
    if size < high:
        msg = (
            f"memory-mapped file {path!r} is {size} bytes but the array needs bytes {low} to {high}; "
            "it was truncated or replaced behind our back"
        )
        raise SegmentError(msg)
    start = low - low % mmap.ALLOCATIONGRANULARITY
    try:
        if writeable:
            region = np.memmap(path, dtype=np.uint8, mode="r+", offset=start, shape=(high - start,))
        else:
            region = np.memmap(path, dtype=np.uint8, mode="r", offset=start, shape=(high - start,))
    except OSError as exc:
        msg = f"cannot map file {path!r}: {exc}; check that it is readable (and writable for 'r+')"
        raise SegmentError(msg) from exc
    return region, low - start
