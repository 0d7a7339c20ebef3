"""Scenarios of segments under attack: a full /dev/shm, the pool's cap, unlinked, forged,
made again by someone else, a file swapped for a FIFO."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import warnings
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin on 3.10
from typing import Any

import numpy as np

import zerocopy_executor as zc
from tests._fault_scripts.probes import (
    SHM_DIR,
    TIMEOUT,
    MiB,
    Seen,
    collect,
    context,
    emit,
    outcome,
    segments_of,
)
from tests._fault_scripts.worker_tasks import (
    NOBODY,
    ForgedArray,
    forged_ref,
    make_again,
    task_identity,
    task_keep,
    task_return_forged,
    task_return_kept,
    task_segment_modes,
    task_shared_result,
    task_shared_result_made_again,
    task_shared_result_modes,
    task_shared_result_unlinked,
    task_shared_result_unlinked_if,
    task_slow_double,
    task_slow_total,
    task_total,
    task_total_and_make,
)
from zerocopy_executor import _segments


def scenario_small_shm(start_method: str) -> int:
    """Under a 64 MiB /dev/shm: a 128 MiB argument and a 96 MiB result fall back to pickling."""
    seen = Seen()
    arg = np.arange(16 * MiB, dtype=np.float64)  # 128 MiB
    result_n = 12 * MiB  # float64: 96 MiB
    fits = np.ones(2 * MiB, dtype=np.float64)  # 16 MiB: still goes through shared memory
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        # Start the workers first: forked inside catch_warnings they would record (and
        # so hide) their own warnings instead of printing them.
        for f in [ex.submit(task_total, np.ones(4)) for _ in range(2)]:
            f.result(timeout=TIMEOUT)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            total, made = ex.submit(task_total_and_make, arg, result_n, 3.0).result(timeout=TIMEOUT)
            correct = total == float(arg.sum()) and made.shape == (result_n,) and bool((made == 3.0).all())
            small_ok = ex.submit(task_total, fits).result(timeout=TIMEOUT) == fits.size
            stats = ex.stats()
            seen.look()
            del made
    try:
        zc.empty(16 * MiB)
        empty_error = None
    except zc.SegmentError as exc:
        empty_error = str(exc)
    collect()
    emit(
        "REPORT",
        correct=correct,
        small_ok=small_ok,
        warnings=[(w.category.__name__, str(w.message)) for w in caught],
        arrays_copied=stats.arrays_copied,
        arrays_pickled=stats.arrays_pickled,
        bytes_pickled=stats.bytes_pickled,
        empty_error=empty_error,
        left=segments_of(seen.pids),
        shm_listing=sorted(os.listdir(SHM_DIR)),
        procs=seen.listing(),
    )
    return 0


def _linked_bytes(pids: set[int]) -> int:
    total = 0
    for name in segments_of(pids):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(os.path.join(SHM_DIR, name)).st_size
    return total


def scenario_pool_cap(start_method: str) -> int:
    """Under a 64 MiB /dev/shm: 24 MiB of results dropped at once, then what the pool keeps linked."""
    seen = Seen()
    arg = np.ones(3 * MiB // 8)  # 3 MiB
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        futures = [ex.submit(task_slow_double, arg, 0.0) for _ in range(8)]
        results = [f.result(timeout=TIMEOUT) for f in futures]
        del futures
        correct = all(bool((r == 2.0).all()) for r in results)
        seen.look()
        held = _linked_bytes(seen.pids)  # the results, each in its own segment
        del results
        collect()
        ex.stats()  # returns once the releases already due are done
        pooled = _linked_bytes(seen.pids)  # nothing is alive: what is linked is the pool
    collect()
    emit(
        "REPORT",
        correct=correct,
        shm_total=shutil.disk_usage(SHM_DIR).total,
        held=held,
        pooled=pooled,
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


def _find_new_segment(before: set[str]) -> str:
    (name,) = set(segments_of([os.getpid()])) - before
    return name.removeprefix("memfd:")


def _past_end(name: str, n: int) -> int:
    """The offset at which n float64 end 8 bytes past the segment's end (large ones are larger than asked)."""
    return len(_segments.mapped(name)) - 8 * n + 8


