"""Recycling warm segments never lets one task see another's data.

The traps, one test each or more: a result that views its argument keeps that segment
out of the pool; a worker that keeps its argument forbids reusing it; a failed task's
segments are released, not recycled; a lent segment belongs to one result; names are
never reused; the pool is capped, trimmed when idle and emptied at shutdown.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import multiprocessing
import sys
import time

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks
from tests.conftest import our_segments
from zerocopy_executor import _arrayref

TIMEOUT = 60
N = 1 << 18  # float64: 2 MiB

pytestmark = pytest.mark.segments  # run under both kinds of segment (see CONTRIBUTING.md)


def eventually(condition, timeout=5.0):
    """Wait for condition(): segments are unlinked by a background reaper, not at once."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        gc.collect()
        time.sleep(0.01)


@pytest.fixture
def executor(mp_context):
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as ex:
        yield ex


def test_result_aliasing_an_argument_keeps_its_segment(executor):
    """A result that views its argument's segment keeps it out of the pool while it lives."""
    first = executor.submit(_tasks.first_half, np.full(N, 1.0)).result(TIMEOUT)
    for value in (2.0, 3.0, 4.0):
        executor.submit(_tasks.total, np.full(N, value)).result(TIMEOUT)
    assert (first == 1.0).all()


def test_worker_keeping_its_argument_blocks_reuse(executor):
    """A segment a worker keeps a view of past the call is never handed to another task."""
    executor.submit(_tasks.keep_argument, np.full(N, 1.0)).result(TIMEOUT)
    for value in (2.0, 3.0):
        executor.submit(_tasks.total, np.full(N, value)).result(TIMEOUT)
    assert executor.submit(_tasks.kept_sums).result(TIMEOUT) == [float(N)]


def test_lent_segment_belongs_to_one_result(executor):
    """Consecutive same-size results held at once are distinct memory with their own values."""
    results = [executor.submit(_tasks.plus_one, np.full(N, float(i))).result(TIMEOUT) for i in range(4)]
    for i, r in enumerate(results):
        assert (r == i + 1).all()
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.shares_memory(results[i], results[j])


def test_map_results_stay_distinct_once_segments_are_lent(executor):
    """map() over numbers returning large arrays: each result is its own memory, lent segments or not."""
    values = [float(i) for i in range(6)]
    results = list(executor.map(_tasks.make_plain, [N] * 6, values, buffersize=1))
    results += executor.map(_tasks.make_plain, [N] * 6, values)  # all lent this time
    for r, value in zip(results, values * 2, strict=True):
        assert (r == value).all()
    for i in range(len(results)):
        for j in range(i + 1, len(results)):
            assert not np.shares_memory(results[i], results[j])


def test_failed_task_segments_are_unlinked_not_recycled(executor):
    """A failed task's argument segment is unlinked, not kept for reuse."""
    executor.submit(_tasks.total, np.ones(N)).result(TIMEOUT)  # warm the pool
    before = our_segments()
    with pytest.raises(RuntimeError, match="failed on an array"):
        executor.submit(_tasks.fail_with_array, np.ones(N)).result(TIMEOUT)
    eventually(lambda: our_segments() < before)  # the reused warm segment was dropped
    assert not (our_segments() - before)  # and nothing new survived the failure


def test_back_to_back_calls_reuse_the_result_just_dropped(executor):
    """A result dropped just before the next call lends its segment to it: no fresh pages per call."""
    a = np.ones(4 * N)  # 8 MiB
    before, seen = our_segments(), set()
    for _ in range(100):
        result = executor.submit(_tasks.plus_one, a).result(TIMEOUT)
        seen |= our_segments() - before
        del result
    assert len(seen) <= 2, sorted(seen)  # the argument's, which takes the result (one spare for races)


def test_a_result_takes_its_copied_argument_segment(executor):
    """A copied argument the call is done with takes the result: one segment, not two."""
    a = np.ones(4 * N)
    before = our_segments()
    result = executor.submit(_tasks.plus_one, a).result(TIMEOUT)
    assert (result == 2).all()
    assert (a == 1).all()
    assert len(our_segments() - before) == 1


