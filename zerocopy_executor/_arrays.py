"""Shared allocation: plain ndarrays whose memory lies in a shared segment."""

from __future__ import annotations

import math
import operator
import threading
import weakref
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _arrayref, _blocks, _namespace, _segments, _shm
from ._fork_safety import at_fork

__all__ = [
    "PROCESS_SEGMENTS",
    "TASK_MEMORY",
    "ProcessSegments",
    "empty",
    "empty_like",
    "has_views",
    "is_shared",
    "share",
    "zeros",
    "zeros_like",
]


class _TaskMemory(threading.local):
    """Warm memory a worker's running task may place new shared arrays in (see _worker).

    While a task runs, ``take`` is its session's offer of the segment the parent lent
    for the result: an array made there with :func:`empty` comes back by reference,
    with no copy and no fresh pages. Outside a task (and in other threads) it is None.
    """

    take: Callable[[int], NDArray[Any] | None] | None = None


TASK_MEMORY = _TaskMemory()


def _forget_task_memory() -> None:
    # A child forked inside a task shares the lent segment's pages: never its arrays.
    TASK_MEMORY.take = None


at_fork(after_in_child=_forget_task_memory)


class ProcessSegments:
    """Segments owned by this process alone, tagged as its segments are (see _namespace): not recycled.

    Where a worker's results, ``zerocopy_executor.empty`` and an initializer's arguments get theirs.
    """

    def allocate(self, nbytes: int) -> tuple[_segments.SegmentBuffer, None]:
        """A new segment of nbytes, and no lease: it is not pooled."""
        return _segments.create(nbytes, tag=_namespace.process_tag()), None


PROCESS_SEGMENTS = ProcessSegments()


def _normalize_shape(shape: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (operator.index(shape),)
    return tuple(operator.index(n) for n in shape)


def empty(
    shape: int | tuple[int, ...] | list[int], dtype: DTypeLike = float, order: Literal["C", "F"] = "C"
) -> NDArray[Any]:
    """Return a new uninitialised array in shared memory, like ``numpy.empty``.

    The result is a plain ``numpy.ndarray``. Passed to a SharedArrayExecutor (in either
    direction) it travels by reference: the receiver sees the same memory. The segment
    is freed when the last view of it, in any process, is garbage-collected. In a
    worker's task, an array the size of the task's last results is placed in a warm
    segment the parent lent for the result (no fresh pages to fault in).

    Args:
        shape: the array's shape.
        dtype: any dtype NumPy can put in a buffer (not object).
        order: "C" or "F" memory layout.

    Returns:
        The new array.

    Raises:
        TypeError: the dtype holds Python objects.
        ValueError: a dimension is negative, or order is not "C" or "F".
        SegmentError: shared memory is full.
    """
    return _allocate(shape, dtype, order, zeroed=False)


def _allocate(
    shape: int | tuple[int, ...] | list[int], dtype: DTypeLike, order: Literal["C", "F"], *, zeroed: bool
) -> NDArray[Any]:
    dims = _normalize_shape(shape)
    descr = np.dtype(dtype)
    if descr.hasobject:
        msg = f"cannot share array with dtype {descr}; pass object arrays as ordinary arguments"
        raise TypeError(msg)
    if order not in ("C", "F"):
        msg = f"order must be 'C' or 'F', got {order!r}"
        raise ValueError(msg)
    if any(n < 0 for n in dims):
        msg = f"negative dimensions are not allowed, got shape {dims!r}"
        raise ValueError(msg)
    nbytes = math.prod(dims) * descr.itemsize
    _shm.require("a shared array")
    take = TASK_MEMORY.take
    warm = None if take is None or nbytes == 0 else take(nbytes)
    if warm is not None:  # recycled memory holds old data
        array: NDArray[Any] = np.ndarray(dims, descr, buffer=warm, order=order)
        if zeroed:
            array.fill(0)
        return array
    buffer, _ = PROCESS_SEGMENTS.allocate(max(nbytes, 1))  # mmap cannot map zero bytes
    root = np.frombuffer(buffer, dtype=np.uint8)  # every view's base, watched (see has_views)
    buffer.views = weakref.ref(root)
    return np.ndarray(dims, descr, buffer=root, order=order)  # a new segment is all zeros


def has_views(buffer: _segments.SegmentBuffer) -> bool:
    """Whether an array made by empty() & co. still views buffer (False if not made there)."""
    root = buffer.views
    return root is not None and root() is not None


def zeros(
    shape: int | tuple[int, ...] | list[int], dtype: DTypeLike = float, order: Literal["C", "F"] = "C"
) -> NDArray[Any]:
    """Return a new zero-filled array in shared memory, like ``numpy.zeros``.

    Same arguments as :func:`empty`. A new segment is zero-filled by the kernel, so
    this costs no more than ``empty``; warm memory a worker's task reuses is filled.
    """
    return _allocate(shape, dtype, order, zeroed=True)


def empty_like(a: NDArray[Any], dtype: DTypeLike | None = None) -> NDArray[Any]:
    """Return a new shared array with a's shape and dtype (and its layout if Fortran)."""
    a = np.asarray(a)
    return empty(a.shape, a.dtype if dtype is None else dtype, _arrayref.layout_order(a))


def zeros_like(a: NDArray[Any], dtype: DTypeLike | None = None) -> NDArray[Any]:
    """Return a new zero-filled shared array with a's shape and dtype."""
    a = np.asarray(a)
    return zeros(a.shape, a.dtype if dtype is None else dtype, _arrayref.layout_order(a))


def share(a: Any) -> NDArray[Any]:
    """Return a copy of a in shared memory (one copy); pass it to workers by reference.

    Args:
        a: an array, or anything ``numpy.asarray`` accepts.

    Raises:
        TypeError: the array holds Python objects, or is of an ndarray subclass other
            than ``np.memmap`` (a masked array, a matrix): only its data would be shared.
    """
    if isinstance(a, np.ndarray) and type(a) not in (np.ndarray, np.memmap):
        kind = f"{type(a).__module__}.{type(a).__qualname__}"
        msg = (
            f"cannot share a {kind}: only its data would be shared and the rest dropped; "
            "share the plain arrays it is made of (for a masked array, a.data and a.mask) separately"
        )
        raise TypeError(msg)
    source = np.asarray(a)
    out = empty_like(source)
    np.copyto(out, source, casting="no")
    return out


def is_shared(a: Any) -> bool:
    """Return True if a is an ndarray whose memory lies in a shared segment mapped here.

    Any view counts: slices, transposes, negative strides, views made by other
    libraries, and views of a ``multiprocessing.shared_memory.SharedMemory`` block
    (Linux). Such arrays are sent to workers (and back) without a copy.
    """
    if not isinstance(a, np.ndarray) or a.size == 0:
        return False
    return _arrayref.locate(a) is not None or _blocks.locate(a) is not None
