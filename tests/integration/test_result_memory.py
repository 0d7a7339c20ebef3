"""Results made in the worker come from warm shared memory the parent lent for them.

After the first call at a size, the parent lends each task a warm segment for its
result: ``zerocopy_executor.empty`` in the function places its array there, and with
the compiled allocator (``zerocopy_executor._arena``) so does NumPy for ``a * 2``. The
result then goes back by reference: no copy, no new segment. A result the worker keeps
is never reused, whatever comes after.
"""

from __future__ import annotations

import multiprocessing
import os
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks
from tests._checkout import run_checkout_script
from zerocopy_executor import _allocator, _worker

TIMEOUT = 60
N = 1 << 19  # float64: 4 MiB
ROUNDS = 5
ROOT = Path(__file__).resolve().parents[2]
needs_allocator = pytest.mark.skipif(not _allocator.AVAILABLE, reason="the C allocator was not built here")

pytestmark = pytest.mark.segments  # run under both kinds of segment (see CONTRIBUTING.md)


def test_allocator_built_where_required():
    """CI sets ZC_REQUIRE_ALLOCATOR where a compiler is present: the allocator's tests must run."""
    if not os.environ.get("ZC_REQUIRE_ALLOCATOR"):
        pytest.skip("ZC_REQUIRE_ALLOCATOR is not set (CI sets it)")
    assert _allocator.AVAILABLE, (
        "zerocopy_executor._arena is not importable: install with `pip install -e .` so that "
        "the tests import the checkout with the extension built into it"
    )


def our_segment_count() -> int:
    return sum(1 for name in os.listdir("/dev/shm") if name.startswith("zc_"))


def run_rounds(executor: zc.SharedArrayExecutor, fn: object, data: np.ndarray) -> tuple[list[int], list[int]]:
    """Call fn ROUNDS times, dropping each result; return copies and new segments per round."""
    copies, segments = [], []
    for _ in range(ROUNDS):
        before = executor.stats()
        count_before = our_segment_count()
        result = executor.submit(fn, data).result(TIMEOUT)
        np.testing.assert_array_equal(result, data * 2)
        after = executor.stats()
        copies.append(after.arrays_copied - before.arrays_copied)
        segments.append(our_segment_count() - count_before)
        del result
    return copies, segments


def test_empty_like_in_a_worker_uses_the_lent_segment(mp_context):
    """From the second call, zc.empty_like in the task takes a lent warm segment: no result copy."""
    data = np.arange(N, dtype=np.float64)
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        copies, segments = run_rounds(executor, _tasks.doubled_into_shared, data)
    assert copies == [1] * ROUNDS  # the argument; the result never
    assert segments[2:] == [0] * (ROUNDS - 2)  # warm segments reused, none created


@needs_allocator
def test_numpy_result_is_born_in_the_lent_segment(mp_context):
    """With the allocator, a * 2 in the task is made in the lent segment: it comes back uncopied."""
    data = np.arange(N, dtype=np.float64)
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        copies, segments = run_rounds(executor, _tasks.doubled, data)
    assert copies[0] == 2  # the first call: argument there, result back (nothing lent yet)
    assert copies[1:] == [1] * (ROUNDS - 1)  # then the argument only
    assert segments[2:] == [0] * (ROUNDS - 2)


@needs_allocator
def test_next_lend_is_sized_like_the_result_not_its_segment(mp_context):
    """After a result born in a lent segment, the next lend asks for the result's size.

    A large segment is a little larger than asked, each by its own amount (see
    _segment_buffer.staggered): asking for the size of the segment the result was born in
    would outgrow the pooled segments round after round, and every result of a map()
    would need a fresh one (W4 at 512 MB: 2.4 s per call instead of 0.14).
    """
    data = np.arange(N, dtype=np.float64)
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        copies, _ = run_rounds(executor, _tasks.doubled, data)
        assert copies[1:] == [1] * (ROUNDS - 1)  # the results were born in lent segments
        assert executor._sharing.lend_advice.nbytes == data.nbytes


def test_zeros_in_a_worker_are_zeros_in_recycled_memory(mp_context):
    """zc.zeros in a task is all zeros even in a recycled segment that held other data."""
    data = np.full(N, 7.0)
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        for value in (1.0, 2.0, 3.0):
            out = executor.submit(_tasks.zeros_plus, data, value).result(TIMEOUT)
            assert (out[::2] == value).all()
            assert (out[1::2] == 0).all()
            del out


