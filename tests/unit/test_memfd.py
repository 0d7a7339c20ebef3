"""memfd segments: held from 1024 up, reached by /proc or handed over, refused when not the sender's."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from zerocopy_executor import _handover, _memfd, _namespace, _segments
from zerocopy_executor._errors import SegmentError

TAG = "0badcafe"

pytestmark = pytest.mark.skipif(not _memfd._CAN_MAKE, reason="this system makes no memfd")


@pytest.fixture(autouse=True)
def memfd_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_memfd.KIND_VARIABLE, "memfd")


def held_of(buffer: _segments.SegmentBuffer) -> int:
    held = buffer.ownership.held
    assert held is not None
    return held


def released() -> None:
    gc.collect()
    _segments.drain_releases()


def test_created_segment_is_a_memfd_held_from_1024_up_close_on_exec_and_not_in_dev_shm():
    """A new segment is an anonymous memfd; its one descriptor is numbered from 1024 up and not inherited."""
    buffer = _segments.create(1 << 20, tag=TAG)
    held = held_of(buffer)
    assert held >= _memfd.FIRST_HELD_FD
    assert fcntl.fcntl(held, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert os.readlink(f"/proc/self/fd/{held}").startswith(f"/memfd:{buffer.name}")
    assert not os.path.exists(f"/dev/shm/{buffer.name}")
    assert _segments.wire_name(buffer) == f"{buffer.name}@{os.getpid()}.{held}"


def test_descriptor_closed_when_the_last_view_dies():
    """The owner closes its held descriptor once nothing views the segment."""
    view = np.frombuffer(_segments.create(4096, tag=TAG), dtype=np.uint8)
    held = held_of(_segments.find(*_address_range(view))[0])  # type: ignore[index]
    del view
    released()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(held)


def _address_range(view: np.ndarray) -> tuple[int, int]:
    start = view.__array_interface__["data"][0]
    return start, start + view.nbytes


CHILD_ATTACHES = """
import sys
from zerocopy_executor import _segments
wire, identity = sys.argv[1], tuple(int(x) for x in sys.argv[2].split(","))
buffer = _segments.attach(wire, identity)
print(bytes(buffer[:3]).hex(), buffer.ownership.held, flush=True)
buffer[3] = 9
"""


def test_another_process_maps_it_by_proc_and_keeps_no_descriptor():
    """Another process opens the owner's descriptor by /proc, keeps none, and its writes reach the owner."""
    buffer = _segments.create(4096, tag=TAG)
    buffer[:3] = b"\x01\x02\x03"
    identity = ",".join(map(str, buffer.identity))
    out = subprocess.run(
        [sys.executable, "-c", CHILD_ATTACHES, _segments.wire_name(buffer), identity],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["010203", "None"]
    assert buffer[3] == 9


def test_a_location_whose_descriptor_now_names_another_memfd_is_refused():
    """A receiver refuses a holder's descriptor number that was closed and reused for another segment."""
    old = _segments.create(4096, tag=TAG)
    wire, identity = _segments.wire_name(old), old.identity
    held = held_of(old)
    del old
    released()
    other = _memfd.create("zc_other", 4096)  # often takes the freed number itself
    try:
        if other != held:
            os.dup2(other, held)  # the old number now names another memfd
        name = wire.partition("@")[0]
        assert _segments.mapped(name) is None
        with pytest.raises(SegmentError, match="not the one its sender made"):
            _segments.attach(wire, identity)
    finally:
        if other != held:
            os.close(held)
        _memfd.close_held(other)


def test_a_location_naming_a_file_is_refused(tmp_path):
    """A forged location naming an ordinary file (with its identity) is refused: only memfds are mapped."""
    path = tmp_path / "data"
    path.write_bytes(b"x" * 4096)
    fd = os.open(path, os.O_RDWR)
    try:
        status = os.fstat(fd)
        identity = (status.st_uid, status.st_dev, status.st_ino)
        wire = f"zc_{os.getpid()}_{TAG}0123456789@{os.getpid()}.{fd}"
        with pytest.raises(SegmentError, match="not anonymous shared memory"):
            _segments.attach(wire, identity)
    finally:
        os.close(fd)


HANDED_OVER = """
import sys
from zerocopy_executor import _handover, _segments
_handover.set_parent_inbox(sys.argv[1])  # as a worker is told its parent's
buffer = _segments.create(4096, tag="0badcafe")
buffer[:2] = b"hi"
print(_segments.wire_name(buffer, handover=True), ",".join(map(str, buffer.identity)), flush=True)
_segments.hand_over([buffer])
"""


def test_handed_over_segment_outlives_its_maker_and_is_taken_once():
    """A segment posted by a process that then exits is received by name, held, and taken only once."""
    out = subprocess.run(
        [sys.executable, "-c", HANDED_OVER, _handover.inbox_address()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    wire, identity_text = out.stdout.split()
    identity = tuple(int(x) for x in identity_text.split(","))
    assert wire.endswith("@h")
    buffer = _segments.attach(wire, identity)  # its maker has exited
    _segments.take_ownership(buffer)
    assert bytes(buffer[:2]) == b"hi"
    assert held_of(buffer) >= _memfd.FIRST_HELD_FD
    with pytest.raises(OSError, match="never posted"):
        _handover.take(wire.partition("@")[0])
    del buffer
    released()


def test_a_descriptor_posted_twice_under_one_name_is_refused():
    """Two descriptors posted for one name (one of them planted): neither is taken, both are closed."""
    first, second = _memfd.create("zc_a", 4096), _memfd.create("zc_b", 4096)
    try:
        _handover.post({"zc_1_0badcafe0123456789": first})
        _handover.post({"zc_1_0badcafe0123456789": second})
        with pytest.raises(OSError, match="never posted"):
            _handover.take("zc_1_0badcafe0123456789")
    finally:
        _memfd.close_held(first)
        _memfd.close_held(second)


def test_forked_child_closes_the_descriptors_its_parent_holds():
    """A forked child holds none of its parent's segments: they die with the parent's views."""
    buffer = _segments.create(4096, tag=TAG)
    held = held_of(buffer)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.fstat(held)
            os.write(write, b"open")
        except OSError:
            os.write(write, b"closed")
        os._exit(0)
    os.close(write)
    assert os.read(read, 16) == b"closed"
    os.close(read)
    os.waitpid(pid, 0)
    del buffer


FEW_DESCRIPTORS = """
import resource, os
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
from zerocopy_executor import _segments
buffer = _segments.create(4096, tag="0badcafe")
print(buffer.ownership.held, os.path.exists("/dev/shm/" + buffer.name), flush=True)
"""


def test_process_that_cannot_hold_from_1024_up_makes_named_segments():
    """Under a hard limit of 1024 descriptors, segments fall back to named ones (which hold none)."""
    out = subprocess.run(
        [sys.executable, "-c", FEW_DESCRIPTORS], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "True"]


def test_soft_limit_is_raised_toward_the_hard_one_for_held_descriptors():
    """A soft limit of 1024 under a higher hard one is raised, so segments are held from 1024 up."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard limit ({hard}) leaves no room")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        buffer = _segments.create(4096, tag=TAG)
        assert held_of(buffer) >= _memfd.FIRST_HELD_FD
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 4096
        del buffer
    finally:
        released()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_kind_variable_rejects_an_unknown_kind(monkeypatch):
    """A misspelt kind is a clear error, not a silent default."""
    monkeypatch.setenv(_memfd.KIND_VARIABLE, "memfs")
    with pytest.raises(ValueError, match="must be 'memfd', 'named' or unset, got 'memfs'"):
        _memfd.chosen()


SHORT_OF_DESCRIPTORS = """
import os, resource
import numpy as np
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
from zerocopy_executor import _arrays, _handover, _identity, _segments, _encoding
from zerocopy_executor._config import SharingPolicy
name = "zc_1_0badcafe0123456789"
fd = os.memfd_create(name)
os.ftruncate(fd, 1 << 20)
identity = _identity.of(os.fstat(fd))
_handover.post({name: fd})
os.close(fd)
buffer = _segments.attach(name + "@h", identity)
array = np.frombuffer(buffer, dtype=np.float64)
session = _encoding.EncodeSession(SharingPolicy(), _arrays.PROCESS_SEGMENTS, handover=False)
ref = session.place(array)
held = buffer.ownership.held
print(buffer.reachable, buffer.recyclable, held, ref.name.startswith(name), sorted(session.tally))
"""


def test_handover_to_a_process_short_of_descriptors_is_mapped_and_copied_when_sent_again():
    """A process unable to hold a descriptor from 1024 up maps a memfd handed over; sent on, it is copied."""
    out = subprocess.run(
        [sys.executable, "-c", SHORT_OF_DESCRIPTORS], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().split(maxsplit=4) == [
        "False",
        "False",
        "None",
        "False",
        "['arrays_copied', 'bytes_copied']",
    ]


AT_THE_MEMORY_LIMIT = """
import zerocopy_executor as zc
try:
    zc.empty((300 << 20) // 8)
except zc.SegmentError as error:
    print(error)
"""


def _memory_cgroup(tmp_name: str, limit: int) -> str | None:
    """A new memory cgroup (v1 or v2) limited to limit bytes, or None if this process cannot make one."""
    for root, limit_file in (
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
        ("/sys/fs/cgroup", "memory.max"),
    ):
        if not os.path.exists(f"{root}/{limit_file}") and not os.path.exists(f"{root}/cgroup.procs"):
            continue
        path = f"{root}/{tmp_name}"
        try:
            os.mkdir(path)
            with open(f"{path}/{limit_file}", "w") as limit_out:
                limit_out.write(str(limit))
        except OSError:
            with contextlib.suppress(OSError):
                os.rmdir(path)
            continue
        return path
    return None


def test_a_segment_past_the_memory_limit_is_a_clear_error_not_the_oom_killer():
    """In a container limited to 200 MiB, a 300 MiB segment is refused with SegmentError, not OOM-killed."""
    cgroup = _memory_cgroup(f"zerocopy-test-{os.getpid()}", 200 << 20)
    if cgroup is None:
        pytest.skip("cannot make a memory cgroup here (needs root and a writable cgroup mount)")
    try:
        enter = f'echo $$ > {cgroup}/cgroup.procs && exec "$0" "$@"'
        out = subprocess.run(
            ["/bin/sh", "-c", enter, sys.executable, "-c", AT_THE_MEMORY_LIMIT],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.rmdir(cgroup)
    assert out.returncode == 0, f"killed ({out.returncode}): {out.stderr}"
    assert "cannot create a segment of 314572800 bytes: the memory limit" in out.stdout, out.stdout


def test_posts_no_reply_claimed_are_closed_when_their_executor_closes():
    """A descriptor posted by a worker that died before its reply is closed once its executor is gone."""
    tag = _namespace.new_tag()
    name = f"zc_1_{tag}0123456789"
    fd = _memfd.create(name, 4096)
    try:
        _handover.post({name: fd})
    finally:
        _memfd.close_held(fd)
    _handover.discard_tagged(tag)
    with pytest.raises(OSError, match="never posted"):
        _handover.take(name)
