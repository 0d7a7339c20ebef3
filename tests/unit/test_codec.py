"""encode/decode in one process: which path each array takes."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

import zerocopy_executor as zc
from zerocopy_executor import _codec
from zerocopy_executor._arrays import process_allocator
from zerocopy_executor._config import SharingPolicy


def session(min_nbytes=1024, handover=False):
    return _codec.EncodeSession(SharingPolicy(min_nbytes), process_allocator, handover=handover)


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
    a, b, c = _codec.decode(payload)
    assert np.shares_memory(a, shared)
    np.testing.assert_array_equal(b, large)
    np.testing.assert_array_equal(c, small)
    assert len(payload) < 2000  # descriptors, not data


def test_encode_keeps_unpicklable_errors():
    """An unpicklable argument raises the pickler's own error."""
    with pytest.raises(TypeError, match="lock"):
        _codec.encode_call((threading.Lock(),), session())


def test_plain_results_skip_the_sharing_pickler():
    """Results made of scalars are plain pickles (the tiny-task fast path)."""
    s = session(handover=True)
    data = _codec.encode_result([1, 2.5, "x", None], s)
    assert pickle.loads(data) == [1, 2.5, "x", None]


def test_handover_disowns_and_receiver_takes_ownership():
    """A result segment handed over is owned by whoever decodes it."""
    from zerocopy_executor import _segments

    out = zc.empty(1000)
    s = session(handover=True)
    payload = _codec.encode_result(out, s)
    buffer = s.buffers[0]
    assert not _segments.is_owned(buffer)
    adopted = []
    back = _codec.decode(payload, _codec.DecodeSession(adopted.append))
    assert adopted == [buffer]
    assert _segments.is_owned(buffer)
    assert np.shares_memory(back, out)


def test_main_function_fingerprint_ignores_file_path():
    """A function's fingerprint depends on its code, not on where its file is."""

    def f(x):
        return x + 1

    g = f.__code__.replace(co_filename="/elsewhere.py")
    assert _codec._fingerprint(f.__code__) == _codec._fingerprint(g)

    def h(x):
        return x + 2

    assert _codec._fingerprint(f.__code__) != _codec._fingerprint(h.__code__)
