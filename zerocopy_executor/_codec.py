"""encode()/decode(): pickling that swaps large arrays for ArrayRefs.

Arguments are pickled with a cloudpickle Pickler (lambdas and ``__main__`` functions
work under every start method); results with the same pickler class as
ProcessPoolExecutor (``ForkingPickler``), so what cannot be returned there cannot be
returned here either. Both hand everything they do not own back to their parent class
(``reducer_override`` returns NotImplemented), and the C pickler only consults it for
objects that are not built-in containers or scalars, so a payload without arrays pays
almost nothing extra.

Non-goals: arrays of NumPy subclasses other than ``np.memmap`` keep their own pickling
(their ``__reduce__`` carries state we would drop); object arrays are always pickled.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import sys
import threading
import types
import warnings
import weakref
import zlib
from collections.abc import Callable, Iterable
from functools import lru_cache, partial
from multiprocessing.reduction import ForkingPickler
from typing import Any, Protocol

import cloudpickle
import numpy as np
from numpy.typing import NDArray

from . import _arrayref, _pool, _segments
from ._config import SharingPolicy
from ._errors import SegmentError, SharedMemoryFullWarning

__all__ = [
    "DecodeSession",
    "EncodeSession",
    "TaskDecodeSession",
    "decode",
    "encode_call",
    "encode_function",
    "encode_plain",
    "encode_result",
    "encode_task",
    "is_plain",
    "is_reusable",
]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
# Results made only of these need no array scan: plain pickle is ~30 us cheaper (fact 9).
_PLAIN_TYPES = frozenset({int, float, complex, str, bytes, bool, type(None)})  # see is_plain
_PLAIN_CONTAINERS = frozenset({tuple, list, dict})
_PLAIN_SCAN_MAX = 16  # items per container


class SegmentAllocator(Protocol):
    """Creates a segment for a copied array; returns it and, if pooled, its lease."""

    def __call__(self, nbytes: int) -> tuple[_segments.SegmentBuffer, NDArray[Any] | None]: ...


class EncodeSession:
    """One encode pass: the policy, what it counted, and the segments it pinned.

    Args:
        policy: the size threshold for copying.
        allocate: creates a segment for a copied array.
        handover: whether segments this process owns are handed to the receiver
            (results, which the parent will own) or kept (arguments).
        spare: recycled segments a result may be copied into rather than a new
            segment (their mappings and a per-task root over each): the one the
            parent lent for it, and the task's copied arguments nothing views any more.
    """

    __slots__ = (
        "allocate",
        "buffers",
        "copied_nbytes",
        "handover",
        "pinned",
        "policy",
        "scratch_sizes",
        "spare",
        "tally",
    )

    def __init__(
        self,
        policy: SharingPolicy,
        allocate: SegmentAllocator,
        *,
        handover: bool,
        spare: list[tuple[_segments.SegmentBuffer, NDArray[Any]]] | None = None,
    ) -> None:
        self.policy = policy
        self.allocate = allocate
        self.handover = handover
        self.spare = spare or []
        self.tally: dict[str, int] = {}  # only the paths taken: most tiny tasks take none
        # What the receiver will map (mappings, or leases over them): kept alive, so
        # linked, until the receiver is done.
        self.pinned: list[Any] = []
        self.buffers: list[_segments.SegmentBuffer] = []  # the mappings behind pinned
        # Largest array copied: a segment that size is worth lending next time.
        self.copied_nbytes = 0
        # Sizes of the recycled segments arrays were copied into (see ArrayRef.scratch).
        self.scratch_sizes: list[int] = []

    def reduce_array(self, array: NDArray[Any]) -> tuple[Any, ...] | None:
        """Return a reduction that ships array through shared memory, or None to pickle it."""
        nbytes = array.nbytes
        if array.dtype.hasobject or nbytes == 0:
            self._count("pickled", nbytes)
            return None
        found = _arrayref.locate(array)
        if found is not None:
            buffer, offset = found
            handover = self.handover and _segments.is_owned(buffer)
            if handover:
                _segments.disown(buffer)
            lease = _pool.current_lease(buffer)
            self.pinned.append(buffer if lease is None else lease)
            self.buffers.append(buffer)
            self._count("by_reference", nbytes)
            ref = _arrayref.describe(array, buffer, offset, handover=handover, lent=lease is not None)
            return (_rebuild, _arrayref.pack(ref))
        if nbytes >= self.policy.min_nbytes:
            try:
                return self._copy_into_segment(array)
            except SegmentError as exc:
                warnings.warn(f"{exc}; pickling this array instead", SharedMemoryFullWarning, stacklevel=2)
        self._count("pickled", nbytes)
        return _exact_reduction(array)

    def _copy_into_segment(self, array: NDArray[Any]) -> tuple[Any, ...]:
        base: Any  # the mapping, or a lease or per-task root over it
        spare = self._take_spare(array.nbytes)
        if spare is not None:
            buffer, base = spare
            lent, handover, scratch = True, False, False
        else:
            buffer, lease = self.allocate(array.nbytes)
            base = buffer if lease is None else lease
            lent, handover = lease is not None, self.handover
            scratch = True  # a copy for this transfer alone (see ArrayRef.scratch)
            if lent:
                self.scratch_sizes.append(len(buffer))
        order = _arrayref.layout_order(array)
        copy: NDArray[Any] = np.ndarray(array.shape, array.dtype, buffer=base, order=order)
        np.copyto(copy, array, casting="no")
        if handover:
            _segments.disown(buffer)
        self.pinned.append(base)
        self.buffers.append(buffer)
        self.copied_nbytes = max(self.copied_nbytes, array.nbytes)
        self._count("copied", array.nbytes)
        ref = _arrayref.ArrayRef(
            buffer.name, 0, copy.shape, copy.strides, copy.dtype, True, handover, lent, scratch
        )
        return (_rebuild, _arrayref.pack(ref))

    def _take_spare(self, nbytes: int) -> tuple[_segments.SegmentBuffer, NDArray[Any]] | None:
        """Remove and return the smallest spare segment that fits nbytes (see _pool.fits), if any."""
        fitting = [index for index, (buffer, _) in enumerate(self.spare) if _pool.fits(len(buffer), nbytes)]
        if not fitting:
            return None
        return self.spare.pop(min(fitting, key=lambda index: len(self.spare[index][0])))

    def _count(self, path: str, nbytes: int) -> None:
        tally = self.tally
        tally[f"arrays_{path}"] = tally.get(f"arrays_{path}", 0) + 1
        tally[f"bytes_{path}"] = tally.get(f"bytes_{path}", 0) + nbytes


def _exact_reduction(array: NDArray[Any]) -> tuple[Any, ...] | None:
    """NumPy's own pickling, except where it would not give what ProcessPoolExecutor gives.

    - Protocol 5 rebuilds a read-only array read-only; ProcessPoolExecutor (protocol 4
      before 3.14) hands the receiver a writable copy, and so do we.
    - NumPy pickles a non-contiguous array through a copy in *native* byte order, so a
      strided ``>i4`` array would come back as ``<i4`` (same values, other dtype).

    In both cases we pickle a writable copy in the array's own dtype and layout; it
    costs little, these arrays are small and NumPy copies non-contiguous ones anyway.
    """
    contiguous = array.flags.c_contiguous or array.flags.f_contiguous
    if array.flags.writeable and (contiguous or array.dtype.isnative):
        return None
    copy = np.array(array, copy=True, order="K")
    reduced: tuple[Any, ...] = copy.__reduce_ex__(_PROTOCOL)  # type: ignore[assignment]
    return reduced


class DecodeSession:
    """One decode pass in the parent.

    Views of recycled segments are made from their lease, so the segment is not reused
    while they live; segments handed over by a worker are adopted, and those it copied
    a result into (it keeps no view of them) are leased from pool: their pages are warm.
    """

    __slots__ = ("on_handover", "pool")

    def __init__(
        self,
        on_handover: Callable[[_segments.SegmentBuffer], None] | None = None,
        pool: _pool.SegmentPool | None = None,
    ) -> None:
        self.on_handover = on_handover
        self.pool = pool

    def base_for(self, buffer: _segments.SegmentBuffer, ref: _arrayref.ArrayRef) -> Any:
        """Return what views of buffer are made from."""
        lease = _pool.current_lease(buffer)
        if lease is None and ref.scratch and ref.handover and self.pool is not None:
            lease = _pool.lease(buffer, self.pool)
        return buffer if lease is None else lease


class TaskDecodeSession(DecodeSession):
    """A worker's decode of one task.

    Views of lent (recycled) segments are made from a root per task, so that after the
    call we can tell whether the function kept any of them.
    """

    __slots__ = ("_roots", "_spare", "buffers")

    def __init__(self) -> None:
        super().__init__()
        self._roots: dict[str, weakref.ref[NDArray[Any]]] = {}
        # Every mapping the task used: the worker keeps them for the next tasks.
        self.buffers: dict[str, _segments.SegmentBuffer] = {}
        # Lent segments the result may overwrite once nothing views them (see spare).
        self._spare: dict[str, _segments.SegmentBuffer] = {}

    def base_for(self, buffer: _segments.SegmentBuffer, ref: _arrayref.ArrayRef) -> Any:
        """Return a per-task root for lent segments, the mapping otherwise."""
        self.buffers[buffer.name] = buffer
        if ref.scratch and ref.lent:  # views of it have a root: kept() can see them
            self._spare[buffer.name] = buffer
        return self.root(buffer) if ref.lent else buffer

    def lent_for_result(self, buffer: _segments.SegmentBuffer) -> None:
        """Record the segment the parent lent for this task's result."""
        self.buffers[buffer.name] = buffer
        self._spare[buffer.name] = buffer

    def spare(self) -> list[tuple[_segments.SegmentBuffer, NDArray[Any]]]:
        """Segments the result may be written into: lent for it, or copied arguments nothing views.

        Call once the function and its arguments are gone, while the result lives: a
        result that is a view of a copied argument keeps that segment out.
        """
        kept = set(self.kept())
        return [(buffer, self.root(buffer)) for name, buffer in self._spare.items() if name not in kept]

    def root(self, buffer: _segments.SegmentBuffer) -> NDArray[Any]:
        """Return this task's root over a lent segment, making it on first use."""
        ref = self._roots.get(buffer.name)
        root = None if ref is None else ref()
        if root is None:
            root = np.frombuffer(buffer, dtype=np.uint8)
            self._roots[buffer.name] = weakref.ref(root)
            self.buffers[buffer.name] = buffer
        return root

    def kept(self) -> list[str]:
        """Names of lent segments something still views (call once the task's locals are gone)."""
        if not self._roots:
            return []
        return [name for name, ref in self._roots.items() if ref() is not None]


