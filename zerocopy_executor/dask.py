"""dask on SharedArrayExecutor: hand dask a shared array without the copy ``from_array`` makes.

dask's local scheduler runs a graph on any ``concurrent.futures.Executor``::

    with SharedArrayExecutor(max_workers=4) as executor:
        total = (x * 2).sum().compute(scheduler=executor)

With ours, chunks and intermediate results go to workers and back through shared
memory. ``dask.array.from_array`` copies its input first (``x.copy()``, whatever
*asarray* or *inline_array* say; checked with dask 2026.8), then hashes it for a
name, so an array already in shared memory arrives as plain chunks that are copied
again, one per task. :func:`from_shared` builds the same graph from views of the
array itself: each chunk travels by reference, and writes made by tasks (a
``map_blocks`` that fills its block in place) land in the array.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from itertools import product
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:
    import dask.array as da
    import dask.array.core as dask_core
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    msg = "zerocopy_executor.dask needs dask's arrays; install them with: pip install zerocopy_executor[dask]"
    raise ImportError(msg) from exc

from . import is_shared

__all__ = ["from_shared"]

# dask is partly typed: these are untyped, and typed as Any here whether or not dask is
# installed where mypy runs.
_normalize_chunks: Callable[..., Any] = dask_core.normalize_chunks
_slices_from_chunks: Callable[..., Any] = dask_core.slices_from_chunks
_Array: Callable[..., Any] = da.Array


def from_shared(x: NDArray[Any], chunks: Any = "auto", *, name: str | None = None) -> Any:
    """Return a dask array whose chunks are views of the shared array *x*, not copies.

    Passed to a :class:`~zerocopy_executor.SharedArrayExecutor` (``compute(scheduler=
    executor)``), each chunk travels by reference: nothing is copied, and a task that
    writes into its chunk writes into *x*. Unlike ``dask.array.from_array``, *x* is
    neither copied nor hashed, so later changes to *x* are seen by later computations.

    Args:
        x: an array in shared memory (``zerocopy_executor.share``, ``empty``, ... or
            one a worker returned), or any view of one.
        chunks: as for ``dask.array.from_array`` ("auto", a block shape, or explicit
            chunk sizes per dimension).
        name: the graph key prefix; a new unique one by default (the contents may
            change, so they cannot name the array).

    Returns:
        A ``dask.array.Array``.

    Raises:
        TypeError: x is not a NumPy array in shared memory.
    """
    candidate: object = x  # checked at run time: callers are untyped
    if not isinstance(candidate, np.ndarray) or not (is_shared(candidate) or candidate.size == 0):
        msg = (
            f"x must be a NumPy array in shared memory, got {type(x).__name__}; "
            "make one with zerocopy_executor.share(x), or use dask.array.from_array"
        )
        raise TypeError(msg)
    normalized = _normalize_chunks(chunks, x.shape, dtype=x.dtype)
    key = name if name is not None else f"shared-{uuid.uuid4().hex}"
    keys = product([key], *(range(len(sizes)) for sizes in normalized))
    graph = {k: x[slices] for k, slices in zip(keys, _slices_from_chunks(normalized), strict=True)}
    meta = np.empty((0,) * x.ndim, dtype=x.dtype)  # not a view: it must not pin x's memory
    return _Array(graph, key, normalized, meta=meta, dtype=x.dtype)
