"""Zero-copy seen from outside the library: memory addresses and writes, not our counters.

A view of a shared array is the same memory in the worker (its writes reach the parent),
and a view the worker returns is the parent's memory again (same address, same
strides). Every view shape is checked in one test per start method, which reports each
view that fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks

TIMEOUT = 60
SHAPE = (96, 80)  # float64: 60 KiB, under the default min_nbytes: a copy would be pickled

VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "whole": lambda a: a,
    "transpose": lambda a: a.T,
    "rows": lambda a: a[5:20],
    "columns": lambda a: a[:, 7:30],
    "one-row": lambda a: a[4],
    "one-column": lambda a: a[:, 3],
    "steps": lambda a: a[::3, ::5],
    "negative-steps": lambda a: a[::-2, ::-3],
    "negative-transpose": lambda a: a[::-1].T,
    "3-d-permuted": lambda a: a.reshape(8, 12, 80).transpose(2, 0, 1)[::2, ::-1, 1:],
    "0-d": lambda a: a[3, 4, ...],
    "empty-rows": lambda a: a[:0],
    "empty-columns": lambda a: a[:, 10:10],
}


def address(a: np.ndarray) -> int:
    data: int = a.__array_interface__["data"][0]
    return data


def layout(a: np.ndarray) -> tuple[Any, ...]:
    """Where a view's memory is: address, shape, strides, dtype."""
    return address(a), a.shape, a.strides, a.dtype


@pytest.fixture
def executor(mp_context):
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as ex:
        yield ex


def test_worker_writes_to_every_view_reach_the_parent(executor):
    """A worker writing into any view of a shared array writes exactly those elements of the parent's."""
    wrong = []
    for name, make_view in VIEWS.items():
        base = zc.empty(SHAPE)
        base[...] = -1.0
        expected = np.full(SHAPE, -1.0)
        target = make_view(expected)
        target[...] = np.arange(target.size, dtype=np.float64).reshape(target.shape)
        shape = executor.submit(_tasks.write_ramp, make_view(base)).result(TIMEOUT)
        if shape != target.shape or not np.array_equal(base, expected):
            wrong.append(name)
    assert wrong == [], f"the worker's writes did not reach the parent through: {wrong}"


def test_views_returned_by_the_worker_alias_the_parent_memory(executor):
    """A worker returning a view of a shared argument, or views it made of it, returns the parent's memory."""
    wrong = []
    for name, make_view in VIEWS.items():
        base = zc.empty(SHAPE)
        base[...] = np.arange(base.size).reshape(SHAPE)
        view = make_view(base)
        back = executor.submit(_tasks.views_back, view).result(TIMEOUT)
        expected = {"itself": view, "its transpose": view.T, "reversed": view[::-1] if view.ndim else view}
        for returned, (which, wanted) in zip(back, expected.items(), strict=True):
            if not np.array_equal(returned, wanted):
                wrong.append(f"{name} ({which}): values differ")
            elif wanted.size and layout(returned) != layout(wanted):
                wrong.append(f"{name} ({which}): {layout(returned)} is not the parent's {layout(wanted)}")
        if view.size:
            back[0][...] = 42.0  # writing the returned view writes the parent's array
            if not (view == 42.0).all() or not np.shares_memory(back[0], base):
                wrong.append(f"{name}: a write through the returned view missed the parent")
    assert wrong == [], wrong
