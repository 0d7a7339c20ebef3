"""Encoding: where each array or buffer goes, and what a transfer pinned.

An EncodeSession decides, for each array a pickler meets, between the three paths
(README, "Three paths"): by reference (its memory already lies in a shared segment,
in a memory-mapped file: see _files, or in a user's SharedMemory block: see _blocks),
copied once into a segment, or pickled. Buffers that are not ndarrays (pickle protocol
5's out-of-band buffers: Arrow data inside pandas and pyarrow objects, which
``reducer_override`` is never shown) reach it through pickle's ``buffer_callback`` and
take the same paths, described by the same ArrayRef (a 1-D ``uint8`` view) and counted
in the same stats. It keeps alive what the receiver will map until the receiver is done.
The picklers (see _picklers) call into it; pickle sends each array as its ArrayRef's
reduction, rebuilt on the other side by _arrayref.unpickle (see _decoding).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Collection
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from . import _arrayref, _blocks, _files, _pool, _segments, _shm
from ._config import SharingPolicy
from ._decoding import Payload
from ._errors import SegmentError, SharedMemoryFullWarning

__all__ = [
    "PROTOCOL",
    "READ_ONLY_STAYS_READ_ONLY",
    "EncodeSession",
    "SegmentSource",
    "arrives_writeable",
]

PROTOCOL = pickle.HIGHEST_PROTOCOL
# ProcessPoolExecutor pickles with the default protocol; from 3.14 it is 5, whose
# in-band buffers keep a read-only contiguous array read-only (strided ones come back writable).
READ_ONLY_STAYS_READ_ONLY = pickle.DEFAULT_PROTOCOL >= 5


class SegmentSource(Protocol):
    """Where a copied array's segment comes from: an executor's (_pool.ExecutorSegments) or this process's."""

    def allocate(self, nbytes: int) -> tuple[_segments.SegmentBuffer, NDArray[Any] | None]:
        """A segment of at least nbytes, and, if pooled, its lease (see _pool)."""
        ...


