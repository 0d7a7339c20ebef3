"""Module-level callables that workers run (importable by reference under spawn).

One module for callers (``from tests import _tasks``; ``_tasks.total``), split by the
tests that use them; each name lives in exactly one of the submodules.
"""

from tests._tasks.calls import *  # noqa: F403
from tests._tasks.differential import *  # noqa: F403
from tests._tasks.differential import _PIPE_BYTES as _PIPE_BYTES  # the parent reads it (test_buffers)
from tests._tasks.integrations import *  # noqa: F403
from tests._tasks.property_suite import *  # noqa: F403
from tests._tasks.results import *  # noqa: F403
from tests._tasks.worker_state import *  # noqa: F403
