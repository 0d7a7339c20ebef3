"""The picklers: cloudpickle for calls, ForkingPickler for results, plain pickle when it will do.

Arguments are pickled with a cloudpickle Pickler (lambdas and ``__main__`` functions
work under every start method), by reference first (by value, a function would carry
its own copy of its globals and miss what an initializer set), ``__main__``
classes by name wherever workers have them (see _main_classes); results with the
same pickler class as ProcessPoolExecutor (``ForkingPickler``), and only what that
refuses by value (see _results_by_value). Both hand everything they do not own
back to their parent class (``reducer_override`` returns NotImplemented), and the C
pickler only consults it for objects that are not built-in containers or scalars,
so a payload without arrays pays almost nothing extra. Calls made only of what
pickle handles natively skip all of that (``PLAIN``, ``SIMPLE_CALL``).
"""

from __future__ import annotations

import copyreg
import io
import marshal
import pickle
import threading
import types
import weakref
from multiprocessing.reduction import ForkingPickler
from typing import Any

import cloudpickle
import numpy as np

from . import _main_classes, _main_functions
from ._decoding import Payload
from ._encoding import PROTOCOL, EncodeSession

__all__ = [
    "BY_REFERENCE",
    "PLAIN",
    "SIMPLE_CALL",
    "ArgumentPickler",
    "NotPlain",
    "ResultPickler",
    "dumps_by_value",
    "dumps_class_by_value",
    "reduce_code",
]


def _dispatch_table() -> dict[type, Any]:
    """Return the reducers: cloudpickle's over ForkingPickler's (sockets...) and copyreg's.

    A plain dict, rebuilt when a registry grows: cloudpickle's own ChainMap costs a
    Python-level lookup for every object the C pickler saves (~15 us per tiny task).
    """
    extra: dict[type, Any] = ForkingPickler._extra_reducers  # type: ignore[attr-defined]
    key = (len(copyreg.dispatch_table), len(extra))
    if _DISPATCH[0] != key:
        # cloudpickle's own reducers (a fixed table) win, as in its ChainMap; but code keeps
        # its file name (see reduce_code).
        merged = {**copyreg.dispatch_table, **extra, **cloudpickle.Pickler.dispatch_table}
        merged[types.CodeType] = reduce_code
        _DISPATCH[:] = [key, merged]
    table: dict[type, Any] = _DISPATCH[1]
    return table


_DISPATCH: list[Any] = [None, {}]


def reduce_code(code: types.CodeType) -> tuple[Any, ...]:
    """Pickle code sent by value whole, its file name and line table included.

    cloudpickle renames it ``<dynamic-code>``, so a worker's traceback
    of a lambda or a notebook function would show no file and no source line, where
    ProcessPoolExecutor's (by reference) shows both. Workers run this same interpreter,
    so marshal's format, which is CPython's own for code, is the one to use.
    """
    try:
        return (marshal.loads, (marshal.dumps(code),))
    except ValueError:  # a constant marshal cannot hold (code built by hand)
        reduced: tuple[Any, ...] = cloudpickle.cloudpickle._code_reduce(code)
        return reduced


def _reduce_method(method: types.MethodType) -> tuple[Any, ...] | None:
    """Pickle a bound method by reference, as pickle does: its object and its name.

    cloudpickle pickles the method's function by value whenever it is not reachable
    by its qualified name, which is the case for a classmethod: the traceback then
    loses its file (CPython's ``test_traceback``). None if getattr would not find it.
    """
    name = method.__func__.__name__
    try:
        found = getattr(method.__self__, name, None) == method
    except Exception:  # a property or __getattr__ that fails: leave it to cloudpickle
        found = False
    return (getattr, (method.__self__, name)) if found else None


# Functions and classes cloudpickle sends by reference, remembered: deciding costs
# ~8 us each time, and map() sends the same function with every chunk.
BY_REFERENCE: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


class ArgumentPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no types
    dispatch_table: dict[type, Any]  # per instance, read by the C pickler at init

    def __init__(self, file: io.BytesIO, session: EncodeSession) -> None:
        self.dispatch_table = _dispatch_table()
        super().__init__(file, protocol=PROTOCOL, buffer_callback=session.buffer_callback)
        self._session = session

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is np.ndarray or kind is np.memmap:
            return self._session.reduce_array(obj) or NotImplemented
        if kind is types.FunctionType and obj.__module__ == "__main__":
            reduced = _main_functions.reduce_main_function(obj, dumps_by_value)
            if reduced is not None:
                return reduced
        if kind is types.MethodType:
            reduced = _reduce_method(obj)
            if reduced is not None:
                return reduced
        if kind is types.FunctionType or issubclass(kind, type):
            if BY_REFERENCE.get(obj, False):
                return NotImplemented
            if kind is types.FunctionType:
                reduced = super().reducer_override(obj)
            else:  # by name alone when workers re-import __main__ (see _main_classes)
                by_value = None if _main_classes.workers_import_main() else dumps_class_by_value
                reduced = _reduce_class(obj, by_value)
            if reduced is NotImplemented:
                BY_REFERENCE[obj] = True
            return reduced
        return super().reducer_override(obj)


