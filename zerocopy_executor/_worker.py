"""Worker side: set up a worker once, then decode, run and encode each task.

Functions here run in workers, so they are module-level: they pickle by reference
under every start method.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from functools import partial
from typing import Any

from . import (
    _allocator,
    _arrays,
    _codec,
    _decoding,
    _encoding,
    _fork_safety,  # noqa: F401 - imported for its at-fork handler, before any worker is forked
    _handover,
    _memfd,
    _namespace,
    _plain,
    _pool,
    _results_by_value,
    _segments,
    _sweep,
)
from ._config import SharingPolicy
from ._errors import SharedArrayError
from ._idle import IdleExpiry
from ._messages import WITHDRAWN, LendAdvice, PackedReply, PackedTask, ReplyMessage, TaskMessage
from ._replies import ChunkReply
from ._watchdog import exit_with_parent

__all__ = ["WorkerSetup", "initialize", "run_chunk", "run_plain_chunk", "run_task"]

# Mappings a worker keeps between tasks (recycled segments, and shared arrays passed
# by reference), so the next task with the same segment pays neither mmap nor page
# faults (first touch of a page costs more than copying into it). Names are never
# reused, so a kept mapping cannot match another segment. Bounded in bytes, and
# dropped after a short idle time so that memory the parent has released is not
# pinned for long.
CACHE_CAP_NBYTES = 2 << 30
CACHE_IDLE_SECONDS = 2.0


class WorkerSetup:
    """What a worker needs before its first task (pickled when each worker starts).

    Args:
        parent_pid: the executor's process: workers exit when it dies.
        policy: the executor's sharing policy.
        initializer: the user's initializer, or None.
        initargs: its arguments.
        tag: the executor's tag, put in the names of the segments workers create.
        inbox: where workers post the memfd segments they hand over (see _handover); None
            if the parent makes named segments, and then so do its workers.
    """

    def __init__(  # noqa: PLR0913 - what a worker needs, one field each
        self,
        parent_pid: int,
        policy: SharingPolicy,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        tag: str,
        *,
        inbox: str | None = None,
    ) -> None:
        self.parent_pid = parent_pid
        self.policy = policy
        self.initializer = initializer
        self.initargs = initargs
        self.tag = tag
        self.inbox = inbox

    def __reduce__(self) -> tuple[Any, ...]:
        # cloudpickle lets a lambda or __main__ function be the initializer; by-reference
        # first (as for tasks) so that a global it sets is the one tasks read: a function
        # pickled by value would set the global of its own private copy.
        # Plain arrays in initargs are pickled: no task pins a copy for the worker to map.
        never_copy = SharingPolicy(min_nbytes=sys.maxsize)
        session = _encoding.EncodeSession(never_copy, _arrays.PROCESS_SEGMENTS, handover=False)
        init = _codec.encode_call((self.initializer, self.initargs), session)
        return (_restore_setup, (self.parent_pid, self.policy, init, self.tag, self.inbox))


def _restore_setup(
    parent_pid: int, policy: SharingPolicy, init: _decoding.Payload, tag: str, inbox: str | None
) -> WorkerSetup:
    initializer, initargs = _decoding.decode(init)
    return WorkerSetup(parent_pid, policy, initializer, initargs, tag, inbox=inbox)


class _MappingCache:
    """Recently used mappings, held between tasks."""

    def __init__(self, cap_nbytes: int, idle_seconds: float) -> None:
        self.cap_nbytes = cap_nbytes
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        # name -> (last used, mapping, its size): sizes are summed as entries come and go,
        # not over every entry per task.
        self._entries: OrderedDict[str, tuple[float, _segments.SegmentBuffer, int]] = OrderedDict()
        self._nbytes = 0
        self._expiry = IdleExpiry("zerocopy-cache-sweep", self.drop_idle)

    def keep(self, buffers: list[_segments.SegmentBuffer]) -> None:
        now = time.monotonic()
        with self._lock:
            for buffer in buffers:
                nbytes = len(buffer)
                replaced = self._entries.get(buffer.name)
                self._nbytes += nbytes - (0 if replaced is None else replaced[2])
                self._entries[buffer.name] = (now, buffer, nbytes)
                self._entries.move_to_end(buffer.name)
            while self._nbytes > self.cap_nbytes and self._entries:
                _, (_, _, evicted) = self._entries.popitem(last=False)
                self._nbytes -= evicted
        self._expiry.arm(now + self.idle_seconds)

    def drop_idle(self) -> float | None:
        """Drop the mappings no task has used for idle_seconds; return when the next one will be idle."""
        cutoff = time.monotonic() - self.idle_seconds
        with self._lock:
            stale = [name for name, (used, _, _) in self._entries.items() if used <= cutoff]
            for name in stale:
                self._nbytes -= self._entries.pop(name)[2]
            oldest = next(iter(self._entries.values()), None)  # least recently used first
        return None if oldest is None else oldest[0] + self.idle_seconds


_CACHE = _MappingCache(CACHE_CAP_NBYTES, CACHE_IDLE_SECONDS)
_POLICY = SharingPolicy()


def initialize(setup: WorkerSetup) -> None:
    """Worker initializer: tag our segments, exit with the parent, run the user's initializer."""
    global _POLICY  # noqa: PLW0603 - one policy per worker process
    _namespace.set_process_tag(setup.tag)
    if setup.inbox is None:  # the parent could not take a memfd handed over
        os.environ[_memfd.KIND_VARIABLE] = "named"
    else:
        _handover.set_parent_inbox(setup.inbox)
    # Orphaned: release everything of this executor's, ours and the dead parent's.
    release_all = partial(_sweep.release_tagged, setup.tag, orphaned=True)
    exit_with_parent(setup.parent_pid, release_all)
    _POLICY = setup.policy
    if setup.initializer is not None:
        setup.initializer(*setup.initargs)


