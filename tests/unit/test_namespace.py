"""Segment names and the tag sweep that releases an executor's leftovers."""

from __future__ import annotations

import os

import pytest

from zerocopy_executor import _namespace, _segments

# The rules of named segments in /dev/shm (memfd ones: tests/unit/test_memfd.py).
pytestmark = pytest.mark.usefixtures("named_segments")


def _exists(name: str) -> bool:
    return os.path.exists(f"{_namespace.SHM_DIR}/{name}")


def test_tagged_names_finds_only_its_tag_and_spares_kept_names():
    """A sweep lists the segments carrying its tag, except the ones it is told to keep."""
    tag, other = _namespace.new_tag(), _namespace.new_tag()
    mine, kept, foreign = (_segments.create(4096, tag=t) for t in (tag, tag, other))
    try:
        found = _namespace.tagged_names(tag, keep={kept.name})
        assert found == [mine.name]
    finally:
        for buffer in (mine, kept, foreign):
            _segments.unlink(buffer.name)


def test_creator_pid_refuses_foreign_names():
    """Names that are not ours have no creator: they are never attached nor swept."""
    assert _namespace.creator_pid("psm_1234") is None
    assert _namespace.creator_pid("zc_12_abc") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a name to another user")
def test_tagged_names_skips_another_users_names():
    """A name of another user never reaches a sweep, even one that carries our tag and a dead pid."""
    tag = _namespace.new_tag()
    never_running = 2**22 + 1  # above the largest pid Linux allows
    path = f"{_namespace.SHM_DIR}/{_namespace.NAME_PREFIX}{never_running}_{tag}0123456789"
    with open(path, "x"):
        pass
    try:
        assert len(_namespace.tagged_names(tag)) == 1
        os.chown(path, 65534, 65534)
        assert _namespace.tagged_names(tag) == []
        assert _namespace.tagged_names(tag, spare_running_creators=False) == []
    finally:
        os.unlink(path)
