"""Fault tests: crashes, kills, interrupts, a full /dev/shm, sabotage, load and forgery.

Every scenario runs in a child script (the body is in tests/_fault_scripts/) so that
a SIGKILL, SIGBUS or hang cannot take pytest with it. Each test judges the script's
exit status, its stderr (no resource-tracker noise: each segment registered and
unregistered exactly once), its report, and what its process tree left behind in
/dev/shm and /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _fault_scripts as fs
from tests import _processes
from tests._checkout import checkout_env
from zerocopy_executor import _arrayref, _memfd

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
# What the resource tracker (or a worker) prints when segments are registered twice,
# unregistered twice, or left for it to clean up (an orphaned worker holds its pipe open).
NOISE = ("leaked shared_memory", "resource_tracker", "KeyError", "Traceback")
ORPHAN_GRACE_SECONDS = 5.0
NAME_RE = re.compile(r"zc_[0-9]+_[0-9a-f]{18}")

SCRIPT = """\
import faulthandler
import sys

from tests import _fault_scripts

if __name__ == "__main__":
    faulthandler.dump_traceback_later({hang_seconds}, exit=True)
    sys.exit(_fault_scripts.{scenario}(*sys.argv[1:]))
"""

pytestmark = pytest.mark.segments  # run under both kinds of segment (see CONTRIBUTING.md)


@dataclass
class Run:
    """What a scenario script did."""

    returncode: int
    stdout: str
    stderr: str
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def report(self) -> dict[str, Any]:
        assert "REPORT" in self.lines, f"no report; {self.explain()}"
        return self.lines["REPORT"]

    def explain(self) -> str:
        return f"exit {self.returncode}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def parse_lines(stdout: str) -> dict[str, dict[str, Any]]:
    lines = {}
    for line in stdout.splitlines():
        tag, _, body = line.partition(" ")
        if tag in ("READY", "REPORT"):
            lines[tag] = json.loads(body)
    return lines


class Reaper:
    """Kills what a scenario left running and removes the segments it left (ours only)."""

    def __init__(self) -> None:
        self.procs: dict[int, int] = {}

    def watch(self, procs: dict[int, int] | list[list[int]]) -> None:
        pairs = procs.items() if isinstance(procs, dict) else procs  # JSON: [[pid, start time], ...]
        self.procs.update((pid, start) for pid, start in pairs)

    def survivors(self) -> list[int]:
        return sorted(pid for pid, start in self.procs.items() if start and _processes.is_running(pid, start))

    def wait_for_exit(self, seconds: float) -> list[int]:
        deadline = time.monotonic() + seconds
        while (alive := self.survivors()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return alive

    def clean(self) -> None:
        for pid in self.survivors():
            os.kill(pid, signal.SIGKILL)
        self.wait_for_exit(5.0)
        for name in fs.segments_of(set(self.procs)):
            Path(fs.SHM_DIR, name).unlink(missing_ok=True)


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    """Whatever the test's scenario leaves behind is cleaned up after the test."""
    r = Reaper()
    yield r
    r.clean()


def write_script(tmp_path: Path, scenario: str, timeout: float) -> Path:
    path = tmp_path / f"{scenario}.py"
    path.write_text(SCRIPT.format(scenario=scenario, hang_seconds=max(timeout - 5, 1)))
    return path


def child_env() -> dict[str, str]:
    env = checkout_env()
    env.pop("PYTHONWARNINGS", None)
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def start(  # noqa: PLR0913 - the knobs of one Popen call
    tmp_path: Path,
    scenario: str,
    args: tuple[str, ...],
    *,
    timeout: float,
    wrap: tuple[str, ...] = (),
    stderr: Any = None,
) -> subprocess.Popen[str]:
    script = write_script(tmp_path, scenario, timeout)
    return subprocess.Popen(
        [*wrap, sys.executable, str(script), *args],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr is None else stderr,
        text=True,
    )


