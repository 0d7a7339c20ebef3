"""map(buffersize=N) streams an iterable with bounded look-ahead, on every Python."""

from __future__ import annotations

import itertools
from concurrent import futures

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks

TIMEOUT = 60


class CountingSource:
    """An endless iterator that records how many items were taken."""

    def __init__(self) -> None:
        self.taken = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.taken += 1
        return self.taken


def test_buffersize_bounds_items_taken(mp_context):
    """With buffersize=2 an endless generator is read at most a couple of items ahead."""
    source = CountingSource()
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        results = ex.map(_tasks.identity, source, buffersize=2, timeout=TIMEOUT)
        assert list(itertools.islice(results, 5)) == [1, 2, 3, 4, 5]
        assert source.taken <= 5 + 2
        del results


def test_buffersize_with_chunks_counts_chunks(mp_context):
    """buffersize counts chunks: with chunksize=3 and buffersize=1, at most 2 chunks are ahead."""
    source = CountingSource()
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as ex:
        results = ex.map(_tasks.identity, source, chunksize=3, buffersize=1, timeout=TIMEOUT)
        assert next(results) == 1
        assert source.taken <= 2 * 3 + 1
        del results


def test_buffersize_results_match_plain_map(mp_context):
    """Results and order equal those of map without buffersize, over several iterables."""
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        expected = list(ex.map(_tasks.add, range(20), range(100, 115), timeout=TIMEOUT))
        got = list(ex.map(_tasks.add, range(20), range(100, 115), buffersize=3, chunksize=2, timeout=TIMEOUT))
    assert got == expected == [i + 100 + i for i in range(15)]


def test_buffersize_streams_large_arrays(mp_context):
    """A generator of large arrays keeps only the buffered ones in flight."""
    made = []

    def arrays():
        for i in range(12):
            made.append(i)
            yield np.full(1 << 18, float(i))

    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        total = 0.0
        for i, value in enumerate(ex.map(_tasks.total, arrays(), buffersize=2, timeout=TIMEOUT)):
            assert len(made) <= i + 3
            total += value
    assert total == sum(range(12)) * (1 << 18)


def test_buffersize_propagates_exceptions_and_timeouts():
    """An exception surfaces at its item; a timeout raises TimeoutError."""
    with zc.SharedArrayExecutor(1) as ex:
        results = ex.map(_tasks.raise_value_error, ["boom"], buffersize=1)
        with pytest.raises(ValueError, match="boom"):
            next(results)
        slow = ex.map(_tasks.slow_identity, [1, 2], [1.0, 1.0], buffersize=1, timeout=0.2)
        with pytest.raises(futures.TimeoutError):  # the builtin only from 3.11
            list(slow)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"buffersize": 0}, ValueError, "buffersize must be None or > 0"),
        ({"buffersize": 1.5}, TypeError, "buffersize must be an integer or None"),
        ({"chunksize": 0}, ValueError, "chunksize must be >= 1."),
    ],
)
def test_map_argument_errors(kwargs, error, message):
    """Bad buffersize or chunksize raise as Python 3.14's ProcessPoolExecutor does."""
    with zc.SharedArrayExecutor(1) as ex, pytest.raises(error, match=message):
        ex.map(_tasks.identity, [1], **kwargs)
