"""The constructor checks its arguments as ProcessPoolExecutor does; initializer, max_tasks_per_child.

The two classes are compared as tests/integration/_differential.py describes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import pytest

from tests import _tasks
from tests.integration._differential import (
    BIG,
    FORK,
    PPE,
    SAE,
    TIMEOUT,
    big,
    error_of,
    needs_311,
)

# --- constructor validation ----------------------------------------------------------


def same_construction_error(**kwargs: Any) -> tuple[Any, Any]:
    """Construct both classes with kwargs; return (PPE outcome, SAE outcome)."""

    def build(cls: type[ProcessPoolExecutor]) -> Callable[[], object]:
        def call() -> object:
            executor = cls(**kwargs)
            executor.shutdown()
            return executor

        return call

    return error_of(build(PPE)), error_of(build(SAE))


@pytest.mark.parametrize("max_workers", [0, -1])
def test_constructor_rejects_non_positive_max_workers(max_workers):
    """max_workers <= 0 raises the same ValueError with the same message."""
    ppe, sae = same_construction_error(max_workers=max_workers, mp_context=FORK)
    assert ppe == (ValueError, "max_workers must be greater than 0")
    assert sae == ppe


def test_constructor_rejects_an_uncallable_initializer():
    """A non-callable initializer raises the same TypeError with the same message."""
    ppe, sae = same_construction_error(max_workers=2, mp_context=FORK, initializer=42)
    assert ppe == (TypeError, "initializer must be a callable")
    assert sae == ppe


def test_constructor_checks_max_workers_before_initializer():
    """With both max_workers and initializer invalid, the max_workers error wins, as in PPE."""
    ppe, sae = same_construction_error(max_workers=0, mp_context=FORK, initializer=42)
    assert ppe == (ValueError, "max_workers must be greater than 0")
    assert sae == ppe


@pytest.mark.parametrize("mp_context", ["fork", object(), 3], ids=["str", "object", "int"])
def test_constructor_rejects_a_bad_mp_context(mp_context):
    """An mp_context that is not a multiprocessing context fails the same way."""
    ppe, sae = same_construction_error(max_workers=2, mp_context=mp_context)
    assert ppe is not None
    assert sae == ppe


@needs_311
def test_constructor_rejects_max_tasks_per_child_with_fork():
    """max_tasks_per_child with a fork context raises the same ValueError."""
    ppe, sae = same_construction_error(max_workers=2, mp_context=FORK, max_tasks_per_child=1)
    assert ppe is not None
    assert ppe[0] is ValueError
    assert "fork" in ppe[1]
    assert sae == ppe


@needs_311
@pytest.mark.parametrize("value", [0, -3, "2", 1.5])
def test_constructor_rejects_a_bad_max_tasks_per_child(value):
    """An invalid max_tasks_per_child raises the same error with the same message."""
    context = multiprocessing.get_context("spawn")
    ppe, sae = same_construction_error(max_workers=2, mp_context=context, max_tasks_per_child=value)
    assert ppe is not None
    assert sae == ppe


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="max_tasks_per_child exists from 3.11")
def test_constructor_max_tasks_per_child_before_311_is_a_type_error():
    """Before 3.11 max_tasks_per_child raises TypeError in both (our message is clearer, by design)."""
    context = multiprocessing.get_context("spawn")
    ppe, sae = same_construction_error(max_workers=2, mp_context=context, max_tasks_per_child=1)
    assert ppe is not None
    assert sae is not None
    assert ppe[0] is sae[0] is TypeError


@pytest.mark.parametrize("value", [-1, -(1 << 40)])
def test_constructor_rejects_negative_min_nbytes(value):
    """A negative min_nbytes raises ValueError naming min_nbytes and the value (ours only)."""
    with pytest.raises(ValueError, match="min_nbytes") as info:
        SAE(2, mp_context=FORK, min_nbytes=value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [1.5, "1024", None, True, [1]])
def test_constructor_rejects_non_int_min_nbytes(value):
    """A min_nbytes that is not an int raises TypeError naming min_nbytes (ours only)."""
    with pytest.raises(TypeError, match="min_nbytes"):
        SAE(2, mp_context=FORK, min_nbytes=value)


def test_constructor_accepts_zero_min_nbytes():
    """min_nbytes=0 is valid (every non-empty plain array is shared)."""
    with SAE(2, mp_context=FORK, min_nbytes=0) as executor:
        assert executor.submit(_tasks.total, np.ones(3)).result(timeout=TIMEOUT) == 3.0


# --- initializer and max_tasks_per_child ---------------------------------------------


def test_initializer_sets_globals_read_by_tasks(executor_cls, mp_context):
    """A global set by the initializer is what submitted and mapped tasks read."""
    with executor_cls(
        2, mp_context=mp_context, initializer=_tasks.set_global, initargs=("from initializer",)
    ) as executor:
        assert executor.submit(_tasks.get_global).result(timeout=TIMEOUT) == "from initializer"
        assert list(executor.map(_tasks.get_global, range(4), timeout=TIMEOUT)) == ["from initializer"] * 4


def initializer_failure_outcome(cls: type[ProcessPoolExecutor], context: Any) -> tuple[Any, ...]:
    executor = cls(2, mp_context=context, initializer=_tasks.raise_value_error, initargs=("init failed",))
    errors: list[Any] = []
    try:
        for i in range(3):
            # The pool may already be broken by the time of a later submit (under fork
            # the initializer fails at once): then submit itself raises.
            try:
                future = executor.submit(_tasks.add, i, i)
            except BrokenProcessPool as exc:
                errors.append(type(exc))
            else:
                errors.append(type(future.exception(timeout=TIMEOUT)))
        late = error_of(lambda: executor.submit(_tasks.add, 1, 1))
    finally:
        executor.shutdown(wait=True)
    return tuple(errors), late


def test_initializer_failure_breaks_the_pool(mp_context):
    """A raising initializer fails pending tasks and new submits with BrokenProcessPool."""
    for cls in (PPE, SAE):
        errors, late = initializer_failure_outcome(cls, mp_context)
        assert errors == (BrokenProcessPool,) * 3, cls
        assert late is not None
        assert late[0] is BrokenProcessPool, cls


@needs_311
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_max_tasks_per_child_replaces_workers(executor_cls, method):
    """With max_tasks_per_child=1 every task runs in a fresh worker (distinct pids)."""
    context = multiprocessing.get_context(method)
    with executor_cls(1, mp_context=context, max_tasks_per_child=1) as executor:
        pids = [executor.submit(_tasks.pid).result(timeout=TIMEOUT) for _ in range(3)]
        assert executor.submit(_tasks.total, big(1)).result(timeout=TIMEOUT) == float(BIG)
    assert len(set(pids)) == 3
    assert os.getpid() not in pids