def run_scenario(
    tmp_path: Path, reaper: Reaper, scenario: str, *args: str, timeout: float = 50, wrap: tuple[str, ...] = ()
) -> Run:
    """Run a scenario script to completion (killing its whole tree if it hangs)."""
    proc = start(tmp_path, scenario, args, timeout=timeout, wrap=wrap)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout, stderr = kill_tree(proc, reaper)
        run = Run(proc.returncode, stdout, stderr)
        pytest.fail(f"{scenario}{args} hung for {timeout} s; {run.explain()}")
    run = Run(proc.returncode, stdout, stderr, parse_lines(stdout))
    if "REPORT" in run.lines and "procs" in run.lines["REPORT"]:
        reaper.watch(run.lines["REPORT"]["procs"])
    return run


def kill_tree(proc: subprocess.Popen[str], reaper: Reaper) -> tuple[str, str]:
    """Kill a scenario and every process under it; return what it had written."""
    reaper.watch(_processes.descendants(proc.pid))
    proc.kill()
    reaper.clean()  # orphans would hold its pipes open
    try:
        stdout, stderr = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        stdout, stderr = "", "(pipes still held open by a process outside the recorded tree)"
    return stdout or "", stderr or ""


def assert_quiet(run: Run) -> None:
    """Exit 0, and none of the noise of a double (un)registration or a leak on stderr."""
    assert run.returncode == 0, run.explain()
    noisy = [word for word in NOISE if word in run.stderr]
    assert not noisy, f"{noisy} on stderr; {run.explain()}"


def assert_nothing_left(run: Run, reaper: Reaper) -> None:
    """No process of the scenario's tree still runs, no segment of it is still linked."""
    alive = reaper.wait_for_exit(ORPHAN_GRACE_SECONDS)
    left = fs.segments_of(set(reaper.procs))
    assert not alive, f"processes {alive} outlived the script; {run.explain()}"
    assert not left, f"segments {left} outlived the script; {run.explain()}"


def read_until(proc: subprocess.Popen[str], reaper: Reaper, tag: str, timeout: float) -> dict[str, Any]:
    """Read the child's stdout until its ``tag`` line; fail with its stderr if it never comes."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(tag + " "):
            fields: dict[str, Any] = json.loads(line.split(" ", 1)[1])
            return fields
    _, stderr = kill_tree(proc, reaper)
    pytest.fail(f"no {tag} line from the script; stdout: {''.join(seen)}\nstderr: {stderr}")


# --- 1. a worker dies mid-task ---------------------------------------------------


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


# --- 2. the parent is SIGKILLed ---------------------------------------------------


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
        _end_scenario(proc)
    reaper.clean()  # stops survivors, so their stderr ends
    stderr = stderr_path.read_text()
    return ready, tree, names, segments_before, alive, left, elapsed, stderr


def _end_scenario(proc: subprocess.Popen[str]) -> None:
    """Kill the scenario if it still runs, and close its stdout."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


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
        _end_scenario(proc)
    assert before, "the map had no segment in flight: the test proves nothing"
    assert all(name.startswith("memfd:") for name in before), before
    assert not alive
    assert not left, f"memfds still held or mapped by some process after every one of ours died: {left}"


# --- 3. KeyboardInterrupt -----------------------------------------------------------


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


# --- 4. a small /dev/shm ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_shm_wrapper() -> tuple[str, ...]:
    """A command prefix that runs a program under a private 64 MiB /dev/shm (or skip)."""
    mount = "mount -t tmpfs -o size=64m tmpfs /dev/shm"
    wrapper = ("unshare", "-m", "sh", "-c", f'{mount} && exec "$0" "$@"')
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to make a private 64 MiB /dev/shm")
    probe = subprocess.run([*wrapper, "true"], capture_output=True, text=True, timeout=10, check=False)
    if probe.returncode != 0:
        pytest.skip(
            f"cannot mount a private /dev/shm (needs root or user namespaces): {probe.stderr.strip()}"
        )
    return wrapper


