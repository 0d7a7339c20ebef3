"""Everything the package borrows from other libraries' private parts, each checked here.

This list is the one place that names them. A drop-in subclass of ProcessPoolExecutor
must hook where the standard library has no public hook; each borrowing below exists
unchanged on CPython 3.10 to 3.15 (and in the cloudpickle and joblib releases the
extras allow). If one of these tests fails on a new interpreter or release, the module
named beside it needs adapting before anything else is trusted there.

concurrent.futures.process.ProcessPoolExecutor (used by _executor, _force_shutdown):
- ``_start_executor_manager_thread()``: overridden to start the sharing machinery
  beside the manager thread; ``_executor_manager_thread`` is that thread.
- ``_pending_work_items`` (work id -> item with ``.future``): futures cancelled by
  ``shutdown(cancel_futures=True)`` are released from there.
- ``_shutdown_lock`` and ``_processes`` (pid -> Process): terminate()/kill().
- Behaviour: the manager thread settles a future with ``set_result(reply)``, the object
  the worker sent, unpickled (_replies decodes it there); call items are pickled in the
  call queue's feeder thread (arguments are encoded then, by ``__reduce__``, see
  _sharing); a Future has a ``__dict__`` (_future keeps a task's envelope on it).

multiprocessing:
- ``reduction.ForkingPickler._extra_reducers`` and ``._copyreg_dispatch_table``: the
  reducers multiprocessing registers, kept by our picklers (_picklers, _results_by_value).
- ``_posixshmem.shm_open`` / ``shm_unlink``: segments opened without
  ``SharedMemory``, which registers with the resource tracker on attach before 3.13
  (_shm, _segments, _identity, _blocks).
- ``shared_memory.SharedMemory.buf`` is a memoryview of an ``mmap.mmap`` (its ``_mmap``)
  that maps /dev/shm/<name> shared and writable: how a block is found from an array
  over it (_blocks).
- ``resource_tracker.register`` / ``unregister`` / ``ensure_running`` (undocumented),
  and ``resource_tracker._resource_tracker._lock``, re-made after fork where
  ``ResourceTracker._after_fork_in_child`` does not exist (_fork_safety).

cloudpickle (used by _picklers, _main_classes, _fork_safety):
- ``cloudpickle.cloudpickle._code_reduce``: code objects of ``__main__`` functions.
- ``_class_reduce``, ``_class_setstate``, ``_get_or_create_tracker_id``,
  ``_DYNAMIC_CLASS_TRACKER_BY_ID``, ``_DYNAMIC_CLASS_TRACKER_LOCK``: ``__main__``
  classes rebuilt once per worker.
- ``Pickler.dispatch_table`` and ``Pickler._dispatch_table``.

joblib (the joblib extra, used by _joblib_workers):
- ``joblib.externals.loky.process_executor._python_exit``: loky's exit hook, run in
  our workers before they exit.
"""

from __future__ import annotations

import inspect
import mmap
import os
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context, resource_tracker
from multiprocessing.reduction import ForkingPickler
from multiprocessing.shared_memory import SharedMemory
from typing import Any, ClassVar

import cloudpickle
import cloudpickle.cloudpickle as cloudpickle_internals
import numpy as np
import pytest

from tests._tasks import identity, slow_identity
from zerocopy_executor import _blocks

pytestmark = pytest.mark.timeout(60)


class _ReducedIn:
    """Records the thread that pickles it (shared through a list in this process)."""

    threads: ClassVar[list[str]] = []

    def __reduce__(self) -> tuple[Any, ...]:
        _ReducedIn.threads.append(threading.current_thread().name)
        return (int, (7,))


def test_process_pool_executor_internals_exist() -> None:
    """ProcessPoolExecutor has the hook and attributes the executor and force-shutdown use."""
    method = ProcessPoolExecutor._start_executor_manager_thread
    assert list(inspect.signature(method).parameters) == ["self"]
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as executor:
        future = executor.submit(slow_identity, "done", 0.5)
        assert isinstance(executor._executor_manager_thread, threading.Thread)
        assert isinstance(executor._processes, dict)
        assert executor._processes
        assert all(isinstance(pid, int) for pid in executor._processes)
        with executor._shutdown_lock:  # a lock, taken as _force_shutdown takes it
            pending = list(executor._pending_work_items.values())
        assert any(item.future is future for item in pending)
        assert future.result(timeout=30) == "done"


