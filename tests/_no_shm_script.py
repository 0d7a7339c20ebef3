"""Run by tests/integration/test_no_shared_memory.py in a process tree without usable shared memory.

The same calls go through SharedArrayExecutor and ProcessPoolExecutor; the report says
what each returned, what SharedArrayExecutor warned, counted and left in /dev/shm, and
what ``zerocopy_executor.empty`` and ``share`` raised.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

N = 1 << 20  # 8 MiB of float64: copied into a segment where shared memory works


def negate(a: np.ndarray) -> np.ndarray:
    return -a


def calls(executor: Any) -> list[Any]:
    """Arrays both ways, through submit() and map(); returned as plain lists to compare."""
    a = np.arange(N, dtype=np.float64)
    total = executor.submit(np.sum, a).result(timeout=60)
    negated = executor.submit(negate, a).result(timeout=60)
    mapped = list(executor.map(negate, [a[:10], a[-10:]], timeout=60))
    return [float(total), negated[:5].tolist(), [m.tolist() for m in mapped]]


def failure(make: Any) -> list[str]:
    try:
        make()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return []


def main(start_method: str) -> int:
    context = multiprocessing.get_context(start_method)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import zerocopy_executor as zc

        with zc.SharedArrayExecutor(2, mp_context=context) as executor:
            shared = calls(executor)
        stats = executor.stats()
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        pickled = calls(pool)
    report = {
        "same_as_pool": shared == pickled,
        "warnings": [[w.category.__name__, str(w.message)] for w in caught],
        "stats": [stats.arrays_by_reference, stats.arrays_copied, stats.arrays_pickled, stats.live_segments],
        "empty": failure(lambda: zc.empty(10)),
        "share": failure(lambda: zc.share(np.ones(3))),
        "left": sorted(name for name in os.listdir("/dev/shm") if name.startswith("zc_")),
    }
    print("REPORT", json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
