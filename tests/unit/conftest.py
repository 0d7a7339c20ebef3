"""Fixtures for the unit tests (one process, nothing started)."""

from __future__ import annotations

import multiprocessing

import pytest

from zerocopy_executor import _config, _state, _worker


@pytest.fixture
def state() -> _state.SharingState:
    """An executor's sharing state, with no executor, ledger or worker behind it."""
    policy = _config.SharingPolicy()
    context = multiprocessing.get_context("spawn")  # nothing is started here
    return _state.SharingState(policy, context, _worker.WorkerSetup(0, policy, None, ()))
