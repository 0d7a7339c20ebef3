"""The resource tracker internals that forked workers reset (borrowed from multiprocessing)."""

from __future__ import annotations

import threading
from multiprocessing import resource_tracker


def test_borrowed_resource_tracker_internals_are_where_fork_safety_expects_them():
    """multiprocessing.resource_tracker still has the instance, its RLock and the reset _fork_safety uses."""
    tracker = resource_tracker._resource_tracker
    assert isinstance(tracker, resource_tracker.ResourceTracker)
    assert type(tracker._lock) is type(threading.RLock())
    assert callable(tracker._lock._at_fork_reinit)
