"""Fault tests: a worker dies mid-task, the parent is SIGKILLed, Ctrl-C lands mid-work.

Each scenario runs in a child script (tests/_fault_scripts/) through
tests/integration/_scenarios.py, which judges its exit status, its stderr, its report
and what its process tree left behind in /dev/shm and /proc.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests import _fault_scripts as fs
from tests import _processes
from tests.integration._scenarios import (
    NOISE,
    ORPHAN_GRACE_SECONDS,
    Reaper,
    Run,
    assert_nothing_left,
    assert_quiet,
    end_scenario,
    kill_tree,
    parse_lines,
    read_until,
    run_scenario,
    start,
)
from zerocopy_executor import _memfd

pytestmark = pytest.mark.segments  # run under both kinds of segment (see CONTRIBUTING.md)


# --- a worker dies mid-task ---------------------------------------------------


@pytest.mark.parametrize("how", ["os_exit", "sigkill"])
def test_worker_death_breaks_pending_futures_and_leaks_no_segment(tmp_path, reaper, start_method, how):
    """A worker killed with 8 MiB arguments and results in flight: BrokenProcessPool, then no leak."""
    run = run_scenario(tmp_path, reaper, "scenario_worker_killed", start_method, how)
    report = run.report
    outcomes = report["outcomes"]
    assert outcomes["doomed"] == "broken", run.explain()
    everything = [*outcomes["before"], outcomes["doomed"], *outcomes["after"]]
    assert set(everything) <= {"ok", "broken"}, run.explain()
    assert report["left_after_shutdown"] == [], run.explain()
    assert report["live"] == 0, run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def test_worker_death_after_map_gave_up_winds_the_pool_down(tmp_path, reaper, start_method):
    """A worker dies after map() cancelled its queued chunks: the pool breaks quietly, leaving nothing."""
    run = run_scenario(tmp_path, reaper, "scenario_map_abandoned_then_worker_dies", start_method)
    report = run.report
    assert report["first"] == "timeout", run.explain()
    assert report["late"] == "broken", run.explain()
    assert report["left_after_shutdown"] == [], run.explain()
    assert_quiet(run)  # before 3.12, the clean-up's InvalidStateError traceback (gh-107219)
    assert_nothing_left(run, reaper)


# --- the parent is SIGKILLed ---------------------------------------------------


def kill_parent_mid_map(
    tmp_path: Path, reaper: Reaper, start_method: str, kind: str, grace: float
) -> tuple[Any, ...]:
    """SIGKILL a scenario mid-map; return what it had and what outlived it (and for how long)."""
    # stderr goes to a file: orphans would hold a pipe open and block reading it.
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr_file:
        proc = start(tmp_path, "scenario_parent_killed", (start_method, kind), timeout=60, stderr=stderr_file)
    try:
        ready = read_until(proc, reaper, "READY", timeout=45)
        tree = _processes.descendants(proc.pid)
        names = {pid: _comm(pid) for pid in tree}
        reaper.watch(tree)
        reaper.watch({proc.pid: _processes.process_table()[proc.pid][2]})
        segments_before = fs.segments_of(set(tree) | {proc.pid})
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait(timeout=10)
        alive = reaper.wait_for_exit(grace)
        deadline = killed_at + grace
        while (left := fs.segments_of(set(reaper.procs))) and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.monotonic() - killed_at
    finally:
        end_scenario(proc)
    reaper.clean()  # stops survivors, so their stderr ends
    stderr = stderr_path.read_text()
    return ready, tree, names, segments_before, alive, left, elapsed, stderr


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def test_parent_sigkill_takes_every_helper_and_segment_with_it(tmp_path, reaper, start_method):
    """Parent SIGKILLed mid-map: within 5 s its workers, tracker, forkserver and segments are gone."""
    ready, tree, names, segments_before, alive, left, elapsed, stderr = kill_parent_mid_map(
        tmp_path, reaper, start_method, "zerocopy", ORPHAN_GRACE_SECONDS
    )
    assert set(ready["workers"]) <= set(tree)
    # The tree had at least 2 workers and the resource tracker.
    assert len(tree) >= 3, names
    assert segments_before, "the map had no segment in flight: the test proves nothing"
    assert not alive, f"still running {elapsed:.1f} s after the kill: {[names.get(p) for p in alive]}"
    assert not left, f"segments left {elapsed:.1f} s after the kill: {left}"
    # Under spawn and forkserver the stdlib's own queue semaphores are named, and the
    # tracker reports cleaning them up after a SIGKILL (ProcessPoolExecutor does the
    # same): that line is the tracker doing its job, not ours leaking.
    ours = re.sub(r".*leaked semaphore objects.*\n\s*warnings\.warn\(.*\n?", "", stderr)
    noisy = [word for word in NOISE if word in ours]
    assert not noisy, f"{noisy} on stderr:\n{stderr}"


@pytest.mark.xfail(strict=True, reason="ProcessPoolExecutor workers outlive a SIGKILLed parent")
def test_parent_sigkill_orphans_plain_process_pool_workers(tmp_path, reaper):
    """Control: the same check fails for a plain ProcessPoolExecutor, so it can catch orphans."""
    _, _, names, _, alive, _, elapsed, _ = kill_parent_mid_map(tmp_path, reaper, "fork", "plain", 2.0)
    assert not alive, f"still running {elapsed:.1f} s after the kill: {[names.get(p) for p in alive]}"


@pytest.mark.skipif(not _memfd.chosen(), reason="this run makes named segments, which the sweep removes")
def test_whole_tree_sigkilled_leaves_no_memfd_segment(tmp_path, reaper, start_method):
    """Parent and every helper SIGKILLed at once, so nothing can sweep: the kernel frees every memfd."""
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr_file:
        proc = start(
            tmp_path, "scenario_parent_killed", (start_method, "zerocopy"), timeout=60, stderr=stderr_file
        )
    try:
        read_until(proc, reaper, "READY", timeout=45)
        tree = _processes.descendants(proc.pid)
        reaper.watch(tree)
        before = fs.segments_of(set(tree) | {proc.pid})
        for pid in [proc.pid, *tree]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)
        alive = reaper.wait_for_exit(ORPHAN_GRACE_SECONDS)
        left = fs.segments_of(set(tree) | {proc.pid})
    finally:
        end_scenario(proc)
    assert before, "the map had no segment in flight: the test proves nothing"
    assert all(name.startswith("memfd:") for name in before), before
    assert not alive
    assert not left, f"memfds still held or mapped by some process after every one of ours died: {left}"


# --- KeyboardInterrupt -----------------------------------------------------------


@pytest.mark.parametrize("how", ["interrupt_main", "sigint"])
def test_keyboard_interrupt_during_map_leaves_nothing(tmp_path, reaper, start_method, how):
    """Ctrl-C during map, shutdown(cancel_futures=True), futures dropped unread: clean exit, no leak."""
    if how == "interrupt_main":
        run = run_scenario(tmp_path, reaper, "scenario_keyboard_interrupt", start_method, how)
    else:
        proc = start(tmp_path, "scenario_keyboard_interrupt", (start_method, how), timeout=50)
        ready = read_until(proc, reaper, "READY", timeout=40)
        reaper.watch(_processes.descendants(ready["pid"]))
        os.kill(ready["pid"], signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            stdout, stderr = kill_tree(proc, reaper)
            pytest.fail(f"the script hung after SIGINT:\n{stdout}\n{stderr}")
        run = Run(proc.returncode, stdout, stderr, parse_lines(stdout))
        reaper.watch(run.report["procs"])
    report = run.report
    assert report["interrupted"], run.explain()
    assert report["left_after_shutdown"] == [], run.explain()
    assert report["live"] == 0, run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def test_keyboard_interrupt_anywhere_in_submit_never_hangs_shutdown(tmp_path, reaper):
    """KeyboardInterrupt landing at random points while map() submits: shutdown() always returns."""
    run = run_scenario(tmp_path, reaper, "scenario_interrupt_during_submit", "fork", "25", timeout=55)
    assert run.report["interrupted"] > 0, run.explain()
    assert run.report["left_after_shutdown"] == [], run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)


@pytest.mark.parametrize("where", ["before_watch", "ticket"])
def test_keyboard_interrupt_in_task_bookkeeping_never_hangs_shutdown(tmp_path, reaper, where):
    """A task counted in flight that nothing will settle: shutdown() returns and releases it."""
    run = run_scenario(tmp_path, reaper, "scenario_interrupt_in_bookkeeping", "fork", where, timeout=30)
    assert run.report["interrupted"], run.explain()
    assert run.report["outcomes"] == ["CancelledError", "ok"], run.explain()
    assert run.report["left_after_shutdown"] == [], run.explain()
    assert run.report["live"] == 0, run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)
