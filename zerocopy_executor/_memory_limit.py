"""The memory limit a container (a memory cgroup) puts on this process, and what is left of it.

Shared memory, memfd or /dev/shm, is charged to the memory cgroup of the process that
first touches its pages, and nothing can reclaim it without swap. Reserving a segment's
pages (``posix_fallocate``) past the limit does not fail: the kernel's OOM killer kills
a process of the container instead. So a segment is made only if it fits in what the
limit leaves (see room_bytes); the check races with other allocations, but turns the
usual case, one array too large for the container, into a clear error.

Reads cgroup v2 (``memory.max``, ``memory.current``) or v1 (``memory.limit_in_bytes``,
``memory.usage_in_bytes``) of this process's own cgroup, from ``/proc/self/cgroup``.
No cgroup, or no limit: no figure, and no check.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["limit_bytes", "room_bytes"]

_V2_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
_V1_ROOT = "/sys/fs/cgroup/memory"
_UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as a huge page-aligned number


def _files() -> tuple[Path, Path, str] | None:
    """(limit file, usage file, the statistic of reclaimable file pages) of this process's memory cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if "memory" in controllers.split(","):
            directory = Path(_V1_ROOT, relative)
            if (directory / "memory.limit_in_bytes").exists():
                return (
                    directory / "memory.limit_in_bytes",
                    directory / "memory.usage_in_bytes",
                    "total_inactive_file",
                )
        elif controllers == "":
            for root in _V2_ROOTS:
                directory = Path(root, relative)
                if (directory / "memory.max").exists():
                    return directory / "memory.max", directory / "memory.current", "inactive_file"
    return None


def _read(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    value = int(text)
    return None if value >= _UNLIMITED_V1 else value


def limit_bytes() -> int | None:
    """This process's memory cgroup limit, or None if it has none (or none can be read)."""
    files = _files()
    return None if files is None else _read(files[0])


def room_bytes() -> int | None:
    """Bytes the memory cgroup limit still leaves, or None if there is no limit.

    Read afresh each time (a few microseconds, once per new segment): a process may be
    moved to another cgroup.
    """
    files = _files()
    limit = None if files is None else _read(files[0])
    if files is None or limit is None:
        return None
    usage, reclaimable = _read(files[1]) or 0, _statistic(files[1].with_name("memory.stat"), files[2])
    return max(0, limit - usage + reclaimable)


def _statistic(path: Path, name: str) -> int:
    """One figure of a cgroup's memory.stat (0 if absent): page cache the kernel can drop counts as room."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0
