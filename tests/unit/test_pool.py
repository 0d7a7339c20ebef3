"""SegmentPool: capped in bytes, best fit, emptied on close, leases guard reuse.

Releases run on a reaper thread; drain_releases() makes them happen before an assertion.
"""

from __future__ import annotations

import gc
import os
import shutil
import threading

import numpy as np
import pytest

from zerocopy_executor import _namespace, _pool, _segments, _sharing


def make(nbytes):
    return _segments.create(nbytes, tag=_namespace.new_tag())


def test_pool_never_exceeds_its_cap():
    """Segments given beyond the cap are dropped, not held."""
    pool = _pool.SegmentPool(cap_nbytes=3 * 65536)
    for _ in range(6):
        pool.give(make(65536))
    assert pool.nbytes == 3 * 65536
    pool.close()
    assert pool.nbytes == 0


def test_pool_takes_a_close_fit_only():
    """A request is served by a segment of at least its size and not much larger."""
    pool = _pool.SegmentPool(cap_nbytes=1 << 30)
    small, large = make(4096), make(1 << 20)
    pool.give(small)
    pool.give(large)
    assert pool.take(1 << 20) is large
    assert pool.take(8192) is None  # 4096 is too small, nothing else fits
    assert pool.take(4000) is small
    pool.close()


def test_lease_returns_segment_when_last_view_dies():
    """A leased segment goes back to the pool only once every view of it is gone."""
    pool = _pool.SegmentPool(cap_nbytes=1 << 30)
    buffer = make(8192)
    root = _pool.lease(buffer, pool)
    view = np.ndarray((10,), np.float64, buffer=root)[::2]
    del root
    gc.collect()
    _segments.drain_releases()
    assert pool.nbytes == 0
    del view
    gc.collect()
    _segments.drain_releases()
    assert pool.nbytes == 8192
    assert pool.take(8192) is buffer
    pool.close()


def test_never_recycle_unlinks_on_release():
    """A segment marked never-recycle is dropped (and unlinked) when its lease dies."""
    pool = _pool.SegmentPool(cap_nbytes=1 << 30)
    buffer = make(8192)
    name = buffer.name
    root = _pool.lease(buffer, pool)
    _pool.never_recycle(buffer)
    del root, buffer
    gc.collect()
    _segments.drain_releases()
    assert pool.nbytes == 0
    assert not os.path.exists(f"/dev/shm/{name}")


def test_closed_pool_accepts_nothing():
    """After close, given segments are dropped."""
    pool = _pool.SegmentPool(cap_nbytes=1 << 30)
    pool.close()
    pool.give(make(4096))
    assert pool.nbytes == 0


def test_pool_keeps_nothing_once_no_thread_can_start(monkeypatch):
    """At interpreter exit no thread can start to trim the pool: a given segment is dropped."""

    def refuse(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    pool = _pool.SegmentPool(cap_nbytes=1 << 30)
    buffer = make(4096)
    name = buffer.name
    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", refuse)
        pool.give(buffer)
    assert pool.nbytes == 0
    del buffer
    gc.collect()
    _segments.drain_releases()
    assert not os.path.exists(f"/dev/shm/{name}")


GiB = 1 << 30


@pytest.mark.parametrize(
    ("shm_size", "cap"),
    [(64 << 20, 16 << 20), (4 * GiB, GiB), (8 * GiB, 2 * GiB), (100 * GiB, 2 * GiB)],
    ids=["64MiB", "4GiB", "8GiB", "100GiB"],
)
@pytest.mark.usefixtures("named_segments")
def test_executor_pool_cap_is_a_quarter_of_dev_shm_and_at_most_2_gib(monkeypatch, shm_size, cap):
    """An executor's pool holds at most a quarter of /dev/shm (named segments), and never more than 2 GiB."""
    real = shutil.disk_usage

    def disk_usage(path):
        usage = real(path)
        return usage._replace(total=shm_size) if str(path) == "/dev/shm" else usage

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    assert _sharing._pool_cap_nbytes() == cap


@pytest.mark.parametrize(
    ("memory", "cap"),
    [(256 << 20, 64 << 20), (4 * GiB, GiB), (100 * GiB, 2 * GiB)],
    ids=["256MiB", "4GiB", "100GiB"],
)
def test_executor_pool_cap_with_memfd_segments_follows_memory_not_dev_shm(monkeypatch, memory, cap):
    """With memfd segments the pool holds at most a quarter of the memory limit, whatever /dev/shm's size."""
    from zerocopy_executor import _memfd

    if not _memfd.chosen():
        pytest.skip("this run makes named segments")
    monkeypatch.setattr(_memfd, "memory_bytes", lambda: memory)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: pytest.fail("read /dev/shm's size"))
    assert _sharing._pool_cap_nbytes() == cap
