"""The public surface matches ProcessPoolExecutor's: every method, its signature, its docstring.

The two classes are compared as tests/integration/_differential.py describes.
"""

from __future__ import annotations

import concurrent.futures as cf
import inspect
import re
from collections.abc import Callable
from typing import Any

from tests import _tasks
from tests.integration._differential import (
    FORK,
    PPE,
    SAE,
    TIMEOUT,
)

# --- the public surface --------------------------------------------------------------


def public_methods(cls: type) -> dict[str, Any]:
    return {
        name: getattr(cls, name)
        for name in dir(cls)
        if not name.startswith("_") and callable(getattr(cls, name))
    }


def parameters(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """Name, kind and default of each parameter (annotations may differ: we have them, PPE not)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def extends(function: Callable[..., Any], parent: Callable[..., Any]) -> bool:
    """Whether function takes parent's parameters in order, plus only optional keyword-only ones."""
    theirs = parameters(parent)
    mine = parameters(function)
    extra = [p for p in mine if p not in theirs]
    return [p for p in mine if p in theirs] == theirs and all(
        kind is inspect.Parameter.KEYWORD_ONLY and default is not inspect.Parameter.empty
        for _, kind, default in extra
    )


def test_api_keeps_every_public_method_with_its_signature():
    """Every public PPE method (and the constructor) exists on ours and takes the same arguments."""
    ours = public_methods(SAE)
    for name, method in public_methods(PPE).items():
        assert name in ours, name
        assert extends(ours[name], method), name
    for name in ("__init__", "__enter__", "__exit__"):
        assert extends(getattr(SAE, name), getattr(PPE, name)), name


def test_api_map_accepts_the_same_parameters():
    """map() takes PPE's parameters; our only addition is 3.14's keyword-only buffersize."""
    assert extends(SAE.map, PPE.map)
    added = {name for name, _, _ in parameters(SAE.map)} - {name for name, _, _ in parameters(PPE.map)}
    assert added <= {"buffersize"}


def docstring_args(doc: str | None) -> list[str]:
    """The parameter names listed in a Google-style docstring's Args section."""
    text = inspect.cleandoc(doc or "")
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?)+)", text, re.MULTILINE)
    if match is None:
        return []
    return re.findall(r"^ {4}\**(\w+):", match.group(1), re.MULTILINE)


def test_api_docstrings_document_what_the_parent_documents():
    """Public methods keep PPE's docstring, or an override's documents every argument PPE's does."""
    for name, method in public_methods(PPE).items():
        ours = getattr(SAE, name)
        if name not in vars(SAE):
            assert ours.__doc__ == method.__doc__, name
            continue
        assert ours.__doc__, name
        missing = [arg for arg in docstring_args(method.__doc__) if arg not in docstring_args(ours.__doc__)]
        assert missing == [], f"{name}: {missing}"


def test_api_terminate_and_kill_workers_on_every_python():
    """terminate_workers and kill_workers are 3.14's own from 3.14, ours with its docstrings before."""
    for name in ("terminate_workers", "kill_workers"):
        if hasattr(PPE, name):
            assert name not in vars(SAE)
        else:
            assert name in vars(SAE)
            assert "the pool will be in a broken state" in inspect.getdoc(getattr(SAE, name))


def test_api_futures_keep_the_future_docstrings():
    """The futures we return are Futures whose methods keep Future's docstrings."""
    with SAE(1, mp_context=FORK) as executor:
        future = executor.submit(_tasks.add, 1, 2)
        assert future.result(timeout=TIMEOUT) == 3
    assert isinstance(future, cf.Future)
    for name, method in public_methods(cf.Future).items():
        assert getattr(type(future), name).__doc__ == method.__doc__, name
