"""Classes pickled by value, and classes defined in ``__main__``: one class, never two.

ProcessPoolExecutor pickles a ``__main__`` class by name; a worker finds it in its own
``__main__`` (the parent's under fork, the script re-imported under spawn and
forkserver). A class rebuilt by value where its methods resolve by name to the
worker's own class is two classes: ``super()`` raises ``TypeError``, ``isinstance``
is False, Enum members lose their identity. So:

- when workers re-import the script (``__main__`` is a file or an importable module,
  as multiprocessing decides), a ``__main__`` class goes by name alone, as pickle sends
  it;
- when they cannot (``python -c``, stdin, a notebook), it goes by name with a by-value
  copy made whole, the class with its methods; the worker uses its own class of that
  name if it has one (fork), the copy otherwise. cloudpickle tracks the copy's identity,
  so every copy of one class a process receives is one class;
- in a function's by-value copy (used where the worker lacks the function, see
  _main_functions), a ``__main__`` class always goes by name with a copy: the worker
  may lack the class too;
- a class rebuilt by value never overwrites one of the receiver's own: a result's
  class that the parent sent by value comes back as the parent's own class, its
  methods and attributes untouched.
"""

from __future__ import annotations

import os
import pickle
import sys
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import cloudpickle.cloudpickle as _cloudpickle

__all__ = ["is_named", "reduce_class", "reduce_main_class", "workers_import_main"]


def workers_import_main() -> bool:
    """Whether workers started by spawn or forkserver have this ``__main__``'s classes.

    As ``multiprocessing.spawn.get_preparation_data`` decides: a main module run by
    name is re-imported unless it is a package's ``__main__``; otherwise a main module
    is re-run from its file, if it has one (stdin's ``<stdin>`` is none).
    """
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None:
        return spec_name != "__main__" and not spec_name.endswith(".__main__")
    path = getattr(main, "__file__", None)
    return isinstance(path, str) and _is_file(path)


@lru_cache(maxsize=4)
def _is_file(path: str) -> bool:
    return os.path.isfile(path)


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


def reduce_main_class(cls: type, dumps_class: Callable[[type], bytes] | None) -> Any:
    """Reduce a ``__main__`` class: NotImplemented (by name), by name or value, or None.

    Args:
        cls: a class whose module is ``__main__``.
        dumps_class: makes its by-value copy; None to send it by name alone.

    Returns:
        NotImplemented to let pickle send it by name; a reduction the receiver
        resolves by name, else from the copy; None if it has no name to resolve.
    """
    if not is_named(cls):
        return None
    if dumps_class is None:
        return NotImplemented
    return (_resolve_main_class, (cls.__qualname__, dumps_class(cls)))


def _resolve_main_class(qualname: str, by_value: bytes) -> type:
    target = _lookup(sys.modules.get("__main__"), qualname)
    if isinstance(target, type):
        return target
    rebuilt: type = pickle.loads(by_value)
    return rebuilt


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
