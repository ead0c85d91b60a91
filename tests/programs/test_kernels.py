"""Trace-MH kernels: invariance exactly by enumeration (the kernels' choices are sites), and
statistically within 4 Monte Carlo standard errors (ESS-based, ``mean_zscores``)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from bayescore.core.errors import ArgumentError
from bayescore.inference import programs
from bayescore.inference.programs.population import as_body
from bayescore.metrics import mean_zscores
from bayescore.models import ho
from bayescore.models.ho.runtime import run_nested
from tests.programs import oracles

TOLERANCE = 1e-12


def flip(key, value):
    """A deterministic involution on {0, 1}: q(x' | x) = q(x | x') = 1."""
    return 1 - value, 0.0, 0.0


def moved(program, kernel, num_moves=1):
    """x ~ posterior (one weighted prior run), then ``num_moves`` steps of ``kernel``."""
    body = as_body(ho.from_model(program))

    def run():
        value, frame, _ = run_nested(body, ("start",))
        numpyro.factor("start_weight", frame.log_weight)
        for move in range(num_moves):
            value, frame = programs.kernel_move(kernel, body, value, frame, ("move", move))
        return value

    return ho.Measure(run)


KERNELS = {
    "single_site": programs.single_site(),
    "lazy": programs.lazy(0.5),
    "restart": programs.restart(0.3, programs.lazy(0.4)),
    "site_x": programs.site_kernel("x", flip),
    "site_y": programs.site_kernel("y", flip),
}


@pytest.mark.parametrize("program", [oracles.varying_dimension, oracles.sprinkler])
@pytest.mark.parametrize("name", list(KERNELS))
def test_kernels_leave_the_posterior_invariant_exactly(program, name):
    with jax.enable_x64(True):
        exact = programs.enumerate(ho.from_model(program)).probability(lambda x: x == 1)
        after = programs.enumerate(moved(program, KERNELS[name]))
        assert abs(after.probability(lambda x: x == 1) - exact) < TOLERANCE


def three_customers():
    return oracles.crp_tables(num_customers=3)


@pytest.mark.parametrize("name", ["single_site", "lazy", "restart"])
def test_kernels_keep_the_crp_prior_when_a_proposal_empties_a_table(name):
    # Regenerating customer 1 of tables (0, 1, 2) to table 0 leaves customer 2's replayed
    # table 2 past the open ones: probability 0, so the move is rejected (not a crash).
    with jax.enable_x64(True):
        exact = programs.enumerate(ho.from_model(three_customers))
        after = programs.enumerate(moved(three_customers, KERNELS[name]))
        for count in (1, 2, 3):
            assert (
                abs(
                    after.probability(lambda k, c=count: k == c)
                    - exact.probability(lambda k, c=count: k == c)
                )
                < TOLERANCE
            )


def normal_model():
    """x ~ N(0, 1), 1.0 ~ N(x, 0.5^2): posterior N(0.8, 0.2)."""
    x = numpyro.sample("x", dist.Normal())
    numpyro.sample("y", dist.Normal(x, 0.5), obs=1.0)
    return x


@pytest.mark.parametrize(
    "kernel",
    [
        programs.site_kernel("x", programs.random_walk(0.6)),
        programs.restart(0.2, programs.lazy(1.0)),
    ],
)
def test_continuous_posterior_mean(kernel):
    chain = programs.trace_mh(ho.from_model(normal_model), 600, jax.random.key(7), kernel)
    draws = np.array(chain.values, dtype=float)[100:].reshape(1, -1)
    assert abs(mean_zscores(draws, 0.8)[0]) < 4  # ESS-based MCSE of the chain
    assert 0.0 < chain.acceptance_rate < 1.0


def test_asymmetric_site_proposal_uses_its_hastings_ratio():
    # A log-normal multiplicative walk on a positive site: q(x'|x) = LogNormal(log x, 0.5)(x').
    def model():
        rate = numpyro.sample("rate", dist.Gamma(2.0, 1.0))
        numpyro.sample("y", dist.Poisson(rate), obs=3)
        return rate  # posterior Gamma(5, 2), mean 2.5

    def proposal(key, value):
        new = value * jnp.exp(0.5 * jax.random.normal(key))
        forward = dist.LogNormal(jnp.log(value), 0.5).log_prob(new)
        backward = dist.LogNormal(jnp.log(new), 0.5).log_prob(value)
        return new, float(forward), float(backward)

    kernel = programs.site_kernel("rate", proposal)
    chain = programs.trace_mh(ho.from_model(model), 600, jax.random.key(3), kernel)
    draws = np.array(chain.values, dtype=float)[100:].reshape(1, -1)
    assert abs(mean_zscores(draws, 2.5)[0]) < 4


def test_chain_keeps_string_latents_for_arviz():
    chain = programs.trace_mh(
        ho.from_model(oracles.varying_dimension), 30, jax.random.key(1), programs.lazy(0.5)
    )
    assert len(chain.latents) == 30
    assert all(
        int(step["x"]) == value for step, value in zip(chain.latents, chain.values, strict=True)
    )
    tree = programs.to_arviz(chain)
    assert np.array_equal(tree.posterior["x"].values[0], np.array(chain.values))
    assert "y" not in tree.posterior  # not every draw has it


def test_a_site_kernel_for_a_missing_site_never_moves():
    chain = programs.trace_mh(
        ho.from_model(oracles.sprinkler), 5, jax.random.key(0), programs.site_kernel("z", flip)
    )
    assert not chain.accepted.any()


def test_bad_kernels_raise():
    for bad in (0.0, 1.5, math.nan, "a"):
        with pytest.raises(ArgumentError, match="probability"):
            programs.lazy(bad)
    with pytest.raises(ArgumentError, match="probability"):
        programs.restart(-0.1)
    with pytest.raises(ArgumentError, match="kernel"):
        programs.restart(0.1, "gibbs")
    with pytest.raises(ArgumentError, match="proposal"):
        programs.site_kernel("x", 0.5)
    with pytest.raises(ArgumentError, match="scale"):
        programs.random_walk(0.0)
