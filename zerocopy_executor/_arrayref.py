"""ArrayRef: what crosses the pipe instead of an array's bytes, both ways.

An encoder (see _encoding) decides an array's path and describes it (describe); pickle
then sends reduction(ref), and the receiver's unpickler calls unpickle, which maps the
segment and rebuilds the view over the base the receiving session picks (see _decoding).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from functools import lru_cache, partial
from typing import Any, Literal, NamedTuple, Protocol, cast

import numpy as np
from numpy.typing import NDArray

from . import _blocks, _files, _segments
from ._errors import SegmentError

__all__ = [
    "ArrayRef",
    "ReceivingSession",
    "address_extent",
    "byte_extent",
    "describe",
    "locate",
    "pack",
    "rebuild",
    "receiving",
    "reduction",
    "unpickle",
]


class ArrayRef(NamedTuple):
    """A view of a shared segment: enough to rebuild the array over the same pages.

    Sent as a plain tuple (see pack): one per array, for every task.
    """

    name: str
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: np.dtype[Any] | str  # a string once packed
    writeable: bool
    handover: bool  # the receiver becomes the segment's owner
    lent: bool  # a recycled segment: the receiver must not keep views past the call
    # A copy made for this transfer alone, of which the sender keeps no view: a worker
    # may write its result into a copied argument's segment once the call is done with
    # it, and the parent recycles a result's segment once the result is dropped.
    scratch: bool = False
    # For a memory-mapped file (name is its path): the mapped file's (device major,
    # minor, inode), so that a file replaced at that path is refused (see _files).
    file_id: tuple[int, int, int] | None = None
    # For a segment: its (owner uid, device, inode), so that a name unlinked and made
    # again by someone else is refused (see _identity).
    segment_id: tuple[int, int, int] | None = None


def byte_extent(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int) -> tuple[int, int]:
    """Return (low, high) byte offsets, relative to the first element, that a view spans."""
    low = high = 0
    for extent, stride in zip(shape, strides, strict=True):
        if stride < 0:
            low += stride * (extent - 1)
        else:
            high += stride * (extent - 1)
    return low, high + itemsize


def layout_order(array: NDArray[Any]) -> Literal["C", "F"]:
    """The order a copy of array keeps: Fortran only if it is Fortran- and not C-contiguous."""
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


def address_extent(array: NDArray[Any]) -> tuple[int, int]:
    """Return the (first, end) addresses of the bytes array's elements span."""
    data: int = array.__array_interface__["data"][0]
    low, high = byte_extent(array.shape, array.strides, array.itemsize)
    return data + low, data + high


def locate(array: NDArray[Any]) -> tuple[_segments.SegmentBuffer, int] | None:
    """Return the shared mapping holding array's memory and the offset of its first element."""
    if array.size == 0:
        return None
    data: int = array.__array_interface__["data"][0]
    low, high = byte_extent(array.shape, array.strides, array.itemsize)
    found = _segments.find(data + low, data + high)
    if found is None:
        return None
    buffer, low_offset = found
    return buffer, low_offset - low


def describe(
    array: NDArray[Any], buffer: _segments.SegmentBuffer, offset: int, *, handover: bool, lent: bool
) -> ArrayRef:
    """Return the ArrayRef of array, a view of buffer starting offset bytes in."""
    writeable = bool(array.flags.writeable)
    shape, strides, dtype, identity = array.shape, array.strides, array.dtype, buffer.identity
    name = _segments.wire_name(buffer, handover=handover)
    return ArrayRef(name, offset, shape, strides, dtype, writeable, handover, lent, False, None, identity)


def pack(ref: ArrayRef) -> tuple[Any, ...]:
    """Return ref's fields as pickle sends them at C speed: a simple dtype as its string.

    A dtype object and its class each go through the pickler's Python-level hooks:
    about 10 us of a by-reference task's encoding, and as much again to decode.
    """
    dtype = ref.dtype
    if (
        isinstance(dtype, np.dtype)
        and dtype.fields is None
        and dtype.subdtype is None
        and dtype.metadata is None
        and _round_trips(dtype.str, cast("Hashable", dtype.type))
    ):
        dtype = dtype.str
    return (ref.name, ref.offset, ref.shape, ref.strides, dtype, *ref[5:])


def reduction(ref: ArrayRef) -> tuple[Callable[..., NDArray[Any]], tuple[Any, ...]]:
    """What pickle sends for an array in shared memory: unpickle and ref's packed fields."""
    return (unpickle, pack(ref))


class ReceivingSession(Protocol):
    """The decode pass an unpickle belongs to (see _decoding.DecodeSession)."""

    on_handover: Callable[[_segments.SegmentBuffer], None] | None

    def base_for(self, ref: ArrayRef, buffer: _segments.SegmentBuffer) -> Any:
        """The object views of buffer, the segment ref names, are made from."""
        ...


# The session of the unpickling under way in this thread: pickle calls unpickle with
# the packed fields alone (see receiving).
_RECEIVING = threading.local()


def receiving(session: ReceivingSession | None) -> ReceivingSession | None:
    """Make session the one this thread's unpickles rebuild for (None: none); return the one before.

    A decode restores the one before when it ends: an object whose unpickling decodes
    another payload must not leave the outer decode's arrays without their session.
    """
    previous: ReceivingSession | None = getattr(_RECEIVING, "session", None)
    _RECEIVING.session = session
    return previous


