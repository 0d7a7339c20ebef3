"""Releasing an executor's segments by the tag in their names, at shutdown and as creators exit.

``shutdown()`` sweeps its executor's tag once the workers are gone (see _namespace for
who releases what), sparing each creator that is still running: that process owns its
segments and unlinks them when their last view dies. A creator can outlive the
shutdown, though: a process that a task forked (``os.fork``) outlives the worker that
forked it, and such a process often ends with ``os._exit``, which runs no clean-up, or
is killed. While this process lives nothing else would release what it left: the
resource tracker cleans up only once every process sharing it has exited. So a daemon
thread waits for the spared creators to exit (a pidfd each on Linux 5.3+, a poll
elsewhere) and sweeps the tag again as each does, until no creator of it runs; it
never unlinks a segment whose creator still runs, and shutdown() never waits for it.
"""

from __future__ import annotations

import os
import select
import threading
import time

from . import _handover, _namespace, _reaper, _segments

__all__ = ["release_at_close", "release_tagged"]

_POLL_SECONDS = 0.5
# A child forked with os.fork() has a resource tracker of its own from Python 3.13.x on
# (gh-146313), which unlinks what the child left as soon as it exits: sweep after it,
# not in a race with it (the loser warns on stderr).
_GRACE_SECONDS = 1.0


def release_tagged(tag: str, *, orphaned: bool = False) -> int:
    """Unlink the segments that carry an executor's tag (see _namespace); return how many.

    Args:
        tag: the executor's tag.
        orphaned: the executor's parent is dead (a worker's last act): everything with
            the tag goes, whoever made it, and other workers may be sweeping at once.
            Otherwise (the parent, at shutdown or exit) the segments this process still
            holds and those of creators still running are spared, and this process is
            the only one to unlink the others, one sweep at a time (see
            _segments.unlink_leftover).
    """
    if orphaned:
        return sum(map(_segments.unlink, _namespace.tagged_names(tag, spare_running_creators=False)))
    with _reaper.exclusive():  # no mapping of ours is unlinked meanwhile, nor another sweep run
        _reaper.drain()
        names = _namespace.tagged_names(tag, _segments.owned_live_names())
        return sum(map(_segments.unlink_leftover, names))


def release_at_close(tag: str) -> None:
    """Sweep a closed executor's tag now, and again as each creator it spared exits."""
    # Listed before the sweep: a creator that exits in between is not spared by it.
    creators = _namespace.running_creators(tag)
    release_tagged(tag)
    _handover.discard_tagged(tag)  # memfds its workers posted and no reply claimed
    if creators:
        watcher = threading.Thread(
            target=_release_as_creators_exit, args=(tag, creators), name="zerocopy-creator-watch", daemon=True
        )
        watcher.start()


def _release_as_creators_exit(tag: str, creators: set[int]) -> None:
    while creators:
        _wait_for_an_exit(tag, creators)
        time.sleep(_GRACE_SECONDS)
        creators = _namespace.running_creators(tag)  # new ones too: a creator may fork
        release_tagged(tag)


def _wait_for_an_exit(tag: str, pids: set[int]) -> None:
    """Return once one of pids has exited."""
    poller = select.poll()
    pidfds = []
    try:
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return
            except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
                while pids <= _namespace.running_creators(tag):
                    time.sleep(_POLL_SECONDS)
                return
            pidfds.append(pidfd)
            poller.register(pidfd, select.POLLIN)  # readable once that process has exited
        poller.poll()
    finally:
        for pidfd in pidfds:
            os.close(pidfd)
