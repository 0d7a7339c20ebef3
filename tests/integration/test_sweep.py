"""The tag sweep: what an executor's processes leave behind is found by its name."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest

from tests import _sweep_scripts
from tests._checkout import run_checkout_script
from zerocopy_executor import _namespace, _segments, _sweep

FORK = multiprocessing.get_context("fork")  # shares this process's resource tracker

# Sweeping lists /dev/shm: named segments' rules (a memfd needs no sweep).
pytestmark = pytest.mark.usefixtures("named_segments")


def _exists(name: str) -> bool:
    return os.path.exists(f"{_namespace.SHM_DIR}/{name}")


def _create_and_report(tag: str, names: multiprocessing.connection.Connection, hold: bool) -> None:
    buffer = _segments.create(4096, tag=tag)
    _segments.hand_over([buffer])  # left to the sweep, as a worker's unsent result is
    names.send(buffer.name)
    if hold:
        names.recv()  # until the test is done with us
    os._exit(0)


def _child(tag: str, *, hold: bool) -> tuple[multiprocessing.process.BaseProcess, str, object]:
    resource_tracker.ensure_running()  # else the child starts one of its own, which cleans up after it
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
    assert _sweep.release_tagged(tag) == 1
    assert not _exists(name)


def test_release_tagged_spares_a_running_creator_unless_orphaned():
    """A running creator's segment survives a sweep that spares creators, and not one that does not."""
    tag = _namespace.new_tag()
    child, name, pipe = _child(tag, hold=True)
    try:
        assert _namespace.creator_pid(name) == child.pid
        assert _sweep.release_tagged(tag) == 0
        assert _exists(name)
        assert _sweep.release_tagged(tag, orphaned=True) == 1
        assert not _exists(name)
    finally:
        pipe.send("done")  # type: ignore[attr-defined]
        child.join(30)


@pytest.mark.parametrize("watch", ["pidfd", "poll"])
def test_release_at_close_releases_a_spared_creators_segment_once_it_exits(monkeypatch, watch):
    """A creator spared at close keeps its segment while it runs; the segment goes soon after it exits."""
    if watch == "poll":
        monkeypatch.delattr(os, "pidfd_open")  # as on macOS, or Linux before 5.3
    tag = _namespace.new_tag()
    child, name, pipe = _child(tag, hold=True)
    try:
        _sweep.release_at_close(tag)
        time.sleep(1.0)  # longer than a poll's period
        assert _exists(name)
    finally:
        pipe.send("done")  # type: ignore[attr-defined]
        child.join(30)
    deadline = time.monotonic() + 5
    while _exists(name) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _exists(name)


