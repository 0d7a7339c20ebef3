"""The executor's SharedMemoryManager: a record of every segment its processes create.

Why a SharedMemoryManager, and why this shape (DESIGN.md, "Lifetimes"):

- Its server is a separate process that outlives a crashed worker, so ``shutdown()``
  can release the segments a dead worker created for a result it never delivered.
- ``smm.SharedMemory()`` costs a new authenticated connection (~0.5 ms) per segment
  and would create segments with the standard library's names. Instead the server
  hosts a :class:`SegmentLedger` reached through one proxy per process (the proxy
  keeps its connection), and creators only *report* names they made themselves.
  Removals are not urgent (an unlink is idempotent), so they ride along with the next
  report instead of costing a round trip of their own.
- ``SharedMemoryServer`` already unlinks what it tracks at shutdown but raises on the
  first name that is already gone; our server releases the ledger instead.
- A SIGKILLed parent would orphan the server (fact 2): it watches the parent's pid and
  releases the ledger before it exits.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable
from multiprocessing.context import BaseContext
from multiprocessing.managers import SharedMemoryManager, SharedMemoryServer
from typing import Any

from ._segments import unlink
from ._watchdog import exit_with_parent

__all__ = ["LedgerClient", "SegmentLedger", "start_ledger"]


class SegmentLedger:
    """The set of live segment names; lives in the manager's server process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: set[str] = set()

    def update(self, track: list[str], forget: list[str]) -> None:
        """Record new names and drop released ones."""
        with self._lock:
            self._names.update(track)
            self._names.difference_update(forget)

    def names(self) -> list[str]:
        """Return the names still recorded."""
        with self._lock:
            return sorted(self._names)

    def release_all(self) -> int:
        """Unlink every recorded segment; return how many were still linked."""
        with self._lock:
            names, self._names = self._names, set()
        return sum(unlink(name) for name in names)


_LEDGER: SegmentLedger | None = None


def ledger() -> SegmentLedger:
    """Return this server process's one ledger (the manager's typeid callable)."""
    global _LEDGER  # noqa: PLW0603 - one ledger per server process, by design
    if _LEDGER is None:
        _LEDGER = SegmentLedger()
    return _LEDGER


class _LedgerServer(SharedMemoryServer):
    def shutdown(self, c: Any) -> None:
        ledger().release_all()
        super().shutdown(c)


class _LedgerManager(SharedMemoryManager):
    _Server = _LedgerServer


_LedgerManager.register("SegmentLedger", callable=ledger, exposed=("update", "names", "release_all"))


def _serve_until_orphaned(parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid, ledger().release_all)


class LedgerClient:
    """A process's handle on the ledger: reports names, batching removals."""

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy
        self._pending_forget: list[str] = []
        self._lock = threading.Lock()

    def track(self, name: str) -> None:
        """Record a new segment at once: it must be known before it can be lost."""
        with self._lock:
            forget, self._pending_forget = self._pending_forget, []
        self.proxy.update([name], forget)

    def forget(self, name: str) -> None:
        """Queue a released name; sent with the next report (safe from finalizers)."""
        self._pending_forget.append(name)

    def forget_now(self, names: Iterable[str]) -> None:
        """Drop names at once (segments handed over to outlive the executor)."""
        with self._lock:
            forget, self._pending_forget = self._pending_forget, []
        self.proxy.update([], [*forget, *names])


def start_ledger(context: BaseContext) -> tuple[SharedMemoryManager, Any]:
    """Start the manager server with the executor's start method; return it and a proxy."""
    manager = _LedgerManager(ctx=context)
    manager.start(_serve_until_orphaned, (os.getpid(),))
    proxy = manager.SegmentLedger()  # type: ignore[attr-defined]  # made by register()
    return manager, proxy