@pytest.mark.usefixtures("named_segments")  # named segments' rules
def test_full_dev_shm_falls_back_to_pickling_with_one_warning(
    tmp_path, reaper, start_method, small_shm_wrapper
):
    """Under a 64 MiB /dev/shm a 128 MiB argument and a 96 MiB result pickle, warn once each, never SIGBUS."""
    run = run_scenario(tmp_path, reaper, "scenario_small_shm", start_method, wrap=small_shm_wrapper)
    assert run.returncode != -signal.SIGBUS, run.explain()
    report = run.report
    assert report["correct"], run.explain()
    assert report["small_ok"], run.explain()
    full = [msg for cat, msg in report["warnings"] if cat == "SharedMemoryFullWarning"]
    assert len(full) == 1, report["warnings"]
    assert re.search(r"\b134217728 bytes\b", full[0]), full[0]
    assert re.search(r"/dev/shm has [0-9]+ bytes free", full[0]), full[0]
    # The 96 MiB result is encoded in the worker: its one warning goes to the worker's stderr.
    worker_warnings = re.findall(r"SharedMemoryFullWarning: (.*)", run.stderr)
    assert len(worker_warnings) == 1, run.explain()
    assert re.search(r"\b100663296 bytes\b", worker_warnings[0]), worker_warnings[0]
    assert re.search(r"/dev/shm has [0-9]+ bytes free", worker_warnings[0]), worker_warnings[0]
    assert report["bytes_pickled"] >= (128 + 96) * MiB, report
    assert report["arrays_copied"] >= 1, report
    assert report["empty_error"] is not None, "zerocopy_executor.empty(128 MiB) did not fail"
    assert "/dev/shm" in report["empty_error"], report["empty_error"]
    assert report["left"] == [], report
    assert_quiet(run)


@pytest.mark.usefixtures("named_segments")  # named segments' rules
def test_pool_of_warm_segments_holds_at_most_a_quarter_of_dev_shm(tmp_path, reaper, small_shm_wrapper):
    """Under a 64 MiB /dev/shm, 24 MiB of dropped results leave at most 16 MiB pooled, emptied at shutdown."""
    run = run_scenario(tmp_path, reaper, "scenario_pool_cap", "fork", wrap=small_shm_wrapper)
    report = run.report
    quarter = report["shm_total"] // 4
    assert report["correct"], run.explain()
    assert report["held"] > quarter, f"the results never needed more than the cap: {report}"
    assert 0 < report["pooled"] <= quarter, report
    assert report["left"] == [], report
    assert_quiet(run)
    assert_nothing_left(run, reaper)


# --- 5. a segment removed behind the executor's back -------------------------------


@pytest.mark.usefixtures("named_segments")  # named segments' rules
def test_unlinked_argument_segment_fails_only_its_task(tmp_path, reaper, start_method):
    """A queued task whose shared argument lost its /dev/shm name fails (SegmentError); the pool works on."""
    run = run_scenario(tmp_path, reaper, "scenario_segment_unlinked", start_method)
    report = run.report
    assert report["error"] is not None, "the task over an unlinked segment succeeded"
    assert report["error"].startswith("SegmentError: "), report["error"]
    assert "unlinked" in report["error"], report["error"]
    assert report["outcomes"] == ["ok"] * 6, run.explain()
    assert report["left"] == [], run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def _made_again(tmp_path, reaper, start_method, direction, who):
    """Run scenario_segment_made_again; check what every case shares, return its report."""
    if who == "other_uid" and os.geteuid() != 0:
        pytest.skip("creates a file as another user (root)")
    run = run_scenario(tmp_path, reaper, "scenario_segment_made_again", start_method, direction, who)
    report = run.report
    assert report["released"], run.explain()
    # The other file is left alone (not unlinked, not adopted): it is someone else's.
    assert list(report["others"].values()) == [fs.NOBODY if who == "other_uid" else os.geteuid()], report
    assert report["outcomes"] == ["ok", "ok"], run.explain()
    assert report["left"] == [], run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)
    return report


@pytest.mark.usefixtures("named_segments")  # a name in /dev/shm made again
@pytest.mark.parametrize("who", ["other_uid", "same_uid"])
def test_segment_name_made_again_is_refused_not_mapped(tmp_path, reaper, start_method, who):
    """A handed-over result's name unlinked and made again (by anyone): SegmentError, never that file."""
    report = _made_again(tmp_path, reaper, start_method, "handed_over", who)
    assert report["error"].startswith("SegmentError: "), report["error"]
    assert "is not the one its sender made" in report["error"], report["error"]


