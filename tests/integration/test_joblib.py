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
from tests import _client_tasks

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
        out = Parallel()(delayed(_client_tasks.total)(a) for a in arrays)
    assert out == [float(i) * BIG for i in range(4)]


def test_large_arrays_travel_through_shared_memory():
    """Large arguments and results are copied once into shared memory, not pickled."""
    backend = zc_joblib.SharedArrayBackend()
    arrays = [np.full(BIG, float(i)) for i in range(4)]
    with parallel_config(backend=backend, n_jobs=2), Parallel() as parallel:
        out = parallel(delayed(_client_tasks.plus_one)(a) for a in arrays)
        stats = backend.executor.stats()
    for i, result in enumerate(out):
        np.testing.assert_array_equal(result, arrays[i] + 1)
    # Four arguments are copied. Each result is copied too, or, once a worker has asked
    # the executor to lend it a segment for results (the C allocator), born in shared
    # memory and sent by reference: which one depends on when joblib dispatches.
    assert stats.arrays_copied >= 4
    assert stats.arrays_copied + stats.arrays_by_reference == 8
    assert stats.arrays_pickled == 0


def test_shared_arguments_travel_by_reference():
    """A shared array reaches the workers by reference: no copy, writes visible."""
    backend = zc_joblib.SharedArrayBackend()
    marks = zc.zeros(6)
    with parallel_config(backend=backend, n_jobs=2), Parallel() as parallel:
        parallel(delayed(_client_tasks.mark_slowly)(marks, i, 0) for i in range(6))
        stats = backend.executor.stats()
    assert marks.tolist() == [1.0] * 6
    assert (stats.arrays_copied, stats.arrays_by_reference) == (0, 6)


def test_executor_reused_across_calls():
    """Successive Parallel calls run on the same warm workers."""
    with parallel_config(backend="zerocopy", n_jobs=2):
        first = set(Parallel()(delayed(_client_tasks.pid)(i) for i in range(8)))
        again = set(Parallel()(delayed(_client_tasks.pid)(i) for i in range(8)))
    assert os.getpid() not in first
    assert len(first | again) <= 2


def test_idle_executor_shuts_down():
    """Once idle for idle_worker_timeout seconds, the executor's workers exit."""
    with parallel_config(backend="zerocopy", n_jobs=2, idle_worker_timeout=0.3):
        workers = set(Parallel()(delayed(_client_tasks.pid)(i) for i in range(4)))
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
        settings = Parallel()(delayed(_client_tasks.thread_settings)(i) for i in range(2))
    for s in settings:
        assert set(s["env"].values()) == {str(expected)}
        assert s["num_threads"].get("blas", expected) == expected


def test_inner_max_num_threads():
    """parallel_config's inner_max_num_threads sets the workers' thread pools."""
    with parallel_config(backend="zerocopy", n_jobs=2, inner_max_num_threads=2):
        settings = Parallel()(delayed(_client_tasks.thread_settings)(i) for i in range(2))
    for s in settings:
        assert set(s["env"].values()) == {"2"}
        assert s["num_threads"].get("blas", 2) == 2


def test_user_initializer_runs_in_workers():
    """A user initializer runs in each worker, after the thread limits."""
    with parallel_config(
        backend="zerocopy", n_jobs=2, initializer=_client_tasks.set_global, initargs=("ready",)
    ):
        out = Parallel()(delayed(_client_tasks.get_global)(i) for i in range(4))
    assert out == ["ready"] * 4


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_return_as_generator(return_as):
    """return_as="generator" yields results as they come (in order unless unordered)."""
    with parallel_config(backend="zerocopy", n_jobs=2):
        results = Parallel(return_as=return_as)(delayed(_client_tasks.sleep_then)(0.01, i) for i in range(10))
        assert not isinstance(results, list)
        out = list(results)
    assert out == list(range(10)) if return_as == "generator" else sorted(out) == list(range(10))


def test_first_error_aborts_the_rest():
    """The first error is raised and the batches not yet started never run."""
    marks = zc.zeros(40)
    calls = [delayed(_client_tasks.fail_if)(0, 0)]
    calls += [delayed(_client_tasks.mark_slowly)(marks, i, 0.05) for i in range(1, 40)]
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
            Parallel(timeout=0.5)(delayed(_client_tasks.sleep_then)(3, i) for i in range(2))
        start = time.monotonic()
        assert Parallel()(delayed(_client_tasks.pid)(i) for i in range(2))
        assert time.monotonic() - start < 2.5


def test_broken_pool_next_call_starts_afresh():
    """A worker killed mid-call raises; the next call gets a new, working executor."""
    from concurrent.futures.process import BrokenProcessPool

    with parallel_config(backend="zerocopy", n_jobs=2):
        with pytest.raises(BrokenProcessPool):
            Parallel()(delayed(_client_tasks.exit_abruptly)(i) for i in range(2))
        assert Parallel()(delayed(_client_tasks.total)(np.ones(3)) for _ in range(3)) == [3.0] * 3


def test_n_jobs_one_runs_in_process():
    """n_jobs=1 falls back to joblib's sequential backend: no worker starts."""
    with parallel_config(backend="zerocopy", n_jobs=1):
        assert Parallel()(delayed(_client_tasks.pid)(i) for i in range(3)) == [os.getpid()] * 3


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
        out = pool.map_async(_client_tasks.nested_zerocopy_call, [3, 3]).get(timeout=60)
    for worker, pids, warnings in out:
        assert pids == [worker] * 3
        assert any("daemonic" in w for w in warnings), warnings


def test_nested_call_below_threads_runs_sequentially():
    """A call nested in a threading-backend task runs in that thread with a warning, as loky's."""
    out = Parallel(n_jobs=2, backend="threading")(
        delayed(_client_tasks.nested_zerocopy_call)(3) for _ in range(2)
    )
    for worker, pids, warnings in out:
        assert pids == [worker] * 3
        assert any("nested below threads" in w for w in warnings), warnings


def run_call_in_child(mp_context) -> tuple[list[float], int | None]:
    """Run one call in a child process; return its results and exit code (None: still running)."""
    results = mp_context.Queue()
    child = mp_context.Process(
        target=_client_tasks.zerocopy_call_in_child, args=(mp_context.get_start_method(), results)
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
        assert Parallel()(delayed(_client_tasks.pid)(i) for i in range(4))
    out, exitcode = run_call_in_child(fork)
    assert out == [float(i) * (1 << 18) for i in range(4)]
    assert exitcode == 0


def test_nested_loky_workers_stop_with_ours(mp_context):
    """Workers that ran a nested loky call stop its workers when they exit, as loky's workers do."""
    with parallel_config(backend="zerocopy", n_jobs=2, mp_context=mp_context):
        out = Parallel()(delayed(_client_tasks.nested_loky_call)(2) for _ in range(2))
    assert all(len(pids) == 2 for pids in out)
    start = time.monotonic()
    zc_joblib.shutdown()  # else multiprocessing waits for loky's idle timeout (300 s) in each worker
    assert time.monotonic() - start < 30
