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


NO_THREAD_OF_OURS_AT_FORK = """
import json, multiprocessing, os, sys, threading


def ours_now():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("zerocopy-"))


SEEN = []  # our threads alive at each fork of this process
# Registered before zerocopy_executor is imported: before-fork hooks run in the reverse
# order, so this one sees what is left once every hook of ours has run.
os.register_at_fork(before=lambda: SEEN.append(ours_now()))

import numpy as np

import zerocopy_executor as zc


def fork_here():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def fork_in_task(a):
    before = len(SEEN)  # under fork, the worker inherited the parent's list
    fork_here()
    return -a, SEEN[before:], ours_now()


if __name__ == "__main__":
    method = sys.argv[1]
    big = np.ones(1 << 20)  # 8 MiB: shared both ways
    report = {}
    with zc.SharedArrayExecutor(2, mp_context=multiprocessing.get_context(method)) as ex:
        first = ex.submit(np.negative, big).result(timeout=60)
        report["running"] = ours_now()
        fork_here()
        report["after_fork"] = ours_now()
        if method == "fork":  # the probe above is a worker's only where it inherited it
            negated, seen, after = ex.submit(fork_in_task, big).result(timeout=60)
            report["worker_seen"], report["worker_after"] = seen, after
            assert (negated == -big).all()
        again = ex.submit(np.negative, big).result(timeout=60)  # the inbox still reads
        report["correct"] = bool((first == -big).all() and (again == -big).all())
        del first, again  # their segments go back to the pool, its timer may start: a fork now
        fork_here()
    fork_here()
    report["seen"] = SEEN
    print("REPORT", json.dumps(report))
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_no_thread_of_ours_runs_at_a_fork(tmp_path, method):
    """Our threads step aside at every fork, and start again after it (Python 3.12+ warns otherwise).

    ProcessPoolExecutor forks its workers before it starts a thread, so it never meets
    that warning; nor do our workers, a user's fork while or after the executor runs, or a
    task that forks in a worker.
    """
    script = tmp_path / "no_thread_at_fork.py"
    script.write_text(NO_THREAD_OF_OURS_AT_FORK)
    run = run_checkout_script(script, method, timeout=90)
    explain = f"exit {run.returncode}\n--- stdout ---\n{run.stdout}\n--- stderr ---\n{run.stderr}"
    assert run.returncode == 0, explain
    reports = [line.split(" ", 1)[1] for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert reports, explain
    report = json.loads(reports[-1])
    assert report["correct"], explain
    assert "zerocopy-inbox" in report["running"], explain  # there was a thread to step aside
    assert report["after_fork"] == report["running"], explain  # and it started again
    forks_in_parent = 3 + (2 if method == "fork" else 0)  # ours, and the workers under fork
    assert report["seen"] == [[]] * forks_in_parent, explain
    if method == "fork":
        assert report["worker_seen"] == [[]], explain
        assert "zerocopy-parent-watch" in report["worker_after"], explain
