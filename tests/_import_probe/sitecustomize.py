"""Put on PYTHONPATH by tests/_checkout.py: each process records where it imported the package from.

Python imports ``sitecustomize`` at start-up from the first directory on sys.path that has
one; this one only registers an exit handler, so it changes nothing else in the process.
"""

import atexit
import os
import sys


def _record() -> None:
    module = sys.modules.get("zerocopy_executor")
    if module is not None:
        with open(os.environ["ZC_IMPORT_PROBE"], "a") as f:
            f.write(f"{os.getpid()} {module.__file__}\n")


if os.environ.get("ZC_IMPORT_PROBE"):
    atexit.register(_record)
