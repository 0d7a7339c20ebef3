"""Peak memory of this process and all its descendants, sampled from a thread (Linux only).

Two sums are sampled, and each is reported as its *rise* over an interval (from
``reset()`` to ``peak()``), so that the caller's own arrays, already there when the
interval starts, are left out:

- PSS: the proportional set size of every process in the tree, shared pages split
  between their mappers. Shared memory that only the tree maps is counted exactly
  once; it is blind to segments that exist but that no process maps at the time.
- anon+file PSS + /dev/shm usage: counts every shared-memory page once, mapped or not
  (an unlinked segment still mapped is still in use), but /dev/shm is machine-wide:
  other programs creating or removing segments meanwhile move it up or down.

On a busy machine the first is the one to compare systems by; the second catches
segments left linked and unmapped (a leak, or a pool nobody maps).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

__all__ = ["MemoryPeak", "TreeMemorySampler", "available"]

SHM_DIR = "/dev/shm"
_FIELDS = (b"Pss:", b"Pss_Anon:", b"Pss_File:")


def available() -> bool:
    """Whether this system exposes what the sampler reads."""
    return os.path.exists(f"/proc/{os.getpid()}/smaps_rollup") and os.path.isdir(SHM_DIR)


def descendants(root: int) -> list[int]:
    """Return root and every live process below it (workers of a forkserver included)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _pss(pid: int) -> tuple[int, int]:
    """Return (Pss, Pss_Anon + Pss_File) of one process in bytes; zeros if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            text = f.read()
    except OSError:
        return 0, 0
    values = dict.fromkeys(_FIELDS, 0)
    for line in text.splitlines():
        key, _, rest = line.partition(b" ")
        if key in values:
            values[key] = int(rest.split()[0]) * 1024
    return values[b"Pss:"], values[b"Pss_Anon:"] + values[b"Pss_File:"]


def shm_used() -> int:
    """Return the bytes in use on /dev/shm."""
    st = os.statvfs(SHM_DIR)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@dataclass(frozen=True)
class MemoryPeak:
    """Peaks over one interval, in bytes (see the module docstring).

    Attributes:
        pss_rise: how far the tree's PSS rose above its level at the start.
        rise: how far anon+file PSS plus /dev/shm usage rose above its level at the start.
        pss: the peak PSS of the tree (absolute: the caller's arrays included).
        shm_rise: how far /dev/shm usage alone rose.
        samples: how many samples were taken.
    """

    pss_rise: int
    rise: int
    pss: int
    shm_rise: int
    samples: int


_KINDS = ("pss", "private_shm", "shm")


class TreeMemorySampler:
    """Samples the memory of a process tree every ``interval`` seconds until closed."""

    def __init__(self, interval: float = 0.02, root: int | None = None, rescan: float = 0.25) -> None:
        self._interval = interval
        self._root = os.getpid() if root is None else root
        # Walking /proc costs ~2 ms (five times a sample of the tree itself): the tree
        # is re-read every `rescan` seconds, and at every reset.
        self._rescan = rescan
        self._tree: list[int] = []
        self._tree_time = -math.inf
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._start = dict.fromkeys(_KINDS, 0)
        self._peak = dict.fromkeys(_KINDS, 0)
        self._samples = 0
        self.reset()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()

    def sample(self, *, rescan: bool = False) -> dict[str, int]:
        """Take one sample now: PSS, anon+file PSS + /dev/shm usage, and /dev/shm usage."""
        now = time.monotonic()
        if rescan or now - self._tree_time > self._rescan:
            self._tree, self._tree_time = descendants(self._root), now
        pss = private = 0
        for pid in self._tree:
            p, a = _pss(pid)
            pss += p
            private += a
        shm = shm_used()
        return {"pss": pss, "private_shm": private + shm, "shm": shm}

    def _record(self) -> None:
        values = self.sample()
        with self._lock:
            for kind in _KINDS:
                self._peak[kind] = max(self._peak[kind], values[kind])
            self._samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._record()

    def reset(self) -> None:
        """Start a new interval; its starting level is a sample taken now."""
        values = self.sample(rescan=True)
        with self._lock:
            self._start, self._peak, self._samples = values, dict(values), 1

    def peak(self) -> MemoryPeak:
        """Return the peaks of the current interval (one more sample is taken first)."""
        self._record()
        with self._lock:
            rises = {kind: max(0, self._peak[kind] - self._start[kind]) for kind in _KINDS}
            return MemoryPeak(
                rises["pss"], rises["private_shm"], self._peak["pss"], rises["shm"], self._samples
            )

    def close(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()
