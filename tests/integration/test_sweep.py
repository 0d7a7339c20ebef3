"""The tag sweep: what an executor's processes leave behind is found by its name."""

from __future__ import annotations

import multiprocessing
import os
import threading

from tests._checkout import run_checkout_script
from zerocopy_executor import _namespace, _segments

FORK = multiprocessing.get_context("fork")  # shares this process's resource tracker (fact 3)


def _exists(name: str) -> bool:
    return os.path.exists(f"{_namespace.SHM_DIR}/{name}")


def _create_and_report(tag: str, names: multiprocessing.connection.Connection, hold: bool) -> None:
    buffer = _segments.create(4096, tag=tag)
    _segments.disown(buffer)  # left to the sweep, as a worker's unsent result is
    names.send(buffer.name)
    if hold:
        names.recv()  # until the test is done with us
    os._exit(0)


def _child(tag: str, *, hold: bool) -> tuple[multiprocessing.process.BaseProcess, str, object]:
    ours, theirs = FORK.Pipe()
    child = FORK.Process(target=_create_and_report, args=(tag, theirs, hold))
    child.start()
    assert ours.poll(30), "the child never reported its segment"
    return child, ours.recv(), ours


def test_release_tagged_sweeps_a_dead_creators_segment():
    """What a process left behind when it died is released by the next sweep of its tag."""
    tag = _namespace.new_tag()
    child, name, _ = _child(tag, hold=False)
    child.join(30)
    assert _exists(name)
    assert _segments.release_tagged(tag) == 1
    assert not _exists(name)


def test_release_tagged_spares_a_running_creator_unless_orphaned():
    """A running creator's segment survives a sweep that spares creators, and not one that does not."""
    tag = _namespace.new_tag()
    child, name, pipe = _child(tag, hold=True)
    try:
        assert _namespace.creator_pid(name) == child.pid
        assert _segments.release_tagged(tag) == 0
        assert _exists(name)
        assert _segments.release_tagged(tag, orphaned=True) == 1
        assert not _exists(name)
    finally:
        pipe.send("done")  # type: ignore[attr-defined]
        child.join(30)


def test_release_tagged_unlinks_each_name_once_when_sweeps_race():
    """Two sweeps at once (two orphaned workers) unlink, and unregister, each segment once."""
    tag = _namespace.new_tag()
    names = [_segments.create(4096, tag=tag) for _ in range(20)]
    for buffer in names:
        _segments.disown(buffer)
    counts: list[int] = []
    sweepers = [
        threading.Thread(target=lambda: counts.append(_segments.release_tagged(tag, orphaned=True)))
        for _ in range(2)
    ]
    for sweeper in sweepers:
        sweeper.start()
    for sweeper in sweepers:
        sweeper.join()
    assert sum(counts) == 20
    assert not any(_exists(buffer.name) for buffer in names)


UNREGISTERED_LEFTOVER = """
import multiprocessing, os, _posixshmem
from zerocopy_executor import _namespace, _segments

def create_then_die(tag, conn):
    # As a worker killed between creating a segment and registering it.
    name = _namespace.new_name(tag)
    fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    os.ftruncate(fd, 4096)
    conn.send(name)
    os._exit(0)

if __name__ == "__main__":
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()
    tag = _namespace.new_tag()
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=create_then_die, args=(tag, theirs))
    child.start()
    name = ours.recv()
    child.join()
    registered = _segments.create(4096, tag=tag)  # and one registered as usual, left behind
    _segments.disown(registered)
    assert _segments.release_tagged(tag) == 2
    assert not os.path.exists("/dev/shm/" + name)
    print("ok")
"""


def test_release_tagged_copes_with_a_segment_its_creator_never_registered(tmp_path):
    """A segment whose creator died before registering it is swept with no resource-tracker noise."""
    script = tmp_path / "leftover.py"
    script.write_text(UNREGISTERED_LEFTOVER)
    run = run_checkout_script(script)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
    assert run.stderr == ""  # no KeyError from the tracker, nor a leak warning at its exit
