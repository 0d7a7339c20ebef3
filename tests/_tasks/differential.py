"""What the differential tests send to workers (tests/integration/test_differential_*.py)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import Any

import numpy as np

from tests._tasks.calls import _KEPT, double, total


def block_until(release: str, started: str | None = None, value: Any = None, timeout: float = 30.0) -> Any:
    """Touch `started` (if given), then wait until the file `release` exists; return value."""
    if started is not None:
        with open(started, "w"):
            pass
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            msg = f"{release} did not appear within {timeout} s"
            raise TimeoutError(msg)
        time.sleep(0.01)
    return value


def fail_on(x: Any, bad: Any) -> Any:
    """Return x * 10, or raise ValueError naming x when it equals bad."""
    if x == bad:
        msg = f"bad item {x!r}"
        raise ValueError(msg)
    return x * 10


def echo_kwargs(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


class CustomError(Exception):
    """An exception with extra attributes, which must survive the trip back."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def raise_custom(code: int, detail: str) -> None:
    raise CustomError(code, detail)


def return_lock(_: Any = None) -> Any:
    """Return an object that cannot be pickled."""
    return threading.Lock()


def _rebuild_only_in(origin_pid: int) -> OnlyInOrigin:
    if os.getpid() != origin_pid:
        msg = f"cannot rebuild outside process {origin_pid}"
        raise ValueError(msg)
    return OnlyInOrigin()


class OnlyInOrigin:
    """Pickles anywhere, but unpickles only in the process that pickled it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_only_in, (os.getpid(),))


def return_only_in_origin(_: Any = None) -> OnlyInOrigin:
    return OnlyInOrigin()


def sum_in_nested_pool(executor_cls: type, start_method: str, n: int) -> tuple[float, list[float]]:
    """Run a small pool of executor_cls inside this (worker) process; return its results."""
    context = multiprocessing.get_context(start_method)
    a = np.arange(n, dtype=np.float64)
    with executor_cls(2, mp_context=context) as executor:
        sum_future = executor.submit(total, a)
        doubled = list(executor.map(double, a[:4].tolist()))
        return sum_future.result(timeout=60), doubled


def keep_argument(a: np.ndarray) -> float:
    """Keep the argument past the call (a cache), which forbids recycling its segment."""
    _KEPT.append(a)
    return float(a.sum())


def kept_sums(_: Any = None) -> list[float]:
    return [float(a.sum()) for a in _KEPT]


def keep_argument_plus_one(a: np.ndarray) -> np.ndarray:
    """Keep the argument past the call and return a new array of its size."""
    _KEPT.append(a)
    return a + 1


def plus_one_each(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(a + 1 for a in arrays)


def quarter_plus_one(a: np.ndarray) -> np.ndarray:
    """A new array a quarter of the argument's size."""
    return a[: a.size // 4] + 1


def half_view_and_plus_one(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A view of the argument and a new array of its size, in one result."""
    return a[: a.size // 2], a + 1


def fail_with_array(a: np.ndarray) -> None:
    raise RuntimeError(f"failed on an array of {a.nbytes} bytes")


def plus_one(a: np.ndarray) -> np.ndarray:
    return a + 1


def slow_identity(x: Any, seconds: float = 0.05) -> Any:
    import time

    time.sleep(seconds)
    return x


def same_object(a: Any, b: Any) -> bool:
    """Whether the two arguments arrived as one object (pickling keeps identity within a call)."""
    return a is b


def array_kind(a: np.ndarray) -> tuple[str, bool]:
    """The class name of an array argument and whether the worker may write to it."""
    return type(a).__name__, bool(a.flags.writeable)


class CallCounter:
    """A callable object with state: pickled per task, each task counts from zero."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, _: Any = None) -> int:
        self.calls += 1
        return self.calls


class Raiser:
    """Methods that raise, sent by reference (as ProcessPoolExecutor sends them)."""

    @classmethod
    def from_classmethod(cls, message: str) -> None:
        raise RuntimeError(message)  # marker: classmethod line

    def from_method(self, message: str) -> None:
        raise RuntimeError(message)  # marker: method line


# A lambda has no importable name: cloudpickle sends it by value.
raise_from_lambda = lambda message: Raiser().from_method(message)  # noqa: E731  # marker: lambda line


def _refuse_to_rebuild(message: str) -> None:
    raise ValueError(message)


class ErrorAtUnpickle:
    """Pickles fine, raises ValueError wherever it is unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_rebuild, ("refused to unpickle",))


class ExitAtUnpickle:
    """Pickles fine, raises SystemExit(3) wherever it is unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        import sys

        return (sys.exit, (3,))


def return_instance(cls: type) -> Any:
    return cls()


_PIPE_BYTES = [0]


def count_pipe_bytes() -> None:
    """Worker initializer: count the bytes this process sends through its pipes."""
    from multiprocessing.connection import Connection

    _PIPE_BYTES[0] = 0  # a forked worker inherits its parent's count
    send_bytes = Connection.send_bytes
    if getattr(send_bytes, "counted", False):  # inherited from a counting parent (fork)
        return

    def counting(self: Connection, buf: Any, offset: int = 0, size: int | None = None) -> None:
        _PIPE_BYTES[0] += memoryview(buf).nbytes if size is None else size
        send_bytes(self, buf, offset, size)

    counting.counted = True  # type: ignore[attr-defined]
    Connection.send_bytes = counting  # type: ignore[method-assign]


def pipe_bytes_sent(_: Any = None) -> int:
    """Bytes this worker sent through its pipes so far (see count_pipe_bytes)."""
    return _PIPE_BYTES[0]


def share_memory(a: Any, b: Any) -> bool:
    return bool(np.shares_memory(a, b))
