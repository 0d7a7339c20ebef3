"""Put on PYTHONPATH by tests/integration/test_no_shared_memory.py: no process of the run can share memory.

Python imports ``sitecustomize`` at start-up, so every process of the run (the script,
the forkserver, spawned workers; forked ones inherit it) is in the same lane, chosen by
``ZC_TEST_NO_SHM``:

- ``missing``: there is no ``_posixshmem`` module nor ``os.memfd_create``, as on Windows. The standard
  library's resource tracker imports it on POSIX (only there), so it is imported
  first: ProcessPoolExecutor itself keeps working, as it does on Windows.
- ``windows``: as ``missing``, and what else Windows lacks that the package could touch
  on import: no ``os.fork`` nor ``os.register_at_fork``, and ``ctypes.CDLL(None)`` fails
  (spawn only, as on Windows).
- ``refused``: creating a shared-memory segment fails with EACCES, as under a /dev/shm
  that refuses it (while the pool's semaphores still work), and so does
  ``os.memfd_create``, as under a sandbox that forbids it.
"""

import errno
import os
import sys

_LANE = os.environ.get("ZC_TEST_NO_SHM")

if _LANE in ("missing", "windows"):
    import multiprocessing.resource_tracker  # noqa: F401 - imports the real _posixshmem first

    sys.modules["_posixshmem"] = None  # type: ignore[assignment]  # import now raises ImportError
    del os.memfd_create
if _LANE == "windows":
    import concurrent.futures.process  # noqa: F401 - the standard library's own at-fork hooks first
    import ctypes
    import random  # noqa: F401 - registers an at-fork hook wherever os.fork exists (3.14)

    # Windows has neither: the standard library asks for os.fork before registering hooks.
    del os.register_at_fork, os.fork
    _cdll = ctypes.CDLL

    class _NoProcessLibrary(_cdll):
        def __init__(self, name, *args, **kwargs):
            if name is None:
                raise TypeError("expected str, bytes or os.PathLike object, not NoneType")
            super().__init__(name, *args, **kwargs)

    ctypes.CDLL = _NoProcessLibrary
elif _LANE == "refused":
    import _posixshmem

    _open = _posixshmem.shm_open

    def _refuse_creation(path, flags, mode=0o777):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return _open(path, flags, mode)

    _posixshmem.shm_open = _refuse_creation

    def _refuse_memfd(name, flags=0):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    os.memfd_create = _refuse_memfd
