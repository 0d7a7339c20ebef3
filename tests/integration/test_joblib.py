"""The joblib backend "zerocopy": joblib's and scikit-learn's parallel calls on SharedArrayExecutor."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks

joblib = pytest.importorskip(
    "joblib", reason="needs the [joblib] extra: pip install zerocopy_executor[joblib]"
)
pytest.importorskip("threadpoolctl", reason="needs the [joblib] extra: pip install zerocopy_executor[joblib]")

from joblib import Parallel, delayed, parallel_config  # noqa: E402

import zerocopy_executor.joblib as zc_joblib  # noqa: E402 - after the skips

ROOT = Path(__file__).resolve().parents[2]
BIG = 1 << 18  # float64 elements: 2 MiB, above the default min_nbytes


@pytest.fixture(autouse=True)
def registered():
    """Register the backend; shut its reused executors down before the leak guard looks."""
    zc_joblib.register()
    yield
    zc_joblib.shutdown()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_results_in_order(mp_context):
    """Parallel returns each call's result, in order, under every start method."""
    arrays = [np.full(BIG, float(i)) for i in range(4)]
    with parallel_config(backend="zerocopy", n_jobs=2, mp_context=mp_context):
        out = Parallel()(delayed(_tasks.total_in_own_dtype)(a) for a in arrays)
    assert out == [float(i) * BIG for i in range(4)]


def test_results_pickle_refuses_come_back_as_with_loky(mp_context):
    """Closures and local class instances come back from the workers, as loky returns them."""
    with parallel_config(backend="zerocopy", n_jobs=2, mp_context=mp_context):
        closures = Parallel()(delayed(_tasks.return_closure)(i) for i in range(3))
        locals_ = Parallel()(delayed(_tasks.return_local_instance)(i) for i in range(3))
    assert [f(10) for f in closures] == [10, 11, 12]
    assert [(x.value, x.greet()) for x in locals_] == [(i, "hello from a local class") for i in range(3)]


def test_large_arrays_travel_through_shared_memory():
    """Large arguments and results are copied once into shared memory, not pickled."""
    backend = zc_joblib.SharedArrayBackend()
    arrays = [np.full(BIG, float(i)) for i in range(4)]
    with parallel_config(backend=backend, n_jobs=2), Parallel() as parallel:
        out = parallel(delayed(_tasks.plus_one)(a) for a in arrays)
        stats = backend.executor.stats()
    for i, result in enumerate(out):
        np.testing.assert_array_equal(result, arrays[i] + 1)
    # Each argument is copied once, into the call's shared copy, which goes to its task
    # by reference. Each result is copied too, or, once a worker has asked the executor
    # to lend it a segment for results (the C allocator), born in shared memory and sent
    # by reference: which one depends on when joblib dispatches.
    assert stats.arrays_copied >= 4
    assert stats.arrays_by_reference >= 4
    assert stats.arrays_copied + stats.arrays_by_reference == 12
    assert stats.arrays_pickled == 0


def test_shared_arguments_travel_by_reference():
    """A shared array reaches the workers by reference: no copy, writes visible."""
    backend = zc_joblib.SharedArrayBackend()
    marks = zc.zeros(6)
    with parallel_config(backend=backend, n_jobs=2), Parallel() as parallel:
        parallel(delayed(_tasks.mark_slowly)(marks, i, 0) for i in range(6))
        stats = backend.executor.stats()
    assert marks.tolist() == [1.0] * 6
    assert (stats.arrays_copied, stats.arrays_by_reference) == (0, 6)


def test_executor_reused_across_calls():
    """Successive Parallel calls run on the same warm workers."""
    with parallel_config(backend="zerocopy", n_jobs=2):
        first = set(Parallel()(delayed(_tasks.pid)(i) for i in range(8)))
        again = set(Parallel()(delayed(_tasks.pid)(i) for i in range(8)))
    assert os.getpid() not in first
    assert len(first | again) <= 2


def test_idle_executor_shuts_down():
    """Once idle for idle_worker_timeout seconds, the executor's workers exit."""
    with parallel_config(backend="zerocopy", n_jobs=2, idle_worker_timeout=0.3):
        workers = set(Parallel()(delayed(_tasks.pid)(i) for i in range(4)))
    assert workers
    assert os.getpid() not in workers
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in workers)


