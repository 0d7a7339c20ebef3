"""Recycling warm segments: the parent's pool and the leases that guard reuse.

First touch of a fresh shared page costs ~0.65 ms per MiB, several times the copy
itself (benchmarks/crossover.py measures it), so the parent keeps segments whose
pages are already touched and reuses them for later arguments and results of a
similar size. Workers keep their mappings of such segments for a while (see _worker),
so reuse saves their page faults too.

Reuse is only safe once nothing can still see the old contents. Each use of a pooled
segment goes through a *lease*: a uint8 ndarray over the whole mapping that every
array made from the segment in the parent is a view of (NumPy keeps such a root as the
views' base instead of collapsing to the mmap). The segment goes back to the pool when
the lease is garbage-collected, so a result that aliases an argument's segment keeps
it out of the pool for as long as the result lives. A segment is never recycled after
its task failed, or when a worker kept a view of it past the call; then it is unlinked
when its lease dies. Names are never reused for other memory: a recycled segment is the
same segment.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _reaper, _segments
from ._idle import IdleExpiry

__all__ = [
    "IDLE_SECONDS",
    "ExecutorSegments",
    "SegmentPool",
    "current_lease",
    "fits",
    "lease",
    "never_recycle",
    "smallest_fit",
]

# Pool segments whose size is within this factor of a request are reused for it.
_FIT_FACTOR = 1.25
IDLE_SECONDS = 5.0


def fits(size: int, nbytes: int) -> bool:
    """Whether a segment of size bytes is worth using for nbytes: it holds them, with little to spare.

    A small array in a much larger segment would keep all of it alive.
    """
    return nbytes <= size <= nbytes * _FIT_FACTOR + 4096


def smallest_fit(size: int) -> int:
    """The fewest bytes a segment of size bytes is used for (see fits)."""
    return max(1, int((size - 4096) / _FIT_FACTOR))


def current_lease(buffer: _segments.SegmentBuffer) -> NDArray[Any] | None:
    """Return the live lease of a pooled segment, if it has one."""
    ref = buffer.lease
    return None if ref is None else ref()


class SegmentPool:
    """Released segments with touched pages, capped in bytes, trimmed when idle.

    Args:
        cap_nbytes: most bytes the pool holds; a segment that would exceed it is
            unlinked instead.
    """

    def __init__(self, cap_nbytes: int) -> None:
        self.cap_nbytes = cap_nbytes
        self._lock = threading.Lock()
        self._free: list[tuple[float, _segments.SegmentBuffer]] = []
        self._nbytes = 0
        self._closed = False
        self._expiry = IdleExpiry("zerocopy-pool-trim", self._trim_idle)

    @property
    def nbytes(self) -> int:
        """Bytes held by idle segments now."""
        return self._nbytes

    def take(self, nbytes: int) -> _segments.SegmentBuffer | None:
        """Return an idle segment of at least nbytes (and not much more), or None."""
        with self._lock:
            best = None
            for index, (_, buffer) in enumerate(self._free):
                size = len(buffer)
                if fits(size, nbytes) and (best is None or size < best[1]):
                    best = (index, size)
            if best is None:
                return None
            _, buffer = self._free.pop(best[0])
            self._nbytes -= len(buffer)
            return buffer

    def give(self, buffer: _segments.SegmentBuffer) -> None:
        """Take back a segment nobody can see any more (or drop it if over the cap)."""
        if not buffer.recyclable or not _segments.is_owned(buffer):
            return  # dropping our reference unlinks it (or its owner will)
        with self._lock:
            if self._closed or self._nbytes + len(buffer) > self.cap_nbytes:
                return
            now = time.monotonic()
            if not self._expiry.arm(now + IDLE_SECONDS):
                return  # nothing could trim it (interpreter exit): do not keep it
            self._free.append((now, buffer))
            self._nbytes += len(buffer)

    def _trim_idle(self) -> float | None:
        """Unlink the segments idle for IDLE_SECONDS; return when the next one will be."""
        cutoff = time.monotonic() - IDLE_SECONDS
        with self._lock:
            dropped = [b for t, b in self._free if t <= cutoff]
            self._free = [(t, b) for t, b in self._free if t > cutoff]
            self._nbytes = sum(len(b) for _, b in self._free)
            oldest = min((t for t, _ in self._free), default=None)
        del dropped  # outside the lock: their finalizers unlink them
        return None if oldest is None else oldest + IDLE_SECONDS

    def close(self) -> None:
        """Empty the pool for good; later releases unlink their segments."""
        with self._lock:
            self._closed = True
            dropped, self._free, self._nbytes = self._free, [], 0
        self._expiry.disarm()
        del dropped


class ExecutorSegments:
    """An executor's segments: those it made or was handed and has not released, and its pool.

    Encoding asks it for memory (allocate), and decoding reports the results workers
    hand over (count_handed_over). Every segment it makes carries the executor's tag.
    """

    def __init__(self, tag: str, cap_nbytes: int) -> None:
        self.tag = tag
        self.live: set[str] = set()  # made or handed over, not yet released
        self.pool = SegmentPool(cap_nbytes)

    def allocate(self, nbytes: int) -> tuple[_segments.SegmentBuffer, NDArray[Any]]:
        """Lease a warm pooled segment, or create one (owned here, marked with our tag)."""
        buffer = self.pool.take(nbytes)
        if buffer is None:
            # The last result's segment may still be on its way back (the reaper thread
            # returns it): faulting in a fresh one instead costs ~0.65 ms per MiB.
            _segments.drain_releases()
            buffer = self.pool.take(nbytes)
        if buffer is None:
            buffer = _segments.create(nbytes, tag=self.tag, hooks=(self.forget,))
            self.live.add(buffer.name)
        return buffer, lease(buffer, self.pool)

    def count_handed_over(self, buffer: _segments.SegmentBuffer) -> None:
        """Count a result segment a worker handed over to this process."""
        self.live.add(buffer.name)
        _segments.on_release(buffer, self.forget)

    def forget(self, name: str) -> None:
        """Called after a segment of ours was unlinked (from a finalizer: no I/O here)."""
        self.live.discard(name)


def lease(buffer: _segments.SegmentBuffer, pool: SegmentPool) -> NDArray[Any]:
    """Start a use of a pooled segment; it returns to pool when the lease dies."""
    root: NDArray[Any] = np.frombuffer(buffer, dtype=np.uint8)
    buffer.lease = weakref.ref(root)
    buffer.recyclable = True
    _reaper.on_death(root, _return, weakref.ref(pool), buffer)
    return root


def _return(pool_ref: weakref.ref[SegmentPool], buffer: _segments.SegmentBuffer) -> None:
    buffer.lease = None
    pool = pool_ref()
    if pool is not None:
        pool.give(buffer)


def never_recycle(buffer: _segments.SegmentBuffer) -> None:
    """Unlink this segment when its lease dies instead of reusing it."""
    buffer.recyclable = False
