"""Fault tests on segments: a small /dev/shm, a segment removed or replaced, forged descriptors.

Each scenario runs in a child script (tests/_fault_scripts/) through
tests/integration/_scenarios.py, which judges its exit status, its stderr, its report
and what its process tree left behind in /dev/shm and /proc. The forgeries at the end
are rebuilt in this process: refusing them must not crash it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _fault_scripts as fs
from tests.integration._scenarios import assert_nothing_left, assert_quiet, run_scenario
from zerocopy_executor import _arrayref

MiB = 1 << 20
NAME_RE = re.compile(r"zc_[0-9]+_[0-9a-f]{18}")

pytestmark = pytest.mark.segments  # run under both kinds of segment (see CONTRIBUTING.md)


# --- a small /dev/shm ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_shm_wrapper() -> tuple[str, ...]:
    """A command prefix that runs a program under a private 64 MiB /dev/shm (or skip)."""
    mount = "mount -t tmpfs -o size=64m tmpfs /dev/shm"
    wrapper = ("unshare", "-m", "sh", "-c", f'{mount} && exec "$0" "$@"')
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to make a private 64 MiB /dev/shm")
    probe = subprocess.run([*wrapper, "true"], capture_output=True, text=True, timeout=10, check=False)
    if probe.returncode != 0:
        pytest.skip(
            f"cannot mount a private /dev/shm (needs root or user namespaces): {probe.stderr.strip()}"
        )
    return wrapper


@pytest.mark.usefixtures("named_segments")  # named segments' rules
def test_full_dev_shm_falls_back_to_pickling_with_one_warning(
    tmp_path, reaper, start_method, small_shm_wrapper
):
    """Under a 64 MiB /dev/shm a 128 MiB argument and a 96 MiB result pickle, warn once each, never SIGBUS."""
    run = run_scenario(tmp_path, reaper, "scenario_small_shm", start_method, wrap=small_shm_wrapper)
    assert run.returncode != -signal.SIGBUS, run.explain()
    report = run.report
    assert report["correct"], run.explain()
    assert report["small_ok"], run.explain()
    full = [msg for cat, msg in report["warnings"] if cat == "SharedMemoryFullWarning"]
    assert len(full) == 1, report["warnings"]
    assert re.search(r"\b134217728 bytes\b", full[0]), full[0]
    assert re.search(r"/dev/shm has [0-9]+ bytes free", full[0]), full[0]
    # The 96 MiB result is encoded in the worker: its one warning goes to the worker's stderr.
    worker_warnings = re.findall(r"SharedMemoryFullWarning: (.*)", run.stderr)
    assert len(worker_warnings) == 1, run.explain()
    assert re.search(r"\b100663296 bytes\b", worker_warnings[0]), worker_warnings[0]
    assert re.search(r"/dev/shm has [0-9]+ bytes free", worker_warnings[0]), worker_warnings[0]
    assert report["bytes_pickled"] >= (128 + 96) * MiB, report
    assert report["arrays_copied"] >= 1, report
    assert report["empty_error"] is not None, "zerocopy_executor.empty(128 MiB) did not fail"
    assert "/dev/shm" in report["empty_error"], report["empty_error"]
    assert report["left"] == [], report
    assert_quiet(run)


@pytest.mark.usefixtures("named_segments")  # named segments' rules
def test_pool_of_warm_segments_holds_at_most_a_quarter_of_dev_shm(tmp_path, reaper, small_shm_wrapper):
    """Under a 64 MiB /dev/shm, 24 MiB of dropped results leave at most 16 MiB pooled, emptied at shutdown."""
    run = run_scenario(tmp_path, reaper, "scenario_pool_cap", "fork", wrap=small_shm_wrapper)
    report = run.report
    quarter = report["shm_total"] // 4
    assert report["correct"], run.explain()
    assert report["held"] > quarter, f"the results never needed more than the cap: {report}"
    assert 0 < report["pooled"] <= quarter, report
    assert report["left"] == [], report
    assert_quiet(run)
    assert_nothing_left(run, reaper)


# --- a segment removed behind the executor's back -------------------------------


@pytest.mark.usefixtures("named_segments")  # named segments' rules
def test_unlinked_argument_segment_fails_only_its_task(tmp_path, reaper, start_method):
    """A queued task whose shared argument lost its /dev/shm name fails (SegmentError); the pool works on."""
    run = run_scenario(tmp_path, reaper, "scenario_segment_unlinked", start_method)
    report = run.report
    assert report["error"] is not None, "the task over an unlinked segment succeeded"
    assert report["error"].startswith("SegmentError: "), report["error"]
    assert "unlinked" in report["error"], report["error"]
    assert report["outcomes"] == ["ok"] * 6, run.explain()
    assert report["left"] == [], run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def _made_again(tmp_path, reaper, start_method, direction, who):
    """Run scenario_segment_made_again; check what every case shares, return its report."""
    if who == "other_uid" and os.geteuid() != 0:
        pytest.skip("creates a file as another user (root)")
    run = run_scenario(tmp_path, reaper, "scenario_segment_made_again", start_method, direction, who)
    report = run.report
    assert report["released"], run.explain()
    # The other file is left alone (not unlinked, not adopted): it is someone else's.
    assert list(report["others"].values()) == [fs.NOBODY if who == "other_uid" else os.geteuid()], report
    assert report["outcomes"] == ["ok", "ok"], run.explain()
    assert report["left"] == [], run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)
    return report


@pytest.mark.usefixtures("named_segments")  # a name in /dev/shm made again
@pytest.mark.parametrize("who", ["other_uid", "same_uid"])
def test_segment_name_made_again_is_refused_not_mapped(tmp_path, reaper, start_method, who):
    """A handed-over result's name unlinked and made again (by anyone): SegmentError, never that file."""
    report = _made_again(tmp_path, reaper, start_method, "handed_over", who)
    assert report["error"].startswith("SegmentError: "), report["error"]
    assert "is not the one its sender made" in report["error"], report["error"]


