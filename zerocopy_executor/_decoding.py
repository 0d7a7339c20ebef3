"""Decoding: rebuilding arrays and buffers from their descriptors, over the right base.

A DecodeSession picks the base each array is rebuilt over from its ArrayRef: a
segment's mapping, or a lease (parent) or per-task root (worker) over it that tells
when every view is gone, so that the segment can be recycled. Payloads with
out-of-band buffers (pickle protocol 5: Arrow data, see _encoding) carry their
descriptors beside the pickle; they are rebuilt first and handed to the unpickler.
Each array is rebuilt by _arrayref.unpickle, for the session decode() makes current.
"""

from __future__ import annotations

import pickle
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _arrayref, _pool, _segments

__all__ = ["DecodeSession", "Payload", "TaskDecodeSession", "decode"]

# What an encoder produces: the pickle, or the pickle and its out-of-band buffers'
# descriptors (packed ArrayRefs), in the order the pickle takes them.
Payload = bytes | tuple[bytes, tuple[tuple[Any, ...], ...]]


class DecodeSession:
    """One decode pass in the parent.

    Views of recycled segments are made from their lease, so the segment is not reused
    while they live; segments handed over by a worker become this process's, and those it copied
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

    def base_for(self, ref: _arrayref.ArrayRef, buffer: _segments.SegmentBuffer) -> Any:
        """Return what views of buffer, the segment ref names, are made from."""
        lease = _pool.current_lease(buffer)
        if lease is None and ref.scratch and ref.handover and self.pool is not None:
            lease = _pool.lease(buffer, self.pool)
        return buffer if lease is None else lease


class TaskDecodeSession(DecodeSession):
    """A worker's decode of one task.

    Views of lent (recycled) segments are made from a root per task, so that after the
    call we can tell whether the function kept any of them.
    """

    __slots__ = ("_lent", "_roots", "_spare", "buffers", "private", "taken_nbytes")

    def __init__(self) -> None:
        super().__init__()
        self._roots: dict[str, weakref.ref[NDArray[Any]]] = {}
        # Every mapping the task used: the worker keeps them for the next tasks.
        self.buffers: dict[str, _segments.SegmentBuffer] = {}
        # Lent segments the result may overwrite once nothing views them (see spare).
        self._spare: dict[str, _segments.SegmentBuffer] = {}
        self._lent: _segments.SegmentBuffer | None = None  # lent for the result, not yet taken
        self.taken_nbytes = 0  # the array the function placed in it (see take_lent)
        # Segments only this task sees (copied arguments, the segment lent for the
        # result): see EncodeSession's private, and inputs().
        self.private: set[str] = set()

    def base_for(self, ref: _arrayref.ArrayRef, buffer: _segments.SegmentBuffer) -> Any:
        """Return a per-task root for lent segments, the mapping otherwise."""
        self.buffers[buffer.name] = buffer
        if ref.scratch:
            self.private.add(buffer.name)
        if ref.scratch and ref.lent:  # views of it have a root: kept() can see them
            self._spare[buffer.name] = buffer
        return self.root(buffer) if ref.lent else buffer

    def lent_for_result(self, buffer: _segments.SegmentBuffer) -> None:
        """Record the segment the parent lent for this task's result."""
        self.buffers[buffer.name] = buffer
        self._spare[buffer.name] = buffer
        self.private.add(buffer.name)
        self._lent = buffer

    def inputs(self) -> set[str]:
        """Segments received by reference (the parent's shared arrays): see EncodeSession's inputs.

        Every segment the task used but its private ones: a segment arrives either by
        reference or as this task's own copy. Only a result with arrays asks, so a
        task pays nothing for it otherwise.
        """
        return self.buffers.keys() - self.private

    def claim_lent(self, nbytes: int) -> None:
        """An array of about nbytes was born in the lent segment: no result may be copied over it."""
        buffer = self._lent
        if buffer is not None:
            self._lent = None
            self._spare.pop(buffer.name, None)
            self.taken_nbytes = nbytes

    def take_lent(self, nbytes: int) -> NDArray[Any] | None:
        """Offer the lent segment to a new shared array of nbytes the function makes, once.

        Returns this task's root over it (so kept() sees the array if the function keeps
        it), or None if nothing was lent, it is taken, or it does not fit (see _pool.fits).
        """
        buffer = self._lent
        if buffer is None or not _pool.fits(len(buffer), nbytes):
            return None
        self.claim_lent(nbytes)
        return self.root(buffer)

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


def decode(payload: Payload, session: DecodeSession | None = None) -> Any:
    """Unpickle a payload, mapping the segments its ArrayRefs name.

    Raises:
        SegmentError: a segment or file is gone, or a descriptor is out of bounds.
    """
    outer = _arrayref.receiving(session)
    try:
        if isinstance(payload, bytes):
            return pickle.loads(payload)
        data, refs = payload
        return pickle.loads(data, buffers=[_arrayref.unpickle(*ref) for ref in refs])
    finally:
        _arrayref.receiving(outer)
