"""Classes defined in __main__, as arguments and results: one class in every process, as with PPE.

Each scenario runs a program as ``__main__`` in a subprocess, on ProcessPoolExecutor and
on SharedArrayExecutor, and compares what each check saw: a script (workers re-import
it, so a class goes by name), and code with no file (``python -c``, stdin), where
SharedArrayExecutor sends the class by value, whole, if the worker does not have it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests._checkout import checkout_env
from tests.conftest import START_METHODS
from tests.integration.test_main_functions import run_python

PROGRAM = textwrap.dedent(
    """
    import dataclasses
    import enum
    import json
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np
    import zerocopy_executor as zc

    SETTING = "unset"


    def configure(value):
        global SETTING
        SETTING = value


    @dataclasses.dataclass
    class Point:
        x: int
        y: int

        def norm1(self):
            return abs(self.x) + abs(self.y)


    class Color(enum.Enum):
        RED = 1
        GREEN = 2


    class Base:
        def greet(self):
            return "base"


    class Child(Base):
        def greet(self):
            return "child+" + super().greet()

        def setting(self):
            return SETTING


    class Tagged(np.ndarray):
        pass


    class Maker:
        @classmethod
        def make(cls, value):
            return cls, value


    def check_point(p):
        return isinstance(p, Point), p.norm1(), Point(p.y, p.x)


    def check_color(c):
        return c is Color.RED, Color.GREEN


    def check_child(c):
        return isinstance(c, Child), c.greet(), Child()


    def read_setting(c):
        return c.setting()


    def checked(result, *tests):
        return [test(result) for test in tests]


    def check_tagged(a):
        return type(a) is Tagged, a * 2


    def echo(x):
        return x


    def checks(ex, tagged_sizes=(4, 1 << 18)):
        seen = {}

        def check(name, fn):
            try:
                seen[name] = fn()
            except Exception as exc:
                seen[name] = "error: " + type(exc).__name__

        def point(result):
            inside, norm, back = result
            return [inside, norm, isinstance(back, Point), back == Point(2, 1)]

        check("dataclass", lambda: point(ex.submit(check_point, Point(1, 2)).result(60)))
        check("dataclass map", lambda: [point(r) for r in ex.map(check_point, [Point(1, 2)] * 2)])
        check("enum", lambda: checked(
            ex.submit(check_color, Color.RED).result(60), lambda r: r[0], lambda r: r[1] is Color.GREEN))
        check("super", lambda: checked(
            ex.submit(check_child, Child()).result(60),
            lambda r: r[0], lambda r: r[1], lambda r: isinstance(r[2], Child), lambda r: r[2].greet()))
        check("initializer global", lambda: ex.submit(read_setting, Child()).result(60))
        for n in tagged_sizes:
            check(f"ndarray subclass {n}", lambda: checked(
                ex.submit(check_tagged, np.ones(n).view(Tagged)).result(60),
                lambda r: r[0], lambda r: type(r[1]) is Tagged, lambda r: bool((r[1] == 2).all())))
        check("classmethod", lambda: checked(
            ex.submit(Maker.make, 3).result(60), lambda r: r[0] is Maker, lambda r: r[1]))
        check("class", lambda: ex.submit(echo, Point).result(60) is Point)
        return seen


    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else "START_METHOD")
        methods_before = (Child.__dict__["greet"], Point.__dict__["norm1"], Maker.__dict__["make"])
        out = {}
        for name, cls in (("ppe", ProcessPoolExecutor), ("sae", zc.SharedArrayExecutor)):
            with cls(2, mp_context=ctx, initializer=configure, initargs=("set",)) as ex:
                out[name] = checks(ex)
        after = (Child.__dict__["greet"], Point.__dict__["norm1"], Maker.__dict__["make"])
        out["classes untouched"] = all(a is b for a, b in zip(methods_before, after))
        print(json.dumps(out))
    """
)

# What every check sees when there is one class per __main__ class in every process.
EXPECTED = {
    "dataclass": [True, 3, True, True],
    "dataclass map": [[True, 3, True, True]] * 2,
    "enum": [True, True],
    "super": [True, "child+base", True, "child+base"],
    "initializer global": "set",
    "ndarray subclass 4": [True, True, True],
    "ndarray subclass 262144": [True, True, True],
    "classmethod": [True, 3],
    "class": True,
}
BROKEN = dict.fromkeys(EXPECTED, "error: BrokenProcessPool")


def outcomes(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", START_METHODS)
def test_script_main_classes_are_the_workers_own(tmp_path, method):
    """A script's __main__ classes go by name, as with PPE: isinstance, super(), Enum identity hold."""
    script = tmp_path / "classes.py"
    script.write_text(PROGRAM.replace("START_METHOD", method))
    out = outcomes(run_python([str(script)], tmp_path))
    assert out["ppe"] == EXPECTED
    assert out["sae"] == EXPECTED
    assert out["classes untouched"] is True


