"""Payloads: a task's callable, its call and its result, pickled with large arrays swapped for ArrayRefs.

This module puts the parts together per payload: the callable (its bytes cached when
they can be), the arguments, the result, and what is plain enough to skip our picklers
altogether. Which path each array takes is the encoding session's business
(_encoding.EncodeSession); how objects are pickled, the picklers' (_picklers). The way
back is _decoding.decode.

Non-goals: arrays of NumPy subclasses other than ``np.memmap`` keep their own pickling
(their ``__reduce__`` carries state we would drop); object arrays are always pickled.
"""

from __future__ import annotations

import io
import pickle
import types
import weakref
from collections.abc import Iterable
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _segments
from ._config import SharingPolicy
from ._decoding import Payload
from ._encoding import EncodeSession
from ._picklers import BY_REFERENCE, PLAIN, SIMPLE_CALL, ArgumentPickler, NotPlain, ResultPickler
from ._plain import PLAIN_TYPES, is_immutable
from ._results_by_value import ByValueResultPickler

__all__ = [
    "encode_call",
    "encode_callable",
    "encode_function",
    "encode_plain",
    "encode_result",
    "encode_task",
    "is_reusable",
]


# map() submits the same partial(run_chunk, fn) with every chunk that holds arrays; pickling it
# (with a __main__ function's by-value fallback) each time cost ~10 us per tiny task.
# Its encoding is kept for as long as that partial lives, unless it holds arrays; so is a
# function's that is sent by reference (~8 us per task through submit()).
_CALLABLES: weakref.WeakKeyDictionary[Any, tuple[Payload, bool]] = weakref.WeakKeyDictionary()


def encode_callable(fn: Any, session: EncodeSession) -> tuple[Payload, bool]:
    """Pickle a task's callable; return its bytes and whether a worker may cache them."""
    kind = type(fn)
    cached = _CALLABLES.get(fn) if kind is partial or kind is types.FunctionType else None
    if cached is not None:
        return cached
    before = len(session.pinned), dict(session.tally)
    data = encode_call(fn, session)
    cacheable = (len(session.pinned), session.tally) == before and is_reusable(fn)  # no array inside
    # A function's bytes are only its name once cloudpickle chose to send it by reference.
    if cacheable and (kind is partial or BY_REFERENCE.get(fn, False)):
        _CALLABLES[fn] = (data, True)
    return data, cacheable


def is_reusable(fn: Any) -> bool:
    """Whether fn has no state of its own, so that decoding it once per worker is safe.

    True for functions and classes (their state lives in their module, as with
    ProcessPoolExecutor; a closure's cells are decoded once per worker), builtins of
    modules, and partials of them over immutable values. Not for callable objects,
    bound methods or partials over lists: pickled per task, each task gets its own copy
    of their state, and a partial's list may change between tasks.
    """
    kind = type(fn)
    if kind is partial:
        arguments = (*fn.args, *fn.keywords.values())
        return is_reusable(fn.func) and all(is_immutable(v) or is_reusable(v) for v in arguments)
    callable_kind = kind is types.FunctionType or kind is types.BuiltinFunctionType or isinstance(fn, type)
    return callable_kind and is_immutable(fn)


def encode_plain(value: Any) -> bytes | None:
    """Pickle value if it is made only of what pickle handles natively, else return None.

    No code of ours or the caller's runs during the dump, so reusing the pickler is safe.
    """
    try:
        data = PLAIN.dumps(value)  # no session: nothing goes out of band
    except NotPlain:
        return None
    assert type(data) is bytes  # noqa: S101 - for mypy: no session, no out-of-band buffers
    return data


def encode_task(
    function: tuple[Payload, bool], args: tuple[Any, ...], kwargs: dict[str, Any], session: EncodeSession
) -> Payload:
    """Pickle a task's encoded callable and its arguments, sharing their large arrays."""
    if _simple(args) and _simple(kwargs.values()):
        return SIMPLE_CALL.dumps((function, args, kwargs), session)
    return encode_call((function, args, kwargs), session)


def _simple(values: Iterable[Any]) -> bool:
    """Whether every value is a scalar, a string or an ndarray of a plain dtype.

    Not object arrays, nor structured dtypes or dtypes with metadata: what those hold
    may need cloudpickle.
    """
    for value in values:
        kind = type(value)
        if kind in PLAIN_TYPES:
            continue
        if kind is not np.ndarray:
            return False
        dtype = value.dtype
        if dtype.hasobject or dtype.fields is not None or dtype.metadata is not None:
            return False
    return True


def encode_call(call: Any, session: EncodeSession) -> Payload:
    """Pickle a call (or any object), sharing its large arrays and buffers."""
    plain = encode_plain(call)
    if plain is not None:
        return plain
    buffer = io.BytesIO()
    start = len(session.out_of_band)
    ArgumentPickler(buffer, session).dump(call)
    return session.payload(buffer.getvalue(), start)


class _ArrayFreeSession(EncodeSession):
    """A session that gives up at the first array (see encode_function)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(SharingPolicy(), _NoSegments(), handover=False)

    def reduce_array(self, array: NDArray[Any]) -> tuple[Any, ...] | None:
        raise NotPlain

    def buffer_callback(self, buffer: pickle.PickleBuffer) -> bool:
        raise NotPlain


class _NoSegments:
    def allocate(self, nbytes: int) -> tuple[_segments.SegmentBuffer, NDArray[Any] | None]:
        raise AssertionError  # _ArrayFreeSession never asks


def encode_function(fn: Any) -> tuple[Payload, bool] | None:
    """Pickle map()'s function once for all its chunks, or return None if it cannot be.

    Not if it holds an array or a buffer, which would be pinned (or copied) for as long as the
    bytes are reused; nor if it fails to pickle, which the per-task path reports in
    the task's future, as ProcessPoolExecutor does. Returns the bytes and whether
    workers may keep what they decode (see is_reusable).
    """
    try:
        return encode_call(fn, _ArrayFreeSession()), is_reusable(fn)
    except Exception:  # reported per task instead (see above)
        return None


def encode_result(result: Any, session: EncodeSession, *, by_value: bool = False) -> Payload:
    """Pickle a task's result, sharing its large arrays and buffers.

    As ProcessPoolExecutor pickles it; with by_value, what pickle refuses (it raised
    one of REFUSALS) goes by value (see _results_by_value). The caller hands the
    segments over (``session.hand_over()``) once it knows the payload is the one it
    sends.
    """
    buffer = io.BytesIO()
    start = len(session.out_of_band)
    (ByValueResultPickler if by_value else ResultPickler)(buffer, session).dump(result)
    return session.payload(buffer.getvalue(), start)
