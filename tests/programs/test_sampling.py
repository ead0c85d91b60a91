"""Monte Carlo methods against exact answers, within 4 Monte Carlo standard errors."""

import functools
import math

import jax
import numpy as np
import pytest
from scipy import stats

from bayescore.inference import programs
from bayescore.metrics import mean_zscores
from bayescore.models import ho
from tests.programs import oracles

VOTE_EXACT = 1.0 - stats.beta(52, 50).cdf(0.5)  # 0.578809
REGRESSION_F6_MEAN, REGRESSION_F6_SD, REGRESSION_LOG_Z = 9.027500, 0.520671, -7.685329


def self_normalised(population, function):
    """The estimate sum_i w_i f(x_i) and its delta-method standard error
    sqrt(sum_i w_i^2 (f(x_i) - estimate)^2), w normalised (Owen, Monte Carlo, eq. 9.8)."""
    weights = population.normalized_weights()
    values = np.array([float(function(value)) for value in population.values])
    estimate = float(weights @ values)
    return estimate, float(np.sqrt(np.sum(weights**2 * (values - estimate) ** 2)))


def evidence_ratio(population, log_z):
    """Zhat / Z and its standard error sd(w) / (sqrt(N) Z): Zhat is a mean of N iid weights."""
    weights = np.exp(population.log_weights - log_z)
    return weights.mean(), weights.std(ddof=1) / math.sqrt(len(weights))


def test_exact_values_of_the_references():
    assert abs(VOTE_EXACT - 0.578809) < 1e-6


def test_vote_by_importance():
    population = programs.importance(ho.from_model(oracles.vote), 1000, jax.random.key(0))
    estimate, error = self_normalised(population, lambda v: v > 0.5)
    assert abs(estimate - VOTE_EXACT) < 4 * error
    log_z = math.lgamma(52) + math.lgamma(50) - math.lgamma(102)  # B(52, 50)
    ratio, ratio_error = evidence_ratio(population, log_z)
    assert abs(ratio - 1.0) < 4 * ratio_error


@pytest.mark.parametrize(
    "transformer, first_seed",
    [
        (programs.smc, 0),
        (programs.rmsmc, 100),
        (functools.partial(programs.rmsmc, tier="eager"), 100),
    ],
    ids=["smc", "rmsmc", "rmsmc_eager"],
)
def test_vote_by_smc_over_independent_runs(transformer, first_seed):
    # Zhat_r is unbiased for Z and Zhat_r * fhat_r for Z * E[f | y], over independent runs r:
    # the ratio of their means is consistent, with a delta-method standard error over runs.
    # rmsmc adds one MH move per particle after each resampling (compiled: vote is static).
    program = ho.from_model(oracles.vote, num_blocks=4)
    estimates, evidences = [], []
    for run in range(8):
        population = transformer(program, 25, jax.random.key(first_seed + run))
        estimates.append(self_normalised(population, lambda v: v > 0.5)[0])
        evidences.append(math.exp(population.log_evidence))
    evidences, products = np.array(evidences), np.array(evidences) * np.array(estimates)
    ratio = products.mean() / evidences.mean()
    residuals = (products - ratio * evidences) / evidences.mean()
    error = residuals.std(ddof=1) / math.sqrt(len(residuals))
    assert abs(ratio - VOTE_EXACT) < 4 * error


def test_regression_returns_a_posterior_over_functions():
    population = programs.importance(ho.from_model(oracles.regression), 4000, jax.random.key(1))
    mean, error = self_normalised(population, lambda f: f(6.0))
    assert abs(mean - REGRESSION_F6_MEAN) < 4 * error
    second, second_error = self_normalised(population, lambda f: (f(6.0) - 9.0275) ** 2)
    assert abs(second - REGRESSION_F6_SD**2) < 4 * second_error
    ratio, ratio_error = evidence_ratio(population, REGRESSION_LOG_Z)
    assert abs(ratio - 1.0) < 4 * ratio_error


