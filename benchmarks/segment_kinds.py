"""memfd segments against named /dev/shm segments: W1 and W2, copied and by reference, in turns.

    python benchmarks/segment_kinds.py              # 128 and 512 MB, 48 rounds over 8 sets of executors
    python benchmarks/segment_kinds.py --quick      # 128 MB, 12 rounds over 2 (about half a minute)

Linux only. Four SharedArrayExecutors (WORKERS each) live in this one process: copied
and by reference, each on memfd and on named segments. Every round takes one call of
each, who goes first rotating, so all four share the machine's drift; separate runs of
one kind after the other differed by up to 1.3x on a sub-millisecond call here. The
rounds are spread over several sets of fresh executors (see run_size). The
segment kind is chosen per process by ZEROCOPY_EXECUTOR_SEGMENTS, read when a segment
is made; this script sets it around each executor's creation and each call, so the
parent makes each executor's segments of its kind. A named executor's workers make
named segments too: an executor started without memfd gives its workers no inbox to
hand memfds to. The table gives each kind's median ms per call and interquartile range over
all sets, and memfd / named as the geometric mean of the sets' own ratios (see run_size).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from _systems import ExecutorRunner

import zerocopy_executor
from zerocopy_executor import _memfd, _segments

MB = 1 << 20
KINDS = ("memfd", "named")
PATHS = ("copied", "by reference")
WORKLOADS = ("W1", "W2")
WORKERS = 2
# Calls before timing, per executor and workload: the first makes the result's segment
# (fresh pages), and each worker maps the recycled segment once before its calls are
# warm (W2 by reference at 512 MB: about 515, 120, 85, then 50 ms per call). Which
# worker takes a call is not ours to choose, so a worker may still be cold when timing
# starts: a set's median absorbs such a call.
WARM_UP_CALLS = 1 + WORKERS
# (workload, MB, path, memfd's times, named's times, each set's memfd / named)
Row = tuple[str, int, str, list[float], list[float], list[float]]


@contextlib.contextmanager
def segment_kind(kind: str) -> Iterator[None]:
    """Make this process's new segments of `kind` while inside."""
    before = os.environ.get(_memfd.KIND_VARIABLE)
    os.environ[_memfd.KIND_VARIABLE] = kind
    try:
        yield
    finally:
        if before is None:
            del os.environ[_memfd.KIND_VARIABLE]
        else:
            os.environ[_memfd.KIND_VARIABLE] = before


class KindRunner:
    """One SharedArrayExecutor whose segments, and its calls' segments, are of one kind."""

    def __init__(self, kind: str, path: str, context: multiprocessing.context.BaseContext) -> None:
        self.kind, self.path = kind, path
        with segment_kind(kind):
            executor = zerocopy_executor.SharedArrayExecutor(WORKERS, mp_context=context)
            self.runner = ExecutorRunner(executor, shared=path == "by reference")
            self.runner.start()

    def load(self, array: np.ndarray) -> None:
        with segment_kind(self.kind):
            self.runner.load(array)
            if self.path == "by reference":
                assert _made_of(self.runner.data) == self.kind, "the shared array is not of its kind"

    def call(self, workload: str) -> Callable[[], Any]:
        inner = self.runner.w1 if workload == "W1" else self.runner.w2

        def timed() -> float:
            with segment_kind(self.kind):
                t0 = time.perf_counter()
                inner()
                return time.perf_counter() - t0

        return timed

    def close(self) -> None:
        self.runner.close()


def _made_of(array: np.ndarray) -> str:
    """The kind of segment a shared array lives in: a memfd has a holder's location."""
    low = array.__array_interface__["data"][0]
    found = _segments.find(low, low + array.nbytes)
    assert found is not None, "the array is not in a segment"
    return "memfd" if found[0].location else "named"


