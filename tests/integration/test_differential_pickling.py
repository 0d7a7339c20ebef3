"""What crosses the pipe behaves as with ProcessPoolExecutor, except the intended improvements.

Unpicklable values, read-only arrays, one object sent twice and memmaps match; lambdas,
local initializers, byte-swapped strided arrays and a value that fails to unpickle are
the intended improvements (README, "Differences from ProcessPoolExecutor").

The two classes are compared as tests/integration/_differential.py describes.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool, _RemoteTraceback
from typing import Any

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks
from tests.integration._differential import (
    BIG,
    EXECUTORS,
    FORK,
    PPE,
    SAE,
    SETTLE,
    TIMEOUT,
    big,
    shut_down_cancelling_behind_a_running_task,
)

# --- what cannot be pickled ----------------------------------------------------------


def test_unpicklable_argument_fails_only_that_future(executor_cls):
    """An argument that cannot be pickled fails its own future; the pool keeps working."""
    with executor_cls(2, mp_context=FORK) as executor:
        future = executor.submit(_tasks.identity, (big(1), threading.Lock()))
        exc = future.exception(timeout=TIMEOUT)
        assert type(exc) is TypeError
        assert str(exc) == "cannot pickle '_thread.lock' object"
        assert isinstance(exc.__cause__, _RemoteTraceback)
        keyword = executor.submit(_tasks.echo_kwargs, lock=threading.Lock()).exception(timeout=TIMEOUT)
        assert type(keyword) is TypeError
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3
        assert executor.submit(_tasks.total, big(2)).result(timeout=TIMEOUT) == 2.0 * BIG


def test_unpicklable_result_fails_only_that_future(executor_cls):
    """A result that cannot be pickled fails its own future; the pool keeps working."""
    with executor_cls(2, mp_context=FORK) as executor:
        exc = executor.submit(_tasks.return_lock).exception(timeout=TIMEOUT)
        assert type(exc) is TypeError
        assert str(exc) == "cannot pickle '_thread.lock' object"
        assert isinstance(exc.__cause__, _RemoteTraceback)
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3
        np.testing.assert_array_equal(
            executor.submit(_tasks.identity, big(4)).result(timeout=TIMEOUT), big(4)
        )


def array_flags_outcome(cls: type[ProcessPoolExecutor], dtype: str = "f8") -> dict[str, Any]:
    small = np.arange(10.0).astype(dtype)
    small.setflags(write=False)
    large = big(1).astype(dtype)
    large.setflags(write=False)
    with cls(1, mp_context=FORK) as executor:
        return {
            "small argument": executor.submit(_tasks.array_kind, small).result(timeout=TIMEOUT),
            "large argument": executor.submit(_tasks.array_kind, large).result(timeout=TIMEOUT),
            "small result": executor.submit(_tasks.identity, small).result(timeout=TIMEOUT).flags.writeable,
            "large result": executor.submit(_tasks.identity, large).result(timeout=TIMEOUT).flags.writeable,
        }


def test_read_only_arrays_arrive_as_they_do_in_process_pool_executor():
    """A read-only array argument or result arrives as writable (or not) as with PPE, whatever its size."""
    assert array_flags_outcome(SAE) == array_flags_outcome(PPE)


@pytest.mark.parametrize("dtype", ["M8[ns]", "m8[us]"])
def test_read_only_datetime_arrays_arrive_as_they_do_in_process_pool_executor(dtype):
    """Read-only datetime64 and timedelta64 arrays, which export no buffer, arrive as with PPE (writable)."""
    assert array_flags_outcome(SAE, dtype) == array_flags_outcome(PPE, dtype)


def test_small_strided_byte_swapped_view_arrives_laid_out_as_with_process_pool_executor():
    """A worker's small strided view of a Fortran-ordered byte-swapped array arrives in PPE's layout."""
    array = np.asfortranarray(np.arange(21, dtype=">i4").reshape(3, 7))
    layouts = {}
    for cls in EXECUTORS:
        with cls(1, mp_context=FORK) as executor:
            (view,) = executor.submit(_tasks.views_of, array, ("step",)).result(timeout=TIMEOUT)
        np.testing.assert_array_equal(view, array[:, ::2])
        layouts[cls] = (view.flags.c_contiguous, view.flags.f_contiguous, view.strides)
    assert layouts[SAE] == layouts[PPE]


def test_read_only_view_of_a_shared_array_arrives_read_only_on_every_python():
    """Intended difference before 3.14: a read-only shared argument is the same memory, still read-only."""
    shared = zc.zeros(BIG)
    view = shared[::2]
    view.setflags(write=False)
    with SAE(1, mp_context=FORK) as executor:
        assert executor.submit(_tasks.array_kind, view).result(timeout=TIMEOUT) == ("ndarray", False)
        assert executor.submit(_tasks.array_kind, shared).result(timeout=TIMEOUT) == ("ndarray", True)
    del view, shared


def test_same_object_twice_arrives_as_one_object(executor_cls):
    """An object passed twice in one call, or returned twice, arrives as one object (pickle memo)."""
    with executor_cls(2, mp_context=FORK) as executor:
        for value in (big(1), np.arange(4.0), [1, 2]):
            assert executor.submit(_tasks.same_object, value, value).result(timeout=TIMEOUT) is True
            first, second = executor.submit(_tasks.identity, (value, value)).result(timeout=TIMEOUT)
            assert first is second


def test_memmap_argument_is_the_file_itself_with_us(tmp_path):
    """Intended difference: a file memmap travels by reference (as joblib's); PPE hands over a copy."""
    mapped = np.memmap(tmp_path / "data.bin", dtype=np.float64, mode="w+", shape=(BIG,))
    mapped[:] = 3.0
    outcomes = {}
    for cls in EXECUTORS:
        with cls(1, mp_context=FORK) as executor:
            assert executor.submit(_tasks.total, mapped).result(timeout=TIMEOUT) == 3.0 * BIG
            kind = executor.submit(_tasks.array_kind, mapped).result(timeout=TIMEOUT)
            executor.submit(_tasks.fill_slice, mapped, 0, 10, 7.0).result(timeout=TIMEOUT)
            outcomes[cls] = (kind, float(mapped[0]))
        mapped[:] = 3.0
    assert outcomes == {PPE: (("memmap", True), 3.0), SAE: (("memmap", True), 7.0)}
    del mapped


def test_small_memmap_argument_is_pickled_as_a_memmap_as_with_process_pool_executor(tmp_path):
    """A np.memmap under min_nbytes is pickled as before: it arrives as a memmap, as with PPE."""
    mapped = np.memmap(tmp_path / "small.bin", dtype=np.float64, mode="w+", shape=(100,))
    mapped[:] = 5.0
    seen = {}
    for cls in EXECUTORS:
        with cls(1, mp_context=FORK) as executor:
            kind = executor.submit(_tasks.array_kind, mapped).result(timeout=TIMEOUT)
            seen[cls] = (*kind, executor.submit(_tasks.total, mapped).result(timeout=TIMEOUT))
    assert seen[SAE] == seen[PPE]
    assert seen[SAE][0] == "memmap"
    assert seen[SAE][2] == 500.0
    del mapped


def test_lambda_initializer_runs_with_us_under_every_start_method(mp_context):
    """Intended improvement: a lambda initializer runs here under every method; PPE only under fork."""
    initializer = lambda: _tasks.set_global("set by a lambda")  # noqa: E731 - a lambda is the point
    with SAE(1, mp_context=mp_context, initializer=initializer) as executor:
        assert executor.submit(_tasks.get_global).result(timeout=TIMEOUT) == "set by a lambda"
    if mp_context.get_start_method() == "fork":  # PPE hands the initializer over by fork, unpickled
        with PPE(1, mp_context=mp_context, initializer=initializer) as executor:
            assert executor.submit(_tasks.get_global).result(timeout=TIMEOUT) == "set by a lambda"
    else:
        with (
            pytest.raises((pickle.PicklingError, AttributeError), match="lambda"),
            PPE(1, mp_context=mp_context, initializer=initializer) as executor,
        ):
            executor.submit(_tasks.get_global).result(timeout=TIMEOUT)


def test_strided_byte_swapped_array_keeps_its_dtype_with_us():
    """Intended improvement: PPE turns a strided >i4 array into <i4 (NumPy pickling), we keep >i4."""
    strided = np.arange(20, dtype=">i4")[::2]
    dtypes = {}
    for cls in EXECUTORS:
        with cls(1, mp_context=FORK) as executor:
            back = executor.submit(_tasks.identity, strided).result(timeout=TIMEOUT)
        np.testing.assert_array_equal(back, strided)
        dtypes[cls] = back.dtype.str
    assert dtypes == {PPE: "<i4", SAE: ">i4"}


def test_lambda_runs_with_us_but_not_with_process_pool_executor():
    """Intended improvement: a lambda fails to pickle in PPE but runs here (cloudpickle)."""
    with PPE(2, mp_context=FORK) as executor:
        exc = executor.submit(lambda x: x + 1, 1).exception(timeout=TIMEOUT)
        # PicklingError before 3.12 and from 3.14; AttributeError ("Can't pickle local object") between.
        assert isinstance(exc, (pickle.PicklingError, AttributeError)), repr(exc)
        assert "lambda" in str(exc), repr(exc)
    with SAE(2, mp_context=FORK) as executor:
        assert executor.submit(lambda x: x + 1, 1).result(timeout=TIMEOUT) == 2


def test_local_initializer_runs_under_spawn_with_us():
    """Intended improvement: under spawn PPE cannot pickle a local-function initializer, ours runs it."""
    spawn = multiprocessing.get_context("spawn")

    def initializer() -> None:
        _tasks.set_global("set by a local function")

    # PicklingError before 3.12 and from 3.14; AttributeError ("Can't get local object") between.
    with (
        pytest.raises((pickle.PicklingError, AttributeError), match="initializer"),
        PPE(1, mp_context=spawn, initializer=initializer) as executor,
    ):
        executor.submit(_tasks.get_global).result(timeout=TIMEOUT)
    with SAE(1, mp_context=spawn, initializer=initializer) as executor:
        assert executor.submit(_tasks.get_global).result(timeout=TIMEOUT) == "set by a local function"


def test_futures_cancelled_by_shutdown_are_done_for_wait_with_us(gate):
    """Futures cancelled by shutdown(cancel_futures=True) count as done for wait() and as_completed()."""
    # A divergence in our favour, so ours only: PPE cancels them without notifying
    # waiters (their state stays CANCELLED, not CANCELLED_AND_NOTIFIED), so wait()
    # and as_completed() never report them done and time out.
    with SAE(1, mp_context=FORK) as executor:
        running, others = shut_down_cancelling_behind_a_running_task(executor, gate)
        assert running.result(timeout=TIMEOUT) == "first"
        done, not_done = cf.wait(others, timeout=SETTLE)
        assert (len(done), not_done) == (6, set())
        assert set(cf.as_completed(others, timeout=SETTLE)) == set(others)
        assert all(f.cancelled() for f in others[2:])


def test_result_failing_to_unpickle_fails_only_that_future_with_us():
    """Intended improvement: PPE breaks the pool, we fail only that future."""
    with PPE(2, mp_context=FORK) as executor:
        exc = executor.submit(_tasks.return_only_in_origin).exception(timeout=TIMEOUT)
        assert type(exc) is BrokenProcessPool
        assert "cannot rebuild outside process" in str(exc.__cause__)
        with pytest.raises(BrokenProcessPool):
            executor.submit(_tasks.add, 1, 2)
    with SAE(2, mp_context=FORK) as executor:
        exc = executor.submit(_tasks.return_only_in_origin).exception(timeout=TIMEOUT)
        assert type(exc) is ValueError
        assert str(exc).startswith("cannot rebuild outside process")
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3


@pytest.mark.parametrize(
    ("bad", "error"), [(_tasks.ErrorAtUnpickle, ValueError), (_tasks.ExitAtUnpickle, SystemExit)]
)
def test_argument_failing_to_unpickle_fails_only_that_future_with_us(bad, error):
    """Intended improvement: an argument a worker cannot unpickle breaks PPE's pool; here, one future."""
    with PPE(1, mp_context=FORK) as executor:
        assert type(executor.submit(_tasks.identity, bad()).exception(timeout=TIMEOUT)) is BrokenProcessPool
        with pytest.raises(BrokenProcessPool):
            executor.submit(_tasks.add, 1, 2)
    with SAE(1, mp_context=FORK) as executor:
        assert type(executor.submit(_tasks.identity, bad()).exception(timeout=TIMEOUT)) is error
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3


def test_result_exiting_while_unpickled_fails_only_that_future_with_us():
    """Intended improvement: SystemExit while the parent unpickles a result fails that future, as from fn."""
    with PPE(1, mp_context=FORK) as executor:
        future = executor.submit(_tasks.return_instance, _tasks.ExitAtUnpickle)
        assert type(future.exception(timeout=TIMEOUT)) is BrokenProcessPool
    with SAE(1, mp_context=FORK) as executor:
        future = executor.submit(_tasks.return_instance, _tasks.ExitAtUnpickle)
        assert type(future.exception(timeout=TIMEOUT)) is SystemExit
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3
