"""Subprocesses that import this checkout, not an installed copy of the package.

CI installs the package into a venv (not in editable mode), so a child Python started
outside the checkout would import that copy. checkout_env() puts the checkout first on
PYTHONPATH; with a probe file, every process of the child's tree that exits normally
(the script, spawn workers) writes down where ``zerocopy_executor`` came from, and
assert_imported_checkout() checks it was this checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "zerocopy_executor"
PROBE_DIR = Path(__file__).resolve().with_name("_import_probe")
# A -W option for children run under the fork start method. Python 3.12+ warns at a fork
# while the kernel counts another thread, and one ProcessPoolExecutor's shutdown() has just
# joined may still be exiting (plain ProcessPoolExecutors in a row meet it too); pyproject's
# filterwarnings ignores it in-process.
IGNORE_FORK_WARNING = "ignore:This process:DeprecationWarning"


def checkout_env(probe: Path | None = None) -> dict[str, str]:
    """os.environ with the checkout first on PYTHONPATH (and the import probe, if given a file)."""
    env = dict(os.environ)
    paths = [str(ROOT)] if probe is None else [str(PROBE_DIR), str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    if probe is not None:
        env["ZC_IMPORT_PROBE"] = str(probe)
    return env


def assert_imported_checkout(probe: Path) -> None:
    """Every process that recorded an import of zerocopy_executor got this checkout's."""
    records = probe.read_text().splitlines() if probe.exists() else []
    assert records, "no process of the run recorded importing zerocopy_executor"
    outside = [line for line in records if not Path(line.split(" ", 1)[1]).is_relative_to(PACKAGE)]
    assert not outside, f"imported from outside the checkout {ROOT}: {outside}"


def run_checkout_script(
    script: Path, *args: str, prefix: tuple[str, ...] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a Python script that imports this checkout (prefix: a command to run it under)."""
    return subprocess.run(
        [*prefix, sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
        env=checkout_env(),
    )
