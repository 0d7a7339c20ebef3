"""Reusable executors: which configurations share one (no worker is started here)."""

from __future__ import annotations

import multiprocessing

import numpy as np

from zerocopy_executor import _reusable


def test_same_value_compares_plain_values_and_containers():
    """Plain values and their containers compare by value; anything else by identity."""
    a = np.zeros(3)
    assert _reusable.same_value((1, "x", {"k": [2.0, None]}), (1, "x", {"k": [2.0, None]}))
    assert _reusable.same_value((a,), (a,))
    assert not _reusable.same_value((a,), (np.zeros(3),))  # no elementwise ==, no error
    assert not _reusable.same_value(1, 1.0)
    assert not _reusable.same_value({"k": 1}, {"k": 2})


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