_DECODING = threading.local()


def _rebuild(*fields: Any) -> NDArray[Any]:
    ref = _arrayref.ArrayRef(*fields)
    session: DecodeSession | None = getattr(_DECODING, "session", None)
    base_for = None if session is None else partial(_base_for, session, ref)
    try:
        array, buffer = _arrayref.rebuild(ref, base_for)
    except SegmentError:
        if ref.handover:  # it was handed to us: its registration is ours to end
            _segments.unlink(ref.name, unregister_if_gone=True)
        raise
    if ref.handover:
        _segments.take_ownership(buffer)
        if session is not None and session.on_handover is not None:
            session.on_handover(buffer)
    return array


def _base_for(session: DecodeSession, ref: _arrayref.ArrayRef, buffer: _segments.SegmentBuffer) -> Any:
    return session.base_for(buffer, ref)


def _dispatch_table() -> dict[type, Any]:
    """Return the reducers: cloudpickle's over ForkingPickler's (sockets...) and copyreg's.

    A plain dict, rebuilt when a registry grows: cloudpickle's own ChainMap costs a
    Python-level lookup for every object the C pickler saves (~15 us per tiny task).
    """
    extra: dict[type, Any] = ForkingPickler._extra_reducers  # type: ignore[attr-defined]
    key = (len(copyreg.dispatch_table), len(extra))
    if _DISPATCH[0] != key:
        # cloudpickle's own reducers (a fixed table) win, as in its ChainMap.
        merged = {**copyreg.dispatch_table, **extra, **cloudpickle.Pickler.dispatch_table}
        _DISPATCH[:] = [key, merged]
    table: dict[type, Any] = _DISPATCH[1]
    return table


