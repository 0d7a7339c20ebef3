"""Module-level callables that workers run: the general ones many tests share."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np

import zerocopy_executor as zc

_KEPT: list[Any] = []  # arrays tasks keep past the call (a worker-side cache), shared by every module
VALUE_FROM_INITIALIZER: Any = None


def identity(x: Any) -> Any:
    return x


def double(x: Any) -> Any:
    return x * 2


def add(x: Any, y: Any) -> Any:
    return x + y


def total(a: np.ndarray) -> float:
    return float(np.asarray(a, dtype=np.float64).sum())


def scribble(a: np.ndarray) -> float:
    """Write into the argument in place; return its new sum."""
    a[...] = 7
    return float(a.sum())


def square_in_place(a: np.ndarray) -> None:
    np.square(a, out=a)


def fill_slice(a: np.ndarray, start: int, stop: int, value: float) -> None:
    a[start:stop] = value


def is_shared_in_worker(a: np.ndarray) -> bool:
    return zc.is_shared(a)


def writeable_in_worker(a: np.ndarray) -> bool:
    return bool(a.flags.writeable)


def make_shared(n: int, value: float) -> np.ndarray:
    out = zc.empty(n)
    out[:] = value
    return out


def make_shared_and_keep(n: int, value: float) -> np.ndarray:
    """Return a shared array made here, and keep it (a worker-side cache)."""
    out = make_shared(n, value)
    _KEPT.append(out)
    return out


def make_plain(n: int, value: float) -> np.ndarray:
    return np.full(n, value)


def first_half(a: np.ndarray) -> np.ndarray:
    return a[: len(a) // 2]


def set_global(value: Any) -> None:
    global VALUE_FROM_INITIALIZER  # noqa: PLW0603
    VALUE_FROM_INITIALIZER = value


def get_global(_: Any = None) -> Any:
    return VALUE_FROM_INITIALIZER


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def kill_self(_: Any = None) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def exit_abruptly(_: Any = None) -> None:
    os._exit(3)


def pid(_: Any = None) -> int:
    return os.getpid()


def nested_roundtrip(obj: Any) -> Any:
    return obj


def describe(a: np.ndarray) -> tuple[Any, ...]:
    """What the worker sees: dtype, shape, values (as bytes of a C copy), shared or not."""
    return (a.dtype, a.shape, np.ascontiguousarray(a).tobytes(), zc.is_shared(a))


def flags(a: np.ndarray) -> dict[str, bool]:
    return {"writeable": bool(a.flags.writeable), "shared": zc.is_shared(a)}


def negate_and_return(a: np.ndarray) -> np.ndarray:
    a *= -1
    return a


def return_same_twice(n: int) -> tuple[np.ndarray, np.ndarray]:
    out = zc.empty(n)
    out[:] = 3.0
    return out, out[::2]


def copies_of(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Fresh plain copies (same layout): they travel back on the copy path."""
    return [np.array(a, copy=True, order="K") for a in arrays]


def write_ramp(a: np.ndarray) -> tuple[int, ...]:
    """Write 0, 1, 2, ... into the argument in its logical (C) order; return its shape."""
    a[...] = np.arange(a.size, dtype=a.dtype).reshape(a.shape)
    return a.shape


def views_back(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the argument, its transpose and its reverse: views the worker makes of it."""
    return a, a.T, a[::-1] if a.ndim else a


def check_and_bump(a: np.ndarray, value: float, seconds: float = 0.0) -> tuple[bool, np.ndarray]:
    """Whether the argument holds only value (checked before and after a pause); and a + 1."""
    before = bool((a == value).all())
    time.sleep(seconds)  # keeps the task, and its segments, in flight a while
    return before and bool((a == value).all()), a + 1


def mapped_here(name: str) -> tuple[int, bool, float]:
    """This worker's pid, whether it maps the segment name, and when it looked (CLOCK_MONOTONIC)."""
    with open("/proc/self/maps") as f:
        return os.getpid(), name in f.read(), time.monotonic()
