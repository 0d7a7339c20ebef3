"""_fork_safety: the locks forked workers reset are where it expects them; our threads leave before a fork."""

from __future__ import annotations

import os
import threading
import time
from multiprocessing import resource_tracker

import cloudpickle
import pytest

from zerocopy_executor._fork_safety import join_before_fork


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


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="the kernel's thread list is Linux's /proc")
def test_a_thread_joined_before_a_fork_is_gone_from_the_kernel_thread_list() -> None:
    """join_before_fork returns once the kernel no longer counts the thread (what 3.12+ checks at fork)."""
    for _ in range(20):
        thread = threading.Thread(target=time.sleep, args=(0.001,))
        thread.start()
        join_before_fork(thread)
        assert not os.path.exists(f"/proc/self/task/{thread.native_id}")
