"""The semantics the README promises ("Semantics"), each under every start method."""

from __future__ import annotations

import dataclasses
import gc
import os
import pickle
import time

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks
from tests.conftest import our_processes

TIMEOUT = 60
BIG = 1 << 18  # float64 elements: 2 MiB, above the default min_nbytes


@dataclasses.dataclass
class Holder:
    label: str
    data: np.ndarray


class Custom:
    def __init__(self, payload):
        self.payload = payload


def test_plain_argument_is_a_private_copy(executor):
    """A worker's writes to a plain array argument never reach the parent."""
    a = np.arange(BIG, dtype=np.float64)
    assert executor.submit(_tasks.scribble, a).result(TIMEOUT) == 7.0 * BIG
    np.testing.assert_array_equal(a, np.arange(BIG, dtype=np.float64))
    stats = executor.stats()
    assert (stats.arrays_copied, stats.bytes_copied) == (1, a.nbytes)
    assert stats.arrays_by_reference == 0


def test_plain_argument_worker_copy_is_writable_as_pickling_makes_it(executor):
    """The worker's copy of a read-only plain array is writable before 3.14, read-only from (protocol 5)."""
    a = np.ones(BIG)
    a.flags.writeable = False
    writeable = pickle.DEFAULT_PROTOCOL < 5
    assert executor.submit(_tasks.flags, a).result(TIMEOUT) == {"writeable": writeable, "shared": True}
    assert executor.submit(_tasks.flags, a[::2]).result(TIMEOUT) == {"writeable": True, "shared": True}


def test_shared_argument_writes_are_visible(executor):
    """In-place writes to a shared argument are visible to the parent, with no copy."""
    a = zc.zeros(BIG)
    executor.submit(_tasks.scribble, a).result(TIMEOUT)
    assert (a == 7).all()
    stats = executor.stats()
    assert stats.arrays_copied == stats.bytes_copied == 0
    assert (stats.arrays_by_reference, stats.bytes_by_reference) == (1, a.nbytes)


def test_partitioned_writes_through_map(executor):
    """map over disjoint views of one shared array fills it in place, no copies, no locks."""
    a = zc.empty(1_000_000)
    a[:] = np.arange(a.size)
    chunks = np.array_split(a, 8)
    list(executor.map(_tasks.square_in_place, chunks, timeout=TIMEOUT))
    np.testing.assert_array_equal(a, np.arange(a.size, dtype=np.float64) ** 2)
    assert executor.stats().bytes_copied == 0


@pytest.mark.parametrize(
    "make_view",
    [
        pytest.param(lambda a: a[10:-10], id="slice"),
        pytest.param(lambda a: a[::3], id="strided"),
        pytest.param(lambda a: a[::-1], id="negative"),
        pytest.param(lambda a: a.reshape(512, -1).T, id="transpose"),
        pytest.param(lambda a: a.reshape(512, -1)[::-2, 5:100:7], id="2d-mixed"),
        pytest.param(lambda a: a[5, ...], id="0-d"),
        pytest.param(lambda a: np.lib.stride_tricks.as_strided(a, (4, 100), (800, 8)), id="as_strided"),
    ],
)
def test_views_of_shared_arrays_travel_by_reference(executor, make_view):
    """Any view of a shared array is the same memory in the worker: 0 bytes copied."""
    base = zc.empty(BIG)
    base[:] = np.arange(BIG)
    view = make_view(base)
    dtype, shape, data, shared = executor.submit(_tasks.describe, view).result(TIMEOUT)
    assert (dtype, shape, data) == (view.dtype, view.shape, np.ascontiguousarray(view).tobytes())
    assert shared
    assert executor.stats().bytes_copied == 0


def test_views_of_shared_arrays_write_through(executor):
    """A worker writing a negative-stride view of a shared array writes the parent's memory."""
    a = zc.zeros(1000)
    executor.submit(_tasks.fill_slice, a[::-1], 0, 10, 5.0).result(TIMEOUT)
    assert (a[-10:] == 5).all()
    assert (a[:-10] == 0).all()