def scenario_segment_unlinked(start_method: str) -> int:
    """A shared argument's /dev/shm name is removed while its task is queued."""
    seen = Seen()
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        # Both workers busy (and started, so none inherits the mapping by fork).
        busy = [ex.submit(task_slow_total, np.ones(4), 0.5) for _ in range(2)]
        before = set(segments_of([os.getpid()]))
        victim = zc.empty(MiB)
        victim[:] = 1.0
        name = _find_new_segment(before)
        plain = np.ones(2 * MiB)
        queued: list[Future[Any]] = [
            ex.submit(task_total, plain),
            ex.submit(task_total, victim),
            ex.submit(task_shared_result, MiB, 2.0),
        ]
        os.unlink(os.path.join(SHM_DIR, name))
        outcomes = [outcome(f) for f in busy]
        try:
            queued[1].result(timeout=TIMEOUT)
            error = None
        except zc.SegmentError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
        outcomes += [outcome(queued[0]), outcome(queued[2], np.full(MiB, 2.0))]
        # The pool keeps working afterwards, in both directions.
        later: list[Future[Any]] = [ex.submit(task_total, plain), ex.submit(task_shared_result, MiB, 3.0)]
        outcomes += [outcome(later[0]), outcome(later[1], np.full(MiB, 3.0))]
        seen.look()
        del victim, busy, queued, later
        collect()
    collect()
    emit("REPORT", error=error, outcomes=outcomes, left=segments_of(seen.pids), procs=seen.listing())
    return 0


def scenario_result_rebuild_fails(start_method: str, how: str) -> int:
    """Rebuilding one result in the parent fails: that future (or map item) fails, the pool does not."""
    seen = Seen()
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        before = set(segments_of([os.getpid()]))
        keeper = zc.empty(MiB)  # a real segment, to forge a descriptor against
        name = _find_new_segment(before)
        ok_before = [ex.submit(task_slow_double, np.ones(MiB), 0.1) for _ in range(2)]
        error, outcomes = None, []
        try:
            if how == "unlinked":
                ex.submit(task_shared_result_unlinked, MiB).result(timeout=TIMEOUT)
            elif how == "forged":  # a descriptor 8 bytes past the segment's end
                identity, offset = _segments._TABLE.get(name).identity, _past_end(name, MiB)
                # The future is not kept: its error's traceback holds the keeper's mapping.
                ex.submit(task_return_forged, name, offset, MiB, identity).result(timeout=TIMEOUT)
            else:  # map() over plain arguments: the reply decodes in the manager thread
                results = ex.map(
                    task_shared_result_unlinked_if, [MiB] * 3, [False, True, False], timeout=TIMEOUT
                )
                outcomes.append("ok" if np.array_equal(next(results), np.ones(MiB)) else "wrong")
                next(results)
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok_after = [ex.submit(task_slow_double, np.ones(MiB), 0.1) for _ in range(2)]
        outcomes += [outcome(f, np.full(MiB, 2.0)) for f in ok_before + ok_after]
        outcomes.append(outcome(ex.submit(task_shared_result, MiB, 4.0), np.full(MiB, 4.0)))
        seen.look()
        del keeper, ok_before, ok_after
        collect()
    collect()
    emit("REPORT", error=error, outcomes=outcomes, left=segments_of(seen.pids), procs=seen.listing())
    return 0


def scenario_forged_argument(start_method: str) -> int:
    """A forged descriptor in a task's arguments fails that task in the worker, not the pool."""
    seen = Seen()
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        before = set(segments_of([os.getpid()]))
        real = zc.empty(MiB)
        real[:] = 1.0
        name = _find_new_segment(before)
        forged = {
            "past_end": forged_ref(name, _past_end(name, MiB), (MiB,)),
            "negative_offset": forged_ref(name, -8, (16,)),
            "huge_shape": forged_ref(name, 0, (1 << 40,)),
            "not_ours": forged_ref("psm_deadbeef", 0, (16,)),
            "path_escape": forged_ref("../../etc/passwd", 0, (16,)),
        }
        errors = {}
        for label, ref in forged.items():
            errors[label] = outcome(ex.submit(task_identity, ForgedArray(ref)))
        fine = outcome(ex.submit(task_total, real))
        seen.look()
        del real
        collect()
    emit("REPORT", errors=errors, fine=fine, left=segments_of(seen.pids), procs=seen.listing())
    return 0


