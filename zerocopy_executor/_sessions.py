"""Encode and decode sessions: where each array goes, and what a transfer pinned.

An EncodeSession decides, array by array, between the three paths (by reference,
copied once into a segment, pickled) and keeps alive what the receiver will map. A
DecodeSession rebuilds arrays from their descriptors on the other side, over the
right base object (a segment's mapping, or a lease or per-task root over it that
tells when every view is gone). The picklers (see _picklers) call into these.
"""

from __future__ import annotations

import pickle
import threading
import warnings
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from . import _arrayref, _pool, _segments
from ._config import SharingPolicy
from ._errors import SegmentError, SharedMemoryFullWarning

__all__ = [
    "PROTOCOL",
    "READ_ONLY_STAYS_READ_ONLY",
    "DecodeSession",
    "EncodeSession",
    "SegmentAllocator",
    "TaskDecodeSession",
    "arrives_writeable",
    "decode",
]

PROTOCOL = pickle.HIGHEST_PROTOCOL
# ProcessPoolExecutor pickles with the default protocol; from 3.14 it is 5, whose
# in-band buffers keep a read-only contiguous array read-only (DESIGN.md fact 14).
READ_ONLY_STAYS_READ_ONLY = pickle.DEFAULT_PROTOCOL >= 5


class SegmentAllocator(Protocol):
    """Creates a segment for a copied array; returns it and, if pooled, its lease."""

    def __call__(self, nbytes: int) -> tuple[_segments.SegmentBuffer, NDArray[Any] | None]: ...


class EncodeSession:
    """One encode pass: the policy, what it counted, and the segments it pinned.

    Args:
        policy: the size threshold for copying.
        allocate: creates a segment for a copied array.
        handover: whether segments this process owns are handed to the receiver
            (results, which the parent will own) or kept (arguments).
        spare: recycled segments a result may be copied into rather than a new
            segment (their mappings and a per-task root over each): the one the
            parent lent for it, and the task's copied arguments nothing views any more.
    """

    __slots__ = (
        "allocate",
        "buffers",
        "copied_nbytes",
        "handover",
        "pinned",
        "policy",
        "scratch_sizes",
        "spare",
        "tally",
    )

    def __init__(
        self,
        policy: SharingPolicy,
        allocate: SegmentAllocator,
        *,
        handover: bool,
        spare: list[tuple[_segments.SegmentBuffer, NDArray[Any]]] | None = None,
    ) -> None:
        self.policy = policy
        self.allocate = allocate
        self.handover = handover
        self.spare = spare or []
        self.tally: dict[str, int] = {}  # only the paths taken: most tiny tasks take none
        # What the receiver will map (mappings, or leases over them): kept alive, so
        # linked, until the receiver is done.
        self.pinned: list[Any] = []
        self.buffers: list[_segments.SegmentBuffer] = []  # the mappings behind pinned
        # Largest array copied: a segment that size is worth lending next time.
        self.copied_nbytes = 0
        # Sizes of the recycled segments arrays were copied into (see ArrayRef.scratch).
        self.scratch_sizes: list[int] = []

    def reduce_array(self, array: NDArray[Any]) -> tuple[Any, ...] | None:
        """Return a reduction that ships array through shared memory, or None to pickle it."""
        nbytes = array.nbytes
        if array.dtype.hasobject or nbytes == 0:
            self._count("pickled", nbytes)
            return None
        found = _arrayref.locate(array)
        if found is not None:
            buffer, offset = found
            handover = self.handover and _segments.is_owned(buffer)
            if handover:
                _segments.disown(buffer)
            lease = _pool.current_lease(buffer)
            self.pinned.append(buffer if lease is None else lease)
            self.buffers.append(buffer)
            self._count("by_reference", nbytes)
            ref = _arrayref.describe(array, buffer, offset, handover=handover, lent=lease is not None)
            return (_rebuild, _arrayref.pack(ref))
        if nbytes >= self.policy.min_nbytes:
            try:
                return self._copy_into_segment(array)
            except SegmentError as exc:
                warnings.warn(f"{exc}; pickling this array instead", SharedMemoryFullWarning, stacklevel=2)
        self._count("pickled", nbytes)
        return _exact_reduction(array)

    def _copy_into_segment(self, array: NDArray[Any]) -> tuple[Any, ...]:
        base: Any  # the mapping, or a lease or per-task root over it
        spare = self._take_spare(array.nbytes)
        if spare is not None:
            buffer, base = spare
            lent, handover, scratch = True, False, False
        else:
            buffer, lease = self.allocate(array.nbytes)
            base = buffer if lease is None else lease
            lent, handover = lease is not None, self.handover
            scratch = True  # a copy for this transfer alone (see ArrayRef.scratch)
            if lent:
                self.scratch_sizes.append(len(buffer))
        order = _arrayref.layout_order(array)
        copy: NDArray[Any] = np.ndarray(array.shape, array.dtype, buffer=base, order=order)
        np.copyto(copy, array, casting="no")
        if handover:
            _segments.disown(buffer)
        self.pinned.append(base)
        self.buffers.append(buffer)
        self.copied_nbytes = max(self.copied_nbytes, array.nbytes)
        self._count("copied", array.nbytes)
        writeable = arrives_writeable(array)  # as a pickled copy would
        ref = _arrayref.ArrayRef(
            buffer.name, 0, copy.shape, copy.strides, copy.dtype, writeable, handover, lent, scratch
        )
        return (_rebuild, _arrayref.pack(ref))

    def _take_spare(self, nbytes: int) -> tuple[_segments.SegmentBuffer, NDArray[Any]] | None:
        """Remove and return the smallest spare segment that fits nbytes (see _pool.fits), if any."""
        fitting = [index for index, (buffer, _) in enumerate(self.spare) if _pool.fits(len(buffer), nbytes)]
        if not fitting:
            return None
        return self.spare.pop(min(fitting, key=lambda index: len(self.spare[index][0])))

    def _count(self, path: str, nbytes: int) -> None:
        tally = self.tally
        tally[f"arrays_{path}"] = tally.get(f"arrays_{path}", 0) + 1
        tally[f"bytes_{path}"] = tally.get(f"bytes_{path}", 0) + nbytes


