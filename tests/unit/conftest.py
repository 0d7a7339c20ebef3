"""Fixtures for the unit tests (one process, nothing started)."""

from __future__ import annotations

import pytest

from zerocopy_executor import _config, _namespace, _sharing, _worker


@pytest.fixture
def state() -> _sharing.SharingState:
    """An executor's sharing state, with no executor or worker behind it."""
    policy = _config.SharingPolicy()
    return _sharing.SharingState(policy, _worker.WorkerSetup(0, policy, None, (), _namespace.new_tag()))
