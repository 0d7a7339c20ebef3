"""Put on PYTHONPATH by tests/integration/test_joblib_suite.py: the backend "zerocopy" in every process.

joblib looks a backend's name up in the process that makes the call. loky's is built
into joblib; a third-party backend is known only where it was registered, and loky's
workers run no code of the caller's at start-up. joblib's own tests pass backend names
to calls nested in workers, so for them to find "zerocopy" beside loky, every process
of the run (the test session, loky's and multiprocessing's workers, ours) registers it
at start-up, with the start method the run is testing. Python imports ``sitecustomize``
from the first directory on sys.path that has one.
"""

import os

_START_METHOD = os.environ.get("ZC_JOBLIB_SUITE_START_METHOD")

if _START_METHOD:
    import functools
    import multiprocessing

    import joblib

    from zerocopy_executor.joblib import BACKEND_NAME, SharedArrayBackend

    joblib.register_parallel_backend(
        BACKEND_NAME,
        functools.partial(SharedArrayBackend, mp_context=multiprocessing.get_context(_START_METHOD)),
    )
