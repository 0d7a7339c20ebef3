"""Run clean-up when an object dies, in a background thread, never in the thread that dropped it.

A ``weakref.finalize`` callback runs Python code in whatever thread drops the last
reference, often the main thread: a Ctrl-C landing inside it is "ignored" (the user's
KeyboardInterrupt is lost) and the clean-up stops half-way (a segment unlinked but
still registered with the resource tracker). Here the weak reference's callback is
``SimpleQueue.put``, which is C and cannot be interrupted, and a daemon thread (which
never receives KeyboardInterrupt) runs the clean-up. ``drain()`` runs what is queued in
the calling thread, for callers that need it done now (the executor before releasing its
ledger, ``stats()``), and at interpreter exit.

Each watched object has two weak references, both with C callbacks: one appends it to
the deque of clean-ups due, the other wakes the reaper. Whoever runs clean-ups takes them
from that deque while holding ``_BUSY``, so ``drain()`` costs what is due, not what is
alive (a process may hold thousands of shared results), and never misses one the reaper
has taken but not yet run.
"""

from __future__ import annotations

import atexit
import collections
import os
import queue
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from ._fork_safety import at_fork

__all__ = ["drain", "exclusive", "on_death", "pending"]

_WAKE: queue.SimpleQueue[weakref.ref[Any] | None] = queue.SimpleQueue()  # None: stop
_DUE: collections.deque[weakref.ref[Any]] = collections.deque()  # dead, clean-up not yet run
# id(due ref) -> (due ref, waking ref, action, args): keeps both references (and so their
# callbacks) alive until the clean-up has run.
_ACTIONS: dict[int, tuple[weakref.ref[Any], weakref.ref[Any], Callable[..., object], tuple[Any, ...]]] = {}
_STARTED_IN_PID = [0]
_THREAD: list[threading.Thread] = []
_START_LOCK = threading.Lock()
# Held while an action runs, so drain() can wait for one the reaper is running.
_BUSY = threading.RLock()


def on_death(obj: object, action: Callable[..., object], *args: Any) -> None:
    """Run ``action(*args)`` in the background once obj is garbage-collected."""
    _ensure_thread()
    # Made first, so its callback runs before the waking one's: the reaper, once woken,
    # finds the clean-up due.
    due = weakref.ref(obj, _DUE.append)
    _ACTIONS[id(due)] = (due, weakref.ref(obj, _WAKE.put), action, args)


def pending() -> list[tuple[Callable[..., object], tuple[Any, ...]]]:
    """Actions registered for objects that are still alive (used at exit)."""
    return [(action, args) for due, _, action, args in list(_ACTIONS.values()) if due() is not None]


def exclusive() -> threading.RLock:
    """A lock held while clean-ups run: hold it so that none runs meanwhile (re-entrant)."""
    return _BUSY


def drain() -> None:
    """Run, in this thread, every clean-up already due; wait for one under way."""
    with _BUSY:
        _run_due()
    # The reaper's wake-ups stay queued; it wakes to find nothing due.


def _run_due() -> None:
    """Run the clean-ups due, including those of objects an action lets die (hold _BUSY)."""
    while _DUE:
        # Taken off only once run: a KeyboardInterrupt in between leaves it due, not lost.
        _run_entry(id(_DUE[0]))
        _DUE.popleft()


def _run_entry(key: int) -> None:
    entry = _ACTIONS.pop(key, None)  # each action runs once, whoever gets there first
    if entry is None:
        return
    _, _, action, args = entry
    try:
        action(*args)
    except Exception as exc:  # report it as a finalizer would, and keep reaping
        _report(exc, action)


def _reap() -> None:
    while _WAKE.get() is not None:
        with _BUSY:
            _run_due()


def _report(exc: BaseException, action: object) -> None:
    """Hand a failed clean-up to sys.unraisablehook, as the interpreter does for a finalizer."""
    try:
        sys.unraisablehook(_Unraisable(exc, action))  # type: ignore[arg-type]
    except TypeError:  # the default hook takes only its own type, which is not public
        print(f"Exception ignored in: {action!r}", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


class _Unraisable:
    """What sys.unraisablehook reads: enough for hooks written in Python (pytest's)."""

    def __init__(self, exc: BaseException, action: object) -> None:
        self.exc_type, self.exc_value, self.exc_traceback = type(exc), exc, exc.__traceback__
        self.err_msg, self.object = "Exception ignored in zerocopy_executor clean-up", action


def _stop_before_fork() -> None:
    # A thread holding a lock at fork time leaves it held forever in the child: stop
    # ours before any fork, and start it again afterwards.
    if _STARTED_IN_PID[0] == os.getpid() and _THREAD:
        _WAKE.put(None)
        _THREAD.pop().join()
        _STARTED_IN_PID[0] = 0


def _restart_after_fork_in_parent() -> None:
    if _ACTIONS:
        _ensure_thread()


def _reinit_after_fork_in_child() -> None:
    global _BUSY, _START_LOCK
    _BUSY, _START_LOCK = threading.RLock(), threading.Lock()


def _ensure_thread() -> None:
    # One reaper per process: threads do not survive fork, so a forked child starts its own.
    if _STARTED_IN_PID[0] == os.getpid():
        return
    with _START_LOCK:
        if _STARTED_IN_PID[0] != os.getpid():
            thread = threading.Thread(target=_reap, name="zerocopy-reaper", daemon=True)
            thread.start()
            _THREAD[:] = [thread]
            _STARTED_IN_PID[0] = os.getpid()


atexit.register(drain)
at_fork(
    before=_stop_before_fork,
    after_in_parent=_restart_after_fork_in_parent,
    after_in_child=_reinit_after_fork_in_child,
)