def test_release_tagged_unlinks_each_name_once_when_sweeps_race():
    """Two sweeps at once (two orphaned workers) unlink, and unregister, each segment once."""
    tag = _namespace.new_tag()
    names = [_segments.create(4096, tag=tag) for _ in range(20)]
    for buffer in names:
        _segments.hand_over([buffer])
    counts: list[int] = []
    sweepers = [
        threading.Thread(target=lambda: counts.append(_sweep.release_tagged(tag, orphaned=True)))
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
from zerocopy_executor import _namespace, _segments, _sweep

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
    _segments.hand_over([registered])
    assert _sweep.release_tagged(tag) == 2
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


# --- scenarios in a child script ------------------------------------------------------

SCENARIO = """\
import faulthandler
import sys

from tests import _sweep_scripts

if __name__ == "__main__":
    faulthandler.dump_traceback_later(80, exit=True)
    sys.exit(_sweep_scripts.{scenario}(*sys.argv[1:]))
"""
# A private, sticky /dev/shm (as tmpfs mounts it for everyone: mode 1777).
PRIVATE_SHM = ("unshare", "-m", "sh", "-c", 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$0" "$@"')


@functools.cache
def private_shm_problem() -> str | None:
    """Why a scenario cannot run as root under a private /dev/shm here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (changes uid, plants another user's names)"
    if shutil.which("unshare") is None:
        return "needs unshare(1) for a private /dev/shm"
    probe = subprocess.run([*PRIVATE_SHM, "true"], capture_output=True, text=True, timeout=10, check=False)
    return None if probe.returncode == 0 else f"cannot mount a private /dev/shm: {probe.stderr.strip()}"


def run_scenario(
    tmp_path: Path, scenario: str, *args: str, prefix: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run a scenario of tests/_sweep_scripts.py; return the run and its report."""
    script = tmp_path / f"{scenario}.py"
    script.write_text(SCENARIO.format(scenario=scenario))
    run = run_checkout_script(script, *args, prefix=prefix, timeout=90)
    explain = f"exit {run.returncode}\n--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    reports = [line.split(" ", 1)[1] for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert run.returncode == 0, explain
    assert reports, explain
    return run, json.loads(reports[-1])


def assert_foreign_name_spared(
    run: subprocess.CompletedProcess[str], report: dict[str, Any], uid: int
) -> None:
    explain = f"{report}\n--- stderr ---\n{run.stderr}"
    assert report["uid"] == uid, explain
    assert report["planted_uid"] == _sweep_scripts.PLANTER_UID, explain
    assert report["outcome"] == "broken", explain
    assert report["left_by_worker"], (
        f"the worker left nothing: the sweep had nothing of ours to do; {explain}"
    )
    assert report["shutdown"] == "ok", explain
    assert report["after_shutdown"] == [report["planted"]], explain
    assert report["orphaned"] == 1, explain
    assert report["after_orphaned"] == [report["planted"]], explain
    assert "Traceback" not in run.stderr, explain
    assert "resource_tracker" not in run.stderr, explain


@pytest.mark.skipif(private_shm_problem() is not None, reason=str(private_shm_problem()))
def test_unprivileged_shutdown_leaves_another_users_planted_name_alone(tmp_path):
    """Another user's name with our tag and a dead pid: an unprivileged shutdown() returns, sparing it."""
    # Under fork only: a process that dropped root may not read the interpreter (pyenv
    # under /root, a venv in a private temporary directory) to start another. The sweep
    # under test runs in the parent and in a worker's exit path, the same under every
    # start method; the root test below runs under all three.
    run, report = run_scenario(tmp_path, "scenario_foreign_name", "fork", "unprivileged", prefix=PRIVATE_SHM)
    assert_foreign_name_spared(run, report, _sweep_scripts.EXECUTOR_UID)


@pytest.mark.skipif(private_shm_problem() is not None, reason=str(private_shm_problem()))
def test_root_sweep_leaves_another_users_planted_name_alone(tmp_path, start_method):
    """Run as root, shutdown() and the orphaned sweep skip another user's name that carries their tag."""
    run, report = run_scenario(tmp_path, "scenario_foreign_name", start_method, "root", prefix=PRIVATE_SHM)
    assert_foreign_name_spared(run, report, 0)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_segment_of_a_forked_child_that_outlives_shutdown_goes_when_it_exits(tmp_path, start_method, how):
    """A task's forked child keeps its segment past shutdown(); once it exits or is killed, it goes."""
    run, report = run_scenario(tmp_path, "scenario_grandchild", start_method, how)
    explain = f"{report}\n--- stderr ---\n{run.stderr}"
    assert report["shutdown_seconds"] < 5, f"shutdown() waited for the child; {explain}"
    assert report["spared"], f"the running child's segment was unlinked by shutdown(); {explain}"
    assert report["still_spared"], f"the running child's segment was unlinked after shutdown(); {explain}"
    assert report["exited"], explain
    assert report["left"] == [], explain
    assert "Traceback" not in run.stderr, explain
    assert "KeyError" not in run.stderr, explain
    # From Python 3.13.x (gh-146313) a child forked with os.fork() gets a resource
    # tracker of its own, which reports the child's segment as leaked when it exits
    # (and fails to unlink it if we did first): about that segment, nothing else.
    noise = [
        line for line in run.stderr.splitlines() if "resource_tracker" in line and report["name"] not in line
    ]
    assert noise == [], explain


def test_segment_a_plain_pool_worker_keeps_goes_when_its_worker_exits(tmp_path, start_method):
    """A zc.empty array a plain ProcessPoolExecutor worker keeps in a global is unlinked as it exits."""
    run, report = run_scenario(tmp_path, "scenario_kept_in_plain_pool", start_method)
    explain = f"{report}\n--- stderr ---\n{run.stderr}"
    assert len(report["made"]) == 1, f"the worker made no segment of its own; {explain}"
    assert report["worker_exited"], explain
    assert report["left"] == [], f"left until the resource tracker exits; {explain}"
    assert "resource_tracker" not in run.stderr, explain
    assert "Traceback" not in run.stderr, explain
