"""The mappings a worker keeps between tasks: bounded in bytes, dropped when idle."""

from __future__ import annotations

import time

import pytest

from zerocopy_executor import _worker


class _Mapping:
    """A stand-in for a segment's mapping: a name and a size."""

    def __init__(self, name: str, nbytes: int) -> None:
        self.name = name
        self.nbytes = nbytes

    def __len__(self) -> int:
        return self.nbytes


def _cache(cap_nbytes: int, idle_seconds: float = 3600.0) -> _worker._MappingCache:
    return _worker._MappingCache(cap_nbytes, idle_seconds)


def _held(cache: _worker._MappingCache) -> list[str]:
    return list(cache._entries)


def test_least_recently_used_mappings_are_dropped_beyond_the_cap() -> None:
    """Keeping mappings beyond the cap in bytes drops the least recently used first."""
    cache = _cache(cap_nbytes=300)
    cache.keep([_Mapping("a", 100), _Mapping("b", 100)])  # type: ignore[list-item]
    cache.keep([_Mapping("a", 100)])  # type: ignore[list-item]  # used again: now the most recent
    cache.keep([_Mapping("c", 150)])  # type: ignore[list-item]
    assert _held(cache) == ["a", "c"]


def test_a_mapping_kept_again_counts_once() -> None:
    """Keeping the same mappings task after task never pushes out another one."""
    cache = _cache(cap_nbytes=300)
    kept = [_Mapping("a", 100), _Mapping("b", 100)]
    for _ in range(10):
        cache.keep(kept)  # type: ignore[arg-type]
    cache.keep([_Mapping("c", 100)])  # type: ignore[list-item]
    assert _held(cache) == ["a", "b", "c"]


@pytest.mark.parametrize("idle_first", [True, False])
def test_idle_mappings_are_dropped_and_free_their_bytes(idle_first: bool) -> None:
    """Mappings idle for idle_seconds are dropped, and their bytes no longer count against the cap."""
    cache = _cache(cap_nbytes=300, idle_seconds=0.05)
    cache.keep([_Mapping("old", 200)])  # type: ignore[list-item]
    time.sleep(0.1)
    if not idle_first:
        cache.keep([_Mapping("fresh", 100)])  # type: ignore[list-item]
    cache.drop_idle()
    assert _held(cache) == ([] if idle_first else ["fresh"])
    cache.keep([_Mapping("big", 200)])  # type: ignore[list-item]
    assert _held(cache) == (["big"] if idle_first else ["fresh", "big"])
