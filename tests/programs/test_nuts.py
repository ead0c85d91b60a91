"""NUTS pass-through: a static continuous program against its conjugate posterior."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from bayescore.core.errors import DiscreteLatentError, ModelError
from bayescore.inference import programs
from bayescore.metrics import mean_zscores
from bayescore.models import ho
from tests.programs import oracles

Y = np.array([1.2, 0.4, 2.1, 1.7, 0.9, 1.5, 1.1, 2.4], dtype=np.float32)
PRIOR_SD = 2.0


def normal_mean(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    return lambda x: mu * x  # a function-valued program: still NUTS's business


def test_nuts_on_a_conjugate_normal_posterior():
    # mu | y ~ N(sum(y) / (n + 1 / s^2), 1 / (n + 1 / s^2)): the draws' mean is within 4
    # Monte Carlo standard errors (ESS-based) of the exact mean.
    result = programs.nuts(
        ho.from_model(normal_mean, Y),
        key=jax.random.key(0),
        num_samples=400,
        num_warmup=200,
        num_chains=1,
        progress=False,
    )
    precision = len(Y) + 1 / PRIOR_SD**2
    draws = np.asarray(result.positions["mu"])
    assert abs(mean_zscores(draws, Y.sum() / precision)[0]) < 4


def test_nuts_refuses_discrete_dynamic_and_scoped_programs():
    with pytest.raises(programs.DynamicProgramError, match="sprinkler"):
        programs.nuts(oracles.sprinkler, key=0)

    def coin():
        numpyro.sample("c", dist.Bernoulli(0.5))

    with pytest.raises(DiscreteLatentError, match="'c'"):
        programs.nuts(coin, key=0)

    def scoped():
        ho.call("inner", lambda: numpyro.sample("z", dist.Normal()))

    with pytest.raises(ModelError, match="inner"):
        programs.nuts(scoped, key=0)
