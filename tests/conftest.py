"""Shared models for the tests: small NumPyro models with known answers."""

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

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