def run_size(
    size_mb: int, rounds_per_set: int, sets: int, context: multiprocessing.context.BaseContext
) -> list[Row]:
    """Both workloads on four executors, in sets of fresh executors made in alternating orders.

    Which executor is made first matters more than the kind of its segments: two
    by-reference executors of the same kind, made one after the other, took 47-52 and
    42-44 ms for W2 at 512 MB, the first made slower in every set, with equal system
    calls and instruction counts per task (where their pages land in physical memory is
    the suspect; nothing of ours differs). So each set makes new executors, memfd's
    first and named's first in turn, and the ratio that compares the kinds is the
    geometric mean of the sets' own ratios: an AB/BA crossover, in which the effect of
    being made first cancels out between the two orders.
    """
    times: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    per_set: dict[tuple[str, str], list[float]] = defaultdict(list)
    for set_index in range(sets):
        kinds = KINDS if set_index % 2 == 0 else KINDS[::-1]
        runners = [KindRunner(kind, path, context) for kind in kinds for path in PATHS]
        try:
            array = np.arange(size_mb * MB // 8, dtype=np.float64)
            for runner in runners:
                runner.load(array)
            del array
            for workload in WORKLOADS:
                calls = [r.call(workload) for r in runners]
                for call in calls:  # until steady: see WARM_UP_CALLS
                    for _ in range(WARM_UP_CALLS):
                        call()
                this_set: dict[tuple[str, str], list[float]] = defaultdict(list)
                for round_ in range(rounds_per_set):
                    for turn in range(len(runners)):
                        index = (round_ + turn) % len(runners)
                        this_set[runners[index].path, runners[index].kind].append(calls[index]())
                for (path, kind), taken in this_set.items():
                    times[workload, path, kind].extend(taken)
                for path in PATHS:
                    memfd, named = (statistics.median(this_set[path, kind]) for kind in KINDS)
                    per_set[workload, path].append(memfd / named)
                _progress(f"{workload} {size_mb} MB, set {set_index + 1} of {sets}: done\n")
        finally:
            for runner in runners:
                runner.close()
    return [
        (
            workload,
            size_mb,
            path,
            times[workload, path, "memfd"],
            times[workload, path, "named"],
            per_set[workload, path],
        )
        for workload in WORKLOADS
        for path in PATHS
    ]


def _summary(times: list[float]) -> str:
    low, high = np.percentile(times, [25, 75]) * 1e3
    return f"{statistics.median(times) * 1e3:.3g} ({low:.3g}-{high:.3g})"


def render(rows: list[Row], rounds: int, sets: int) -> str:
    lines = [
        f"memfd against named segments, {rounds} rounds in turns over {sets} sets of executors, "
        f"{multiprocessing.get_start_method()} workers, Python {sys.version.split()[0]}",
        "",
        "| workload | MB | path | named median (IQR) ms | memfd median (IQR) ms "
        "| memfd / named, per set: geometric mean (range) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for workload, size_mb, path, memfd, named, per_set in rows:
        ratio = statistics.geometric_mean(per_set)
        lines.append(
            f"| {workload} | {size_mb} | {path} | {_summary(named)} | {_summary(memfd)} "
            f"| {ratio:.2f} ({min(per_set):.2f}-{max(per_set):.2f}) |"
        )
    return "\n".join(lines) + "\n"


def _progress(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="128 MB, 12 rounds over 2 sets of executors")
    parser.add_argument("--sizes", help="array sizes in MB, e.g. 128,512")
    parser.add_argument("--rounds", type=int, help="calls of each executor per workload, over all sets")
    parser.add_argument("--sets", type=int, help="sets of fresh executors, made in alternating orders (even)")
    parser.add_argument("--start-method", default="forkserver")
    args = parser.parse_args(argv)
    if not _memfd.chosen():
        parser.error("memfd segments are not available here (or ZEROCOPY_EXECUTOR_SEGMENTS=named is set)")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([128] if args.quick else [128, 512])
    rounds = args.rounds or (12 if args.quick else 48)
    sets = args.sets or (2 if args.quick else 8)
    if sets < 2 or sets % 2:
        parser.error("--sets must be even and at least 2: half make memfd's executors first, half named's")
    rounds_per_set = max(1, rounds // sets)
    multiprocessing.set_start_method(args.start_method)
    context = multiprocessing.get_context()
    if (
        args.start_method == "forkserver"
    ):  # started before any kind is set: its children inherit its environment
        multiprocessing.forkserver.ensure_running()
    rows = [row for size_mb in sizes for row in run_size(size_mb, rounds_per_set, sets, context)]
    sys.stdout.write(render(rows, rounds_per_set * sets, sets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
