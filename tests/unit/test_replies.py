"""Replies decoded in the parent: a map() chunk's reply decodes itself, and never raises."""

from __future__ import annotations

import functools
import gc
import operator
import pickle
import threading

import numpy as np
import pytest

from zerocopy_executor import (
    SegmentError,
    _codec,
    _config,
    _encoding,
    _namespace,
    _replies,
    _segments,
    _sharing,
    _worker,
)
from zerocopy_executor._messages import NO_ADVICE, LendAdvice


def worker_encoded(value, handover=True):
    """Encode value as a worker encodes a result; return the bytes and the session."""
    session = _encoding.EncodeSession(_config.SharingPolicy(), _OtherTag(), handover=handover)
    payload = _codec.encode_result(value, session)
    session.hand_over()
    return payload, session


class _OtherTag:
    """Segments as a worker of another executor makes them: a tag of their own, no pool."""

    def allocate(self, nbytes):
        return _segments.create(nbytes, tag=_namespace.new_tag()), None


def test_a_plain_reply_is_returned_as_it_is(state):
    """A reply with no tally is the result itself; only the advice on what to lend is noted."""
    state.lend_advice = LendAdvice(123, made_during_call=True)
    assert _replies.decode_reply(state, [1, "a"], None, NO_ADVICE) == [1, "a"]
    assert state.lend_advice == NO_ADVICE


def test_a_chunk_reply_decodes_while_unpickled_and_counts(state):
    """A ChunkReply unpickles to its results, with the executor owning and counting its segments."""
    data, session = worker_encoded([np.arange(1 << 16, dtype=np.float64)])
    reply = _replies.ChunkReply(state.token, data, session.tally, LendAdvice(session.copied_nbytes, False))
    del session
    (array,) = pickle.loads(pickle.dumps(reply))
    np.testing.assert_array_equal(array, np.arange(1 << 16, dtype=np.float64))
    assert len(state.segments.live) == 1
    assert state.stats.snapshot(0).arrays_copied == 1
    assert state.lend_advice.nbytes == array.nbytes  # the next tasks get a segment lent for their results
    name = next(iter(state.segments.live))
    del array
    gc.collect()
    _segments.drain_releases()
    assert name in state.segments.live  # its last view died: a copy the worker kept no view of,
    assert state.segments.pool.nbytes >= 1 << 19  # so its warm pages wait in the pool
    state.segments.pool.close()
    gc.collect()
    _segments.drain_releases()
    assert name not in state.segments.live  # released once the pool lets go


@pytest.mark.usefixtures("named_segments")  # unlinking by name makes the segment gone
def test_a_chunk_reply_that_fails_to_decode_becomes_a_decode_failure(state):
    """Unpickling a reply whose segment is gone gives a DecodeFailure holding the error, not an exception."""
    data, session = worker_encoded([np.ones(1 << 16)])
    (buffer,) = session.buffers
    _segments.unlink(buffer.name, unregister_if_gone=True)
    reply = _replies.ChunkReply(state.token, data, session.tally, LendAdvice(session.copied_nbytes, False))
    del session, buffer
    failure = pickle.loads(pickle.dumps(reply))
    assert type(failure) is _replies.DecodeFailure
    assert isinstance(failure.error, SegmentError)


def test_a_chunk_reply_for_an_unknown_executor_becomes_a_decode_failure():
    """A token no executor holds cannot raise in the manager thread either."""
    reply = _replies.ChunkReply(0, pickle.dumps([1]), {}, NO_ADVICE)
    failure = pickle.loads(pickle.dumps(reply))
    assert type(failure) is _replies.DecodeFailure
    assert isinstance(failure.error, KeyError)


def test_encode_function_pickles_a_function_without_arrays():
    """map() pickles its function once when it holds no array: the bytes rebuild it."""
    encoded = _codec.encode_function(len)
    assert encoded is not None
    data, reusable = encoded
    assert pickle.loads(data) is len
    assert reusable


@pytest.mark.parametrize(
    ("fn", "reusable"),
    [
        pytest.param(len, True, id="builtin"),
        pytest.param(pickle.loads, True, id="module-function"),
        pytest.param(lambda x: x, True, id="lambda"),
        pytest.param(int, True, id="class"),
        pytest.param(functools.partial(divmod, 7), True, id="partial-over-an-int"),
        pytest.param(functools.partial(divmod, (1, "a")), True, id="partial-over-a-tuple"),
        pytest.param(functools.partial(_worker.run_chunk, len), True, id="map-chunk-of-a-function"),
        pytest.param([].append, False, id="bound-builtin-method"),
        pytest.param(functools.partial(divmod, [1]), False, id="partial-over-a-list"),
        pytest.param(functools.partial(_worker.run_chunk, [].append), False, id="map-chunk-of-a-method"),
        pytest.param(_sharing.TaskTicket.__call__.__get__(object()), False, id="bound-method"),
        pytest.param(operator.itemgetter(1), False, id="callable-object"),
    ],
)
def test_is_reusable_only_for_callables_without_state_of_their_own(fn, reusable):
    """Workers keep a decoded callable only if it has no state a task could change or see change."""
    assert _codec.is_reusable(fn) is reusable


def test_encode_function_gives_up_at_an_array_without_copying_it():
    """A function holding an array goes with each task instead (None), and nothing was shared."""
    captured = np.ones(1 << 20)
    before = _segments.owned_live_names()
    assert _codec.encode_function(lambda: captured.sum() + 1) is None
    assert _codec.encode_function(captured.sum) is None
    assert _segments.owned_live_names() == before


def test_encode_function_returns_none_for_an_unpicklable_function():
    """An unpicklable function is left to the per-task path, which fails each task's future."""
    lock = threading.Lock()
    assert _codec.encode_function(lambda: lock) is None
