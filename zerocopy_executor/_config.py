"""SharingPolicy: which arrays travel through shared memory, validated once."""

from __future__ import annotations

import operator
from dataclasses import dataclass

__all__ = ["DEFAULT_MIN_NBYTES", "SharingPolicy"]

# Below this size pickling through the pipe is as fast as creating, filling and
# mapping a segment; measured by benchmarks/crossover.py (docs/performance.md, "Choosing min_nbytes").
DEFAULT_MIN_NBYTES = 256 << 10


@dataclass(frozen=True)
class SharingPolicy:
    """How an executor decides between sharing and pickling an array.

    Attributes:
        min_nbytes: plain arrays of at least this many bytes are copied into shared
            memory; smaller ones are pickled. Arrays already in shared memory always
            travel by reference, whatever their size.
    """

    min_nbytes: int = DEFAULT_MIN_NBYTES

    def __post_init__(self) -> None:
        if isinstance(self.min_nbytes, bool):
            msg = f"min_nbytes must be an int, got {self.min_nbytes!r}"
            raise TypeError(msg)
        try:
            value = operator.index(self.min_nbytes)
        except TypeError:
            msg = f"min_nbytes must be an int, got {self.min_nbytes!r}; pass a byte count such as 1 << 20"
            raise TypeError(msg) from None
        if value < 0:
            msg = f"min_nbytes must be >= 0, got {value!r}"
            raise ValueError(msg)
        object.__setattr__(self, "min_nbytes", value)
