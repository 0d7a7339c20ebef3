"""What the state machine keeps of each executor's side, and how the two are compared.

Every array the caller holds exists twice: as SharedArrayExecutor's caller sees it
(``Pair.sae``) and as ProcessPoolExecutor's does, or as the model says shared memory
must show it (``Pair.ppe``). A result's arrays are matched to where they come from
(``Source``), which tells the model whether they are shared memory coming back.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import types
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

import zerocopy_executor as zc
from tests._tasks import VIEWS, canonical_bytes

TIMEOUT = 60  # seconds for one task's result
SHM = "/dev/shm"
# Groups of rules that can be left out (--exclude): each reaches one of the bugs issue 19 names.
# stash-copies: only the worker's own arrays (copies of plain arguments, NumPy's) kept.
RULE_GROUPS = ("stash", "stash-copies", "result-views", "main", "cloudpickle")


@dataclass
class Config:
    """What main.py's command line chose for this run."""

    start_method: str = "fork"
    excluded: frozenset[str] = frozenset()
    main: types.ModuleType | None = None  # the __main__ module with the classes the main rules send
    workers: tuple[int, ...] = (1, 2)


CONFIG = Config()

DTYPES = [
    np.dtype(name)
    for name in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16")
] + [
    np.dtype("M8[ns]"),
    np.dtype("m8[us]"),
    np.dtype(">i4"),  # byte-swapped
    np.dtype(">f8"),
    np.dtype([("i", "<i4"), ("f", "<f8")]),  # structured, packed
    np.dtype([("b", "u1"), ("f", "<f8")], align=True),  # structured, with padding
]
SHAPES = st.one_of(
    st.just(()),
    st.tuples(st.integers(0, 40)),
    st.tuples(st.integers(0, 7), st.integers(1, 7)),
    st.tuples(st.sampled_from([700, 9000])),  # past a page, and past the pool's fit (4 KiB of slack)
)
SALTS = st.integers(0, 2**32 - 1)


@dataclass(frozen=True)
class ArraySpec:
    """An array for the parent to make: its contents are values(dtype, shape, salt)."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    order: str
    salt: int
    misaligned: bool  # its data one byte into its buffer


ARRAYS = st.builds(
    ArraySpec,
    dtype=st.sampled_from(DTYPES),
    shape=SHAPES,
    order=st.sampled_from("CF"),
    salt=SALTS,
    misaligned=st.booleans(),
)
SEVERAL_VIEWS = st.lists(st.sampled_from(sorted(VIEWS)), min_size=1, max_size=3).map(tuple)
SLOTS = st.sampled_from(["s0", "s1"])


@dataclass(eq=False)
class Pair:
    """One array as each caller holds it: SharedArrayExecutor's, and ProcessPoolExecutor's or the model's."""

    sae: Any
    ppe: Any
    shared: bool  # the SAE side's memory lies in a shared segment: it travels by reference
    label: str = field(default="")

    def __repr__(self) -> str:
        return self.label


class PerSide(NamedTuple):
    """An argument that differs between the executors (not an array the caller keeps)."""

    sae: Any
    ppe: Any


def in_sae_only(shared: bool) -> PerSide:
    """Whether a worker makes its new array with zerocopy_executor: in SharedArrayExecutor's only.

    In ProcessPoolExecutor's worker it makes a NumPy array, the reference a plain
    program gives (a shared one would come back as a plain copy all the same).
    """
    return PerSide(shared, False)


@dataclass(frozen=True)
class Source:
    """Where a result array comes from, so the model knows what shared memory must show.

    Either views (names applied in order) of an argument, or of the new array a worker
    made (fresh: the index of that array, itself, among the result's arrays; shared: made
    with zerocopy_executor), or what a worker keeps under a slot; kept: the worker keeps
    the array it returns past the call.
    """

    arg: Pair | None = None
    views: tuple[str, ...] = ("same",)
    fresh: int | None = None
    fresh_shared: bool = False
    slot: str | None = None
    kept: bool = False  # the worker keeps it past the call: it comes back as a copy


