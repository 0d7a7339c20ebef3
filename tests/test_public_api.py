"""The public surface: exactly the fixed names, and the installed version."""

from __future__ import annotations

from importlib.metadata import version

import zerocopy_executor

PUBLIC_NAMES = [
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


def test_all_lists_the_public_names_sorted():
    """__all__ is exactly the public names, sorted, and each one exists."""
    assert zerocopy_executor.__all__ == PUBLIC_NAMES
    for name in PUBLIC_NAMES:
        assert getattr(zerocopy_executor, name) is not None


def test_version_matches_installed_metadata():
    """__version__ comes from the installed distribution's metadata."""
    assert zerocopy_executor.__version__ == version("zerocopy_executor")


def test_error_hierarchy():
    """SegmentError is a SharedArrayError is a RuntimeError; a full /dev/shm warns with a RuntimeWarning."""
    assert issubclass(zerocopy_executor.SegmentError, zerocopy_executor.SharedArrayError)
    assert issubclass(zerocopy_executor.SharedArrayError, RuntimeError)
    assert issubclass(zerocopy_executor.SharedMemoryFullWarning, RuntimeWarning)


def test_executor_stats_fields():
    """ExecutorStats has the fixed fields, in order."""
    fields = list(zerocopy_executor.ExecutorStats.__dataclass_fields__)
    assert fields == [
        "arrays_by_reference",
        "bytes_by_reference",
        "arrays_copied",
        "bytes_copied",
        "arrays_pickled",
        "bytes_pickled",
        "live_segments",
    ]


def test_portable_submodule_names():
    """zerocopy_executor.portable is a public submodule with exactly map and submit."""
    from zerocopy_executor import portable

    assert portable.__all__ == ["map", "submit"]
    assert callable(portable.map)
    assert callable(portable.submit)
