"""encode/decode in one process: which path each array takes."""

from __future__ import annotations

import pickle
import sys
import threading

import numpy as np
import pytest

import zerocopy_executor as zc
from zerocopy_executor import _codec, _decoding, _encoding, _main_functions, _plain, _results_by_value
from zerocopy_executor._arrays import PROCESS_SEGMENTS
from zerocopy_executor._config import SharingPolicy


def session(min_nbytes=1024, handover=False):
    return _encoding.EncodeSession(SharingPolicy(min_nbytes), PROCESS_SEGMENTS, handover=handover)


def test_encode_paths_are_counted():
    """Shared arrays go by reference, large plain ones are copied, small ones pickled."""
    s = session()
    shared, large, small = zc.zeros(1000), np.ones(1000), np.ones(10)
    payload = _codec.encode_call((shared, large, small), s)
    assert s.tally == {  # only the paths taken appear
        "arrays_by_reference": 1,
        "bytes_by_reference": 8000,
        "arrays_copied": 1,
        "bytes_copied": 8000,
        "arrays_pickled": 1,
        "bytes_pickled": 80,
    }
    a, b, c = _decoding.decode(payload)
    assert np.shares_memory(a, shared)
    np.testing.assert_array_equal(b, large)
    np.testing.assert_array_equal(c, small)
    assert len(payload) < 2000  # descriptors, not data


def test_encode_keeps_unpicklable_errors():
    """An unpicklable argument raises the pickler's own error."""
    with pytest.raises(TypeError, match="lock"):
        _codec.encode_call((threading.Lock(),), session())


@pytest.mark.parametrize(
    "value",
    [1, 2.5, "x", b"y", None, True, [1, "a"], ((1,),), {"k": [None]}, (), {}],
)
def test_plain_values_are_recognised_and_pickled_plainly(value):
    """Scalars and strings in short containers are plain: no array can hide in them."""
    assert _plain.is_plain(value)
    assert pickle.loads(_codec.encode_plain(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        np.ones(3),
        (1, np.float64(2.0)),  # a NumPy scalar is not a built-in
        len,
        {1: "non-str key"},
        list(range(17)),  # longer than worth scanning
        [[[[[1]]]]],  # deeper than worth scanning
        threading.Lock(),
    ],
)
def test_values_that_need_our_pickler_are_not_plain(value):
    """Anything else goes through the sharing pickler (is_plain may be stricter than encode_plain)."""
    assert not _plain.is_plain(value)


def test_encode_plain_gives_up_on_arrays_and_functions():
    """encode_plain answers None at the first object pickle does not handle natively."""
    assert _codec.encode_plain((1, np.ones(3))) is None
    assert _codec.encode_plain([len]) is None
    assert _codec.encode_plain(list(range(1000))) is not None  # long but plain is fine here


def test_encode_plain_keeps_no_reference_to_what_it_pickled():
    """The reused pickler's memo is cleared: a caller's argument is not kept alive."""
    argument = [[1, 2], {"a": 3}]
    before = sys.getrefcount(argument)
    assert _codec.encode_plain((argument,)) is not None
    assert sys.getrefcount(argument) == before


def test_encode_call_of_plain_arguments_matches_plain_pickle():
    """The fast path gives what the worker would get from the full pickler."""
    call = ((b"fn", True), ((1, "two"),), {"three": 3.0}, None)
    assert pickle.loads(_codec.encode_call(call, session())) == call


