"""Memory-mapped files by reference: what the receiver refuses to map."""

from __future__ import annotations

import os

import pytest

from zerocopy_executor import _files
from zerocopy_executor._errors import SegmentError


@pytest.mark.timeout(10)
@pytest.mark.parametrize("writeable", [False, True])
def test_fifo_at_the_path_is_refused_without_blocking(tmp_path, writeable):
    """A FIFO where the file was is refused at once with SegmentError, not waited on for a writer."""
    path = tmp_path / "data.bin"
    os.mkfifo(path)
    with pytest.raises(SegmentError, match="is not a regular file"):
        _files.map_region(str(path), 0, 8, writeable=writeable)


@pytest.mark.parametrize("writeable", [False, True])
def test_regular_file_is_mapped(tmp_path, writeable):
    """Control: a regular file long enough is mapped, and the offset of the first byte returned."""
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 32)
    mapping, start = _files.map_region(str(path), 4100, 4108, writeable=writeable)
    try:
        assert mapping[start : start + 8] == bytes(range(4, 12))
    finally:
        mapping.close()
