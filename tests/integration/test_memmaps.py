"""Memory-mapped files travel by reference: the worker maps the same file, as with joblib."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks
from tests._checkout import run_checkout_script

TIMEOUT = 60
N = 1 << 18  # float64 elements: 2 MiB, above min_nbytes
ROOT = Path(__file__).resolve().parents[2]


def make_file(path: Path, n: int = N, offset: int = 0) -> np.memmap:
    mapped = np.memmap(path, dtype=np.float64, mode="w+", shape=(n,), offset=offset)
    mapped[:] = np.arange(n, dtype=np.float64)
    mapped.flush()
    return mapped


@pytest.mark.parametrize("mode", ["r", "r+", "w+"])
def test_memmap_of_a_file_travels_by_reference(executor, tmp_path, mode):
    """A file memmap in mode r, r+ or w+ is never copied; the worker gets a memmap of it."""
    path = tmp_path / "data.bin"
    written = make_file(path, offset=24)
    mapped = written if mode == "w+" else np.memmap(path, dtype=np.float64, mode=mode, shape=(N,), offset=24)
    kind = executor.submit(_tasks.array_kind, mapped).result(TIMEOUT)
    assert kind == ("memmap", mode != "r")
    assert executor.submit(_tasks.total, mapped[::-3]).result(TIMEOUT) == float(np.arange(N)[::-3].sum())
    stats = executor.stats()
    assert (stats.arrays_by_reference, stats.bytes_by_reference) == (2, mapped.nbytes + mapped[::-3].nbytes)
    assert stats.arrays_copied == stats.arrays_pickled == 0
    assert stats.live_segments == 0
    del written, mapped


@pytest.mark.parametrize(
    "view",
    [
        lambda m: m,
        lambda m: m[100:200],
        lambda m: m[::-7],
        lambda m: m.reshape(512, 512)[:, 3],
        lambda m: m.reshape(512, 512).T[5:9],
    ],
    ids=["whole", "slice", "negative-step", "column", "transpose"],
)
def test_worker_writes_through_a_writable_memmap_view_reach_the_file(executor, tmp_path, view):
    """A worker's writes to any view of an r+ memmap land in the file, seen by the parent."""
    path = tmp_path / "data.bin"
    make_file(path)
    mapped = np.memmap(path, dtype=np.float64, mode="r+", shape=(N,))
    target = view(mapped)
    expected = np.array(np.arange(N, dtype=np.float64))
    view(expected)[...] = -1.0
    executor.submit(_tasks.fill_slice, target, None, None, -1.0).result(TIMEOUT)
    np.testing.assert_array_equal(mapped, expected)
    np.testing.assert_array_equal(np.fromfile(path, dtype=np.float64), expected)
    del mapped, target


def test_read_only_memmap_cannot_be_written_by_the_worker(executor, tmp_path):
    """A memmap opened read-only arrives read-only: the worker's write fails, the file is untouched."""
    path = tmp_path / "data.bin"
    make_file(path)
    mapped = np.memmap(path, dtype=np.float64, mode="r", shape=(N,))
    error = executor.submit(_tasks.fill_slice, mapped, 0, 10, 5.0).exception(TIMEOUT)
    assert type(error) is ValueError
    assert "read-only" in str(error)
    assert np.fromfile(path, dtype=np.float64)[:10].tolist() == list(range(10))
    del mapped


def test_copy_on_write_memmap_keeps_copy_semantics(executor, tmp_path):
    """A copy-on-write ('c') memmap is copied like a plain array: the file never changes."""
    path = tmp_path / "data.bin"
    make_file(path)
    mapped = np.memmap(path, dtype=np.float64, mode="c", shape=(N,))
    assert executor.submit(_tasks.scribble, mapped).result(TIMEOUT) == 7.0 * N
    np.testing.assert_array_equal(np.fromfile(path, dtype=np.float64), np.arange(N, dtype=np.float64))
    np.testing.assert_array_equal(mapped, np.arange(N, dtype=np.float64))
    assert executor.stats().arrays_copied == 1
    del mapped


def test_returned_view_of_a_memmap_aliases_the_file(executor, tmp_path):
    """A worker returning a view of a memmap argument returns the file's memory, not a copy."""
    path = tmp_path / "data.bin"
    make_file(path)
    mapped = np.memmap(path, dtype=np.float64, mode="r+", shape=(N,))
    back = executor.submit(_tasks.first_half, mapped).result(TIMEOUT)
    assert isinstance(back, np.memmap)
    back[:5] = 42.0
    back.flush()
    assert np.fromfile(path, dtype=np.float64, count=5).tolist() == [42.0] * 5
    assert executor.stats().arrays_copied == 0
    del mapped, back


@pytest.mark.parametrize("mode", ["r", "r+"])
@pytest.mark.parametrize("damage", ["removed", "truncated", "replaced"])
def test_file_removed_truncated_or_replaced_fails_only_its_task(executor, tmp_path, damage, mode):
    """A file removed, truncated or replaced behind our back fails that task with a clear SegmentError."""
    path = tmp_path / "data.bin"
    make_file(path)
    mapped = np.memmap(path, dtype=np.float64, mode=mode, shape=(N,))
    if damage == "removed":
        path.unlink()
    elif damage == "truncated":
        os.truncate(path, 1024)
    else:  # another file takes its path, as an atomic save does
        make_file(tmp_path / "new.bin")
        os.replace(tmp_path / "new.bin", path)
    error = executor.submit(_tasks.total, mapped[N // 2 :]).exception(TIMEOUT)
    assert type(error) is zc.SegmentError
    assert repr(str(path)) in str(error)
    assert {"removed": "is gone", "truncated": "truncated", "replaced": "was replaced"}[damage] in str(error)
    if damage == "truncated":
        assert path.stat().st_size == 1024  # never grown back
    assert executor.submit(_tasks.add, 1, 2).result(TIMEOUT) == 3
    del mapped


LARGER_THAN_SHM = textwrap.dedent(
    """
    import sys, warnings
    import numpy as np
    import zerocopy_executor as zc
    from tests import _tasks

    if __name__ == "__main__":  # the default start method may re-import this script
        warnings.simplefilter("error")
        n = 8 << 20  # 64 MiB of float64, in a file: /dev/shm here holds 16 MiB
        mapped = np.memmap(sys.argv[1], dtype=np.float64, mode="w+", shape=(n,))
        mapped[:] = 1.0
        with zc.SharedArrayExecutor(2) as executor:
            assert executor.submit(_tasks.total, mapped).result(60) == float(n)
            assert executor.stats().arrays_copied == 0
        print("ok")
    """
)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="mounts a small /dev/shm (root)")
def test_memmap_larger_than_dev_shm_works(tmp_path):
    """A memmap of a file larger than /dev/shm works: nothing of it goes into shared memory."""
    unshare = shutil.which("unshare")
    assert unshare is not None
    script = tmp_path / "big.py"
    script.write_text(LARGER_THAN_SHM)
    command = 'mount -t tmpfs -o size=16m,mode=1777 tmpfs /dev/shm && exec "$0" "$@"'
    run = run_checkout_script(script, str(tmp_path / "big.bin"), prefix=(unshare, "-m", "sh", "-c", command))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
    assert run.stderr == ""
