"""What the integrations' tests send to workers (joblib, dask, scipy, emcee, pandas).

Functions that need an optional library import it when called.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import numpy as np

import zerocopy_executor as zc
from tests._tasks.calls import pid


def total_in_own_dtype(a: np.ndarray) -> float:
    """The sum in the array's own dtype (``total`` sums in float64)."""
    return float(a.sum())


def mark_slowly(marks: np.ndarray, i: int, seconds: float) -> int:
    """Sleep, then mark slot i of a shared array: which tasks ran, seen from the parent."""
    time.sleep(seconds)
    marks[i] = 1
    return i


def fail_if(i: int, bad: int) -> int:
    if i == bad:
        msg = f"task {i} failed on purpose"
        raise ValueError(msg)
    return i


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def exit_with_status_1(_: Any = None) -> None:
    """End the worker at once with status 1 (``exit_abruptly`` uses 3)."""
    os._exit(1)


def thread_settings(_: Any = None) -> dict[str, Any]:
    """The worker's thread-pool environment and the BLAS/OpenMP pools threadpoolctl sees."""
    import threadpoolctl

    pools = threadpoolctl.threadpool_info()
    return {
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "num_threads": {p["user_api"]: p["num_threads"] for p in pools},
    }


def sphere(x: np.ndarray, data: np.ndarray) -> float:
    """A least-squares objective whose args carry an array (scipy's *args*)."""
    return float(((data - x[0]) ** 2).sum() + (x[1] - 1.0) ** 2)


def log_prob_gaussian(theta: np.ndarray, data: np.ndarray) -> float:
    """emcee log-probability: a Gaussian centred on the mean of data."""
    return float(-0.5 * ((theta - data.mean()) ** 2).sum())


def add_one_in_place(block: np.ndarray) -> np.ndarray:
    """A map_blocks function that writes into its block (and returns it)."""
    block += 1
    return block


def bump(x: float, data: np.ndarray) -> np.ndarray:
    """A vector-valued integrand for quad_vec, scaled by an array in the args."""
    return np.array([x * data[0], x * x * data[1]])


def nested_zerocopy_call(n: int) -> tuple[int, list[int], list[str]]:
    """In a worker: a Parallel call on the "zerocopy" backend; its pids and the warnings it gave."""
    import warnings

    from joblib import Parallel, delayed

    import zerocopy_executor.joblib as zc_joblib

    zc_joblib.register()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pids = Parallel(n_jobs=2, backend="zerocopy")(delayed(pid)(i) for i in range(n))
    return os.getpid(), pids, [str(w.message) for w in caught]


def nested_loky_call(n: int) -> list[int]:
    """In a worker: a Parallel call on loky, which starts (and keeps) loky workers there."""
    from joblib import Parallel, delayed

    return Parallel(n_jobs=2, backend="loky")(delayed(pid)(i) for i in range(n))


def zerocopy_call_in_child(start_method: str, results: Any) -> None:
    """A child process's target: one Parallel call on the "zerocopy" backend, its result put on a queue."""

    from joblib import Parallel, delayed, parallel_config

    import zerocopy_executor.joblib as zc_joblib

    zc_joblib.register()
    context = multiprocessing.get_context(start_method)
    with parallel_config(backend="zerocopy", n_jobs=2, mp_context=context):
        results.put(Parallel()(delayed(total_in_own_dtype)(np.full(1 << 18, float(i))) for i in range(4)))


def write_into(a: np.ndarray) -> str:
    """Write into an argument; return the error's message, or "" if the write went through."""
    try:
        a[0] = -1.0
    except ValueError as exc:
        return str(exc)
    return ""


def seen_in_worker(a: np.ndarray) -> tuple[bool, bool, float]:
    """What a worker sees of an argument: in shared memory?, writable?, its sum."""
    return zc.is_shared(a), bool(a.flags.writeable), float(a.sum())


def seen_in_list(arrays: list[np.ndarray]) -> tuple[bool, bool, bool, float]:
    """What a worker sees of a list holding one array twice: one object?, shared?, writable?, sum."""
    first = arrays[0]
    return first is arrays[1], zc.is_shared(first), bool(first.flags.writeable), float(first.sum())