def test_shared_and_resampled_random_functions():
    line = ho.Random.from_model(oracles.linear_function)
    shared = line.map(lambda f: float(f(f(1.0))))
    independent = line.bind(lambda f: line.map(lambda g: float(g(f(1.0)))))
    for program, exact_mean, exact_variance in [(shared, 1.0, 4.0), (independent, 0.0, 3.0)]:
        draws = np.array([program.draw(jax.random.key(i)) for i in range(400)])
        mean_error = draws.std(ddof=1) / math.sqrt(len(draws))
        assert abs(draws.mean() - exact_mean) < 4 * mean_error
        # sd of the sample variance: sqrt((m4 - s^4) / n), m4 the 4th central moment
        centred = draws - draws.mean()
        variance_error = math.sqrt((np.mean(centred**4) - np.var(draws) ** 2) / len(draws))
        assert abs(draws.var(ddof=1) - exact_variance) < 4 * variance_error


def test_trace_mh_needs_the_support_check_on_strictly_smaller_support():
    chain = programs.trace_mh(
        ho.from_model(oracles.strictly_smaller_support), 1500, jax.random.key(2)
    )
    draws = np.array(chain.values, dtype=float).reshape(1, -1)
    assert abs(mean_zscores(draws, 0.5)[0]) < 4  # ESS-based MCSE of the chain
    assert 0.0 < chain.acceptance_rate < 1.0


def test_trace_mh_on_the_sprinkler():
    chain = programs.trace_mh(ho.from_model(oracles.sprinkler), 1500, jax.random.key(3))
    draws = np.array(chain.values, dtype=float).reshape(1, -1)
    assert abs(mean_zscores(draws, 0.0546 / 0.5026)[0]) < 4


def test_trace_mh_with_a_varying_number_of_sites():
    chain = programs.trace_mh(ho.from_model(oracles.varying_dimension), 1500, jax.random.key(5))
    draws = np.array(chain.values, dtype=float).reshape(1, -1)
    assert abs(mean_zscores(draws, 0.288 / 0.588)[0]) < 4


def test_pmmh_weights_parameters_by_the_estimated_evidence():
    chain = programs.pmmh(
        ho.Random.from_model(oracles.parameter_prior),
        oracles.parameter_model,
        3,
        600,
        jax.random.key(6),
    )
    draws = np.array([theta for theta, _ in chain.values], dtype=float).reshape(1, -1)
    assert abs(mean_zscores(draws, 0.62)[0]) < 4  # p(theta=1 | y) = 0.62 / (0.38 + 0.62)
    assert chain.values[-1][1].num_particles == 3


def test_key_tree_is_stable_under_added_sites():
    import numpyro
    import numpyro.distributions as dist

    def one():
        return numpyro.sample("x", dist.Normal())

    def two():
        numpyro.sample("z", dist.Normal())
        return numpyro.sample("x", dist.Normal())

    key = jax.random.key(4)
    assert float(ho.from_model(one).run(key)[0]) == float(ho.from_model(two).run(key)[0])

    def queries(order):
        f = ho.mem("f", lambda x: numpyro.sample("y", dist.Normal()))
        return {x: float(f(x)) for x in order}

    forward = ho.from_model(queries, [1, 2]).run(key)[0]
    backward = ho.from_model(queries, [2, 1]).run(key)[0]
    assert forward == backward


def test_a_posterior_random_function_is_evaluated_lazily_and_consistently():
    import numpyro
    import numpyro.distributions as dist

    def program(queries):
        f = ho.mem("f", lambda x: numpyro.sample("y", dist.Normal()))
        return f, [float(f(x)) for x in queries]

    key = jax.random.key(7)
    (f, _), _, trace = ho.from_model(program, [1]).run(key)
    assert list(trace) == [("f", 1, "y")]
    later = float(f(5))  # not explored during the run: drawn now, from its address's key
    assert float(f(5)) == later
    assert ho.from_model(program, [1, 5]).run(key)[0][1] == [float(f(1)), later]
