"""The README's recipes: scipy's ``workers=executor.map`` and emcee's ``pool=executor``."""

from __future__ import annotations

import functools
import inspect
import multiprocessing

import numpy as np
import pytest

import zerocopy_executor as zc
from tests import _tasks

BIG = 1 << 18  # float64 elements: 2 MiB, above the default min_nbytes


@pytest.fixture
def executor():
    with zc.SharedArrayExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as ex:
        yield ex


def shared_data():
    """The array the objective needs, put in shared memory once: it then travels by reference.

    Made in each test, not in a fixture: pytest holds fixture values past the leak guard.
    """
    return zc.share(np.random.default_rng(0).normal(3.0, 1.0, BIG))


def test_differential_evolution_workers(mp_context):
    """differential_evolution(workers=executor.map) finds the serial run's answer; data by reference."""
    data = shared_data()
    optimize = pytest.importorskip(
        "scipy.optimize", reason="needs scipy: pip install zerocopy_executor[integrations]"
    )
    seed = "rng" if "rng" in inspect.signature(optimize.differential_evolution).parameters else "seed"
    kwargs = {"bounds": [(-5, 5), (-5, 5)], "args": (data,), "maxiter": 5, "popsize": 5, seed: 1}
    serial = optimize.differential_evolution(_tasks.sphere, updating="deferred", **kwargs)
    with zc.SharedArrayExecutor(2, mp_context=mp_context) as executor:
        result = optimize.differential_evolution(
            _tasks.sphere, updating="deferred", workers=executor.map, **kwargs
        )
        stats = executor.stats()
    np.testing.assert_allclose(result.x, serial.x)
    assert stats.arrays_by_reference >= result.nfev - 1  # data with every evaluation sent
    assert stats.arrays_copied == 0


def test_brute_workers(executor):
    """brute(workers=executor.map) evaluates the grid on the workers."""
    data = shared_data()
    optimize = pytest.importorskip(
        "scipy.optimize", reason="needs scipy: pip install zerocopy_executor[integrations]"
    )
    ranges = (slice(2, 4, 0.5), slice(0, 2, 0.5))
    serial = optimize.brute(_tasks.sphere, ranges, args=(data,), finish=None)
    result = optimize.brute(_tasks.sphere, ranges, args=(data,), finish=None, workers=executor.map)
    np.testing.assert_allclose(result, serial)
    assert executor.stats().arrays_by_reference > 0


def test_minimize_lbfgsb_workers(executor):
    """minimize(method="L-BFGS-B", options={"workers": executor.map}) computes its gradient on the workers."""
    data = shared_data()
    optimize = pytest.importorskip(
        "scipy.optimize", reason="needs scipy: pip install zerocopy_executor[integrations]"
    )
    import inspect

    from scipy.optimize import _lbfgsb_py

    if "workers" not in inspect.signature(_lbfgsb_py._minimize_lbfgsb).parameters:
        pytest.skip("this scipy's L-BFGS-B takes no workers= (added in a later release)")
    x0 = np.array([0.0, 0.0])
    serial = optimize.minimize(_tasks.sphere, x0, args=(data,), method="L-BFGS-B")
    result = optimize.minimize(
        _tasks.sphere, x0, args=(data,), method="L-BFGS-B", options={"workers": executor.map}
    )
    np.testing.assert_allclose(result.x, serial.x, rtol=1e-6)
    assert executor.stats().arrays_by_reference > 0


def test_quad_vec_workers(executor):
    """quad_vec(workers=executor.map) integrates on the workers."""
    integrate = pytest.importorskip(
        "scipy.integrate", reason="needs scipy: pip install zerocopy_executor[integrations]"
    )
    coefficients = np.array([2.0, 3.0])
    f = functools.partial(_tasks.bump, data=coefficients)
    result, _ = integrate.quad_vec(f, 0, 1, workers=executor.map)
    np.testing.assert_allclose(result, [1.0, 1.0])


def test_emcee_pool(executor):
    """emcee.EnsembleSampler(pool=executor) samples as it does serially; data by reference."""
    data = shared_data()
    emcee = pytest.importorskip("emcee", reason="needs emcee: pip install zerocopy_executor[integrations]")
    nwalkers, ndim, steps = 8, 2, 20
    start = np.random.default_rng(2).normal(size=(nwalkers, ndim))

    def run(pool):
        sampler = emcee.EnsembleSampler(nwalkers, ndim, _tasks.log_prob_gaussian, args=(data,), pool=pool)
        sampler.random_state = np.random.RandomState(3).get_state()
        sampler.run_mcmc(start, steps)
        return sampler.get_chain()

    serial = run(None)
    chain = run(executor)
    np.testing.assert_allclose(chain, serial)
    assert executor.stats().arrays_by_reference >= nwalkers * steps
