"""One copy per Parallel call: a large array handed to many tasks of the call is shared once.

loky dumps each array argument of more than joblib's *max_nbytes* to a file once per
Parallel call, and every task of the call maps that file (read-only under joblib's
default *mmap_mode*, "r"). The joblib backend "zerocopy" does the same in shared memory::

    configure()    CallArrays(the executor's sharing state, max_nbytes, mmap_mode)
    submit(batch)  share_in(items): each plain ndarray of more than max_nbytes among a
                   task's arguments (also in tuples, lists and dicts of up to 64
                   items, three levels deep) becomes the call's copy of it, made in a
                   warm segment of the executor's pool the first time the call meets
                   that array, and sent by reference to every task that gets it
    terminate()    close(): the copies are forgotten; each segment goes back to the pool
                   once the tasks it was sent to are done

An array is known by identity, as loky's reducer knows it: by id, with a weak reference
so that the id cannot be reused by another array while its entry lives (an array the
call no longer holds, such as a temporary made per task, drops its entry and its copy).
As with loky, an array changed in place during the call is not copied again: its tasks
see it as it was when the call first met it.

*mmap_mode*: "r" makes the copy read-only in the tasks, as loky's memmaps (a write
raises "assignment destination is read-only"); "r+" and "w+" make it writable, one copy
shared by the call's tasks (the caller's array never changes); "c" and None share
nothing per call: each task gets its own writable copy, the executor's own path.
*max_nbytes* None shares nothing per call. Arrays already in shared memory or in a
memory-mapped file go by reference as they are. This is the joblib backend's behaviour
only: SharedArrayExecutor itself hands each task its own copy of a plain array.
"""

from __future__ import annotations

import threading
import weakref
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _arrayref, _blocks, _files
from ._errors import SegmentError
from ._sharing import SharingState

__all__ = ["CallArrays"]

# joblib's mmap_mode -> whether the tasks may write into the call's copy; a mode not
# listed ("c", None) shares nothing per call.
_WRITEABLE = {"r": False, "r+": True, "w+": True}
# How deep into a task's arguments (the args tuple is the first level), and how long a
# tuple, list or dict may be, for its arrays to be looked for.
_MAX_DEPTH = 3
_MAX_ITEMS = 64

Item = tuple[Any, tuple[Any, ...], dict[str, Any]]


class CallArrays:
    """The shared copies of one Parallel call's large array arguments.

    Args:
        state: the sharing state of the executor the call runs on; copies go into its
            pool's segments and count in its stats as copied (then by reference for
            every task that gets them).
        max_nbytes: arrays of more bytes are shared once per call (None: none is).
        mmap_mode: joblib's; see the module docstring.
    """

    def __init__(self, state: SharingState, max_nbytes: int | None, mmap_mode: str | None) -> None:
        self._state = state
        self._max_nbytes = max_nbytes
        self._writeable = _WRITEABLE.get(mmap_mode) if isinstance(mmap_mode, str) else None
        # Reentrant: a weak reference's callback may run in a thread that holds it.
        self._lock = threading.RLock()
        self._copies: dict[int, tuple[weakref.ref[NDArray[Any]], NDArray[Any]]] = {}

    @property
    def active(self) -> bool:
        """Whether this call shares anything (joblib's max_nbytes and mmap_mode allow it)."""
        return self._max_nbytes is not None and self._writeable is not None

    def share_in(self, items: list[Item]) -> list[Item]:
        """Return a batch's (function, args, kwargs) items, its large arrays swapped for the call's copies.

        A container is rebuilt only if it held such an array, once per batch, so
        that two references to one list stay one list, as pickling keeps them.
        """
        if not self.active:
            return items
        memo: dict[int, Any] = {}
        return [
            (fn, self._swap(args, _MAX_DEPTH, memo), self._swap(kwargs, _MAX_DEPTH, memo))
            for fn, args, kwargs in items
        ]

    def close(self) -> None:
        """The call is over: forget its copies (each segment is recycled once its tasks are done)."""
        with self._lock:
            self._copies.clear()

    def _swap(self, value: Any, depth: int, memo: dict[int, Any]) -> Any:
        kind = type(value)
        if kind is np.ndarray:
            return self._shared(value)
        if depth == 0 or kind not in (tuple, list, dict) or len(value) > _MAX_ITEMS:
            return value
        done = memo.get(id(value))
        if done is not None:
            return done
        rebuilt: Any
        if kind is dict:
            rebuilt = {key: self._swap(item, depth - 1, memo) for key, item in value.items()}
            changed = any(rebuilt[key] is not item for key, item in value.items())
        else:
            rebuilt = kind(self._swap(item, depth - 1, memo) for item in value)
            changed = any(new is not old for new, old in zip(rebuilt, value, strict=True))
        result = rebuilt if changed else value
        memo[id(value)] = result
        return result

    def _shared(self, array: NDArray[Any]) -> NDArray[Any]:
        """The call's copy of array, made now if the call has none yet; array itself if it stays as it is."""
        assert self._max_nbytes is not None  # noqa: S101 - for mypy: only called when active
        if array.nbytes <= self._max_nbytes or array.dtype.hasobject:
            return array
        key = id(array)
        with self._lock:
            entry = self._copies.get(key)
            if entry is not None and entry[0]() is array:
                return entry[1]
            if (
                _arrayref.locate(array) is not None
                or _files.locate(array) is not None
                or _blocks.locate(array) is not None
            ):
                return array  # shared already: it goes by reference as it is
            try:
                copy = self._copy(array)
            except SegmentError:
                return array  # shared memory is full: the executor pickles it, and warns
            self._copies[key] = (weakref.ref(array, partial(self._forget, key)), copy)
        return copy

    def _copy(self, array: NDArray[Any]) -> NDArray[Any]:
        _, lease = self._state.segments.allocate(array.nbytes)  # warm, recycled once its last view dies
        copy: NDArray[Any] = np.ndarray(
            array.shape, array.dtype, buffer=lease, order=_arrayref.layout_order(array)
        )
        np.copyto(copy, array, casting="no")
        copy.flags.writeable = bool(self._writeable)
        self._state.stats.add({"arrays_copied": 1, "bytes_copied": array.nbytes})
        return copy

    def _forget(self, key: int, ref: weakref.ref[NDArray[Any]]) -> None:
        """The array behind key died: drop its entry, unless another array took the id since."""
        with self._lock:
            entry = self._copies.get(key)
            if entry is not None and entry[0] is ref:
                del self._copies[key]
