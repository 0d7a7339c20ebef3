"""Two arrays exactly 256 MiB apart: why large segments are made a little larger than asked.

    python benchmarks/address_aliasing.py

AMD Zen cores pick an L1 cache way by a hash of virtual address bits 12 to 27, so when
one array is read while another is written exactly a multiple of 256 MiB away, their
lines collide on every access. This times ``np.multiply(a, 2, out=b)`` over 128 MiB with
``b`` at several distances after ``a`` inside one shared mapping (median of 9, taken in
turns), then says how far apart two arrays made one after the other with
``zerocopy_executor.empty`` lie (see ``_segments._staggered``). On a CPU without such a
predictor every row takes the same time.
"""

from __future__ import annotations

import mmap
import os
import platform
import statistics
import sys
import time

import numpy as np

import zerocopy_executor as zc

MiB = 1 << 20
SIZE = 128 * MiB
DISTANCES = {
    "128 MiB": 128 * MiB,
    "256 MiB": 256 * MiB,
    "256 MiB + 4 KiB": 256 * MiB + 4096,
    "256 MiB + 64 KiB": 256 * MiB + 65536,
    "384 MiB": 384 * MiB,
    "512 MiB": 512 * MiB,
}


def shared_mapping(nbytes: int) -> mmap.mmap:
    """A populated mapping of an unlinked /dev/shm file: the same memory the library uses."""
    path = f"/dev/shm/zc_aliasing_{os.getpid()}"
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.unlink(path)
        os.ftruncate(fd, nbytes)
        os.posix_fallocate(fd, 0, nbytes)
        return mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
    finally:
        os.close(fd)


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo (Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main() -> int:
    mapping = shared_mapping(max(DISTANCES.values()) + SIZE)
    a = np.frombuffer(mapping, np.float64, count=SIZE // 8)
    a[:] = 1.0
    outs = {
        label: np.frombuffer(mapping, np.float64, count=SIZE // 8, offset=distance)
        for label, distance in DISTANCES.items()
    }
    times: dict[str, list[float]] = {label: [] for label in outs}
    for _ in range(9):
        for label, out in outs.items():
            start = time.perf_counter()
            np.multiply(a, 2, out=out)
            times[label].append(time.perf_counter() - start)
    print(f"np.multiply(a, 2, out=b) over 128 MiB, median of 9; {cpu_model()}\n")
    print("| b starts after a by | ms |")
    print("| --- | ---: |")
    for label, samples in times.items():
        print(f"| {label} | {statistics.median(samples) * 1e3:.1f} |")
    del a, outs
    mapping.close()
    first, second = zc.empty(SIZE // 8), zc.empty(SIZE // 8)
    gap = abs(second.ctypes.data - first.ctypes.data)
    off = min(gap % (256 * MiB), -gap % (256 * MiB))
    print(
        f"\nTwo arrays made one after the other with zc.empty: {gap / MiB:,.3f} MiB apart, "
        f"{off // 1024:,} KiB from a multiple of 256 MiB (0 would collide)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