def test_manager_thread_settles_with_the_unpickled_reply() -> None:
    """The manager thread calls set_result with the object the worker returned."""
    calls: list[tuple[str, Any]] = []
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as executor:
        executor.submit(identity, 0).result(timeout=30)  # workers and manager thread up
        future = executor.submit(slow_identity, [1, 2], 0.3)
        original = future.set_result

        def recording(result: Any) -> None:
            calls.append((threading.current_thread().name, result))
            original(result)

        future.set_result = recording  # type: ignore[method-assign]  # a Future has a __dict__
        assert future.result(timeout=30) == [1, 2]
        manager = executor._executor_manager_thread
    assert calls == [(manager.name, [1, 2])]


def test_call_items_are_pickled_in_the_feeder_thread() -> None:
    """Arguments are reduced in the call queue's feeder thread, not in submit()'s caller."""
    _ReducedIn.threads.clear()
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as executor:
        assert executor.submit(identity, _ReducedIn()).result(timeout=30) == 7
    assert _ReducedIn.threads, "the argument was never pickled"
    assert threading.current_thread().name not in _ReducedIn.threads
    assert all(name.startswith("QueueFeederThread") for name in _ReducedIn.threads)


def test_forking_pickler_tables_exist() -> None:
    """ForkingPickler keeps multiprocessing's reducers where our picklers read them."""
    assert isinstance(ForkingPickler._extra_reducers, dict)
    assert isinstance(ForkingPickler._copyreg_dispatch_table, dict)


def test_posixshmem_primitives_open_and_unlink() -> None:
    """_posixshmem.shm_open gives a descriptor and shm_unlink removes the name."""
    import _posixshmem

    name = f"/zc_borrowed_{os.getpid()}_{time.monotonic_ns()}"
    fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        assert isinstance(fd, int)
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)
        _posixshmem.shm_unlink(name)
    with pytest.raises(FileNotFoundError):
        _posixshmem.shm_unlink(name)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="blocks are found in /proc/self/maps")
def test_shared_memory_buf_views_a_shared_mapping_of_the_block() -> None:
    """SharedMemory.buf exports an mmap.mmap of /dev/shm/<name>, so an array over it names its block."""
    shm = SharedMemory(create=True, size=4096)
    try:
        assert type(shm.buf.obj) is mmap.mmap
        array = np.ndarray((512,), np.float64, buffer=shm.buf)
        found = _blocks.locate(array[8:])
        assert found is not None
        assert found[:2] == (_blocks.BLOCK_PREFIX + shm.name, 64)
        del array
    finally:
        shm.close()
        shm.unlink()


def test_resource_tracker_functions_and_lock_exist() -> None:
    """The resource tracker's functions exist, and its lock can be re-made after fork."""
    for name in ("register", "unregister", "ensure_running"):
        assert callable(getattr(resource_tracker, name))
    if not hasattr(resource_tracker.ResourceTracker, "_after_fork_in_child"):
        assert callable(resource_tracker._resource_tracker._lock._at_fork_reinit)


def test_cloudpickle_internals_exist() -> None:
    """cloudpickle's code and class reducers and its class tracker are where we read them."""
    for name in ("_code_reduce", "_class_reduce", "_class_setstate", "_get_or_create_tracker_id"):
        assert callable(getattr(cloudpickle_internals, name)), name
    assert callable(cloudpickle_internals._DYNAMIC_CLASS_TRACKER_BY_ID.get)
    assert callable(cloudpickle_internals._DYNAMIC_CLASS_TRACKER_LOCK._at_fork_reinit)
    assert isinstance(cloudpickle.Pickler.dispatch_table, Mapping)  # a ChainMap
    assert isinstance(cloudpickle.Pickler._dispatch_table, dict)


def test_future_has_an_instance_dict() -> None:
    """A Future takes attributes of its own (the executor keeps a task's envelope on it)."""
    future: Future[int] = Future()
    future.marker = 1  # type: ignore[attr-defined]
    assert vars(future)["marker"] == 1


def test_loky_exit_hook_exists() -> None:
    """loky's exit hook, which our joblib workers run before exiting, is where we call it."""
    process_executor = pytest.importorskip("joblib.externals.loky.process_executor")
    assert callable(process_executor._python_exit)
