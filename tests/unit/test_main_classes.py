"""_main_classes: classes rebuilt by value."""

from __future__ import annotations

import cloudpickle.cloudpickle as cp

from zerocopy_executor import _codec, _main_classes, _results_by_value
from zerocopy_executor._arrays import process_allocator
from zerocopy_executor._config import SharingPolicy


def test_class_sent_back_by_value_is_not_overwritten():
    """A class of this process's own, received back by value, keeps its own methods."""

    class Local:
        def method(self):
            return 1

    method = Local.__dict__["method"]
    reduced = _main_classes.reduce_class(Local)
    assert reduced[0] is _main_classes._rebuild_class
    session = _codec.EncodeSession(SharingPolicy(), process_allocator, handover=True)
    rebuilt = _codec.decode(_codec.encode_result(Local, session, by_value=True))
    assert rebuilt is Local
    assert Local.__dict__["method"] is method


def test_borrowed_cloudpickle_internals_are_there():
    """The cloudpickle internals we rely on exist with the shapes we expect (fails loudly if not)."""

    class Local:
        pass

    reduced = cp._class_reduce(Local)
    assert len(reduced) == 6
    assert reduced[5] is cp._class_setstate
    tracker_id = cp._get_or_create_tracker_id(Local)
    assert cp._DYNAMIC_CLASS_TRACKER_BY_ID[tracker_id] is Local
    assert callable(cp.Pickler._function_reduce)
    assert callable(cp._code_reduce)
    table = cp.Pickler._dispatch_table
    assert all(kind in table for kind in _results_by_value._REFUSED_BY_PICKLE)
