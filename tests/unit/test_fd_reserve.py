"""The reserved descriptor: segments open when the process has no descriptor left."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import resource
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from multiprocessing import resource_tracker

import numpy as np
import pytest

from zerocopy_executor import _fd_reserve, _identity, _namespace, _segments
from zerocopy_executor._errors import SegmentError

TAG = _namespace.new_tag()


@contextlib.contextmanager
def full_descriptor_table() -> Iterator[None]:
    """This process has no descriptor left (a low soft limit, filled) until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 32, hard))
    try:
        while True:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                if exc.errno != errno.EMFILE:
                    raise
                break
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# The rules of named segments in /dev/shm (memfd ones: tests/unit/test_memfd.py).
pytestmark = pytest.mark.usefixtures("named_segments")


@pytest.fixture
def no_descriptor_left() -> Iterator[None]:
    """The test runs with no descriptor left (the resource tracker started before, as in use)."""
    resource_tracker.ensure_running()
    with full_descriptor_table():
        yield


def unmapped_segment(value: int) -> tuple[str, _identity.Identity]:
    """A live segment filled with value that this process does not map (nor own): name, identity."""
    buffer = _segments.create(4096, tag=TAG)
    np.frombuffer(buffer, dtype=np.uint8)[:] = value
    _segments.hand_over([buffer])  # its mapping's death must not unlink it
    name, identity = buffer.name, buffer.identity
    del buffer
    gc.collect()
    _segments.drain_releases()
    return name, identity


def test_segments_create_and_attach_with_no_descriptor_left():
    """With the descriptor table full, a segment is still created, and one made elsewhere attached."""
    name, identity = unmapped_segment(7)
    try:
        with full_descriptor_table():
            with pytest.raises(OSError, match="Too many open files"):
                os.close(os.open(os.devnull, os.O_RDONLY))
            attached = _segments.attach(name, identity)
            created = _segments.create(4096, tag=TAG)
            assert _fd_reserve._RESERVE.fd is not None  # taken back for the next one
        _segments.take_ownership(attached)  # unlinked when it dies
        assert bytes(attached[:3]) == b"\x07\x07\x07"
        assert len(created) == 4096
        del attached, created
    finally:
        gc.collect()
        _segments.drain_releases()
        _segments.unlink(name)


def test_owner_unlinks_its_segment_with_no_descriptor_left():
    """With the descriptor table full, unlinking a segment by name and identity still removes it."""
    name, identity = unmapped_segment(1)
    try:
        with full_descriptor_table():
            unlinked = _segments.unlink(name, unregister_if_gone=True, identity=identity)
        assert unlinked
        assert not os.path.exists(f"/dev/shm/{name}")
    finally:
        _segments.unlink(name)


def test_threads_share_the_reserve_with_no_descriptor_left(no_descriptor_left):
    """Four threads creating segments at once with no descriptor left all succeed."""
    failures: list[BaseException] = []
    made: list[_segments.SegmentBuffer] = []

    def create_some() -> None:
        try:
            for _ in range(25):
                made.append(_segments.create(4096, tag=TAG))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=create_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert len(made) == 100


def test_other_open_errors_are_not_retried():
    """An open that fails for another reason than a shortage raises at once, the reserve untouched."""
    spare = _fd_reserve._RESERVE.fd
    calls = []

    def missing() -> int:
        calls.append(1)
        raise FileNotFoundError(errno.ENOENT, "gone")

    with pytest.raises(FileNotFoundError):
        _fd_reserve.with_descriptor(missing, lambda fd: fd)
    assert calls == [1]
    assert _fd_reserve._RESERVE.fd == spare


def test_attach_with_no_descriptor_and_no_reserve_explains(monkeypatch, no_descriptor_left):
    """Without a reserve, running out of descriptors is a SegmentError naming ulimit -n."""
    name = _namespace.new_name(TAG)
    monkeypatch.setattr(_fd_reserve._RESERVE, "fd", None)
    monkeypatch.setattr(_fd_reserve._RESERVE, "refill", lambda: None)
    with pytest.raises(SegmentError, match=r"Too many open files.*ulimit -n"):
        _segments.attach(name, (0, 0, 0))


def test_failed_tracker_start_leaves_no_segment(tmp_path):
    """No descriptor left to start the resource tracker: create() raises SegmentError, and no name is left."""
    script = textwrap.dedent(
        """
        import errno, os, resource, sys
        from zerocopy_executor import _segments
        from zerocopy_executor._errors import SegmentError
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 8, hard))
        fillers = []
        while True:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        try:
            _segments.create(4096, tag="0badcafe")
        except SegmentError as exc:
            print("refused:", exc)
        for fd in fillers:
            os.close(fd)
        print("left:", sorted(n for n in os.listdir("/dev/shm") if "0badcafe" in n))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "refused: cannot create a segment of 4096 bytes" in done.stdout, done.stdout
    assert "left: []" in done.stdout, done.stdout
    assert done.stderr == "", done.stderr
