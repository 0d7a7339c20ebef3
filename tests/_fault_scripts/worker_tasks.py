"""The fault scenarios' worker tasks: module-level, so they pickle by reference."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from typing import Any

import numpy as np

import zerocopy_executor as zc
from tests._fault_scripts.probes import SHM_DIR, fd_count, segments_of
from zerocopy_executor import _segments

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
    return os.getpid(), fd_count(below=1024), float(a.sum())


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
    """Pickles as an array's rebuild call with a descriptor we chose (a forged one)."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def __reduce__(self) -> tuple[Any, ...]:
        from zerocopy_executor import _arrayref

        return (_arrayref.unpickle, tuple(self.ref))


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
        "name": name if mapped is None else _segments.wire_name(mapped),  # a memfd's with its holder
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
