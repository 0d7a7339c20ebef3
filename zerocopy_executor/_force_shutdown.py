"""terminate_workers() and kill_workers() before Python 3.14 (gh-128041), with 3.14's semantics.

On 3.14 and newer the executor inherits ProcessPoolExecutor's own; before, these
functions do what 3.14's ``_force_shutdown`` does: shut the executor down without
waiting, cancelling pending futures, then signal every worker still alive. The pool
is broken afterwards, and its segments are released once its manager thread has
wound it down (see SharedArrayExecutor.shutdown).
"""

from __future__ import annotations

import signal
from concurrent.futures import ProcessPoolExecutor

__all__ = ["OPERATIONS", "force_shutdown"]

# The operation names 3.14 uses, so a call made for 3.14 behaves the same.
OPERATIONS = {"terminate": signal.SIGTERM, "kill": signal.SIGKILL}


def force_shutdown(executor: ProcessPoolExecutor, operation: str) -> None:
    """Shut executor down at once and signal its live workers (operation: terminate or kill).

    Raises:
        ValueError: operation is not one of OPERATIONS.
    """
    if operation not in OPERATIONS:
        msg = f"Unsupported operation: {operation!r}"  # 3.14's words
        raise ValueError(msg)
    # ProcessPoolExecutor keeps its workers in _processes (3.10-3.13 alike); copy it under
    # the lock the manager thread takes to replace workers, before shutdown() drops it.
    with executor._shutdown_lock:
        processes = dict(executor._processes or {})
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        try:
            if not process.is_alive():
                continue
        except ValueError:  # already closed
            continue
        try:
            if operation == "terminate":
                process.terminate()
            else:
                process.kill()
        except ProcessLookupError:  # exited meanwhile
            continue
