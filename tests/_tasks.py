"""Module-level callables that workers run (importable by reference under spawn)."""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np

import zerocopy_executor as zc

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