class EncodeSession:
    """One encode pass: the policy, what it counted, and the segments it pinned.

    Args:
        policy: the size threshold for copying.
        memory: where the segments for copied arrays come from.
        handover: whether segments this process owns are handed to the receiver
            (results, which the parent will own) or kept (arguments).
        spare: recycled segments a result may be copied into rather than a new
            segment (their mappings and a per-task root over each): the one the
            parent lent for it, and the task's copied arguments nothing views any more.
        inputs: (results) segments the task received by reference: a result array
            in one goes back by reference, as a view of a shared input.
        private: (results) segments only this task's function could see (its copied
            arguments, the segment lent for its result); with the segments this
            process owns, a result array in one goes back by reference unless another
            array of the result overlaps it. None: nothing but inputs goes by reference.
            Any other shared memory (kept from an earlier task) is copied, as pickling
            would copy it.
    """

    __slots__ = (
        "buffers",
        "copied_nbytes",
        "copies",
        "extents",
        "handed_over",
        "handover",
        "inputs",
        "made_nbytes",
        "memory",
        "out_of_band",
        "pinned",
        "policy",
        "private",
        "scratch_sizes",
        "spare",
        "tally",
        "watched",
    )

    def __init__(  # noqa: PLR0913 - all but two are keyword-only options of a result's pass
        self,
        policy: SharingPolicy,
        memory: SegmentSource,
        *,
        handover: bool,
        spare: list[tuple[_segments.SegmentBuffer, NDArray[Any]]] | None = None,
        inputs: Collection[str] = (),
        private: Collection[str] | None = (),
    ) -> None:
        self.policy = policy
        self.inputs = inputs
        self.private = private
        # Address ranges of the result arrays sent by reference from private memory: an
        # array overlapping one is copied, so that a result's arrays never alias each
        # other (pickling gives each its own memory).
        self.extents: list[tuple[int, int, bool]] = []  # (first, end, immutable)
        # The private segments those arrays lie in: the worker checks, once the result
        # is dropped, that the function kept no view of them (see _worker).
        self.watched: list[_segments.SegmentBuffer] = []
        self.memory = memory
        self.handover = handover
        self.spare = spare or []
        self.tally: dict[str, int] = {}  # only the paths taken: most tiny tasks take none
        # What the receiver will map (mappings, or leases over them): kept alive, so
        # linked, until the receiver is done.
        self.pinned: list[Any] = []
        self.buffers: list[_segments.SegmentBuffer] = []  # the mappings behind pinned
        # Largest array copied, and largest result array the function itself made in
        # shared memory: a segment that size is worth lending next time.
        self.copied_nbytes = 0
        self.made_nbytes = 0
        # Sizes of the recycled segments arrays were copied into (see ArrayRef.scratch).
        self.scratch_sizes: list[int] = []
        # Immutable buffers copied so far, as (first byte, end, descriptor of the copy,
        # the buffer's array): another immutable buffer within the same memory in this
        # payload refers to that copy (slices of one Arrow buffer cross once). The array
        # is kept alive with the session: a dead one's addresses could be reused by
        # another within the same session (a temporary made by a __reduce__). Immutable
        # buffers only: ndarrays, which a worker may write to, arrive as separate copies,
        # as with pickling.
        self.copies: list[tuple[int, int, _arrayref.ArrayRef, NDArray[Any]]] = []
        # Descriptors of the buffers sent out of band, in the order pickle meets them.
        self.out_of_band: list[tuple[Any, ...]] = []
        # Segments of ours the receiver will own: disowned by hand_over() once the whole
        # payload is made (if it fails half-way, they stay ours, and are unlinked).
        self.handed_over: list[_segments.SegmentBuffer] = []

    def reduce_array(self, array: NDArray[Any]) -> tuple[Any, ...] | None:
        """Return a reduction that ships array through shared memory, or None to pickle it."""
        ref = self.place(array)
        if ref is None:
            return _exact_reduction(array)
        return _arrayref.reduction(ref)

    def buffer_callback(self, buffer: pickle.PickleBuffer) -> bool:
        """Pickle's buffer_callback: share a large buffer out of band (False) or keep it in-band (True)."""
        try:
            view = buffer.raw()
        except BufferError:  # not contiguous: pickle copies it in-band
            return True
        if isinstance(view.obj, np.ndarray):  # an array's own: placed already by reduce_array
            return True
        # Arrow's buffers are immutable whatever the memoryview says: slices of one may
        # share one copy (nothing can write through one and be seen through another).
        immutable = view.readonly or type(view.obj).__module__.startswith("pyarrow")
        ref = self.place(np.frombuffer(view, dtype=np.uint8), immutable=immutable)
        if ref is None:
            return True
        self.out_of_band.append(_arrayref.pack(ref))
        return False

    def drop_views(self) -> None:
        """Let go of the arrays and roots this pass held (the payload is made).

        Whatever still views a watched segment afterwards, the function kept.
        """
        self.spare, self.pinned, self.copies = [], [], []

    def hand_over(self) -> None:
        """The payload is made: the receiver, not this process, now releases its segments."""
        _segments.hand_over(self.handed_over)
        self.handed_over.clear()

    def payload(self, data: bytes, start: int) -> Payload:
        """Return a dump's payload: data, with the out-of-band descriptors it added after start."""
        if len(self.out_of_band) == start:
            return data
        refs = tuple(self.out_of_band[start:])
        del self.out_of_band[start:]
        return (data, refs)

    def place(self, array: NDArray[Any], *, immutable: bool = False) -> _arrayref.ArrayRef | None:
        """Decide array's path: a descriptor of shared memory (by reference, or copied once), or None.

        None means pickle it (small, holds objects, or shared memory is full or unusable). An immutable
        out-of-band buffer within one copied earlier in this payload refers to that copy.
        """
        nbytes = array.nbytes
        if array.dtype.hasobject or nbytes == 0:
            self._count("pickled", nbytes)
            return None
        ref = self._shared_already(array, immutable)
        if ref is not None:
            self._count("by_reference", nbytes)
            return ref
        if nbytes >= self.policy.min_nbytes and _shm.unusable_reason() is None:  # else warned once
            try:
                return self._copy_into_segment(array, immutable)
            except SegmentError as exc:
                warnings.warn(f"{exc}; pickling this array instead", SharedMemoryFullWarning, stacklevel=3)
        self._count("pickled", nbytes)
        return None

    def _shared_already(self, array: NDArray[Any], immutable: bool) -> _arrayref.ArrayRef | None:
        """Array's descriptor if its memory is shared: a segment, a file, or a copy in this payload."""
        found = _arrayref.locate(array)
        if found is not None and not found[0].reachable:
            found = None  # no other process can open it: copied like a plain array
        if found is not None and self.handover and not self._result_may_refer(array, found[0], immutable):
            return None  # copied like a plain array
        if found is not None:
            buffer, offset = found
            handover = self.handover and (buffer in self.handed_over or _segments.is_owned(buffer))
            if handover:  # a result the function made in shared memory: worth lending for
                self.handed_over.append(buffer)
                self.made_nbytes = max(self.made_nbytes, array.nbytes)
            lease = _pool.current_lease(buffer)
            self.pinned.append(buffer if lease is None else lease)
            self.buffers.append(buffer)
            return _arrayref.describe(array, buffer, offset, handover=handover, lent=lease is not None)
        in_file = _files.locate(array)
        if in_file is not None:
            path, position, writeable, file_id = in_file
            shape, strides, dtype = array.shape, array.strides, array.dtype
            return _arrayref.ArrayRef(
                path, position, shape, strides, dtype, writeable, False, False, False, file_id
            )
        block = None if self.handover else _blocks.describe(array)  # results: inputs only, found above
        if block is not None:
            return block
        if self.copies and immutable:
            low, high = _arrayref.address_extent(array)
            for first, end, copy, _ in self.copies:
                if first <= low and high <= end:  # a view of what this payload copied already
                    return copy._replace(
                        offset=array.__array_interface__["data"][0] - first,
                        shape=array.shape,
                        strides=array.strides,
                        dtype=array.dtype,
                        writeable=arrives_writeable(array),
                    )
        return None

    def _result_may_refer(
        self, array: NDArray[Any], buffer: _segments.SegmentBuffer, immutable: bool
    ) -> bool:
        """Whether a result array in this segment may go back by reference (see inputs, private).

        A segment from an earlier task may be gone, or be another result's already, and
        an array the function keeps must not change under the parent: only shared inputs
        and memory private to this call qualify. Private memory goes by reference only
        as pickling would deliver it: a contiguous array that fills most of its segment,
        with the writeable flag a pickled copy gets, no two arrays of a result overlapping
        (but immutable buffers: nothing writes through those).
        """
        if buffer.name in self.inputs:
            return True
        if self.private is None:
            return False
        private = buffer.name in self.private or buffer in self.handed_over
        if not private and not (_segments.is_owned(buffer) and buffer.views is not None):
            return False
        if not _sent_whole_as_pickled(array, len(buffer), immutable):
            return False
        low, high = _arrayref.address_extent(array)
        for first, end, frozen in self.extents:
            if low < end and first < high and not (immutable and frozen):
                return False
        self.extents.append((low, high, immutable))
        self.watched.append(buffer)
        return True

    def _copy_into_segment(self, array: NDArray[Any], immutable: bool) -> _arrayref.ArrayRef:
        base: Any  # the mapping, or a lease or per-task root over it
        spare = self._take_spare(array.nbytes)
        if spare is not None:
            buffer, base = spare
            lent, handover, scratch = True, False, False
        else:
            buffer, lease = self.memory.allocate(array.nbytes)
            base = buffer if lease is None else lease
            lent, handover = lease is not None, self.handover
            scratch = True  # a copy for this transfer alone (see ArrayRef.scratch)
            if lent:
                self.scratch_sizes.append(len(buffer))
        order = _arrayref.layout_order(array)
        copy: NDArray[Any] = np.ndarray(array.shape, array.dtype, buffer=base, order=order)
        np.copyto(copy, array, casting="no")
        if handover:
            self.handed_over.append(buffer)
        self.pinned.append(base)
        self.buffers.append(buffer)
        self.copied_nbytes = max(self.copied_nbytes, array.nbytes)
        self._count("copied", array.nbytes)
        writeable = arrives_writeable(array)  # as a pickled copy would
        shape, strides, dtype, identity = copy.shape, copy.strides, copy.dtype, buffer.identity
        name = _segments.wire_name(buffer, handover=handover)
        ref = _arrayref.ArrayRef(
            name, 0, shape, strides, dtype, writeable, handover, lent, scratch, None, identity
        )
        if immutable:  # a 1-D byte view: its copy is the same bytes
            self.copies.append((*_arrayref.address_extent(array), ref, array))
        return ref

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


