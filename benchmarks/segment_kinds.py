"""memfd segments against named /dev/shm segments: W1 and W2, copied and by reference, in turns.

    python benchmarks/segment_kinds.py              # 128 and 512 MB, 48 rounds over 8 sets of executors
    python benchmarks/segment_kinds.py --quick      # 128 MB, 12 rounds over 2 (about half a minute)

Linux only. Four SharedArrayExecutors (2 workers each) live in this one process: copied
and by reference, each on memfd and on named segments. Every round takes one call of
each, who goes first rotating, so all four share the machine's drift; separate runs of
one kind after the other differed by up to 1.3x on a sub-millisecond call here. The
rounds are spread over several sets of fresh executors (see run_size). The
segment kind is chosen per process by ZEROCOPY_EXECUTOR_SEGMENTS, read when a segment
is made; this script sets it around each executor's creation and each call, so the
parent makes each executor's segments of its kind. A named executor's workers make
named segments too: an executor started without memfd gives its workers no inbox to
hand memfds to. The table is the median ms per call, the interquartile range, and
memfd / named.
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
Row = tuple[str, int, str, list[float], list[float]]


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
            executor = zerocopy_executor.SharedArrayExecutor(2, mp_context=context)
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
    size_mb: int, rounds: int, blocks: int, context: multiprocessing.context.BaseContext
) -> list[Row]:
    """Both workloads on four executors, in blocks of fresh executors made in alternating orders.

    Where an executor's segments land in its workers' address space matters more than
    their kind: one executor's W2 by reference ran 10-15% slower than another's of the
    same kind, the first-made executor more often (seen here, with equal system calls
    per task and equal instruction counts). Each block makes new executors, memfd's
    first and named's first in turn, and the rounds are spread over the blocks.
    """
    times: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for block in range(blocks):
        kinds = KINDS if block % 2 == 0 else KINDS[::-1]
        runners = [KindRunner(kind, path, context) for kind in kinds for path in PATHS]
        try:
            array = np.arange(size_mb * MB // 8, dtype=np.float64)
            for runner in runners:
                runner.load(array)
            del array
            for workload in WORKLOADS:
                calls = [r.call(workload) for r in runners]
                for call in calls:  # a warm-up call each: the first touch of fresh pages
                    call()
                for round_ in range(max(1, rounds // blocks)):
                    for turn in range(len(runners)):
                        index = (round_ + turn) % len(runners)
                        times[workload, runners[index].path, runners[index].kind].append(calls[index]())
                _progress(f"{workload} {size_mb} MB, block {block + 1} of {blocks}: done\n")
        finally:
            for runner in runners:
                runner.close()
    return [
        (workload, size_mb, path, times[workload, path, "memfd"], times[workload, path, "named"])
        for workload in WORKLOADS
        for path in PATHS
    ]


def _summary(times: list[float]) -> str:
    low, high = np.percentile(times, [25, 75]) * 1e3
    return f"{statistics.median(times) * 1e3:.3g} ({low:.3g}-{high:.3g})"


def render(rows: list[Row], rounds: int, blocks: int) -> str:
    lines = [
        f"memfd against named segments, {rounds} rounds in turns over {blocks} sets of executors, "
        f"{multiprocessing.get_start_method()} workers, Python {sys.version.split()[0]}",
        "",
        "| workload | MB | path | named median (IQR) ms | memfd median (IQR) ms | memfd / named |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for workload, size_mb, path, memfd, named in rows:
        ratio = statistics.median(memfd) / statistics.median(named)
        lines.append(
            f"| {workload} | {size_mb} | {path} | {_summary(named)} | {_summary(memfd)} | {ratio:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _progress(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="128 MB, 12 rounds over 2 sets of executors")
    parser.add_argument("--sizes", help="array sizes in MB, e.g. 128,512")
    parser.add_argument("--rounds", type=int, help="calls of each runner per workload, over all blocks")
    parser.add_argument("--blocks", type=int, help="sets of fresh executors, made in alternating orders")
    parser.add_argument("--start-method", default="forkserver")
    args = parser.parse_args(argv)
    if not _memfd.chosen():
        parser.error("memfd segments are not available here (or ZEROCOPY_EXECUTOR_SEGMENTS=named is set)")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([128] if args.quick else [128, 512])
    rounds = args.rounds or (12 if args.quick else 48)
    blocks = args.blocks or (2 if args.quick else 8)
    multiprocessing.set_start_method(args.start_method)
    context = multiprocessing.get_context()
    if (
        args.start_method == "forkserver"
    ):  # started before any kind is set: its children inherit its environment
        multiprocessing.forkserver.ensure_running()
    rows = [row for size_mb in sizes for row in run_size(size_mb, rounds, blocks, context)]
    sys.stdout.write(render(rows, rounds, blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