@pytest.mark.parametrize("method", START_METHODS)
def test_fileless_main_classes_arrive_whole_by_value(tmp_path, method):
    """With no file to re-import (python -c), a __main__ class arrives by value with its methods: one class.

    Under fork the worker has the parent's classes, as PPE's does; under forkserver and
    spawn PPE's workers cannot find them (nor the initializer) and its pool breaks, while
    ours use the copies (whose methods, as by-value functions, read their own globals).
    """
    out = outcomes(run_python(["-c", PROGRAM.replace("START_METHOD", method)], tmp_path, checkout_env()))
    # By value, a method reads its own copy of the globals (as a by-value function does):
    # not the worker's, where the initializer set it.
    setting = "set" if method == "fork" else "unset"
    assert out["sae"] == {**EXPECTED, "initializer global": setting}
    assert out["ppe"] == (EXPECTED if method == "fork" else BROKEN)
    assert out["classes untouched"] is True  # the parent's classes, not overwritten by the copies sent back


def test_stdin_main_classes_are_the_forked_workers_own(tmp_path):
    """A program fed on stdin (python -) runs under fork with the parent's classes, as with PPE.

    Under forkserver and spawn neither executor can start a worker: multiprocessing
    tries to re-run ``<stdin>`` as a file.
    """
    program = PROGRAM.replace("START_METHOD", "fork")
    result = run_python_stdin(program, tmp_path)
    out = outcomes(result)
    assert out["ppe"] == EXPECTED
    assert out["sae"] == EXPECTED
    assert out["classes untouched"] is True


def run_python_stdin(program: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run this interpreter on program fed on stdin (``python -``)."""
    return subprocess.run(
        [sys.executable, "-"],
        input=program,
        cwd=cwd,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


GUARDED = textwrap.dedent(
    """
    import json
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    import zerocopy_executor as zc

    if __name__ == "__main__":

        class Guarded:
            def __init__(self, value):
                self.value = value

        def make(value):
            return Guarded(value)

        ctx = multiprocessing.get_context(sys.argv[1])
        out = {}
        for name, cls in (("ppe", ProcessPoolExecutor), ("sae", zc.SharedArrayExecutor)):
            seen = out[name] = {}
            with cls(1, mp_context=ctx) as ex:
                try:
                    back = ex.submit(make, 5).result(60)
                    seen["made in the worker"] = [type(back) is Guarded, back.value]
                except Exception as exc:
                    seen["made in the worker"] = "error: " + type(exc).__name__
                try:
                    seen["argument"] = ex.submit(id, Guarded(1)).result(60) > 0
                except Exception as exc:
                    seen["argument"] = "error: " + type(exc).__name__
        print(json.dumps(out))
    """
)


@pytest.mark.parametrize("method", START_METHODS)
def test_class_under_the_main_guard(tmp_path, method):
    """A class defined under ``if __name__ == "__main__"`` is sent by name, as PPE sends it.

    Under fork the workers have it. Under forkserver and spawn they do not: as an
    argument it fails its task (PPE's pool breaks); used inside a function defined
    there too (sent by value), it arrives by value, and comes back as the parent's own.
    """
    script = tmp_path / "guarded.py"
    script.write_text(GUARDED)
    out = outcomes(run_python([str(script), method], tmp_path))
    if method == "fork":
        assert out["ppe"] == out["sae"] == {"made in the worker": [True, 5], "argument": True}
    else:
        assert out["ppe"] == {
            "made in the worker": "error: BrokenProcessPool",
            "argument": "error: BrokenProcessPool",
        }
        assert out["sae"] == {"made in the worker": [True, 5], "argument": "error: AttributeError"}
