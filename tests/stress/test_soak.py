"""The soak script (tests/stress/soak.py): a short run in every test run, a longer one on demand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests._checkout import ROOT, assert_imported_checkout, checkout_env

SHORT_SECONDS = 40
LONG_SECONDS = 300
# What the resource tracker prints about segments or semaphores it had to clean up or
# could not find (registered twice, or left behind by an orphan), and what a crash or a leak warning prints.
NOISE = ("resource_tracker", "leaked", "KeyError", "Traceback")

pytestmark = pytest.mark.segments  # run under both kinds of segment (see CONTRIBUTING.md)


def run_soak(seconds, tmp_path):
    """Run the soak; fail on a wrong result, an unexpected error, a leaked segment or noise on stderr."""
    probe = tmp_path / "imports.txt"
    run = subprocess.run(
        [sys.executable, "-m", "tests.stress.soak", "--seconds", str(seconds)],
        cwd=ROOT,
        env=checkout_env(probe),
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        check=False,
    )
    summary = f"--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    assert run.returncode == 0, summary
    for line in ("wrong results:     0", "unexpected errors: 0", "leaked segments:   0"):
        assert line in run.stdout, summary
    noisy = [word for word in NOISE if word in run.stderr]
    assert not noisy, f"{noisy} on stderr\n{summary}"
    assert_imported_checkout(probe)


@pytest.mark.timeout(SHORT_SECONDS + 300)
def test_soak_runs_clean_for_forty_seconds(tmp_path):
    """40 s of random arrays, start methods and killed workers: no wrong result, leak or tracker noise."""
    run_soak(SHORT_SECONDS, tmp_path)


@pytest.mark.stress
@pytest.mark.timeout(LONG_SECONDS + 300)
def test_soak_runs_clean_for_five_minutes(tmp_path):
    """The same for five minutes (run with -m stress)."""
    run_soak(LONG_SECONDS, tmp_path)