def unpickle(*fields: Any) -> NDArray[Any]:
    """Rebuild the array a packed ArrayRef describes: pickle's side of reduction.

    _decoding calls it too, for out-of-band buffers. A segment handed over becomes this
    process's: registered, and reported to the session; if it cannot be mapped, it is
    unlinked, since nobody else will.
    """
    ref = ArrayRef(*fields)
    session: ReceivingSession | None = getattr(_RECEIVING, "session", None)
    base_for = None if session is None else partial(session.base_for, ref)
    try:
        array, buffer = rebuild(ref, base_for)
    except SegmentError:
        if ref.handover:  # handed to us: ours to unregister, and to unlink while the name is still its
            _segments.unlink(ref.name, unregister_if_gone=True, identity=ref.segment_id)
        raise
    if ref.handover and buffer is not None:
        _segments.take_ownership(buffer)
        if session is not None and session.on_handover is not None:
            session.on_handover(buffer)
    return array


@lru_cache(maxsize=64)
def _round_trips(text: str, scalar_type: Hashable) -> bool:
    """Whether np.dtype(text) gives back this dtype (np.record and np.void share '|V8')."""
    try:
        back = np.dtype(text)
    except (TypeError, ValueError):  # a user dtype whose string NumPy cannot parse
        return False
    return back.str == text and cast("Hashable", back.type) is scalar_type


def _unpack_dtype(dtype: np.dtype[Any] | str) -> np.dtype[Any]:
    return dtype if isinstance(dtype, np.dtype) else _dtype_from_text(dtype)


@lru_cache(maxsize=64)
def _dtype_from_text(text: str) -> np.dtype[Any]:
    # Strings only: dtypes that differ in metadata compare (and hash) equal.
    return np.dtype(text)


def rebuild(
    ref: ArrayRef, base_for: Callable[[_segments.SegmentBuffer], Any] | None = None
) -> tuple[NDArray[Any], _segments.SegmentBuffer | None]:
    """Map ref's segment (once per process); return the view it describes and the mapping.

    A descriptor of a memory-mapped file (see _files) maps the file instead, and
    returns a ``np.memmap`` view and no segment; one of a user's SharedMemory block
    maps the block (see _blocks).

    Args:
        ref: the descriptor.
        base_for: picks the object the view is made from (the mapping itself, or a
            lease over it whose lifetime someone watches); the mapping by default.

    Raises:
        SegmentError: the segment is gone, or the descriptor points outside it.
    """
    name, offset, shape, strides, dtype_or_text, writeable = ref[:6]
    try:
        dtype = _unpack_dtype(dtype_or_text)
    except (TypeError, ValueError) as exc:
        msg = f"descriptor for segment {name!r} has a bad dtype {dtype_or_text!r}; it was corrupted or forged"
        raise SegmentError(msg) from exc
    low, high = byte_extent(shape, strides, dtype.itemsize) if len(shape) == len(strides) else (-1, -1)
    if _files.is_file_name(name):
        return _rebuild_file_view(ref, dtype, low, high)
    if _blocks.is_block_name(name):  # a user's SharedMemory block: never handed over nor lent
        if ref.handover or ref.lent or ref.scratch:
            msg = f"descriptor for shared memory block {name!r} hands it over; it was corrupted or forged"
            raise SegmentError(msg)
        buffer = _blocks.attach(name, ref.segment_id)
    else:  # a lent (recycled) copy is read whole
        buffer = _segments.attach(name, ref.segment_id, populate=ref.lent)
    if offset + low < 0 or offset + high > len(buffer):
        msg = (
            f"descriptor for segment {name!r} (offset {offset}, shape {shape}, strides {strides}) "
            f"points outside its {len(buffer)} bytes; it was corrupted or forged"
        )
        raise SegmentError(msg)
    try:
        base = buffer if base_for is None else base_for(buffer)
        array: NDArray[Any] = np.ndarray(shape, dtype, buffer=base, offset=offset, strides=strides)
    except (TypeError, ValueError) as exc:
        msg = f"cannot rebuild an array of shape {shape} and dtype {dtype} over segment {name!r}: {exc}"
        raise SegmentError(msg) from exc
    if not writeable:
        array.flags.writeable = False
    return array, buffer


def _rebuild_file_view(ref: ArrayRef, dtype: np.dtype[Any], low: int, high: int) -> tuple[NDArray[Any], None]:
    if ref.offset + low < 0 or low > high:
        msg = f"descriptor for file {ref.name!r} points before its start; it was corrupted or forged"
        raise SegmentError(msg)
    mapping, start = _files.map_region(
        ref.name, ref.offset + low, ref.offset + high, writeable=ref.writeable, file_id=ref.file_id
    )
    view: Any  # a np.memmap, which typing knows no way to make from a buffer
    try:
        view = np.ndarray.__new__(
            np.memmap, ref.shape, dtype, buffer=mapping, offset=start - low, strides=ref.strides
        )
    except (TypeError, ValueError) as exc:
        msg = f"cannot rebuild an array of shape {ref.shape} and dtype {dtype} over file {ref.name!r}: {exc}"
        raise SegmentError(msg) from exc
    # What np.memmap itself records: the mapping, the file, where it starts, the mode.
    view._mmap, view.filename = mapping, ref.name
    view.offset, view.mode = ref.offset + low - start, "r+" if ref.writeable else "r"
    return view, None
