"""_main_classes: which __main__ classes go by name, and classes rebuilt by value."""

from __future__ import annotations

import sys
import types

import cloudpickle.cloudpickle as cp
import pytest

from zerocopy_executor import _codec, _decoding, _encoding, _main_classes, _picklers, _results_by_value
from zerocopy_executor._arrays import PROCESS_SEGMENTS
from zerocopy_executor._config import SharingPolicy


def fake_main(monkeypatch, **attributes) -> types.ModuleType:
    main = types.ModuleType("__main__")
    main.__spec__ = None
    for name, value in attributes.items():
        setattr(main, name, value)
    monkeypatch.setitem(sys.modules, "__main__", main)
    return main


@pytest.mark.parametrize(
    ("attributes", "imported"),
    [
        ({"__file__": __file__}, True),  # python script.py
        ({}, False),  # python -c, a notebook
        ({"__file__": "<stdin>"}, False),  # python -
        ({"__spec__": types.SimpleNamespace(name="tool")}, True),  # python -m tool
        (
            {"__spec__": types.SimpleNamespace(name="pkg.__main__"), "__file__": __file__},
            False,
        ),  # python -m pkg
    ],
)
def test_workers_import_main_as_multiprocessing_decides(monkeypatch, attributes, imported):
    """Workers re-import a script or a module run by name; not a package's __main__, stdin or -c."""
    fake_main(monkeypatch, **attributes)
    assert _main_classes.workers_import_main() is imported


def test_main_class_goes_by_name_alone_when_workers_import_main(monkeypatch):
    """With an importable __main__, a __main__ class is left to pickle, which sends its name."""
    main = fake_main(monkeypatch, __file__=__file__)
    cls = type("Shape", (), {"__module__": "__main__"})
    main.Shape = cls
    assert _main_classes.reduce_main_class(cls, None) is NotImplemented
    assert _main_classes.reduce_main_class(type("Other", (), {"__module__": "__main__"}), None) is None


def test_fileless_main_class_resolves_by_name_first(monkeypatch):
    """Sent with a copy, a __main__ class is the receiver's own if it has one, else the copy."""
    main = fake_main(monkeypatch)
    cls = type("Shape", (), {"__module__": "__main__", "sides": 3})
    main.Shape = cls
    resolve, (qualname, by_value) = _main_classes.reduce_main_class(cls, _picklers.dumps_class_by_value)
    assert resolve(qualname, by_value) is cls  # found by name
    del main.Shape
    assert (
        resolve(qualname, by_value).sides == 3
    )  # from the copy (in this process, cloudpickle's tracked original)


def test_class_sent_back_by_value_is_not_overwritten():
    """A class of this process's own, received back by value, keeps its own methods."""

    class Local:
        def method(self):
            return 1

    method = Local.__dict__["method"]
    reduced = _main_classes.reduce_class(Local)
    assert reduced[0] is _main_classes._rebuild_class
    session = _encoding.EncodeSession(SharingPolicy(), PROCESS_SEGMENTS, handover=True)
    rebuilt = _decoding.decode(_codec.encode_result(Local, session, by_value=True))
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
