"""Running a fault scenario: a child script, what it reports, and what its process tree leaves.

Every scenario runs in a child script (the body is in tests/_fault_scripts/) so that
a SIGKILL, SIGBUS or hang cannot take pytest with it. A test judges the script's exit
status, its stderr (no resource-tracker noise: each segment registered and unregistered
exactly once), its report, and what its process tree left behind in /dev/shm and /proc.
The ``reaper`` fixture (tests/integration/conftest.py) cleans up after each test.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import _fault_scripts as fs
from tests import _processes
from tests._checkout import checkout_env

ROOT = Path(__file__).resolve().parents[2]
# What the resource tracker (or a worker) prints when segments are registered twice,
# unregistered twice, or left for it to clean up (an orphaned worker holds its pipe open).
NOISE = ("leaked shared_memory", "resource_tracker", "KeyError", "Traceback")
ORPHAN_GRACE_SECONDS = 5.0

SCRIPT = """\
import faulthandler
import sys

from tests import _fault_scripts

if __name__ == "__main__":
    faulthandler.dump_traceback_later({hang_seconds}, exit=True)
    sys.exit(_fault_scripts.{scenario}(*sys.argv[1:]))
"""


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


def end_scenario(proc: subprocess.Popen[str]) -> None:
    """Kill the scenario if it still runs, and close its stdout."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
