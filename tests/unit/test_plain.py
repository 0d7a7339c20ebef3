"""Plain values: what needs no encoding, what cannot change in place, and safe equality."""

from __future__ import annotations

import math
import operator
from functools import partial

import numpy as np
import pytest

from zerocopy_executor import _codec, _plain


def test_same_value_compares_plain_values_and_containers():
    """Plain values and their containers compare by value; anything else by identity."""
    a = np.zeros(3)
    assert _plain.same_value((1, "x", {"k": [2.0, None]}), (1, "x", {"k": [2.0, None]}))
    assert _plain.same_value((a,), (a,))
    assert not _plain.same_value((a,), (np.zeros(3),))  # no elementwise ==, no error
    assert not _plain.same_value(1, 1.0)
    assert not _plain.same_value({"k": 1}, {"k": 2})


@pytest.mark.parametrize(
    "value",
    [1, 2.5, "s", b"b", None, True, (1, ("a", None)), frozenset({1, 2}), len, math.sqrt, math, int, print],
)
def test_immutable_values(value):
    """Plain values, functions, module builtins, modules and classes, and tuples of them cannot change."""
    assert _plain.is_immutable(value)


@pytest.mark.parametrize(
    "value",
    [[1], {"k": 1}, {1}, np.zeros(2), np.float64(1.0), (1, [2]), [].append, partial(len)],
)
def test_values_that_may_change_in_place(value):
    """Changing containers, arrays, subclasses of plain types and bound methods are not immutable."""
    assert not _plain.is_immutable(value)


def test_a_partial_over_immutable_values_is_reusable_and_over_a_list_is_not():
    """A partial's bytes are decoded once per worker only while its arguments cannot change."""
    assert _codec.is_reusable(partial(operator.add, 1))
    assert _codec.is_reusable(partial(map, partial(operator.add, 1)))  # a partial among the arguments
    assert not _codec.is_reusable(partial(operator.add, [1]))
    assert not _codec.is_reusable([].append)
