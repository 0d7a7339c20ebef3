"""The scripts in examples/ run clean: each checks its own results, under every start method.

Each example runs as a subprocess with ``--quick``. It exits non-zero if its results are
wrong; here we also require a quiet stderr, and that none of its processes (workers,
the forkserver) and none of their segments outlive it.

Segments are attributed by the creator's pid in their name (``zc_<pid>_...``), collected
while the example runs, on top of the autouse leak guard. The scripts import this
checkout (tests/_checkout.py), not an installed copy.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests._checkout import IGNORE_FORK_WARNING, ROOT, assert_imported_checkout, checkout_env

RUN_TIMEOUT = 120
POLL_SECONDS = 0.1
CLEANUP_WAIT_SECONDS = 10.0
FORBIDDEN_IN_STDERR = ("Traceback", "resource_tracker", "leaked", "Warning")
MARKER = "ZEROCOPY_EXAMPLE_RUN"
SEGMENT_PREFIX = "zc_"
SHM_DIR = "/dev/shm"

pytestmark = [
    pytest.mark.timeout(RUN_TIMEOUT + 30),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the example's processes in /proc"),
]


def processes_marked(token: str) -> set[int]:
    """Pids of live processes whose environment carries MARKER=token (the example's tree)."""
    needle = f"{MARKER}={token}".encode()
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone, or not ours
            continue
        if needle in environ and state != "Z":
            pids.add(int(entry))
    return pids


def segments_of(pids: set[int]) -> set[str]:
    """Our segments in /dev/shm created by one of pids."""
    names = set()
    for name in os.listdir(SHM_DIR):
        creator = name.removeprefix(SEGMENT_PREFIX).split("_")[0]
        if name.startswith(SEGMENT_PREFIX) and creator.isdigit() and int(creator) in pids:
            names.add(name)
    return names


def run_script(arguments: list[str], tmp_path: Path) -> str:
    """Run a Python script from the checkout; fail on an error exit, noisy stderr, orphans or leaks."""
    token = uuid.uuid4().hex
    probe = tmp_path / "imports.txt"
    # -W default shows the warnings Python hides by default (ResourceWarning among them).
    command = [
        sys.executable,
        "-W",
        "default",
        "-W",
        IGNORE_FORK_WARNING,
        *arguments,
    ]
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**checkout_env(probe), MARKER: token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    tree = {child.pid}  # every process of the script, sampled while it runs
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        try:
            stdout, stderr = child.communicate(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            tree |= processes_marked(token)
            if time.monotonic() > deadline:
                for pid in processes_marked(token):
                    os.kill(pid, signal.SIGKILL)
                stdout, stderr = child.communicate()
                pytest.fail(f"{arguments} ran over {RUN_TIMEOUT} s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    output = f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert child.returncode == 0, output
    for text in FORBIDDEN_IN_STDERR:
        assert text not in stderr, output
    deadline = time.monotonic() + CLEANUP_WAIT_SECONDS
    while (survivors := processes_marked(token)) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    assert not survivors, f"processes of {arguments} outlived it: {sorted(survivors)}\n{output}"
    leaked = segments_of(tree)
    assert not leaked, f"segments of {arguments} left in {SHM_DIR}: {sorted(leaked)}\n{output}"
    assert_imported_checkout(probe)
    return stdout


def run_example(name: str, start_method: str, tmp_path: Path) -> str:
    """Run examples/<name>.py --quick; it checks its own results and ends with an OK line."""
    stdout = run_script([f"examples/{name}.py", "--quick", "--start-method", start_method], tmp_path)
    last_line = stdout.rstrip().rpartition("\n")[2]
    assert last_line.startswith("OK"), stdout
    assert start_method in stdout, stdout
    return stdout


def test_readme_quick_start_runs_and_copies_nothing(tmp_path):
    """The README's quick start runs as written (default start method) and reports 0 bytes copied."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "quick_start.py"
    script.write_text(code)
    stdout = run_script([str(script)], tmp_path)
    assert "bytes_copied=0" in stdout, stdout
    assert "arrays_by_reference=5" in stdout, stdout  # four views, and the whole array


# Examples that check their own results (a wrong one exits non-zero) and print their
# executor's stats, with what those stats must show: nothing took a slower path.
SELF_CHECKING = {
    "square_in_place": "bytes_copied=0",  # squares one shared array in place
    "chunk_statistics": "bytes_copied=0",  # per-chunk dicts that match numpy's
    "sqrt_abs": "bytes_copied=0",  # rewrites a shared array in place
    "locked_histogram": "bytes_copied=0",  # a lock from initargs makes one shared histogram exact
    "producer_consumer": "arrays_pickled=0",  # map(buffersize=) and a JoinableQueue pipeline agree
    "structured_records": "bytes_copied=0",  # int64 ids kept exactly (a float table rounds them)
    "shared_memory_manager": "bytes_copied=0",  # a SharedMemoryManager block's views by reference
}


@pytest.mark.parametrize(("name", "expected"), SELF_CHECKING.items(), ids=list(SELF_CHECKING))
def test_example_verifies_itself_on_the_fast_path(name, expected, start_method, tmp_path):
    """The example's own checks pass, and its stats show no copy (or no pickling)."""
    stdout = run_example(name, start_method, tmp_path)
    assert expected in stdout, stdout


def test_library_function_agrees_across_executors(start_method, tmp_path):
    """library_function.py's smooth() gives identical results serially and with three executors."""
    stdout = run_example("library_function", start_method, tmp_path)
    for name in ("serial", "ThreadPoolExecutor", "ProcessPoolExecutor", "SharedArrayExecutor"):
        assert name in stdout


@pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="needs dask.distributed: pip install zerocopy_executor[distributed]",
)
def test_scale_out_agrees_on_dask(start_method, tmp_path):
    """scale_out.py gives identical results on SharedArrayExecutor and dask's executor, quietly."""
    stdout = run_example("scale_out", start_method, tmp_path)
    for name in ("SharedArrayExecutor", "dask.distributed", "ProcessPoolExecutor"):
        assert name in stdout