def test_worker_thread_pools_limited_as_loky():
    """Each worker gets cpu_count() // n_jobs BLAS and OpenMP threads (at least 1)."""
    expected = max(joblib.cpu_count() // 2, 1)
    with parallel_config(backend="zerocopy", n_jobs=2):
        settings = Parallel()(delayed(_tasks.thread_settings)(i) for i in range(2))
    for s in settings:
        assert set(s["env"].values()) == {str(expected)}
        assert s["num_threads"].get("blas", expected) == expected


def test_inner_max_num_threads():
    """parallel_config's inner_max_num_threads sets the workers' thread pools."""
    with parallel_config(backend="zerocopy", n_jobs=2, inner_max_num_threads=2):
        settings = Parallel()(delayed(_tasks.thread_settings)(i) for i in range(2))
    for s in settings:
        assert set(s["env"].values()) == {"2"}
        assert s["num_threads"].get("blas", 2) == 2


def test_user_initializer_runs_in_workers():
    """A user initializer runs in each worker, after the thread limits."""
    with parallel_config(backend="zerocopy", n_jobs=2, initializer=_tasks.set_global, initargs=("ready",)):
        out = Parallel()(delayed(_tasks.get_global)(i) for i in range(4))
    assert out == ["ready"] * 4


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_return_as_generator(return_as):
    """return_as="generator" yields results as they come (in order unless unordered)."""
    with parallel_config(backend="zerocopy", n_jobs=2):
        results = Parallel(return_as=return_as)(delayed(_tasks.sleep_then)(0.01, i) for i in range(10))
        assert not isinstance(results, list)
        out = list(results)
    assert out == list(range(10)) if return_as == "generator" else sorted(out) == list(range(10))


def test_first_error_aborts_the_rest():
    """The first error is raised and the batches not yet started never run."""
    marks = zc.zeros(40)
    calls = [delayed(_tasks.fail_if)(0, 0)]
    calls += [delayed(_tasks.mark_slowly)(marks, i, 0.05) for i in range(1, 40)]
    with (
        parallel_config(backend="zerocopy", n_jobs=2),
        pytest.raises(ValueError, match="task 0 failed on purpose"),
    ):
        Parallel(batch_size=1)(calls)
    time.sleep(0.3)  # anything still running finishes
    assert marks.sum() < 10


def test_timeout_leaves_later_calls_unblocked():
    """A call past its timeout raises TimeoutError, and the next call does not wait for it."""
    with parallel_config(backend="zerocopy", n_jobs=2):
        with pytest.raises(multiprocessing.TimeoutError):  # joblib's, as with loky
            Parallel(timeout=0.5)(delayed(_tasks.sleep_then)(3, i) for i in range(2))
        start = time.monotonic()
        assert Parallel()(delayed(_tasks.pid)(i) for i in range(2))
        assert time.monotonic() - start < 2.5


def test_broken_pool_next_call_starts_afresh():
    """A worker killed mid-call raises; the next call gets a new, working executor."""
    from concurrent.futures.process import BrokenProcessPool

    with parallel_config(backend="zerocopy", n_jobs=2):
        with pytest.raises(BrokenProcessPool):
            Parallel()(delayed(_tasks.exit_with_status_1)(i) for i in range(2))
        assert Parallel()(delayed(_tasks.total_in_own_dtype)(np.ones(3)) for _ in range(3)) == [3.0] * 3


def test_n_jobs_one_runs_in_process():
    """n_jobs=1 falls back to joblib's sequential backend: no worker starts."""
    with parallel_config(backend="zerocopy", n_jobs=1):
        assert Parallel()(delayed(_tasks.pid)(i) for i in range(3)) == [os.getpid()] * 3


@pytest.mark.skipif(sys.version_info < (3, 11), reason="max_tasks_per_child exists from 3.11")
def test_max_tasks_per_child_without_a_start_method_spawns_as_the_executor_does():
    """max_tasks_per_child alone picks spawn, as SharedArrayExecutor does: workers are replaced."""
    with parallel_config(backend="zerocopy", n_jobs=2, max_tasks_per_child=1):
        pids = Parallel(batch_size=1)(delayed(_tasks.pid)(i) for i in range(6))
    assert len(pids) == 6
    assert os.getpid() not in pids
    assert len(set(pids)) > 2  # each worker exits after one task


def test_unknown_keyword_is_refused():
    """A misspelt backend keyword fails at once, naming it."""
    with pytest.raises(TypeError, match="idle_timeout"):
        zc_joblib.SharedArrayBackend(idle_timeout=3)


def test_cross_val_score_matches_sequential():
    """scikit-learn's n_jobs runs on the backend and gives the sequential scores."""
    pytest.importorskip("sklearn", reason="needs scikit-learn: pip install zerocopy_executor[integrations]")
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = make_classification(n_samples=400, n_features=20, random_state=0)
    model = LogisticRegression(max_iter=200)
    expected = cross_val_score(model, X, y, cv=4)
    with parallel_config(backend="zerocopy", n_jobs=2):
        scores = cross_val_score(model, X, y, cv=4)
    np.testing.assert_allclose(scores, expected)


@pytest.mark.skipif(
    multiprocessing.get_start_method() != "fork", reason="the default start method is not fork"
)
def test_script_without_main_guard_runs(tmp_path):
    """Under fork, the default before 3.14, a script needs no main guard (as with loky)."""
    script = tmp_path / "no_guard.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np
            from joblib import Parallel, delayed, parallel_config
            import zerocopy_executor.joblib

            zerocopy_executor.joblib.register()
            with parallel_config(backend="zerocopy", n_jobs=2):
                print([float(x) for x in Parallel()(delayed(np.sum)(np.ones(10)) for _ in range(4))])
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([10.0] * 4)


def test_interpreter_exit_shuts_the_executor_down():
    """A script that never calls shutdown() exits promptly, leaving no worker or segment."""
    script = textwrap.dedent(
        """
        import numpy as np
        from joblib import Parallel, delayed, parallel_config
        import zerocopy_executor.joblib

        zerocopy_executor.joblib.register()
        if __name__ == "__main__":
            with parallel_config(backend="zerocopy", n_jobs=2):
                out = Parallel()(delayed(np.sum)(np.ones(1 << 18)) for _ in range(4))
            print([float(x) for x in out])
        """
    )
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([float(1 << 18)] * 4)
    assert "Traceback" not in done.stderr
    assert "leaked" not in done.stderr
    assert time.monotonic() - start < 30


def test_nested_call_in_a_daemonic_worker_runs_sequentially(mp_context):
    """A call inside a multiprocessing worker (daemonic) runs in that worker with a warning, as loky's."""
    with mp_context.Pool(2) as pool:  # a multiprocessing.Pool's workers are daemonic
        out = pool.map_async(_tasks.nested_zerocopy_call, [3, 3]).get(timeout=60)
    for worker, pids, warnings in out:
        assert pids == [worker] * 3
        assert any("daemonic" in w for w in warnings), warnings


def test_nested_call_below_threads_runs_sequentially():
    """A call nested in a threading-backend task runs in that thread with a warning, as loky's."""
    out = Parallel(n_jobs=2, backend="threading")(delayed(_tasks.nested_zerocopy_call)(3) for _ in range(2))
    for worker, pids, warnings in out:
        assert pids == [worker] * 3
        assert any("nested below threads" in w for w in warnings), warnings


def run_call_in_child(mp_context) -> tuple[list[float], int | None]:
    """Run one call in a child process; return its results and exit code (None: still running)."""
    results = mp_context.Queue()
    child = mp_context.Process(
        target=_tasks.zerocopy_call_in_child, args=(mp_context.get_start_method(), results)
    )
    child.start()
    try:
        out = results.get(timeout=60)
        child.join(timeout=30)
        return out, child.exitcode
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        results.close()
        results.join_thread()


def test_child_process_exits_after_its_call(mp_context):
    """A child process that ran a call exits at once: its executor stops before multiprocessing joins it."""
    out, exitcode = run_call_in_child(mp_context)
    assert out == [float(i) * (1 << 18) for i in range(4)]
    assert exitcode == 0


def test_forked_child_gets_its_own_executor():
    """A child forked after the parent's call starts its own executor, not the parent's copy."""
    fork = multiprocessing.get_context("fork")
    with parallel_config(backend="zerocopy", n_jobs=2, mp_context=fork):
        assert Parallel()(delayed(_tasks.pid)(i) for i in range(4))
    out, exitcode = run_call_in_child(fork)
    assert out == [float(i) * (1 << 18) for i in range(4)]
    assert exitcode == 0


def test_nested_loky_workers_stop_with_ours(mp_context):
    """Workers that ran a nested loky call stop its workers when they exit, as loky's workers do."""
    with parallel_config(backend="zerocopy", n_jobs=2, mp_context=mp_context):
        out = Parallel()(delayed(_tasks.nested_loky_call)(2) for _ in range(2))
    assert all(len(pids) == 2 for pids in out)
    start = time.monotonic()
    zc_joblib.shutdown()  # else multiprocessing waits for loky's idle timeout (300 s) in each worker
    assert time.monotonic() - start < 30


def run_and_count(backend, executor, calls, **config):
    """Run one Parallel call on backend; return its results and what it added to the executor's stats."""
    before = executor.stats()
    with parallel_config(backend=backend, n_jobs=2, **config):
        out = Parallel()(calls)
    after = executor.stats()
    added = {k: getattr(after, k) - getattr(before, k) for k in ("arrays_copied", "arrays_by_reference")}
    return out, added, after.live_segments


@pytest.fixture
def backend_and_executor(mp_context):
    """A backend instance on mp_context, and the reused executor its calls run on."""
    backend = zc_joblib.SharedArrayBackend(mp_context=mp_context)
    with parallel_config(backend=backend, n_jobs=2), Parallel() as parallel:
        parallel(delayed(_tasks.pid)(i) for i in range(2))  # the workers start
        executor = backend.executor
    return backend, executor


def test_array_handed_to_many_tasks_is_shared_once_read_only(backend_and_executor):
    """One array given to 4 tasks of a call is copied once; each task reads that copy read-only, as loky's."""
    backend, executor = backend_and_executor
    a = np.arange(BIG, dtype=float)
    out, added, _ = run_and_count(backend, executor, [delayed(_tasks.seen_in_worker)(a) for _ in range(4)])
    assert out == [(True, False, float(a.sum()))] * 4
    assert added == {"arrays_copied": 1, "arrays_by_reference": 4}
    errors, _, _ = run_and_count(backend, executor, [delayed(_tasks.write_into)(a) for _ in range(4)])
    assert errors == ["assignment destination is read-only"] * 4  # loky's words: numpy's
    assert a.flags.writeable
    assert a[0] == 0.0


def test_call_copies_are_released_when_the_call_ends(backend_and_executor):
    """Each call's copies go back to the executor's pool when it ends: calls do not pile up segments."""
    backend, executor = backend_and_executor
    live = []
    for i in range(4):
        a = np.full(BIG, float(i))
        out, added, live_segments = run_and_count(
            backend, executor, [delayed(_tasks.total_in_own_dtype)(a) for _ in range(4)]
        )
        assert out == [float(i) * BIG] * 4
        assert added == {"arrays_copied": 1, "arrays_by_reference": 4}
        live.append(live_segments)
    assert live[-1] == live[1]  # the later calls reuse the first calls' segments


def test_result_aliasing_a_call_copy_outlives_the_call(backend_and_executor):
    """A task returning its shared argument returns it read-only (as loky's); later calls leave it intact."""
    backend, executor = backend_and_executor
    a = np.full(BIG, 1.0)
    out, _, _ = run_and_count(backend, executor, [delayed(_tasks.identity)(a) for _ in range(2)])
    for _ in range(3):  # more calls with arrays of the same size: the pool's segments are reused
        b = np.full(BIG, 7.0)
        run_and_count(backend, executor, [delayed(_tasks.total_in_own_dtype)(b) for _ in range(2)])
    for result in out:
        assert not result.flags.writeable
        np.testing.assert_array_equal(result, a)


def test_arrays_in_lists_are_shared_too(backend_and_executor):
    """An array in a list argument is shared once; a list holding it twice arrives with one object twice."""
    backend, executor = backend_and_executor
    a = np.arange(BIG, dtype=float)
    pair = [a, a]
    out, added, _ = run_and_count(backend, executor, [delayed(_tasks.seen_in_list)(pair) for _ in range(4)])
    assert out == [(True, True, False, float(a.sum()))] * 4
    assert added["arrays_copied"] == 1


def test_mmap_mode_r_plus_shares_a_writable_copy(backend_and_executor):
    """With mmap_mode="r+" tasks may write into the call's one copy; the caller's array never changes."""
    backend, executor = backend_and_executor
    a = np.zeros(BIG)
    calls = [delayed(_tasks.write_into)(a) for _ in range(4)]
    out, added, _ = run_and_count(backend, executor, calls, mmap_mode="r+")
    assert out == [""] * 4
    assert added == {"arrays_copied": 1, "arrays_by_reference": 4}
    assert a[0] == 0.0


@pytest.mark.parametrize("config", [{"mmap_mode": "c"}, {"max_nbytes": None}, {"max_nbytes": "4M"}])
def test_private_copies_when_joblib_asks_for_them(backend_and_executor, config):
    """mmap_mode="c", max_nbytes=None, or an array within max_nbytes: each task gets its own writable copy."""
    backend, executor = backend_and_executor
    a = np.zeros(BIG)  # 2 MiB
    calls = [delayed(_tasks.write_into)(a) for _ in range(4)]
    out, added, _ = run_and_count(backend, executor, calls, **config)
    assert out == [""] * 4
    assert added == {"arrays_copied": 4, "arrays_by_reference": 0}
    assert a[0] == 0.0
