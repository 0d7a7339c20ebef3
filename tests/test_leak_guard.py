"""The leak guard itself: it reports each kind of leak, under every start method.

A pytest run in a subprocess holds tests that each leak one thing, under the guard
of tests/conftest.py; each test here checks that the guard failed that one with a
report naming it, passed the clean controls, and left nothing running or linked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests import _processes
from tests.conftest import leakable_segments, our_processes, shm_is_private
from zerocopy_executor import _memfd

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 150
OUTLIVE_SECONDS = 10

pytestmark = [
    pytest.mark.segments,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

CONFTEST = """
import json
import os

from tests.conftest import leak_guard, subreaper  # the guard under test


def pytest_runtest_logreport(report):
    with open(os.environ["ZC_GUARD_REPORTS"], "a") as f:
        name = report.nodeid.rpartition("::")[2]
        properties = dict(report.user_properties)
        f.write(json.dumps([name, report.when, report.outcome, report.longreprtext, properties]) + "\\n")
"""

LEAKS = """
import multiprocessing
import subprocess
import time
from multiprocessing import shared_memory

import numpy as np

import zerocopy_executor as zc
from tests import _tasks

KEEP = []


def leave_executor_running(method, record_property):
    ex = zc.SharedArrayExecutor(1, mp_context=multiprocessing.get_context(method))
    assert ex.submit(_tasks.total, np.ones(1 << 18)).result(60) == 1 << 18
    record_property("worker", ex.submit(_tasks.pid).result(60))
    KEEP.append(ex)


def test_fork_executor_left_running(record_property):
    leave_executor_running("fork", record_property)


def test_forkserver_executor_left_running(record_property):
    leave_executor_running("forkserver", record_property)


def test_spawn_executor_left_running(record_property):
    leave_executor_running("spawn", record_property)


def test_orphan_of_a_shell():
    subprocess.run(["sh", "-c", "sleep 60 &"], check=True)


def test_orphan_of_a_forkserver_worker():
    ctx = multiprocessing.get_context("forkserver")
    with zc.SharedArrayExecutor(1, mp_context=ctx) as ex:
        ex.submit(_tasks.start_sleeper, 60).result(60)


def test_segment_kept_by_the_test():
    KEEP.append(zc.empty(1000))


def test_segment_left_by_a_forkserver_worker():
    with zc.SharedArrayExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as ex:
        ex.submit(_tasks.leave_segment_behind).result(60)


def test_segment_of_another_name():
    shm = shared_memory.SharedMemory(create=True, size=4096)
    shm.close()
    KEEP.append(shm)


def test_clean_forkserver_executor():
    with zc.SharedArrayExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as ex:
        assert ex.submit(_tasks.plus_one, np.ones(1 << 18)).result(60).sum() == 2 << 18


def test_clean_short_lived_orphan():
    subprocess.run(["sh", "-c", "sleep 0.2 &"], check=True)
    time.sleep(0.3)
"""

# The run's kind of segment: a memfd leaves nothing in /dev/shm; the test process holds it.
KEPT_KIND = "memfd:" if _memfd.chosen() else ""
LEAKING = {
    "test_fork_executor_left_running": "processes still alive",
    "test_forkserver_executor_left_running": "processes still alive",
    "test_spawn_executor_left_running": "processes still alive",
    "test_orphan_of_a_shell": "sleep 60",
    "test_orphan_of_a_forkserver_worker": "sleep 60",
    "test_segment_kept_by_the_test": f"segments left: ['{KEPT_KIND}zc_",
    "test_segment_left_by_a_forkserver_worker": "segments left: ['zc_",
}
CLEAN = ["test_clean_forkserver_executor", "test_clean_short_lived_orphan"]


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the leaking tests under the guard once; return each test's reports and what outlived the run."""
    directory = tmp_path_factory.mktemp("guarded")
    (directory / "conftest.py").write_text(CONFTEST)
    (directory / "test_leaks.py").write_text(textwrap.dedent(LEAKS))
    reports = directory / "reports.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "ZC_LEAK_WAIT_SECONDS": "1",
        "ZC_GUARD_REPORTS": str(reports),
    }
    processes_before, segments_before = our_processes(), leakable_segments()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--timeout=60", "test_leaks.py"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    # The inner run's tree winds down after it exits (its forkserver, its tracker).
    deadline = time.monotonic() + OUTLIVE_SECONDS
    while (outlived := our_processes().keys() - processes_before.keys()) and time.monotonic() < deadline:
        _processes.reap_adopted_orphans()
        time.sleep(0.05)
    by_test: dict[str, dict[str, tuple[str, str]]] = {}
    properties: dict[str, dict[str, Any]] = {}
    for line in reports.read_text().splitlines():
        name, when, outcome, text, recorded = json.loads(line)
        by_test.setdefault(name, {})[when] = (outcome, text)
        properties.setdefault(name, {}).update(recorded)
    return {
        "run": run,
        "tests": by_test,
        "properties": properties,
        "outlived": {p: _processes.command_line(p) for p in outlived},
        "left": leakable_segments() - segments_before,
    }


def teardown_of(guarded_run: dict[str, Any], name: str) -> tuple[str, str]:
    run = guarded_run["run"]
    assert name in guarded_run["tests"], f"{name} did not run\n{run.stdout}\n{run.stderr}"
    phases = guarded_run["tests"][name]
    assert phases["call"][0] == "passed", phases["call"][1]  # the test body itself is fine
    return phases["teardown"]


@pytest.mark.parametrize("name", sorted(LEAKING))
def test_guard_reports_each_kind_of_leak(guarded_run, name):
    """A test that leaves a process (any start method, or an orphan) or a segment fails at teardown."""
    outcome, text = teardown_of(guarded_run, name)
    assert outcome == "failed", f"the guard let {name} pass"
    assert LEAKING[name] in text, text


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_guard_names_the_worker_left_running(guarded_run, method):
    """An executor left running: the report names its worker's pid (a forkserver child under forkserver)."""
    name = f"test_{method}_executor_left_running"
    _, text = teardown_of(guarded_run, name)
    worker = guarded_run["properties"][name]["worker"]
    assert f"{worker} (parent " in text, text


@pytest.mark.skipif(not shm_is_private(), reason="other names are only ours in a private /dev/shm")
def test_guard_reports_a_segment_of_another_name(guarded_run):
    """In a private /dev/shm, a leaked segment not named like ours (the stdlib's psm_) fails too."""
    outcome, text = teardown_of(guarded_run, "test_segment_of_another_name")
    assert outcome == "failed", "the guard let a psm_ segment pass"
    assert "psm_" in text, text


@pytest.mark.parametrize("name", CLEAN)
def test_guard_passes_clean_tests(guarded_run, name):
    """A forkserver executor shut down, and an orphan that exits in time, are not leaks."""
    outcome, text = teardown_of(guarded_run, name)
    assert outcome == "passed", text


def test_guard_stops_what_it_reports(guarded_run):
    """After reporting, the guard kills the leaked processes and unlinks the leaked segments."""
    assert guarded_run["outlived"] == {}, guarded_run["outlived"]
    assert guarded_run["left"] == set(), guarded_run["left"]