def test_small_arrays_are_pickled(executor):
    """Arrays under min_nbytes take the ordinary pickle path."""
    a = np.arange(100.0)
    assert executor.submit(_tasks.total, a).result(TIMEOUT) == a.sum()
    stats = executor.stats()
    assert (stats.arrays_pickled, stats.bytes_pickled) == (1, a.nbytes)
    assert stats.arrays_copied == 0


def test_default_min_nbytes_is_256_kib(executor):
    """By default a plain array of 256 KiB reaches the worker in shared memory, 8 bytes less does not."""
    at = np.ones((256 << 10) // 8)
    under = np.ones(at.size - 1)
    assert executor.submit(_tasks.is_shared_in_worker, at).result(TIMEOUT) is True
    assert executor.submit(_tasks.is_shared_in_worker, under).result(TIMEOUT) is False


def test_array_subclasses_are_pickled(executor):
    """A large array of a NumPy subclass (masked) keeps its own pickling: its class and mask arrive."""
    a = np.ma.masked_array(np.arange(BIG, dtype=np.float64), mask=np.arange(BIG) % 3 == 0)
    assert executor.submit(_tasks.array_kind, a).result(TIMEOUT) == ("MaskedArray", True)
    assert executor.submit(_tasks.is_shared_in_worker, a).result(TIMEOUT) is False
    back = executor.submit(_tasks.identity, a).result(TIMEOUT)
    assert type(back) is np.ma.MaskedArray
    np.testing.assert_array_equal(back.mask, a.mask)
    np.testing.assert_array_equal(back.data, a.data)


def test_min_nbytes_sets_the_threshold(mp_context):
    """With min_nbytes=0 every non-empty plain array is copied; a huge one pickles all."""
    a = np.arange(10.0)
    with zc.SharedArrayExecutor(1, mp_context=mp_context, min_nbytes=0) as ex:
        assert ex.submit(_tasks.total, a).result(TIMEOUT) == a.sum()
        assert ex.stats().arrays_copied == 1
    with zc.SharedArrayExecutor(1, mp_context=mp_context, min_nbytes=1 << 40) as ex:
        assert ex.submit(_tasks.total, np.ones(BIG)).result(TIMEOUT) == BIG
        assert ex.stats().arrays_pickled == 1


def test_returned_plain_array_is_owned_by_parent(executor):
    """A large result comes back writable, copied once, and outlives the executor."""
    result = executor.submit(_tasks.make_plain, BIG, 4.0).result(TIMEOUT)
    executor.shutdown()
    assert result.flags.writeable
    assert zc.is_shared(result)
    result += 1
    assert (result == 5).all()
    stats = executor.stats()
    assert (stats.arrays_copied, stats.bytes_copied, stats.live_segments) == (1, result.nbytes, 1)
    del result
    gc.collect()
    assert executor.stats().live_segments == 0


def test_worker_allocated_result_travels_by_reference(executor):
    """A result the worker allocates with zerocopy_executor.empty comes back by reference."""
    result = executor.submit(_tasks.make_shared, BIG, 2.0).result(TIMEOUT)
    assert (result == 2).all()
    assert result.flags.writeable
    stats = executor.stats()
    assert stats.arrays_by_reference == 1
    assert stats.bytes_copied == 0


def test_result_can_be_sent_back_by_reference(executor):
    """An array received from a worker is shared: sending it again copies nothing."""
    result = executor.submit(_tasks.make_shared, BIG, 2.0).result(TIMEOUT)
    assert executor.submit(_tasks.total, result).result(TIMEOUT) == 2.0 * BIG
    assert executor.stats().bytes_copied == 0


def test_returned_view_of_shared_input_aliases_it(executor):
    """A worker returning a view of a shared input returns that memory by reference."""
    a = zc.zeros(BIG)
    half = executor.submit(_tasks.first_half, a).result(TIMEOUT)
    assert np.shares_memory(half, a)
    half[:] = 9
    assert (a[: BIG // 2] == 9).all()
    assert executor.stats().bytes_copied == 0


def test_returned_argument_copy_stays_valid(executor):
    """A worker returning its (copied) plain argument gives a valid, independent array."""
    a = np.arange(BIG, dtype=np.float64)
    out = executor.submit(_tasks.negate_and_return, a).result(TIMEOUT)
    np.testing.assert_array_equal(out, -np.arange(BIG, dtype=np.float64))
    np.testing.assert_array_equal(a, np.arange(BIG, dtype=np.float64))
    assert not np.shares_memory(out, a)


def test_same_segment_twice_in_one_result(executor):
    """A result holding a worker's shared array and a view of it gets two independent arrays, as pickled."""
    whole, every_other = executor.submit(_tasks.return_same_twice, BIG).result(TIMEOUT)
    assert not np.shares_memory(whole, every_other)
    assert zc.is_shared(whole)  # the first goes back by reference, uncopied
    whole[0] = 42
    assert every_other[0] == 3.0


def test_nested_containers_are_searched(executor):
    """Arrays nested in lists, tuples, dicts, dataclasses and custom objects are shared."""
    big = np.arange(BIG, dtype=np.float64)
    payload = {
        "list": [big, 1, "x"],
        "tuple": (big + 1,),
        "nested": {"deeper": [[big + 2]]},
        "dataclass": Holder("h", big + 3),
        "custom": Custom(big + 4),
    }
    back = executor.submit(_tasks.nested_roundtrip, payload).result(TIMEOUT)
    np.testing.assert_array_equal(back["list"][0], big)
    np.testing.assert_array_equal(back["tuple"][0], big + 1)
    np.testing.assert_array_equal(back["nested"]["deeper"][0][0], big + 2)
    assert isinstance(back["dataclass"], Holder)
    np.testing.assert_array_equal(back["dataclass"].data, big + 3)
    np.testing.assert_array_equal(back["custom"].payload, big + 4)
    stats = executor.stats()
    # Five copied there; the worker returned those very views, so they come back by
    # reference, aliasing the argument copies (the parent's own arrays are untouched).
    assert (stats.arrays_copied, stats.bytes_copied) == (5, 5 * big.nbytes)
    assert stats.arrays_by_reference == 5


class SubmitCounter:
    """Counts calls of SharedArrayExecutor.submit, patched on the class itself.

    Patched there (not in a subclass nor on the instance, which map() honours by sending
    every chunk through submit) so that map's own choice of path can be observed.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.submitted = 0
        original = zc.SharedArrayExecutor.submit

        def submit(executor, fn, /, *args, **kwargs):
            self.submitted += 1
            return original(executor, fn, *args, **kwargs)

        monkeypatch.setattr(zc.SharedArrayExecutor, "submit", submit)


def test_map_sends_only_small_plain_chunks_around_submit(mp_context, monkeypatch):
    """map() skips submit() only for small chunks of plain arguments: not arrays, large chunks, lending."""
    counter = SubmitCounter(monkeypatch)
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        assert list(ex.map(_tasks.double, range(6), timeout=TIMEOUT)) == [2 * i for i in range(6)]
        assert counter.submitted == 0
        arrays = [np.ones(4), np.ones(BIG)]
        assert list(ex.map(_tasks.total, arrays, timeout=TIMEOUT)) == [4.0, float(BIG)]
        assert counter.submitted == 2
        large = [b"x" * (1 << 20)] * 2  # plain, but held until sent: the envelope waits instead
        assert list(ex.map(len, large, timeout=TIMEOUT)) == [1 << 20] * 2
        assert counter.submitted == 4
        first = list(ex.map(_tasks.make_plain, [BIG], [1.0], timeout=TIMEOUT))
        assert counter.submitted == 4
        after = list(ex.map(_tasks.make_plain, [BIG] * 2, [2.0, 3.0], timeout=TIMEOUT))
        assert counter.submitted == 6  # a large result came back: segments are lent, through submit()
        assert [float(r[0]) for r in first + after] == [1.0, 2.0, 3.0]


def test_keyword_arguments_are_shared(executor):
    """Arrays passed as keyword arguments take the same paths."""
    a = np.ones(BIG)
    assert executor.submit(_tasks.add, x=a, y=zc.share(a)).result(TIMEOUT).sum() == 2 * BIG
    stats = executor.stats()
    assert stats.arrays_copied == 2  # x there, the sum back
    assert stats.arrays_by_reference == 1


def test_object_arrays_fall_back_to_pickling(executor):
    """Object arrays are pickled whatever their size."""
    a = np.array([{"k": i} for i in range(BIG // 8)], dtype=object)
    back = executor.submit(_tasks.identity, a).result(TIMEOUT)
    assert back.dtype == object
    assert back[5] == {"k": 5}
    stats = executor.stats()
    assert stats.arrays_copied == 0
    assert stats.arrays_pickled == 2


def test_lambda_runs_under_every_start_method(executor):
    """Lambdas and closures are pickled by value with cloudpickle."""
    offset = 3
    assert executor.submit(lambda x: x + offset, 1).result(TIMEOUT) == 4
    assert list(executor.map(lambda v: v * offset, range(4), timeout=TIMEOUT)) == [0, 3, 6, 9]


def test_initializer_global_is_visible_to_tasks(mp_context):
    """A global set by the initializer is the one tasks read (functions by reference first)."""
    with zc.SharedArrayExecutor(
        1, mp_context=mp_context, initializer=_tasks.set_global, initargs=("from-init",)
    ) as ex:
        assert ex.submit(_tasks.get_global).result(TIMEOUT) == "from-init"


def test_shared_array_survives_parent_dropping_it(executor):
    """A shared argument stays valid until its task ends, even if the caller drops it."""
    a = zc.empty(BIG)
    a[:] = 1.0
    future = executor.submit(_tasks.total, a)
    del a
    gc.collect()
    assert future.result(TIMEOUT) == BIG


def test_zero_size_and_0d_arrays(executor):
    """Zero-size and 0-d arrays round-trip exactly."""
    for value in (np.empty((0, 3)), zc.empty((0, 5)), np.float32(1.5), np.array(2.5)):
        back = executor.submit(_tasks.identity, value).result(TIMEOUT)
        assert type(back) is type(value)
        assert np.asarray(back).shape == np.asarray(value).shape
        np.testing.assert_array_equal(back, value)


def test_executor_stats_start_at_zero():
    """A new executor has counted nothing and holds no segments."""
    with zc.SharedArrayExecutor(1) as ex:
        assert ex.stats() == zc.ExecutorStats()


def test_result_outlives_dropped_executor(mp_context):
    """Dropping an executor unread stops its processes; its results still travel by reference."""
    before = our_processes()
    ex = zc.SharedArrayExecutor(1, mp_context=mp_context)
    result = ex.submit(_tasks.make_plain, BIG, 1.0).result(TIMEOUT)
    assert our_processes().items() - before.items(), "the executor started no process"
    del ex
    deadline = time.monotonic() + 10
    while our_processes().items() - before.items():
        assert time.monotonic() < deadline, "the dropped executor's processes did not exit"
        gc.collect()
        time.sleep(0.05)
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as other:
        assert other.submit(_tasks.total, result).result(TIMEOUT) == BIG
        assert other.stats().bytes_copied == 0


@pytest.mark.parametrize("fn", [_tasks.shared_then_unpicklable, _tasks.copied_then_unpicklable])
def test_result_that_fails_to_encode_leaves_no_segment(mp_context, fn):
    """A result whose encoding fails half-way: its segments stay the worker's, and are unlinked."""
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        for _ in range(3):
            assert type(executor.submit(fn, BIG).exception(TIMEOUT)) is TypeError
        me = os.getpid()
        deadline = time.monotonic() + 10
        while workers := [n for n in os.listdir("/dev/shm") if n.startswith("zc_") and f"_{me}_" not in n]:
            assert time.monotonic() < deadline, f"segments the workers made and nobody owns: {workers}"
            time.sleep(0.05)
        assert executor.submit(_tasks.add, 1, 2).result(TIMEOUT) == 3