def _sent_whole_as_pickled(array: NDArray[Any], segment_nbytes: int, immutable: bool) -> bool:
    """Whether array, by reference, arrives as a pickled copy would: else it is copied.

    Pickling sends a view's bytes alone (a small view must not keep a large segment
    alive), a non-contiguous one as a contiguous copy, and sets the writeable flag as
    arrives_writeable says (immutable buffers have no flag to get wrong).
    """
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        return False
    if not _pool.fits(segment_nbytes, array.nbytes):
        return False
    return immutable or bool(array.flags.writeable) == arrives_writeable(array)


def _exact_reduction(array: NDArray[Any]) -> tuple[Any, ...] | None:
    """NumPy's own pickling, except where it would not give what ProcessPoolExecutor gives.

    - ProcessPoolExecutor pickles with the default protocol: 4 before Python 3.14, which
      hands the receiver a writable copy of a read-only array; 5 from 3.14, which keeps
      a read-only contiguous array read-only. We pickle with protocol 5 everywhere, so
      before 3.14 a read-only array is pickled as a writable copy.
    - NumPy pickles a non-contiguous array through a copy in *native* byte order, so a
      strided ``>i4`` array would come back as ``<i4`` (same values, other dtype).

    In both cases we pickle a writable copy in the array's own dtype, laid out as
    pickling lays it out (C order unless Fortran-contiguous); it costs little, these
    arrays are small and NumPy copies non-contiguous ones anyway.
    """
    contiguous = array.flags.c_contiguous or array.flags.f_contiguous
    if (array.flags.writeable or READ_ONLY_STAYS_READ_ONLY) and (contiguous or array.dtype.isnative):
        return None
    copy = np.array(array, copy=True, order=_arrayref.layout_order(array))
    reduced: tuple[Any, ...] = copy.__reduce_ex__(PROTOCOL)  # type: ignore[assignment]
    return reduced


def arrives_writeable(array: NDArray[Any]) -> bool:
    """Whether ProcessPoolExecutor would hand the receiver a copy of array that is writable.

    NumPy keeps a read-only array read-only only where it pickles it as a buffer: a
    contiguous one, without objects, with items of some size, that exports a buffer
    (datetime64 and timedelta64 ones do not). Any other it pickles as a writable copy.
    """
    if array.flags.writeable or not READ_ONLY_STAYS_READ_ONLY:
        return True
    contiguous = array.flags.c_contiguous or array.flags.f_contiguous
    if not contiguous or array.dtype.hasobject or array.dtype.itemsize == 0:
        return True
    try:
        array.data.release()  # the buffer NumPy would pickle
    except (BufferError, TypeError, ValueError):
        return True
    return False