def scenario_segment_security(start_method: str) -> int:
    """Report the names and modes of segments made in the parent, copied, and in a worker."""
    seen = Seen()
    modes: dict[str, int] = {}
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        made = zc.empty(1000)
        shared = zc.share(np.ones(1000))
        # A plain argument copied into a segment: the worker looks while it is in flight.
        modes.update(ex.submit(task_segment_modes, np.ones(2 * MiB), os.getpid()).result(timeout=TIMEOUT))
        result, worker_modes = ex.submit(task_shared_result_modes, 1000).result(timeout=TIMEOUT)
        modes.update(worker_modes)
        seen.look()
        del made, shared, result
        collect()
    emit("REPORT", modes=modes, left=segments_of(seen.pids), procs=seen.listing())
    return 0


def _names_and_paths(pids: Any) -> list[tuple[str, str]]:
    return [(name, os.path.join(SHM_DIR, name)) for name in segments_of(pids)]


def _holds_seven(path: str) -> bool:
    """Whether a segment's file starts with the float 7.0 that make_again writes."""
    with open(path, "rb") as f:
        return f.read(8) == np.float64(7.0).tobytes()


def scenario_segment_made_again(start_method: str, direction: str, who: str) -> int:
    """A segment's name is unlinked and created again (by another user) before the parent maps it.

    direction: "returned_view", a worker returns a view it kept of a segment the parent
    has since released; "handed_over", a result the worker made and handed over.
    """
    seen = Seen()
    uid = NOBODY if who == "other_uid" else None
    released = True
    with zc.SharedArrayExecutor(1, mp_context=context(start_method)) as ex:
        if direction == "returned_view":
            before = set(segments_of([os.getpid()]))
            victim = zc.empty(MiB)
            victim[:] = 1.0
            name = _find_new_segment(before)
            size = os.stat(os.path.join(SHM_DIR, name)).st_size
            ex.submit(task_keep, victim).result(timeout=TIMEOUT)
            del victim
            collect()
            released = not os.path.exists(os.path.join(SHM_DIR, name))
            make_again(name, size, 7.0, uid)
            future = ex.submit(task_return_kept)
        else:
            future = ex.submit(task_shared_result_made_again, MiB, uid)
        try:
            value = future.result(timeout=TIMEOUT)
            error = f"none: the result holds {value[:2]} (the other file holds 7.0)"
            del value
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
        del future
        collect()
        seen.look()
        # The other file (it holds 7.0) is linked under our name still: not ours to unlink.
        planted = [(name, path) for name, path in _names_and_paths(seen.pids) if _holds_seven(path)]
        others = {name: os.stat(path).st_uid for name, path in planted}
        outcomes = [
            outcome(ex.submit(task_shared_result, MiB, 3.0), np.full(MiB, 3.0)),
            outcome(ex.submit(task_total, np.ones(2 * MiB)), float(2 * MiB)),
        ]
        for name in others:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(SHM_DIR, name))
        seen.look()
    collect()
    emit(
        "REPORT",
        error=error,
        released=released,
        others=others,
        outcomes=outcomes,
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


def scenario_memmap_swapped_for_fifo(start_method: str, directory: str) -> int:
    """A read-only memmap argument's file is replaced by a FIFO before the busy worker maps it."""
    seen = Seen()
    path = os.path.join(directory, "data.bin")
    written = np.memmap(path, dtype=np.float64, mode="w+", shape=(MiB,))
    written[:] = 1.0
    written.flush()
    mapped = np.memmap(path, dtype=np.float64, mode="r", shape=(MiB,))
    with zc.SharedArrayExecutor(1, mp_context=context(start_method)) as ex:
        outcomes = [outcome(ex.submit(task_total, mapped), float(MiB))]
        busy = ex.submit(task_slow_total, np.ones(4), 1.0)
        swapped = ex.submit(task_total, mapped)
        os.unlink(path)
        os.mkfifo(path)
        try:
            exc = swapped.exception(timeout=15)
            error = "none" if exc is None else f"{type(exc).__name__}: {exc}"
        except FutureTimeout:
            error = "hung: the worker never finished mapping the file"
            emit("REPORT", error=error)  # shutdown() will hang too: say why before it does
        outcomes += [outcome(busy), outcome(ex.submit(task_total, np.ones(4)), 4.0)]
        seen.look()
        del busy, swapped
        started = time.monotonic()
    shutdown_seconds = time.monotonic() - started
    del written, mapped
    collect()
    emit(
        "REPORT",
        error=error,
        outcomes=outcomes,
        shutdown_seconds=shutdown_seconds,
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0
