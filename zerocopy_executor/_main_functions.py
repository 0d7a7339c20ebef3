"""Functions defined in ``__main__``: sent by name, so a worker uses its own.

cloudpickle pickles every ``__main__`` function by value, with a private copy of its
globals, so a global set by an initializer would be invisible to it. We send the
qualified name, which the worker resolves in its own ``__main__`` (the parent's under
fork, the re-imported script under spawn and forkserver), with a fingerprint of the code
to check it is the same function, and a by-value copy for when it is not (a notebook,
``python -c``, a function redefined after the fork). A function
whose globals cannot be pickled (a lock or a shared ctypes value inherited under fork)
goes by name alone, as pickle sends it.
"""

from __future__ import annotations

import pickle
import sys
import types
import weakref
import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ._plain import is_immutable

__all__ = ["reduce_main_function"]


def reduce_main_function(
    fn: types.FunctionType, dumps_by_value: Callable[[types.FunctionType], bytes]
) -> tuple[Any, ...] | None:
    """Return a reduction that resolves fn by name in the worker, or None if it has no name."""
    qualname = fn.__qualname__
    if "<" in qualname or _lookup(sys.modules["__main__"], qualname) is not fn:
        return None  # a lambda or local function has no name to resolve
    return (_resolve_main_function, (qualname, _fingerprint(fn.__code__), _by_value(fn, dumps_by_value)))


def _lookup(module: types.ModuleType | None, qualname: str) -> Any:
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target


@lru_cache(maxsize=256)
def _fingerprint(code: types.CodeType) -> int:
    """Identify a function's code across processes, whatever their hash seeds.

    Not its file path (spawn makes it absolute), and not the repr of its constants: a
    set literal is a frozenset constant whose order, so whose repr, depends on the
    process's hash seed.
    """
    return zlib.crc32(_stable_text(code).encode("utf-8", "surrogatepass"))


def _stable_text(value: Any) -> str:
    """A text for value that is the same in every process (constants of code, and code)."""
    if isinstance(value, types.CodeType):
        consts = map(_stable_text, value.co_consts)
        parts = (value.co_code.hex(), *value.co_names, *value.co_varnames, *consts)
        return "code(" + "\0".join(parts) + ")"
    if isinstance(value, frozenset):
        return "frozenset(" + ",".join(sorted(map(_stable_text, value))) + ")"
    if isinstance(value, tuple):
        return "(" + ",".join(map(_stable_text, value)) + ")"
    return repr(value)


# By-value copies are cached per function while its code, defaults and the globals it
# names are the same objects: pickling one costs ~50 us and map() sends it per chunk.
_BY_VALUE: weakref.WeakKeyDictionary[types.FunctionType, tuple[tuple[Any, ...], bytes]] = (
    weakref.WeakKeyDictionary()
)


def _by_value(fn: types.FunctionType, dumps_by_value: Callable[[types.FunctionType], bytes]) -> bytes | None:
    names = fn.__code__.co_names
    snapshot = (fn.__code__, fn.__defaults__, fn.__kwdefaults__, *(fn.__globals__.get(n) for n in names))
    cached = _BY_VALUE.get(fn)
    if cached is not None and len(cached[0]) == len(snapshot) and all(map(_same, cached[0], snapshot)):
        return cached[1]
    try:
        data = dumps_by_value(fn)
    except Exception:  # whatever its globals raise, pickle's by-name path remains
        return None
    # Only while what it names and its defaults cannot change in place: a global array
    # (or a default list) written to since would otherwise be sent as it was.
    defaults = (*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values())
    if all(is_immutable(value) for value in (*snapshot[3:], *defaults)):
        _BY_VALUE[fn] = (snapshot, data)
    return data


def _same(a: object, b: object) -> bool:
    return a is b


def _resolve_main_function(qualname: str, fingerprint: int, by_value: bytes | None) -> Any:
    main = sys.modules.get("__main__")
    target = _lookup(main, qualname)
    if isinstance(target, types.FunctionType) and _fingerprint(target.__code__) == fingerprint:
        return target
    if by_value is not None:
        return pickle.loads(by_value)
    if target is None:  # what unpickling a reference to a missing function raises
        msg = f"Can't get attribute {qualname!r} on {main!r}"
        raise AttributeError(msg)
    return target  # by name, as pickle would resolve it
