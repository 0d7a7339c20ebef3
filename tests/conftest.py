"""Shared fixtures: the start method matrix and the leak guard every test runs under."""

from __future__ import annotations

import gc
import multiprocessing
import os
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker

import pytest

SEGMENT_PREFIX = "zc_"
SHM_DIR = "/dev/shm"
START_METHODS = [m for m in ("fork", "forkserver", "spawn") if m in multiprocessing.get_all_start_methods()]
LEAK_WAIT_SECONDS = 10.0


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _is_foreign(name: str) -> bool:
    """True if the segment's creator (its name carries the pid) is alive outside our tree.

    Other programs, and other test runs, use /dev/shm too; a creator that has already
    exited (a worker) cannot be placed, so its segments count as ours.
    """
    try:
        pid = int(name.split("_")[1])
    except (IndexError, ValueError):
        return True
    me, seen = os.getpid(), 0
    while pid not in (me, 0, 1) and seen < 64:
        parent = _parent_of(pid)
        if parent is None:
            return seen > 0  # an ancestor vanished mid-walk: not provably ours
        pid, seen = parent, seen + 1
    return pid != me


def our_segments() -> set[str]:
    """Our project's names in /dev/shm, made by this process or its descendants."""
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(SEGMENT_PREFIX)]
    except FileNotFoundError:
        return set()
    return {n for n in names if not _is_foreign(n)}


def child_pids(pid: int | None = None) -> set[int]:
    """Live (non-zombie) direct children of pid, read from /proc."""
    pid = os.getpid() if pid is None else pid
    children: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == pid and state != "Z":
            children.add(int(entry))
    return children


def _long_lived_helpers() -> set[int]:
    """The resource tracker and forkserver live for the whole session by design."""
    pids = set()
    tracker_pid = getattr(resource_tracker._resource_tracker, "_pid", None)
    if tracker_pid:
        pids.add(tracker_pid)
    try:
        from multiprocessing import forkserver

        fs_pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
        if fs_pid:
            pids.add(fs_pid)
    except ImportError:  # pragma: no cover - platforms without forkserver
        pass
    return pids


def describe_segment(name: str) -> str:
    """Name, size and creator (alive or not, and its command line) of a segment."""
    try:
        size = os.stat(f"{SHM_DIR}/{name}").st_size
    except OSError:
        size = -1
    pid = name.split("_")[1]
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            creator = f.read().replace(b"\0", b" ").decode(errors="replace")[:80]
    except OSError:
        creator = "exited"
    relation = "this process" if pid == str(os.getpid()) else f"pid {pid}"
    return f"{name} ({size} bytes, created by {relation}: {creator})"


def is_long_lived(pid: int) -> bool:
    """Whether pid is the resource tracker or the forkserver (they serve every test)."""
    return pid in _long_lived_helpers()


@pytest.fixture(autouse=True)
def leak_guard() -> Iterator[None]:
    """Fail a test that leaves a segment in /dev/shm or a child process alive."""
    segments_before = our_segments()
    children_before = child_pids()
    yield
    deadline = time.monotonic() + LEAK_WAIT_SECONDS
    while True:
        gc.collect()
        multiprocessing.active_children()  # reaps finished children
        leaked = our_segments() - segments_before
        orphans = child_pids() - children_before - _long_lived_helpers()
        if not leaked and not orphans:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    problems = []
    if leaked:
        problems.append(f"segments left in {SHM_DIR}: {[describe_segment(n) for n in sorted(leaked)]}")
    if orphans:
        problems.append(f"child processes still alive: {sorted(orphans)}")
    pytest.fail("; ".join(problems))


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """Each integration test runs under fork, forkserver and spawn (never the default)."""
    return str(request.param)


@pytest.fixture
def mp_context(start_method: str) -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context(start_method)
