"""ArrayRef: extents and the rejection of descriptors that point outside a segment."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import zerocopy_executor as zc
from zerocopy_executor import _arrayref
from zerocopy_executor._errors import SegmentError


def test_byte_extent_matches_numpy():
    """byte_extent agrees with the span NumPy computes for mixed-sign strides."""
    base = np.zeros((20, 30))
    view = base[::-3, 4:20:2]
    low, high = _arrayref.byte_extent(view.shape, view.strides, view.itemsize)
    first = view.__array_interface__["data"][0]
    lo, hi = np.lib.array_utils.byte_bounds(view) if hasattr(np.lib, "array_utils") else np.byte_bounds(view)
    assert (first + low, first + high) == (lo, hi)


@pytest.mark.parametrize(
    ("offset", "shape", "strides"),
    [
        (0, (2000,), (8,)),  # past the end
        (-8, (10,), (8,)),  # before the start
        (0, (10,), (-8,)),  # negative stride walking off the front
        (4096, (1,), (8,)),  # offset past the end
        (0, (10, 10), (8,)),  # strides and shape disagree
    ],
)
def test_forged_descriptor_is_rejected(offset, shape, strides):
    """A descriptor pointing outside its segment raises SegmentError, never crashes."""
    a = zc.zeros(512)
    buffer, _ = _arrayref.locate(a)
    ref = _arrayref.ArrayRef(
        buffer.name,
        offset,
        shape,
        strides,
        np.dtype(np.float64),
        True,
        False,
        False,
        segment_id=buffer.identity,
    )
    with pytest.raises(SegmentError, match=r"points outside|cannot rebuild"):
        _arrayref.rebuild(ref)


def test_rebuild_keeps_read_only_views_read_only():
    """A read-only view of a shared array rebuilds read-only."""
    a = zc.zeros(16)
    view = a[2:]
    view.flags.writeable = False
    buffer, offset = _arrayref.locate(view)
    rebuilt, _ = _arrayref.rebuild(_arrayref.describe(view, buffer, offset, handover=False, lent=False))
    assert not rebuilt.flags.writeable
    assert np.shares_memory(rebuilt, a)


@pytest.mark.parametrize(
    ("dtype", "as_text"),
    [
        (np.dtype("<f8"), True),
        (np.dtype(">i4"), True),
        (np.dtype("M8[ns]"), True),
        (np.dtype("<U3"), True),
        (np.dtype("?"), True),
        (np.dtype("V8"), True),
        (np.dtype((np.record, "V8")), False),  # '|V8' would come back as np.void
        (np.dtype([("a", "<i4"), ("b", ">f8")]), False),
        (np.dtype("<f8", metadata={"unit": "m"}), False),
    ],
)
def test_packed_descriptor_rebuilds_the_exact_dtype(dtype, as_text):
    """A dtype whose string rebuilds it travels as that string, any other as itself."""
    a = zc.zeros(96, dtype=np.uint8).view(dtype)
    buffer, offset = _arrayref.locate(a)
    packed = _arrayref.pack(_arrayref.describe(a, buffer, offset, handover=False, lent=False))
    assert isinstance(packed[4], str) == as_text
    rebuilt, _ = _arrayref.rebuild(_arrayref.ArrayRef(*pickle.loads(pickle.dumps(packed))))
    assert rebuilt.dtype == dtype
    assert rebuilt.dtype.type is dtype.type
    assert rebuilt.dtype.metadata == dtype.metadata
    assert np.shares_memory(rebuilt, a)


def test_forged_dtype_is_rejected():
    """A descriptor whose dtype string is not one raises SegmentError."""
    a = zc.zeros(8)
    buffer, _ = _arrayref.locate(a)
    ref = _arrayref.ArrayRef(
        buffer.name, 0, (8,), (8,), "not a dtype", True, False, False, segment_id=buffer.identity
    )
    with pytest.raises(SegmentError, match="bad dtype"):
        _arrayref.rebuild(ref)