@pytest.mark.usefixtures("named_segments")  # a name in /dev/shm made again
@pytest.mark.parametrize("who", ["other_uid", "same_uid"])
def test_kept_view_of_a_released_segment_comes_back_with_its_values(tmp_path, reaper, start_method, who):
    """A view a worker kept of a segment since released and made again comes back with its own values."""
    report = _made_again(tmp_path, reaper, start_method, "returned_view", who)
    assert report["error"] == "none: the result holds [1. 1.] (the other file holds 7.0)", report["error"]


def test_memmap_file_swapped_for_a_fifo_fails_its_task_without_hanging(tmp_path, reaper, start_method):
    """A memmap's file replaced by a FIFO before the worker maps it: SegmentError, no hang at shutdown."""
    run = run_scenario(
        tmp_path, reaper, "scenario_memmap_swapped_for_fifo", start_method, str(tmp_path), timeout=40
    )
    report = run.report
    assert report["error"].startswith("SegmentError: "), report["error"]
    assert "not a regular file" in report["error"], report["error"]
    assert report["outcomes"] == ["ok"] * 3, run.explain()
    assert report["shutdown_seconds"] < 10, run.explain()
    assert report["left"] == [], run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)


@pytest.mark.parametrize("how", ["unlinked", "forged", "unlinked-in-map"])
def test_result_rebuild_failure_fails_only_that_future(request, tmp_path, reaper, start_method, how):
    """A result the parent cannot rebuild fails its future (or map item): SegmentError; the pool works on."""
    if how != "forged":
        request.getfixturevalue("named_segments")  # the worker unlinks its result's name
    run = run_scenario(tmp_path, reaper, "scenario_result_rebuild_fails", start_method, how)
    report = run.report
    assert report["error"] is not None, "the unrebuildable result was delivered"
    assert report["error"].startswith("SegmentError: "), report["error"]
    assert report["outcomes"] == ["ok"] * (6 if how == "unlinked-in-map" else 5), run.explain()
    assert report["left"] == [], run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)


# --- 6. load --------------------------------------------------------------------------


FD_SLACK = 4
POOL_BOUND = 64  # segments: far below one per task (2,000 here)


def test_threaded_load_leaks_no_descriptor_or_segment(tmp_path, reaper, start_method):
    """8 threads x 250 tasks with copied 1 MiB arguments: right results, no fd or segment growth."""
    run = run_scenario(tmp_path, reaper, "scenario_load_threads", start_method, "2000", timeout=55)
    report = run.report
    assert report["tasks"] == 2000
    assert report["wrong"] == 0, report
    assert report["copied"] >= 2000, report
    # Released segments may wait in the executor's pool of warm segments, which is
    # bounded, and trimmed once idle: no growth with the number of tasks.
    assert report["live"] <= POOL_BOUND, report
    assert report["idle_live"] == 0, report
    before_executor, after_quarter, after_all, when_idle, _after_shutdown, after_del = report["fds"]
    # A mapping keeps no descriptor on any Python: nothing follows the live segments.
    assert after_all - after_quarter <= FD_SLACK, report
    assert when_idle <= after_quarter + FD_SLACK, report
    # What stays open once the executor is gone is process-wide by design: the
    # resource tracker's pipe and the forkserver's (both stdlib singletons), and with
    # memfd segments the inbox workers hand them over to (see _handover).
    assert after_del - before_executor <= 2 + _memfd.chosen(), report["fds"]
    for pid, (_, _, growth) in report["worker_fds"].items():
        assert growth <= FD_SLACK, f"worker {pid} descriptors grew: {report['worker_fds']}"
    for pid, (first, last) in report["helper_fds"].items():
        assert last is None or last - first <= FD_SLACK, (
            f"helper {pid} descriptors grew: {report['helper_fds']}"
        )
    assert report["left"] == [], report
    assert_quiet(run)
    assert_nothing_left(run, reaper)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="max_tasks_per_child needs Python 3.11")
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_max_tasks_per_child_with_shared_arrays_leaks_nothing(tmp_path, reaper, method):
    """max_tasks_per_child=1, shared views in, shared arrays out, 8 threads: no fd or segment growth."""
    run = run_scenario(tmp_path, reaper, "scenario_load_max_tasks_per_child", method, "32", timeout=55)
    report = run.report
    assert report["wrong"] == 0, report
    assert report["workers"] >= 16, report  # one fresh worker per task
    assert report["live"] <= POOL_BOUND, report
    assert report["idle_live"] == 0, report
    before, after = report["fds"]
    assert after - before <= FD_SLACK, report["fds"]
    assert report["left"] == [], report
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def test_many_live_shared_results_under_1024_descriptors(tmp_path, reaper):
    """1,100 live results of zc.empty in workers, under a soft RLIMIT_NOFILE of 1024: all arrive.

    Named segments hold no descriptor; a memfd one holds one, from 1024 up: the program's
    own descriptors (below 1024) are untouched either way.
    """
    run = run_scenario(tmp_path, reaper, "scenario_many_live_results", "fork", "1100", timeout=55)
    report = run.report
    assert report["error"] is None, f"failed after {report['held']} results: {report['error']}"
    assert report["correct"], report
    fds_before, fds_holding = report["fds"]
    assert fds_holding - fds_before <= FD_SLACK, report
    assert report["fds_high"] <= 1100 + FD_SLACK, report
    assert report["left"] == [], report
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def _assert_no_result_lost(run: Run) -> None:
    report = run.report
    assert report["lost"] == 0, f"{report['lost']} results lost: {report['why']}"
    assert report["wrong"] == 0, report
    assert report["share_error"] is None, report
    assert report["arrays_pickled"] == 0, f"fell back to pickling: {report}"
    assert report["left"] == [], report