def test_a_much_smaller_result_does_not_take_its_argument_segment(executor):
    """A result a quarter of its argument's size gets its own segment: it would pin four times its size."""
    a = np.ones(4 * N)
    before = our_segments()
    result = executor.submit(_tasks.quarter_plus_one, a).result(TIMEOUT)
    assert (result == 2).all()
    eventually(lambda: len(our_segments() - before) == 2)  # the argument's (pooled) and the result's
    assert len(_arrayref.locate(result)[0]) < a.nbytes


def test_an_argument_the_worker_keeps_is_not_overwritten_by_the_result(executor):
    """The result does not reuse a copied argument the function still holds."""
    result = executor.submit(_tasks.keep_argument_plus_one, np.full(N, 1.0)).result(TIMEOUT)
    assert (result == 2).all()
    assert executor.submit(_tasks.kept_sums).result(TIMEOUT) == [float(N)]


def test_an_argument_viewed_by_the_result_is_not_overwritten(executor):
    """A result holding a view of its argument and a new array: the new one goes elsewhere."""
    half, plus = executor.submit(_tasks.half_view_and_plus_one, np.full(N, 1.0)).result(TIMEOUT)
    assert (half == 1).all()
    assert (plus == 2).all()
    assert not np.shares_memory(half, plus)


def test_a_result_passed_back_by_reference_is_never_overwritten(executor):
    """A pooled result passed to the next task stays the user's: the new result goes elsewhere."""
    first = executor.submit(_tasks.plus_one, np.full(N, 1.0)).result(TIMEOUT)
    second = executor.submit(_tasks.plus_one, first).result(TIMEOUT)
    assert (first == 2).all()
    assert (second == 3).all()
    assert not np.shares_memory(first, second)


