"""Make helper processes exit when the process that started them dies.

ProcessPoolExecutor workers and a SharedMemoryManager server outlive a SIGKILLed
parent and keep the resource tracker's pipe open, so nothing is ever cleaned up
(tests/integration/test_faults_processes.py shows it). ``PR_SET_PDEATHSIG`` fires when the
forking *thread* exits and ``os.getppid()`` sees the forkserver, not the parent; a
pidfd of the parent works under every start method (Linux 5.3+). Elsewhere we poll
whether the parent pid still exists.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

__all__ = ["exit_with_parent", "is_running"]

_POLL_SECONDS = 0.5


def exit_with_parent(parent_pid: int, on_orphaned: Callable[[], object] | None = None) -> None:
    """Start a daemon thread that runs on_orphaned and exits once parent_pid is gone."""
    try:
        pidfd: int | None = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        _die(on_orphaned)
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        pidfd = None
    thread = threading.Thread(
        target=_watch, args=(parent_pid, pidfd, on_orphaned), name="zerocopy-parent-watch", daemon=True
    )
    thread.start()


def _watch(parent_pid: int, pidfd: int | None, on_orphaned: Callable[[], object] | None) -> None:
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable once the parent has exited
    else:
        while is_running(parent_pid):
            time.sleep(_POLL_SECONDS)
    _die(on_orphaned)


def is_running(pid: int) -> bool:
    """Whether process pid exists and has not exited (a zombie has: it owns nothing any more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (not Linux): it exists
        return True


def _die(on_orphaned: Callable[[], object] | None) -> None:
    try:
        if on_orphaned is not None:
            on_orphaned()
    finally:
        os._exit(0)