@pytest.mark.parametrize(
    "fn", [_tasks.doubled_and_kept, _tasks.doubled_into_shared_and_kept], ids=["numpy-result", "empty-like"]
)
def test_a_result_the_worker_keeps_is_never_reused(mp_context, fn):
    """A result the worker keeps (a cache) stays intact while later tasks run with other data."""
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        for value in (1.0, 2.0, 3.0, 4.0):
            out = executor.submit(fn, np.full(N, value)).result(TIMEOUT)
            assert (out == 2 * value).all()
            del out
        for round_ in range(3):  # more results made where warm segments are lent
            back = executor.submit(_tasks.doubled_into_shared, np.full(N, 10.0 + round_)).result(TIMEOUT)
            assert (back == 2 * (10.0 + round_)).all()
            del back
            back = executor.submit(_tasks.doubled, np.full(N, 10.0 + round_)).result(TIMEOUT)
            assert (back == 2 * (10.0 + round_)).all()
            del back
        assert executor.submit(_tasks.kept_totals).result(TIMEOUT) == [2.0 * v * N for v in (1, 2, 3, 4)]


def test_large_temporaries_and_grown_arrays_come_back_right(mp_context):
    """A temporary that dies in the task, and an array NumPy reallocates, give correct results."""
    data = np.arange(N, dtype=np.float64)
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        for _ in range(3):
            assert executor.submit(_tasks.total_of_doubled, data).result(TIMEOUT) == float((data * 2).sum())
            grown = executor.submit(_tasks.grown, data).result(TIMEOUT)
            np.testing.assert_array_equal(grown[:N], data * 2)
            assert (grown[N:] == -1.0).all()
            del grown


@needs_allocator
def test_an_array_kept_by_a_failed_task_stays_mapped(mp_context):
    """A task that keeps an array born in the lent segment, then raises: the array stays valid."""
    data = np.ones(N)
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        executor.submit(_tasks.doubled, data).result(TIMEOUT)  # lent segments from now on
        error = executor.submit(_tasks.keep_and_raise, data).exception(TIMEOUT)
        assert type(error) is ValueError
        time.sleep(_worker.CACHE_IDLE_SECONDS * 2)  # the worker's mapping cache lets go
        assert executor.submit(_tasks.first_of_kept).result(TIMEOUT) == 20.0


@needs_allocator
def test_failed_tasks_leave_no_arena_behind(mp_context):
    """Many tasks that fail after a large allocation: later results are still born in shared memory."""
    data = np.ones(N)
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        executor.submit(_tasks.doubled, data).result(TIMEOUT)
        for _ in range(70):  # more than the allocator's 64 arenas
            assert type(executor.submit(_tasks.make_and_raise, data).exception(TIMEOUT)) is ValueError
        copies, _ = run_rounds(executor, _tasks.doubled, data)
    assert copies[1:] == [1] * (ROUNDS - 1)  # the argument only: results still born in place


@pytest.mark.parametrize("use_empty", [False, True], ids=["numpy", "zc.empty"])
def test_a_child_forked_in_a_task_never_allocates_in_the_lent_segment(use_empty):
    """A fork inside a task (a nested pool): the child's arrays never land where the result lies."""
    data = np.ones(N)
    with zc.SharedArrayExecutor(1, mp_context=multiprocessing.get_context("fork")) as executor:
        executor.submit(_tasks.doubled, data).result(TIMEOUT)  # lent segments from now on
        for _ in range(3):
            out = executor.submit(_tasks.fork_and_allocate, data, use_empty).result(TIMEOUT)
            assert (out == 2.0).all()
            del out


WITHOUT_ALLOCATOR = textwrap.dedent(
    """
    import multiprocessing
    import sys
    sys.modules["zerocopy_executor._arena"] = None  # as if built without a C compiler (fork keeps it so)
    import numpy as np
    import zerocopy_executor as zc
    from zerocopy_executor import _allocator, _worker
    from tests import _tasks

    assert not _allocator.AVAILABLE
    data = np.arange(1 << 19, dtype=np.float64)
    with zc.SharedArrayExecutor(1, mp_context=multiprocessing.get_context("fork")) as executor:
        for _ in range(3):
            np.testing.assert_array_equal(executor.submit(_tasks.doubled, data).result(60), data * 2)
            back = executor.submit(_tasks.doubled_into_shared, data).result(60)
            np.testing.assert_array_equal(back, data * 2)
    print("ok")
    """
)


def test_without_the_compiled_allocator_results_are_copied_and_right(tmp_path):
    """Where the C extension is missing (no compiler), everything works; results are copied."""
    script = tmp_path / "fallback.py"
    script.write_text(WITHOUT_ALLOCATOR)
    run = run_checkout_script(script)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
