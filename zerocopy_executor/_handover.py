"""Handing a worker's memfd segments to its parent: the descriptors are posted before the reply.

A segment a worker makes for a result becomes the parent's (see _segments). A memfd has
no name to open once its maker is gone, and a worker may exit (``max_tasks_per_child``,
``shutdown()``) or be killed right after it replies. So once a reply is made, and before
it is sent, the worker posts the descriptors of the segments it hands over to its
parent's inbox: a Unix datagram socket in Linux's abstract namespace (no file to leave
behind; its address travels without the leading NUL), with ``SCM_RIGHTS``, up to 250 per
datagram. The kernel keeps a descriptor in flight alive until the inbox reads it,
whatever happens to its sender, and the send is complete before the reply leaves.

A thread of the parent reads the inbox as datagrams come (the kernel queues only a few
per socket, ``net.unix.max_dgram_qlen``: a sender waits while it is full), and the
parent takes each descriptor by its segment's name when it decodes the reply. Names are
unguessable, and a descriptor is mapped only if it has the identity the reply recorded
(see _identity): one another process of the machine posted (anyone who learns the random
address can) is refused, never mapped; a name posted twice is taken by no one. What is
never taken (a reply that failed to decode) stays open until the process exits.

Reading a descriptor needs a free one: a process out of descriptors loses it (the kernel
closes it), and the result that needed it fails with a SegmentError that says so.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import errno
import os
import secrets
import select
import socket
import threading

from . import _namespace
from ._fork_safety import at_fork

__all__ = ["discard_tagged", "inbox_address", "post", "set_parent_inbox", "take"]

_PER_DATAGRAM = 250  # the kernel passes at most 253 descriptors in one message
_MAX_DATAGRAM = 64 << 10


class _Inbox:
    """This process's inbox: the socket, and the descriptors read from it, by segment name."""

    def __init__(self) -> None:
        self.address = f"zerocopy-executor-{os.getpid()}-{secrets.token_hex(8)}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.socket.bind("\0" + self.address)
        self.socket.setblocking(False)
        self.arrived: dict[str, int] = {}
        self.refused: set[str] = set()  # posted twice: neither can be trusted
        self.lost: set[str] = set()  # posted while this process had no descriptor free
        self.lock = threading.Lock()
        threading.Thread(target=self._read_as_they_come, name="zerocopy-inbox", daemon=True).start()

    def take(self, name: str) -> int:
        """The descriptor posted for name; the caller owns it.

        Raises:
            OSError: none was posted for name, or it was lost for lack of descriptors.
        """
        with self.lock:
            self._read_all()  # the post was complete before the reply that names it was sent
            fd = self.arrived.pop(name, None)
            if fd is not None:
                return fd
            if name in self.lost:
                self.lost.discard(name)
                msg = "no descriptor was free to receive it: raise the limit (ulimit -n)"
                raise OSError(errno.EMFILE, msg)
            raise OSError(errno.ENOENT, "its maker never posted it")

    def _read_as_they_come(self) -> None:
        while True:
            try:
                select.select([self.socket], [], [])
            except (OSError, ValueError):  # closed
                return
            with self.lock:
                self._read_all()

    def _read_all(self) -> None:
        """Move every queued datagram's descriptors into arrived (lock held)."""
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(self.socket, _MAX_DATAGRAM, _PER_DATAGRAM)
            except (BlockingIOError, OSError):
                return
            names = data.decode("ascii", "replace").split("\n")
            if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC) or len(fds) != len(names):
                for fd in fds:
                    os.close(fd)
                self.lost.update(names)
                continue
            for name, fd in zip(names, fds, strict=True):
                self._arrive(name, fd)

    def _arrive(self, name: str, fd: int) -> None:
        old = self.arrived.pop(name, None)
        if old is not None or name in self.refused:
            self.refused.add(name)
            for stale in (old, fd):
                if stale is not None:
                    os.close(stale)
            return
        self.arrived[name] = fd

    def discard_tagged(self, tag: str) -> None:
        """Close what an executor's workers posted and nobody took; none will take it now.

        A worker killed between its post and its reply, or a reply that failed to decode,
        leaves a descriptor here: once the executor's workers are gone, it is closed.
        """
        with self.lock:
            self._read_all()
            for name in [name for name in self.arrived if _namespace.tag_of(name) == tag]:
                os.close(self.arrived.pop(name))

    def close(self) -> None:
        """Close the socket (its reader thread then ends) and what was posted and never taken."""
        with self.lock:
            self.socket.close()
            for fd in self.arrived.values():
                os.close(fd)
            self.arrived.clear()


_INBOX: list[_Inbox] = []  # this process's, made on first use
_PARENT: list[str] = []  # the address a worker posts to (its executor's parent)
_SENDER: list[socket.socket] = []


def inbox_address() -> str:
    """The address of this process's inbox, made now if need be."""
    if not _INBOX:
        _INBOX.append(_Inbox())
    return _INBOX[0].address


def take(name: str) -> int:
    """The descriptor a worker posted for the segment name (see _Inbox.take)."""
    inbox_address()
    return _INBOX[0].take(name)


def discard_tagged(tag: str) -> None:
    """Close what the workers of the executor tagged tag posted here and nobody took."""
    for inbox in _INBOX:
        inbox.discard_tagged(tag)


def set_parent_inbox(address: str) -> None:
    """Record where this worker posts the segments it hands over."""
    _PARENT[:] = [address]


def post(descriptors: dict[str, int]) -> None:
    """Post duplicates of descriptors, by segment name, to the parent's inbox (this process's, if none).

    Returns once they are all in the inbox's queue.

    Raises:
        OSError: the inbox is gone (the parent exited).
    """
    address = "\0" + (_PARENT[0] if _PARENT else inbox_address())
    if not _SENDER:
        _SENDER.append(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC))
    items = list(descriptors.items())
    for start in range(0, len(items), _PER_DATAGRAM):
        batch = items[start : start + _PER_DATAGRAM]
        names = "\n".join(name for name, _ in batch).encode("ascii")
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd for _, fd in batch]))]
        # Not socket.send_fds: it ignores its flags and address argument (3.10 to 3.13 at least).
        _SENDER[0].sendmsg([names], rights, 0, address)


def _close_at_exit() -> None:
    for inbox in _INBOX:
        inbox.close()
    for sender in _SENDER:
        sender.close()


def _forget_after_fork() -> None:
    """A forked child has its own inbox, if it needs one: the parent's stays the parent's."""
    for inbox in _INBOX:
        with contextlib.suppress(OSError):
            inbox.socket.close()
            for fd in inbox.arrived.values():
                os.close(fd)
    _INBOX.clear()
    for sender in _SENDER:
        sender.close()
    _SENDER.clear()


at_fork(after_in_child=_forget_after_fork)
# After the executors' own exit hooks (threading's, which join their workers) have run.
atexit.register(_close_at_exit)