_DISPATCH: list[Any] = [None, {}]
# Functions and classes cloudpickle sends by reference, remembered: deciding costs
# ~8 us each time, and map() sends the same function with every chunk.
_BY_REFERENCE: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


class _ArgumentPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no types
    dispatch_table: dict[type, Any]  # per instance, read by the C pickler at init

    def __init__(self, file: io.BytesIO, session: EncodeSession) -> None:
        self.dispatch_table = _dispatch_table()
        super().__init__(file, protocol=_PROTOCOL)
        self._session = session

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is np.ndarray or kind is np.memmap:
            return self._session.reduce_array(obj) or NotImplemented
        if kind is types.FunctionType and obj.__module__ == "__main__":
            reduced = _reduce_main_function(obj)
            if reduced is not None:
                return reduced
        if kind is types.FunctionType or isinstance(obj, type):
            if _BY_REFERENCE.get(obj, False):
                return NotImplemented
            reduced = super().reducer_override(obj)
            if reduced is NotImplemented:
                _BY_REFERENCE[obj] = True
            return reduced
        return super().reducer_override(obj)


class _ResultPickler(ForkingPickler):
    def __init__(self, file: io.BytesIO, session: EncodeSession) -> None:
        super().__init__(file, _PROTOCOL)
        self._session = session

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is np.ndarray or kind is np.memmap:
            return self._session.reduce_array(obj) or NotImplemented
        return NotImplemented


