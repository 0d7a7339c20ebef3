"""Segment names, and releasing an executor's segments by the tag in their names.

A name is ``zc_<creator pid>_<tag><random>``: at most 30 characters (macOS allows 31),
unguessable, attributable to its creator, and marked with the *tag* of the executor
whose processes made it (eight hex digits, random per executor). The tag is the
executor's ledger: every segment its parent or its workers create carries it, so the
segments a crashed worker left behind are found by listing /dev/shm, with no record
kept anywhere and no round trip per segment.

Why not a SharedMemoryManager: its server process costs every executor's life 10 ms
(fork) to 100 ms (spawn, forkserver), about twice ProcessPoolExecutor's whole
create-run-shutdown cycle; under fork it inherits the pool's pipes, so a broken pool
can deadlock (CPython's ``test_crash_big_data``); and it cannot start during
interpreter finalization. The resource tracker already outlives every process of a
pool, and names already say who made them.

Who releases what:
- a segment's owner unlinks it when its last view dies (see _segments);
- ``shutdown()`` sweeps the executor's tag once its workers are gone, sparing what
  the parent still holds (results outlive the executor) and what a still-running
  creator owns (it unlinks its own), and sweeps again as each such creator exits
  (see _sweep);
- a worker that sees the parent die sweeps the tag before it exits (see _watchdog),
  so nothing waits for the resource tracker's own clean-up, which warns.

A sweep touches only names owned by this process's user: /dev/shm is shared by every
user, and anyone can plant a name with our prefix and tag (tests/integration/test_faults_segments.py).

Listing segments needs /dev/shm (Linux); elsewhere sweeping finds nothing, and what a
crashed worker left is reclaimed by the resource tracker when the parent exits.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Collection

from ._watchdog import is_running

__all__ = [
    "NAME_PATTERN",
    "NAME_PREFIX",
    "SHM_DIR",
    "creator_pid",
    "new_name",
    "new_tag",
    "process_tag",
    "running_creators",
    "set_process_tag",
    "shm_free_bytes",
    "shm_total_bytes",
    "tag_of",
    "tagged_names",
]

NAME_PREFIX = "zc_"
_TAG_DIGITS = 8
_RANDOM_DIGITS = 10
NAME_PATTERN = re.compile(rf"{NAME_PREFIX}([0-9]+)_([0-9a-f]{{{_TAG_DIGITS}}})[0-9a-f]{{{_RANDOM_DIGITS}}}")
SHM_DIR = "/dev/shm"


def new_tag() -> str:
    """Return a fresh executor tag."""
    return secrets.token_hex(_TAG_DIGITS // 2)


# The tag of segments this process makes outside an executor's own allocation
# (zerocopy_executor.empty and friends): a worker's is its executor's.
_PROCESS_TAG = [new_tag()]


def process_tag() -> str:
    """The tag this process puts in the names of the segments it creates for itself."""
    return _PROCESS_TAG[0]


def set_process_tag(tag: str) -> None:
    """Mark this process's segments with tag from now on (a worker: its executor's)."""
    _PROCESS_TAG[0] = tag


def new_name(tag: str) -> str:
    """Return a fresh, unguessable segment name carrying tag (at most 30 characters)."""
    return f"{NAME_PREFIX}{os.getpid()}_{tag}{secrets.token_hex(_RANDOM_DIGITS // 2)}"


def tag_of(name: str) -> str | None:
    """The executor tag in a segment's name, or None if it is not one of ours."""
    match = NAME_PATTERN.fullmatch(name)
    return None if match is None else match.group(2)


def creator_pid(name: str) -> int | None:
    """The pid in a segment's name, or None if it is not one of ours."""
    match = NAME_PATTERN.fullmatch(name)
    return None if match is None else int(match.group(1))


def tagged_names(tag: str, keep: Collection[str] = (), *, spare_running_creators: bool = True) -> list[str]:
    """Names in /dev/shm that carry tag and belong to this user, except those in keep.

    Args:
        tag: the executor's tag.
        keep: names to leave alone.
        spare_running_creators: leave out segments whose creator is a running process
            other than this one: it owns them and will unlink them itself.
    """
    me = os.getpid()
    return [
        name
        for name, pid in _tagged(tag)
        if name not in keep and not (spare_running_creators and pid != me and is_running(pid))
    ]


def running_creators(tag: str) -> set[int]:
    """Running processes, other than this one, that made segments of this user with tag."""
    me = os.getpid()
    return {pid for _, pid in _tagged(tag) if pid != me and is_running(pid)}


def _tagged(tag: str) -> list[tuple[str, int]]:
    """(name, creator pid) of the names in /dev/shm that carry tag and belong to this user."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:  # no /dev/shm (macOS): see the module docstring
        return []
    uid = os.geteuid()
    found = []
    for name in names:
        match = NAME_PATTERN.fullmatch(name)
        if match is None or match.group(2) != tag:
            continue
        try:
            info = os.stat(f"{SHM_DIR}/{name}", follow_symlinks=False)
        except OSError:  # unlinked meanwhile
            continue
        # Another user's name (planted, or made by a worker that changed its uid) is
        # never ours to unlink: in a sticky /dev/shm that fails, and as root it must not.
        if info.st_uid == uid:
            found.append((name, int(match.group(1))))
    return found


def shm_total_bytes() -> int | None:
    """Size of the shared-memory filesystem, if it can be read."""
    try:
        return shutil.disk_usage(SHM_DIR).total
    except OSError:
        return None


def shm_free_bytes() -> int | None:
    """Free bytes in the shared-memory filesystem, if it can be read."""
    try:
        return shutil.disk_usage(SHM_DIR).free
    except OSError:
        return None
