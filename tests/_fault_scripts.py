"""Fault scenarios run as child scripts by tests/integration/test_faults.py.

Each ``scenario_*`` function is the body of a small script the test writes to its
tmp_path and runs in a subprocess (so a crash, a SIGKILL or a hang cannot take pytest
with it). A scenario prints ``READY {json}`` when the test may act on it and
``REPORT {json}`` with what it saw; the test asserts on those, on the exit status, on
stderr and on what is left in /dev/shm and /proc afterwards.

The ``task_*`` functions run in workers; they are module-level so they pickle by
reference under every start method. They live here, not in tests/_tasks.py, because
they only make sense for these scenarios (killing themselves, unlinking their own
segments, counting their file descriptors).
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
import warnings
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin on 3.10
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

import zerocopy_executor as zc
from tests._processes import descendants, process_table
from zerocopy_executor import _segments


def collect() -> None:
    """Collect garbage and do the unlinks it makes due (a background reaper does them)."""
    gc.collect()
    _segments.drain_releases()


SHM_DIR = "/dev/shm"
SEGMENT_PATTERN = re.compile(r"zc_([0-9]+)_[0-9a-f]{18}")
MiB = 1 << 20
TIMEOUT = 60


# --- seen from outside: processes and segments ------------------------------------


def segments_of(pids: set[int] | list[int]) -> list[str]:
    """Our segments in /dev/shm created by any of pids (the name carries the creator)."""
    wanted = {str(pid) for pid in pids}
    names = []
    for name in os.listdir(SHM_DIR):
        match = SEGMENT_PATTERN.fullmatch(name)
        if match and match.group(1) in wanted:
            names.append(name)
    return sorted(names)


def shm_bytes_of(pid: int) -> int:
    """Total size of the segments pid created that are still linked."""
    total = 0
    for name in segments_of([pid]):
        with contextlib.suppress(FileNotFoundError):  # unlinked while we looked
            total += os.stat(os.path.join(SHM_DIR, name)).st_size
    return total


def fd_count(pid: int | str = "self") -> int:
    """Number of open file descriptors of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- inside a scenario ---------------------------------------------------------


class Seen:
    """Every process a scenario's tree had (pid -> start time), to attribute and reap."""

    def __init__(self) -> None:
        me = os.getpid()
        self.procs: dict[int, int] = {me: process_table()[me][2]}

    @property
    def pids(self) -> set[int]:
        return set(self.procs)

    def look(self) -> None:
        self.procs.update(descendants(os.getpid()))

    def add(self, pid: int) -> None:
        entry = process_table().get(pid)
        # A worker that already exited still names the segments it made: keep its pid.
        self.procs.setdefault(pid, 0 if entry is None else entry[2])

    def listing(self) -> list[list[int]]:
        return [[pid, start] for pid, start in sorted(self.procs.items())]


def emit(tag: str, **fields: Any) -> None:
    print(tag, json.dumps(fields), flush=True)


def context(start_method: str) -> multiprocessing.context.BaseContext:
    return multiprocessing.get_context(start_method)


def outcome(future: Future[Any], expected: Any = None) -> str:
    """Classify how a future ended: ok, wrong, broken, or the exception's class name."""
    try:
        value = future.result(timeout=TIMEOUT)
    except BrokenProcessPool:
        return "broken"
    except BaseException as exc:
        return type(exc).__name__
    if expected is None:
        return "ok"
    return "ok" if np.array_equal(value, expected) else "wrong"


# --- worker tasks --------------------------------------------------------------


def task_slow_total(a: np.ndarray, seconds: float) -> float:
    time.sleep(seconds)
    return float(a.sum())


def task_slow_double(a: np.ndarray, seconds: float) -> np.ndarray:
    """Return a new large plain array (so it travels back copied into a segment)."""
    time.sleep(seconds)
    return a * 2


def task_pid_and_total(a: np.ndarray, seconds: float) -> tuple[int, float]:
    time.sleep(seconds)
    return os.getpid(), float(a.sum())


def task_die_holding_result(a: np.ndarray, how: str, seconds: float) -> np.ndarray:
    """Build a shared result (a segment this worker created), then die before returning it."""
    out = zc.empty(a.shape, a.dtype)
    out[...] = a
    time.sleep(seconds)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


