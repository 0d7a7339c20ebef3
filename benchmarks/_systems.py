"""The systems compared by bench.py, behind one interface, and what their workers run.

Every system runs the same five workloads over the same parent array:

    W1  array in, scalar out            fn(a) -> float          one task
    W2  array in, same-size array out   fn(a) -> a + 1          one task
    W3  map over 16 chunks              fn(chunk) -> float      16 tasks
    W4  in-place partitioned writes     chunk += 1              16 tasks
    W5  3,000 tiny tasks                inc(i) -> i + 1         map, chunksize 1

Where a system cannot write in place into the parent's array (pickling, a copied
argument, joblib's read-only memmaps), W4 sends the chunks and writes the returned
chunks back, which is what a user of that system would do.

The "ideal" systems are hand-written ``multiprocessing.shared_memory`` name passing on
a plain ProcessPoolExecutor: the most a library can hope to match.

- ideal-prefilled: segments are created and filled once, before timing; workers map
  each name once and keep the mapping in a module-level dict.
- ideal-per-call: per call the parent creates and fills a fresh segment, workers map
  it for the task only, and the parent unlinks it afterwards; W2's worker creates a
  fresh segment for its result, which the parent maps and unlinks.

Worker functions live in this module, so they pickle by reference under every start
method. Workers map segments through /dev/shm (Linux) rather than with
``SharedMemory(name=...)``, which before Python 3.13 registers the segment again with
the resource tracker the parent shares (gh-82300).
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor
from multiprocessing.context import BaseContext
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
from numpy.typing import NDArray

import zerocopy_executor

__all__ = [
    "LABELS",
    "NCHUNKS",
    "SYSTEMS",
    "W5_TASKS",
    "Runner",
    "add_one",
    "fresh_segment_copy",
    "inc",
    "open_runner",
    "sample_sum",
    "unavailable",
]

NCHUNKS = 16
W5_TASKS = 3000
SAMPLES = 1024  # elements read by the scalar tasks, whatever the array's size
SHM_DIR = "/dev/shm"

SYSTEMS = ("ppe", "sae-copied", "sae-shared", "ideal-prefilled", "ideal-per-call", "joblib", "loky")
LABELS = {
    "ppe": "ProcessPoolExecutor",
    "sae-copied": "shared-array-executor(copied)",
    "sae-shared": "shared-array-executor(shared)",
    "ideal-prefilled": "ideal-prefilled",
    "ideal-per-call": "ideal-per-call",
    "joblib": "joblib",
    "loky": "loky",
}


# --- what workers run ----------------------------------------------------------------


def sample_sum(a: NDArray[Any]) -> float:
    """Sum a strided sample of SAMPLES elements: a small task whose cost does not grow with a."""
    flat = a.reshape(-1)
    return float(flat[:: max(1, flat.size // SAMPLES)].sum())


def add_one(a: NDArray[Any]) -> NDArray[Any]:
    """Return a new array of a's size."""
    return a + 1


def add_one_in_place(a: NDArray[Any]) -> None:
    """Write into a (a view of shared memory, so the parent sees it)."""
    a += 1


def inc(x: int) -> int:
    """The tiny task of W5."""
    return x + 1


_MAPPED: dict[str, mmap.mmap] = {}  # ideal-prefilled: a worker's mappings, kept


def _map(name: str) -> mmap.mmap:
    fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
    try:
        return mmap.mmap(fd, 0)
    finally:
        os.close(fd)


def _view(name: str, start: int, stop: int, *, cached: bool) -> NDArray[Any]:
    """Map elements [start, stop) of a float64 segment (a fresh mapping unless cached)."""
    if cached:
        buffer = _MAPPED.get(name)
        if buffer is None:
            buffer = _MAPPED[name] = _map(name)
    else:
        buffer = _map(name)  # unmapped when the view dies, at the end of the task
    return np.ndarray((stop - start,), np.float64, buffer=buffer, offset=start * 8)


def ideal_sample_sum(name: str, start: int, stop: int, cached: bool) -> float:
    return sample_sum(_view(name, start, stop, cached=cached))


def ideal_add_one_into(name: str, out_name: str, n: int) -> None:
    np.add(_view(name, 0, n, cached=True), 1, out=_view(out_name, 0, n, cached=True))


def ideal_add_one_fresh(name: str, n: int) -> str:
    shm, out = new_segment(n)
    np.add(_view(name, 0, n, cached=False), 1, out=out)
    return shm.name


def ideal_add_one_in_place(name: str, start: int, stop: int, cached: bool) -> None:
    add_one_in_place(_view(name, start, stop, cached=cached))


# --- segments made by hand -------------------------------------------------------------


def new_segment(n: int) -> tuple[SharedMemory, NDArray[Any]]:
    """Create a segment of n float64 (registered with the resource tracker) and a view of it.

    The view is over a mapping of our own, which lives exactly as long as the view;
    the SharedMemory object is kept only to unlink the name.
    """
    shm = SharedMemory(create=True, size=max(1, n * 8))
    shm.close()
    return shm, _view(shm.name, 0, n, cached=False)


