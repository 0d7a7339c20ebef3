"""Two arrays exactly 256 MiB apart: why large segments are made a little larger than asked.

    python benchmarks/address_aliasing.py

AMD Zen cores pick an L1 cache way by a hash of virtual address bits 12 to 27, so when
one array is read while another is written exactly a multiple of 256 MiB away, their
lines collide on every access. This times ``np.multiply(a, 2, out=b)`` over 128 MiB with
``b`` at several distances after ``a`` inside one shared segment (median of 9, taken in
turns), then says how far apart two arrays made one after the other with
``zerocopy_executor.empty`` lie (see ``_segment_buffer.staggered``), and runs ``return a * 2``
over 128 MiB on 12 fresh executors (3 calls each after a warm-up; fork, forkserver and
spawn in turn): how many results were born exactly a multiple of 256 MiB from their
argument in the worker, and the worker's time for the multiply. On a CPU without such a
predictor every row takes the same time.
"""

from __future__ import annotations

import multiprocessing
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


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo (Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def time_distances(rounds: int = 9) -> dict[str, float]:
    """Median ms of the multiply for each distance, taken in turns."""
    n = SIZE // 8
    segment = zc.empty((max(DISTANCES.values()) + SIZE) // 8)  # one shared segment, pages touched
    a = segment[:n]
    a[:] = 1.0
    outs = {label: segment[distance // 8 : distance // 8 + n] for label, distance in DISTANCES.items()}
    times: dict[str, list[float]] = {label: [] for label in outs}
    for _ in range(rounds):
        for label, out in outs.items():
            start = time.perf_counter()
            np.multiply(a, 2, out=out)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(samples) * 1e3 for label, samples in times.items()}


def times_two(a: np.ndarray) -> tuple[np.ndarray, float, int]:
    """a * 2, the seconds it took, and how far past a multiple of 256 MiB the result lies from a."""
    start = time.perf_counter()
    out = a * 2
    elapsed = time.perf_counter() - start
    return out, elapsed, (out.ctypes.data - a.ctypes.data) % (256 * MiB)


def worker_collisions(executors: int = 12, calls: int = 3) -> tuple[list[float], list[float]]:
    """Seconds of a * 2 in workers: results a multiple of 256 MiB from their argument, and the rest."""
    a = np.ones(SIZE // 8)
    colliding: list[float] = []
    apart: list[float] = []
    for turn in range(executors):
        context = multiprocessing.get_context(("fork", "forkserver", "spawn")[turn % 3])
        with zc.SharedArrayExecutor(2, mp_context=context) as executor:
            for call in range(calls + 1):
                result, elapsed, off = executor.submit(times_two, a).result()
                del result
                if call:  # after the warm-up: the result is born in a lent segment
                    (apart if off else colliding).append(elapsed)
    return colliding, apart


def main() -> int:
    print(f"np.multiply(a, 2, out=b) over 128 MiB, median of 9; {cpu_model()}\n")
    print("| b starts after a by | ms |")
    print("| --- | ---: |")
    for label, ms in time_distances().items():
        print(f"| {label} | {ms:.1f} |")
    first, second = zc.empty(SIZE // 8), zc.empty(SIZE // 8)
    gap = abs(second.ctypes.data - first.ctypes.data)
    off = min(gap % (256 * MiB), -gap % (256 * MiB))
    print(
        f"\nTwo arrays made one after the other with zc.empty: {gap / MiB:,.3f} MiB apart, "
        f"{off // 1024:,} KiB from a multiple of 256 MiB (0 would collide)."
    )
    del first, second
    colliding, apart = worker_collisions()

    def median_ms(samples: list[float]) -> str:
        return f"{statistics.median(samples) * 1e3:.1f} ms" if samples else "-"

    print(
        f"\na * 2 in workers, {len(colliding) + len(apart)} calls on 12 executors: {len(colliding)} results "
        f"born exactly a multiple of 256 MiB from their argument (median {median_ms(colliding)}), "
        f"{len(apart)} elsewhere (median {median_ms(apart)})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
