"""Fixtures the integration modules share: an executor per start method, the differential pools,
and the reaper that cleans up after a fault scenario."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import zerocopy_executor as zc
from tests.integration._differential import EXECUTORS, FORK, Gate
from tests.integration._scenarios import Reaper


@pytest.fixture
def executor(mp_context: multiprocessing.context.BaseContext) -> Iterator[zc.SharedArrayExecutor]:
    """A SharedArrayExecutor of two workers under the test's start method.

    Modules whose tests need one worker (one set of worker globals, one pool of
    segments) define their own ``executor``, which overrides this one.
    """
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as ex:
        yield ex


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path / "gate")
    yield g
    g.open()


@pytest.fixture(params=EXECUTORS, ids=["ppe", "sae"])
def executor_cls(request: pytest.FixtureRequest) -> type[ProcessPoolExecutor]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make_pool(executor_cls: type[ProcessPoolExecutor], gate: Gate) -> Iterator[Callable[..., Any]]:
    """Build executors of the class under test; open the gate and shut them all down after."""
    created: list[ProcessPoolExecutor] = []

    def make(max_workers: int = 2, mp_context: Any = FORK, **kwargs: Any) -> ProcessPoolExecutor:
        executor = executor_cls(max_workers, mp_context=mp_context, **kwargs)
        created.append(executor)
        return executor

    yield make
    gate.open()
    for executor in created:
        executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    """Whatever the test's scenario leaves behind is cleaned up after the test."""
    r = Reaper()
    yield r
    r.clean()
