"""map() behaves as ProcessPoolExecutor's: order, chunks, timeouts, errors, patched submit, buffersize.

The two classes are compared as tests/integration/_differential.py describes.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import inspect
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest

from tests import _tasks
from tests.integration._differential import (
    BIG,
    FORK,
    SHORT,
    TIMEOUT,
    big,
    error_of,
    wait_for,
)

# --- map ---------------------------------------------------------------------------


def test_map_preserves_order_at_every_chunksize(make_pool):
    """map() yields results in input order, whatever the chunksize."""
    executor = make_pool()
    for chunksize in (1, 3, 50):
        results = list(executor.map(_tasks.double, range(20), timeout=TIMEOUT, chunksize=chunksize))
        assert results == [2 * i for i in range(20)], chunksize


def test_map_rejects_chunksize_below_one(make_pool):
    """map() with chunksize < 1 raises the same ValueError."""
    executor = make_pool()
    assert error_of(lambda: executor.map(_tasks.double, range(3), chunksize=0)) == (
        ValueError,
        "chunksize must be >= 1.",
    )


def test_map_timeout_raises_timeout_error(make_pool, gate):
    """Iterating map() raises TimeoutError once its timeout has passed."""
    executor = make_pool()
    results = executor.map(_tasks.block_until, [gate.release] * 3, timeout=SHORT)
    with pytest.raises(cf.TimeoutError):
        next(results)


def test_map_exception_surfaces_at_the_failing_chunk(make_pool):
    """map() yields the results before the failing chunk, then raises its exception, then stops."""
    executor = make_pool()
    for chunksize, before in ((1, [0, 10, 20]), (2, [0, 10]), (4, [])):
        results = executor.map(_tasks.fail_on, range(8), [3] * 8, timeout=TIMEOUT, chunksize=chunksize)
        seen = [next(results) for _ in before]
        with pytest.raises(ValueError, match=r"^bad item 3$"):
            next(results)
        assert seen == before, chunksize
        assert list(results) == []


def test_callable_object_state_is_fresh_in_every_task(make_pool):
    """A callable object arrives as its own copy in every task, through map() and submit()."""
    executor = make_pool(max_workers=1)
    counter = _tasks.CallCounter()
    assert list(executor.map(counter, range(4), timeout=TIMEOUT)) == [1, 1, 1, 1]
    assert list(executor.map(counter, range(4), chunksize=2)) == [1, 2, 1, 2]
    assert [executor.submit(counter).result(TIMEOUT) for _ in range(2)] == [1, 1]
    adder = functools.partial(_tasks.add, [1])
    assert executor.submit(adder, [2]).result(TIMEOUT) == [1, 2]
    adder.args[0].append(3)  # a partial's list may change between tasks
    assert executor.submit(adder, [2]).result(TIMEOUT) == [1, 3, 2]


def counted_map(
    executor: ProcessPoolExecutor, fn: Callable[..., Any], items: list[Any]
) -> tuple[list[Any], int]:
    """Run map with submit replaced on the instance, as tqdm's process_map does; count the chunks."""
    calls = []
    original = executor.submit

    def submit(*args: Any, **kwargs: Any) -> cf.Future[Any]:
        future = original(*args, **kwargs)
        future.add_done_callback(calls.append)
        return future

    executor.submit = submit  # type: ignore[method-assign]
    results = list(executor.map(fn, items, timeout=TIMEOUT, chunksize=2))
    wait_for(lambda: len(calls) == (len(items) + 1) // 2)  # done-callbacks may trail the results
    return results, len(calls)


@pytest.mark.parametrize("items", [list(range(9)), [big(i) for i in range(3)]], ids=["plain", "arrays"])
def test_map_calls_a_submit_replaced_on_the_instance_for_every_chunk(make_pool, items):
    """A submit() patched on the instance (tqdm's process_map) sees every chunk map sends."""
    results, chunks = counted_map(make_pool(), _tasks.identity, items)
    assert len(results) == len(items)
    assert chunks == (len(items) + 1) // 2


def test_map_calls_a_subclass_submit_for_every_chunk(executor_cls):
    """A subclass that overrides submit() sees every chunk map sends."""
    seen = []

    class Counting(executor_cls):  # type: ignore[valid-type, misc]
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
            seen.append(fn)
            return super().submit(fn, *args, **kwargs)

    with Counting(2, mp_context=FORK) as executor:
        assert list(executor.map(_tasks.double, range(10), chunksize=3)) == [2 * i for i in range(10)]
    assert len(seen) == 4


def test_map_drives_tqdm_process_map_progress(executor_cls):
    """tqdm's executor map counts chunks through a patched submit: its bar reaches the total."""
    concurrent = pytest.importorskip("tqdm.contrib.concurrent")
    tqdm = pytest.importorskip("tqdm")
    bars = []

    class Bar(tqdm.tqdm):  # type: ignore[misc, name-defined]
        def close(self) -> None:
            bars.append(self.n)
            super().close()

    executor_map = concurrent._executor_map  # what process_map runs, with its executor class
    with open(os.devnull, "w") as devnull:
        results = executor_map(
            functools.partial(executor_cls, mp_context=FORK),
            _tasks.double,
            range(12),
            max_workers=2,
            chunksize=3,
            tqdm_class=Bar,
            disable=False,
            file=devnull,
        )
    assert results == [2 * i for i in range(12)]
    assert bars[-1:] == [4]  # one update per chunk


def test_map_multiple_iterables_stop_at_the_shortest(make_pool):
    """map() over iterables of different lengths stops at the shortest, as zip() does."""
    executor = make_pool()
    assert list(executor.map(_tasks.add, range(5), range(10, 13), timeout=TIMEOUT)) == [10, 12, 14]
    assert list(executor.map(_tasks.add, range(3), range(10, 20), chunksize=2)) == [10, 12, 14]


def test_map_empty_iterable_yields_nothing(make_pool):
    """map() over an empty iterable (or no iterable at all) yields nothing."""
    executor = make_pool()
    assert list(executor.map(_tasks.double, [], timeout=TIMEOUT)) == []
    assert list(executor.map(_tasks.double, iter(()), chunksize=4)) == []
    assert list(executor.map(_tasks.pid)) == []


def test_map_consumes_generators(make_pool):
    """map() accepts generators, of scalars and of large arrays, in and out."""
    executor = make_pool()
    scalars = executor.map(_tasks.double, (i for i in range(7)), chunksize=2)
    assert list(scalars) == [0, 2, 4, 6, 8, 10, 12]
    sums = executor.map(_tasks.total, (big(i) for i in range(3)), timeout=TIMEOUT)
    assert list(sums) == [0.0, float(BIG), 2.0 * BIG]
    arrays = list(executor.map(_tasks.make_plain, (BIG for _ in range(2)), (5.0, 6.0), chunksize=2))
    for array, value in zip(arrays, (5.0, 6.0), strict=True):
        np.testing.assert_array_equal(array, big(value))


def has_buffersize(cls: type[ProcessPoolExecutor]) -> bool:
    return "buffersize" in inspect.signature(cls.map).parameters


def test_map_buffersize_yields_what_map_yields(executor_cls):
    """map(buffersize=n) (3.14; ours on every version) yields map()'s results, reading input lazily."""
    if not has_buffersize(executor_cls):
        pytest.skip("ProcessPoolExecutor.map has buffersize from Python 3.14")
    with executor_cls(2, mp_context=FORK) as executor:
        for chunksize in (1, 3):
            results = executor.map(
                _tasks.double, range(10), timeout=TIMEOUT, chunksize=chunksize, buffersize=2
            )
            assert list(results) == [2 * i for i in range(10)]
        endless = executor.map(_tasks.double, itertools.count(), buffersize=2)
        assert list(itertools.islice(endless, 5)) == [0, 2, 4, 6, 8]
        endless.close()
        failing = executor.map(_tasks.fail_on, range(8), [3] * 8, buffersize=2)
        assert [next(failing) for _ in range(3)] == [0, 10, 20]
        with pytest.raises(ValueError, match=r"^bad item 3$"):
            next(failing)


def test_map_buffersize_is_validated_as_in_python_314(executor_cls):
    """A bad buffersize raises 3.14's errors; with a bad chunksize too, the chunksize error wins."""
    if not has_buffersize(executor_cls):
        pytest.skip("ProcessPoolExecutor.map has buffersize from Python 3.14")
    with executor_cls(1, mp_context=FORK) as executor:
        assert error_of(lambda: executor.map(_tasks.double, [], buffersize=0)) == (
            ValueError,
            "buffersize must be None or > 0",
        )
        assert error_of(lambda: executor.map(_tasks.double, [], buffersize="2")) == (
            TypeError,
            "buffersize must be an integer or None",
        )
        # 3.14's ProcessPoolExecutor.map checks chunksize before Executor.map checks buffersize.
        assert error_of(lambda: executor.map(_tasks.double, [], chunksize=0, buffersize=0)) == (
            ValueError,
            "chunksize must be >= 1.",
        )
