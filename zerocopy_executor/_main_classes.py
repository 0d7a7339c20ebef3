"""Classes pickled by value: one class per class in every process, never two.

cloudpickle rebuilds a class that pickle cannot find by name (a local class) by value,
and tracks its identity: every copy of one class a process receives is one class, and
the original comes back to the process that sent it. It would also fill that class
again with the copy's state, replacing the original's methods with copies whose
globals are not its module's: a class rebuilt by value never overwrites one of the
receiver's own, so a result's class that the parent sent by value comes back as the
parent's own class, its methods and attributes untouched.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from typing import Any

import cloudpickle.cloudpickle as _cloudpickle

__all__ = ["is_named", "reduce_class"]


def _lookup(module: object, qualname: str) -> Any:
    target = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target


def is_named(obj: Any) -> bool:
    """Whether pickle finds obj (a class or a function) by its module and qualified name."""
    name = getattr(obj, "__module__", None)
    module = sys.modules.get(name) if isinstance(name, str) else None
    qualname = getattr(obj, "__qualname__", None)
    if module is None or not isinstance(qualname, str) or "<" in qualname:
        return False
    try:
        return _lookup(module, qualname) is obj
    except Exception:  # a module attribute that fails to load: not found by name
        return False


def reduce_class(cls: type) -> Any:
    """Reduce a class as cloudpickle does: NotImplemented by reference, else by value.

    By value, the receiver rebuilds it only if it is not a class of its own (see
    _rebuild_class).
    """
    reduced = _cloudpickle._class_reduce(cls)
    if isinstance(reduced, tuple) and len(reduced) == 6 and reduced[5] is _cloudpickle._class_setstate:
        make, args, state = reduced[:3]
        tracker_id = _cloudpickle._get_or_create_tracker_id(cls)  # the id cloudpickle put in args
        return (_rebuild_class, (tracker_id, make, args), state, None, None, _set_class_state)
    return reduced


# Classes this process rebuilt by value (a received copy is updated by the next one).
_REBUILT: weakref.WeakSet[type] = weakref.WeakSet()


def _rebuild_class(tracker_id: str, make: Callable[..., type], args: tuple[Any, ...]) -> type:
    """Rebuild a class sent by value, unless it is one of this process's own classes.

    cloudpickle hands back the class it has seen under the same id: in the parent, the
    original of a class it sent by value; filling it again would replace its methods
    with copies whose globals are not the module's. The original stays as it is.
    """
    existing: type | None = _cloudpickle._DYNAMIC_CLASS_TRACKER_BY_ID.get(tracker_id)
    if existing is not None and existing not in _REBUILT:
        return existing
    cls = make(*args)  # the copy received before under that id, if any (cloudpickle's tracking)
    _REBUILT.add(cls)
    return cls


def _set_class_state(cls: type, state: Any) -> type:
    """Fill a class rebuilt by value; leave a class of this process's own as it is."""
    if cls not in _REBUILT:
        return cls
    filled: type = _cloudpickle._class_setstate(cls, state)
    return filled
