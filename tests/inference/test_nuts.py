"""The reference NUTS sampler against exact posteriors."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayescore as bc
from bayescore.inference.adaptation import window_adaptation
from bayescore.metrics import covariance_zscores, mean_zscores


@pytest.mark.parametrize("dense_mass", [False, True])
def test_nuts_matches_conjugate_linear_regression(dense_mass, linear_regression):
    mean, covariance = linear_regression.posterior()
    problem = linear_regression
    target = bc.Target.from_numpyro(problem.model, problem.x, problem.y)
    result = bc.sample(
        bc.inference.nuts(dense_mass=dense_mass),
        target,
        num_samples=2000,
        num_warmup=500,
        num_chains=4,
        key=jax.random.key(11),
        progress=False,
    )
    draws = np.asarray(result.positions["weights"])
    # Exact posterior moments within 4 ESS-based Monte Carlo standard errors.
    assert np.all(np.abs(mean_zscores(draws, mean)) < 4)
    assert np.all(np.abs(covariance_zscores(draws, mean, covariance)) < 4)
    assert not bool(result.stats["diverging"].any())
    assert result.parameters.inverse_mass_matrix.shape == ((4, 3, 3) if dense_mass else (4, 3))


def test_nuts_on_constrained_site_matches_gamma_posterior():
    # Poisson counts with a Gamma(a, b) prior on the rate: posterior Gamma(a + Σy, b + n).
    counts = jnp.array([3.0, 5.0, 2.0, 4.0, 6.0])

    def model(y):
        rate = numpyro.sample("rate", dist.Gamma(2.0, 1.0))
        with numpyro.plate("obs", len(y)):
            numpyro.sample("y", dist.Poisson(rate), obs=y)

    result = bc.sample(
        bc.inference.nuts(),
        bc.Target.from_numpyro(model, counts),
        num_samples=2000,
        num_warmup=500,
        num_chains=4,
        key=3,
        progress=False,
    )
    rate = np.asarray(result.constrained()["rate"])
    shape, inverse_scale = 2.0 + 20.0, 1.0 + 5.0
    assert abs(mean_zscores(rate, shape / inverse_scale)[0]) < 4
    assert (
        abs(
            covariance_zscores(rate, shape / inverse_scale, np.array([[shape / inverse_scale**2]]))[
                0, 0
            ]
        )
        < 4
    )


def test_window_adaptation_reaches_target_acceptance_on_a_gaussian():
    target = bc.Target.from_logdensity(
        lambda p: -0.5 * jnp.sum((p["x"] / 3.0) ** 2), {"x": jnp.zeros(5)}
    )
    result = bc.sample(
        bc.inference.nuts(target_acceptance_rate=0.9),
        target,
        num_samples=1000,
        num_warmup=1000,
        num_chains=2,
        key=0,
        progress=False,
    )
    # The mass matrix learns the variance 9 (Welford over ~800 slow-window draws, sd ≈ 9·√(2/800)
    # ≈ 0.45 per coordinate plus Stan's shrinkage towards 1e-3), and dual averaging brings
    # the mean acceptance close to its target.
    np.testing.assert_allclose(result.parameters.inverse_mass_matrix, 9.0, rtol=0.3)
    assert 0.8 < float(result.stats["acceptance_rate"].mean()) < 0.97


def test_window_adaptation_without_warmup_keeps_initial_step_size():
    init, _, final = window_adaptation(0)
    step_size, inverse_mass_matrix = final(init(jnp.zeros(2), 0.3))
    np.testing.assert_allclose(step_size, 0.3)
    np.testing.assert_allclose(inverse_mass_matrix, jnp.ones(2))
