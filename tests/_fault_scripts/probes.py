"""What a scenario sees of its process tree and its segments, and how it reports."""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import os
import re
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from tests._processes import descendants, process_table
from zerocopy_executor import _segments


def collect() -> None:
    """Collect garbage and do the unlinks it makes due (a background reaper does them)."""
    gc.collect()
    _segments.drain_releases()


SHM_DIR = "/dev/shm"
SEGMENT_PATTERN = re.compile(r"zc_([0-9]+)_[0-9a-f]{18}")
MiB = 1 << 20
TIMEOUT = 60


# --- seen from outside: processes and segments ------------------------------------


def segments_of(pids: set[int] | list[int]) -> list[str]:
    """Our segments created by any of pids (the name carries the creator) that still exist.

    Named ones in /dev/shm, and memfds (listed as ``memfd:<name>``) that a process on
    the machine still holds or maps: the kernel frees a memfd once none does.
    """
    wanted = {str(pid) for pid in pids}
    names = []
    for name in [*os.listdir(SHM_DIR), *(f"memfd:{name}" for name in live_memfds())]:
        match = SEGMENT_PATTERN.fullmatch(name.removeprefix("memfd:"))
        if match and match.group(1) in wanted:
            names.append(name)
    return sorted(names)


MEMFD_PATTERN = re.compile(r"/memfd:(zc_[0-9]+_[0-9a-f]{18}) \(deleted\)")


def live_memfds(pids: Iterable[int] | None = None) -> dict[str, int]:
    """Our memfds a process (of pids; any on the machine if None) holds or maps: name -> bytes."""
    found: dict[str, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")) if pids is None else map(str, pids):
        with contextlib.suppress(OSError):  # exited, or not ours to read
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    match = MEMFD_PATTERN.fullmatch(os.readlink(f"/proc/{pid}/fd/{fd}"))
                    if match:
                        found[match.group(1)] = os.stat(f"/proc/{pid}/fd/{fd}").st_size
        with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                match = MEMFD_PATTERN.search(line)
                if match and match.group(1) not in found:
                    start, end = line.split(maxsplit=1)[0].split("-")
                    found[match.group(1)] = int(end, 16) - int(start, 16)
    return found


def shm_bytes_of(pid: int) -> int:
    """Total size of the segments pid created that still exist (linked, or a memfd still held)."""
    total = 0
    memfds = None
    for name in segments_of([pid]):
        if name.startswith("memfd:"):
            memfds = live_memfds() if memfds is None else memfds
            total += memfds.get(name.removeprefix("memfd:"), 0)
        else:
            with contextlib.suppress(FileNotFoundError):  # unlinked while we looked
                total += os.stat(os.path.join(SHM_DIR, name)).st_size
    return total


def fd_count(pid: int | str = "self", *, below: int | None = None) -> int:
    """Number of open file descriptors of a process (numbered below below, if given)."""
    fds = os.listdir(f"/proc/{pid}/fd")
    return len(fds) if below is None else sum(int(fd) < below for fd in fds)


# --- inside a scenario ---------------------------------------------------------


class Seen:
    """Every process a scenario's tree had (pid -> start time), to attribute and reap."""

    def __init__(self) -> None:
        me = os.getpid()
        self.procs: dict[int, int] = {me: process_table()[me][2]}

    @property
    def pids(self) -> set[int]:
        return set(self.procs)

    def look(self) -> None:
        self.procs.update(descendants(os.getpid()))

    def add(self, pid: int) -> None:
        entry = process_table().get(pid)
        # A worker that already exited still names the segments it made: keep its pid.
        self.procs.setdefault(pid, 0 if entry is None else entry[2])

    def listing(self) -> list[list[int]]:
        return [[pid, start] for pid, start in sorted(self.procs.items())]


def emit(tag: str, **fields: Any) -> None:
    print(tag, json.dumps(fields), flush=True)


def context(start_method: str) -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context(start_method)


def outcome(future: Future[Any], expected: Any = None) -> str:
    """Classify how a future ended: ok, wrong, broken, or the exception's class name."""
    try:
        value = future.result(timeout=TIMEOUT)
    except BrokenProcessPool:
        return "broken"
    except BaseException as exc:
        return type(exc).__name__
    if expected is None:
        return "ok"
    return "ok" if np.array_equal(value, expected) else "wrong"