def test_encode_task_of_scalars_and_arrays_matches_the_full_pickler(monkeypatch):
    """Arguments made of scalars, strings and arrays skip cloudpickle, with the same outcome."""
    shared, large, small = zc.zeros(1000), np.ones(1000), np.arange(10, dtype=">i4")
    args, kwargs = (shared, large, small, 3, "s"), {"k": small[::2], "n": None}
    full = session()
    expected = _decoding.decode(_codec.encode_call(((b"fn", True), args, kwargs), full))
    monkeypatch.setattr(_codec, "ArgumentPickler", None)  # the full pickler must not be needed
    fast = session()
    function, (a, b, c, n, text), decoded_kwargs = _decoding.decode(
        _codec.encode_task((b"fn", True), args, kwargs, fast)
    )
    assert fast.tally == full.tally
    assert function == (b"fn", True)
    assert (n, text) == (3, "s")
    assert np.shares_memory(a, shared)
    for got, want in zip(
        (b, c, decoded_kwargs["k"]), (expected[1][1], expected[1][2], expected[2]["k"]), strict=True
    ):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    assert decoded_kwargs["n"] is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: _read_only(np.arange(1000.0)),
        lambda: np.arange(2000.0)[::2],
        lambda: np.asfortranarray(np.arange(1000.0).reshape(20, 50)),
        lambda: np.arange(1000, dtype=">f8"),
        lambda: _read_only(np.arange(10.0)),  # small: pickled
        lambda: np.arange(20, dtype=">i4")[::2],  # small, strided and byte-swapped
    ],
)
def test_encode_task_keeps_layout_dtype_and_flags_as_the_full_pickler(make, monkeypatch):
    """Arrays in args and kwargs arrive alike through both paths: values, dtype, layout, writeable."""
    full, fast = session(), session()
    call = ((b"fn", True), (make(),), {"k": make()})
    expected = _decoding.decode(_codec.encode_call(call, full))
    monkeypatch.setattr(_codec, "ArgumentPickler", None)  # the full pickler must not be needed
    got = _decoding.decode(_codec.encode_task(*call, fast))
    assert fast.tally == full.tally
    for a, b in ((got[1][0], expected[1][0]), (got[2]["k"], expected[2]["k"])):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
        assert a.flags.writeable == b.flags.writeable
        assert a.flags.f_contiguous == b.flags.f_contiguous


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "value",
    [
        np.ones(3, dtype=np.dtype(float, metadata={"f": lambda: 1})),  # metadata only cloudpickle pickles
        np.zeros(3, dtype=[("a", "<i4")]),
        np.array([None, 1], dtype=object),
    ],
)
def test_encode_task_sends_other_dtypes_through_the_full_pickler(value):
    """Arrays whose dtype may hold what plain pickle cannot take cloudpickle's path."""
    _, (back,), _ = _decoding.decode(_codec.encode_task((b"fn", True), (value,), {}, session()))
    assert back.dtype == value.dtype
    assert back.tolist() == value.tolist()


def test_encode_task_with_other_arguments_uses_the_full_pickler():
    """A lambda, or an array inside a list, takes cloudpickle's path and still shares the array."""
    large = np.ones(1000)
    s = session()
    _, (fn, nested), _ = _decoding.decode(
        _codec.encode_task((b"fn", True), (lambda x: x + 1, [large]), {}, s)
    )
    assert fn(1) == 2
    np.testing.assert_array_equal(nested[0], large)
    assert s.tally["arrays_copied"] == 1


def test_encode_task_keeps_no_reference_to_its_arguments():
    """The reused pickler's memo is cleared after a call with arrays."""
    small = np.ones(10)
    before = sys.getrefcount(small)
    _codec.encode_task((b"fn", True), (small,), {}, session())
    assert sys.getrefcount(small) == before


def test_handover_disowns_and_receiver_takes_ownership():
    """A result segment handed over is owned by whoever decodes it."""
    from zerocopy_executor import _segments

    out = zc.empty(1000)
    s = session(handover=True)
    payload = _codec.encode_result(out, s)
    buffer = s.buffers[0]
    assert _segments.is_owned(buffer)  # until the caller knows it sends this payload
    s.hand_over()
    assert not _segments.is_owned(buffer)
    handed_over = []
    back = _decoding.decode(payload, _decoding.DecodeSession(handed_over.append))
    assert handed_over == [buffer]
    assert _segments.is_owned(buffer)
    assert np.shares_memory(back, out)


def test_main_function_fingerprint_ignores_file_path():
    """A function's fingerprint depends on its code, not on where its file is."""

    def f(x):
        return x + 1

    g = f.__code__.replace(co_filename="/elsewhere.py")
    assert _main_functions._fingerprint(f.__code__) == _main_functions._fingerprint(g)

    def h(x):
        return x + 2

    assert _main_functions._fingerprint(f.__code__) != _main_functions._fingerprint(h.__code__)


def test_main_function_fingerprint_ignores_set_order():
    """Equal frozenset constants in another order (another hash seed) give the same fingerprint."""

    def f(x):
        return x in {1, 9, 17}

    one, other = frozenset([1, 9, 17]), frozenset([17, 9, 1])
    assert list(one) != list(other)  # same set, iterated (and so repr'd) in another order
    swap = {one: other}
    code = f.__code__.replace(co_consts=tuple(swap.get(c, c) for c in f.__code__.co_consts))
    assert _main_functions._fingerprint(f.__code__) == _main_functions._fingerprint(code)


def test_main_function_sent_by_name_alone_and_missing_raises_as_pickle_does():
    """With no by-value copy (its globals would not pickle), a missing name fails as pickle's would."""
    from zerocopy_executor._main_functions import _resolve_main_function

    with pytest.raises(AttributeError, match="Can't get attribute 'no_such_function' on <module "):
        _resolve_main_function("no_such_function", 0, None)


