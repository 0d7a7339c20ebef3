"""FdWatcher: acts each time its descriptor is readable, and steps aside (its thread gone) for a fork."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="an eventfd wakes it: Linux")

if sys.platform.startswith("linux"):
    from zerocopy_executor._fd_watcher import FdWatcher


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        os.close(fd)


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "test-watch"]


def _reader(read: int, got: list[bytes]) -> FdWatcher:
    return FdWatcher("test-watch", read, lambda: got.append(os.read(read, 100)))


def test_reads_as_data_comes_and_again_after_stepping_aside_for_a_fork(pipe) -> None:
    """on_readable runs for each write; paused (as before a fork) no thread runs; resumed it reads again."""
    read, write = pipe
    got: list[bytes] = []
    watcher = _reader(read, got)
    os.write(write, b"a")
    assert _wait_for(lambda: got == [b"a"])
    watcher._pause()  # what the before-fork hook does
    assert not _threads()
    os.write(write, b"b")  # waits in the pipe meanwhile
    time.sleep(0.05)
    assert got == [b"a"]
    watcher._resume_in_parent()
    assert _wait_for(lambda: got == [b"a", b"b"])
    watcher.stop()
    assert not _threads()


def test_two_forks_at_once_leave_one_thread_running(pipe) -> None:
    """Two threads forking together pause twice and resume twice: one thread runs after, not none."""
    read, write = pipe
    got: list[bytes] = []
    watcher = _reader(read, got)
    watcher._pause()
    watcher._pause()  # the second fork finds no thread
    watcher._resume_in_parent()
    watcher._resume_in_parent()
    assert len(_threads()) == 1
    os.write(write, b"c")
    assert _wait_for(lambda: got == [b"c"])
    watcher.stop()


def test_a_wake_up_left_unread_does_not_end_the_next_thread(pipe) -> None:
    """A wake-up its last thread did not consume is dropped when the next one starts."""
    read, write = pipe
    got: list[bytes] = []
    watcher = _reader(read, got)
    watcher._pause()
    os.eventfd_write(watcher._wake, 1)  # as if the thread had ended before reading its wake-up
    watcher._resume_in_parent()
    os.write(write, b"d")
    assert _wait_for(lambda: got == [b"d"])
    watcher.stop()


def test_a_stopped_watcher_is_not_started_again_by_a_fork(pipe) -> None:
    """After stop() the thread is gone for good: the fork hooks do not revive it."""
    read, _ = pipe
    watcher = FdWatcher("test-watch", read, lambda: None)
    watcher.stop()
    watcher._pause()
    watcher._resume_in_parent()
    assert not _threads()