@pytest.mark.usefixtures("named_segments")  # a name in /dev/shm made again
@pytest.mark.parametrize("who", ["other_uid", "same_uid"])
def test_kept_view_of_a_released_segment_comes_back_with_its_values(tmp_path, reaper, start_method, who):
    """A view a worker kept of a segment since released and made again comes back with its own values."""
    report = _made_again(tmp_path, reaper, start_method, "returned_view", who)
    assert report["error"] == "none: the result holds [1. 1.] (the other file holds 7.0)", report["error"]


def test_memmap_file_swapped_for_a_fifo_fails_its_task_without_hanging(tmp_path, reaper, start_method):
    """A memmap's file replaced by a FIFO before the worker maps it: SegmentError, no hang at shutdown."""
    run = run_scenario(
        tmp_path, reaper, "scenario_memmap_swapped_for_fifo", start_method, str(tmp_path), timeout=40
    )
    report = run.report
    assert report["error"].startswith("SegmentError: "), report["error"]
    assert "not a regular file" in report["error"], report["error"]
    assert report["outcomes"] == ["ok"] * 3, run.explain()
    assert report["shutdown_seconds"] < 10, run.explain()
    assert report["left"] == [], run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)


@pytest.mark.parametrize("how", ["unlinked", "forged", "unlinked-in-map"])
def test_result_rebuild_failure_fails_only_that_future(request, tmp_path, reaper, start_method, how):
    """A result the parent cannot rebuild fails its future (or map item): SegmentError; the pool works on."""
    if how != "forged":
        request.getfixturevalue("named_segments")  # the worker unlinks its result's name
    run = run_scenario(tmp_path, reaper, "scenario_result_rebuild_fails", start_method, how)
    report = run.report
    assert report["error"] is not None, "the unrebuildable result was delivered"
    assert report["error"].startswith("SegmentError: "), report["error"]
    assert report["outcomes"] == ["ok"] * (6 if how == "unlinked-in-map" else 5), run.explain()
    assert report["left"] == [], run.explain()
    assert_quiet(run)
    assert_nothing_left(run, reaper)