# map() submits the same partial(run_chunk, fn) with every chunk that holds arrays; pickling it
# (with a __main__ function's by-value fallback) each time cost ~10 us per tiny task.
# Its encoding is kept for as long as that partial lives, unless it holds arrays; so is a
# function's that is sent by reference (~8 us per task through submit()).
_CALLABLES: weakref.WeakKeyDictionary[Any, tuple[bytes, bool]] = weakref.WeakKeyDictionary()


def encode_callable(fn: Any, session: EncodeSession) -> tuple[bytes, bool]:
    """Pickle a task's callable; return its bytes and whether a worker may cache them."""
    kind = type(fn)
    cached = _CALLABLES.get(fn) if kind is partial or kind is types.FunctionType else None
    if cached is not None:
        return cached
    before = len(session.pinned), dict(session.tally)
    data = encode_call(fn, session)
    cacheable = (len(session.pinned), session.tally) == before and is_reusable(fn)  # no array inside
    # A function's bytes are only its name once cloudpickle chose to send it by reference.
    if cacheable and (kind is partial or _BY_REFERENCE.get(fn, False)):
        _CALLABLES[fn] = (data, True)
    return data, cacheable


def is_reusable(fn: Any) -> bool:
    """Whether fn has no state of its own, so that decoding it once per worker is safe.

    True for functions and classes (their state lives in their module, as with
    ProcessPoolExecutor; a closure's cells are decoded once per worker) and partials
    of them over immutable values. Not for callable objects, bound methods or partials
    over lists: pickled per task, each task gets its own copy of their state, and a
    partial's list may change between tasks.
    """
    kind = type(fn)
    if kind is types.FunctionType or isinstance(fn, type):
        return True
    if kind is types.BuiltinFunctionType:
        return fn.__self__ is None or isinstance(fn.__self__, types.ModuleType)
    if kind is partial:
        return is_reusable(fn.func) and all(map(_is_immutable, (*fn.args, *fn.keywords.values())))
    return False


def _is_immutable(value: Any) -> bool:
    if type(value) in _PLAIN_TYPES:
        return True
    if type(value) is tuple:
        return all(map(_is_immutable, value))
    return is_reusable(value)


class _NotPlain(Exception):
    """Raised by _PlainPickler at the first object that needs our pickler."""


class _SessionPickler(pickle.Pickler):
    """A pickler that carries the current dump's session (kept per thread, see _ReusedPickler)."""

    session: EncodeSession | None = None


class _PlainPickler(_SessionPickler):
    """Plain pickle that gives up at the first object it does not handle natively.

    The C pickler consults reducer_override only for objects other than None, bools
    and exact int, float, bytes, str, dict, set, frozenset, list and tuple instances,
    so a call made of those (map() over numbers sends ``((x,),)``) is pickled at C
    speed, without our pickler's set-up: that is most of a tiny task's encoding.
    """

    def reducer_override(self, obj: Any) -> Any:
        raise _NotPlain


