"""The locks that forked workers reset are where _fork_safety expects them (borrowed internals)."""

from __future__ import annotations

import threading
from multiprocessing import resource_tracker

import cloudpickle


def test_borrowed_resource_tracker_lock_has_a_fork_reset():
    """multiprocessing.resource_tracker still has its instance, with a lock that can be reset after fork."""
    tracker = resource_tracker._resource_tracker
    assert isinstance(tracker, resource_tracker.ResourceTracker)
    # A Lock on 3.10, an RLock from 3.11: both reset the same way.
    assert type(tracker._lock) in (type(threading.Lock()), type(threading.RLock()))
    assert callable(tracker._lock._at_fork_reinit)


def test_borrowed_cloudpickle_class_lock_is_a_lock_with_a_fork_reset():
    """cloudpickle still guards its dynamic classes with a module-level Lock that can be reset after fork."""
    lock = cloudpickle.cloudpickle._DYNAMIC_CLASS_TRACKER_LOCK
    assert type(lock) is type(threading.Lock())
    assert callable(lock._at_fork_reinit)
