"""An executor's whole life: create it, run one task, shut it down.

    python benchmarks/lifecycle.py            # 15 cycles per cell, fork, forkserver and spawn
    python benchmarks/lifecycle.py --quick    # 5 cycles per cell

Libraries often open an executor per call (``with Executor() as ex:`` inside a
function), so its start and its shutdown are paid every time. Each cell is the median
of N cycles of ``ProcessPoolExecutor`` and ``SharedArrayExecutor`` (2 workers), taken
in turn so that the machine's drift hits both alike, for a tiny task (an int in, an
int out) and for an 8 MB float64 argument (a scalar out). One cycle of each runs first
and is not counted (imports, the forkserver's own start). Target (docs/performance.md): at most
1.25x ProcessPoolExecutor under every start method.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

import zerocopy_executor as zc

TARGET = 1.25


def first_element(x: Any) -> float:
    return float(np.asarray(x).flat[0])


def cycle(executor_cls: type[ProcessPoolExecutor], method: str, payload: Any) -> float:
    """Seconds to create an executor, get one task's result and shut it down."""
    start = time.perf_counter()
    with executor_cls(max_workers=2, mp_context=multiprocessing.get_context(method)) as executor:
        executor.submit(first_element, payload).result(timeout=120)
    return time.perf_counter() - start


def measure(method: str, payload: Any, cycles: int) -> tuple[float, float]:
    """Median seconds of a cycle for ProcessPoolExecutor and SharedArrayExecutor, in turn."""
    systems = (ProcessPoolExecutor, zc.SharedArrayExecutor)
    times: dict[type, list[float]] = {system: [] for system in systems}
    for system in systems:
        cycle(system, method, payload)  # warm-up
    for round_ in range(cycles):
        for system in systems if round_ % 2 else reversed(systems):  # who goes first alternates
            times[system].append(cycle(system, method, payload))
    return statistics.median(times[systems[0]]), statistics.median(times[systems[1]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 cycles per cell instead of 15")
    parser.add_argument("--cycles", type=int, help="cycles per cell")
    args = parser.parse_args(argv)
    cycles = args.cycles or (5 if args.quick else 15)
    payloads = {"int": 1, "8 MB array": np.ones(1 << 20)}
    print(
        f"Executor life cycle (create, one task, shutdown), 2 workers, median of {cycles}, Python "
        f"{sys.version.split()[0]}\n"
    )
    print("| start method | payload | ProcessPoolExecutor | SharedArrayExecutor | ratio | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    failed = 0
    for method in ("fork", "forkserver", "spawn"):
        for name, payload in payloads.items():
            ppe, sae = measure(method, payload, cycles)
            ratio = sae / ppe
            verdict = "pass" if ratio <= TARGET else "FAIL"
            failed += verdict == "FAIL"
            print(
                f"| {method} | {name} | {ppe * 1e3:.1f} ms | {sae * 1e3:.1f} ms | {ratio:.2f} | {verdict} |",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