class _SimpleCallPickler(_SessionPickler):
    """Plain pickle that shares arrays, for calls made only of scalars, strings and arrays.

    In such a call (see encode_task) the only objects pickle does not handle natively
    are the arrays and what NumPy's own pickling of a small one is made of (NumPy's
    functions, classes and dtypes, all importable): none needs cloudpickle, whose
    pickler costs ~5 us to make and a Python-level hook per object.
    """

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and self.session is not None:
            return self.session.reduce_array(obj) or NotImplemented
        return NotImplemented


class _ReusedPickler(threading.local):
    """A pickler and its buffer per thread, reused: making them costs more than a dump."""

    def __init__(self, kind: type[_SessionPickler]) -> None:
        self.buffer = io.BytesIO()
        self.pickler = kind(self.buffer, _PROTOCOL)
        self.busy = False  # a dump that runs our code (arrays) could, in theory, re-enter

    def dumps(self, value: Any, session: EncodeSession | None = None) -> bytes:
        if self.busy:  # re-entered: a pickler of its own
            buffer = io.BytesIO()
            return _dump(type(self.pickler)(buffer, _PROTOCOL), buffer, value, session)
        self.busy = True
        try:
            return _dump(self.pickler, self.buffer, value, session)
        finally:
            self.busy = False


def _dump(pickler: _SessionPickler, buffer: io.BytesIO, value: Any, session: EncodeSession | None) -> bytes:
    pickler.session = session
    try:
        pickler.dump(value)
        return buffer.getvalue()
    finally:
        pickler.session = None
        pickler.clear_memo()  # the memo holds references to what it pickled
        buffer.seek(0)
        buffer.truncate()  # and the buffer would hold on to a large payload


_PLAIN = _ReusedPickler(_PlainPickler)
_SIMPLE_CALL = _ReusedPickler(_SimpleCallPickler)


def encode_plain(value: Any) -> bytes | None:
    """Pickle value if it is made only of what pickle handles natively, else return None.

    No code of ours or the caller's runs during the dump, so reusing the pickler is safe.
    """
    try:
        return _PLAIN.dumps(value)
    except _NotPlain:
        return None


def encode_task(
    function: tuple[bytes, bool], args: tuple[Any, ...], kwargs: dict[str, Any], session: EncodeSession
) -> bytes:
    """Pickle a task's encoded callable and its arguments, sharing their large arrays."""
    if _simple(args) and _simple(kwargs.values()):
        return _SIMPLE_CALL.dumps((function, args, kwargs), session)
    return encode_call((function, args, kwargs), session)


def _simple(values: Iterable[Any]) -> bool:
    """Whether every value is a scalar, a string or an ndarray of a plain dtype.

    Not object arrays, nor structured dtypes or dtypes with metadata: what those hold
    may need cloudpickle.
    """
    for value in values:
        kind = type(value)
        if kind in _PLAIN_TYPES:
            continue
        if kind is not np.ndarray:
            return False
        dtype = value.dtype
        if dtype.hasobject or dtype.fields is not None or dtype.metadata is not None:
            return False
    return True


def encode_call(call: Any, session: EncodeSession) -> bytes:
    """Pickle a call (or any object), sharing its large arrays."""
    plain = encode_plain(call)
    if plain is not None:
        return plain
    buffer = io.BytesIO()
    _ArgumentPickler(buffer, session).dump(call)
    return buffer.getvalue()


class _ArrayFreeSession(EncodeSession):
    """A session that gives up at the first array (see encode_function)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(SharingPolicy(), _no_segments, handover=False)

    def reduce_array(self, array: NDArray[Any]) -> tuple[Any, ...] | None:
        raise _NotPlain


def _no_segments(nbytes: int) -> tuple[_segments.SegmentBuffer, NDArray[Any] | None]:
    raise AssertionError  # _ArrayFreeSession never asks


def encode_function(fn: Any) -> tuple[bytes, bool] | None:
    """Pickle map()'s function once for all its chunks, or return None if it cannot be.

    Not if it holds an array, which would be pinned (or copied) for as long as the
    bytes are reused; nor if it fails to pickle, which the per-task path reports in
    the task's future, as ProcessPoolExecutor does. Returns the bytes and whether
    workers may keep what they decode (see is_reusable).
    """
    try:
        return encode_call(fn, _ArrayFreeSession()), is_reusable(fn)
    except Exception:  # reported per task instead (see above)
        return None


def encode_result(result: Any, session: EncodeSession) -> bytes:
    """Pickle a task's result, sharing its large arrays."""
    buffer = io.BytesIO()
    _ResultPickler(buffer, session).dump(result)
    return buffer.getvalue()


