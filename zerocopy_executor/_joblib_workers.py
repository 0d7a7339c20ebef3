"""The joblib backend's workers: thread pools limited as loky's, nested loky pools stopped at exit.

Workers limit their BLAS and OpenMP thread pools as loky's do: each gets
``cpu_count() // n_jobs`` threads (at least 1), through the usual environment variables
(for libraries loaded later) and threadpoolctl (for those loaded already, as under
fork), unless the parent set the variables itself.

Imported only by ``zerocopy_executor.joblib``, once joblib and threadpoolctl are known
to be installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from multiprocessing import util
from typing import Any

import threadpoolctl
from joblib.externals.loky import process_executor

__all__ = ["initialize_worker", "stop_nested_loky", "thread_limits"]


def thread_limits(env: dict[str, str]) -> dict[str, int]:
    """The threadpoolctl limits the worker environment *env* asks for, by user API."""
    limits: dict[str, int] = {}
    for api, names in (
        ("openmp", ("OMP_NUM_THREADS",)),
        ("blas", ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")),
    ):
        values = [env[name] for name in names if name in env]
        numbers = [int(v) for v in values if v.strip().isdigit()]  # OMP's "4,2" nesting lists: leave alone
        if numbers:
            limits[api] = min(numbers)
    return limits


def initialize_worker(
    env: dict[str, str], user_initializer: Callable[..., object] | None, user_initargs: tuple[Any, ...]
) -> None:
    """Worker initializer: limit thread pools, then run the user's initializer.

    The variables cover libraries the worker loads from now on; threadpoolctl the
    ones already loaded (under fork, or imported by the worker before this ran).
    """
    os.environ.update(env)
    limits = thread_limits(env)
    if limits:
        threadpoolctl.threadpool_limits(limits=limits)
    util.Finalize(None, stop_nested_loky, exitpriority=20)
    if user_initializer is not None:
        user_initializer(*user_initargs)


def stop_nested_loky() -> None:
    """At a worker's exit, shut down the loky executors its tasks' nested calls started.

    multiprocessing joins a worker's children before loky's own exit hook would stop
    them (after 300 idle seconds otherwise); loky's workers call this same function
    before they exit (``loky.process_executor._python_exit``, private in joblib 1.4-1.6).
    """
    process_executor._python_exit()
