"""Worker side: set up a worker once, then decode, run and encode each task.

Functions here run in workers, so they are module-level: they pickle by reference
under every start method.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from typing import Any

from . import _arrays, _codec
from ._config import SharingPolicy
from ._ledger import LedgerClient
from ._watchdog import exit_with_parent

__all__ = ["WorkerSetup", "initialize", "run_task"]


class WorkerSetup:
    """What a worker needs before its first task.

    Mutable on purpose: the executor starts its ledger on first submit, after the
    pool was built but before any worker starts, and fills it in here. Under spawn
    and forkserver it is pickled when each worker starts; under fork it is inherited.
    """

    def __init__(
        self,
        parent_pid: int,
        policy: SharingPolicy,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
    ) -> None:
        self.parent_pid = parent_pid
        self.policy = policy
        self.initializer = initializer
        self.initargs = initargs
        self.ledger_proxy: Any = None

    def __reduce__(self) -> tuple[Any, ...]:
        # cloudpickle lets a lambda or __main__ function be the initializer; by-reference
        # first (as for tasks) so that a global it sets is the one tasks read (fact 10).
        # Plain arrays in initargs are pickled: no task pins a copy for the worker to map.
        never_copy = SharingPolicy(min_nbytes=sys.maxsize)
        session = _codec.EncodeSession(never_copy, _arrays.process_allocator, handover=False)
        init = _codec.encode_call((self.initializer, self.initargs), session)
        return (_restore_setup, (self.parent_pid, self.policy, init, self.ledger_proxy))


def _restore_setup(parent_pid: int, policy: SharingPolicy, init: bytes, ledger_proxy: Any) -> WorkerSetup:
    initializer, initargs = pickle.loads(init)
    setup = WorkerSetup(parent_pid, policy, initializer, initargs)
    setup.ledger_proxy = ledger_proxy
    return setup


_POLICY = SharingPolicy()


def initialize(setup: WorkerSetup) -> None:
    """Worker initializer: exit with the parent, report segments, run the user's initializer."""
    global _POLICY  # noqa: PLW0603 - one policy per worker process
    exit_with_parent(setup.parent_pid)
    _POLICY = setup.policy
    if setup.ledger_proxy is not None:
        client = LedgerClient(setup.ledger_proxy)
        _arrays.set_process_tracker(client.track, client.forget)
    if setup.initializer is not None:
        setup.initializer(*setup.initargs)


def run_task(payload: bytes) -> tuple[bytes, dict[str, int] | None]:
    """Decode a call, run it, and encode its result (large arrays go back by reference).

    Returns the encoded result and the path counts of its arrays (None if it had none).
    """
    fn, args, kwargs = _codec.decode(payload)
    result = fn(*args, **kwargs)
    del fn, args, kwargs
    session = _codec.EncodeSession(_POLICY, _arrays.process_allocator, handover=True)
    data = _codec.encode_result(result, session)
    return data, (session.tally if any(session.tally.values()) else None)
