"""The Schrödinger–Föllmer sampler against exact answers.

For a Gaussian target :math:`N(m, C)` and reference :math:`N(\\mu, \\Sigma)`,
:math:`\\Sigma = \\operatorname{diag}\\sigma^2`, the exact drift is affine in ``x``:
:math:`b(x, t) = (\\mu_q - x)/(1-t)` with :math:`P = C^{-1} - \\Sigma^{-1} + \\Sigma^{-1}/(1-t)`
and :math:`\\mu_q = \\mu + P^{-1}(C^{-1}(m-\\mu) + \\Sigma^{-1}(x-\\mu)/(1-t))` (the mean of the
Gaussian the inner weights tilt :math:`N(x, (1-t)\\Sigma)` to). The Euler chain with that drift is
linear-Gaussian, so its terminal mean and covariance after ``K`` steps follow from a recursion:
that checks the sampler's Euler loop exactly, and gives its O(1/K) bias in closed form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayescore as bc
from bayescore.core.errors import (
    ArgumentError,
    DiscreteLatentError,
    InitializationError,
    ShapeError,
)
from bayescore.inference.bridge.follmer import (
    DRIFTS,
    _Settings,
    _simulate,
    schrodinger_follmer,
)
from bayescore.metrics import covariance_zscores, mean_zscores, zscore_bound


def regression(x, noise, y=None):
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ weights, noise), obs=y)


class ConjugateRegression:
    """``weights ~ N(0, I_3)``, ``y ~ N(X w, noise²)``: the posterior ``N(m, C)`` is exact.

    A standard normal prior makes the Schrödinger–Föllmer density ratio ``f`` the likelihood.
    """

    def __init__(self, noise, num_data, seed):
        rng = np.random.default_rng(seed)
        self.noise = noise
        self.x = rng.normal(size=(num_data, 3))
        self.y = self.x @ np.array([1.0, -0.5, 0.5]) + noise * rng.normal(size=num_data)
        self.precision = self.x.T @ self.x / noise**2 + np.eye(3)
        self.covariance = np.linalg.inv(self.precision)
        self.mean = self.covariance @ self.x.T @ self.y / noise**2

    def target(self):
        x, y = self.x.astype(np.float32), self.y.astype(np.float32)
        return bc.Target.from_numpyro(regression, x, np.float32(self.noise), y=y)


def exact_drift_matrices(problem, time, loc, scale):
    """``(M, c)`` with the exact drift ``b(x, t) = M (x - loc) + c`` (float64)."""
    reference = np.diag(np.broadcast_to(np.asarray(scale, float) ** 2, (3,)))
    tilted = problem.precision - np.linalg.inv(reference) + np.linalg.inv(reference) / (1 - time)
    tilted_covariance = np.linalg.inv(tilted)
    matrix = (tilted_covariance @ np.linalg.inv(reference) / (1 - time) - np.eye(3)) / (1 - time)
    offset = tilted_covariance @ problem.precision @ (problem.mean - loc) / (1 - time)
    return matrix, offset


def exact_drift(problem, num_steps, loc, scale):
    """The exact drift at the Euler grid ``k / num_steps``, in ``_simulate``'s signature.

    The reported inner ESS is ``num_inner`` (no inner draws).
    """
    loc = np.broadcast_to(np.asarray(loc, float), (3,))
    grid = [exact_drift_matrices(problem, k / num_steps, loc, scale) for k in range(num_steps)]
    matrices = jnp.asarray(np.stack([matrix for matrix, _ in grid]), jnp.float32)
    offsets = jnp.asarray(np.stack([offset for _, offset in grid]), jnp.float32)

    def drift(target, key, x, time, loc_, scale_, num_inner):
        k = jnp.round(time * num_steps).astype(jnp.int32)
        return matrices[k] @ (x - loc_) + offsets[k], jnp.float32(num_inner)

    return drift


def euler_moments(problem, num_steps, loc, scale):
    """Mean and covariance of the Euler chain with the exact drift after ``num_steps`` steps."""
    loc = np.broadcast_to(np.asarray(loc, float), (3,))
    variance = np.broadcast_to(np.asarray(scale, float) ** 2, (3,))
    step_size = 1.0 / num_steps
    mean, covariance = loc.copy(), np.zeros((3, 3))
    for k in range(num_steps):
        matrix, offset = exact_drift_matrices(problem, k * step_size, loc, scale)
        transition = np.eye(3) + step_size * matrix
        mean = loc + transition @ (mean - loc) + step_size * offset
        covariance = transition @ covariance @ transition.T + step_size * np.diag(variance)
    return mean, covariance


def run_simulate(drift, problem, num_particles, num_steps, num_inner, loc, scale, key):
    keys = jax.random.split(jax.random.key(key), num_particles).reshape(4, -1)
    positions, inner_ess, _ = _simulate(
        _Settings(num_steps, num_inner, 0),
        drift,
        problem.target(),
        keys,
        jnp.broadcast_to(jnp.asarray(loc, jnp.float32), (3,)),
        jnp.broadcast_to(jnp.asarray(scale, jnp.float32), (3,)),
    )
    return np.asarray(positions, np.float64), np.asarray(inner_ess)


MILD = ConjugateRegression(
    noise=2.0, num_data=5, seed=1
)  # mean (0.55, -0.01, -0.09), sds 0.78-0.91
NARROW = ConjugateRegression(noise=1.0, num_data=6, seed=3)  # sds 0.23-0.57, mean 5.7 sds from 0
NARROW_LOC = np.array([1.3, -0.6, 0.0])  # the posterior mean and sds, rounded: what a
NARROW_SCALE = np.array([0.3, 0.4, 0.6])  # Laplace fit or a pilot run would give


@pytest.mark.parametrize(
    "problem, loc, scale",
    [(NARROW, 0.0, 1.0), (MILD, np.array([1.0, -0.5, 0.0]), np.array([0.5, 0.7, 1.0]))],
    ids=["standard-reference", "shifted-scaled-reference"],
)
def test_euler_loop_matches_the_exact_linear_gaussian_recursion(problem, loc, scale):
    num_steps = 10  # coarse on purpose: the Euler chain is far from the posterior here
    drift = exact_drift(problem, num_steps, loc, scale)
    draws, _ = run_simulate(drift, problem, 8000, num_steps, 1, loc, scale, key=0)
    mean, covariance = euler_moments(problem, num_steps, loc, scale)
    # 3 means and 6 distinct covariances of 8000 independent draws, checked at the
    # false-alarm rate of one 4-MCSE test.
    bound = zscore_bound(9)
    assert np.all(np.abs(mean_zscores(draws, mean)) < bound)
    assert np.all(np.abs(covariance_zscores(draws, mean, covariance)) < bound)
    # The same draws fail the same check against the posterior: the recursion's 10-step
    # bias is real, and the check above would see an error of that size in the loop.
    assert np.abs(covariance_zscores(draws, problem.mean, problem.covariance)).max() > bound


@pytest.mark.parametrize("estimator", ["score", "stein"])
def test_drift_estimators_match_the_closed_form_drift(estimator):
    problem, num_inner, num_repeats = NARROW, 4096, 64
    loc, scale = jnp.zeros(3), jnp.ones(3)
    target = problem.target()
    points = [(np.zeros(3), 0.0), (problem.mean / 2, 0.5), (problem.mean + 0.3, 0.9)]
    estimate = jax.jit(
        jax.vmap(
            lambda key, x, time: DRIFTS[estimator](target, key, x, time, loc, scale, num_inner),
            (0, None, None),
        )
    )
    z_scores, smallest_ess = [], np.inf
    for i, (x, time) in enumerate(points):
        keys = jax.random.split(jax.random.key(i), num_repeats)
        drifts, ess = estimate(keys, jnp.asarray(x, jnp.float32), jnp.float32(time))
        drifts = np.asarray(drifts, np.float64)
        matrix, offset = exact_drift_matrices(problem, time, np.zeros(3), 1.0)
        exact = matrix @ x + offset
        standard_error = drifts.std(axis=0, ddof=1) / np.sqrt(num_repeats)
        z_scores.append((drifts.mean(axis=0) - exact) / standard_error)
        smallest_ess = min(smallest_ess, float(ess.min()))
    # 64 independent estimates per point, each with 4096 inner draws: the ratio estimator's
    # O(1/num_inner) bias is about 1/sqrt(num_inner * num_repeats * ess fraction) ≈ 0.05 of
    # the standard error of their mean, so the z-scores are standard normal (Student-t with
    # 63 dof: P(|t| > 4.6) < 1e-4); 9 z-scores at the false-alarm rate of one 4-MCSE test.
    assert np.all(np.abs(np.asarray(z_scores)) < zscore_bound(9))
    assert smallest_ess > 10  # the weights are usable at every point, not one draw's


def run_posterior_test(problem, estimator, loc, scale):
    result = schrodinger_follmer(
        problem.target(),
        num_samples=500,
        num_chains=4,
        num_steps=100,
        num_inner=64,
        estimator=estimator,
        loc=loc,
        scale=scale,
        key=5,
        progress=False,
    )
    draws = np.asarray(result.positions["weights"], np.float64)
    # 2000 independent draws: the MCSEs are 0.022 sd for a mean and 0.032 sd² for a
    # variance. The sampler's deterministic biases are well below them (numbers in the
    # callers); 3 means and 6 covariances at the false-alarm rate of one 4-MCSE test.
    bound = zscore_bound(9)
    assert np.all(np.abs(mean_zscores(draws, problem.mean)) < bound)
    assert np.all(np.abs(covariance_zscores(draws, problem.mean, problem.covariance)) < bound)
    assert not bool(result.stats["diverging"].any())
    return result


@pytest.mark.parametrize("estimator", ["score", "stein"])
def test_standard_reference_matches_conjugate_posterior(estimator):
    # Biases at num_steps=100, num_inner=64 on MILD, in posterior sds (means) and products
    # of sds (covariances), against MCSEs of 0.022 and 0.032 here:
    # Euler (exact, euler_moments): 0 for the means, <= 0.005 for the covariances.
    # Inner ratio estimator, measured against euler_moments with 40000 draws (MCSE 0.005,
    # 0.007) at num_inner=16, where it is 4x larger (it scales as 1/num_inner: num_inner=4
    # gave 4x more again): means <= 0.017 (score), 0.023 (stein); covariances <= 0.011
    # (score), 0.040 (stein); so <= 0.006 and 0.010 at num_inner=64. A run at 64 with 20000
    # draws found every error within 1.5 MCSE.
    run_posterior_test(MILD, estimator, 0.0, 1.0)


def test_shifted_scaled_reference_matches_narrow_posterior():
    # NARROW against N(0, I) needs ~1000 steps (Euler covariance bias 0.096 at 100 steps)
    # and the inner weights at t = 0 keep 4 % of the draws. Against N(NARROW_LOC,
    # NARROW_SCALE²) at 100 steps: Euler bias 0 (means), 0.0046 (covariances); the inner
    # estimator's, measured with 40000 draws at num_inner=16, <= 0.011 and 0.009, so
    # <= 0.003 at 64 (MCSEs 0.022 and 0.032); median inner ESS 46 of 64.
    result = run_posterior_test(NARROW, "score", NARROW_LOC, NARROW_SCALE)
    assert float(np.median(result.stats["inner_ess"])) > 0.5 * 64


def test_result_converts_to_arviz_with_constrained_posterior_and_stats():
    def model(y):
        location = numpyro.sample("location", dist.Normal(0.0, 1.0))
        spread = numpyro.sample("spread", dist.HalfNormal(1.0))
        with numpyro.plate("obs_id", y.shape[0]):
            numpyro.sample("y", dist.Normal(location, spread), obs=y)

    target = bc.Target.from_numpyro(model, jnp.array([0.3, -0.2, 0.8, 0.1]))
    kwargs = dict(num_samples=30, num_chains=3, num_steps=20, num_inner=16, key=2)
    result = schrodinger_follmer(target, chunk_size=7, progress=True, **kwargs)
    tree = result.to_arviz()
    assert sorted(tree.children) == ["log_likelihood", "observed_data", "posterior", "sample_stats"]
    assert dict(tree.posterior.sizes) == {"chain": 3, "draw": 30}
    assert sorted(tree.sample_stats.data_vars) == ["diverging", "inner_ess", "lp"]
    assert tree.log_likelihood["y"].dims == ("chain", "draw", "obs_id")
    assert bool((tree.posterior["spread"] > 0).all())  # constrained through the Target
    ess = tree.sample_stats["inner_ess"]
    assert bool(((ess >= 1.0 - 1e-4) & (ess <= 16.0 + 1e-3)).all())
    assert tree.posterior.attrs["method"] == "schrodinger_follmer"
    # Particle p at step k uses fold_in(key_p, k): the chunking does not change the draws.
    unchunked = schrodinger_follmer(target, progress=False, **kwargs)
    np.testing.assert_allclose(
        unchunked.positions["spread"], result.positions["spread"], rtol=1e-5, atol=1e-6
    )


def test_bad_arguments_raise_errors_naming_them():
    target = MILD.target()
    run = lambda **kwargs: schrodinger_follmer(target, **{"key": 0, "progress": False, **kwargs})  # noqa: E731
    for name, value in [
        ("num_samples", 0),
        ("num_chains", -1),
        ("num_steps", 2.5),
        ("num_inner", True),
        ("chunk_size", 0),
    ]:
        with pytest.raises(ArgumentError, match=name):
            run(**{name: value})
    with pytest.raises(ArgumentError, match="estimator"):
        run(estimator="gradient")
    with pytest.raises(ArgumentError, match="scale"):
        run(scale=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ArgumentError, match="loc"):
        run(loc=np.nan)
    with pytest.raises(ShapeError, match="scale"):
        run(scale=np.ones(2))
    with pytest.raises(ArgumentError, match="target"):
        schrodinger_follmer(regression, key=0)


def test_discrete_latents_and_nonfinite_densities_are_rejected():
    def mixture():
        numpyro.sample("z", dist.Bernoulli(0.5))

    with pytest.raises(DiscreteLatentError, match="'z'"):
        schrodinger_follmer(bc.Target.from_numpyro(mixture), key=0, estimator="stein")
    # -inf at the starting point loc = 0.
    logarithm = bc.Target.from_logdensity(lambda p: jnp.log(p["x"]), {"x": 1.0})
    with pytest.raises(InitializationError, match="at loc"):
        schrodinger_follmer(logarithm, key=0, progress=False)
    # Finite at 0, NaN at some of the first step's inner draws.
    holey = bc.Target.from_logdensity(
        lambda p: jnp.where(p["x"] > 1.0, jnp.nan, -0.5 * p["x"] ** 2), {"x": 0.0}
    )
    with pytest.raises(InitializationError, match="inner draws"):
        schrodinger_follmer(holey, key=0, progress=False)
