"""Count the parent's instructions per W5 task, with valgrind (repeatable, unlike timings).

    python benchmarks/w5_instructions.py            # ppe and sae-copied, about 2 minutes

Each system runs W5 (bench.py's runner) twice under ``valgrind --tool=callgrind``
(workers are not traced): a warm-up call only, then with two more calls; the
difference, divided by two calls' tasks, is what one task costs the parent.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _systems import W5_TASKS, open_runner

import zerocopy_executor


def run(system: str, calls: int) -> None:
    """What valgrind runs: a warm-up W5 call, then `calls` more."""
    min_nbytes = inspect.signature(zerocopy_executor.SharedArrayExecutor).parameters["min_nbytes"].default
    runner = open_runner(system, multiprocessing.get_context("forkserver"), min_nbytes)
    try:
        for _ in range(1 + calls):
            runner.w5()
    finally:
        runner.close()


def instructions(valgrind: str, system: str, calls: int) -> int:
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
                str(calls),
            ],
            capture_output=True,
            text=True,
            check=True,
            # OpenBLAS's idle threads otherwise add a few million instructions at random.
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
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
        counts[system] = (after - before) / (2 * W5_TASKS)
        print(f"{system:12s} {counts[system]:9,.0f} instructions per task (parent)")
    print(f"ratio        {counts['sae-copied'] / counts['ppe']:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
