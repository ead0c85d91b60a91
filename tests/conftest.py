"""Shared models for the tests: small NumPyro models with known answers."""

import os
import pathlib
import subprocess
import sys

# One persistent compilation cache per checkout, shared by the test workers and by the scripts
# they start: the examples, the docs pages and the demo sections compile many of the same
# programs, and a second compile of an equal program becomes a file read. Set before JAX
# starts (the subprocesses inherit it); JAX keys entries by program, version and flags, so a
# stale entry is never used. Delete .pytest_cache/ to measure cold compile times.
#
# A size limit is what makes JAX take a file lock around every read and write of the cache:
# without one, a process could read an entry that another is still writing. No lock
# (filelock missing), no cache. Worker crashes inside XLA's compiler are rerun (Makefile).
# Compiles under 0.2 s are not stored: each store takes the lock and keeps the size
# accounting, which late in a run costs more than compiling a small program again.
try:
    import filelock  # noqa: F401

    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR",
        str(pathlib.Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax"),
    )
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(16 * 2**30))
except ImportError:
    pass

import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import pytest  # noqa: E402

# The end-to-end tier: the demo sections, the docs pages and the example scripts, run as a
# user would run them (minutes each), and the four-device SG-MCMC script (every method
# data-parallel in one process, over a minute; the two-process test in
# tests/core/test_multihost.py keeps data-parallel sampling in the library tier). `make test`
# runs everything; CI (.ci/run) runs the library tier only (`-m "not scripts"`) to stay
# within its time limit on 2 cores.
SCRIPTS = (
    "tests/test_cli.py::test_demo",
    "tests/test_docs.py",
    "tests/test_examples.py",
    "tests/inference/test_sgmcmc.py::test_data_parallel_over_four_devices",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SCRIPTS):
            item.add_marker(pytest.mark.scripts)


SCHOOL_EFFECTS = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOL_SIGMAS = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(num_schools, sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", num_schools):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


@pytest.fixture
def schools():
    return eight_schools, (len(SCHOOL_EFFECTS), SCHOOL_SIGMAS), {"y": SCHOOL_EFFECTS}


class LinearRegression:
    """Bayesian linear regression with known noise: the posterior is Gaussian in closed form.

    ``weights ~ N(0, p² I)``, ``y ~ N(X w, s²)``; posterior ``N(m, S)`` with
    ``S = (XᵀX/s² + I/p²)⁻¹`` and ``m = S Xᵀy/s²``.
    """

    noise = 0.5
    prior_scale = 2.0

    def __init__(self, num_data=40, seed=42):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(num_data, 3)).astype(np.float32)
        noise = self.noise * rng.normal(size=num_data)
        self.y = (self.x @ np.array([1.0, -1.0, 0.5]) + noise).astype(np.float32)

    def model(self, x, y):
        weights = numpyro.sample(
            "weights", dist.Normal(0.0, self.prior_scale).expand([x.shape[1]]).to_event(1)
        )
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(x @ weights, self.noise), obs=y)

    def posterior(self):
        x, y = self.x.astype(np.float64), self.y.astype(np.float64)
        covariance = np.linalg.inv(x.T @ x / self.noise**2 + np.eye(3) / self.prior_scale**2)
        return covariance @ x.T @ y / self.noise**2, covariance


@pytest.fixture
def linear_regression():
    return LinearRegression()


def run_on_four_cpu_devices(script, marker):
    """Run ``script`` in a fresh Python with 4 forced CPU devices; assert it printed ``marker``.

    A subprocess, because JAX fixes its device count when it starts.
    """
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    completed = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert marker in completed.stdout
