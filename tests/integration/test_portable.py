"""portable.map and portable.submit on real process executors: ours, the standard one, and dask's.

The dask tests need the ``distributed`` extra (``pip install zerocopy_executor[distributed]``,
which CI installs); without it they are skipped. They share one LocalCluster of two
worker processes on loopback, closed when the module ends.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks
from zerocopy_executor import portable

TIMEOUT = 60
MB = 1 << 20
HAS_DISTRIBUTED = importlib.util.find_spec("distributed") is not None
needs_distributed = pytest.mark.skipif(
    not HAS_DISTRIBUTED, reason="needs dask.distributed: pip install zerocopy_executor[distributed]"
)


class CountingFrames:
    """An endless source of 1 MiB arrays filled with 1, 2, 3...; records how many were taken."""

    def __init__(self) -> None:
        self.taken = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        self.taken += 1
        return np.full(MB // 8, float(self.taken))


def test_portable_map_streams_through_shared_memory(mp_context):
    """On a SharedArrayExecutor portable.map is its own map: bounded look-ahead, arrays shared."""
    source = CountingFrames()
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        results = portable.map(ex, _tasks.total, source, buffersize=2, timeout=TIMEOUT)
        assert list(itertools.islice(results, 6)) == [float(i * MB // 8) for i in range(1, 7)]
        results.close()
        assert source.taken <= 6 + 3
        assert ex.stats().arrays_copied >= 6


def test_portable_submit_on_process_pools(mp_context):
    """Keyword arguments reach the function on ProcessPoolExecutor and SharedArrayExecutor alike."""
    for cls in (futures.ProcessPoolExecutor, zc.SharedArrayExecutor):
        with cls(1, mp_context=mp_context) as ex:
            future = portable.submit(ex, _tasks.echo_kwargs, 1, key="k", pure=False)
            assert future.result(TIMEOUT) == ((1,), {"key": "k", "pure": False})


@pytest.fixture(scope="module")
def dask_executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """dask.distributed's executor over a LocalCluster of 2 worker processes, on loopback."""
    if not HAS_DISTRIBUTED:
        pytest.skip("needs dask.distributed: pip install zerocopy_executor[distributed]")
    import dask
    from distributed import Client, LocalCluster

    # Its files (and the scheduler's) go to a scratch directory, not /tmp/dask-scratch-space.
    with dask.config.set({"temporary-directory": str(tmp_path_factory.mktemp("dask"))}):
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # Its HTTP server listens even with no dashboard (8787 by default, which another
            # cluster may hold): a free port on loopback, and no dashboard.
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": False},
            silence_logs=logging.ERROR,
        )
        try:
            with Client(cluster) as client:
                # pure=False: dask would otherwise run identical calls once (and hash every argument)
                yield client.get_executor(pure=False)
        finally:
            cluster.close()


@needs_distributed
def test_dask_executor_takes_reserved_keywords(dask_executor):
    """dask's executor keeps key= for itself: the reason portable.submit exists."""
    future = dask_executor.submit(_tasks.echo_kwargs, 1, key="echo-1")
    assert future.result(TIMEOUT) == ((1,), {})


@needs_distributed
def test_portable_submit_on_dask_passes_keywords(dask_executor):
    """portable.submit hands key= and retries= to the function on dask's executor."""
    future = portable.submit(dask_executor, _tasks.echo_kwargs, 1, key="k", retries=2)
    assert future.result(TIMEOUT) == ((1,), {"key": "k", "retries": 2})


@needs_distributed
def test_portable_map_on_dask_accepts_iterators(dask_executor):
    """A generator with itertools.repeat, which dask's map rejects, works through portable.map."""
    with pytest.raises(TypeError):
        dask_executor.map(_tasks.add, [1, 2], itertools.repeat(10))
    results = portable.map(dask_executor, _tasks.add, (i for i in range(4)), itertools.repeat(10))
    assert list(results) == [10, 11, 12, 13]


@needs_distributed
def test_portable_map_on_dask_bounds_look_ahead(dask_executor):
    """With buffersize=2 an endless source of arrays is read a bounded number of items ahead."""
    source = CountingFrames()
    results = portable.map(dask_executor, _tasks.total, source, buffersize=2, timeout=TIMEOUT)
    assert list(itertools.islice(results, 6)) == [float(i * MB // 8) for i in range(1, 7)]
    results.close()
    assert source.taken <= 6 + 3


@needs_distributed
def test_dask_futures_work_with_wait_and_as_completed(dask_executor):
    """dask's executor returns concurrent.futures futures: wait() and as_completed() work on them."""
    fs = [portable.submit(dask_executor, _tasks.add, i, y=1) for i in range(4)]
    done, not_done = futures.wait(fs, timeout=TIMEOUT)
    assert len(done) == 4
    assert not not_done
    assert sorted(f.result() for f in futures.as_completed(fs, timeout=TIMEOUT)) == [1, 2, 3, 4]
