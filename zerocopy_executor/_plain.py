"""Plain values: the three questions the package asks of a value that may hold no array.

- is_plain: a result of scalars and strings in short containers needs no encoding (a
  worker returns it as it is: map() returns ``[y]`` per task).
- is_immutable: a value that cannot change in place, so bytes pickled from it once can
  be sent again (a partial's arguments, the globals a ``__main__`` function names).
- same_value: equality that never calls an array's elementwise ``==`` (comparing two
  executors' initializer arguments).
"""

from __future__ import annotations

import types
from typing import Any

__all__ = ["PLAIN_TYPES", "is_immutable", "is_plain", "same_value"]

# Exact types, not subclasses: a subclass may hold state of its own (an attribute
# dictionary) and may change ``==`` or pickling.
PLAIN_TYPES: frozenset[type] = frozenset({int, float, complex, str, bytes, bool, type(None)})
_PLAIN_CONTAINERS = frozenset({tuple, list, dict})
_PLAIN_SCAN_MAX = 16  # items per container
_PLAIN_TUPLE = tuple(PLAIN_TYPES)  # for isinstance


def is_plain(value: Any, depth: int = 4) -> bool:
    """Whether value is scalars and strings in a few levels of short tuples, lists and dicts.

    Loops, not generators: this runs for every task.
    """
    kind = type(value)
    if kind in PLAIN_TYPES:
        return True
    if depth == 0 or kind not in _PLAIN_CONTAINERS or len(value) > _PLAIN_SCAN_MAX:
        return False  # a long container is not worth a scan in Python: the pickler looks
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        value = value.values()
    for item in value:  # noqa: SIM110 - all() over a generator costs twice as much
        if type(item) not in PLAIN_TYPES and not is_plain(item, depth - 1):
            return False
    return True


def is_immutable(value: object) -> bool:
    """Whether value cannot change in place: plain values, code and namespaces, and tuples of them.

    Functions, classes and modules count: what they name is looked up when they run,
    and pickling sends them by reference. A builtin counts only if bound to a module
    (``len``, ``math.sqrt``), not to an object whose state it changes (``[].append``).
    """
    kind = type(value)
    if (
        kind in PLAIN_TYPES
        or kind is types.FunctionType
        or kind is types.ModuleType
        or isinstance(value, type)
    ):
        return True
    if kind is types.BuiltinFunctionType:
        owner = value.__self__  # type: ignore[attr-defined]
        return owner is None or type(owner) is types.ModuleType
    if kind is tuple or kind is frozenset:
        return all(map(is_immutable, value))  # type: ignore[call-overload]
    return False


def same_value(a: object, b: object) -> bool:
    """Equal plain values (also in tuples, lists and dicts), or the same object.

    Anything else compares by identity: an array's ``==`` is elementwise. Subclasses of
    the plain types count here (NumPy scalars compare as numbers).
    """
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return isinstance(a, _PLAIN_TUPLE) and a == b