def task_fd_report(a: np.ndarray) -> tuple[int, int, float]:
    """Return this worker's pid, its open descriptors and the argument's sum.

    The worker keeps recent mappings for later tasks, but a mapping holds no
    descriptor: every descriptor counts.
    """
    return os.getpid(), fd_count(), float(a.sum())


def task_fill_view(view: np.ndarray, value: float) -> tuple[int, float]:
    view[...] = value
    return os.getpid(), float(view.sum())


def task_shared_result(n: int, value: float) -> np.ndarray:
    out = zc.empty(n)
    out[:] = value
    return out


def task_pid_and_shared_result(n: int, value: float) -> tuple[int, np.ndarray]:
    return os.getpid(), task_shared_result(n, value)


def task_shared_result_unlinked(n: int) -> np.ndarray:
    """Return a shared array whose /dev/shm name this worker removed behind the executor's back."""
    before = set(segments_of([os.getpid()]))
    out = zc.empty(n)
    out[:] = 1.0
    (name,) = set(segments_of([os.getpid()])) - before
    os.unlink(os.path.join(SHM_DIR, name))
    return out


def task_shared_result_unlinked_if(n: int, unlink: bool) -> np.ndarray:
    return task_shared_result_unlinked(n) if unlink else task_shared_result(n, 1.0)


def task_segment_modes(a: np.ndarray, creator: int) -> dict[str, int]:
    """Return name -> st_mode of the segments creator has linked (while a is in flight)."""
    del a
    return {name: os.stat(os.path.join(SHM_DIR, name)).st_mode for name in segments_of([creator])}


def task_shared_result_modes(n: int) -> tuple[np.ndarray, dict[str, int]]:
    out = zc.empty(n)
    out[:] = 2.0
    modes = {name: os.stat(os.path.join(SHM_DIR, name)).st_mode for name in segments_of([os.getpid()])}
    return out, modes


def task_total_and_make(a: np.ndarray, n: int, value: float) -> tuple[float, np.ndarray]:
    return float(a.sum()), np.full(n, value)


def task_identity(x: Any) -> Any:
    return x


def task_total(a: np.ndarray) -> float:
    return float(a.sum())


def soak_fingerprint(a: np.ndarray) -> tuple[str, tuple[int, ...], str]:
    """dtype, shape and a digest of the logical contents (C order) of an array."""
    dtype = a.dtype.str if a.dtype.fields is None else str(a.dtype)
    return dtype, a.shape, hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest()


def task_soak(kind: str, a: Any, value: float | None) -> tuple[int, Any]:
    """The soak's one task: echo, copy (plain result), shared_copy, digest, or inplace."""
    if kind == "copy":
        out: Any = np.array(a, copy=True)
    elif kind == "shared_copy":
        out = zc.empty(a.shape, a.dtype)
        out[...] = a
    elif kind == "digest":
        out = soak_fingerprint(a)
    elif kind == "inplace":
        a[...] = value
        out = float(a.sum())
    else:
        out = a
    return os.getpid(), out


def task_soak_die(how: str, seconds: float) -> None:
    time.sleep(seconds)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


