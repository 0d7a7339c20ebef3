"""Scenarios of a user's own multiprocessing.shared_memory block passed to tasks."""

from __future__ import annotations

import os
import signal

import numpy as np

import zerocopy_executor as zc
from tests._fault_scripts.probes import SHM_DIR, TIMEOUT, MiB, Seen, collect, context, emit, outcome


def task_write_then_end(a: np.ndarray, end: str) -> float:
    """Write 7 into a block argument, then end as told: return, raise, os._exit or SIGKILL."""
    a[...] = 7.0
    if end == "raise":
        raise RuntimeError("failed over a block")
    if end == "exit":
        os._exit(1)
    if end == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return float(a[0])


def scenario_user_block(start_method: str, end: str, finish: str) -> int:
    """Pass a view of a user's SharedMemory block to a task that ends as told; finish with the block.

    finish "unlink": the user closes and unlinks the block, as the standard library's
    documentation shows. finish "keep": the block is taken off the resource tracker
    first (a block meant to outlive the program) and only closed: it must outlive the
    script, so no process of ours may have registered it.
    """
    from multiprocessing import resource_tracker
    from multiprocessing.shared_memory import SharedMemory

    seen = Seen()
    shm = SharedMemory(create=True, size=MiB)
    if finish == "keep":  # the tracker forgets it: the user keeps it past exit
        resource_tracker.unregister(f"/{shm.name}", "shared_memory")
    array = np.ndarray((MiB // 8,), np.float64, buffer=shm.buf)
    array[:] = 1.0
    ex = zc.SharedArrayExecutor(2, mp_context=context(start_method))
    written = ex.submit(task_write_then_end, array[: MiB // 16], "ok").result(timeout=TIMEOUT)
    seen.look()
    last = outcome(ex.submit(task_write_then_end, array[MiB // 16 :], end))
    seen.look()
    ex.shutdown()
    collect()
    linked = os.path.exists(os.path.join(SHM_DIR, shm.name))
    readable = float(np.frombuffer(shm.buf, np.float64, 1)[0]) == written
    del array
    shm.close()
    if finish == "unlink":
        shm.unlink()
    emit(
        "REPORT",
        name=shm.name,
        written=written,
        outcome=last,
        linked_after_shutdown=linked,
        readable_after_shutdown=readable,
        procs=seen.listing(),
    )
    return 0
