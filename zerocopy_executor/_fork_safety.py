"""A forked worker must not inherit a lock that another thread of its parent held.

``fork()`` copies only the thread that calls it: a lock another thread held at that
moment stays held in the child for good, and the child's first attempt to take it
hangs. Under the fork start method the workers are forked at the first ``submit()``,
while other threads of the parent may be at work. Two locks our workers take, and
ProcessPoolExecutor's never do, are reset in every forked child:

- the resource tracker's: every segment made or unlinked is registered or
  unregistered under it, and other threads make and release segments (another
  executor's feeder thread, a thread calling ``zerocopy_executor.share``, the sweep of a
  closed executor), so a worker forked then would hang on its first result segment.
  CPython resets it itself from 3.13.x (gh-146313);
- cloudpickle's dynamic-class lock: taken to pickle or rebuild a class sent by value
  (one made in a function or a notebook), as another executor's feeder thread may be
  doing, so a worker would hang rebuilding such a class. cloudpickle 3.1 does not reset it.

Borrowed (tests/unit/test_fork_safety.py fails if they change): the ``_lock`` (a
``Lock`` on 3.10, an ``RLock`` after) of
``multiprocessing.resource_tracker._resource_tracker`` (Python 3.10 to 3.13.0),
``cloudpickle.cloudpickle._DYNAMIC_CLASS_TRACKER_LOCK`` (a ``Lock``), and the locks'
``_at_fork_reinit``, which is how CPython resets its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from multiprocessing import resource_tracker

import cloudpickle

__all__ = ["at_fork"]

# Whether we reset the tracker's lock: CPython's own reset comes with this method.
_RESETS_TRACKER_LOCK = not hasattr(resource_tracker.ResourceTracker, "_after_fork_in_child")


def _reset_locks() -> None:
    if _RESETS_TRACKER_LOCK:
        resource_tracker._resource_tracker._lock._at_fork_reinit()  # type: ignore[attr-defined]
    cloudpickle.cloudpickle._DYNAMIC_CLASS_TRACKER_LOCK._at_fork_reinit()


def at_fork(
    *,
    before: Callable[[], object] | None = None,
    after_in_parent: Callable[[], object] | None = None,
    after_in_child: Callable[[], object] | None = None,
) -> None:
    """``os.register_at_fork`` where processes fork; nothing where they cannot (Windows)."""
    register = getattr(os, "register_at_fork", None)
    if register is None:
        return
    hooks = {"before": before, "after_in_parent": after_in_parent, "after_in_child": after_in_child}
    register(**{when: hook for when, hook in hooks.items() if hook is not None})


at_fork(after_in_child=_reset_locks)
