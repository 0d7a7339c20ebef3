"""Shared fixtures: the start method matrix and the leak guard every test runs under.

The guard sees every process a test started, whatever the start method: it walks the
whole tree under the test process (forkserver workers and servers are the
forkserver's children, not ours), and the test process is a child subreaper, so an
orphan (a worker whose parent died, a daemon a shell left behind) is re-parented to it
instead of to init. The resource tracker and the forkserver themselves live for the
whole session by design and are not counted; their other descendants are.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests import _processes
from tests._fault_scripts.probes import live_memfds

SEGMENT_PREFIX = "zc_"
SHM_DIR = "/dev/shm"
START_METHODS = [m for m in ("fork", "forkserver", "spawn") if m in multiprocessing.get_all_start_methods()]
# How long the guard waits for what a test started to go away (background unlinks,
# workers exiting); the guard's own tests shorten it.
LEAK_WAIT_SECONDS = float(os.environ.get("ZC_LEAK_WAIT_SECONDS", "10"))
# Named semaphores belong to live multiprocessing objects, which pytest may still hold
# while the guard looks (a fixture's executor): they are not segments.
NOT_SEGMENTS = ("sem.",)


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _is_foreign(name: str) -> bool:
    """True if the segment's creator (its name carries the pid) is alive outside our tree.

    Other programs, and other test runs, use /dev/shm too; a creator that has already
    exited (a worker) cannot be placed, so its segments count as ours. A creator that
    outlived its parent is re-parented to us (we are a subreaper), so it is placed.
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


@functools.cache
def shm_is_private() -> bool:
    """Whether /dev/shm is this run's own tmpfs (CI's `unshare -m`), not the machine's.

    It is if the file system mounted there is not the one init sees (the last mount on
    /dev/shm in init's mount table).
    """
    try:
        with open("/proc/1/mountinfo") as f:
            devices = [fields[2] for fields in map(str.split, f) if fields[4] == SHM_DIR]
        device = os.stat(SHM_DIR).st_dev
    except (OSError, IndexError):  # no /proc, or unreadable: assume it is shared
        return False
    return bool(devices) and devices[-1] != f"{os.major(device)}:{os.minor(device)}"


def our_segments() -> set[str]:
    """Our segments made by this process or its descendants that still exist.

    Named ones in /dev/shm, and memfds (as ``memfd:<name>``) that this process or a
    descendant still holds or maps: the kernel frees a memfd once none does. Only this
    process's tree is searched: another test run's memfds are not ours to count.
    """
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(SEGMENT_PREFIX)]
    except FileNotFoundError:
        names = []
    tree = [os.getpid(), *_processes.descendants(os.getpid())]
    names += [f"memfd:{name}" for name in live_memfds(tree)]
    return {n for n in names if not _is_foreign(n.removeprefix("memfd:"))}


def leakable_segments() -> set[str]:
    """What the guard compares: our segments, and in a private /dev/shm anything but semaphores.

    A private /dev/shm holds only this run's files, so a segment made under another
    name (the standard library's ``psm_``) is caught too.
    """
    names = our_segments()
    if shm_is_private():
        with contextlib.suppress(FileNotFoundError):
            names.update(n for n in os.listdir(SHM_DIR) if not n.startswith((SEGMENT_PREFIX, *NOT_SEGMENTS)))
    return names


def our_processes() -> dict[int, int]:
    """Every live process under this one (pid -> start time), but the session-long helpers."""
    helpers = _processes.long_lived_helpers()
    return {pid: t for pid, t in _processes.descendants(os.getpid()).items() if pid not in helpers}


def describe_segment(name: str) -> str:
    """Name, size and creator (alive or not, and its command line) of a segment."""
    try:
        size = os.stat(f"{SHM_DIR}/{name}").st_size
    except OSError:
        size = -1
    if name.startswith("memfd:"):
        return f"{name} (a memfd still held or mapped in this tree)"
    if not name.startswith(SEGMENT_PREFIX):
        return f"{name} ({size} bytes, not ours by name)"
    pid = name.split("_")[1]
    creator = _processes.command_line(int(pid)) if pid.isdigit() else "?"
    relation = "this process" if pid == str(os.getpid()) else f"pid {pid}"
    return f"{name} ({size} bytes, created by {relation}: {'exited' if creator == '?' else creator})"


def describe_process(pid: int) -> str:
    """Pid, parent pid and command line of a process."""
    return f"{pid} (parent {_parent_of(pid)}: {_processes.command_line(pid)})"


def _collect_garbage() -> None:
    gc.collect()
    multiprocessing.active_children()  # reaps finished children
    _processes.reap_adopted_orphans()


def _clean_up(processes: dict[int, int], segments: set[str]) -> None:
    """Stop what a failed test leaked, so the tests after it start clean."""
    for pid, start in processes.items():
        if _processes.is_running(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_processes.is_running(p, s) for p, s in processes.items()) and time.monotonic() < deadline:
        time.sleep(0.02)
    _collect_garbage()
    for name in segments:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{SHM_DIR}/{name}")


@pytest.fixture(scope="session", autouse=True)
def subreaper() -> bool:
    """The test process adopts the orphans of its tree (Linux), so the guard can see them."""
    return _processes.become_subreaper()


@pytest.fixture(autouse=True)
def leak_guard(subreaper: bool) -> Iterator[None]:
    """Fail a test that leaves a segment (in /dev/shm, or a memfd in its tree) or a process of its tree."""
    segments_before = leakable_segments()
    processes_before = our_processes()
    yield
    deadline = time.monotonic() + LEAK_WAIT_SECONDS
    while True:
        _collect_garbage()
        leaked = leakable_segments() - segments_before
        alive = {p: t for p, t in our_processes().items() if processes_before.get(p) != t}
        if not leaked and not alive:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    problems = []
    if leaked:
        problems.append(f"segments left: {[describe_segment(n) for n in sorted(leaked)]}")
    if alive:
        problems.append(f"processes still alive: {[describe_process(p) for p in sorted(alive)]}")
    _clean_up(alive, leaked)
    pytest.fail("; ".join(problems))


@pytest.fixture
def named_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make named segments in /dev/shm, whatever kind the run makes (for tests of that kind's rules)."""
    monkeypatch.setenv("ZEROCOPY_EXECUTOR_SEGMENTS", "named")


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """Each integration test runs under fork, forkserver and spawn (never the default)."""
    return str(request.param)


@pytest.fixture
def mp_context(start_method: str) -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context(start_method)
