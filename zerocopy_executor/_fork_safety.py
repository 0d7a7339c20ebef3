"""A forked worker must not inherit the resource tracker's lock held by another thread.

``fork()`` copies only the thread that calls it: a lock another thread held at that
moment stays held in the child for good, and the child's first attempt to take it
hangs. Every segment a process creates or unlinks is registered or unregistered with
the resource tracker under the tracker's lock. Under the fork start method the workers
are forked at the first ``submit()``, while other threads of the parent may be making or
releasing segments (another executor's feeder thread, a thread calling
``zerocopy_executor.share``, the sweep of a closed executor): a worker forked then would
hang on the first segment it makes (a result), where ProcessPoolExecutor's workers,
which never use the tracker, would not. From Python 3.13.x CPython resets that lock in a forked child
itself (gh-146313); before, this module does, as CPython does.

Borrowed from ``multiprocessing.resource_tracker`` (Python 3.10 to 3.13.0): the module's
``_resource_tracker`` instance, its ``_lock`` (an ``RLock``) and ``RLock._at_fork_reinit``;
tests/unit/test_fork_safety.py fails if they change.
"""

from __future__ import annotations

import os
from multiprocessing import resource_tracker

__all__ = ["RESETS_TRACKER_LOCK"]

# Whether this module resets the lock: CPython's own reset comes with this method.
RESETS_TRACKER_LOCK = not hasattr(resource_tracker.ResourceTracker, "_after_fork_in_child")


def _reset_tracker_lock() -> None:
    resource_tracker._resource_tracker._lock._at_fork_reinit()  # type: ignore[attr-defined]


if RESETS_TRACKER_LOCK:
    os.register_at_fork(after_in_child=_reset_tracker_lock)