def is_plain(value: Any, depth: int = 4) -> bool:
    """Whether value is scalars and strings in a few levels of short tuples, lists and dicts.

    Such a value holds no array, so it needs no encoding: a worker returns it as it is
    (map() returns ``[y]`` per task). Loops, not generators: this runs for every task.
    """
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return True
    if depth == 0 or kind not in _PLAIN_CONTAINERS or len(value) > _PLAIN_SCAN_MAX:
        return False  # a long container is not worth a scan in Python: the pickler looks
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        value = value.values()
    for item in value:  # noqa: SIM110 - all() over a generator costs twice as much
        if type(item) not in _PLAIN_TYPES and not is_plain(item, depth - 1):
            return False
    return True


def decode(payload: bytes, session: DecodeSession | None = None) -> Any:
    """Unpickle a payload, mapping the segments its ArrayRefs name.

    Raises:
        SegmentError: a segment is gone or a descriptor is out of bounds.
    """
    _DECODING.session = session
    try:
        return pickle.loads(payload)
    finally:
        _DECODING.session = None


# --- functions defined in __main__ -------------------------------------------------
# cloudpickle pickles every __main__ function by value, with a private copy of its
# globals, so a global set by an initializer would be invisible to it (fact 10). We
# send the qualified name, which the worker resolves in its own __main__ (the parent's
# under fork, the re-imported script under spawn and forkserver), and a by-value copy
# for when it cannot (a notebook, ``python -c``, a function defined after the fork).


def _reduce_main_function(fn: types.FunctionType) -> tuple[Any, ...] | None:
    qualname = fn.__qualname__
    if "<" in qualname or _lookup(sys.modules["__main__"], qualname) is not fn:
        return None  # a lambda or local function has no name to resolve
    return (_resolve_main_function, (qualname, _fingerprint(fn.__code__), _by_value(fn)))


def _lookup(module: types.ModuleType | None, qualname: str) -> Any:
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target


@lru_cache(maxsize=256)
def _fingerprint(code: types.CodeType) -> int:
    """Identify a function's code across processes (not its file path: spawn makes it absolute)."""
    consts = tuple(repr(c) for c in code.co_consts if not isinstance(c, types.CodeType))
    names = "\0".join((*code.co_names, *code.co_varnames, *consts))
    return zlib.crc32(code.co_code + names.encode("utf-8", "surrogatepass"))


# By-value copies are cached per function while its code, defaults and the globals it
# names are the same objects: pickling one costs ~50 us and map() sends it per chunk.
_BY_VALUE: weakref.WeakKeyDictionary[types.FunctionType, tuple[tuple[Any, ...], bytes]] = (
    weakref.WeakKeyDictionary()
)


def _by_value(fn: types.FunctionType) -> bytes:
    names = fn.__code__.co_names
    snapshot = (fn.__code__, fn.__defaults__, fn.__kwdefaults__, *(fn.__globals__.get(n) for n in names))
    cached = _BY_VALUE.get(fn)
    if cached is not None and len(cached[0]) == len(snapshot) and all(map(_same, cached[0], snapshot)):
        return cached[1]
    data: bytes = cloudpickle.dumps(fn, protocol=_PROTOCOL)
    _BY_VALUE[fn] = (snapshot, data)
    return data


def _same(a: object, b: object) -> bool:
    return a is b


def _resolve_main_function(qualname: str, fingerprint: int, by_value: bytes) -> Any:
    target = _lookup(sys.modules.get("__main__"), qualname)
    if isinstance(target, types.FunctionType) and _fingerprint(target.__code__) == fingerprint:
        return target
    return pickle.loads(by_value)
