"""Handing a worker's memfd segment to its parent: the descriptor is posted before the reply.

A segment a worker makes for a result becomes the parent's (see _segments). A memfd has
no name to open once its maker is gone, and a worker may exit (``max_tasks_per_child``,
``shutdown()``) or be killed right after it replies. So before replying, the worker posts
the segment's descriptor to its parent's inbox: a Unix datagram socket in Linux's abstract
namespace (no file to leave behind; its address travels without the leading NUL), with
``SCM_RIGHTS``. The kernel keeps a descriptor in
flight alive until the inbox reads it, whatever happens to its sender, and the send is
complete before the reply leaves, so the parent finds it when it decodes the reply.

The parent takes a descriptor by the segment's name, which is unguessable, and maps it
only if it has the identity the reply recorded (see _identity): a descriptor another
process of the machine posted (anyone who knows the random address can) is refused,
never mapped, and closed with the inbox.

Whoever reads the inbox needs a free descriptor for each one posted: a process out of
descriptors loses it (the kernel closes it), and the result that needed it fails with a
SegmentError that says so.
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import secrets
import socket
import threading

from ._fork_safety import at_fork

__all__ = ["Inbox", "inbox_address", "post", "set_parent_inbox", "take"]

# A posted name is a segment name (at most 30 characters): anything longer is not ours.
_MAX_NAME = 64


class Inbox:
    """This process's inbox: the socket, and the descriptors read from it, by segment name."""

    def __init__(self) -> None:
        self.address = f"zerocopy-executor-{os.getpid()}-{secrets.token_hex(8)}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.socket.bind("\0" + self.address)  # abstract: no file
        self.socket.setblocking(False)
        self.arrived: dict[str, int] = {}
        self.lost: set[str] = set()  # posted while this process had no descriptor free
        self.lock = threading.Lock()

    def take(self, name: str) -> int:
        """The descriptor posted for name; the caller owns it.

        Raises:
            OSError: none was posted for name, or it was lost for lack of descriptors.
        """
        with self.lock:
            self._read_all()
            fd = self.arrived.pop(name, None)
            if fd is not None:
                return fd
            if name in self.lost:
                self.lost.discard(name)
                raise OSError(
                    errno.EMFILE, "no descriptor was free to receive it: raise the limit (ulimit -n)"
                )
            raise OSError(errno.ENOENT, "its maker never posted it")

    def _read_all(self) -> None:
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(self.socket, _MAX_NAME, 1)
            except BlockingIOError:
                return
            name = data.decode("ascii", "replace")
            if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC) or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                self.lost.add(name)
                continue
            old = self.arrived.pop(name, None)
            if old is not None:  # a name posted twice: neither can be trusted
                os.close(old)
                os.close(fds[0])
                continue
            self.arrived[name] = fds[0]

    def close(self) -> None:
        """Close the socket and whatever was posted and never taken."""
        with self.lock:
            self.socket.close()
            for fd in self.arrived.values():
                os.close(fd)
            self.arrived.clear()


_INBOX: list[Inbox] = []  # this process's, made on first use
_PARENT: list[str] = []  # the address a worker posts to (its executor's parent)
_SENDER: list[socket.socket] = []


def inbox_address() -> str:
    """The address of this process's inbox, made now if need be."""
    if not _INBOX:
        _INBOX.append(Inbox())
    return _INBOX[0].address


def take(name: str) -> int:
    """The descriptor a worker posted for the segment name (see Inbox.take)."""
    inbox_address()
    return _INBOX[0].take(name)


def set_parent_inbox(address: str) -> None:
    """Record where this worker posts the segments it hands over."""
    _PARENT[:] = [address]


def post(name: str, fd: int) -> None:
    """Post a duplicate of fd for the segment name to the parent's inbox (this process's, if none).

    Returns once the descriptor is in the inbox's queue. If the queue is full, waits until
    the parent reads it (it does as it decodes each reply).

    Raises:
        OSError: the inbox is gone (the parent exited).
    """
    address = _PARENT[0] if _PARENT else inbox_address()
    if not _SENDER:
        _SENDER.append(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC))
    # Not socket.send_fds: it ignores its flags and address argument (3.10 to 3.13 at least).
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
    _SENDER[0].sendmsg([name.encode("ascii")], rights, 0, "\0" + address)


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
