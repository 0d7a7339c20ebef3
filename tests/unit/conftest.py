"""Fixtures for the unit tests (one process, nothing started)."""

from __future__ import annotations

import pytest

from zerocopy_executor import _config, _namespace, _state, _worker


@pytest.fixture
def state() -> _state.SharingState:
    """An executor's sharing state, with no executor or worker behind it."""
    policy = _config.SharingPolicy()
    return _state.SharingState(policy, _worker.WorkerSetup(0, policy, None, (), _namespace.new_tag()))
