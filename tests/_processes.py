"""A process tree seen from /proc: what the leak guard and the fault scenarios look at.

Only the standard library: the fault scenarios import this in child scripts, and the
leak guard must not depend on the code it checks.

Under forkserver (Python 3.14's default on Linux) workers and helper servers are
children of the forkserver, not of the process that asked for them, so a check of
direct children misses them; a process whose parent exits is re-parented to init
unless an ancestor is a child subreaper. Hence descendants(), and become_subreaper()
for the test process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import subprocess
import sys
from multiprocessing import process as mp_process
from multiprocessing import resource_tracker

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def process_table() -> dict[int, tuple[int, str, int]]:
    """Every process in /proc as pid -> (ppid, state, start time in clock ticks)."""
    table: dict[int, tuple[int, str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # exited while we were looking
            continue
        table[int(entry)] = (int(fields[1]), fields[0], int(fields[19]))
    return table


def descendants(root: int, table: dict[int, tuple[int, str, int]] | None = None) -> dict[int, int]:
    """Live descendants of root (not root itself) as pid -> start time."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, state, _) in table.items():
        if state != "Z":
            children.setdefault(ppid, []).append(pid)
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = table[child][2]
                todo.append(child)
    return found


def is_running(pid: int, start_time: int) -> bool:
    """Whether that very process (not a reused pid) exists and is not a zombie."""
    entry = process_table().get(pid)
    return entry is not None and entry[2] == start_time and entry[1] != "Z"


def command_line(pid: int) -> str:
    """A process's command line (shortened), or '?' once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:100]
    except OSError:
        return "?"


def become_subreaper() -> bool:
    """Make this process the child subreaper of its tree; return whether it is one.

    An orphan in the tree (a worker whose parent died, a daemon a shell left behind) is
    then re-parented to us instead of to init, so descendants() still sees it. The
    flag is not inherited by forked children (prctl(2)).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def long_lived_helpers() -> set[int]:
    """This process's resource tracker and forkserver: they serve every test by design."""
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


def _waited_by_someone() -> set[int]:
    """Children that an object here will wait for: multiprocessing's and subprocess's."""
    pids = set(long_lived_helpers())
    for child in list(mp_process._children):  # started, not yet joined
        popen = getattr(child, "_popen", None)
        if popen is not None:
            pids.add(popen.pid)
    pids.update(
        obj.pid for obj in gc.get_objects() if isinstance(obj, subprocess.Popen) and obj.returncode is None
    )
    return pids


def reap_adopted_orphans() -> int:
    """Wait for the zombies that were re-parented to us (and nobody else waits for).

    A subreaper inherits the exit statuses of the orphans it adopted; nothing else
    collects them. Our own children's statuses are left to their Popen or Process.
    """
    me = os.getpid()
    zombies = {pid for pid, (ppid, state, _) in process_table().items() if ppid == me and state == "Z"}
    if not zombies:
        return 0
    reaped = 0
    for pid in zombies - _waited_by_someone():
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped += 1
        except ChildProcessError:
            pass
    return reaped
