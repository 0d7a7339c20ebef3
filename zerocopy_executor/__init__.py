"""Zero-copy NumPy arrays for process pools: a drop-in ProcessPoolExecutor.

Large arrays in task arguments and results travel as small shared-memory
descriptors instead of pickled bytes; arrays already in shared memory are never
copied at all.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._arrays import empty, empty_like, is_shared, share, zeros, zeros_like
from ._errors import SegmentError, SharedArrayError, SharedMemoryFullWarning
from ._executor import SharedArrayExecutor
from ._stats import ExecutorStats

try:
    __version__ = version("zerocopy_executor")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "ExecutorStats",
    "SegmentError",
    "SharedArrayError",
    "SharedArrayExecutor",
    "SharedMemoryFullWarning",
    "empty",
    "empty_like",
    "is_shared",
    "share",
    "zeros",
    "zeros_like",
]
