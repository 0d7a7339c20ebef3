"""Workers forked while another thread of the parent holds a lock that they need."""

from __future__ import annotations

import json

import pytest

from tests._checkout import run_checkout_script

LOCK_HELD_AT_FORK = """
import faulthandler, json, multiprocessing, sys, threading
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing import resource_tracker

import cloudpickle

import zerocopy_executor as zc
from tests import _fault_scripts

if __name__ == "__main__":
    faulthandler.dump_traceback_later(45, exit=True)
    which = sys.argv[1]
    ex = zc.SharedArrayExecutor(1, mp_context=multiprocessing.get_context("fork"))
    if which == "tracker":  # another thread registering a segment
        lock = resource_tracker._resource_tracker._lock
        call = (_fault_scripts.task_shared_result, 1 << 16, 2.0)  # its result is a new segment
        expected = 2.0 * (1 << 16)
    else:  # another thread pickling a class by value
        lock = cloudpickle.cloudpickle._DYNAMIC_CLASS_TRACKER_LOCK
        Local = type("Local", (), {"x": 3})  # made in a function: it travels by value
        call = (lambda obj: obj.x, Local())
        expected = 3
    held, done = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            done.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    future = ex.submit(*call)  # forks the worker while the lock is held
    done.set()  # before the call is pickled: only the worker inherited the held lock
    holder.join()
    try:
        result = future.result(timeout=10)
        outcome = "ok" if float(result if which == "cloudpickle" else result.sum()) == expected else "wrong"
    except FutureTimeout:
        outcome = "hung"
        ex.kill_workers()
    del future
    ex.shutdown()
    print("REPORT", json.dumps({"outcome": outcome}))
"""


@pytest.mark.parametrize("lock", ["tracker", "cloudpickle"])
def test_worker_forked_while_a_parent_thread_holds_a_lock_it_needs_does_not_hang(tmp_path, lock):
    """A worker forked while another thread holds the tracker's or cloudpickle's lock still runs its task."""
    # Fork only: the hazard is fork's (a forkserver forks from a process of one thread),
    # and under spawn and forkserver the parent itself takes the tracker's lock to start
    # a worker.
    script = tmp_path / "lock_held_at_fork.py"
    script.write_text(LOCK_HELD_AT_FORK)
    run = run_checkout_script(script, lock, timeout=50)
    explain = f"exit {run.returncode}\n--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    assert run.returncode == 0, explain
    reports = [line.split(" ", 1)[1] for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert reports, explain
    assert json.loads(reports[-1]) == {"outcome": "ok"}, explain
