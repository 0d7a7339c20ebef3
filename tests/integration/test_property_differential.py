"""Property-based differential tests: random operation sequences on both executors (tests/property).

Hypothesis's state machine (tests/property/machine.py) makes arrays of many dtypes and
layouts, plain and shared, and runs random sequences of tasks, parent-side writes,
drops and collections on SharedArrayExecutor and ProcessPoolExecutor side by side,
comparing every array's values, flags and aliasing after every step, except where the
README documents a difference (the model applies those explicitly).

It runs as a script in a subprocess (tests/property/main.py), so that the classes and
functions the ``main`` rules send are a script's ``__main__`` ones, as users' are: the
same in the workers under every start method.

The default run is bounded and reproducible: under each start method, a fixed seed, so
every run (and CI) tries the same examples, as many as fit well within a minute on a
busy 2-core machine, and no shrinking, so that a failure costs no more time than a pass.
It prints the failing steps and the command that replays them, shrinking. ``pytest -m
stress`` runs the long profile, with a new random seed each time, to look for more.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests._checkout import ROOT, assert_imported_checkout, checkout_env
from tests.conftest import START_METHODS

CI_SECONDS = 300  # the bounded runs take 10 to 40 s; a hung task fails its example in 60
STRESS_SECONDS = 3600
# Any fixed seed would do: fixed, a red run is red again for whoever replays it.
CI_SEED = 20261206
# Examples per start method in the default run: each run within pytest's 50 s before it
# dumps tracebacks, on a busy 2-core machine (10 to 25 s here with load 2 to 5). A
# forkserver or spawn example costs several fork ones: each worker is a new process,
# and more so with max_tasks_per_child, which fork cannot use.
CI_EXAMPLES = {"fork": 60, "forkserver": 15, "spawn": 12}
# What a worker or the resource tracker prints about a leak or a crash.
NOISE = ("resource_tracker", "leaked", "Warning", "Traceback")


def run_machine(start_method, profile, tmp_path, seconds, *options):
    """Run the state machine's script; fail with its output (the failing steps, the seed) unless it passes."""
    probe = tmp_path / "imports.txt"
    command = [
        sys.executable,
        "-m",
        "tests.property.main",
        "--start-method",
        start_method,
        "--profile",
        profile,
        *options,
    ]
    run = subprocess.run(
        command,
        cwd=ROOT,
        env=checkout_env(probe),
        capture_output=True,
        text=True,
        timeout=seconds,
        check=False,
    )
    summary = f"--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    assert run.returncode == 0, summary
    assert "passed" in run.stdout, summary
    noisy = [word for word in NOISE if word in run.stderr]
    assert not noisy, f"{noisy} on stderr\n{summary}"
    assert_imported_checkout(probe)


@pytest.mark.timeout(CI_SECONDS + 60)
@pytest.mark.parametrize("start_method", [m for m in CI_EXAMPLES if m in START_METHODS])
def test_random_operation_sequences_match_process_pool_executor(start_method, tmp_path):
    """Random sequences of array tasks give what ProcessPoolExecutor gives, but the README's differences."""
    examples = str(CI_EXAMPLES[start_method])
    run_machine(
        start_method,
        "ci",
        tmp_path,
        CI_SECONDS,
        "--seed",
        str(CI_SEED),
        "--max-examples",
        examples,
        "--no-shrink",
    )


@pytest.mark.stress
@pytest.mark.timeout(STRESS_SECONDS + 60)
@pytest.mark.parametrize("start_method", START_METHODS)
def test_long_random_operation_sequences_match_process_pool_executor(start_method, tmp_path):
    """The same, ten times as many and longer sequences (run with -m stress)."""
    run_machine(start_method, "stress", tmp_path, STRESS_SECONDS)
