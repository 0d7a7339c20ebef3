"""The joblib backend's decisions that need no worker: thread limits, configurations, arguments."""

from __future__ import annotations

import pytest

pytest.importorskip("joblib", reason="needs the [joblib] extra: pip install zerocopy_executor[joblib]")
pytest.importorskip("threadpoolctl", reason="needs the [joblib] extra: pip install zerocopy_executor[joblib]")

from zerocopy_executor import joblib as zc_joblib


def test_thread_limits_read_from_the_environment():
    """OpenMP takes OMP_NUM_THREADS; BLAS the smallest of the BLAS variables."""
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "3"}
    assert zc_joblib.thread_limits(env) == {"openmp": 1, "blas": 2}


def test_thread_limits_leave_nesting_lists_alone():
    """An OpenMP nesting list ("4,2") sets no threadpoolctl limit: the variable alone rules."""
    assert zc_joblib.thread_limits({"OMP_NUM_THREADS": "4,2"}) == {}


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
