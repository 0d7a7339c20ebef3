"""Every dtype family and memory layout round-trips exactly, on every path."""

from __future__ import annotations

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks

TIMEOUT = 60

DTYPES = {
    "bool": np.dtype(bool),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "float16": np.dtype(np.float16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "longdouble": np.dtype(np.longdouble),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
    "datetime64": np.dtype("datetime64[ns]"),
    "timedelta64": np.dtype("timedelta64[s]"),
    "byteswapped-int": np.dtype(">i4"),
    "byteswapped-float": np.dtype(">f8"),
    "bytes": np.dtype("S5"),
    "unicode": np.dtype("U3"),
    "structured": np.dtype([("id", "<i4"), ("pos", ">f8", (2,)), ("tag", "S3"), ("ok", "?")]),
}


def sample(dtype: np.dtype, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Real data of every kind: random bytes, with valid bools."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    raw = rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8)
    a = raw.view(dtype).reshape(shape)
    if dtype == np.dtype(bool):
        a = rng.integers(0, 2, n).astype(bool).reshape(shape)
    if dtype.kind == "U":
        a = rng.choice(np.array(["a", "bé", "çd€", ""], dtype=dtype), n).reshape(shape)
    return a


def layouts(dtype: np.dtype) -> dict[str, np.ndarray]:
    base = sample(dtype, (64, 48))
    return {
        "C": base,
        "F": np.asfortranarray(base),
        "strided": base[::2, ::3],
        "negative": base[::-1, ::-2],
        "zero-size": base[:0],
        "0-d": base[3, 4, ...],
    }


def shared_layouts(dtype: np.dtype) -> dict[str, np.ndarray]:
    """The same layouts, as views of zerocopy_executor.empty bases (not contiguous copies)."""
    c_base = zc.empty((64, 48), dtype)
    c_base[...] = sample(dtype, (64, 48))
    f_base = zc.empty((64, 48), dtype, order="F")
    f_base[...] = c_base
    return {
        "C": c_base,
        "F": f_base,
        "strided": c_base[::2, ::3],
        "negative": c_base[::-1, ::-2],
        "zero-size": c_base[:0],
        "0-d": c_base[3, 4, ...],
    }


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def layout(a: np.ndarray) -> tuple[object, ...]:
    """Where a view's memory is: address, shape, strides."""
    return a.__array_interface__["data"][0], a.shape, a.strides


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_dtype_and_layout_roundtrip(mp_context, dtype_name):
    """Copied there, copied back, and by reference there and back: bytes are identical."""
    dtype = DTYPES[dtype_name]
    arrays = layouts(dtype)
    names = list(arrays)
    plain = [arrays[n] for n in names]
    shared = list(shared_layouts(dtype).values())
    with zc.SharedArrayExecutor(1, mp_context=mp_context, min_nbytes=1) as ex:
        back_copied = ex.submit(_tasks.copies_of, plain).result(TIMEOUT)
        back_shared = ex.submit(_tasks.identity, shared).result(TIMEOUT)
        stats = ex.stats()
    for name, original, copied, by_ref, src in zip(
        names, plain, back_copied, back_shared, shared, strict=True
    ):
        assert same(copied, original), name
        assert same(by_ref, original), name
        if original.size:  # by reference both ways: the very memory, seen from outside
            assert layout(by_ref) == layout(src), name
            assert np.shares_memory(by_ref, src), name
    nonempty = sum(1 for a in plain if a.size)
    assert stats.arrays_copied == 2 * nonempty  # there and back (views of one array: a copy each)
    assert stats.arrays_by_reference == nonempty * 2  # shared there, and back


def test_pickled_path_roundtrip(mp_context):
    """Below min_nbytes every dtype takes the pickle path and still round-trips."""
    plain = [a for dtype in DTYPES.values() for a in layouts(dtype).values()]
    with zc.SharedArrayExecutor(1, mp_context=mp_context) as ex:
        back = ex.submit(_tasks.copies_of, plain).result(TIMEOUT)
        assert ex.stats().arrays_copied == 0
    for original, copy in zip(plain, back, strict=True):
        assert same(copy, original)
