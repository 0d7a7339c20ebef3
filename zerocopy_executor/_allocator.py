"""Results born in shared memory: a NumPy allocator that serves a task's large array from a lent segment.

``return a * 2`` in a worker makes NumPy allocate the result in private memory (fresh
pages to fault in), which then has to be copied into shared memory to go back. With
the compiled ``_arena`` module (NEP 49, see _arena.c), the segment the parent lent for
the result is *armed* while the task's function runs: the first large allocation that
fits it is placed there, so the array the function returns already lies in shared
memory and goes back by reference, with no copy and no fresh pages.

The array owns its memory without holding the mapping, so the mapping is kept for as
long as the allocator says an array lives in the arena; if one does after the task
(the function kept it), the segment is reported as kept and never recycled.

Without a C compiler at install time the module is missing and nothing changes: the
result is copied as before (``AVAILABLE`` is False).
"""

from __future__ import annotations

from typing import Any

from . import _pool, _segments

try:
    from . import _arena  # type: ignore[attr-defined]  # compiled, optional
except ImportError:  # installed without a C compiler: results are copied instead
    _arena = None

__all__ = ["AVAILABLE", "TaskArena", "release_freed"]

AVAILABLE = _arena is not None

# Arenas an array outlived its task in, with the mapping it lies in: kept mapped until
# the array is freed (the allocator knows), then forgotten (see release_freed).
_OUTLIVED: list[tuple[int, _segments.SegmentBuffer]] = []


class TaskArena:
    """The lent segment, armed for one task's allocations while its function runs.

    Call ``activate()`` before the task's call and ``restore()`` after it; then
    ``in_use()`` says whether an array still lives there (its size), and ``close()``
    forgets it (or keeps its mapping alive while the array lives).
    """

    def __init__(self, buffer: _segments.SegmentBuffer, slot: int) -> None:
        self.buffer = buffer
        self.slot: int | None = slot

    @classmethod
    def arm(cls, buffer: _segments.SegmentBuffer) -> TaskArena | None:
        """Arm buffer for the next allocation that fits it; None if unavailable."""
        if _arena is None:
            return None
        size = len(buffer)
        slot = _arena.arm(buffer.address, size, _pool.smallest_fit(size))
        return None if slot is None else cls(buffer, slot)

    def activate(self) -> Any:
        """Install the allocator in this context; return what restore() needs."""
        assert _arena is not None  # noqa: S101 - armed only if it exists
        return _arena.activate()

    def restore(self, previous: Any) -> None:
        """Put NumPy's previous allocator back and stop serving from the arena."""
        assert _arena is not None  # noqa: S101 - armed only if it exists
        _arena.restore(previous)
        if self.slot is not None:
            _arena.disarm(self.slot)

    def in_use(self) -> int:
        """The size in bytes of the array whose data lies in the arena (0 if none).

        The array's, not the segment's: it is the size to lend for the next result, and
        a segment is often a little larger than asked (see _segments._staggered).
        """
        return 0 if self.slot is None or _arena is None else int(_arena.in_use(self.slot))

    def give_up(self) -> bool:
        """Disarm and forget the arena if nothing lives in it (for zerocopy_executor.empty)."""
        if self.slot is None or _arena is None or _arena.disarm(self.slot):
            return False
        _arena.release(self.slot)
        self.slot = None
        return True

    def close(self) -> bool:
        """Forget the arena; if an array still lives there, keep its mapping until it dies.

        Returns whether an array outlived the task (the segment must not be reused).
        """
        if self.slot is None or _arena is None:
            return False
        _arena.disarm(self.slot)  # whatever happened to the task, nothing more is served from it
        if _arena.release(self.slot):
            self.slot = None
            return False
        _OUTLIVED.append((self.slot, self.buffer))
        self.slot = None
        return True


def release_freed() -> None:
    """Forget the arenas whose arrays have died since (their mappings may go)."""
    if _arena is None or not _OUTLIVED:
        return
    _OUTLIVED[:] = [(slot, buffer) for slot, buffer in _OUTLIVED if not _arena.release(slot)]
