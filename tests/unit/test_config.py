"""SharingPolicy validation."""

from __future__ import annotations

import pytest

from zerocopy_executor._config import DEFAULT_MIN_NBYTES, SharingPolicy


def test_policy_default_threshold():
    """The default threshold is the measured crossover, 256 KiB."""
    assert SharingPolicy().min_nbytes == DEFAULT_MIN_NBYTES == 256 << 10


def test_policy_negative_min_nbytes_names_the_value():
    """A negative min_nbytes is a ValueError that states the rule and the value."""
    with pytest.raises(ValueError, match=r"^min_nbytes must be >= 0, got -5$"):
        SharingPolicy(-5)


@pytest.mark.parametrize("bad", [1.5, "1024", None, True])
def test_policy_non_integer_min_nbytes(bad):
    """A non-integer min_nbytes is a TypeError that names the value."""
    with pytest.raises(TypeError, match="min_nbytes must be an int"):
        SharingPolicy(bad)


def test_policy_accepts_numpy_integers():
    """NumPy integers are accepted and stored as int."""
    import numpy as np

    policy = SharingPolicy(np.int64(4096))
    assert policy.min_nbytes == 4096
    assert type(policy.min_nbytes) is int