def test_results_go_into_the_copied_arguments_they_fit(executor):
    """Several copied arguments of different sizes: each result lands in one that holds it."""
    small, large = np.full(N, 1.0), np.full(3 * N, 5.0)
    before = our_segments()
    out_small, out_large = executor.submit(_tasks.plus_one_each, small, large).result(TIMEOUT)
    assert (out_small == 2).all()
    assert (out_large == 6).all()
    assert len(our_segments() - before) == 2
    grown = executor.submit(_tasks.plus_one_each, np.full(N, 1.0), np.full(N // 2, 1.0)).result(TIMEOUT)
    assert [r.size for r in grown] == [N, N // 2]
    assert all((r == 2).all() for r in grown)


def test_a_dropped_result_segment_is_lent_for_the_next_result(executor):
    """A result the worker copied into a segment of its own is recycled once dropped: one segment in all."""
    a = zc.zeros(4 * N)
    before, seen = our_segments(), set()
    for _ in range(10):
        result = executor.submit(_tasks.plus_one, a).result(TIMEOUT)
        seen |= our_segments() - before
        del result
    assert len(seen) == 1, sorted(seen)


def test_a_shared_result_the_worker_keeps_is_never_recycled(executor):
    """A result made in shared memory by the worker, which keeps it, is not reused once dropped."""
    n = 4 * N
    executor.submit(_tasks.make_shared_and_keep, n, 1.0).result(TIMEOUT)  # dropped at once
    for value in (2.0, 3.0):
        executor.submit(_tasks.make_plain, n, value).result(TIMEOUT)
        executor.submit(_tasks.total, np.full(n, value)).result(TIMEOUT)
    assert executor.submit(_tasks.kept_sums).result(TIMEOUT) == [float(n)]


def test_recycled_arguments_carry_new_values(executor):
    """Reused segments carry each task's own values, over many tasks."""
    for value in range(10):
        assert executor.submit(_tasks.total, np.full(N, float(value))).result(TIMEOUT) == value * N


def test_segments_released_at_shutdown(mp_context):
    """Shutdown empties the pool: only segments behind live results remain."""
    before = our_segments()
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as ex:
        kept = ex.submit(_tasks.plus_one, np.ones(N)).result(TIMEOUT)
        for _ in range(3):
            ex.submit(_tasks.total, np.ones(N)).result(TIMEOUT)
    eventually(lambda: len(our_segments() - before) == 1)  # the one behind `kept`
    assert (kept == 2).all()
    del kept
    eventually(lambda: our_segments() == before)


def mapped_by(pid, name):
    with open(f"/proc/{pid}/maps") as f:
        return name in f.read()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps")
def test_workers_keep_their_mappings_for_about_two_seconds():
    """A worker still maps a segment 1 s after its last task used it, and has let it go 2-3 s later."""
    context = multiprocessing.get_context("forkserver")  # the cache is the same code under every method
    before = our_segments()
    a = zc.zeros(N)
    (name,) = our_segments() - before
    with zc.SharedArrayExecutor(1, mp_context=context) as executor:
        assert executor.submit(_tasks.total, a).result(TIMEOUT) == 0.0
        used = time.monotonic()
        time.sleep(1.0)
        pid, mapped, looked = executor.submit(_tasks.mapped_here, name).result(TIMEOUT)
        assert looked - used < 1.9, "the machine was too slow to check inside the 2 s"
        assert mapped, "the worker let the mapping go within 1 s"
        deadline = used + 6.0  # 2 s idle, swept every second, and slack for a loaded machine
        while mapped_by(pid, name):
            assert time.monotonic() < deadline, "the worker kept the mapping of an idle segment"
            time.sleep(0.1)
        assert time.monotonic() - used >= 2.0
    del a


# --- recycling under concurrency: contents checked, never counters ---------------------


@pytest.fixture
def executor2(mp_context):
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        yield ex


def warm_the_pool(executor, count):
    """Run count tasks at once over N-sized arrays and drop everything: their segments are pooled."""
    futures = [executor.submit(_tasks.check_and_bump, np.full(N, -1.0), -1.0) for _ in range(count)]
    assert all(f.result(TIMEOUT)[0] for f in futures)
    del futures
    executor.stats()  # returns once the releases already due are done


def check_results(results, values):
    """Each held result is value + 1 and no two share memory; return what is wrong."""
    wrong = [f"task {v}: saw other data" for (ok, _), v in zip(results, values, strict=True) if not ok]
    wrong += [
        f"result of task {v} holds {np.unique(r)[:4]}"
        for (_, r), v in zip(results, values, strict=True)
        if not (r == v + 1).all()
    ]
    arrays = [r for _, r in results]
    wrong += [
        f"results of tasks {values[i]} and {values[j]} share memory"
        for i in range(len(arrays))
        for j in range(i + 1, len(arrays))
        if np.shares_memory(arrays[i], arrays[j])
    ]
    return wrong


def test_tasks_in_flight_on_recycled_segments_keep_their_own_data(executor2):
    """Sixteen tasks in flight at once over warm segments: each sees its argument, each result is its own."""
    warm_the_pool(executor2, 6)
    values = [float(i) for i in range(16)]
    futures = [executor2.submit(_tasks.check_and_bump, np.full(N, v), v, 0.01) for v in values]
    results = [f.result(TIMEOUT) for f in futures]
    wrong = check_results(results, values)
    assert not wrong, wrong[:8]


def test_threads_submitting_at_once_never_see_each_others_data(executor2):
    """Four threads submit and hold results while the others' tasks run: none sees another's data."""
    warm_the_pool(executor2, 4)

    def submit_many(thread):
        values = [float(100 * thread + i) for i in range(8)]
        held = []
        for v in values:
            held.append(executor2.submit(_tasks.check_and_bump, np.full(N, v), v).result(TIMEOUT))
            # everything this thread still holds keeps its values while new tasks run
            wrong = check_results(held, values[: len(held)])
            assert not wrong, wrong[:8]
        return held, values

    with cf.ThreadPoolExecutor(4) as threads:
        outcomes = list(threads.map(submit_many, range(4)))
    results = [r for held, _ in outcomes for r in held]
    values = [v for _, vs in outcomes for v in vs]
    wrong = check_results(results, values)
    assert not wrong, wrong[:8]


def test_results_held_while_their_neighbours_are_recycled_stay_intact(executor2):
    """Results kept while others are dropped and their segments reused by new tasks never change."""
    kept, kept_values = [], []
    for round_ in range(6):
        values = [float(10 * round_ + i) for i in range(4)]
        futures = [executor2.submit(_tasks.check_and_bump, np.full(N, v), v) for v in values]
        results = [f.result(TIMEOUT) for f in futures]
        del futures
        kept += results[::2]  # keep half; the other half goes back to the pool at once
        kept_values += values[::2]
        del results
        maps = list(executor2.map(_tasks.make_plain, [N] * 3, [-2.0] * 3))  # lent segments too
        assert all((m == -2.0).all() for m in maps)
        del maps
        wrong = check_results(kept, kept_values)
        assert not wrong, wrong[:8]
