"""Functions defined in __main__: a script, and code with no file (a notebook, stdin)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests._checkout import assert_imported_checkout, checkout_env
from tests.conftest import START_METHODS


def run_python(
    arguments: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with arguments in cwd; env defaults to checkout_env() (imports the checkout)."""
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env=checkout_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


SCRIPT = textwrap.dedent(
    """
    import multiprocessing
    import numpy as np
    import zerocopy_executor as zc

    SETTING = "unset"

    def configure(value):
        global SETTING
        SETTING = value

    def read_setting(_):
        return SETTING

    def read_setting_if_word(word):
        # A set literal is a frozenset constant, ordered by the hash seed.
        return SETTING if word in {{"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}} else None

    def scaled(a, factor):
        return a * factor

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("{method}")
        with zc.SharedArrayExecutor(2, mp_context=ctx, initializer=configure, initargs=("set",)) as ex:
            assert list(ex.map(read_setting, range(4))) == ["set"] * 4, "initializer global not seen"
            words = ["alpha", "zeta", "omega"]
            assert list(ex.map(read_setting_if_word, words)) == ["set", "set", None], "set literal by value"
            out = ex.submit(scaled, np.ones(1 << 18), 3.0).result(60)
            assert (out == 3).all()
            offset = 5
            assert ex.submit(lambda x: x + offset, 1).result(60) == 6
        print("ok")
    """
)


@pytest.mark.parametrize("method", START_METHODS)
def test_script_main_functions_by_reference(tmp_path, method):
    """In a script, __main__ functions run by reference, any hash seed: initializer globals are seen."""
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(method=method))
    probe = tmp_path / "imports.txt"
    env = {k: v for k, v in checkout_env(probe).items() if k != "PYTHONHASHSEED"}  # random per process
    result = run_python([str(script)], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert result.stderr == ""
    assert_imported_checkout(probe)


@pytest.mark.parametrize("method", START_METHODS)
def test_fileless_main_functions_by_value(tmp_path, method):
    """Code with no file to re-import (python -c, notebooks) still runs, pickled by value.

    (``python -`` cannot use spawn at all: CPython tries to re-run ``<stdin>`` as a file.)
    """
    code = (
        SCRIPT.format(method=method)
        .replace(
            'assert list(ex.map(read_setting, range(4))) == ["set"] * 4, "initializer global not seen"',
            "list(ex.map(read_setting, range(4)))",
        )
        .replace(
            "assert list(ex.map(read_setting_if_word, words))", "list(ex.map(read_setting_if_word, words))"
        )
    )
    probe = tmp_path / "imports.txt"
    result = run_python(["-c", code], tmp_path, checkout_env(probe))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert result.stderr == ""
    assert_imported_checkout(probe)


STALE_GLOBALS = textwrap.dedent(
    """
    import multiprocessing
    import numpy as np
    import zerocopy_executor as zc

    WEIGHTS = np.zeros(4)

    def first_weight(_):
        return float(WEIGHTS[0])

    with zc.SharedArrayExecutor(1, mp_context=multiprocessing.get_context("{method}")) as ex:
        assert ex.submit(first_weight, 0).result(60) == 0.0
        WEIGHTS[0] = 42.0  # changed in place: the same object
        assert ex.submit(first_weight, 0).result(60) == 42.0, "a global changed in place was sent stale"
    print("ok")
    """
)


@pytest.mark.parametrize("method", [m for m in START_METHODS if m != "fork"])
def test_function_sent_by_value_sees_globals_changed_in_place(method, tmp_path):
    """A by-value function (python -c) sees a global array the parent changed in place since."""
    result = run_python(["-c", STALE_GLOBALS.format(method=method)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


INHERITED_GLOBAL = textwrap.dedent(
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    import zerocopy_executor as zc

    ctx = multiprocessing.get_context("{method}")
    COUNTER = ctx.Value("i", 0)  # pickles only by inheritance (RuntimeError otherwise)

    def bump(_):
        with COUNTER.get_lock():
            COUNTER.value += 1
        return "bumped"

    if __name__ == "__main__":
        seen = {{}}
        for cls in (ProcessPoolExecutor, zc.SharedArrayExecutor):
            COUNTER.value = 0
            with cls(2, mp_context=ctx) as ex:
                out = [ex.submit(bump, 0).result(60)] + list(ex.map(bump, range(3)))
            seen[cls.__name__] = (out, COUNTER.value)
        assert seen["ProcessPoolExecutor"] == seen["SharedArrayExecutor"], seen
        print("ok", seen["SharedArrayExecutor"][1])
    """
)


def test_main_function_whose_global_pickles_only_by_inheritance(tmp_path):
    """A __main__ function using an inherited multiprocessing.Value runs as with ProcessPoolExecutor.

    Its by-value copy cannot be made (the Value pickles only by inheritance): it goes by
    name alone. Under fork only: elsewhere each re-import of the script makes semaphores
    the resource tracker reports at exit, with either executor.
    """
    method = "fork"
    script = tmp_path / "counter.py"
    script.write_text(INHERITED_GLOBAL.format(method=method))
    result = run_python([str(script)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "4"]  # the workers' Value is the parent's
    assert result.stderr == ""
