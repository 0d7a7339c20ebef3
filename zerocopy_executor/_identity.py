"""Segment identity: which file a segment's name stood for when its sender had it.

/dev/shm is one namespace for every user of the machine. A name we have unlinked can be
created again, by another user or by any process of ours, while a descriptor naming it
is still on its way (a worker may send back a view of a segment the parent has since
released): mapping whatever the name stands for then would hand the receiver another
file, which its owner can rewrite while we read it.

So a segment's identity (owner uid, device, inode: plain ints, read with ``fstat`` on
the descriptor that created or opened it) travels with its name, in every ArrayRef and
with a lent segment's name. A receiver maps a name only if the file it opened has that
identity, and reuses a mapping it holds only if the mapping was of that identity.
"""

from __future__ import annotations

import os
from functools import partial

from . import _fd_reserve
from ._errors import SegmentError
from ._shm import posixshmem as _posixshmem  # absent on Windows: see _shm

__all__ = ["Identity", "check", "of", "stands_for"]

Identity = tuple[int, int, int]  # owner uid, device, inode


def of(status: os.stat_result) -> Identity:
    """The identity of the file status describes."""
    return (status.st_uid, status.st_dev, status.st_ino)


def check(name: str, found: Identity, expected: object, *, user_block: bool = False) -> None:
    """Refuse (SegmentError) a segment whose identity is not the one its sender recorded.

    user_block: name is a user's SharedMemory block, which the user keeps alive, not us.
    """
    if found == expected:
        return
    what = "shared memory block" if user_block else "segment"
    if not (isinstance(expected, tuple) and len(expected) == len(found)):
        msg = (
            f"descriptor for {what} {name!r} has no valid identity, {expected!r}; it was forged or corrupted"
        )
        raise SegmentError(msg)
    keep = (
        "do not unlink the block (nor shut down a SharedMemoryManager that made it)"
        if user_block
        else "keep the array (and the executor) alive"
    )
    msg = (
        f"refusing to map {what} {name!r}: it is not the one its sender made (owner uid, device, "
        f"inode: {found!r}, the sender's {expected!r}); its name was unlinked and made again, perhaps "
        f"by another user: {keep} until the futures that use it finish"
    )
    raise SegmentError(msg)


def stands_for(name: str, identity: Identity) -> bool:
    """Whether the name is still that segment's (False if it is gone or now another file)."""
    # Read-write, as attach opens: on Linux that never waits for a FIFO's other end.
    open_name = partial(_posixshmem.shm_open, "/" + name, os.O_RDWR, mode=0o600)
    try:
        return _fd_reserve.with_descriptor(open_name, lambda fd: of(os.fstat(fd)) == identity)
    except OSError:  # gone, or another user's file we may not open
        return False
