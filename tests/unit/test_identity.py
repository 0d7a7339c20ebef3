"""Segment identity: a name unlinked and made again is never mapped as the segment it was."""

from __future__ import annotations

import gc
import os
import stat

import numpy as np
import pytest

import zerocopy_executor as zc
from zerocopy_executor import _arrayref, _namespace, _segments
from zerocopy_executor._errors import SegmentError

TAG = _namespace.new_tag()
NOBODY = 65534

# The rules of named segments in /dev/shm (memfd ones: tests/unit/test_memfd.py).
pytestmark = pytest.mark.usefixtures("named_segments")


def shm_path(name: str) -> str:
    return f"/dev/shm/{name}"


def collect() -> None:
    gc.collect()
    _segments.drain_releases()


def mapped_then_dropped(nbytes: int = 4096) -> tuple[str, tuple[int, int, int]]:
    """A segment's name and identity, its mapping here gone but the name still linked (and registered)."""
    buffer = _segments.create(nbytes, tag=TAG)
    name, identity = buffer.name, buffer.identity
    _segments.hand_over([buffer])  # as a worker does with a result it hands over
    del buffer
    collect()
    assert os.path.exists(shm_path(name))
    return name, identity


def make_again(name: str, nbytes: int = 4096) -> int:
    """Unlink a segment's name (leaving its registration) and create another file there; return its inode."""
    os.unlink(shm_path(name))
    fd = os.open(shm_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, nbytes)
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def test_created_segment_records_its_owner_device_and_inode():
    """A new segment's identity is the (uid, device, inode) of its /dev/shm file."""
    buffer = _segments.create(4096, tag=TAG)
    status = os.stat(shm_path(buffer.name))
    assert buffer.identity == (status.st_uid, status.st_dev, status.st_ino)
    assert _segments.attach(buffer.name, buffer.identity) is buffer


def test_name_made_again_with_another_inode_is_refused():
    """A name unlinked and created again is another file: attach refuses it with SegmentError."""
    name, identity = mapped_then_dropped()
    try:
        assert make_again(name) != identity[2]
        with pytest.raises(SegmentError, match="is not the one its sender made"):
            _segments.attach(name, identity)
    finally:
        _segments.unlink(name)  # the impostor, and the original's registration


@pytest.mark.skipif(os.geteuid() != 0, reason="changes a file's owner (root)")
def test_segment_of_another_owner_is_refused():
    """The same inode owned by another uid than the sender saw is refused."""
    name, identity = mapped_then_dropped()
    try:
        os.chown(shm_path(name), NOBODY, NOBODY)
        with pytest.raises(SegmentError, match=rf"\({NOBODY}, "):
            _segments.attach(name, identity)
    finally:
        _segments.unlink(name)


def test_mapping_held_here_matches_only_its_identity():
    """A name this process maps is reused only for a descriptor with the same identity."""
    buffer = _segments.create(4096, tag=TAG)
    uid, device, inode = buffer.identity
    with pytest.raises(SegmentError, match="is not the one its sender made"):
        _segments.attach(buffer.name, (uid, device, inode + 1))
    with pytest.raises(SegmentError, match="is not the one its sender made"):
        _segments.attach(buffer.name, (uid + 1, device, inode))
    assert _segments.attach(buffer.name, buffer.identity) is buffer


@pytest.mark.parametrize("identity", [None, False, (1, 2), "zc"])
def test_descriptor_without_a_valid_identity_is_refused(identity):
    """A segment descriptor with no (uid, device, inode) is refused, even for a segment mapped here."""
    a = zc.zeros(16)
    buffer, _ = _arrayref.locate(a)
    ref = _arrayref.describe(a, buffer, 0, handover=False, lent=False)._replace(segment_id=identity)
    del buffer
    with pytest.raises(SegmentError, match="has no valid identity"):
        _arrayref.rebuild(ref)


def test_descriptor_carries_the_identity_through_pickling():
    """describe() records the segment's identity; rebuild() over the same segment accepts it."""
    a = zc.zeros(16)
    buffer, offset = _arrayref.locate(a[3:])
    ref = _arrayref.describe(a[3:], buffer, offset, handover=False, lent=False)
    assert ref.segment_id == buffer.identity
    rebuilt, _ = _arrayref.rebuild(_arrayref.ArrayRef(*_arrayref.pack(ref)))
    assert np.shares_memory(rebuilt, a)


@pytest.mark.timeout(10)
def test_fifo_made_at_a_handed_over_name_is_refused_without_blocking():
    """A FIFO put at a handed-over segment's name: SegmentError at once (no wait for a writer), FIFO left."""
    name, identity = mapped_then_dropped(8 * 512)
    ref = _arrayref.ArrayRef(name, 0, (512,), (8,), "<f8", True, True, False, True, None, identity)
    os.unlink(shm_path(name))
    os.mkfifo(shm_path(name))
    try:
        with pytest.raises(SegmentError, match="is not the one its sender made"):
            _arrayref.unpickle(*ref)
        assert stat.S_ISFIFO(os.stat(shm_path(name)).st_mode)
    finally:
        os.unlink(shm_path(name))


def test_handed_over_segment_made_again_is_refused_and_left_to_its_owner():
    """A handed-over result whose name is now another file: SegmentError, and that file is not unlinked."""
    name, identity = mapped_then_dropped(8 * 512)
    ref = _arrayref.ArrayRef(name, 0, (512,), (8,), "<f8", True, True, False, True, None, identity)
    inode = make_again(name, 8 * 512)
    try:
        with pytest.raises(SegmentError, match="is not the one its sender made"):
            _arrayref.unpickle(*ref)
        assert os.stat(shm_path(name)).st_ino == inode  # someone else's file now: not ours to unlink
    finally:
        os.unlink(shm_path(name))  # the registration was ended by the refusal
