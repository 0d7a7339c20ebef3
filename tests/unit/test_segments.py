"""Segment creation, attachment, lookup and ownership, in one process."""

from __future__ import annotations

import gc
import itertools
import os
import re
import stat
import sys
import threading
import time

import numpy as np
import pytest

import zerocopy_executor as zc
from zerocopy_executor import _arrayref, _namespace, _pool, _segment_buffer, _segments
from zerocopy_executor._errors import SegmentError

TAG = _namespace.new_tag()

# The rules of named segments in /dev/shm (memfd ones: tests/unit/test_memfd.py).
pytestmark = pytest.mark.usefixtures("named_segments")


def shm_path(name: str) -> str:
    return f"/dev/shm/{name}"


def test_segment_name_is_short_random_and_attributable():
    """Names are at most 30 characters, carry the pid and the tag, and are never repeated."""
    names = {_namespace.new_name(TAG) for _ in range(1000)}
    assert len(names) == 1000
    for name in names:
        assert len(name) + 1 <= 30  # with the leading slash shm_open takes
        assert re.fullmatch(rf"zc_{os.getpid()}_{TAG}[0-9a-f]{{10}}", name)
        assert _namespace.creator_pid(name) == os.getpid()


def test_segment_created_with_mode_0600():
    """Segments are readable and writable by their owner only."""
    buffer = _segments.create(4096, tag=TAG)
    mode = stat.S_IMODE(os.stat(shm_path(buffer.name)).st_mode)
    assert mode == 0o600
    del buffer


def test_segment_created_exclusively(monkeypatch):
    """A name that already exists is never opened and taken over: creation fails, the file is untouched."""
    taken = f"zc_{os.getpid()}_{TAG}0123456789"
    with open(shm_path(taken), "wb") as f:
        f.write(b"someone else's")
    try:
        monkeypatch.setattr(_namespace, "new_name", lambda tag: taken)
        with pytest.raises(SegmentError, match="File exists"):
            _segments.create(4096, tag=TAG)
        with open(shm_path(taken), "rb") as f:
            assert f.read() == b"someone else's"
    finally:
        os.unlink(shm_path(taken))


def test_large_segments_one_after_another_differ_in_size():
    """Large segments get a few pages more, never the same number twice in a row; small ones get none.

    So that two arrays are seldom a multiple of 256 MiB apart (AMD's L1 way predictor,
    see _segment_buffer.staggered); a staggered segment still fits the pool's rule for its size.
    """
    nbytes = 8 << 20
    sizes = []
    for _ in range(_segment_buffer.STAGGER_STEPS + 1):
        buffer = _segments.create(nbytes, tag=TAG)
        sizes.append(len(buffer))
        assert os.stat(shm_path(buffer.name)).st_size == len(buffer)
        del buffer
    assert all(nbytes < size <= nbytes + _segment_buffer.STAGGER_STEPS * 4096 for size in sizes)
    assert all(size % 4096 == 0 and _pool.fits(size, nbytes) for size in sizes)
    assert all(earlier != later for earlier, later in itertools.pairwise(sizes))
    assert len(set(sizes)) == _segment_buffer.STAGGER_STEPS
    small = _segments.create(_segment_buffer.STAGGER_FROM - 4096, tag=TAG)
    assert len(small) == _segment_buffer.STAGGER_FROM - 4096


def test_segment_unlinked_when_last_view_dies():
    """The owner unlinks the segment once no view of it is left."""
    a = zc.empty(1000)
    buffer, _ = _arrayref.locate(a)
    name = buffer.name
    view = a[::2]
    del a, buffer
    gc.collect()
    _segments.drain_releases()
    assert os.path.exists(shm_path(name))
    del view
    gc.collect()
    _segments.drain_releases()
    assert not os.path.exists(shm_path(name))


def test_attach_reuses_the_existing_mapping():
    """Attaching a segment already mapped here returns the same mapping."""
    buffer = _segments.create(4096, tag=TAG)
    assert _segments.attach(buffer.name, buffer.identity) is buffer


def test_attach_refuses_foreign_names():
    """Only names this library generates can be attached."""
    with pytest.raises(SegmentError, match="not a zerocopy_executor segment name"):
        _segments.attach("psm_deadbeef", (0, 0, 0))