def _exact_reduction(array: NDArray[Any]) -> tuple[Any, ...] | None:
    """NumPy's own pickling, except where it would not give what ProcessPoolExecutor gives.

    - ProcessPoolExecutor pickles with the default protocol: 4 before Python 3.14, which
      hands the receiver a writable copy of a read-only array; 5 from 3.14, which keeps
      a read-only contiguous array read-only. We pickle with protocol 5 everywhere, so
      before 3.14 a read-only array is pickled as a writable copy.
    - NumPy pickles a non-contiguous array through a copy in *native* byte order, so a
      strided ``>i4`` array would come back as ``<i4`` (same values, other dtype).

    In both cases we pickle a writable copy in the array's own dtype and layout; it
    costs little, these arrays are small and NumPy copies non-contiguous ones anyway.
    """
    contiguous = array.flags.c_contiguous or array.flags.f_contiguous
    if (array.flags.writeable or READ_ONLY_STAYS_READ_ONLY) and (contiguous or array.dtype.isnative):
        return None
    copy = np.array(array, copy=True, order="K")
    reduced: tuple[Any, ...] = copy.__reduce_ex__(PROTOCOL)  # type: ignore[assignment]
    return reduced


def arrives_writeable(array: NDArray[Any]) -> bool:
    """Whether ProcessPoolExecutor would hand the receiver a copy of array that is writable."""
    if array.flags.writeable or not READ_ONLY_STAYS_READ_ONLY:
        return True
    return not (array.flags.c_contiguous or array.flags.f_contiguous)  # NumPy copies those


