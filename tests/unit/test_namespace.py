"""Segment names and the tag sweep that releases an executor's leftovers."""

from __future__ import annotations

import os

from zerocopy_executor import _namespace, _segments


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
