"""Results pickle refuses, pickled by value (cloudpickle) instead, as loky returns them.

A worker pickles its result as ProcessPoolExecutor does (_picklers.ResultPickler).
Only if pickle refuses it does the worker pickle it again with ByValueResultPickler:
what pickle finds by name still goes by name, and only what it refused goes by
value: functions and classes it cannot find by name (lambdas, closures, local
classes, classes the worker itself received by value) and the objects cloudpickle
pickles and pickle does not (modules, properties, dict views...). A result that fails
both ways raises pickle's own error, as with ProcessPoolExecutor.
"""

from __future__ import annotations

import abc
import collections
import copyreg
import io
import pickle
import types
import weakref
from multiprocessing.reduction import ForkingPickler
from typing import Any

import cloudpickle
import numpy as np

from . import _main_classes
from ._encoding import PROTOCOL, EncodeSession
from ._picklers import reduce_code

__all__ = ["REFUSALS", "ByValueResultPickler"]

# What pickle raises when it refuses an object: "Can't pickle <function <lambda>>"
# (PicklingError), "Can't pickle local object" (AttributeError, 3.12 and 3.13),
# "cannot pickle 'module' object" (TypeError).
REFUSALS = (pickle.PicklingError, AttributeError, TypeError)

# Types whose instances pickle refuses and cloudpickle has a reducer for. Not the
# types pickle handles itself (bound methods, loggers, TypeVars): those stay as
# ProcessPoolExecutor pickles them.
_REFUSED_BY_PICKLE: tuple[type, ...] = (
    classmethod,
    staticmethod,
    property,
    abc.abstractclassmethod,
    abc.abstractstaticmethod,
    abc.abstractproperty,
    types.CellType,
    types.GetSetDescriptorType,
    types.MappingProxyType,
    types.ModuleType,
    memoryview,
    io.TextIOWrapper,
    weakref.WeakSet,
    type({}.keys()),
    type({}.values()),
    type({}.items()),
    type(collections.OrderedDict().keys()),
    type(collections.OrderedDict().values()),
    type(collections.OrderedDict().items()),
)


def _dispatch_table() -> dict[type, Any]:
    """ForkingPickler's reducers over copyreg's, over cloudpickle's for what pickle refuses."""
    cloud = cloudpickle.Pickler._dispatch_table
    table: dict[type, Any] = {kind: cloud[kind] for kind in _REFUSED_BY_PICKLE if kind in cloud}
    table[types.CodeType] = reduce_code
    table.update(copyreg.dispatch_table)
    table.update(ForkingPickler._extra_reducers)  # type: ignore[attr-defined]
    return table


class ByValueResultPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no types
    """Pickles a result as ResultPickler does, and by value what pickle refuses."""

    dispatch_table: dict[type, Any]  # per instance, read by the C pickler at init

    def __init__(self, file: io.BytesIO, session: EncodeSession) -> None:
        self.dispatch_table = _dispatch_table()
        super().__init__(file, protocol=PROTOCOL, buffer_callback=session.buffer_callback)
        self._session = session

    def dump(self, obj: Any) -> None:
        """Pickle obj; a RecursionError stays one, as with ProcessPoolExecutor (cloudpickle re-raises)."""
        pickle.Pickler.dump(self, obj)

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is np.ndarray or kind is np.memmap:
            return self._session.reduce_array(obj) or NotImplemented
        if kind is types.FunctionType:  # by name if pickle finds it, as ProcessPoolExecutor sends it
            return NotImplemented if _main_classes.is_named(obj) else self._function_reduce(obj)
        if issubclass(kind, type):
            return NotImplemented if _main_classes.is_named(obj) else _main_classes.reduce_class(obj)
        return NotImplemented
