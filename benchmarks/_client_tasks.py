"""What clients.py's workers run: module-level, so every client pickles it by reference."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def total(a: NDArray[Any]) -> float:
    return float(a.sum())


def ones(n: int) -> NDArray[Any]:
    return np.ones(n)


def identity(x: Any) -> Any:
    return x


def nrows(frame: Any) -> int:
    return len(frame)


def objective(x: NDArray[Any], data: NDArray[Any]) -> float:
    """A cheap objective whose arguments carry an array, as scipy's and emcee's *args* do."""
    return float((x[0] - data[:1000].mean()) ** 2 + (x[1] - 1.0) ** 2 + data[-1] * 0.0)


def log_prob(theta: NDArray[Any], data: NDArray[Any]) -> float:
    return -objective(theta, data)
