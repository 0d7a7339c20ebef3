"""A worker's reply, decoded in the parent.

Replies reach the parent two ways:

- a submitted task's reply arrives still encoded, and SharedFuture.set_result decodes
  it (_future);
- a plain map() chunk's reply (see SharedArrayExecutor.map) is its results as they
  are, or a ChunkReply, which decodes itself while the manager thread unpickles it.
  Unpickling in that thread must not raise (an error there breaks the pool),
  so a reply that fails to decode becomes a DecodeFailure, which only map's own
  iterator sees and raises.

A ChunkReply names its executor by a token, since the unpickler knows nothing else.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any, Protocol

from . import _decoding, _pool
from ._decoding import Payload
from ._messages import LendAdvice
from ._stats import StatsCounter

__all__ = ["ChunkReply", "DecodeFailure", "ReplyReceiver", "decode_reply", "register"]


class ReplyReceiver(Protocol):
    """What decoding a reply needs from the executor's sharing state."""

    lend_advice: LendAdvice
    stats: StatsCounter
    segments: _pool.ExecutorSegments


_RECEIVERS: weakref.WeakValueDictionary[int, ReplyReceiver] = weakref.WeakValueDictionary()
_TOKENS = itertools.count(1)


def register(receiver: ReplyReceiver) -> int:
    """Return the token by which this process's ChunkReplies will find receiver."""
    token = next(_TOKENS)
    _RECEIVERS[token] = receiver
    return token


def decode_reply(receiver: ReplyReceiver, data: Any, tally: dict[str, int] | None, advice: LendAdvice) -> Any:
    """Decode a task's result: map its segments and take ownership of those handed over.

    Args:
        receiver: the executor's sharing state.
        data: the encoded result, or, if tally is None, the result itself.
        tally: the paths the result's arrays took (None: a plain result).
        advice: the segment to lend for the next results.

    Raises:
        SegmentError: a segment is gone or a descriptor is out of bounds.
    """
    receiver.lend_advice = advice
    if tally is None:
        return data
    if tally:
        receiver.stats.add(tally)
    return _decoding.decode(
        data, _decoding.DecodeSession(receiver.segments.count_handed_over, receiver.segments.pool)
    )


class DecodeFailure:
    """What a map() chunk's future holds when its reply could not be decoded."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ChunkReply:
    """A plain map() chunk's results with arrays in them, decoded as they are unpickled."""

    __slots__ = ("advice", "data", "tally", "token")

    def __init__(self, token: int, data: Payload, tally: dict[str, int], advice: LendAdvice) -> None:
        self.token = token
        self.data = data
        self.tally = tally
        self.advice = advice

    def __reduce__(self) -> tuple[Any, ...]:
        return (_receive_chunk, (self.token, self.data, self.tally, *self.advice))


def _receive_chunk(
    token: int, data: Payload, tally: dict[str, int], lend_nbytes: int, made_during_call: bool
) -> Any:
    try:
        receiver = _RECEIVERS[token]  # alive: its close() waits for this thread (the manager) to end
        return decode_reply(receiver, data, tally, LendAdvice(lend_nbytes, made_during_call))
    except BaseException as error:  # fail this chunk, never the pool
        return DecodeFailure(error)
