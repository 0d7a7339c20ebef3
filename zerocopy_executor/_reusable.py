"""Reusable executors: one SharedArrayExecutor per configuration, kept warm between uses.

Integrations whose client calls come and go (a joblib ``Parallel`` call, a
scikit-learn ``fit``) take an executor here and hand it back::

    reused = EXECUTORS.acquire(config)     # the live one for an equal config, or a new one
    ... reused.executor.submit(...) ...
    EXECUTORS.release(reused, idle_timeout)  # kept warm; shut down after idle_timeout

As loky's reusable executor, an executor outlives the call that started it, so the
next call finds its workers warm (imports done, shared memory mapped). It is never
resized: another configuration gets its own executor, and idle ones of other
configurations are shut down then, so at most one idle pool of workers is kept.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import util
from multiprocessing.context import BaseContext
from typing import Any

from . import SharedArrayExecutor
from ._fork_safety import at_fork
from ._idle import IdleExpiry
from ._plain import same_value

__all__ = ["EXECUTORS", "ExecutorConfig", "ReusableExecutors", "ReusedExecutor"]


@dataclass(eq=False)
class ExecutorConfig:
    """The arguments of a SharedArrayExecutor; equal configurations share one."""

    max_workers: int
    mp_context: BaseContext
    initializer: Callable[..., object] | None = None
    initargs: tuple[Any, ...] = ()
    min_nbytes: int | None = None
    max_tasks_per_child: int | None = None

    def matches(self, other: ExecutorConfig) -> bool:
        """Whether an executor started for other serves this configuration."""
        mine = (self.max_workers, self.mp_context, self.min_nbytes, self.max_tasks_per_child)
        theirs = (other.max_workers, other.mp_context, other.min_nbytes, other.max_tasks_per_child)
        return (
            mine == theirs
            and same_value(self.initializer, other.initializer)
            and same_value(self.initargs, other.initargs)
        )

    def start(self) -> SharedArrayExecutor:
        """A new executor for this configuration (its workers start on the first task)."""
        extra: dict[str, Any] = {}
        if self.min_nbytes is not None:
            extra["min_nbytes"] = self.min_nbytes
        if self.max_tasks_per_child is not None:
            extra["max_tasks_per_child"] = self.max_tasks_per_child
        return SharedArrayExecutor(
            self.max_workers,
            mp_context=self.mp_context,
            initializer=self.initializer,
            initargs=self.initargs,
            **extra,
        )


@dataclass(eq=False)
class ReusedExecutor:
    """One reused executor and how many callers hold it."""

    config: ExecutorConfig
    executor: SharedArrayExecutor
    users: int = 0
    retired: bool = False  # no new caller may take it (broken, or its workers stuck)
    deadline: float | None = None  # when idle: the time.monotonic() at which it shuts down


class ReusableExecutors:
    """The live executors, each shut down once idle for its caller's timeout.

    One thread watches the idle deadlines, and exits when no executor is idle (a
    timer per release cost each joblib call a thread start, about 1 ms). Executors are
    shut down in background threads, as a retired one may still run a task nobody
    waits for; :meth:`shutdown` joins them.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._reused: list[ReusedExecutor] = []  # held or idle; retired ones until their last user leaves
        self._closers: list[threading.Thread] = []
        self._expiry = IdleExpiry("zerocopy-idle", self._close_idle)
        self._exit_hook_pid = 0  # the process whose exit shuts the executors down

    def acquire(self, config: ExecutorConfig) -> ReusedExecutor:
        """Take the executor for config (a new one if none matches)."""
        self._hook_exit()
        with self._lock:
            reused = next((x for x in self._reused if not x.retired and x.config.matches(config)), None)
            if reused is None:
                for idle in [x for x in self._reused if x.users == 0]:
                    self._close(idle)
                reused = ReusedExecutor(config, config.start())
                self._reused.append(reused)
            reused.deadline = None
            reused.users += 1
            return reused

    def release(self, reused: ReusedExecutor, idle_timeout: float) -> None:
        """Hand back a reused executor: shut it down now if retired, else after idle_timeout."""
        with self._lock:
            reused.users -= 1
            if reused.users > 0 or reused not in self._reused:
                return
            if reused.retired:
                self._close(reused)
                return
            reused.deadline = time.monotonic() + idle_timeout
            self._expiry.arm(reused.deadline)  # at interpreter exit, atexit shuts it down instead

    def retire(self, reused: ReusedExecutor) -> None:
        """No later caller gets this executor (its pool broke, or tasks are stuck)."""
        with self._lock:
            reused.retired = True

    def shutdown(self) -> None:
        """Shut every executor down and wait for its workers to exit.

        In this thread, not in a closer of its own: at interpreter exit (atexit) no
        thread can start any more (Python 3.12 and newer raise RuntimeError).
        """
        with self._lock:
            everyone, self._reused = self._reused, []
            for reused in everyone:
                reused.retired, reused.deadline = True, None
            closers, self._closers = self._closers, []
        self._expiry.disarm()
        for reused in everyone:
            reused.executor.shutdown(wait=True, cancel_futures=True)
        for closer in closers:
            closer.join()

    def forget_after_fork(self) -> None:
        """In a forked child: the executors seen so far are the parent's; never use nor close them.

        Their queues and workers belong to the parent: a task submitted here could be
        run by the parent's workers and answered to the parent, and closing them here
        would stop the parent's pool.
        """
        _INHERITED.extend(self._reused)
        self._lock = threading.RLock()
        self._reused, self._closers = [], []

    def _hook_exit(self) -> None:
        """Shut the executors down at this process's exit, before multiprocessing joins its children.

        In a multiprocessing child (a loky or multiprocessing worker that ran a call,
        a user's Process) ``multiprocessing.util._exit_function`` joins every
        non-daemonic child before atexit runs: without this, it waits forever for
        our idle workers. Finalizers of priority 20 run first there, before the
        queues' own (10), as loky's executor does for its pool.
        """
        if self._exit_hook_pid != os.getpid():
            self._exit_hook_pid = os.getpid()
            util.Finalize(None, self.shutdown, exitpriority=20)

    def _close_idle(self) -> float | None:
        """Shut down the executors idle past their deadline; return the next deadline."""
        with self._lock:
            now = time.monotonic()
            for reused in [x for x in self._reused if x.deadline is not None and x.deadline <= now]:
                self._close(reused)
            return min((x.deadline for x in self._reused if x.deadline is not None), default=None)

    def _close(self, reused: ReusedExecutor) -> None:
        # With the lock held: shut the executor down in the background, then forget it.
        # Forgotten only once its closer runs: if none can start (interpreter exit),
        # shutdown() at exit still finds it.
        reused.retired = True
        reused.deadline = None
        closer = threading.Thread(
            target=reused.executor.shutdown,
            kwargs={"wait": True, "cancel_futures": True},
            name="zerocopy-shutdown",
            daemon=True,
        )
        closer.start()
        self._reused.remove(reused)
        self._closers = [t for t in self._closers if t.is_alive()] + [closer]


# Reused executors a forked child inherited from its parent (see forget_after_fork): kept, never used.
_INHERITED: list[ReusedExecutor] = []

EXECUTORS = ReusableExecutors()
atexit.register(EXECUTORS.shutdown)
at_fork(after_in_child=EXECUTORS.forget_after_fork)
