"""State a worker keeps between tasks (tests/integration/test_worker_state.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

import zerocopy_executor as zc

# --- state a worker keeps between tasks (tests/integration/test_worker_state.py) ------

_STASH: list[Any] = []


def stash(value: Any) -> None:
    """Keep value in this worker's globals, as a cache would."""
    _STASH.append(value)


def fetch(_: Any = None) -> Any:
    """Return what stash kept last."""
    return _STASH[-1]


def bump_stashed(value: float) -> None:
    """Add value to the array stash kept last, in place, in the worker."""
    _STASH[-1] += value


def cached_ones(n: int) -> np.ndarray:
    """A worker cache: made by NumPy in the first call, returned by every call."""
    if not _STASH:
        _STASH.append(np.full(n, 1.0))
    cached: np.ndarray = _STASH[0]
    return cached


def stash_shared(n: int, value: float) -> None:
    """Make a shared array in the worker, keep it, return nothing."""
    kept = zc.empty(n)
    kept[:] = value
    _STASH.append(kept)


def with_views(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A new array and two views of it, in one result."""
    y = a * 2
    return y, y[:10], y.T


def argument_and_view(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The argument and a view of it, in one result."""
    return a, a[:10]


def return_lambda(offset: int) -> Any:
    """Return a lambda (pickle refuses it; cloudpickle sends it by value)."""
    return lambda x: x + offset


def return_closure(offset: int) -> Any:
    """Return a closure over offset."""

    def add_offset(x: int) -> int:
        return x + offset

    return add_offset


class Greeter:
    """A class whose local subclasses call super()."""

    def greet(self) -> str:
        return "hello"


def return_local_instance(value: Any) -> Any:
    """Return an instance of a class defined in this call, whose method calls super()."""

    class Local(Greeter):
        def __init__(self, value: Any) -> None:
            self.value = value

        def greet(self) -> str:
            return super().greet() + " from a local class"

    return Local(value)


def return_local_in_list(value: Any) -> list[Any]:
    """A list holding an instance of a local class beside plain values."""
    return [1, return_local_instance(value), "x"]


def return_generator(_: Any = None) -> Any:
    """Return a generator: neither pickle nor cloudpickle can pickle it."""
    return (i for i in range(3))


def return_module(_: Any = None) -> Any:
    """Return a module object: pickle refuses it, cloudpickle sends it by name."""
    return np.linalg


def return_lambda_beside_shared(n: int) -> tuple[np.ndarray, Any]:
    """A shared array made here, beside a lambda: the result is encoded twice."""
    out = zc.empty(n)
    out[...] = 1.0
    return out, lambda x: x + 1


def return_lambda_beside_large(n: int) -> tuple[np.ndarray, Any]:
    """A large plain array (copied into a segment), beside a lambda."""
    return np.ones(n), lambda x: x + 1


def reversed_view(a: np.ndarray) -> np.ndarray:
    """A view of the argument with negative strides."""
    return a[::-1]


def read_only_view(a: np.ndarray) -> np.ndarray:
    """A read-only view of the argument."""
    view = a.view()
    view.flags.writeable = False
    return view


def head_view(a: np.ndarray) -> np.ndarray:
    """A small view of a large argument."""
    return a[:10]
