"""Count the parent's instructions per W5 task, with valgrind (repeatable, unlike timings).

    python benchmarks/w5_instructions.py            # ppe and sae-copied, about 2 minutes

Each system runs twice under ``valgrind --tool=callgrind`` (workers are not traced):
once with a warm-up map of 1,000 tiny tasks only, once with two more maps; the
difference, divided by 2,000, is what one task costs the parent, start-up excluded.
"""

from __future__ import annotations

import multiprocessing
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path

from _systems import inc

import zerocopy_executor

TASKS = 1000


def run(system: str, maps: int) -> None:
    """What valgrind runs: a warm-up map, then `maps` more, of TASKS tiny tasks."""
    context = multiprocessing.get_context("forkserver")
    executor: Executor
    if system == "ppe":
        executor = ProcessPoolExecutor(2, mp_context=context)
    else:
        executor = zerocopy_executor.SharedArrayExecutor(2, mp_context=context)
    with executor:
        for _ in range(1 + maps):
            list(executor.map(inc, range(TASKS)))


def instructions(valgrind: str, system: str, maps: int) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        out = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={Path(scratch) / 'callgrind.out'}",
                sys.executable,
                __file__,
                "--child",
                system,
                str(maps),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        msg = f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}"
        raise RuntimeError(msg)
    return int(found.group(1))


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        run(sys.argv[2], int(sys.argv[3]))
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.stderr.write("valgrind is not installed\n")
        return 1
    counts = {}
    for system in ("ppe", "sae-copied"):
        after, before = instructions(valgrind, system, 2), instructions(valgrind, system, 0)
        counts[system] = (after - before) / (2 * TASKS)
        print(f"{system:12s} {counts[system]:9,.0f} instructions per task (parent)")
    print(f"ratio        {counts['sae-copied'] / counts['ppe']:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