def test_attach_missing_segment_explains():
    """A segment unlinked before attach gives a SegmentError that says what to do."""
    with pytest.raises(SegmentError, match="was unlinked before this process attached it; keep"):
        _segments.attach(f"zc_{os.getpid()}_{TAG}0000000000", (0, 0, 0))


def test_unlink_is_idempotent():
    """Unlinking twice reports that the second found nothing."""
    buffer = _segments.create(4096, tag=TAG)
    assert _segments.unlink(buffer.name) is True
    assert _segments.unlink(buffer.name) is False
    _segments.hand_over([buffer])


def test_find_locates_any_view():
    """Any view of a shared array is found by address, with its offset."""
    a = zc.empty((100, 10))
    buffer, offset = _arrayref.locate(a[5:, 3])
    assert offset == 5 * 80 + 3 * 8
    assert _arrayref.locate(np.empty(10)) is None
    assert buffer is _arrayref.locate(a)[0]


def test_is_shared_views_and_copies():
    """is_shared is True for views of shared arrays, False for copies and plain arrays."""
    a = zc.zeros((10, 10))
    assert zc.is_shared(a)
    assert zc.is_shared(a.T[::-1])
    assert not zc.is_shared(a.copy())
    assert not zc.is_shared(np.zeros(3))
    assert not zc.is_shared([1, 2])


def test_shared_allocators():
    """empty/zeros/empty_like/zeros_like/share give plain ndarrays in shared memory."""
    src = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    made = [zc.empty(5, np.int16), zc.zeros((2, 3)), zc.empty_like(src), zc.zeros_like(src), zc.share(src)]
    for array in made:
        assert type(array) is np.ndarray
        assert zc.is_shared(array)
    assert (made[1] == 0).all()
    assert made[2].flags.f_contiguous
    np.testing.assert_array_equal(made[4], src)


def test_allocators_reject_object_dtype():
    """Object arrays cannot live in shared memory; the error says what to do instead."""
    with pytest.raises(TypeError, match="cannot share array with dtype object; pass object arrays"):
        zc.empty(3, dtype=object)


def test_allocators_reject_bad_order_and_shape():
    """Bad order or negative dimensions are ValueErrors naming the value."""
    with pytest.raises(ValueError, match="order must be 'C' or 'F', got 'K'"):
        zc.empty(3, order="K")
    with pytest.raises(ValueError, match="negative dimensions"):
        zc.empty((-1, 2))


def test_releases_never_run_in_the_dropping_thread():
    """Dropping the last view runs no clean-up in this thread (a Ctrl-C there would be lost)."""
    from zerocopy_executor import _reaper

    ran_in = []
    a = zc.empty(1000)
    buffer, _ = _arrayref.locate(a)
    _reaper.on_death(a, lambda: ran_in.append(threading.current_thread().name))
    del a, buffer
    gc.collect()
    deadline = time.monotonic() + 5
    while not ran_in and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ran_in == ["zerocopy-reaper"]


class _Doomed:
    """An object that can die (and be weakly referenced)."""


def _fail_clean_up() -> None:
    raise OSError("clean-up failed on purpose")


def test_failed_clean_up_reported_to_the_default_unraisable_hook(monkeypatch, capsys):
    """A failing clean-up is reported on stderr, as a failing finalizer is, and reaping goes on."""
    from zerocopy_executor import _reaper

    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # the one Python starts with
    ran = []
    doomed, after = _Doomed(), _Doomed()
    _reaper.on_death(doomed, _fail_clean_up)
    _reaper.on_death(after, ran.append, "after")
    del doomed, after
    gc.collect()
    _reaper.drain()
    err = capsys.readouterr().err
    assert "Exception ignored in: <function _fail_clean_up" in err
    assert "OSError: clean-up failed on purpose" in err
    assert "UnraisableHookArgs" not in err
    assert ran == ["after"]


def test_failed_clean_up_reaches_a_custom_unraisable_hook(monkeypatch):
    """A hook installed in Python (pytest's, a user's) receives the failure with its attributes."""
    from zerocopy_executor import _reaper

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    doomed = _Doomed()
    _reaper.on_death(doomed, _fail_clean_up)
    del doomed
    gc.collect()
    _reaper.drain()
    assert len(seen) == 1
    assert isinstance(seen[0].exc_value, OSError)
    assert seen[0].object is _fail_clean_up
