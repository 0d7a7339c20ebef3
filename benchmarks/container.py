"""SharedArrayExecutor under a container's 64 MiB /dev/shm against a large one, in turns.

    sudo python benchmarks/container.py --quick   # 128 MB, one round (about a minute)
    sudo python benchmarks/container.py           # 128 and 512 MB, three rounds
    sudo python benchmarks/container.py --segments named   # the named kind, which lives in /dev/shm

Docker and Kubernetes give a container a 64 MiB /dev/shm unless told otherwise
(``--shm-size``, a memory-backed emptyDir). Each measurement runs in a child process
with a private tmpfs mounted on /dev/shm (``unshare -m``, so root or user namespaces
are needed), 64 MiB or 8 GiB, one after the other in every round so that the machine's
drift hits both alike. In each child: SharedArrayExecutor(2), forkserver, W1 (a large
argument, a scalar back) and W2 (a large argument, an array of its size back) as
bench.py defines them, one warm-up call, then the median of the timed calls, and the
arrays the executor had to pickle (``stats().arrays_pickled``).

Segments are of the kind the package picks (memfd on Linux, which does not live in
/dev/shm), or of the kind ``--segments`` names.

Prints a Markdown table: per workload and size, the median and range over the rounds
of each /dev/shm's median, the ratio (64 MiB / large), and the arrays pickled under
64 MiB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _systems import add_one, sample_sum, start_workers

import zerocopy_executor as zc
from zerocopy_executor import _memfd

MB = 1 << 20
SHM_SIZES = {"64 MiB": "64m", "8 GiB": "8g"}
WORKLOADS = {"W1": sample_sum, "W2": add_one}


def child(size_mb: int, calls: int) -> dict[str, Any]:
    """Time W1 and W2 on one array here (under whatever /dev/shm this process has)."""
    a = np.ones(size_mb * MB // 8)
    out: dict[str, Any] = {}
    context = multiprocessing.get_context("forkserver")
    with zc.SharedArrayExecutor(2, mp_context=context) as executor:
        start_workers(executor)
        for name, function in WORKLOADS.items():
            before = executor.stats().arrays_pickled
            executor.submit(function, a).result()  # warm-up: fresh pages, pool filled
            times = []
            for _ in range(calls):
                began = time.perf_counter()
                result = executor.submit(function, a).result()
                times.append(time.perf_counter() - began)
                del result
            out[name] = {
                "median_ms": statistics.median(times) * 1e3,
                "pickled": executor.stats().arrays_pickled - before,
            }
    return out


def run_child(shm_size: str, size_mb: int, calls: int) -> dict[str, Any]:
    """Run child() in a new process under a private /dev/shm of shm_size."""
    mount = f"mount -t tmpfs -o mode=1777,size={shm_size} tmpfs /dev/shm"
    command = [
        "unshare",
        "-m",
        "sh",
        "-c",
        f'{mount} && exec "$0" "$@"',
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(size_mb),
        "--calls",
        str(calls),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"the measurement under a {shm_size} /dev/shm failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def report(figures: dict[tuple[str, int, str], list[dict[str, Any]]], sizes: list[int]) -> str:
    """The Markdown table of medians over rounds, ranges, ratios and arrays pickled."""
    small, large = SHM_SIZES
    lines = [
        f"| workload | MB | {large} median (range) ms | {small} median (range) ms | ratio "
        f"| pickled under {small} |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload in WORKLOADS:
        for size in sizes:
            cells = []
            medians = {}
            for shm in (large, small):
                runs = [r["median_ms"] for r in figures[(workload, size, shm)]]
                medians[shm] = statistics.median(runs)
                cells.append(f"{medians[shm]:,.1f} ({min(runs):,.1f}-{max(runs):,.1f})")
            pickled = sum(r["pickled"] for r in figures[(workload, size, small)])
            ratio = medians[small] / medians[large]
            lines.append(f"| {workload} | {size} | {cells[0]} | {cells[1]} | {ratio:.2f}x | {pickled} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="128 MB only, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds in turns (default 3, --quick 1)")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per workload and run")
    parser.add_argument(
        "--segments",
        choices=["memfd", "named"],
        default=None,
        help="the kind of segment (default: the package's)",
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.segments is not None:
        os.environ["ZEROCOPY_EXECUTOR_SEGMENTS"] = args.segments  # the children inherit it
    if args.child is not None:
        print(json.dumps(child(args.child, args.calls)))
        return 0
    if shutil.which("unshare") is None or os.geteuid() != 0:
        print("needs root and unshare(1): each run mounts a private tmpfs on /dev/shm", file=sys.stderr)
        return 2
    sizes = [128] if args.quick else [128, 512]
    rounds = args.rounds or (1 if args.quick else 3)
    figures: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for round_number in range(rounds):
        for size in sizes:
            # Who goes first alternates each round.
            order = list(SHM_SIZES.items()) if round_number % 2 == 0 else list(SHM_SIZES.items())[::-1]
            for label, shm_size in order:
                print(f"round {round_number + 1}: {size} MB under a {label} /dev/shm", file=sys.stderr)
                for workload, figure in run_child(shm_size, size, args.calls).items():
                    figures.setdefault((workload, size, label), []).append(figure)
    kind = args.segments or ("memfd" if _memfd.chosen() else "named")
    print(
        f"SharedArrayExecutor(2), forkserver, {kind} segments, {rounds} round(s) in turns, "
        f"{args.calls} timed calls each\n"
    )
    print(report(figures, sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