class ForgedArray:
    """Pickles as the codec's rebuild call with a descriptor we chose (a forged one)."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def __reduce__(self) -> tuple[Any, ...]:
        from zerocopy_executor import _decoding

        return (_decoding._rebuild, tuple(self.ref))


def forged_ref(
    name: str,
    offset: int,
    shape: tuple[int, ...],
    strides: tuple[int, ...] | None = None,
    segment_id: tuple[int, int, int] | None = None,
) -> Any:
    """An ArrayRef of float64 with the given geometry; fields added later default to False.

    Its segment_id is the one given, else that of the segment of that name this process
    maps, if any: only the geometry is forged.
    """
    from zerocopy_executor._arrayref import ArrayRef

    if strides is None:
        strides = tuple(int(8 * np.prod(shape[i + 1 :])) for i in range(len(shape)))
    mapped = _segments._TABLE.get(name)
    known: dict[str, Any] = {
        "name": name,
        "offset": offset,
        "shape": shape,
        "strides": strides,
        "dtype": np.dtype(np.float64),
        "writeable": True,
        "segment_id": segment_id or (None if mapped is None else mapped.identity),
    }
    return ArrayRef(**{f: known.get(f, False) for f in ArrayRef._fields})


def task_return_forged(name: str, offset: int, n: int, segment_id: tuple[int, int, int]) -> ForgedArray:
    """Return a result whose descriptor points past the end of a real segment."""
    return ForgedArray(forged_ref(name, offset, (n,), segment_id=segment_id))


NOBODY = 65534  # the uid of another user of the machine
_KEPT: list[np.ndarray] = []  # what a worker keeps past its task (see task_keep)


def make_again(name: str, nbytes: int, value: float, uid: int | None) -> int:
    """Create a file of nbytes (float64 values) at a segment's unlinked name; return its inode.

    With a uid, a forked child that became that user creates it: another user of the
    machine taking the name.
    """
    path = os.path.join(SHM_DIR, name)
    data = np.full(nbytes // 8, value).tobytes()
    pid = os.fork()
    if pid == 0:  # only system calls until _exit: the forking process has threads
        code = 1
        try:
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, data)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        msg = f"could not create {path} as uid {uid}"
        raise RuntimeError(msg)
    return os.stat(path).st_ino


def task_keep(a: np.ndarray) -> None:
    """Keep the argument (a view of a shared array) in this worker past the task, as a cache would."""
    _KEPT.append(a)


def task_return_kept() -> np.ndarray:
    return _KEPT.pop()


def task_shared_result_made_again(n: int, uid: int | None) -> np.ndarray:
    """Return a shared result whose name this worker unlinked and had created again (by uid)."""
    before = set(segments_of([os.getpid()]))
    out = zc.empty(n)
    out[:] = 1.0
    (name,) = set(segments_of([os.getpid()])) - before
    size = os.stat(os.path.join(SHM_DIR, name)).st_size
    os.unlink(os.path.join(SHM_DIR, name))
    make_again(name, size, 7.0, uid)
    return out


# --- scenarios -----------------------------------------------------------------


def scenario_worker_killed(start_method: str, how: str) -> int:
    """A worker dies (os._exit or SIGKILL) while 8 MiB arguments and results are in flight."""
    seen = Seen()
    big = np.arange(MiB, dtype=np.float64)  # 8 MiB
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method))
    # Results both copied back (a plain array) and made in the worker (a shared one).
    doubled, made = big * 2, np.full(MiB, 2.0)
    before = [(ex.submit(task_slow_double, big, 0.02 * i), doubled) for i in range(4)]
    before += [(ex.submit(task_shared_result, MiB, 2.0), made) for i in range(4)]
    doomed = ex.submit(task_die_holding_result, big, how, 0.2)
    after = [(ex.submit(task_slow_double, big, 0.05), doubled) for _ in range(4)]
    after += [(ex.submit(task_shared_result, MiB, 2.0), made) for _ in range(8)]
    time.sleep(0.1)
    seen.look()
    outcomes = {
        "before": [outcome(f, expected) for f, expected in before],
        "doomed": outcome(doomed),
        "after": [outcome(f, expected) for f, expected in after],
    }
    seen.look()
    del before, doomed, after
    collect()
    ex.shutdown()
    return report_after_shutdown(seen, ex, outcomes=outcomes)


def task_wait_then(x: int, seconds: float, die: bool) -> int:
    time.sleep(seconds)
    if die:
        os._exit(1)
    return x


def scenario_map_abandoned_then_worker_dies(start_method: str) -> int:
    """map() times out and cancels its queued chunks, then a worker dies: the pool still winds down.

    Before 3.12 the broken pool's clean-up raised at the first cancelled future (gh-107219).
    """
    seen = Seen()
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method))
    n = 12  # chunk 0 dies at 1 s, chunk 1 takes 2 s; map gives up at 0.3 s
    seconds, die = [1.0, 2.0] + [0.0] * (n - 2), [True] + [False] * (n - 1)
    results = ex.map(task_wait_then, range(n), seconds, die, timeout=0.3)
    try:
        first = f"value {next(results)}"
    except FutureTimeout:
        first = "timeout"
    seen.look()
    time.sleep(1.5)  # the worker has died, and the pool broke
    try:
        late = outcome(ex.submit(task_identity, 1))
    except BrokenProcessPool:
        late = "broken"
    seen.look()
    ex.shutdown()
    return report_after_shutdown(seen, ex, first=first, late=late)


def report_after_shutdown(seen: Seen, ex: Any, **fields: Any) -> int:
    """Emit the REPORT a scenario ends with: what is left once ex has shut down."""
    collect()
    left = segments_of(seen.pids)
    emit("REPORT", **fields, left_after_shutdown=left, live=ex.stats().live_segments, procs=seen.listing())
    return 0


def scenario_parent_killed(start_method: str, kind: str) -> int:
    """Run a map over 16 MiB arrays and announce READY; the test SIGKILLs us mid-map."""
    from concurrent.futures import ProcessPoolExecutor

    ctx = context(start_method)
    big = np.ones(2 * MiB, dtype=np.float64)  # 16 MiB
    if kind == "plain":
        ex: Any = ProcessPoolExecutor(2, mp_context=ctx)
    else:
        ex = zc.SharedArrayExecutor(2, mp_context=ctx)
    # A shared result alive in the parent, and shared arrays the workers create too.
    held = ex.submit(task_shared_result, 2 * MiB, 1.0).result(timeout=TIMEOUT)
    results = ex.map(task_pid_and_total, [big] * 40, [0.2] * 40)
    workers = set()
    for i, (pid, total) in enumerate(results):
        workers.add(pid)
        if i == 1:
            emit("READY", pid=os.getpid(), workers=sorted(workers), held=float(held.sum()))
        assert total == big.size
    emit("REPORT", finished=True)  # the test should have killed us long before
    return 1


def _consume_map(ex: Any, big: np.ndarray, seen: Seen) -> int:
    """Iterate a map over large arrays, reading nothing; its futures die with this frame."""
    got = 0
    # Long enough that the interrupt always lands mid-map, even on a loaded machine.
    for _ in ex.map(task_slow_double, [big] * 200, [0.1] * 200):
        got += 1
        if got == 1:
            seen.look()
            emit("READY", pid=os.getpid())
    return got


def scenario_keyboard_interrupt(start_method: str, how: str) -> int:
    """Ctrl-C during a map over large arrays; shutdown(cancel_futures=True); results dropped."""
    seen = Seen()
    big = np.ones(2 * MiB, dtype=np.float64)  # 16 MiB
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method))
    ex.submit(task_total, big).result(timeout=TIMEOUT)  # workers up: the map itself is in flight
    seen.look()
    interrupted = False
    got = None
    # Python's handler, as in an interactive shell: a script started with SIGINT ignored
    # (a background job of a non-interactive shell) would ignore interrupt_main too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if how == "interrupt_main":
        threading.Timer(0.6, _thread.interrupt_main).start()
    # else the test sends SIGINT to this process only, as `kill -INT <pid>` would
    try:
        got = _consume_map(ex, big, seen)
    except KeyboardInterrupt:
        interrupted = True
        seen.look()
        ex.shutdown(cancel_futures=True)
    else:
        ex.shutdown()
    return report_after_shutdown(seen, ex, interrupted=interrupted, got=got)


def scenario_interrupt_during_submit(start_method: str, rounds: str) -> int:
    """KeyboardInterrupt lands at random points while map() is still submitting."""
    seen = Seen()
    small = np.ones(MiB // 8, dtype=np.float64)  # 1 MiB: copied with min_nbytes=0
    rng = np.random.default_rng(1234)
    interrupted = interpreter_leaks = 0
    signal.signal(signal.SIGINT, signal.default_int_handler)  # see scenario_keyboard_interrupt
    for _ in range(int(rounds)):
        ex = zc.SharedArrayExecutor(2, mp_context=context(start_method), min_nbytes=0)
        ex.submit(task_total, small).result(timeout=TIMEOUT)
        seen.look()
        timer = threading.Timer(float(rng.uniform(0.0, 0.05)), _thread.interrupt_main)
        try:
            timer.start()
            results = ex.map(task_total, [small] * 400)
            for _ in results:
                pass
            timer.join()  # the interrupt may still come; take it here
            time.sleep(0.05)
        except KeyboardInterrupt:
            interrupted += 1
        finally:
            timer.cancel()
        seen.look()
        interpreter_leaks += release_locks_left_by_interrupted_with(ex)
        ex.shutdown(cancel_futures=True)  # must return, wherever the interrupt landed
        del ex
        collect()
    left = segments_of(seen.pids)
    emit(
        "REPORT",
        interrupted=interrupted,
        interpreter_leaks=interpreter_leaks,
        left_after_shutdown=left,
        procs=seen.listing(),
    )
    return 0


def release_locks_left_by_interrupted_with(ex: Any) -> int:
    """Release the pending futures' locks a Ctrl-C left held in this thread; return how many.

    A Ctrl-C landing just after ``Condition.__enter__`` took a Future's lock, before the
    ``with`` block began, leaves the lock held: the interpreter does not call ``__exit__``
    (python/cpython#148874, fixed in 3.15). ProcessPoolExecutor's manager thread then waits
    on it for ever in shutdown, ours as the standard one; the scenario tests our own
    bookkeeping, so it releases such locks and reports how many it found.
    """
    released = 0
    for item in list(ex._pending_work_items.copy().values()):
        condition = item.future._condition
        while condition._is_owned():
            condition.release()
            released += 1
    return released


def _interrupt_once(owner: type, name: str, *, after: bool) -> None:
    """Make owner.name raise KeyboardInterrupt once: a Ctrl-C landing just before (or after) it."""
    original = getattr(owner, name)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        setattr(owner, name, original)
        if after:
            original(*args, **kwargs)
        raise KeyboardInterrupt

    setattr(owner, name, interrupted)


def scenario_interrupt_in_bookkeeping(start_method: str, where: str) -> int:
    """A Ctrl-C lands where a task is counted in flight but nothing will settle it.

    before_watch: submit() made the future but not yet its settling callback, and
    shutdown(cancel_futures=True) cancels it. ticket: map() counted a plain chunk but had
    not submitted it yet. shutdown() must return, and release what the executor made.
    """
    from zerocopy_executor import _future, _state  # the two places a Ctrl-C can land in

    seen = Seen()
    big = np.ones(2 * MiB, dtype=np.float64)  # 16 MiB: copied into a segment per task
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method))
    ex.submit(task_total, big).result(timeout=TIMEOUT)
    seen.look()
    # Both workers busy, the call queue full and six more waiting behind it: however slow
    # the machine, some are still pending (cancellable) when shutdown() comes.
    busy = [ex.submit(task_slow_total, big, 0.5) for _ in range(12)]
    interrupted = False
    try:
        if where == "before_watch":
            _interrupt_once(_future.SharedFuture, "watch", after=False)
            ex.submit(task_total, big)
        else:
            _interrupt_once(_state.TaskTicket, "__init__", after=True)
            ex.map(task_wait_then, range(6), [0.0] * 6, [False] * 6)
    except KeyboardInterrupt:
        interrupted = True
    seen.look()
    ex.shutdown(cancel_futures=True)
    outcomes = sorted({outcome(future) for future in busy})
    del busy
    return report_after_shutdown(seen, ex, interrupted=interrupted, outcomes=outcomes)


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
    return name


def _past_end(name: str, n: int) -> int:
    """The offset at which n float64 end 8 bytes past the segment's end (large ones are larger than asked)."""
    return os.stat(os.path.join(SHM_DIR, name)).st_size - 8 * n + 8


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


IDLE_WAIT_SECONDS = 15.0


def _live_now_and_when_idle(ex: Any) -> tuple[int, int, float]:
    """live_segments now, then after waiting (up to 15 s) for idle segments to be trimmed."""
    live = ex.stats().live_segments
    t0 = time.monotonic()
    idle_live = live
    while idle_live and time.monotonic() - t0 < IDLE_WAIT_SECONDS:
        time.sleep(0.1)
        collect()
        idle_live = ex.stats().live_segments
    return live, idle_live, time.monotonic() - t0


def _submit_from_threads(ex: Any, n_threads: int, per_thread: int, make_call: Any) -> list[Any]:
    results: list[Any] = [None] * n_threads
    barrier = threading.Barrier(n_threads)

    def run(index: int) -> None:
        barrier.wait()
        futures = [ex.submit(*make_call(index, i)) for i in range(per_thread)]
        results[index] = [f.result(timeout=TIMEOUT) for f in futures]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _fd_trend(counts: list[int]) -> int:
    """How much a worker's descriptor count grew from the first to the last quarter of its tasks."""
    quarter = max(1, len(counts) // 4)
    return max(counts[-quarter:]) - max(counts[:quarter])


def scenario_load_threads(start_method: str, n_tasks: str) -> int:
    """8 threads submit 1 MiB copied arguments at once; count descriptors and live segments."""
    seen = Seen()
    n_threads = 8
    per_thread = int(n_tasks) // n_threads
    arrays = [np.full(MiB // 8, float(i)) for i in range(n_threads)]  # 1 MiB each
    collect()
    fds_before_executor = fd_count()
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method), min_nbytes=4096)
    for f in [ex.submit(task_fd_report, arrays[0]) for _ in range(8)]:  # warm up both workers
        f.result(timeout=TIMEOUT)
    seen.look()
    helpers = {pid: fd_count(pid) for pid in descendants(os.getpid())}
    t0 = time.monotonic()
    # A quarter first, then the rest: descriptors may settle but must not grow with
    # the number of tasks, nor follow the live (or pooled) segments.
    call = lambda t, _i: (task_fd_report, arrays[t])  # noqa: E731
    results = _submit_from_threads(ex, n_threads, per_thread // 4, call)
    collect()
    fds_quarter, live_quarter = fd_count(), ex.stats().live_segments
    more = _submit_from_threads(ex, n_threads, per_thread - per_thread // 4, call)
    results = [a + b for a, b in zip(results, more, strict=True)]
    del more
    elapsed = time.monotonic() - t0
    wrong = sum(
        total != float(arrays[t].sum()) for t, thread in enumerate(results) for (_, _, total) in thread
    )
    worker_fds: dict[int, list[int]] = {}
    for thread in results:
        for pid, fds, _ in thread:
            worker_fds.setdefault(pid, []).append(fds)
    del results
    collect()
    fds_after = fd_count()
    live, idle_live, idle_seconds = _live_now_and_when_idle(ex)
    fds_idle = fd_count()
    helpers_after = {pid: fd_count(pid) for pid in helpers if os.path.exists(f"/proc/{pid}")}
    seen.look()
    ex.shutdown()
    collect()
    fds_after_shutdown = fd_count()
    copied = ex.stats().arrays_copied
    del ex
    collect()
    emit(
        "REPORT",
        wrong=wrong,
        tasks=n_threads * per_thread,
        elapsed=elapsed,
        live=live,
        idle_live=idle_live,
        idle_seconds=idle_seconds,
        fds=[fds_before_executor, fds_quarter, fds_after, fds_idle, fds_after_shutdown, fd_count()],
        live_quarter=live_quarter,
        worker_fds={pid: [min(v), max(v), _fd_trend(v)] for pid, v in worker_fds.items()},
        helper_fds={pid: [helpers[pid], helpers_after.get(pid)] for pid in helpers},
        copied=copied,
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


def _check_rows(results: list[Any], views: np.ndarray, per_thread: int, seen: Seen) -> int:
    """Count wrong answers of the max_tasks_per_child scenario (in a frame of its own)."""
    wrong = 0
    for t, thread in enumerate(results):
        for i, (pid, value) in enumerate(thread):
            row = t * per_thread + i
            seen.add(pid)
            if i % 2:
                wrong += not (zc.is_shared(value) and bool((value == row).all()))
            else:
                wrong += value != 1024.0 * row or not bool((views[row] == row).all())
    return wrong


def scenario_load_max_tasks_per_child(start_method: str, n_tasks: str) -> int:
    """max_tasks_per_child=1 with shared arguments and shared results from 8 threads."""
    seen = Seen()
    n_threads = 8
    per_thread = int(n_tasks) // n_threads
    shared = zc.zeros(n_threads * per_thread * 1024)
    views = shared.reshape(n_threads * per_thread, 1024)
    collect()
    fds_before_executor = fd_count()
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method), max_tasks_per_child=1)

    def call(t: int, i: int) -> tuple[Any, ...]:
        row = t * per_thread + i
        if i % 2:
            return (task_pid_and_shared_result, 1024, float(row))
        return (task_fill_view, views[row], float(row))

    results = _submit_from_threads(ex, n_threads, per_thread, call)
    wrong = _check_rows(results, views, per_thread, seen)
    del results
    collect()
    live, idle_live, idle_seconds = _live_now_and_when_idle(ex)
    seen.look()
    ex.shutdown()
    del ex
    collect()
    fds_after = fd_count()
    emit(
        "REPORT",
        wrong=wrong,
        tasks=n_threads * per_thread,
        live=live,
        idle_live=idle_live,
        idle_seconds=idle_seconds,
        fds=[fds_before_executor, fds_after],
        workers=len(seen.pids) - 1,
        left=segments_of(seen.pids - {os.getpid()}),
        procs=seen.listing(),
    )
    return 0


def scenario_many_live_results(start_method: str, n_results: str) -> int:
    """Hold more shared results than a common RLIMIT_NOFILE (1024) allows descriptors."""
    import resource

    seen = Seen()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    held: list[np.ndarray] = []
    error = None
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        fds_before = fd_count()
        try:
            for _ in range(int(n_results)):
                held.append(ex.submit(task_shared_result, 1000, 1.0).result(timeout=TIMEOUT))
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
        fds_holding = fd_count()
        correct = all(bool((a == 1.0).all()) for a in held)
        count = len(held)
        seen.look()
        del held
        collect()
    collect()
    emit(
        "REPORT",
        error=error,
        held=count,
        correct=correct,
        fds=[fds_before, fds_holding],
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


RESULT_N = 40_000  # float64: 320,000 bytes, above the default min_nbytes: copied, not pickled
_FILLERS: list[int] = []  # descriptors held only to leave a process none


def task_full(n: int, value: float) -> np.ndarray:
    return np.full(n, value)


def fill_descriptor_table() -> int:
    """Open /dev/null until this process has no descriptor left; keep them all."""
    while True:
        try:
            _FILLERS.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            return len(_FILLERS)


def empty_descriptor_table() -> None:
    while _FILLERS:
        os.close(_FILLERS.pop())


def _collect_results(futures: list[Future[Any]]) -> tuple[list[np.ndarray], list[str]]:
    """Results in order (None where lost), and why those were lost."""
    held: list[Any] = []
    lost: list[str] = []
    for future in futures:
        try:
            held.append(future.result(timeout=TIMEOUT))
        except Exception as exc:
            held.append(None)
            lost.append(f"{type(exc).__name__}: {exc}")
    return held, lost


def _share_and_send(ex: Any, n_arrays: int) -> str | None:
    """Share a few arrays with zc.share and send each to a worker; None, or what went wrong."""
    try:
        shared = [zc.share(np.full(RESULT_N, 7.0)) for _ in range(n_arrays)]
        totals = [ex.submit(task_total, a).result(timeout=TIMEOUT) for a in shared]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if totals == [7.0 * RESULT_N] * n_arrays else f"wrong totals {totals}"


def scenario_descriptor_limit(start_method: str, limit: str, n_results: str) -> int:
    """Keep n results of 320 KB under RLIMIT_NOFILE=limit, drop them, then share a few arrays."""
    import resource

    seen = Seen()
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(limit), int(limit)))
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        for f in [ex.submit(task_wait_then, 0, 0.2, False) for _ in range(2)]:  # start both workers
            f.result(timeout=TIMEOUT)
        fds_before = fd_count()
        futures = [ex.submit(task_full, RESULT_N, float(i)) for i in range(int(n_results))]
        held, lost = _collect_results(futures)
        del futures
        fds_holding = fd_count()
        wrong = sum(
            a is not None and not (a.shape == (RESULT_N,) and bool((a == i).all()))
            for i, a in enumerate(held)
        )
        seen.look()
        del held
        collect()
        share_error = _share_and_send(ex, 4)
        stats = ex.stats()
        seen.look()
    collect()
    emit(
        "REPORT",
        lost=len(lost),
        why=lost[:3],
        wrong=wrong,
        fds=[fds_before, fds_holding],
        share_error=share_error,
        arrays_pickled=stats.arrays_pickled,
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


def scenario_descriptor_table_full(start_method: str, where: str) -> int:
    """The parent, its workers or both have no descriptor left: copied arguments and results still cross."""
    import resource

    seen = Seen()
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))  # quick to fill
    fill_workers = where in ("workers", "both")
    init = fill_descriptor_table if fill_workers else None
    with zc.SharedArrayExecutor(2, mp_context=context(start_method), initializer=init) as ex:
        for f in [ex.submit(task_wait_then, 0, 0.2, False) for _ in range(2)]:  # start both workers
            f.result(timeout=TIMEOUT)
        filled = fill_descriptor_table() if where in ("parent", "both") else None
        base = np.arange(RESULT_N, dtype=np.float64)
        try:
            futures = [ex.submit(task_slow_double, base, 0.0) for _ in range(40)]
            held, lost = _collect_results(futures)
            del futures
            wrong = sum(a is not None and not np.array_equal(a, base * 2) for a in held)
            del held
            share_error = _share_and_send(ex, 2)
        finally:
            empty_descriptor_table()
        stats = ex.stats()
        seen.look()
    collect()
    emit(
        "REPORT",
        filled=filled,
        lost=len(lost),
        why=lost[:3],
        wrong=wrong,
        share_error=share_error,
        arrays_pickled=stats.arrays_pickled,
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


def scenario_bounded_memory(start_method: str) -> int:
    """40 arguments of 64 MiB submitted at once to 2 workers; sample our bytes in /dev/shm."""
    seen = Seen()
    big = np.ones(8 * MiB, dtype=np.float64)  # 64 MiB; each submission copies it afresh
    peak = 0
    samples = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, samples
        while not stop.is_set():
            peak = max(peak, shm_bytes_of(os.getpid()))
            samples += 1
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with zc.SharedArrayExecutor(2, mp_context=context(start_method)) as ex:
        futures = [ex.submit(task_slow_total, big, 0.05) for _ in range(40)]
        seen.look()
        totals = [f.result(timeout=TIMEOUT) for f in futures]
        seen.look()
        del futures
    stop.set()
    sampler.join()
    emit(
        "REPORT",
        peak=peak,
        samples=samples,
        correct=all(t == big.size for t in totals),
        left=segments_of(seen.pids),
        procs=seen.listing(),
    )
    return 0


def task_write_then_end(a: np.ndarray, end: str) -> float:
    """Write 7 into a block argument, then end as told: return, raise, os._exit or SIGKILL."""
    a[...] = 7.0
    if end == "raise":
        raise RuntimeError("failed over a block")
    if end == "exit":
        os._exit(1)
    if end == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return float(a[0])


def scenario_user_block(start_method: str, end: str, finish: str) -> int:
    """Pass a view of a user's SharedMemory block to a task that ends as told; finish with the block.

    finish "unlink": the user closes and unlinks the block, as the standard library's
    documentation shows. finish "keep": the block is taken off the resource tracker
    first (a block meant to outlive the program) and only closed: it must outlive the
    script, so no process of ours may have registered it.
    """
    from multiprocessing import resource_tracker
    from multiprocessing.shared_memory import SharedMemory

    seen = Seen()
    shm = SharedMemory(create=True, size=MiB)
    if finish == "keep":  # the tracker forgets it: the user keeps it past exit
        resource_tracker.unregister(f"/{shm.name}", "shared_memory")
    array = np.ndarray((MiB // 8,), np.float64, buffer=shm.buf)
    array[:] = 1.0
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method))
    written = ex.submit(task_write_then_end, array[: MiB // 16], "ok").result(timeout=TIMEOUT)
    seen.look()
    last = outcome(ex.submit(task_write_then_end, array[MiB // 16 :], end))
    seen.look()
    ex.shutdown()
    collect()
    linked = os.path.exists(os.path.join(SHM_DIR, shm.name))
    readable = float(np.frombuffer(shm.buf, np.float64, 1)[0]) == written
    del array
    shm.close()
    if finish == "unlink":
        shm.unlink()
    emit(
        "REPORT",
        name=shm.name,
        written=written,
        outcome=last,
        linked_after_shutdown=linked,
        readable_after_shutdown=readable,
        procs=seen.listing(),
    )
    return 0
