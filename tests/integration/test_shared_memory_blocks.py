"""The standard library's shared memory by reference: arrays in a user's SharedMemory block.

An array over a ``multiprocessing.shared_memory.SharedMemory`` block (or a
``SharedMemoryManager``'s) travels as the block's name, offset and layout: the worker
sees the parent's memory, and the block stays the user's (never closed, unlinked or
registered with the resource tracker by us). What happens when a worker dies, or the
script ends, is checked in subprocesses (tests/_fault_scripts/user_blocks.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from multiprocessing.managers import SharedMemoryManager
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks
from tests.integration._scenarios import Reaper, assert_nothing_left, assert_quiet, run_scenario

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="blocks are found in /proc/self/maps"
)

TIMEOUT = 30
N = 1 << 17  # 1 MiB of float64: above min_nbytes, so a block not recognised would be copied


@pytest.fixture
def block() -> Iterator[SharedMemory]:
    """A block the test owns, closed and unlinked by the test itself at the end."""
    shm = SharedMemory(create=True, size=N * 8)
    try:
        yield shm
    finally:
        shm.unlink()  # first: close() refuses while a failed test's array still views the block
        shm.close()


def over(shm: SharedMemory, n: int = N) -> np.ndarray:
    array = np.ndarray((n,), np.float64, buffer=shm.buf)
    array[:] = np.arange(n)
    return array


def test_block_argument_is_the_same_memory_in_the_worker(block, mp_context):
    """A worker's write into a block argument reaches the parent, and the stats count it by reference."""
    array = over(block)
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        assert ex.submit(_tasks.scribble, array[N // 2 :]).result(timeout=TIMEOUT) == 7 * (N - N // 2)
        assert ex.submit(_tasks.is_shared_in_worker, array).result(timeout=TIMEOUT)
        stats = ex.stats()
    assert np.array_equal(array[: N // 2], np.arange(N // 2))
    assert (array[N // 2 :] == 7).all()
    assert (stats.arrays_by_reference, stats.bytes_by_reference) == (2, (N - N // 2) * 8 + N * 8)
    assert (stats.arrays_copied, stats.arrays_pickled) == (0, 0)
    assert zc.is_shared(array[::-3])
    del array


def test_block_view_comes_back_by_reference(block, mp_context):
    """A worker returning a view of a block argument returns the same memory: writes alias."""
    array = over(block)
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        half = ex.submit(_tasks.first_half, array[::2]).result(timeout=TIMEOUT)
        stats = ex.stats()
    assert type(half) is np.ndarray
    assert half.flags.writeable
    half[:] = -1.0
    assert (array[: N // 2 : 2] == -1.0).all()
    assert (array[1 : N // 2 : 2] != -1.0).all()
    assert (stats.arrays_by_reference, stats.arrays_copied, stats.arrays_pickled) == (2, 0, 0)
    del array, half


def test_small_and_read_only_block_views_go_by_reference(block, mp_context):
    """Any view of a block goes by reference, whatever its size; a read-only one arrives read-only."""
    array = over(block)
    frozen = array[:4]
    frozen.flags.writeable = False
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        assert ex.submit(_tasks.writeable_in_worker, frozen).result(timeout=TIMEOUT) is False
        assert ex.submit(_tasks.total, array[10:12]).result(timeout=TIMEOUT) == 21.0
        stats = ex.stats()
    assert (stats.arrays_by_reference, stats.bytes_by_reference, stats.arrays_pickled) == (2, 48, 0)
    del array, frozen


def test_manager_block_travels_by_reference(mp_context):
    """A SharedMemoryManager's block goes by reference, and the manager still releases it at exit."""
    with SharedMemoryManager(ctx=mp_context) as manager:
        shm = manager.SharedMemory(N * 8)
        name = shm.name
        array = over(shm)
        with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
            ex.submit(_tasks.scribble, array).result(timeout=TIMEOUT)
            stats = ex.stats()
        assert (array == 7).all()
        assert os.path.exists(f"/dev/shm/{name}")
        assert (stats.arrays_by_reference, stats.arrays_copied) == (1, 0)
        del array
        shm.close()
    assert not os.path.exists(f"/dev/shm/{name}")


def test_block_survives_a_failing_task(block, mp_context):
    """A task that raises over a block leaves it linked and open: the user's SharedMemory still works."""
    array = over(block)
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        with pytest.raises(RuntimeError, match="failed on an array"):
            ex.submit(_tasks.fail_with_array, array).result(timeout=TIMEOUT)
        ex.submit(_tasks.scribble, array[:8]).result(timeout=TIMEOUT)
    assert os.path.exists(f"/dev/shm/{block.name}")
    assert (np.frombuffer(block.buf, np.float64, 8) == 7).all()
    del array


def test_unlinked_block_is_copied(mp_context):
    """An array over a block whose name the user unlinked is copied: the worker cannot open it by name."""
    shm = SharedMemory(create=True, size=N * 8)
    array = over(shm)
    shm.unlink()
    try:
        with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
            assert ex.submit(_tasks.scribble, array).result(timeout=TIMEOUT) == 7 * N
            stats = ex.stats()
        assert np.array_equal(array, np.arange(N))  # the worker wrote to its own copy
        assert (stats.arrays_by_reference, stats.arrays_copied) == (0, 1)
    finally:
        del array
        shm.close()


@pytest.mark.parametrize(
    ("end", "finish"), [("ok", "unlink"), ("raise", "keep"), ("exit", "unlink"), ("kill", "keep")]
)
def test_block_is_never_closed_unlinked_or_tracked_by_us(end, finish, start_method, tmp_path, reaper: Reaper):
    """Whether the last task succeeds, raises or kills its worker, the block stays the user's.

    The script writes through workers, then either unlinks the block itself (no
    resource-tracker noise) or keeps it past its own exit, untracked, as a block meant
    to outlive the program: had any process of ours registered it, the resource
    tracker would unlink it when the script ends.
    """
    run = run_scenario(tmp_path, reaper, "scenario_user_block", start_method, end, finish)
    assert_quiet(run)
    report = run.report
    path = f"/dev/shm/{report['name']}"
    try:
        assert (
            report["outcome"]
            == {"ok": "ok", "raise": "RuntimeError", "exit": "broken", "kill": "broken"}[end]
        )
        assert report["written"] == 7.0, run.explain()  # a write before the last task reached the block
        assert report["linked_after_shutdown"], run.explain()
        assert report["readable_after_shutdown"], run.explain()
        assert os.path.exists(path) == (finish == "keep"), run.explain()
        assert_nothing_left(run, reaper)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_block_name_used_again_reaches_the_new_block(mp_context):
    """A block unlinked and made again under the same name by its user is the new block in the worker.

    The worker still holds its mapping of the old block (kept for the next tasks): it
    must map the name again, not refuse the new block nor hand back the old one.
    """
    name = f"user_block_{os.getpid()}"
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as ex:
        for value in (1.0, 2.0):
            shm = SharedMemory(name=name, create=True, size=N * 8)
            try:
                array = np.ndarray((N,), np.float64, buffer=shm.buf)
                array[:] = value
                assert ex.submit(_tasks.total, array).result(timeout=TIMEOUT) == value * N
                assert ex.submit(_tasks.scribble, array[:2]).result(timeout=TIMEOUT) == 14.0
                assert array[:3].tolist() == [7.0, 7.0, value]
                del array
            finally:
                shm.close()
                shm.unlink()
        assert ex.stats().arrays_by_reference == 4