def test_results_kept_beyond_the_descriptor_limit_all_arrive(tmp_path, reaper, start_method):
    """200 live 320 KB results under RLIMIT_NOFILE=128 all arrive, then zc.share works: no fd per array."""
    run = run_scenario(tmp_path, reaper, "scenario_descriptor_limit", start_method, "128", "200")
    _assert_no_result_lost(run)
    fds_before, fds_holding = run.report["fds"]
    assert fds_holding - fds_before <= FD_SLACK, run.report
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def test_1100_results_kept_under_1024_descriptors_all_arrive(tmp_path, reaper):
    """1,100 live 320 KB results (copied back) under RLIMIT_NOFILE=1024 all arrive, then zc.share works."""
    run = run_scenario(tmp_path, reaper, "scenario_descriptor_limit", "fork", "1024", "1100")
    _assert_no_result_lost(run)
    fds_before, fds_holding = run.report["fds"]
    assert fds_holding - fds_before <= FD_SLACK, run.report
    assert_quiet(run)
    assert_nothing_left(run, reaper)


@pytest.mark.timeout(180)
def test_10000_results_kept_under_1024_descriptors_all_arrive(tmp_path, reaper):
    """10,000 live 320 KB results (3.2 GB of /dev/shm) under RLIMIT_NOFILE=1024 all arrive, in linear time.

    About 20 s here; the bound fails a clean-up that scans every live mapping per task.
    """
    run = run_scenario(tmp_path, reaper, "scenario_descriptor_limit", "fork", "1024", "10000", timeout=150)
    _assert_no_result_lost(run)
    assert_quiet(run)
    assert_nothing_left(run, reaper)


@pytest.mark.parametrize("where", ["parent", "workers", "both"])
def test_processes_out_of_descriptors_lose_no_result(tmp_path, reaper, start_method, where):
    """No descriptor left in the parent, the workers or both: copied arguments and results still cross."""
    run = run_scenario(tmp_path, reaper, "scenario_descriptor_table_full", start_method, where)
    _assert_no_result_lost(run)
    if where != "workers":
        assert run.report["filled"] > 0, run.report
    assert_quiet(run)
    assert_nothing_left(run, reaper)


# --- 7. bounded memory ---------------------------------------------------------------


