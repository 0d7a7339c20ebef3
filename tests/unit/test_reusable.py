"""Reusable executors: which configurations share one (no worker is started here)."""

from __future__ import annotations

import multiprocessing

import numpy as np

from zerocopy_executor import _reusable


def test_configurations_match_on_every_argument():
    """Equal arguments share an executor; a different one of any kind does not."""
    context = multiprocessing.get_context("spawn")
    a = np.zeros(3)
    config = _reusable.ExecutorConfig(2, context, print, ({"OMP_NUM_THREADS": "1"}, a))
    assert config.matches(_reusable.ExecutorConfig(2, context, print, ({"OMP_NUM_THREADS": "1"}, a)))
    assert not config.matches(_reusable.ExecutorConfig(2, context, print, ({"OMP_NUM_THREADS": "2"}, a)))
    assert not config.matches(_reusable.ExecutorConfig(3, context, print, ({"OMP_NUM_THREADS": "1"}, a)))
    assert not config.matches(_reusable.ExecutorConfig(2, context, repr, ({"OMP_NUM_THREADS": "1"}, a)))
    assert not config.matches(
        _reusable.ExecutorConfig(2, multiprocessing.get_context("fork"), print, ({"OMP_NUM_THREADS": "1"}, a))
    )
