"""The property-based differential suite's views and values (tests/property)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import zerocopy_executor as zc
from tests._tasks.differential import CustomError

# --- the property-based differential suite (tests/property) ---------------------------
#
# VIEWS and values() run in the workers and, to predict what shared memory must show,
# in the parent: the same code on both sides.


def _head(a: np.ndarray) -> np.ndarray:
    return a[: (a.shape[0] + 1) // 2] if a.ndim else a[...]


def _step(a: np.ndarray) -> np.ndarray:
    return a[..., ::2] if a.ndim else a[...]


def _reverse(a: np.ndarray) -> np.ndarray:
    return a[..., ::-1] if a.ndim else a[...]


def _block(a: np.ndarray) -> np.ndarray:
    if a.ndim >= 2:
        return a[1:, ::-2]
    return a[::-2] if a.ndim else a[...]


def _item(a: np.ndarray) -> np.ndarray:
    """A 0-d view of the first element (the array itself if it has none)."""
    return a[(0,) * a.ndim + (Ellipsis,)] if a.size else a[...]


def _none(a: np.ndarray) -> np.ndarray:
    return a[..., :0] if a.ndim else a[...]


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


VIEWS: dict[str, Any] = {
    "same": lambda a: a,
    "head": _head,
    "step": _step,
    "reverse": _reverse,
    "T": lambda a: a.T,
    "block": _block,
    "item": _item,
    "none": _none,
    "read_only": _read_only,
}


def values(dtype: Any, shape: tuple[int, ...], salt: int) -> np.ndarray:
    """Contents for an array of dtype and shape, the same in every process for one salt."""
    return np.asarray(_values(np.dtype(dtype), tuple(shape), np.random.default_rng(salt)))


def _values(dtype: np.dtype[Any], shape: tuple[int, ...], rng: np.random.Generator) -> Any:
    if dtype.fields is not None:
        out = np.empty(shape, dtype)
        for name in dtype.names or ():
            out[name] = _values(dtype.fields[name][0], shape, rng)
        return out
    native = dtype.newbyteorder("=")
    if dtype.kind == "b":
        raw: Any = rng.integers(0, 2, shape).astype(bool)
    elif dtype.kind in "iu":
        info = np.iinfo(native)
        raw = rng.integers(info.min, info.max, shape, dtype=native, endpoint=True)
    elif dtype.kind == "f":
        raw = rng.normal(0, 1000, shape)
    elif dtype.kind == "c":
        raw = rng.normal(0, 1000, shape) + 1j * rng.normal(0, 1000, shape)
    elif dtype.kind in "mM":
        raw = rng.integers(-(2**40), 2**40, shape, dtype=np.int64).view(native)
    else:
        msg = f"no values for dtype {dtype!r}; add its kind to tests._tasks.property_suite._values"
        raise TypeError(msg)
    return np.asarray(raw).astype(dtype)


_SLOTS: dict[str, Any] = {}  # a worker's cache: what tasks keep between calls


def views_of(a: np.ndarray, names: tuple[str, ...], container: str = "tuple") -> Any:
    """Views of the argument, made here, in a tuple, a list or a dict nested in a list."""
    made = [VIEWS[name](a) for name in names]
    if container == "list":
        return made
    if container == "dict":
        return [{str(i): view for i, view in enumerate(made)}]
    return tuple(made)


def fresh_views(a: np.ndarray, names: tuple[str, ...], shared: bool) -> tuple[np.ndarray, ...]:
    """A new array made here (by NumPy, or in shared memory), and views of it."""
    y = zc.empty_like(a) if shared else np.empty_like(a, order=layout_order(a))
    y[...] = a
    return tuple(VIEWS[name](y) for name in names)


def layout_order(a: np.ndarray) -> str:
    """The layout zerocopy_executor.empty_like gives a new array like a: Fortran only if a is only that."""
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def twice(a: np.ndarray) -> Any:
    """A new array NumPy makes: ``a * 2``, C-ordered unless a is Fortran-contiguous.

    Not ``a * 2`` itself, whose layout follows a's strides: a shared argument keeps them
    in the worker, a pickled one arrives contiguous.
    """
    return np.multiply(a, 2, order="A")


def sum_of(a: np.ndarray) -> Any:
    """The argument's sum: exactly rounded for floats, NumPy's (a scalar of its dtype) otherwise.

    Not NumPy's sum of floats, whose rounding depends on the layout and the alignment of
    the memory: a shared argument keeps its own in the worker (and a copy NumPy makes
    there may be born in a lent segment), a pickled one arrives contiguous and aligned.
    """
    if a.dtype.kind == "f":
        return math.fsum(a.ravel().tolist())
    if a.dtype.kind == "c":
        return complex(math.fsum(a.real.ravel().tolist()), math.fsum(a.imag.ravel().tolist()))
    return a.sum()


def pair(x: Any, y: Any) -> tuple[Any, Any]:
    return x, y


def mutate(a: np.ndarray, salt: int, give_back: bool = False) -> np.ndarray | None:
    """Write values(salt) into the argument in place; return it if asked."""
    a[...] = values(a.dtype, a.shape, salt)
    return a if give_back else None


def write_first_return_second(x: np.ndarray, y: np.ndarray, salt: int) -> np.ndarray:
    """Write into the first argument, then return the second (which may share its memory)."""
    x[...] = values(x.dtype, x.shape, salt)
    return y


def seen_by_worker(a: np.ndarray) -> tuple[str, tuple[int, ...], bytes, bool]:
    """What the worker sees of its argument: dtype, shape, contents, whether it may write."""
    return a.dtype.str, a.shape, canonical_bytes(a), bool(a.flags.writeable)


def canonical_bytes(a: np.ndarray) -> bytes:
    """An array's values as bytes: native byte order, C order, structured padding left out."""
    if a.dtype.fields is not None:
        return b"".join(canonical_bytes(a[name]) for name in a.dtype.names or ())
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("=")).tobytes()


def stash_in(a: np.ndarray, slot: str) -> None:
    """Keep the argument in this worker, under slot."""
    _SLOTS[slot] = a


def fetch_from(slot: str) -> Any:
    """Return what stash_in() or keep_fresh() kept under slot."""
    return _SLOTS[slot]


def mutate_stashed(slot: str, salt: int) -> None:
    """Write values(salt) into what is kept under slot, in place."""
    kept = _SLOTS[slot]
    kept[...] = values(kept.dtype, kept.shape, salt)


def forget(slot: str) -> None:
    _SLOTS.pop(slot, None)


def keep_fresh(a: np.ndarray, slot: str, shared: bool) -> np.ndarray:
    """Make a new array (by NumPy, or in shared memory), keep it under slot and return it."""
    y = fresh_views(a, ("same",), shared)[0]
    _SLOTS[slot] = y
    return y


def raise_holding(a: np.ndarray) -> None:
    """Raise an exception that holds the argument."""
    raise CustomError(len(a.shape), a)


def closure_over(x: Any) -> Any:
    """A result only cloudpickle could pickle (a lambda)."""
    return lambda: x


def local_instance(x: Any) -> Any:
    """A result only cloudpickle could pickle (an instance of a class defined here)."""

    class Local:
        def __init__(self, value: Any) -> None:
            self.value = value

    return Local(x)
