"""Shared mappings of a file that keep no descriptor, and the segments made with them."""

from __future__ import annotations

import errno
import gc
import mmap
import os
import weakref

import numpy as np
import pytest

from zerocopy_executor import _fdless_mmap, _namespace, _segments

TAG = _namespace.new_tag()
PAGE = mmap.ALLOCATIONGRANULARITY

# The rules of named segments in /dev/shm (memfd ones: tests/unit/test_memfd.py).
pytestmark = pytest.mark.usefixtures("named_segments")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def is_mapped(address: int) -> bool:
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            if start <= address < end:
                return True
    return False


@pytest.fixture
def data_file(tmp_path):
    """A descriptor of a file of three pages, each filled with its number."""
    path = tmp_path / "data"
    path.write_bytes(b"".join(bytes([i]) * PAGE for i in range(3)))
    fd = os.open(path, os.O_RDWR)
    yield fd
    os.close(fd)


def test_live_segments_hold_no_descriptor():
    """Segments created and attached here keep no file descriptor open while they live, on every Python."""
    gc.collect()
    before = open_fds()
    buffers = [_segments.create(4096, tag=TAG) for _ in range(20)]
    assert open_fds() == before
    del buffers


def test_mapping_writes_reach_the_file(data_file):
    """A writeable mapping sees the file's bytes from its offset, and its writes reach the file."""
    mapping, address = _fdless_mmap.map_shared(mmap.mmap, data_file, PAGE, offset=PAGE)
    assert mapping[:2] == b"\x01\x01"
    mapping[:2] = b"ab"
    assert os.pread(data_file, 2, PAGE) == b"ab"
    assert np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0] == address
    mapping.close()


def test_read_only_mapping_exports_a_read_only_buffer(data_file):
    """A read-only mapping reads the file and refuses writes (its buffer is read-only, no crash)."""
    mapping, _ = _fdless_mmap.map_shared(mmap.mmap, data_file, PAGE, offset=2 * PAGE, writeable=False)
    assert mapping[:1] == b"\x02"
    assert memoryview(mapping).readonly
    with pytest.raises(TypeError):
        mapping[:1] = b"x"
    mapping.close()


def test_mapping_is_unmapped_when_closed_or_collected(data_file):
    """close() and garbage collection both remove the mapping from the address space."""
    closed, closed_at = _fdless_mmap.map_shared(mmap.mmap, data_file, PAGE)
    dropped, dropped_at = _fdless_mmap.map_shared(mmap.mmap, data_file, PAGE)
    ref = weakref.ref(dropped)
    assert is_mapped(closed_at)
    assert is_mapped(dropped_at)
    assert len(dropped) == PAGE
    closed.close()
    del dropped
    gc.collect()
    assert ref() is None
    assert not is_mapped(closed_at)
    assert not is_mapped(dropped_at)


def test_refused_mapping_raises_oserror(tmp_path):
    """A mapping the system refuses (writeable over a read-only descriptor) raises OSError."""
    path = tmp_path / "data"
    path.write_bytes(b"x" * PAGE)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError, match="Permission denied") as caught:
            _fdless_mmap.map_shared(mmap.mmap, fd, PAGE)
        assert caught.value.errno == errno.EACCES
    finally:
        os.close(fd)
