"""Langevin samplers against exact answers: conjugate and Gaussian posteriors, ULA's known
bias, BAOAB's exact configurational variance, BlackJAX's MALA draw for draw."""

import textwrap

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy.stats import chi2, norm

import bayescore as bc
from bayescore.core.errors import ArgumentError, DiscreteLatentError, ShapeError
from bayescore.metrics import covariance_zscores, mean_zscores, zscore_bound
from tests.conftest import run_on_four_cpu_devices


def fixed(method, **kwargs):
    """``method`` with a fixed step size and identity mass (no adaptation)."""
    return method(adapt_step_size=False, adapt_mass_matrix=False, **kwargs)


def gaussian_target(scales):
    scales = jnp.asarray(scales, dtype=jnp.float32)
    return bc.Target.from_logdensity(
        lambda p: -0.5 * jnp.sum((p["x"] / scales) ** 2), {"x": jnp.zeros(scales.shape)}
    )


def ill_conditioned_gaussian(dim=50, condition_number=1000.0, seed=0):
    """A rotated Gaussian whose covariance eigenvalues span ``condition_number``."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    eigenvalues = np.logspace(-np.log10(condition_number), 0.0, dim)
    covariance = (rotation * eigenvalues) @ rotation.T
    covariance = (covariance + covariance.T) / 2
    mean = rng.normal(size=dim)
    precision = jnp.asarray(np.linalg.inv(covariance), dtype=jnp.float32)
    centre = jnp.asarray(mean, dtype=jnp.float32)
    target = bc.Target.from_logdensity(
        lambda p: -0.5 * (p["x"] - centre) @ precision @ (p["x"] - centre), {"x": jnp.zeros(dim)}
    )
    return target, mean, covariance, rotation


def test_mala_with_identity_mass_repeats_blackjax_mala_draw_for_draw():
    target = gaussian_target([0.5, 1.0, 3.0])
    kwargs = dict(num_samples=500, num_warmup=0, num_chains=3, key=4, progress=False)
    ours = bc.sample(fixed(bc.inference.mala, step_size=0.2), target, **kwargs)
    theirs = bc.sample(blackjax.mala(target.logdensity, 0.2), target, **kwargs)
    # Same proposals and the same accept decisions; the arithmetic may differ in the last bit
    # (BlackJAX's step size is a compile-time constant, bayescore's a tuned array).
    np.testing.assert_array_equal(ours.stats["is_accepted"], theirs.stats["is_accepted"])
    np.testing.assert_allclose(ours.positions["x"], theirs.positions["x"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        ours.stats["acceptance_rate"], theirs.stats["acceptance_rate"], rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize(
    "method",
    [
        bc.inference.mala(),
        bc.inference.mala(dense_mass=True),
        bc.inference.malt(dense_mass=True),
        bc.inference.malt(friction=0.0),
    ],
    ids=["mala-diag", "mala-dense", "malt-dense", "malt-hmc"],
)
def test_adjusted_samplers_match_conjugate_linear_regression(method, linear_regression):
    mean, covariance = linear_regression.posterior()
    problem = linear_regression
    target = bc.Target.from_numpyro(problem.model, problem.x, problem.y)
    result = bc.sample(
        method, target, num_samples=4000, num_warmup=1000, num_chains=4, key=11, progress=False
    )
    draws = np.asarray(result.positions["weights"])
    assert np.all(np.abs(mean_zscores(draws, mean)) < 4)
    assert np.all(np.abs(covariance_zscores(draws, mean, covariance)) < 4)
    assert not bool(result.stats["diverging"].any())


@pytest.mark.parametrize(
    "method, num_warmup, num_samples",
    [
        # MALA's dense-mass warmup is slow on κ = 1000: the Welford estimate needs a few
        # effective draws per dimension, and MALA decorrelates in O(κ) steps before it has one.
        (bc.inference.mala(dense_mass=True), 16000, 8000),
        (bc.inference.malt(dense_mass=True), 1000, 2000),
    ],
    ids=["mala", "malt"],
)
def test_adjusted_samplers_on_50d_gaussian_with_condition_number_1000(
    method, num_warmup, num_samples
):
    target, mean, covariance, rotation = ill_conditioned_gaussian()
    result = bc.sample(
        method,
        target,
        num_samples=num_samples,
        num_warmup=num_warmup,
        num_chains=4,
        key=7,
        progress=False,
    )
    draws = np.asarray(result.positions["x"], dtype=np.float64)
    # The 50 means and the 50 variances along the principal axes, each family checked at the
    # false-alarm rate of one 4-MCSE test (Bonferroni: |z| < 4.84 for 50 moments), and the sum
    # of their squared z-scores against its chi-square(50) quantile at the same rate, which
    # catches a small bias shared by many moments that no single z-score shows.
    bound, chi2_bound = zscore_bound(50), chi2.isf(2 * norm.sf(4.0), 50)
    z_means = mean_zscores(draws, mean)
    assert np.all(np.abs(z_means) < bound)
    assert np.sum(z_means**2) < chi2_bound
    principal = (draws - mean) @ rotation
    axis_variances = np.array(
        [
            covariance_zscores(
                principal[..., i], 0.0, np.diag(rotation.T @ covariance @ rotation)[i : i + 1, None]
            )[0, 0]
            for i in range(50)
        ]
    )
    assert np.all(np.abs(axis_variances) < bound)
    assert np.sum(axis_variances**2) < chi2_bound
    # All 1275 distinct covariance entries, at the same family-wise false-alarm rate.
    z = covariance_zscores(draws, mean, covariance)[np.triu_indices(50)]
    assert np.all(np.abs(z) < zscore_bound(z.size))
    assert not bool(result.stats["diverging"].any())


@pytest.mark.parametrize("scale, step_size", [(1.0, 0.5), (2.0, 1.0), (0.5, 0.05)])
def test_ula_stationary_variance_has_its_known_discretisation_bias(scale, step_size):
    # For N(0, s²), ULA is the AR(1) chain x' = (1 - h/s²) x + sqrt(2h) ξ, whose stationary
    # variance is 2h / (1 - (1 - h/s²)²) = s² / (1 - h/(2 s²)).
    result = bc.sample(
        fixed(bc.inference.ula, step_size=step_size),
        gaussian_target([scale]),
        num_samples=20000,
        num_warmup=500,
        num_chains=4,
        key=1,
        progress=False,
    )
    draws = np.asarray(result.positions["x"])
    biased = scale**2 / (1.0 - step_size / (2.0 * scale**2))
    assert abs(mean_zscores(draws, 0.0)[0]) < 4
    assert abs(covariance_zscores(draws, 0.0, np.array([[biased]]))[0, 0]) < 4
    # ... and the sampler is not simply exact: s² itself is many standard errors away.
    assert abs(covariance_zscores(draws, 0.0, np.array([[scale**2]]))[0, 0]) > 8
    assert bool(result.stats["is_accepted"].all())


def _kinetic_draws(splitting, scales, step_size, num_steps=40000, num_chains=4):
    """Positions and momenta of fixed-parameter underdamped Langevin on N(0, diag(scales²))."""
    method = fixed(bc.inference.underdamped, splitting=splitting, step_size=step_size)
    target = gaussian_target(scales)
    kernel = method.kernel(target, method.prepare(jnp.asarray(step_size), jnp.ones(len(scales))))

    def chain(key):
        init_key, run_key = jax.random.split(key)
        state = kernel.init({"x": jnp.zeros(len(scales))}, init_key)

        def body(state, key):
            state, _ = kernel.step(key, state)
            return state, (state.position["x"], state.momentum)

        return jax.lax.scan(body, state, jax.random.split(run_key, num_steps))[1]

    positions, momenta = jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(3), num_chains))
    burn = 500
    return np.asarray(positions[:, burn:]), np.asarray(momenta[:, burn:])


@pytest.mark.parametrize("splitting", ["baoab", "obabo"])
def test_kinetic_splittings_have_their_known_gaussian_marginals(splitting):
    # Harmonic target N(0, s²) with unit mass, frequency ω = 1/s, c = hω/2 < 1, at the end
    # of each step (Leimkuhler & Matthews 2013, Sec. 4):
    #   BAOAB: Var x = s² exactly (for every stable h), Var p = 1 - c²;
    #   OBABO: Var p = 1 exactly, Var x = s² / (1 - c²).
    scales = np.array([0.7, 1.0, 2.0])
    step_size = 1.0
    positions, momenta = _kinetic_draws(splitting, scales, step_size)
    shrink = 1.0 - (step_size / scales) ** 2 / 4.0
    if splitting == "baoab":
        position_variance, momentum_variance = scales**2, shrink
    else:
        position_variance, momentum_variance = scales**2 / shrink, np.ones(3)
    for draws, variance in ((positions, position_variance), (momenta, momentum_variance)):
        assert np.all(np.abs(mean_zscores(draws, 0.0)) < 4)
        z = np.diag(covariance_zscores(draws, 0.0, np.diag(variance)))
        assert np.all(np.abs(z) < 4), (splitting, z)
    # The biased marginal is visibly biased (the test can tell the two splittings apart).
    wrong = positions if splitting == "obabo" else momenta
    exact_variance = scales**2 if splitting == "obabo" else np.ones(3)
    assert np.abs(np.diag(covariance_zscores(wrong, 0.0, np.diag(exact_variance)))).max() > 8


@pytest.mark.parametrize(
    "method, target_rate",
    [
        (bc.inference.mala(), 0.574),
        (bc.inference.malt(), 0.65),
        (bc.inference.ula(), 0.9),
        (bc.inference.underdamped(), 0.9),
        (bc.inference.underdamped(splitting="obabo"), 0.9),
    ],
    ids=["mala", "malt", "ula", "baoab", "obabo"],
)
def test_warmup_tunes_step_size_to_target_acceptance_and_mass_to_variance(method, target_rate):
    result = bc.sample(
        method,
        gaussian_target([3.0, 3.0, 3.0, 3.0]),
        num_samples=1000,
        num_warmup=1000,
        num_chains=2,
        key=0,
        progress=False,
    )
    step_size, preconditioner = result.parameters
    # Welford over the last slow window (~500 correlated draws): within 40% of the variance 9.
    np.testing.assert_allclose(preconditioner.inverse_mass_matrix, 9.0, rtol=0.4)
    # Sampling uses dual averaging's averaged step, which lands above the target rate
    # (as in Stan), never below it by more than noise.
    assert target_rate - 0.05 < float(result.stats["acceptance_rate"].mean()) < 0.97
    np.testing.assert_array_equal(result.stats["step_size"][:, 0], step_size)


def test_fixed_settings_are_kept_and_a_given_mass_matrix_is_used():
    matrix = np.diag([4.0, 1.0])
    method = bc.inference.mala(
        step_size=0.3, adapt_step_size=False, inverse_mass_matrix=matrix, adapt_mass_matrix=False
    )
    assert method.dense_mass
    result = bc.sample(
        method,
        gaussian_target([2.0, 1.0]),
        num_samples=10,
        num_warmup=50,
        num_chains=2,
        key=0,
        progress=False,
    )
    np.testing.assert_allclose(result.stats["step_size"], 0.3)
    np.testing.assert_allclose(result.parameters[1].inverse_mass_matrix[0], matrix)


def test_unstable_step_sizes_are_reported_as_divergences():
    target = gaussian_target([1.0])
    # ULA is unstable for h > 2 s²: the chain explodes and every step is flagged.
    result = bc.sample(
        fixed(bc.inference.ula, step_size=2.5),
        target,
        num_samples=50,
        num_warmup=0,
        num_chains=2,
        key=0,
        progress=False,
    )
    assert bool(result.stats["diverging"][:, -10:].all())
    # MALA rejects such proposals, stays put, and reports them.
    result = bc.sample(
        fixed(bc.inference.mala, step_size=1e4),
        target,
        num_samples=50,
        num_warmup=0,
        num_chains=2,
        key=0,
        progress=False,
    )
    assert bool(result.stats["diverging"].all()) and not bool(result.stats["is_accepted"].any())
    assert np.all(np.isfinite(result.positions["x"]))


def test_result_converts_to_arviz_with_langevin_sample_stats(linear_regression):
    problem = linear_regression
    target = bc.Target.from_numpyro(problem.model, problem.x, problem.y)
    result = bc.sample(
        bc.inference.malt(num_steps=4),
        target,
        num_samples=100,
        num_warmup=100,
        num_chains=2,
        key=0,
        progress=False,
    )
    tree = result.to_arviz()
    stats = set(tree["sample_stats"].data_vars)
    assert {"lp", "acceptance_rate", "diverging", "step_size", "n_steps", "energy_error"} <= stats
    assert tree["posterior"]["weights"].shape == (2, 100, 3)


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ArgumentError, match="splitting"):
        bc.inference.underdamped(splitting="leapfrog")
    with pytest.raises(ArgumentError, match="friction"):
        bc.inference.underdamped(friction=0.0)
    with pytest.raises(ArgumentError, match="friction"):
        bc.inference.malt(friction=-1.0)
    with pytest.raises(ArgumentError, match="step_size"):
        bc.inference.mala(step_size=0.0)
    with pytest.raises(ArgumentError, match="target_acceptance_rate"):
        bc.inference.ula(target_acceptance_rate=1.0)
    with pytest.raises(ArgumentError, match="num_steps"):
        bc.inference.malt(num_steps=0)
    with pytest.raises(ArgumentError, match="positive definite"):
        bc.inference.mala(inverse_mass_matrix=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ShapeError, match="dense_mass"):
        bc.inference.mala(inverse_mass_matrix=np.ones(2), dense_mass=True)
    with pytest.raises(ShapeError, match="inverse_mass_matrix"):
        bc.sample(
            bc.inference.mala(inverse_mass_matrix=np.ones(3)),
            gaussian_target([1.0, 1.0]),
            num_samples=5,
            num_warmup=5,
            num_chains=1,
            key=0,
            progress=False,
        )

    def mixture(y):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(z, 1.0), obs=y)

    with pytest.raises(DiscreteLatentError, match="z"):
        bc.sample(
            bc.inference.malt(),
            bc.Target.from_numpyro(mixture, 0.3),
            num_samples=5,
            num_warmup=5,
            num_chains=1,
            key=0,
            progress=False,
        )


MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    import bayescore as bc
    assert len(jax.devices()) == 4
    scales = jnp.array([0.5, 1.0, 2.0])
    target = bc.Target.from_logdensity(lambda p: -0.5 * jnp.sum((p["x"] / scales) ** 2),
                                       {"x": jnp.zeros(3)})
    kwargs = dict(num_samples=200, num_warmup=100, num_chains=8, key=5, progress=False)
    fixed = dict(adapt_step_size=False, adapt_mass_matrix=False, step_size=0.3,
                 inverse_mass_matrix=np.array([0.25, 1.0, 4.0]))
    # Warmup without adaptation runs the same sharded steps, so only MALA's is compared;
    # each warmup program is compiled twice (single, sharded), which is most of this script.
    for method, num_warmup in ((bc.inference.mala(**fixed), 100), (bc.inference.ula(**fixed), 0),
                               (bc.inference.underdamped(**fixed), 0),
                               (bc.inference.malt(num_steps=3, **fixed), 0)):
        single = bc.sample(method, target, **{**kwargs, "num_warmup": num_warmup})
        sharded = bc.sample(method, target, devices=4, **{**kwargs, "num_warmup": num_warmup})
        assert len(sharded.positions["x"].sharding.device_set) == 4
        np.testing.assert_allclose(single.positions["x"], sharded.positions["x"], rtol=1e-4,
                                   atol=1e-4)
        for name in single.stats:
            np.testing.assert_allclose(single.stats[name], sharded.stats[name], rtol=1e-4,
                                       atol=1e-4)
    adapted = bc.sample(bc.inference.malt(dense_mass=True), target, devices=4, **kwargs)
    assert adapted.parameters[1].inverse_mass_matrix.shape == (8, 3, 3)
    print("LANGEVIN MULTI-DEVICE OK")
""")


def test_langevin_chains_sharded_over_four_devices_equal_single_device_run():
    run_on_four_cpu_devices(MULTI_DEVICE_SCRIPT, "LANGEVIN MULTI-DEVICE OK")
