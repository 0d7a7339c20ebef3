"""joblib's own tests of Parallel, run with the backend "zerocopy" registered beside loky.

joblib's ``test_parallel.py`` parametrizes many tests over every registered backend.
With ours registered in every process of the run (see tests/_joblib_site), its nested
calls (a Parallel call inside a task of another, in every pairing of backends) must pass
as they do on loky. The whole file can be run the same way, for a comparison with loky::

    ZC_JOBLIB_SUITE_START_METHOD=fork PYTHONPATH=tests/_joblib_site:. python -m pytest \\
        -c /dev/null -p no:cacheprovider --timeout 300 "$(python -c 'import joblib.test, os;
        print(os.path.dirname(joblib.test.__file__))')/test_parallel.py"
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests import _checkout

pytest.importorskip("joblib", reason="needs the [joblib] extra: pip install zerocopy_executor[joblib]")
pytest.importorskip("threadpoolctl", reason="needs the [joblib] extra: pip install zerocopy_executor[joblib]")
joblib_tests = pytest.importorskip("joblib.test", reason="this joblib was installed without its tests")

SITE = Path(__file__).resolve().parents[1] / "_joblib_site"
TEST_PARALLEL = Path(joblib_tests.__file__).with_name("test_parallel.py")
RUN_TIMEOUT = 240  # seconds; the nested-loop tests take 15 to 30 s on 2 cores


def run_joblib_tests(tmp_path: Path, start_method: str, selection: str) -> dict[str, str]:
    """Run joblib's tests matching selection; return {test name: passed | failed | skipped}."""
    report = tmp_path / "report.xml"
    env = _checkout.checkout_env()
    env["PYTHONPATH"] = os.pathsep.join([str(SITE), env["PYTHONPATH"]])
    env["ZC_JOBLIB_SUITE_START_METHOD"] = start_method
    command = [
        sys.executable, "-m", "pytest", "-c", os.devnull, "--rootdir", str(tmp_path),
        "-p", "no:cacheprovider", "-q", "--timeout", "120", f"--junitxml={report}",
        "-k", selection, str(TEST_PARALLEL),
    ]  # fmt: skip
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    assert report.exists(), f"joblib's tests wrote no report:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - the report pytest just wrote
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        outcomes[case.get("name", "?")] = outcome
    return outcomes


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_joblib_nested_loops_pass_with_zerocopy(tmp_path, start_method):
    """joblib's test_nested_loop passes in every pairing of "zerocopy" with the other backends, as loky's."""
    outcomes = run_joblib_tests(tmp_path, start_method, "test_nested_loop")
    ours = {name: outcome for name, outcome in outcomes.items() if "zerocopy" in name}
    assert len(ours) >= 11, sorted(
        outcomes
    )  # 5 other backends, each as parent and as child, and ours in ours
    assert {name for name, outcome in outcomes.items() if outcome != "passed"} == set()