def unlink_by_name(name: str) -> None:
    """Unlink a segment a worker created (and unregister it from the shared tracker)."""
    with contextlib.suppress(FileNotFoundError):
        shm = SharedMemory(name=name)
        shm.close()
        shm.unlink()


def fresh_segment_copy(a: NDArray[Any]) -> None:
    """One copy of a into a fresh segment, then unlink: the floor for a copied argument."""
    shm, view = new_segment(a.size)
    try:
        np.copyto(view, a.reshape(-1))
    finally:
        del view
        shm.unlink()


def start_workers(executor: Executor) -> None:
    """Two overlapping tasks: pools that start workers on demand start both."""
    list(executor.map(time.sleep, [0.1, 0.1]))


def bounds(n: int) -> list[tuple[int, int]]:
    """The NCHUNKS disjoint [start, stop) partitions of n elements."""
    edges = np.linspace(0, n, NCHUNKS + 1).astype(int).tolist()
    return list(itertools.pairwise(edges))


# --- the systems -------------------------------------------------------------------------


class Runner:
    """One system: an executor plus how each workload is expressed with it.

    ``load(a)`` prepares a size (for example shares a copy of a); ``data`` is the array
    the workers see, which W4 increments in place.
    """

    label = ""
    kind = ""

    def __init__(self) -> None:
        self.data: NDArray[Any] = np.empty(0)

    def load(self, a: NDArray[Any]) -> None:
        self.data = a

    def unload(self) -> None:
        self.data = np.empty(0)

    def start(self) -> None:
        """Start both workers: their interpreters are not part of any workload's memory."""

    def close(self) -> None:
        pass

    def supports(self, workload: str) -> bool:
        return True

    def w1(self) -> float:
        raise NotImplementedError

    def w2(self) -> NDArray[Any]:
        raise NotImplementedError

    def w3(self) -> list[float]:
        raise NotImplementedError

    def w4(self) -> NDArray[Any]:
        raise NotImplementedError

    def w5(self) -> list[int]:
        raise NotImplementedError


class ExecutorRunner(Runner):
    """A concurrent.futures executor: ProcessPoolExecutor, SharedArrayExecutor or loky's."""

    def __init__(self, executor: Executor, *, shared: bool = False) -> None:
        super().__init__()
        self.executor = executor
        self.shared = shared

    def load(self, a: NDArray[Any]) -> None:
        self.data = zerocopy_executor.share(a) if self.shared else a

    def supports(self, workload: str) -> bool:
        return workload != "W5" or not self.shared  # no arrays: same as the copied runner

    def start(self) -> None:
        start_workers(self.executor)

    def chunks(self) -> list[NDArray[Any]]:
        return [self.data[start:stop] for start, stop in bounds(self.data.size)]

    def w1(self) -> float:
        return self.executor.submit(sample_sum, self.data).result()

    def w2(self) -> NDArray[Any]:
        return self.executor.submit(add_one, self.data).result()

    def w3(self) -> list[float]:
        return list(self.executor.map(sample_sum, self.chunks()))

    def w4(self) -> NDArray[Any]:
        if self.shared:
            list(self.executor.map(add_one_in_place, self.chunks()))
        else:
            results = self.executor.map(add_one, self.chunks())
            for (start, stop), chunk in zip(bounds(self.data.size), results, strict=True):
                self.data[start:stop] = chunk
        return self.data

    def w5(self) -> list[int]:
        return list(self.executor.map(inc, range(W5_TASKS), chunksize=1))

    def close(self) -> None:
        self.executor.shutdown()