# Callables this worker decoded, by their bytes: map() sends the same one per chunk.
_CALLABLES: OrderedDict[_decoding.Payload, Any] = OrderedDict()
_CALLABLES_MAX = 32


def _callable(data: _decoding.Payload, cacheable: bool, decoding: _decoding.TaskDecodeSession | None) -> Any:
    if not cacheable:  # it holds arrays (decoded with the task's segments), or state of its own
        return _decoding.decode(data, decoding)
    fn = _CALLABLES.get(data)
    if fn is None:
        fn = _CALLABLES[data] = _decoding.decode(data, decoding)
        if len(_CALLABLES) > _CALLABLES_MAX:
            _CALLABLES.popitem(last=False)
    return fn


def run_task(packed: PackedTask) -> PackedReply:
    """Decode a call, run it, and encode its result (large arrays go back by reference).

    Takes a packed TaskMessage and returns a packed ReplyMessage (see _messages): a
    plain result (scalars, strings, short containers of them) goes as it is.
    """
    task = TaskMessage.unpack(packed)
    payload, lend = task.payload, task.lent
    if payload == WITHDRAWN:
        msg = "this task was withdrawn before it was sent (its pool broke, or submit() failed)"
        raise SharedArrayError(msg)
    decoding = _decoding.TaskDecodeSession()
    (function, cacheable), args, kwargs = _decoding.decode(payload, decoding)
    fn = _callable(function, cacheable, decoding)
    lent = None
    if lend is not None:  # warm, and written whole: its page tables are filled in one call
        lent = _segments.attach(*lend, populate=True)
        decoding.lent_for_result(lent)
    if decoding.buffers:
        _CACHE.keep(list(decoding.buffers.values()))
    _allocator.release_freed()
    arena = None if lent is None else _allocator.TaskArena.arm(lent)
    call = [fn, args, kwargs]  # _run empties it: no frame here may keep the arguments alive
    del fn, args, kwargs
    try:
        data, encoding = _run(call, decoding, arena)
    finally:
        # Also when the task raised: an array born in the lent segment (kept by the
        # function, or by the traceback) must keep its mapping while it lives.
        outlived = arena is not None and arena.close()
    kept = decoding.kept()  # the function's locals and its result are gone by now
    if outlived:  # the function kept an array that lies in the lent segment
        kept.append(lent.name)  # type: ignore[union-attr]  # an arena implies lent
    # With NumPy's allocator, results can be born in a lent segment: always lend one.
    always = _allocator.AVAILABLE
    if encoding is None:  # a plain result: the pool pickles it as it is
        tally, advice = None, _lend_advice(decoding.taken_nbytes, 0, always=always)
    else:
        data, encoding = _hand_over(data, encoding, kept)
        made = max(encoding.made_nbytes, decoding.taken_nbytes)
        tally, advice = encoding.tally, _lend_advice(made, encoding.copied_nbytes, always=always)
    return ReplyMessage(data, tally, kept, advice).pack()


def _run(
    call: list[Any], decoding: _decoding.TaskDecodeSession, arena: _allocator.TaskArena | None
) -> tuple[Any, _encoding.EncodeSession | None]:
    """Call the function, then encode its result; return it and its encoding (None if plain).

    The call's list is emptied first, and the result is dropped once encoded: what the
    function was given or returned must be unreachable afterwards, or kept() would
    take it for views the function kept.
    """
    fn, args, kwargs = call
    call.clear()
    result = _call(fn, args, kwargs, decoding, arena)
    del fn, args, kwargs
    born = 0 if arena is None else arena.in_use()
    if born:  # an array was born there: nothing may overwrite it
        decoding.claim_lent(born)
    if _plain.is_plain(result):  # nothing to share: the pool pickles it as it is
        return result, None
    # Results go into the lent segment, or into copied arguments the call is done
    # with: their pages are warm, and no third copy of the data exists (W2: two, not three).
    data, encoding = _encode(result, decoding.spare(), decoding.inputs(), decoding.private)
    del result
    encoding.drop_views()
    return data, encoding