def _reduce_class(cls: type, dumps_class: Any) -> Any:
    """A class by reference, or by value; a ``__main__`` class as _main_classes decides."""
    if cls.__module__ == "__main__":
        reduced = _main_classes.reduce_main_class(cls, dumps_class)
        if reduced is not None:
            return reduced
    return _main_classes.reduce_class(cls)


class ResultPickler(ForkingPickler):
    def __init__(self, file: io.BytesIO, session: EncodeSession) -> None:
        # ForkingPickler.__init__ passes on positional arguments only, and buffer_callback
        # is keyword-only: do what it does (its reducers over copyreg's) around Pickler's.
        pickle.Pickler.__init__(self, file, PROTOCOL, buffer_callback=session.buffer_callback)
        table: dict[type, Any] = ForkingPickler._copyreg_dispatch_table.copy()  # type: ignore[attr-defined]
        table.update(ForkingPickler._extra_reducers)  # type: ignore[attr-defined]
        self.dispatch_table = table
        self._session = session

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is np.ndarray or kind is np.memmap:
            return self._session.reduce_array(obj) or NotImplemented
        return NotImplemented


class NotPlain(Exception):
    """Raised by PlainPickler at the first object that needs our pickler."""


class _SessionPickler(pickle.Pickler):
    """A pickler that carries the current dump's session (kept per thread, see _ReusedPickler)."""

    session: EncodeSession | None = None

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, PROTOCOL, buffer_callback=self._on_buffer)

    def _on_buffer(self, buffer: pickle.PickleBuffer) -> bool:
        session = self.session
        return True if session is None else session.buffer_callback(buffer)


class PlainPickler(_SessionPickler):
    """Plain pickle that gives up at the first object it does not handle natively.

    The C pickler consults reducer_override only for objects other than None, bools
    and exact int, float, bytes, str, dict, set, frozenset, list and tuple instances,
    so a call made of those (map() over numbers sends ``((x,),)``) is pickled at C
    speed, without our pickler's set-up: that is most of a tiny task's encoding.
    """

    def reducer_override(self, obj: Any) -> Any:
        raise NotPlain


class SimpleCallPickler(_SessionPickler):
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
        self.pickler = kind(self.buffer)
        self.busy = False  # a dump that runs our code (arrays) could, in theory, re-enter

    def dumps(self, value: Any, session: EncodeSession | None = None) -> Payload:
        if self.busy:  # re-entered: a pickler of its own
            buffer = io.BytesIO()
            return _dump(type(self.pickler)(buffer), buffer, value, session)
        self.busy = True
        try:
            return _dump(self.pickler, self.buffer, value, session)
        finally:
            self.busy = False


def _dump(pickler: _SessionPickler, buffer: io.BytesIO, value: Any, session: EncodeSession | None) -> Payload:
    pickler.session = session
    start = 0 if session is None else len(session.out_of_band)
    try:
        pickler.dump(value)
        return buffer.getvalue() if session is None else session.payload(buffer.getvalue(), start)
    finally:
        pickler.session = None
        pickler.clear_memo()  # the memo holds references to what it pickled
        buffer.seek(0)
        buffer.truncate()  # and the buffer would hold on to a large payload


PLAIN = _ReusedPickler(PlainPickler)
SIMPLE_CALL = _ReusedPickler(SimpleCallPickler)


class _ByValuePickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no types
    """cloudpickle, with code objects kept whole (see reduce_code) and classes as _main_classes says.

    A ``__main__`` class goes by name with a by-value copy of its own, so that a
    receiver that has the class uses it (see _main_classes); the class being pickled
    by value (and any class that copy is made of) goes by value inline.
    """

    dispatch_table: dict[type, Any]

    def __init__(self, file: io.BytesIO) -> None:
        self.dispatch_table = _dispatch_table()
        super().__init__(file, protocol=PROTOCOL)

    def reducer_override(self, obj: Any) -> Any:
        if issubclass(type(obj), type):
            if any(root is obj for root in _by_value_roots()):
                return _main_classes.reduce_class(obj)
            return _reduce_class(obj, dumps_class_by_value)
        return super().reducer_override(obj)


_ROOTS = threading.local()


def _by_value_roots() -> list[type]:
    """The classes this thread is pickling by value, outermost first."""
    roots: list[type] = _ROOTS.__dict__.setdefault("classes", [])
    return roots


def dumps_by_value(fn: types.FunctionType) -> bytes:
    """Pickle a function by value (cloudpickle), its code with its file name."""
    buffer = io.BytesIO()
    _ByValuePickler(buffer).dump(fn)
    return buffer.getvalue()


def dumps_class_by_value(cls: type) -> bytes:
    """Pickle a class by value, whole: its methods belong to the copy, not to a class found by name."""
    roots = _by_value_roots()
    roots.append(cls)
    try:
        buffer = io.BytesIO()
        _ByValuePickler(buffer).dump(cls)
        return buffer.getvalue()
    finally:
        roots.pop()