class IdealRunner(Runner):
    """Hand-written SharedMemory name passing on a plain ProcessPoolExecutor."""

    def __init__(self, context: BaseContext, *, prefilled: bool) -> None:
        super().__init__()
        self.executor = ProcessPoolExecutor(2, mp_context=context)
        self.prefilled = prefilled
        self.segments: list[SharedMemory] = []
        self.out: NDArray[Any] = np.empty(0)

    def load(self, a: NDArray[Any]) -> None:
        if not self.prefilled:
            self.data = a
            return
        shm, self.data = new_segment(a.size)
        self.segments.append(shm)
        np.copyto(self.data, a.reshape(-1))
        out_shm, self.out = new_segment(a.size)
        self.segments.append(out_shm)
        self.out.fill(0.0)  # touched, as a recycled result segment would be

    def unload(self) -> None:
        self.data = self.out = np.empty(0)
        for shm in self.segments:
            shm.unlink()
        self.segments.clear()

    def supports(self, workload: str) -> bool:
        return workload != "W5"  # no arrays: it would be ProcessPoolExecutor

    def start(self) -> None:
        start_workers(self.executor)

    def _per_call_segment(self) -> tuple[SharedMemory, NDArray[Any]]:
        shm, view = new_segment(self.data.size)
        try:
            np.copyto(view, self.data)
        except BaseException:
            shm.unlink()
            raise
        return shm, view

    def _map_tasks(self, fn: Callable[..., Any], name: str, cached: bool) -> list[Any]:
        starts, stops = zip(*bounds(self.data.size), strict=True)
        return list(self.executor.map(fn, [name] * NCHUNKS, starts, stops, [cached] * NCHUNKS))

    def w1(self) -> float:
        if self.prefilled:
            name = self.segments[0].name
            return self.executor.submit(ideal_sample_sum, name, 0, self.data.size, True).result()
        shm, view = self._per_call_segment()
        try:
            return self.executor.submit(ideal_sample_sum, shm.name, 0, view.size, False).result()
        finally:
            shm.unlink()

    def w2(self) -> NDArray[Any]:
        n = self.data.size
        if self.prefilled:
            self.executor.submit(ideal_add_one_into, self.segments[0].name, self.segments[1].name, n).result()
            return self.out
        shm, _ = self._per_call_segment()
        try:
            out_name = self.executor.submit(ideal_add_one_fresh, shm.name, n).result()
        finally:
            shm.unlink()
        try:
            return _view(out_name, 0, n, cached=False)
        finally:
            unlink_by_name(out_name)

    def w3(self) -> list[float]:
        if self.prefilled:
            return self._map_tasks(ideal_sample_sum, self.segments[0].name, True)
        shm, _ = self._per_call_segment()
        try:
            return self._map_tasks(ideal_sample_sum, shm.name, False)
        finally:
            shm.unlink()

    def w4(self) -> NDArray[Any]:
        if self.prefilled:
            self._map_tasks(ideal_add_one_in_place, self.segments[0].name, True)
            return self.data
        shm, view = self._per_call_segment()
        try:
            self._map_tasks(ideal_add_one_in_place, shm.name, False)
            np.copyto(self.data, view)
        finally:
            shm.unlink()
        return self.data

    def close(self) -> None:
        self.executor.shutdown()
        self.unload()


class JoblibRunner(Runner):
    """joblib.Parallel with its automatic memmapping of large arrays (loky backend)."""

    def __init__(self, max_nbytes: int) -> None:
        super().__init__()
        from joblib import Parallel, delayed

        self.delayed = delayed
        # batch_size=1 matches chunksize=1 elsewhere; the context keeps the workers.
        self.parallel = Parallel(n_jobs=2, max_nbytes=max_nbytes, batch_size=1)
        self.parallel.__enter__()

    def _run(self, fn: Callable[..., Any], items: Iterable[Any]) -> list[Any]:
        return list(self.parallel(self.delayed(fn)(item) for item in items))

    def start(self) -> None:
        self._run(time.sleep, [0.1, 0.1])

    def w1(self) -> float:
        return float(self._run(sample_sum, [self.data])[0])

    def w2(self) -> NDArray[Any]:
        result: NDArray[Any] = self._run(add_one, [self.data])[0]
        return result

    def w3(self) -> list[float]:
        return self._run(sample_sum, [self.data[start:stop] for start, stop in bounds(self.data.size)])

    def w4(self) -> NDArray[Any]:
        parts = bounds(self.data.size)
        results = self._run(add_one, [self.data[start:stop] for start, stop in parts])
        for (start, stop), chunk in zip(parts, results, strict=True):
            self.data[start:stop] = chunk
        return self.data

    def w5(self) -> list[int]:
        return self._run(inc, range(W5_TASKS))

    def close(self) -> None:
        self.parallel.__exit__(None, None, None)
        # joblib keeps its worker pool (and memmap folders) for the next Parallel: stop it
        # now, so that its memory is not counted against the next system.
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)


def unavailable(system: str) -> str | None:
    """Why an optional system cannot run here, or None if it can."""
    module = {"joblib": "joblib", "loky": "loky"}.get(system)
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed (optional; `pip install {module}` to include it)"
    return None


def open_runner(system: str, context: BaseContext, min_nbytes: int) -> Runner:
    """Start one system with 2 workers."""
    runner: Runner
    if system == "ppe":
        runner = ExecutorRunner(ProcessPoolExecutor(2, mp_context=context))
    elif system in ("sae-copied", "sae-shared"):
        executor = zerocopy_executor.SharedArrayExecutor(2, mp_context=context, min_nbytes=min_nbytes)
        runner = ExecutorRunner(executor, shared=system == "sae-shared")
    elif system in ("ideal-prefilled", "ideal-per-call"):
        runner = IdealRunner(context, prefilled=system == "ideal-prefilled")
    elif system == "joblib":
        runner = JoblibRunner(min_nbytes)
    elif system == "loky":
        import loky

        runner = ExecutorRunner(loky.ProcessPoolExecutor(2))
    else:
        msg = f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}"
        raise ValueError(msg)
    runner.label = LABELS[system]
    runner.kind = system
    return runner
