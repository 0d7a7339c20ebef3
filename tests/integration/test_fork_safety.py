"""Workers forked while another thread of the parent holds a lock they need."""

from __future__ import annotations

import json

from tests._checkout import run_checkout_script

TRACKER_LOCK_HELD_AT_FORK = """
import faulthandler, json, multiprocessing, sys, threading
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing import resource_tracker

import zerocopy_executor as zc
from tests import _fault_scripts

if __name__ == "__main__":
    faulthandler.dump_traceback_later(45, exit=True)
    ex = zc.SharedArrayExecutor(1, mp_context=multiprocessing.get_context(sys.argv[1]))
    # Another thread is inside the resource tracker (registering a segment) while the
    # first submit() forks the worker: here it holds the tracker's lock throughout.
    held, done = threading.Event(), threading.Event()

    def hold_tracker_lock():
        with resource_tracker._resource_tracker._lock:
            held.set()
            done.wait(60)

    holder = threading.Thread(target=hold_tracker_lock)
    holder.start()
    held.wait()
    future = ex.submit(_fault_scripts.task_shared_result, 1 << 16, 2.0)  # made in a new segment
    try:
        outcome = "ok" if float(future.result(timeout=10).sum()) == 2.0 * (1 << 16) else "wrong"
    except FutureTimeout:
        outcome = "hung"
    done.set()
    holder.join()
    if outcome == "hung":
        ex.kill_workers()
    del future
    ex.shutdown()
    print("REPORT", json.dumps({"outcome": outcome}))
"""


def test_worker_forked_while_a_parent_thread_holds_the_tracker_lock_does_not_hang(tmp_path):
    """A worker forked while another thread holds the resource tracker's lock still makes its result."""
    # Fork only: the hazard is fork's (a forkserver forks from a process of one thread),
    # and under spawn and forkserver the parent itself takes that lock to start a worker.
    script = tmp_path / "tracker_lock.py"
    script.write_text(TRACKER_LOCK_HELD_AT_FORK)
    run = run_checkout_script(script, "fork", timeout=50)
    explain = f"exit {run.returncode}\n--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    assert run.returncode == 0, explain
    reports = [line.split(" ", 1)[1] for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert reports, explain
    assert json.loads(reports[-1]) == {"outcome": "ok"}, explain
