"""A user's SharedMemory block: found from any view, described by name, mapped only as the sender's file."""

from __future__ import annotations

import gc
import mmap
import os
import sys
from collections.abc import Iterator
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import pytest

from zerocopy_executor import _arrayref, _blocks, _segments
from zerocopy_executor._errors import SegmentError

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="blocks are found in /proc/self/maps"
)

N = 1024


@pytest.fixture
def block() -> Iterator[SharedMemory]:
    shm = SharedMemory(create=True, size=N * 8)
    try:
        yield shm
    finally:
        gc.collect()
        _segments.drain_releases()
        shm.unlink()
        shm.close()


def ref_of(array: np.ndarray) -> _arrayref.ArrayRef:
    fields = _blocks.describe(array)
    assert fields is not None
    return _arrayref.ArrayRef(*fields)


def test_view_of_block_is_described_by_its_name_and_offset(block):
    """A strided, reversed view names the block, its first element's offset and the file's identity."""
    array = np.ndarray((N,), np.float64, buffer=block.buf)
    view = array[100:10:-3]
    ref = ref_of(view)
    status = os.stat(f"/dev/shm/{block.name}")
    assert ref.name == _blocks.BLOCK_PREFIX + block.name
    assert ref.offset == 100 * 8
    assert (ref.shape, ref.strides) == (view.shape, view.strides)
    assert ref.segment_id == (status.st_uid, status.st_dev, status.st_ino)
    assert (ref.handover, ref.lent, ref.scratch) == (False, False, False)
    del array, view


def test_rebuilt_view_is_the_same_memory(block):
    """Rebuilding a block's descriptor maps the block by name: a write through it reaches the original."""
    array = np.ndarray((N,), np.float64, buffer=block.buf)
    array[:] = 1.0
    rebuilt, buffer = _arrayref.rebuild(ref_of(array[5:9]))
    rebuilt[:] = 7.0
    assert array[4:10].tolist() == [1.0, 7.0, 7.0, 7.0, 7.0, 1.0]
    assert buffer is not None
    assert not _segments.is_owned(buffer)  # nothing of ours unlinks it
    assert _arrayref.locate(rebuilt) is not None  # found by address, as a segment is
    del array, rebuilt, buffer


def test_name_made_again_by_another_file_is_refused(block):
    """A descriptor whose block was unlinked and made again under its name is refused, never mapped."""
    array = np.ndarray((N,), np.float64, buffer=block.buf)
    ref = ref_of(array)
    block.unlink()
    impostor = SharedMemory(name=block.name, create=True, size=N * 8)
    try:
        with pytest.raises(SegmentError, match="not the one its sender made") as refused:
            _arrayref.rebuild(ref)
        message = str(refused.value)
        assert message.startswith(f"refusing to map shared memory block {block.name!r}"), message
        assert "do not unlink the block (nor shut down a SharedMemoryManager" in message, message
    finally:
        impostor.close()  # the fixture unlinks the name
    del array


def test_unlinked_or_private_mapping_is_not_a_block(block):
    """A block the user unlinked, or a private (copy-on-write) mapping of one, is not sent by reference."""
    fd = os.open(f"/dev/shm/{block.name}", os.O_RDWR)
    try:
        private = mmap.mmap(fd, N * 8, flags=mmap.MAP_PRIVATE)
    finally:
        os.close(fd)
    assert _blocks.locate(np.frombuffer(private, np.float64)) is None
    array = np.ndarray((N,), np.float64, buffer=block.buf)
    assert _blocks.locate(array) is not None
    os.unlink(f"/dev/shm/{block.name}")
    try:
        assert _blocks.locate(array) is None
    finally:
        os.close(os.open(f"/dev/shm/{block.name}", os.O_CREAT | os.O_RDWR, 0o600))  # for the fixture's unlink
    del array
    private.close()


def test_plain_array_is_not_a_block():
    """A plain array, or a view of bytes, is not a block."""
    assert _blocks.locate(np.zeros(8)) is None
    assert _blocks.locate(np.frombuffer(bytearray(64), np.uint8)[::2]) is None


def test_forged_block_descriptor_that_hands_over_is_refused(block):
    """A block descriptor claiming to hand the block over (so we would unlink it) is refused."""
    array = np.ndarray((N,), np.float64, buffer=block.buf)
    with pytest.raises(SegmentError, match="hands it over"):
        _arrayref.rebuild(ref_of(array)._replace(handover=True))
    assert os.path.exists(f"/dev/shm/{block.name}")
    del array
