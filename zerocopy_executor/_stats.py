"""ExecutorStats: what crossed the process boundary, and by which path."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields

__all__ = ["ExecutorStats", "StatsCounter"]


@dataclass(frozen=True)
class ExecutorStats:
    """A snapshot of an executor's traffic, counted in both directions.

    Attributes:
        arrays_by_reference: arrays sent as descriptors of memory already shared (a
            segment, a memory-mapped file, a ``SharedMemory`` block).
        bytes_by_reference: their total ``nbytes`` (none of it copied).
        arrays_copied: plain arrays copied once into a shared segment.
        bytes_copied: bytes copied into segments.
        arrays_pickled: arrays pickled as ProcessPoolExecutor would.
        bytes_pickled: their total ``nbytes``.
        live_segments: segments this executor created that are not yet released.
    """

    arrays_by_reference: int = 0
    bytes_by_reference: int = 0
    arrays_copied: int = 0
    bytes_copied: int = 0
    arrays_pickled: int = 0
    bytes_pickled: int = 0
    live_segments: int = 0


class StatsCounter:
    """Thread-safe per-path counters; adds tallies made in this process or a worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys((f.name for f in fields(ExecutorStats) if f.name != "live_segments"), 0)

    def add(self, tally: dict[str, int]) -> None:
        """Add a tally keyed like ExecutorStats fields (``arrays_copied`` ...)."""
        with self._lock:
            for key, value in tally.items():
                self._counts[key] += value

    def snapshot(self, live_segments: int) -> ExecutorStats:
        """Return the counts so far as an ExecutorStats."""
        with self._lock:
            return ExecutorStats(**self._counts, live_segments=live_segments)
