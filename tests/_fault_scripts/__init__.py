"""Fault scenarios that tests/integration/test_faults_*.py run as child scripts.

The tests run them through tests/integration/_scenarios.py. One module for callers
(``from tests import _fault_scripts``), split by concern into the submodules below;
each name lives in exactly one of them.

Each ``scenario_*`` function is the body of a small script the test writes to its
tmp_path and runs in a subprocess (so a crash, a SIGKILL or a hang cannot take pytest
with it). A scenario prints ``READY {json}`` when the test may act on it and
``REPORT {json}`` with what it saw; the test asserts on those, on the exit status, on
stderr and on what is left in /dev/shm and /proc afterwards.

The ``task_*`` functions run in workers; they are module-level so they pickle by
reference under every start method. They live here, not in tests/_tasks, because
they only make sense for these scenarios (killing themselves, unlinking their own
segments, counting their file descriptors).
"""

from tests._fault_scripts.crashes import *  # noqa: F403
from tests._fault_scripts.load import *  # noqa: F403
from tests._fault_scripts.probes import *  # noqa: F403
from tests._fault_scripts.segments import *  # noqa: F403
from tests._fault_scripts.user_blocks import *  # noqa: F403
from tests._fault_scripts.worker_tasks import *  # noqa: F403