def dtypes_match(sae: np.dtype[Any], ppe: np.dtype[Any]) -> bool:
    """Equal dtypes, or the README's difference: "a strided byte-swapped array keeps its dtype
    (NumPy's pickling returns native byte order)": SAE kept the swapped order, PPE went native.
    """
    if sae == ppe:
        return True
    return ppe.isnative and not sae.isnative and sae.newbyteorder("=") == ppe


def misaligned_like(a: np.ndarray, allocate: Any) -> np.ndarray:
    """A copy of a whose data starts one byte into a uint8 buffer made by allocate (np.empty, zc.empty)."""
    buffer = allocate(a.nbytes + 1, np.uint8)[1:]
    order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    out = np.ndarray(a.shape, a.dtype, buffer=buffer, order=order)
    out[...] = a
    return out


def layout(a: np.ndarray) -> tuple[bool, bool]:
    return bool(a.flags.c_contiguous), bool(a.flags.f_contiguous)


def describe_array(a: np.ndarray) -> str:
    return f"{a.dtype} {a.shape} strides={a.strides} writeable={a.flags.writeable} shared={zc.is_shared(a)}"


def normalized(message: str) -> str:
    """An exception message without object addresses (they differ between processes)."""
    return re.sub(r"0x[0-9a-f]+", "0x?", message)


@dataclass
class Outcome:
    """A call's result, or what it raised."""

    value: Any = None
    error: BaseException | None = None

    def describe(self) -> str:
        if self.error is not None:
            return f"raised {type(self.error).__name__}: {self.error}"
        return f"returned {self.value!r}"[:300]


def outcome_of(call: Any) -> Outcome:
    """What call returned or raised; no result in time fails the example (two hangs are no agreement)."""
    try:
        return Outcome(value=call())
    except FutureTimeoutError as exc:
        raise AssertionError(f"no result within {TIMEOUT} s: {exc!r}") from exc
    except Exception as exc:  # compared between the executors
        return Outcome(error=exc)


def split(obj: Any, arrays: list[np.ndarray]) -> Any:
    """A result's structure with its arrays taken out (appended to arrays, in a fixed order)."""
    kind = type(obj)
    if kind is np.ndarray:
        arrays.append(obj)
        return "array"
    if kind in (tuple, list):
        return (kind.__name__, tuple(split(item, arrays) for item in obj))
    if kind is dict:
        return ("dict", tuple((key, split(item, arrays)) for key, item in obj.items()))
    main = CONFIG.main
    if main is not None and isinstance(obj, getattr(main, "MainHolder", ())):
        # "__main__ classes pickle by reference in ProcessPoolExecutor": the very class
        return (
            "main",
            kind.__qualname__,
            kind in (main.MainHolder, main.MainChild),
            obj.kind(),
            split(obj.arrays, arrays),
        )
    if isinstance(obj, np.generic):
        return ("scalar", obj.dtype.str, canonical_bytes(np.asarray(obj)))
    return ("value", kind.__qualname__, obj)


def shm_names() -> set[str]:
    try:
        return {name for name in os.listdir(SHM) if name.startswith("zc_")}
    except FileNotFoundError:
        return set()


def copy_with_values(like: np.ndarray, source: np.ndarray) -> np.ndarray:
    """A new array with like's dtype, layout and writeable flag, holding source's values."""
    out = like.copy(order="K")
    out[...] = source
    out.flags.writeable = bool(like.flags.writeable)
    return out


def pickled(a: np.ndarray) -> np.ndarray:
    """What ProcessPoolExecutor hands over for a: a copy through pickle's default protocol."""
    copy: np.ndarray = pickle.loads(pickle.dumps(a))
    return copy


def view_chain(a: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    for name in names:
        a = VIEWS[name](a)
    return a.view()  # a new array object over the same memory, as a receiver makes


def sys_exc_pending() -> bool:
    """Whether teardown runs because a step failed (then its own checks would hide that failure)."""
    return sys.exc_info()[0] is not None
