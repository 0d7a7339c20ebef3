"""The tag sweep: what an executor's processes leave behind is found by its name."""

from __future__ import annotations

import multiprocessing
import os
import threading

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
        assert _segments.release_tagged(tag, spare_running_creators=False) == 1
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
        threading.Thread(
            target=lambda: counts.append(_segments.release_tagged(tag, spare_running_creators=False))
        )
        for _ in range(2)
    ]
    for sweeper in sweepers:
        sweeper.start()
    for sweeper in sweepers:
        sweeper.join()
    assert sum(counts) == 20
    assert not any(_exists(buffer.name) for buffer in names)
