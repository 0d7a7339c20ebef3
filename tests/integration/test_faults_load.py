"""Fault tests under load: many threads, descriptor limits, and the memory tasks in flight hold.

Each scenario runs in a child script (tests/_fault_scripts/) through
tests/integration/_scenarios.py, which judges its exit status, its stderr, its report
and what its process tree left behind in /dev/shm and /proc.
"""

from __future__ import annotations

import sys

import pytest

from tests.integration._scenarios import Run, assert_nothing_left, assert_quiet, run_scenario
from zerocopy_executor import _memfd

MiB = 1 << 20

pytestmark = pytest.mark.segments  # run under both kinds of segment (see CONTRIBUTING.md)


# --- load --------------------------------------------------------------------------


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


# --- bounded memory ---------------------------------------------------------------


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
