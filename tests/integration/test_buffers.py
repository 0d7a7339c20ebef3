"""Buffers that are not ndarrays (Arrow data in pandas and pyarrow objects) take the arrays' paths.

Pickle protocol 5 hands such buffers to the pickler's buffer_callback (a
``reducer_override`` never sees them): large ones go through shared memory as arrays
do, and the bytes that cross the pipes are counted where they are sent, in the parent
and in the workers, not only by our own stats.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks

pa = pytest.importorskip("pyarrow", reason="needs pyarrow: pip install zerocopy_executor[integrations]")

TIMEOUT = 60
ROWS = 1 << 20  # 8 MiB of float64 per numeric column
PIPE_ALLOWANCE = 64 << 10  # descriptors, the schema, small buffers


@pytest.fixture
def counted_executor(mp_context, monkeypatch):
    """An executor whose parent and workers count the bytes they send through pipes."""
    monkeypatch.setattr(Connection, "send_bytes", Connection.send_bytes)  # restored after
    _tasks.count_pipe_bytes()
    with zc.SharedArrayExecutor(2, mp_context=mp_context, initializer=_tasks.count_pipe_bytes) as ex:
        yield ex


def parent_bytes() -> int:
    return _tasks._PIPE_BYTES[0]


def round_trip(executor: zc.SharedArrayExecutor, value: object) -> tuple[object, int, int]:
    """Echo value through a worker; return it and the bytes the parent and the worker sent."""
    executor.submit(_tasks.identity, 0).result(TIMEOUT)  # workers up: their start is not counted
    before_parent = parent_bytes()
    worker_before = executor.submit(_tasks.pipe_bytes_sent).result(TIMEOUT)
    back = executor.submit(_tasks.identity, value).result(TIMEOUT)
    worker_after = executor.submit(_tasks.pipe_bytes_sent).result(TIMEOUT)
    sent_by_parent = parent_bytes() - before_parent
    # Each worker counts its own; with two workers the echo may have run in either.
    return back, sent_by_parent, max(worker_after - worker_before, 0)


def arrow_table() -> pa.Table:
    return pa.table(
        {
            "x": np.arange(ROWS, dtype=np.float64),
            "s": pa.array([f"row {i % 1000}" for i in range(ROWS)]),
        }
    )


def test_arrow_table_round_trip_crosses_the_pipes_as_descriptors(counted_executor):
    """A 20 MB Arrow table echoed by a worker is equal, and a few KB cross the pipes each way."""
    table = arrow_table()
    back, by_parent, by_worker = round_trip(counted_executor, table)
    assert back.equals(table)
    assert table.nbytes > 16 << 20
    assert by_parent < PIPE_ALLOWANCE
    assert by_worker < PIPE_ALLOWANCE
    stats = counted_executor.stats()
    assert stats.bytes_copied >= table.nbytes * 0.9  # the large buffers, copied once each


def test_arrow_table_received_from_a_worker_goes_back_by_reference(mp_context):
    """Arrow data a worker returned lies in shared memory: sending it again copies nothing."""
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as executor:
        back = executor.submit(_tasks.identity, arrow_table()).result(TIMEOUT)
        copied = executor.stats().bytes_copied
        assert executor.submit(_tasks.identity, back).result(TIMEOUT).equals(back)
        stats = executor.stats()
        assert stats.bytes_copied == copied
        assert stats.bytes_by_reference >= 2 * back.nbytes * 0.9  # there and back again


def test_record_batch_and_chunked_array_round_trip(mp_context):
    """A RecordBatch and a ChunkedArray (with nulls) come back equal."""
    batch = arrow_table().to_batches()[0]
    chunked = pa.chunked_array([pa.array(np.arange(ROWS // 2, dtype=np.int64)), pa.array([1, None, 3])])
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as executor:
        assert executor.submit(_tasks.identity, batch).result(TIMEOUT).equals(batch)
        assert executor.submit(_tasks.identity, chunked).result(TIMEOUT).equals(chunked)
        assert executor.stats().arrays_copied >= 2


def test_slices_of_one_arrow_buffer_cross_once(mp_context):
    """Chunks that are slices of one array carry its whole buffer each; in one payload it crosses once."""
    whole = pa.array(np.arange(ROWS, dtype=np.float64))
    chunked = pa.chunked_array([whole.slice(0, ROWS // 2), whole.slice(ROWS // 2)])
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        assert executor.submit(_tasks.identity, chunked).result(TIMEOUT).equals(chunked)
        stats = executor.stats()
    # There: one copy of the 8 MiB buffer, the second slice refers to it. Back: both by reference.
    assert stats.bytes_copied == whole.nbytes
    assert stats.arrays_by_reference >= 1


def test_views_of_one_plain_array_arrive_as_separate_copies_as_with_pickling(mp_context):
    """Two writable views of one array in one call: a write through one is not seen through the other."""
    data = np.arange(ROWS, dtype=np.float64)
    expected = float(data[: ROWS // 2].sum())
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        got = executor.submit(_tasks.zero_first_sum_second, data, data[: ROWS // 2]).result(TIMEOUT)
    with ProcessPoolExecutor(1, mp_context=mp_context) as executor:
        pickled = executor.submit(_tasks.zero_first_sum_second, data, data[: ROWS // 2]).result(TIMEOUT)
    assert got == pickled == expected


def test_temporaries_made_while_pickling_are_never_confused(mp_context):
    """Arrays and buffers a __reduce__ makes and drops reuse addresses: each arrives with its own data."""
    stop = threading.Event()

    def make_garbage() -> None:  # the rest of a program: collections run at any time
        while not stop.is_set():
            [[i] for i in range(1000)]

    churn = threading.Thread(target=make_garbage, daemon=True)
    churn.start()
    try:
        with zc.SharedArrayExecutor(2, mp_context=mp_context, min_nbytes=1 << 16) as executor:
            function = functools.partial(_tasks.first_values, _tasks.Float32OnTheWire(np.full(1 << 16, 5.0)))
            argument = _tasks.Float32OnTheWire(np.full(1 << 16, 1.0))
            results = [executor.submit(function, argument) for _ in range(40)]
            assert {f.result(TIMEOUT) for f in results} == {(5.0, 1.0)}
            function = functools.partial(_tasks.first_values, _tasks.BufferOnTheWire(9))
            results = [executor.submit(function, _tasks.BufferOnTheWire(1)) for _ in range(40)]
            assert {f.result(TIMEOUT) for f in results} == {(b"\t" * 4, b"\x01" * 4)}
    finally:
        stop.set()
        churn.join()


def test_pandas_frame_with_numpy_and_arrow_columns_round_trips_exactly(counted_executor):
    """A DataFrame of NumPy and Arrow columns with a named index comes back equal, as descriptors."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "numbers": np.arange(ROWS, dtype=np.float64),
            "arrow_floats": pd.array(np.arange(ROWS, dtype=np.float64), dtype="float64[pyarrow]"),
            "text": pd.array([f"t{i % 97}" for i in range(ROWS)], dtype="string[pyarrow]"),
        },
        index=pd.Index(np.arange(ROWS) * 2, name="key"),
    )
    back, by_parent, by_worker = round_trip(counted_executor, frame)
    pd.testing.assert_frame_equal(back, frame)
    assert by_parent < PIPE_ALLOWANCE
    assert by_worker < PIPE_ALLOWANCE


