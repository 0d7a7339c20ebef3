"""What crosses the pipe between the parent and a worker, by name.

A submitted task goes to a worker as a TaskMessage and comes back as a ReplyMessage. A
plain map() chunk's reply is a list or a ChunkReply (see _replies), which carries the
same advice about result memory (LendAdvice). On the wire each message is a plain tuple
(``pack()``), which the receiver reads back with ``unpack()``: no class of ours has to
be importable, or pickled by reference, for the pool's own pickling to work.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _identity
from ._decoding import Payload

__all__ = ["NO_ADVICE", "WITHDRAWN", "LendAdvice", "PackedReply", "PackedTask", "ReplyMessage", "TaskMessage"]

# The payload of a task released before it was sent (its pool broke, or submit()
# failed while the task was queued): the worker refuses it.
WITHDRAWN = b""

Lent = tuple[str, _identity.Identity]  # a lent segment's wire name and identity
PackedTask = tuple[Payload, Lent | None]
PackedReply = tuple[Any, dict[str, int] | None, list[str], int, bool]


class LendAdvice(NamedTuple):
    """What segment the parent should lend for the next results, learnt from the last one.

    Attributes:
        nbytes: the size of the result's largest array in shared memory (0: lend none).
        made_during_call: the function made that array in shared memory while it ran
            (zerocopy_executor.empty, or NumPy's allocator in a lent segment), when only a
            lent segment is free; else it was copied after the call, and a copied
            argument's segment, free by then, does as well.
    """

    nbytes: int
    made_during_call: bool


NO_ADVICE = LendAdvice(0, False)


class TaskMessage:
    """A task, parent to worker: the encoded call and the segment lent for its result."""

    __slots__ = ("lent", "payload")

    def __init__(self, payload: Payload, lent: Lent | None) -> None:
        self.payload = payload  # the encoded (function, args, kwargs), or WITHDRAWN
        self.lent = lent  # a segment the result may be made or copied into, or None

    def pack(self) -> PackedTask:
        return (self.payload, self.lent)

    @classmethod
    def unpack(cls, packed: PackedTask) -> TaskMessage:
        return cls(*packed)


class ReplyMessage:
    """A submitted task's reply, worker to parent.

    Attributes:
        data: the encoded result; or, if tally is None, the result itself (plain values).
        tally: the paths its arrays took, counted into the executor's stats.
        kept: recycled segments the function kept views of: the parent must not reuse them.
        advice: the segment to lend for the next results.
    """

    __slots__ = ("advice", "data", "kept", "tally")

    def __init__(self, data: Any, tally: dict[str, int] | None, kept: list[str], advice: LendAdvice) -> None:
        self.data = data
        self.tally = tally
        self.kept = kept
        self.advice = advice

    def pack(self) -> PackedReply:
        return (self.data, self.tally, self.kept, *self.advice)

    @classmethod
    def unpack(cls, packed: PackedReply) -> ReplyMessage:
        data, tally, kept, nbytes, made_during_call = packed
        return cls(data, tally, kept, LendAdvice(nbytes, made_during_call))
