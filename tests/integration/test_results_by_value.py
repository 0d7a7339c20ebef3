"""Results pickle refuses (lambdas, closures, local classes) come back by value, as with loky.

An intended difference: ProcessPoolExecutor fails these futures. A result that neither
pickle nor cloudpickle can pickle fails its own future with pickle's error, as in
ProcessPoolExecutor, and the pool works on.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import _RemoteTraceback

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks

TIMEOUT = 60
BIG = 1 << 18  # float64 elements: 2 MiB, above the default min_nbytes
REFUSED = (pickle.PicklingError, AttributeError, TypeError)


def check_returned(fn_name: str, value) -> None:
    """What each task of _tasks returns, checked on this side."""
    if fn_name in ("return_lambda", "return_closure"):
        assert value(10) == 10 + 2
    elif fn_name == "return_local_instance":
        assert value.greet() == "hello from a local class"
        assert isinstance(value, _tasks.Greeter)
        assert value.value == 2
    elif fn_name == "return_local_in_list":
        first, local, last = value
        assert (first, last) == (1, "x")
        assert local.greet() == "hello from a local class"
    else:
        assert value is np.linalg  # return_module: a module goes by name


RETURNS = [
    "return_lambda",
    "return_closure",
    "return_local_instance",
    "return_local_in_list",
    "return_module",
]


@pytest.mark.parametrize("fn_name", RETURNS)
def test_result_pickle_refuses_comes_back_by_value(mp_context, fn_name):
    """Intended improvement: a lambda, closure, local class instance or module returns, by submit and map."""
    fn = getattr(_tasks, fn_name)
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as executor:
        check_returned(fn_name, executor.submit(fn, 2).result(timeout=TIMEOUT))
        for chunksize in (1, 2):
            for value in executor.map(fn, [2, 2, 2], chunksize=chunksize, timeout=TIMEOUT):
                check_returned(fn_name, value)
    with ProcessPoolExecutor(2, mp_context=mp_context) as executor:
        exc = executor.submit(fn, 2).exception(timeout=TIMEOUT)
        assert isinstance(exc, REFUSED), repr(exc)


def test_local_class_result_shares_its_large_arrays(mp_context):
    """A local class instance holding a large array comes back with the array in shared memory."""
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        back = executor.submit(_tasks.return_local_instance, np.full(BIG, 3.0)).result(timeout=TIMEOUT)
        stats = executor.stats()
    # The argument is copied once; the result holds that very array: it goes back by reference.
    assert (stats.arrays_copied, stats.arrays_by_reference, stats.arrays_pickled) == (1, 1, 0)
    np.testing.assert_array_equal(back.value, np.full(BIG, 3.0))


@pytest.mark.parametrize(
    ("fn_name", "path"),
    [("return_lambda_beside_shared", "by_reference"), ("return_lambda_beside_large", "copied")],
)
def test_by_value_result_beside_arrays_counts_each_array_once(mp_context, fn_name, path):
    """A lambda beside a large array (made in shared memory, or copied) returns; the array crosses once."""
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        array, fn = executor.submit(getattr(_tasks, fn_name), BIG).result(timeout=TIMEOUT)
        stats = executor.stats()
    assert fn(1) == 2
    np.testing.assert_array_equal(array, np.ones(BIG))
    assert getattr(stats, f"arrays_{path}") == 1  # the refused first encoding is not counted
    assert stats.arrays_copied + stats.arrays_by_reference + stats.arrays_pickled == 1


@pytest.mark.parametrize("executor_cls", [ProcessPoolExecutor, zc.SharedArrayExecutor], ids=["ppe", "sae"])
@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_tasks.return_generator, "cannot pickle 'generator' object"),
        (_tasks.return_lock, "cannot pickle '_thread.lock' object"),
    ],
)
def test_result_no_pickler_can_pickle_fails_only_its_future(mp_context, executor_cls, fn, message):
    """A generator or a lock fails its own future with pickle's error, as in PPE; the pool works on."""
    with executor_cls(2, mp_context=mp_context) as executor:
        exc = executor.submit(fn).exception(timeout=TIMEOUT)
        assert type(exc) is TypeError
        assert str(exc) == message
        assert isinstance(exc.__cause__, _RemoteTraceback)
        with pytest.raises(TypeError, match=message):
            list(executor.map(fn, [0, 1], timeout=TIMEOUT))
        assert executor.submit(_tasks.add, 1, 2).result(timeout=TIMEOUT) == 3


def test_parent_local_class_comes_back_as_itself(mp_context):
    """An instance of a parent's local class comes back of that very class, its methods untouched."""

    class Local:
        def __init__(self, value):
            self.value = value

        def doubled(self):
            return 2 * self.value

    method = Local.__dict__["doubled"]
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        for _ in range(2):
            back = executor.submit(_tasks.identity, Local(4)).result(timeout=TIMEOUT)
            assert type(back) is Local
            assert back.doubled() == 8
    assert Local.__dict__["doubled"] is method  # not replaced by the copy sent back
