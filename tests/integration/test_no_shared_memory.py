"""Where no shared memory works, SharedArrayExecutor is ProcessPoolExecutor, and says so once.

Two lanes, each simulated in a whole process tree of its own (tests/_no_shm_site):
no ``_posixshmem`` module (as on Windows), and a /dev/shm that refuses to create
segments. The script (tests/_no_shm_script.py) runs the same calls through
SharedArrayExecutor and ProcessPoolExecutor.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests._checkout import IGNORE_FORK_WARNING, ROOT, checkout_env

SITE = Path(__file__).resolve().parents[1] / "_no_shm_site"
SCRIPT = Path(__file__).resolve().parents[1] / "_no_shm_script.py"
WHY = {
    "missing": "this platform has no POSIX shared memory",
    "windows": "this platform has no POSIX shared memory",
    "refused": "cannot create a segment in /dev/shm: Permission denied (EACCES)",
}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="simulates the lanes on Linux")


def run_in_lane(lane: str, start_method: str) -> tuple[dict, str]:
    env = checkout_env()
    env["PYTHONPATH"] = f"{SITE}:{env['PYTHONPATH']}"
    env["ZC_TEST_NO_SHM"] = lane
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(  # CPython's own fork warning aside, our warnings are what it checks
        [sys.executable, "-W", "default", "-W", IGNORE_FORK_WARNING, str(SCRIPT), start_method],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env=env,
    )
    output = f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, output
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, output
    return json.loads(lines[-1].removeprefix("REPORT ")), output


@pytest.mark.parametrize("lane", ["missing", "refused"])
def test_executor_without_shared_memory_is_process_pool_executor(lane, start_method):
    """Arrays are pickled both ways with ProcessPoolExecutor's results, after one warning that says why."""
    report, output = run_in_lane(lane, start_method)
    assert report["same_as_pool"], output
    (warning,) = report["warnings"]  # one, from the parent; workers stay quiet (stderr is checked below)
    assert warning[0] == "SharedMemoryFullWarning", output
    assert WHY[lane] in warning[1], output
    assert "pickles every array" in warning[1], output
    assert report["stats"] == [0, 0, 7, 0], output  # by reference, copied, pickled, live segments
    assert report["left"] == [], output
    assert "Warning" not in output.split("stderr:", 1)[1], output
    assert "Traceback" not in output, output


@pytest.mark.parametrize("lane", ["missing", "refused"])
def test_shared_allocation_without_shared_memory_says_why(lane):
    """zerocopy_executor.empty and share raise SegmentError: what is wrong, and what to do."""
    report, output = run_in_lane(lane, "spawn")
    for failure in (report["empty"], report["share"]):
        kind, message = failure
        assert kind == "SegmentError", output
        assert message.startswith("cannot make a shared array: "), output
        assert WHY[lane] in message, output
        assert "use numpy's own arrays instead" in message, output


def test_windows_like_platform_imports_and_runs_as_process_pool_executor():
    """No _posixshmem, no os.register_at_fork, no ctypes.CDLL(None): it imports and pickles, under spawn."""
    report, output = run_in_lane("windows", "spawn")
    assert report["same_as_pool"], output
    (warning,) = report["warnings"]
    assert WHY["windows"] in warning[1], output
    assert report["stats"] == [0, 0, 7, 0], output
    assert "Traceback" not in output, output
