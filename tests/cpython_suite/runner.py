"""Run CPython's own ProcessPoolExecutor tests against an executor class.

    python -m tests.cpython_suite.runner {ppe,sae} OUTPUT.json [TEST_ID ...]

The tests come from the running interpreter's ``test.test_concurrent_futures`` (a
package from 3.13, one module before); nothing of CPython's is copied here. Every
ProcessPool* test class (fork, forkserver and spawn) of the modules in MODULES is run,
with the mixins' ``executor_type`` and ``concurrent.futures.ProcessPoolExecutor``
replaced by the executor under test ("sae"), or left alone ("ppe"). Tests that start a
fresh interpreter and import the executor by name get the same replacement through a
``.pth`` hook installed in this environment's site-packages for the duration of the run.
Outcomes go to OUTPUT.json as {test id: "pass" | "fail" | "skip"}.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import json
import os
import pkgutil
import sys
import sysconfig
import unittest
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

# The executor's own modules (test_process_pool holds ExecutorTest's) and those of the
# functions that take an executor: shutdown, deadlock, init, wait, as_completed.
MODULES = (
    "test_process_pool",
    "test_shutdown",
    "test_deadlock",
    "test_init",
    "test_wait",
    "test_as_completed",
)
ENV_FLAG = "ZC_CPYTHON_SUITE_EXECUTOR"
PER_TEST_TIMEOUT = 300  # seconds; the slowest test takes about 10
_HOOK_NAME = "zz_zerocopy_cpython_suite.pth"
# Executed by site.py at every interpreter start in this environment; inert unless the
# flag is set (only by this runner, for its own children).
_HOOK = (
    "import os; os.environ.get('ZC_CPYTHON_SUITE_EXECUTOR') == 'sae' and exec("
    "'import concurrent.futures as f, zerocopy_executor as z; "
    "f.ProcessPoolExecutor = f.SharedArrayExecutor = z.SharedArrayExecutor')\n"
)


def install_executor() -> None:
    """Make ``concurrent.futures`` hand out SharedArrayExecutor under both names."""
    import concurrent.futures

    from zerocopy_executor import SharedArrayExecutor

    concurrent.futures.ProcessPoolExecutor = SharedArrayExecutor  # type: ignore[misc]
    concurrent.futures.SharedArrayExecutor = SharedArrayExecutor  # type: ignore[attr-defined]


def suite_modules() -> list[ModuleType]:
    """The interpreter's test modules for the process pool (one module before 3.13)."""
    package = importlib.import_module("test.test_concurrent_futures")
    if not hasattr(package, "__path__"):
        return [package]
    names = {info.name for info in pkgutil.iter_modules(package.__path__)}
    return [
        importlib.import_module(f"test.test_concurrent_futures.{name}") for name in MODULES if name in names
    ]


def _patch_mixins(modules: list[ModuleType], executor: type) -> None:
    for module in modules:
        for owner in (module, getattr(module, "util", None)):
            for name in ("ProcessPoolForkMixin", "ProcessPoolForkserverMixin", "ProcessPoolSpawnMixin"):
                mixin = getattr(owner, name, None)
                if mixin is not None:
                    mixin.executor_type = executor


def _process_pool_tests(modules: list[ModuleType], wanted: set[str]) -> unittest.TestSuite:
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for module in modules:
        for name in sorted(dir(module)):
            case = getattr(module, name)
            if not (isinstance(case, type) and issubclass(case, unittest.TestCase)):
                continue
            if not name.startswith("ProcessPool") or case.__module__ != module.__name__:
                continue
            for test in loader.loadTestsFromTestCase(case):
                if not wanted or test.id() in wanted:
                    suite.addTest(test)
    return suite


@contextlib.contextmanager
def _subprocess_hook(active: bool) -> Iterator[None]:
    """Give fresh interpreters started by the tests the same executor (see _HOOK).

    A run ended by the per-test timeout leaves the hook behind, inert without the flag.
    """
    if not active:
        yield
        return
    hook = Path(sysconfig.get_paths()["purelib"]) / _HOOK_NAME
    hook.write_text(_HOOK)
    try:
        yield
    finally:
        hook.unlink(missing_ok=True)


class _Recorder(unittest.TextTestResult):
    """Keeps each test's outcome; a failed subtest fails its test.

    A test that hangs ends the run after PER_TEST_TIMEOUT with every thread's stack on
    stderr (as regrtest's --timeout does), so the caller's report shows where it hung.
    """

    outcomes: dict[str, str]

    def startTestRun(self) -> None:
        super().startTestRun()
        self.outcomes = {}

    def startTest(self, test: unittest.TestCase) -> None:
        faulthandler.dump_traceback_later(PER_TEST_TIMEOUT, exit=True)  # re-armed per test
        super().startTest(test)

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self.outcomes.setdefault(test.id(), "pass")  # not over a failed subtest

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self.outcomes[test.id()] = "fail"

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self.outcomes[test.id()] = "fail"  # class and module fixtures report a pseudo-id

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self.outcomes[test.id()] = "skip"

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self.outcomes[test.id()] = "pass"

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self.outcomes[test.id()] = "fail"

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.outcomes[test.id()] = "fail"


def main(argv: list[str]) -> int:
    """Run the suite; write outcomes; exit 0 (the comparison is the caller's)."""
    which, output, *wanted = argv
    os.environ[ENV_FLAG] = which
    modules = suite_modules()
    if which == "sae":
        install_executor()
        from zerocopy_executor import SharedArrayExecutor

        _patch_mixins(modules, SharedArrayExecutor)
    suite = _process_pool_tests(modules, set(wanted))
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=_Recorder)
    with _subprocess_hook(which == "sae"):
        result = runner.run(suite)
    Path(output).write_text(json.dumps(result.outcomes, indent=1, sort_keys=True))  # type: ignore[attr-defined]
    faulthandler.dump_traceback_later(PER_TEST_TIMEOUT, exit=True)  # the exit is bounded too (code 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
