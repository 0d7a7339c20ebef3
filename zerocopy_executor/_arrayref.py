"""ArrayRef: what crosses the pipe instead of an array's bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import _segments
from ._errors import SegmentError

__all__ = ["ArrayRef", "byte_extent", "describe", "locate", "rebuild"]


class ArrayRef(NamedTuple):
    """A view of a shared segment: enough to rebuild the array over the same pages.

    A NamedTuple so that it pickles as a plain tuple: it is sent once per array.
    """

    name: str
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: np.dtype[Any]
    writeable: bool
    handover: bool  # the receiver becomes the segment's owner
    lent: bool  # a recycled segment: the receiver must not keep views past the call


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
    return ArrayRef(buffer.name, offset, array.shape, array.strides, array.dtype, writeable, handover, lent)


def rebuild(
    ref: ArrayRef, base_for: Callable[[_segments.SegmentBuffer], Any] | None = None
) -> tuple[NDArray[Any], _segments.SegmentBuffer]:
    """Map ref's segment (once per process); return the view it describes and the mapping.

    Args:
        ref: the descriptor.
        base_for: picks the object the view is made from (the mapping itself, or a
            lease over it whose lifetime someone watches); the mapping by default.

    Raises:
        SegmentError: the segment is gone, or the descriptor points outside it.
    """
    name, offset, shape, strides, dtype, writeable, _, _ = ref
    buffer = _segments.attach(name, populate=ref.lent)  # a lent (recycled) copy is read whole
    low, high = byte_extent(shape, strides, dtype.itemsize) if len(shape) == len(strides) else (-1, -1)
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
