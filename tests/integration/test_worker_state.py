"""What a worker keeps or returns twice: the parent gets the values it had, as pickled.

A worker may keep an argument or a result in its globals (a cache) and return it in a
later task; a result may hold several views of one array. ProcessPoolExecutor gives the
parent an independent copy of each array at the time it was returned; so do we, except
for shared inputs, which are the same memory by design (README, Semantics).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks

TIMEOUT = 60
N = 1 << 18  # float64 elements: 2 MiB, above the default min_nbytes


@pytest.fixture
def executor(mp_context):
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as ex:  # one worker: one set of globals
        yield ex


def test_stashed_argument_returned_later_has_its_values(executor):
    """An argument a worker kept comes back in a later task with the values it was sent with."""
    a = np.arange(N, dtype=np.float64)
    executor.submit(_tasks.stash, a).result(TIMEOUT)
    a += 1  # the parent's array: the worker's copy never sees it
    fetched = executor.submit(_tasks.fetch).result(TIMEOUT)
    np.testing.assert_array_equal(fetched, np.arange(N, dtype=np.float64))
    fetched[:] = -1.0
    again = executor.submit(_tasks.fetch).result(TIMEOUT)
    np.testing.assert_array_equal(again, np.arange(N, dtype=np.float64))
    assert not np.shares_memory(fetched, again)


def test_worker_cache_returned_twice_gives_independent_results(executor):
    """A cache NumPy made in a worker (in lent memory, once results are lent) comes back as copies."""
    base = np.ones(N)
    for _ in range(3):  # results of this size: the parent lends a segment for the next
        executor.submit(_tasks.doubled, base).result(TIMEOUT)
    first = executor.submit(_tasks.cached_ones, N).result(TIMEOUT)
    first -= 2.0
    second = executor.submit(_tasks.cached_ones, N).result(TIMEOUT)
    assert second[0] == 1.0
    assert not np.shares_memory(first, second)
    executor.submit(_tasks.bump_stashed, 5.0).result(TIMEOUT)  # the worker writes its cache
    assert second[0] == 1.0
    assert first[0] == -1.0


def test_shared_array_kept_by_worker_returned_later(executor):
    """A zc.empty array a worker keeps and returns later comes back, and stays the parent's alone."""
    executor.submit(_tasks.stash_shared, N, 3.0).result(TIMEOUT)
    first = executor.submit(_tasks.fetch).result(TIMEOUT)
    second = executor.submit(_tasks.fetch).result(TIMEOUT)
    assert first[0] == second[0] == 3.0
    first[:] = 0.0
    executor.submit(_tasks.bump_stashed, 1.0).result(TIMEOUT)
    assert second[0] == 3.0
    assert executor.submit(_tasks.fetch).result(TIMEOUT)[0] == 4.0


def test_views_in_one_result_do_not_alias(executor):
    """A new array and views of it, returned together, are independent arrays in the parent."""
    a = np.arange(N, dtype=np.float64)
    for _ in range(3):  # from the second call on the result is born in lent memory
        y, head, transposed = executor.submit(_tasks.with_views, a).result(TIMEOUT)
        y += 100
        assert head[1] == 2.0
        assert transposed[1] == 2.0
        assert not np.shares_memory(head, transposed)


def test_returned_argument_and_its_view_do_not_alias(executor):
    """A plain argument returned with a view of it gives two independent arrays."""
    a = np.arange(N, dtype=np.float64)
    whole, head = executor.submit(_tasks.argument_and_view, a).result(TIMEOUT)
    whole += 100
    assert head[1] == 1.0
    np.testing.assert_array_equal(a, np.arange(N, dtype=np.float64))


def test_views_of_a_shared_input_still_alias_it(executor):
    """A result that views a shared input is that memory (an intended difference)."""
    shared = zc.share(np.arange(N, dtype=np.float64))
    whole, head = executor.submit(_tasks.argument_and_view, shared).result(TIMEOUT)
    assert np.shares_memory(whole, shared)
    assert np.shares_memory(head, shared)


@pytest.mark.parametrize("task", [_tasks.reversed_view, _tasks.read_only_view, _tasks.head_view])
def test_view_of_a_plain_argument_arrives_as_pickled(executor, mp_context, task):
    """A view of a plain argument returned alone has pickling's layout, flags and size."""
    a = np.arange(N, dtype=np.float64)
    with ProcessPoolExecutor(1, mp_context=mp_context) as ppe:
        expected = ppe.submit(task, a).result(TIMEOUT)
    got = executor.submit(task, a).result(TIMEOUT)
    np.testing.assert_array_equal(got, expected)
    assert got.strides == expected.strides
    assert got.flags.writeable == expected.flags.writeable
    assert got.flags.c_contiguous == expected.flags.c_contiguous
    if got.nbytes < N:  # a small view does not keep the whole argument's copy alive
        assert not zc.is_shared(got)