def test_result_pickle_refuses_is_refused_then_pickled_by_value():
    """encode_result refuses a lambda as pickle does; by_value pickles it, and named functions by name."""
    offset = 5
    result = [lambda x: x + offset, _main_functions.reduce_main_function, np.linalg]
    with pytest.raises(_results_by_value.REFUSALS):
        _codec.encode_result(result, session(handover=True))
    s = session(handover=True)
    fn, named, module = _decoding.decode(_codec.encode_result(result, s, by_value=True))
    assert fn(1) == 6
    assert named is _main_functions.reduce_main_function  # by name, as pickle sends it
    assert module is np.linalg


def test_result_by_value_keeps_pickles_recursion_error():
    """A result too deep to pickle raises RecursionError, as with pickle (not cloudpickle's PicklingError)."""
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RecursionError):
        _codec.encode_result([deep, lambda: 0], session(handover=True), by_value=True)


@pytest.mark.parametrize("dtype", ["f8", ">i4", "M8[ns]", "m8[us]", "O", "V0", "t:M8[s],x:i4"])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_read_only_copy_is_writable_exactly_where_protocol_5_pickling_makes_it(monkeypatch, dtype, layout):
    """With protocol 5 (ProcessPoolExecutor's from 3.14), a read-only array's copy gets pickling's flag."""
    monkeypatch.setattr(_encoding, "READ_ONLY_STAYS_READ_ONLY", True)
    fields = [tuple(field.split(":")) for field in dtype.split(",")] if ":" in dtype else dtype
    array = np.zeros((4, 6), dtype=fields, order="F" if layout == "F" else "C")
    if layout == "strided":
        array = array[:, ::2]
    array.flags.writeable = False
    pickled = pickle.loads(pickle.dumps(array, protocol=5))
    assert _encoding.arrives_writeable(array) == pickled.flags.writeable


@pytest.mark.parametrize("order", ["C", "F"])
def test_small_strided_byte_swapped_array_arrives_in_the_layout_pickling_gives(order):
    """A small strided byte-swapped array keeps its dtype and arrives in the layout pickling gives it."""
    array = np.arange(21, dtype=">i4").reshape(3, 7).copy(order=order)[:, ::2]
    (got,) = _decoding.decode(_codec.encode_call((array,), session()))
    pickled = pickle.loads(pickle.dumps(array))
    np.testing.assert_array_equal(got, array)
    assert got.dtype == array.dtype  # the README's difference: pickling returns native byte order
    assert (got.flags.c_contiguous, got.flags.f_contiguous) == (
        pickled.flags.c_contiguous,
        pickled.flags.f_contiguous,
    )


def test_a_main_function_s_by_value_bytes_follow_its_keyword_only_defaults():
    """A keyword-only default changed in place is sent as it is now, never from cached bytes."""

    def scaled(x, *, factors=[1.0]):  # noqa: B006 - the mutable default is the point
        return [x * f for f in factors]

    def dumps(fn):
        return pickle.dumps(fn.__kwdefaults__)

    first = _main_functions._by_value(scaled, dumps)
    scaled.__kwdefaults__["factors"].append(2.0)
    assert pickle.loads(_main_functions._by_value(scaled, dumps)) == {"factors": [1.0, 2.0]}
    assert pickle.loads(first) == {"factors": [1.0]}


def _decode_inside(payload):
    return _decoding.decode(payload)


class _DecodesWhileUnpickled:
    """Unpickles by decoding another payload: a decode inside a decode."""

    def __init__(self, payload):
        self.payload = payload

    def __reduce__(self):
        return (_decode_inside, (self.payload,))


class _RecordingSession(_decoding.DecodeSession):
    __slots__ = ("seen",)

    def __init__(self):
        super().__init__()
        self.seen = []

    def base_for(self, ref, buffer):
        self.seen.append(ref.name)
        return super().base_for(ref, buffer)


def test_a_decode_inside_a_decode_leaves_the_outer_session_in_place():
    """Arrays after a nested decode are still rebuilt for the outer decode's session."""
    before, after, inner = zc.zeros(1000), zc.zeros(1000), zc.zeros(1000)
    nested = _DecodesWhileUnpickled(_codec.encode_call((inner,), session()))
    payload = _codec.encode_call((before, nested, after), session())
    outer = _RecordingSession()
    got_before, (got_inner,), got_after = _decoding.decode(payload, outer)
    assert len(outer.seen) == 2, outer.seen  # before and after: the inner array had no session
    for got, sent in ((got_before, before), (got_inner, inner), (got_after, after)):
        assert np.shares_memory(got, sent)
