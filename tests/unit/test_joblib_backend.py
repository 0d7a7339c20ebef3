"""The joblib backend's decisions that need no worker: thread limits, configurations, arguments."""

from __future__ import annotations

import pytest

pytest.importorskip("joblib", reason="needs the [joblib] extra: pip install zerocopy_executor[joblib]")
pytest.importorskip("threadpoolctl", reason="needs the [joblib] extra: pip install zerocopy_executor[joblib]")

from zerocopy_executor import _joblib_workers
from zerocopy_executor import joblib as zc_joblib


def test_thread_limits_read_from_the_environment():
    """OpenMP takes OMP_NUM_THREADS; BLAS the smallest of the BLAS variables."""
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "3"}
    assert _joblib_workers.thread_limits(env) == {"openmp": 1, "blas": 2}


def test_thread_limits_leave_nesting_lists_alone():
    """An OpenMP nesting list ("4,2") sets no threadpoolctl limit: the variable alone rules."""
    assert _joblib_workers.thread_limits({"OMP_NUM_THREADS": "4,2"}) == {}


def test_worker_env_defaults_to_cpus_per_job(monkeypatch):
    """Each variable is cpu_count() // n_jobs (at least 1) unless the parent set it."""
    import joblib

    for name in zc_joblib.SharedArrayBackend.MAX_NUM_THREADS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    env = zc_joblib.SharedArrayBackend().worker_env(n_jobs=2)
    assert env["OMP_NUM_THREADS"] == str(max(joblib.cpu_count() // 2, 1))
    assert env["OPENBLAS_NUM_THREADS"] == "3"
    assert zc_joblib.SharedArrayBackend().worker_env(n_jobs=10**6)["MKL_NUM_THREADS"] == "1"


def test_worker_env_inner_max_num_threads_wins(monkeypatch):
    """inner_max_num_threads overrides the parent's variables too."""
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    env = zc_joblib.SharedArrayBackend(inner_max_num_threads=2).worker_env(n_jobs=2)
    assert {env[name] for name in zc_joblib.SharedArrayBackend.MAX_NUM_THREADS_VARS} == {"2"}


def test_effective_n_jobs():
    """Negative n_jobs count back from the CPUs; None means one; zero is refused."""
    import joblib

    backend = zc_joblib.SharedArrayBackend()
    assert backend.effective_n_jobs(-1) == joblib.cpu_count()
    assert backend.effective_n_jobs(None) == 1
    with pytest.raises(ValueError, match="n_jobs == 0"):
        backend.effective_n_jobs(0)


def test_constructor_checks_its_arguments():
    """A non-callable initializer and a negative idle timeout fail at construction."""
    with pytest.raises(TypeError, match="initializer must be a callable"):
        zc_joblib.SharedArrayBackend(initializer=3)
    with pytest.raises(ValueError, match="idle_worker_timeout must be >= 0"):
        zc_joblib.SharedArrayBackend(idle_worker_timeout=-1)


def test_configure_refuses_unknown_keywords():
    """configure() names an unknown keyword instead of ignoring it."""
    with pytest.raises(TypeError, match="idle_timeout"):
        zc_joblib.SharedArrayBackend().configure(n_jobs=2, idle_timeout=3)


@pytest.fixture
def shared_state(state):
    """An executor's sharing state whose segments are all released after the test."""
    yield state
    state.close()


def identity(x):
    return x


def test_joblib_internals_we_rely_on():
    """The joblib and loky internals the backend uses are still there, as in joblib 1.4 to 1.6."""
    from joblib._parallel_backends import inside_dask_worker
    from joblib.disk import memstr_to_bytes
    from joblib.externals.loky import process_executor
    from joblib.parallel import BatchedCalls, delayed

    batch = BatchedCalls([delayed(identity)(1)], (None, None))
    fn, args, kwargs = batch.items[0]
    assert (fn, args, kwargs) == (identity, (1,), {})
    assert callable(process_executor._python_exit)
    assert inside_dask_worker() is False
    assert memstr_to_bytes("1M") == 1 << 20


def test_call_arrays_share_each_large_array_once(shared_state):
    """Every reference to one large array in a call becomes the same read-only shared copy."""
    import numpy as np

    import zerocopy_executor as zc
    from zerocopy_executor._joblib_sharing import CallArrays

    a = np.arange(1 << 18, dtype=float)  # 2 MiB
    arrays = CallArrays(shared_state, max_nbytes=1 << 20, mmap_mode="r")
    first = arrays.share_in([(identity, (a,), {})])
    again = arrays.share_in([(identity, (), {"x": a})])
    copy = first[0][1][0]
    assert again[0][2]["x"] is copy
    assert zc.is_shared(copy)
    assert not copy.flags.writeable
    np.testing.assert_array_equal(copy, a)
    assert a.flags.writeable
    assert shared_state.stats.snapshot(0).arrays_copied == 1
    del first, again, copy
    arrays.close()


def test_call_arrays_rebuild_only_containers_holding_large_arrays(shared_state):
    """Lists without a large array stay the caller's objects; a list held twice is rebuilt once."""
    import numpy as np

    from zerocopy_executor._joblib_sharing import CallArrays

    a, small, plain = np.ones(1 << 18), np.ones(10), [1, 2]
    pair = [a, small]
    arrays = CallArrays(shared_state, max_nbytes=1 << 20, mmap_mode="r")
    (item,) = arrays.share_in([(identity, (pair, pair, plain, small), {"d": {"k": (a,)}})])
    _, args, kwargs = item
    assert args[0] is args[1]
    assert args[0] is not pair
    assert args[0][1] is small
    assert args[2] is plain
    assert args[3] is small
    assert kwargs["d"]["k"][0] is args[0][0]
    assert pair[0] is a  # the caller's list is left alone
    del item, args, kwargs
    arrays.close()


def test_call_arrays_leave_what_they_must_not_share(shared_state):
    """Arrays within max_nbytes, object arrays and arrays already shared go as they are."""
    import numpy as np

    import zerocopy_executor as zc
    from zerocopy_executor._joblib_sharing import CallArrays

    small = np.ones(1 << 10)
    objects = np.array([object()] * (1 << 18))
    shared = zc.zeros(1 << 18)
    arrays = CallArrays(shared_state, max_nbytes=1 << 15, mmap_mode="r")
    (item,) = arrays.share_in([(identity, (small, objects, shared), {})])
    assert all(new is old for new, old in zip(item[1], (small, objects, shared), strict=True))
    arrays.close()


@pytest.mark.parametrize(("max_nbytes", "mmap_mode"), [(1 << 20, "c"), (1 << 20, None), (None, "r")])
def test_call_arrays_share_nothing_when_joblib_says_so(shared_state, max_nbytes, mmap_mode):
    """mmap_mode "c" or None, or max_nbytes None: the call shares nothing (each task gets its own copy)."""
    import numpy as np

    from zerocopy_executor._joblib_sharing import CallArrays

    a = np.ones(1 << 18)
    arrays = CallArrays(shared_state, max_nbytes=max_nbytes, mmap_mode=mmap_mode)
    assert not arrays.active
    (item,) = arrays.share_in([(identity, (a,), {})])
    assert item[1][0] is a


def test_call_arrays_writable_copy_under_r_plus(shared_state):
    """mmap_mode "r+" makes the call's copy writable (shared by its tasks), not the caller's array."""
    import numpy as np

    from zerocopy_executor._joblib_sharing import CallArrays

    a = np.zeros(1 << 18)
    arrays = CallArrays(shared_state, max_nbytes=1 << 20, mmap_mode="r+")
    (item,) = arrays.share_in([(identity, (a,), {})])
    copy = item[1][0]
    assert copy is not a
    assert copy.flags.writeable
    del item, copy
    arrays.close()


def test_call_arrays_forget_an_array_once_it_dies(shared_state):
    """A copy is kept only while its array lives: a temporary made per task does not pile up."""
    import gc
    import weakref

    import numpy as np

    from zerocopy_executor._joblib_sharing import CallArrays

    arrays = CallArrays(shared_state, max_nbytes=1 << 20, mmap_mode="r")
    a = np.ones(1 << 18)
    (item,) = arrays.share_in([(identity, (a,), {})])
    copy = weakref.ref(item[1][0])
    del item, a
    gc.collect()
    assert copy() is None