def test_xarray_dataset_round_trips_exactly(mp_context):
    """An xarray Dataset (coordinates, attributes) comes back identical; its data went through shm."""
    xr = pytest.importorskip("xarray")
    data = xr.Dataset(
        {"t": (("time", "x"), np.random.default_rng(0).random((512, 1024)))},
        coords={"time": np.arange(512), "x": np.linspace(0, 1, 1024)},
        attrs={"units": "K"},
    )
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        back = executor.submit(_tasks.identity, data).result(TIMEOUT)
        assert executor.stats().arrays_copied >= 1
    xr.testing.assert_identical(back, data)


def test_share_refuses_a_masked_array_and_the_executor_keeps_it_whole(mp_context):
    """zc.share refuses an ndarray subclass it would half-share; as an argument it arrives whole."""
    masked = np.ma.masked_array(np.arange(ROWS, dtype=np.float64), mask=np.arange(ROWS) % 3 == 0)
    with pytest.raises(TypeError, match=r"cannot share a numpy\.ma\.MaskedArray: only its data"):
        zc.share(masked)
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as executor:
        back = executor.submit(_tasks.identity, masked).result(TIMEOUT)
    assert isinstance(back, np.ma.MaskedArray)
    np.testing.assert_array_equal(back.mask, masked.mask)
    np.testing.assert_array_equal(back.data, masked.data)