class DecodeSession:
    """One decode pass in the parent.

    Views of recycled segments are made from their lease, so the segment is not reused
    while they live; segments handed over by a worker are adopted, and those it copied
    a result into (it keeps no view of them) are leased from pool: their pages are warm.
    """

    __slots__ = ("on_handover", "pool")

    def __init__(
        self,
        on_handover: Callable[[_segments.SegmentBuffer], None] | None = None,
        pool: _pool.SegmentPool | None = None,
    ) -> None:
        self.on_handover = on_handover
        self.pool = pool

    def base_for(self, buffer: _segments.SegmentBuffer, ref: _arrayref.ArrayRef) -> Any:
        """Return what views of buffer are made from."""
        lease = _pool.current_lease(buffer)
        if lease is None and ref.scratch and ref.handover and self.pool is not None:
            lease = _pool.lease(buffer, self.pool)
        return buffer if lease is None else lease


class TaskDecodeSession(DecodeSession):
    """A worker's decode of one task.

    Views of lent (recycled) segments are made from a root per task, so that after the
    call we can tell whether the function kept any of them.
    """

    __slots__ = ("_roots", "_spare", "buffers")

    def __init__(self) -> None:
        super().__init__()
        self._roots: dict[str, weakref.ref[NDArray[Any]]] = {}
        # Every mapping the task used: the worker keeps them for the next tasks.
        self.buffers: dict[str, _segments.SegmentBuffer] = {}
        # Lent segments the result may overwrite once nothing views them (see spare).
        self._spare: dict[str, _segments.SegmentBuffer] = {}

    def base_for(self, buffer: _segments.SegmentBuffer, ref: _arrayref.ArrayRef) -> Any:
        """Return a per-task root for lent segments, the mapping otherwise."""
        self.buffers[buffer.name] = buffer
        if ref.scratch and ref.lent:  # views of it have a root: kept() can see them
            self._spare[buffer.name] = buffer
        return self.root(buffer) if ref.lent else buffer

    def lent_for_result(self, buffer: _segments.SegmentBuffer) -> None:
        """Record the segment the parent lent for this task's result."""
        self.buffers[buffer.name] = buffer
        self._spare[buffer.name] = buffer

    def spare(self) -> list[tuple[_segments.SegmentBuffer, NDArray[Any]]]:
        """Segments the result may be written into: lent for it, or copied arguments nothing views.

        Call once the function and its arguments are gone, while the result lives: a
        result that is a view of a copied argument keeps that segment out.
        """
        kept = set(self.kept())
        return [(buffer, self.root(buffer)) for name, buffer in self._spare.items() if name not in kept]

    def root(self, buffer: _segments.SegmentBuffer) -> NDArray[Any]:
        """Return this task's root over a lent segment, making it on first use."""
        ref = self._roots.get(buffer.name)
        root = None if ref is None else ref()
        if root is None:
            root = np.frombuffer(buffer, dtype=np.uint8)
            self._roots[buffer.name] = weakref.ref(root)
            self.buffers[buffer.name] = buffer
        return root

    def kept(self) -> list[str]:
        """Names of lent segments something still views (call once the task's locals are gone)."""
        if not self._roots:
            return []
        return [name for name, ref in self._roots.items() if ref() is not None]


_DECODING = threading.local()


def _rebuild(*fields: Any) -> NDArray[Any]:
    ref = _arrayref.ArrayRef(*fields)
    session: DecodeSession | None = getattr(_DECODING, "session", None)
    base_for = None if session is None else partial(_base_for, session, ref)
    try:
        array, buffer = _arrayref.rebuild(ref, base_for)
    except SegmentError:
        if ref.handover:  # it was handed to us: its registration is ours to end
            _segments.unlink(ref.name, unregister_if_gone=True)
        raise
    if ref.handover:
        _segments.take_ownership(buffer)
        if session is not None and session.on_handover is not None:
            session.on_handover(buffer)
    return array


def _base_for(session: DecodeSession, ref: _arrayref.ArrayRef, buffer: _segments.SegmentBuffer) -> Any:
    return session.base_for(buffer, ref)


def decode(payload: bytes, session: DecodeSession | None = None) -> Any:
    """Unpickle a payload, mapping the segments its ArrayRefs name.

    Raises:
        SegmentError: a segment is gone or a descriptor is out of bounds.
    """
    _DECODING.session = session
    try:
        return pickle.loads(payload)
    finally:
        _DECODING.session = None
