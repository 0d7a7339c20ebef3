"""Sweep scenarios run as child scripts by tests/integration/test_sweep.py.

Each ``scenario_*`` function is the body of a small script run in a subprocess (as in
tests/_fault_scripts/): it prints ``REPORT {json}`` with what it saw, and the test
asserts on that, on the exit status and on stderr. The scenarios that change their
uid or plant another user's files run under a private /dev/shm (``unshare -m``), so
nothing of theirs can reach the machine's.
"""

from __future__ import annotations

import _posixshmem
import importlib
import json
import multiprocessing
import os
import secrets
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import resource_tracker
from typing import Any

import numpy as np

import zerocopy_executor as zc
from tests import _fault_scripts
from tests._processes import process_table
from zerocopy_executor import _namespace, _segments, _sweep

SHM_DIR = "/dev/shm"
# The user who plants a name with our tag, and the one an unprivileged executor runs as.
PLANTER_UID = 65534
EXECUTOR_UID = 4242
TIMEOUT = 60


def emit(tag: str, **fields: Any) -> None:
    print(tag, json.dumps(fields), flush=True)


def tagged(tag: str) -> list[str]:
    """Every name in /dev/shm carrying tag, whoever owns it."""
    return sorted(
        n for n in os.listdir(SHM_DIR) if (m := _namespace.NAME_PATTERN.fullmatch(n)) and m[2] == tag
    )


def dead_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _start_planter() -> tuple[int, int, int]:
    """Fork, as root, a process that will plant a name as another user once told the tag."""
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(from_parent)
            os.close(to_parent)
            tag, victim = os.read(to_child, 100).decode().split()
            os.setgid(PLANTER_UID)
            os.setuid(PLANTER_UID)
            name = f"{_namespace.NAME_PREFIX}{victim}_{tag}{secrets.token_hex(5)}"
            fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
            os.ftruncate(fd, 4096)
            os.close(fd)
            os.write(from_child, name.encode())
        finally:
            os._exit(0)  # never the parent's exit path (its faulthandler thread is not here)
    os.close(to_child)
    os.close(from_child)
    return pid, from_parent, to_parent


def scenario_foreign_name(start_method: str, who: str) -> int:
    """Another user plants a name with our executor's tag and a dead pid; shutdown() and the orphaned sweep.

    who is "unprivileged" (the executor drops root first) or "root". The executor's
    worker dies holding a shared result, so the sweep has a segment of ours to release too.
    """
    # The resource tracker and the planter start as root, and what the executor imports
    # later is imported now: a process that dropped root may not read the interpreter's
    # files (pyenv under /root), so it can neither start another nor import.
    for module in ("multiprocessing.popen_fork", "multiprocessing.queues", "multiprocessing.synchronize"):
        importlib.import_module(module)
    resource_tracker.ensure_running()
    planter, tell_planter, planted_reply = _start_planter()
    if who == "unprivileged":
        os.setgid(EXECUTOR_UID)
        os.setuid(EXECUTOR_UID)
    ex = zc.SharedArrayExecutor(1, mp_context=multiprocessing.get_context(start_method))
    tag = ex._sharing.tag
    doomed = ex.submit(_fault_scripts.task_die_holding_result, np.ones(1 << 16), "os_exit", 0.0)
    outcome = _fault_scripts.outcome(doomed)
    os.write(tell_planter, f"{tag} {dead_pid()}".encode())
    planted = os.read(planted_reply, 100).decode()
    os.waitpid(planter, 0)
    planted_uid = os.stat(f"{SHM_DIR}/{planted}").st_uid
    left_by_worker = [n for n in tagged(tag) if n != planted]
    try:
        ex.shutdown()
        shutdown = "ok"
    except Exception as exc:
        shutdown = f"{type(exc).__name__}: {exc}"
    after_shutdown = tagged(tag)
    # A worker's last act when the parent dies: sweep everything with the tag.
    ours = _segments.create(4096, tag=tag)
    _segments.hand_over([ours])
    try:
        orphaned: int | str = _sweep.release_tagged(tag, orphaned=True)
    except Exception as exc:
        orphaned = f"{type(exc).__name__}: {exc}"
        _segments.unlink(ours.name)
    emit(
        "REPORT",
        uid=os.geteuid(),
        outcome=outcome,
        planted=planted,
        planted_uid=planted_uid,
        left_by_worker=left_by_worker,
        shutdown=shutdown,
        after_shutdown=after_shutdown,
        orphaned=orphaned,
        after_orphaned=tagged(tag),
    )
    return 0


def task_fork_grandchild(n: int, linger: float) -> tuple[int, str]:
    """Fork a child that makes a shared array and lingers; return its pid and the array's segment.

    The child ends without any clean-up, as forked children do: ``os._exit`` on SIGUSR1
    or after linger seconds, or killed.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            signal.signal(signal.SIGUSR1, lambda *_: os._exit(0))
            array = zc.empty(n)
            array[:] = 1.0
            (name,) = _fault_scripts.segments_of([os.getpid()])
            os.write(write, name.encode())
            os.close(write)
            time.sleep(linger)
        finally:
            os._exit(0)
    os.close(write)
    name = os.read(read, 100).decode()
    os.close(read)
    return pid, name


def _has_exited(pid: int) -> bool:
    entry = process_table().get(pid)
    return entry is None or entry[1] == "Z"


def scenario_grandchild(start_method: str, how: str) -> int:
    """A task forks a child that makes a segment and outlives shutdown(); then it exits, or is SIGKILLed."""
    ex = zc.SharedArrayExecutor(1, mp_context=multiprocessing.get_context(start_method))
    pid, name = ex.submit(task_fork_grandchild, 1 << 16, 30.0).result(timeout=TIMEOUT)
    started = time.monotonic()
    ex.shutdown()
    shutdown_seconds = time.monotonic() - started
    spared = os.path.exists(f"{SHM_DIR}/{name}")
    time.sleep(1.0)  # a watcher (if any) has had time to act, and must not have
    still_spared = os.path.exists(f"{SHM_DIR}/{name}")
    os.kill(pid, signal.SIGKILL if how == "sigkill" else signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not _has_exited(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    exited = time.monotonic()
    while os.path.exists(f"{SHM_DIR}/{name}") and time.monotonic() < exited + 5:
        time.sleep(0.01)
    released_after = time.monotonic() - exited
    emit(
        "REPORT",
        name=name,
        shutdown_seconds=shutdown_seconds,
        spared=spared,
        still_spared=still_spared,
        exited=_has_exited(pid),
        left=tagged(ex._sharing.tag),
        released_after=released_after,
    )
    return 0


_KEPT: list[np.ndarray] = []


def task_make_and_keep_shared(n: int) -> tuple[int, list[str]]:
    """Make a shared array, keep it in this worker's global; return the worker's pid and its segments."""
    array = zc.empty(n)
    array[:] = 1.0
    _KEPT.append(array)
    return os.getpid(), _fault_scripts.segments_of([os.getpid()])


def scenario_kept_in_plain_pool(start_method: str) -> int:
    """A plain ProcessPoolExecutor's worker keeps a zc.empty array in a global; the pool shuts down."""
    parent_array = zc.zeros(10)  # the parent uses shared memory too: its workers share its tracker
    context = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(1, mp_context=context) as executor:
        pid, made = executor.submit(task_make_and_keep_shared, 1 << 16).result(timeout=TIMEOUT)
    emit("REPORT", made=made, worker_exited=_has_exited(pid), left=_fault_scripts.segments_of([pid]))
    del parent_array
    return 0
