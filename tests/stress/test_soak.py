"""A short run of the soak script (tests/stress/soak.py); the long one is run by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOAK_SECONDS = 20


@pytest.mark.stress
@pytest.mark.timeout(600)
def test_soak_runs_clean_for_twenty_seconds():
    """20 s of random arrays and killed workers: no wrong result, no error, no leaked segment."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, "-m", "tests.stress.soak", "--seconds", str(SOAK_SECONDS)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SOAK_SECONDS + 300,
        check=False,
    )
    summary = f"--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    assert run.returncode == 0, summary
    assert "wrong results:     0" in run.stdout, summary
    assert "leaked segments:   0" in run.stdout, summary
