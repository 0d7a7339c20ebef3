"""dask's local scheduler on SharedArrayExecutor (``compute(scheduler=executor)``) and from_shared."""

from __future__ import annotations

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks

da = pytest.importorskip("dask.array", reason="needs the [dask] extra: pip install zerocopy_executor[dask]")

from zerocopy_executor.dask import from_shared  # noqa: E402 - after the skip

TIMEOUT = 60
CHUNK = 1 << 18  # float64 elements: 2 MiB, above the default min_nbytes


def test_compute_on_executor(executor):
    """A dask graph computes on the executor; large chunks go through shared memory."""
    x = np.arange(4 * CHUNK, dtype=np.float64)
    d = da.from_array(x, chunks=CHUNK)
    result = (d * 2 + 1).compute(scheduler=executor)
    np.testing.assert_array_equal(result, x * 2 + 1)
    stats = executor.stats()
    assert stats.arrays_copied >= 4  # the chunks out (and the results back)
    assert stats.bytes_pickled < CHUNK * 8


def test_from_shared_chunks_travel_by_reference(executor):
    """from_shared's chunks are views of the shared array: none is copied."""
    x = zc.share(np.arange(4 * CHUNK, dtype=np.float64))
    total = (from_shared(x, chunks=CHUNK) * 2).sum().compute(scheduler=executor)
    assert total == float((x * 2).sum())
    stats = executor.stats()
    assert (stats.arrays_by_reference, stats.bytes_by_reference) == (4, x.nbytes)
    assert stats.arrays_copied == 0


def test_from_array_copies_a_shared_array(executor):
    """The contrast: from_array copies its input, so the chunks are copied again per task."""
    x = zc.share(np.arange(4 * CHUNK, dtype=np.float64))
    d = da.from_array(x, chunks=CHUNK)
    first_chunk = next(iter(dict(d.__dask_graph__()).values()))
    if np.shares_memory(first_chunk, x):
        pytest.skip("this dask's from_array does not copy its input")
    (d * 2).sum().compute(scheduler=executor)
    stats = executor.stats()
    assert stats.arrays_by_reference == 0
    assert stats.arrays_copied == 4


def test_from_shared_writes_reach_the_array(executor):
    """A task writing into its chunk writes into the shared array itself."""
    x = zc.zeros((4, CHUNK))
    blocks = from_shared(x, chunks=(1, CHUNK)).map_blocks(_tasks.add_one_in_place, dtype=x.dtype)
    blocks.sum().compute(scheduler=executor)
    assert (x == 1).all()


def test_from_shared_matches_from_array():
    """from_shared gives the chunks and values from_array would, for 2-D and strided views."""
    base = zc.share(np.arange(60.0).reshape(6, 10))
    for x in (base, base.T, base[::2, ::-3]):
        ours, theirs = from_shared(x, chunks=(2, 3)), da.from_array(np.array(x), chunks=(2, 3))
        assert ours.chunks == theirs.chunks
        np.testing.assert_array_equal(ours.compute(scheduler="sync"), theirs.compute(scheduler="sync"))


def test_from_shared_sees_later_changes():
    """Unlike from_array, from_shared neither copies nor hashes: later writes are seen."""
    x = zc.zeros(10)
    d = from_shared(x, chunks=5)
    x[:] = 3
    assert d.sum().compute(scheduler="sync") == 30


def test_from_shared_refuses_a_plain_array():
    """A plain array is refused, with the remedy."""
    with pytest.raises(TypeError, match=r"zerocopy_executor\.share"):
        from_shared(np.zeros(10), chunks=5)
