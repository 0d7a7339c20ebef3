"""TaskEnvelope's encoding in one process: whether it lends a segment for the result."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import zerocopy_executor as zc
from zerocopy_executor import _sharing
from zerocopy_executor._messages import LendAdvice

MIB_OF_FLOATS = 1 << 17


@pytest.mark.parametrize(
    ("make_argument", "lends"),
    [
        (lambda: np.ones(MIB_OF_FLOATS), False),  # copied: its segment takes a result like the last
        (lambda: np.ones(4 * MIB_OF_FLOATS), True),  # copied, but four times too large to take it
        (lambda: zc.zeros(MIB_OF_FLOATS), True),  # by reference: the user's memory, never overwritten
    ],
)
def test_a_segment_is_lent_only_when_no_copied_argument_fits_the_result(state, make_argument, lends):
    """After a 1 MiB result, the next task gets a lent segment unless its argument's copy would do."""
    state.lend_advice = LendAdvice(MIB_OF_FLOATS * 8, made_during_call=False)
    envelope = _sharing.TaskEnvelope(state, (len, (make_argument(),), {}))
    try:
        _, lend_name = pickle.loads(pickle.dumps(envelope))
        assert (lend_name is not None) == lends
    finally:
        envelope.release(recycle=False)
        state.close()


def test_close_releases_a_task_in_flight_that_nothing_will_settle(state):
    """A Ctrl-C inside submit() can leave a sent task counted: close() releases it instead of waiting."""
    envelope = _sharing.TaskEnvelope(state, (len, (np.ones(4 * MIB_OF_FLOATS),), {}))
    state.in_flight.add(envelope)
    pickle.dumps(envelope)  # sent: the copy of its argument stays pinned until the task settles
    names = set(state.segments.live)
    assert names, "the argument was not copied into a segment"
    state.close()  # no manager thread: nothing else could settle it
    assert not state.in_flight
    assert not state.segments.live
    assert names.isdisjoint(os.listdir("/dev/shm"))
