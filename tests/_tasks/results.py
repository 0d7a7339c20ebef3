"""What the leak guard's tests and the result-memory tests send to workers."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

import zerocopy_executor as zc
from tests._tasks.calls import _KEPT

# --- the leak guard's own tests (tests/test_leak_guard.py) ---------------------------

_CHILDREN: list[Any] = []


def leave_segment_behind(_: Any = None) -> str:
    """Create a segment the way the library names them, and never unlink it (a leak)."""
    name = f"zc_{os.getpid()}_{os.urandom(9).hex()}"
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(b"leaked")
    return name


def start_sleeper(seconds: float) -> int:
    """Start a child process that this worker never waits for; return its pid."""
    import subprocess

    child = subprocess.Popen(["sleep", str(seconds)])  # noqa: S607 - sleep(1) from PATH
    _CHILDREN.append(child)  # kept, so it is never collected (or warned about) here
    return child.pid


# --- results made in the worker (tests/integration/test_result_memory.py) -------------


def doubled(a: np.ndarray) -> np.ndarray:
    """W2 as users write it: NumPy allocates the result."""
    return a * 2


def doubled_into_shared(a: np.ndarray) -> np.ndarray:
    """The README's pattern: the result allocated in shared memory by the function."""
    out = zc.empty_like(a)
    np.multiply(a, 2, out=out)
    return out


def zeros_plus(a: np.ndarray, value: float) -> np.ndarray:
    """A result from zerocopy_executor.zeros: all zeros but what the function adds."""
    out = zc.zeros(a.shape, a.dtype)
    out[::2] += value
    return out


def doubled_and_kept(a: np.ndarray) -> np.ndarray:
    """Return a * 2 and keep it in this worker (a cache): its memory must never be reused."""
    out = a * 2
    _KEPT.append(out)
    return out


def doubled_into_shared_and_kept(a: np.ndarray) -> np.ndarray:
    """The README's pattern, keeping the result in this worker."""
    out = doubled_into_shared(a)
    _KEPT.append(out)
    return out


def kept_totals(_: Any = None) -> list[float]:
    """Sums of what doubled_and_kept kept: unchanged unless something reused its memory."""
    return [float(k.sum()) for k in _KEPT]


def total_of_doubled(a: np.ndarray) -> float:
    """A large temporary, then a number: nothing of the temporary comes back."""
    return float((a * 2).sum())


def grown(a: np.ndarray) -> np.ndarray:
    """An array made then grown in place (NumPy reallocates its data)."""
    out = a * 2
    out.resize(out.size + 1000, refcheck=False)
    out[-1000:] = -1.0
    return out


def keep_and_raise(a: np.ndarray) -> None:
    """Make a large array (born in the lent segment), keep it here, then fail."""
    _KEPT.append(a * 2)
    msg = "failed after keeping an array"
    raise ValueError(msg)


def make_and_raise(a: np.ndarray) -> None:
    """Make a large array, then fail (the array dies with the traceback)."""
    doubled_copy = a * 2
    msg = f"failed with {doubled_copy.size} doubled"
    raise ValueError(msg)


def first_of_kept(_: Any = None) -> float:
    """Read what keep_and_raise kept (after its mapping would have been dropped)."""
    return float(_KEPT[0][:10].sum())


def fork_and_allocate(a: np.ndarray, use_empty: bool) -> np.ndarray:
    """Fork inside the task (as a nested pool would); the child makes its own large array."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: once the parent's result exists, make an array of the same size
        os.read(ready_r, 1)
        mine = zc.empty(a.shape) if use_empty else np.empty(a.shape)
        mine[...] = 7.0
        os._exit(0)
    out = zc.empty(a.shape) if use_empty else a * 2
    if use_empty:
        out[...] = a * 2
    os.write(ready_w, b"x")
    os.waitpid(pid, 0)
    os.close(ready_r)
    os.close(ready_w)
    return out


def shared_then_unpicklable(n: int) -> list[Any]:
    """A shared result beside something pickle refuses: the reply fails to encode."""
    out = zc.empty(n)
    out[...] = 1.0
    return [out, threading.Lock()]


def copied_then_unpicklable(n: int) -> list[Any]:
    """A large plain result (copied into a segment) beside something pickle refuses."""
    return [np.ones(n), threading.Lock()]


def zero_first_sum_second(x: np.ndarray, y: np.ndarray) -> float:
    """Write zeros through the first argument, then read the second."""
    x[...] = 0
    return float(y.sum())


class Float32OnTheWire:
    """Holds float64 data and pickles it as a float32 temporary made in __reduce__."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return (Float32OnTheWire, (self.data.astype(np.float32),))


class BufferOnTheWire:
    """Holds a byte value; pickles (protocol 5) a fresh out-of-band buffer of it."""

    def __init__(self, value: int, n: int = 300_000) -> None:
        self.value, self.n = value, n

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        import pickle

        data = bytearray([self.value]) * self.n  # made on the fly, dead once pickled
        return (_first_bytes, (pickle.PickleBuffer(data),))


def _first_bytes(buffer: Any) -> bytes:
    return bytes(memoryview(buffer)[:4])


def first_values(*holders: Any) -> tuple[Any, ...]:
    """The first value each argument holds (as its receiver rebuilt it)."""
    return tuple(float(h.data[0]) if isinstance(h, Float32OnTheWire) else h for h in holders)