# --- security --------------------------------------------------------------------------


@pytest.mark.usefixtures("named_segments")  # named segments' rules
def test_segments_are_private_with_short_attributable_names(tmp_path, reaper, start_method):
    """Segments made in the parent, for copies and in workers are mode 0600, named zc_<pid>_<18 hex>."""
    run = run_scenario(tmp_path, reaper, "scenario_segment_security", start_method)
    modes = run.report["modes"]
    assert len(modes) >= 4, modes  # empty(), share(), a copied argument, a worker's result
    for name, mode in modes.items():
        assert NAME_RE.fullmatch(name), name
        assert len(name) <= 30, name
        assert stat.S_IMODE(mode) == 0o600, f"{name} has mode {oct(stat.S_IMODE(mode))}"
    assert run.report["left"] == []
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def test_forged_descriptor_in_arguments_fails_only_its_task(tmp_path, reaper, start_method):
    """Forged descriptors sent to a worker fail their tasks with SegmentError; the worker survives."""
    run = run_scenario(tmp_path, reaper, "scenario_forged_argument", start_method)
    errors = run.report["errors"]
    assert errors == dict.fromkeys(errors, "SegmentError"), errors
    assert run.report["fine"] == "ok", run.explain()
    assert run.report["left"] == []
    assert_quiet(run)
    assert_nothing_left(run, reaper)


def segment_of(array: np.ndarray) -> tuple[str, int]:
    """The (name, size) of the segment a shared array lies in."""
    found = _arrayref.locate(array)
    assert found is not None
    return found[0].name, len(found[0])


Forgery = Callable[[str, int], tuple[str, int, tuple[int, ...], tuple[int, ...]]]
FORGERIES: dict[str, Forgery] = {
    "past_end": lambda name, size: (name, 8, (size // 8,), (8,)),
    "offset_beyond": lambda name, size: (name, size, (1,), (8,)),
    "negative_offset": lambda name, size: (name, -8, (4,), (8,)),
    "negative_stride_before_start": lambda name, size: (name, 0, (4,), (-8,)),
    "huge_stride": lambda name, size: (name, 0, (2,), (1 << 40,)),
    "huge_shape": lambda name, size: (name, 0, (1 << 62,), (8,)),
    "overflowing_product": lambda name, size: (name, 0, (1 << 40, 1 << 40), (8, 8)),
    "negative_dimension": lambda name, size: (name, 0, (-5,), (8,)),
    "rank_mismatch": lambda name, size: (name, 0, (4, 4), (8,)),
    "not_our_prefix": lambda name, size: ("psm_0123456789ab", 0, (4,), (8,)),
    "path_escape": lambda name, size: ("../" + name, 0, (4,), (8,)),
    "missing_segment": lambda name, size: ("zc_1_000000000000000000", 0, (4,), (8,)),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_descriptor_is_rejected_not_crashed(forgery):
    """rebuild() refuses a descriptor outside its segment (or not ours) with SegmentError."""
    real = zc.zeros(1000)
    ref_name, offset, shape, strides = FORGERIES[forgery](*segment_of(real))
    ref = fs.forged_ref(ref_name, offset, shape, strides)
    with pytest.raises(zc.SegmentError) as caught:
        _arrayref.rebuild(ref)
    del real, caught  # the traceback holds the mapping


def test_honest_descriptor_rebuilds_the_same_memory():
    """Control for the forgeries: an in-bounds descriptor rebuilds a view of the live segment."""
    real = zc.zeros(1000)
    name, size = segment_of(real)
    array = _arrayref.rebuild(fs.forged_ref(name, 8, (size // 8 - 1,), (8,)))[0]
    array[0] = 42.0
    assert array.shape == (size // 8 - 1,)
    assert real[1] == 42.0