def _encode(
    result: Any,
    spare: list[tuple[_segments.SegmentBuffer, Any]] | None = None,
    inputs: Collection[str] = (),
    private: Collection[str] | None = (),
) -> tuple[_decoding.Payload, _encoding.EncodeSession]:
    """Encode a result as ProcessPoolExecutor pickles it; return the payload and its encoding.

    What pickle refuses goes by value, as loky returns it; pickle's own error if that
    fails too. Each attempt is offered every spare segment (see _result_session).
    """
    encoding = _result_session(list(spare or ()), inputs, private)
    try:
        return _codec.encode_result(result, encoding), encoding
    except _results_by_value.REFUSALS:
        encoding = _result_session(list(spare or ()), inputs, private)
        data = _encode_by_value(result, encoding)
        if data is None:
            raise  # pickle's error, whose traceback the pool's worker drops with the sessions
        return data, encoding


def _encode_by_value(result: Any, encoding: _encoding.EncodeSession) -> _decoding.Payload | None:
    """Encode a result pickle refused, by value; None if that fails too.

    Its error is dropped here, with its traceback: chained to pickle's, it would keep
    this attempt's segments alive as long as the error the task reports.
    """
    try:
        return _codec.encode_result(result, encoding, by_value=True)
    except Exception:
        return None


def _result_session(
    spare: list[tuple[_segments.SegmentBuffer, Any]] | None = None,
    inputs: Collection[str] = (),
    private: Collection[str] | None = (),
) -> _encoding.EncodeSession:
    """An encoding of a result whose large arrays are handed to the parent (see EncodeSession)."""
    return _encoding.EncodeSession(
        _POLICY, _arrays.PROCESS_SEGMENTS, handover=True, spare=spare, inputs=inputs, private=private
    )


def _hand_over(
    data: _decoding.Payload, encoding: _encoding.EncodeSession, kept: list[str]
) -> tuple[_decoding.Payload, _encoding.EncodeSession]:
    """Hand the result's segments to the parent, unless the function kept a view of one.

    An array sent by reference from memory the function still sees would change under
    the parent when the worker writes it (a cache in a global, say), and the parent's
    writes would reach the worker: ProcessPoolExecutor gives the parent a copy. Then
    the result is rebuilt here and encoded again with its arrays copied, but for views
    of shared inputs. Returns the payload to send and its encoding.
    """
    if any(buffer.name in kept or _arrays.has_views(buffer) for buffer in encoding.watched):
        result = _decoding.decode(data)
        data, encoding = _encode(result, inputs=encoding.inputs, private=None)
        del result
    encoding.hand_over()
    return data, encoding


def _lend_advice(made_nbytes: int, copied_nbytes: int, *, always: bool) -> LendAdvice:
    """The segment the parent should lend for the next result (see LendAdvice).

    Args:
        made_nbytes: the largest result array the function made in shared memory.
        copied_nbytes: the largest result array copied into a segment after the call.
        always: lend one whatever the copied arguments (as if made during the call).
    """
    if made_nbytes and made_nbytes >= copied_nbytes:
        return LendAdvice(made_nbytes, True)
    return LendAdvice(copied_nbytes, always and copied_nbytes > 0)


def _call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    decoding: _decoding.TaskDecodeSession,
    arena: _allocator.TaskArena | None,
) -> Any:
    """Call fn with the lent segment offered to zerocopy_executor.empty and, if armed, to NumPy."""
    take = decoding.take_lent if arena is None else partial(_take_from_arena, decoding, arena)
    previous = None
    try:
        _arrays.TASK_MEMORY.take = take
        previous = None if arena is None else arena.activate()
        return fn(*args, **kwargs)
    finally:
        _arrays.TASK_MEMORY.take = None
        if arena is not None and previous is not None:
            arena.restore(previous)


def _take_from_arena(decoding: _decoding.TaskDecodeSession, arena: _allocator.TaskArena, nbytes: int) -> Any:
    """zerocopy_executor.empty asks for the lent segment: only if no NumPy array took it."""
    if not _pool.fits(len(arena.buffer), nbytes) or not arena.give_up():
        return None
    return decoding.take_lent(nbytes)


def run_chunk(fn: Callable[..., Any], chunk: tuple[tuple[Any, ...], ...]) -> list[Any]:
    """Run fn over one chunk of map()'s argument tuples."""
    return [fn(*args) for args in chunk]


def run_plain_chunk(
    token: int, function: _decoding.Payload, reusable: bool, chunk: bytes
) -> list[Any] | ChunkReply:
    """Run a map() chunk sent without an envelope: plain arguments, a function with no array.

    Returns the results as they are if they are plain, else encoded in a ChunkReply
    (nothing was lent, and no argument is in shared memory, so nothing else to report).
    """
    results = run_chunk(_callable(function, reusable, None), pickle.loads(chunk))
    if _plain.is_plain(results):
        return results
    data, encoding = _encode(results)
    del results
    encoding.drop_views()
    data, encoding = _hand_over(data, encoding, [])
    return ChunkReply(
        token, data, encoding.tally, _lend_advice(encoding.made_nbytes, encoding.copied_nbytes, always=False)
    )