def test_shared_memory_in_use_is_bounded_by_tasks_in_flight(tmp_path, reaper, start_method):
    """40 x 64 MiB submitted at once to 2 workers never hold more than 8 x 64 MiB of /dev/shm."""
    run = run_scenario(tmp_path, reaper, "scenario_bounded_memory", start_method, timeout=55)
    report = run.report
    assert report["correct"], report
    assert report["samples"] > 10, report
    assert report["peak"] >= 64 * MiB, f"never saw a segment: {report}"
    assert report["peak"] <= 8 * 64 * MiB, f"peak {report['peak'] / MiB:.0f} MiB of /dev/shm"
    assert report["left"] == [], report
    assert_quiet(run)
    assert_nothing_left(run, reaper)


# --- 9. security --------------------------------------------------------------------------


@pytest.mark.usefixtures("named_segments")  # named segments' rules
def test_segments_are_private_with_short_attributable_names(tmp_path, reaper, start_method):
    """Segments made in the parent, for copies and in workers are mode 0600, named zc_<pid>_<18 hex>."""
    run = run_scenario(tmp_path, reaper, "scenario_segment_security", start_method)
    modes = run.report["modes"]
    assert len(modes) >= 4, modes  # empty(), share(), a copied argument, a worker's result
    for name, mode in modes.items():
        assert NAME_RE.fullmatch(name), name
        assert len(name) <= 30, name
        assert stat.S_IMODE(mode) == 0o600, f"{name} has mode {oct(stat.S_IMODE(mode))}"
    assert run.report["left"] == []
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def test_forged_descriptor_in_arguments_fails_only_its_task(tmp_path, reaper, start_method):
    """Forged descriptors sent to a worker fail their tasks with SegmentError; the worker survives."""
    run = run_scenario(tmp_path, reaper, "scenario_forged_argument", start_method)
    errors = run.report["errors"]
    assert errors == dict.fromkeys(errors, "SegmentError"), errors
    assert run.report["fine"] == "ok", run.explain()
    assert run.report["left"] == []
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def segment_of(array: np.ndarray) -> tuple[str, int]:
    """The (name, size) of the segment a shared array lies in."""
    found = _arrayref.locate(array)
    assert found is not None
    return found[0].name, len(found[0])


Forgery = Callable[[str, int], tuple[str, int, tuple[int, ...], tuple[int, ...]]]
FORGERIES: dict[str, Forgery] = {
    "past_end": lambda name, size: (name, 8, (size // 8,), (8,)),
    "offset_beyond": lambda name, size: (name, size, (1,), (8,)),
    "negative_offset": lambda name, size: (name, -8, (4,), (8,)),
    "negative_stride_before_start": lambda name, size: (name, 0, (4,), (-8,)),
    "huge_stride": lambda name, size: (name, 0, (2,), (1 << 40,)),
    "huge_shape": lambda name, size: (name, 0, (1 << 62,), (8,)),
    "overflowing_product": lambda name, size: (name, 0, (1 << 40, 1 << 40), (8, 8)),
    "negative_dimension": lambda name, size: (name, 0, (-5,), (8,)),
    "rank_mismatch": lambda name, size: (name, 0, (4, 4), (8,)),
    "not_our_prefix": lambda name, size: ("psm_0123456789ab", 0, (4,), (8,)),
    "path_escape": lambda name, size: ("../" + name, 0, (4,), (8,)),
    "missing_segment": lambda name, size: ("zc_1_000000000000000000", 0, (4,), (8,)),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_descriptor_is_rejected_not_crashed(forgery):
    """rebuild() refuses a descriptor outside its segment (or not ours) with SegmentError."""
    real = zc.zeros(1000)
    ref_name, offset, shape, strides = FORGERIES[forgery](*segment_of(real))
    ref = fs.forged_ref(ref_name, offset, shape, strides)
    with pytest.raises(zc.SegmentError) as caught:
        _arrayref.rebuild(ref)
    del real, caught  # the traceback holds the mapping


def test_honest_descriptor_rebuilds_the_same_memory():
    """Control for the forgeries: an in-bounds descriptor rebuilds a view of the live segment."""
    real = zc.zeros(1000)
    name, size = segment_of(real)
    array = _arrayref.rebuild(fs.forged_ref(name, 8, (size // 8 - 1,), (8,)))[0]
    array[0] = 42.0
    assert array.shape == (size // 8 - 1,)
    assert real[1] == 42.0
