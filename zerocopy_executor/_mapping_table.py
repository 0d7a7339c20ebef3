"""This process's live mappings of segments, by name and by address (weakly held).

Any view of a shared array (a slice, a transpose, a view made by another library) is
found by its address, and a segment already mapped here is found by its name, so it
is never mapped twice (see _segments).
"""

from __future__ import annotations

import bisect
import threading
import weakref
from typing import Generic, Protocol, TypeVar

from ._fork_safety import at_fork

__all__ = ["MappingTable"]


class _Ownership(Protocol):
    @property
    def owner_pid(self) -> int | None: ...


class _Mapping(Protocol):
    """What the table reads of a mapping."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> int: ...
    @property
    def ownership(self) -> _Ownership: ...
    def __len__(self) -> int: ...


B = TypeVar("B", bound=_Mapping)


class MappingTable(Generic[B]):
    """This process's live mappings, by name and by address (weakly held)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        at_fork(after_in_child=self._reinit_after_fork)
        self.by_name: dict[str, weakref.ref[B]] = {}
        self.starts: list[int] = []
        self.entries: list[tuple[int, int, weakref.ref[B]]] = []
        # id(ref) -> (start address, name): how drop() finds a dead mapping's entries
        # without a scan (a process may hold thousands of mappings).
        self.placed: dict[int, tuple[int, str]] = {}

    def _reinit_after_fork(self) -> None:
        self.lock = threading.Lock()  # a lock held by a parent thread at fork stays held

    def add(self, buffer: B) -> weakref.ref[B]:
        ref = weakref.ref(buffer)  # dropped by the reaper when the mapping dies
        start, end = buffer.address, buffer.address + len(buffer)
        with self.lock:
            self.by_name[buffer.name] = ref
            self.placed[id(ref)] = (start, buffer.name)
            index = bisect.bisect_left(self.starts, start)
            self.starts.insert(index, start)
            self.entries.insert(index, (start, end, ref))
        return ref

    def drop(self, ref: weakref.ref[B]) -> None:
        with self.lock:
            start, name = self.placed.pop(id(ref))
            # Mappings that died and were replaced may share a start: find this one's entry.
            index = bisect.bisect_left(self.starts, start)
            while self.entries[index][2] is not ref:
                index += 1
            del self.entries[index]
            del self.starts[index]
            if self.by_name.get(name) is ref:
                del self.by_name[name]

    def get(self, name: str) -> B | None:
        with self.lock:
            ref = self.by_name.get(name)
        return None if ref is None else ref()

    def find(self, low: int, high: int) -> tuple[B, int] | None:
        with self.lock:
            index = bisect.bisect_right(self.starts, low) - 1
            # A mapping being torn down may still be listed beside a new one at the
            # same address (munmap runs before weakref callbacks): skip dead entries.
            while index >= 0:
                start, end, ref = self.entries[index]
                buffer = ref()
                if buffer is not None:
                    return (buffer, low - start) if high <= end else None
                index -= 1
        return None

    def owned_names(self, pid: int) -> list[str]:
        with self.lock:
            buffers = [ref() for ref in self.by_name.values()]
        return [b.name for b in buffers if b is not None and b.ownership.owner_pid == pid]
