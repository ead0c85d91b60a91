"""The EOT benchmark (Gushchin et al. 2023) rebuilt offline: exact plan, generator, metrics."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy.stats import multivariate_normal

from bayescore.core.errors import ArgumentError, BayescoreError, DataError, ShapeError
from bayescore.metrics.bures import bures_wasserstein, bw_uvp
from bayescore.metrics.eot import (
    GaussianEOT,
    MixtureEOT,
    cbw_uvp,
    cbw_uvp_from_moments,
    eot_gaussian_benchmark,
    eot_mixture_benchmark,
    ground_truth_floor,
    mixture_eot,
)
from bayescore.metrics.moments import zscore_bound


@pytest.fixture(scope="module")
def small():
    return eot_mixture_benchmark(dim=2, epsilon=0.1)


@pytest.fixture(scope="module")
def small_wide():
    return eot_mixture_benchmark(dim=2, epsilon=1.0)


@pytest.fixture(scope="module")
def medium():
    return eot_mixture_benchmark(dim=16, epsilon=1.0)


def random_spd(rng, dim, low=0.3, high=3.0):
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return (rotation * rng.uniform(low, high, dim)) @ rotation.T


def full_covariance_instance(epsilon=0.7, dim=3, num_components=4, seed=3):
    """A MixtureEOT with non-isotropic potential covariances, built directly (no moment draws)."""
    rng = np.random.default_rng(seed)
    return MixtureEOT(
        epsilon=epsilon,
        input_weights=jnp.asarray([0.3, 0.7]),
        input_means=jnp.asarray(rng.normal(size=(2, dim))),
        input_covariances=jnp.asarray(np.stack([random_spd(rng, dim) for _ in range(2)])),
        potential_weights=jnp.asarray(rng.uniform(0.2, 2.0, num_components)),
        potential_means=jnp.asarray(1.5 * rng.normal(size=(num_components, dim))),
        potential_covariances=jnp.asarray(
            np.stack([random_spd(rng, dim) for _ in range(num_components)])
        ),
        test_inputs=jnp.asarray(rng.normal(size=(5, dim))),
        y_mean=jnp.zeros(dim),
        y_covariance=jnp.eye(dim),
    )


def reference_plan(benchmark, x):
    """§2.2 of the notes term by term in float64: w_k(x), Λ_k(Σ_k⁻¹μ_k + x/ε), Λ_k."""
    epsilon, dim = benchmark.epsilon, benchmark.dim
    log_weights, means, covariances = [], [], []
    for p, mu, sigma in zip(
        np.asarray(benchmark.potential_weights),
        np.asarray(benchmark.potential_means),
        np.asarray(benchmark.potential_covariances),
        strict=True,
    ):
        shifted = sigma + epsilon * np.eye(dim)
        log_weights.append(np.log(p) + multivariate_normal(mu, shifted).logpdf(x))
        precision = np.linalg.inv(sigma)
        covariance = np.linalg.inv(precision + np.eye(dim) / epsilon)
        means.append((precision @ mu + x / epsilon) @ covariance)
        covariances.append(covariance)
    log_weights = np.stack(log_weights, -1)
    weights = np.exp(log_weights - scipy.special.logsumexp(log_weights, -1, keepdims=True))
    return weights, np.stack(means, -2), np.stack(covariances)


# ------------------------------------------------------------------ the exact plan


def test_conditional_moments_match_a_million_draws_of_the_sampler(small_wide):
    # Four inputs (three test inputs and the origin), each 250 times in a block of 1000 rows
    # (the protocol's shape, whose compiled sampler the floor test reuses), drawn 1000 times
    # per row in 4 calls: 10⁶ draws per input.
    points = jnp.concatenate([small_wide.test_inputs[:3], jnp.zeros((1, 2))])
    x = jnp.repeat(points, 250, axis=0)
    draws = np.concatenate(
        [
            np.asarray(small_wide.sample_conditional(jax.random.key(k), x, 1000), np.float64)
            .reshape(1000, 4, 250, 2)
            .transpose(0, 2, 1, 3)
            .reshape(250_000, 4, 2)
            for k in range(4)
        ]
    )
    num_draws = draws.shape[0]
    mean, covariance = (
        np.asarray(part, np.float64)[::250] for part in small_wide.conditional_moments(x)
    )
    centred = draws - mean  # about the exact mean: E[(y-m)(y-m)ᵀ] = Σ exactly
    products = centred[..., :, None] * centred[..., None, :]
    # i.i.d. draws: the standard error of a mean of n draws is sd/√n, with sd of the draws
    # (the exact one for the mean, the sample one of the products for the covariance).
    mean_z = (draws.mean(0) - mean) / np.sqrt(np.diagonal(covariance, 0, -2, -1) / num_draws)
    covariance_z = (products.mean(0) - covariance) / (products.std(0) / np.sqrt(num_draws))
    rows, cols = np.triu_indices(2)
    zscores = np.concatenate([mean_z.ravel(), covariance_z[:, rows, cols].ravel()])
    # 4 inputs × (2 means + 3 covariance entries): Bonferroni bound over the 20 z-scores.
    assert num_draws == 10**6
    assert np.max(np.abs(zscores)) < zscore_bound(zscores.size)


@eqx.filter_jit
def components(benchmark, x):
    return *benchmark.conditional_components(x), benchmark.lightsb_parameters()


def test_plan_components_and_lightsb_map_are_exact_in_float64():
    with jax.enable_x64(True):
        benchmark = full_covariance_instance()
        x = np.random.default_rng(0).normal(size=(6, 3))
        weights, means, covariances = reference_plan(benchmark, x)
        log_weights, got_means, got_covariances, lightsb = components(benchmark, x)
        np.testing.assert_allclose(np.exp(log_weights), weights, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got_means, means, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got_covariances, covariances, rtol=0, atol=1e-10)

        # The plan written with LightSB's parameters (arXiv:2310.01174, §3 / notes §1.2).
        log_alpha, r, s = (np.asarray(part) for part in lightsb)
        epsilon = benchmark.epsilon
        logits = log_alpha + (
            np.einsum("bi,kij,bj->bk", x, s, x) + 2.0 * np.einsum("ki,bi->bk", r, x)
        ) / (2.0 * epsilon)
        lightsb_weights = np.exp(logits - scipy.special.logsumexp(logits, -1, keepdims=True))
        np.testing.assert_allclose(lightsb_weights, weights, rtol=0, atol=1e-10)
        np.testing.assert_allclose(r + np.einsum("kij,bj->bki", s, x), means, rtol=0, atol=1e-10)
        np.testing.assert_allclose(epsilon * s, covariances, rtol=0, atol=1e-10)


def lightsb_drift(log_alpha, r, s, epsilon, x, t):
    """LightSB's closed-form drift (notes §1.4), differentiated by autograd."""
    dim = x.shape[-1]
    precision = jnp.linalg.inv(epsilon * s)  # (εS_k)⁻¹

    def log_h(point):
        a = t / (epsilon * (1.0 - t)) * jnp.eye(dim) + precision
        c = point / (epsilon * (1.0 - t)) + jnp.einsum("kij,kj->ki", precision, r)
        quadratic = 0.5 * jnp.einsum("ki,ki->k", c, jnp.linalg.solve(a, c[..., None])[..., 0])
        offset = jnp.einsum("ki,ki->k", r, jnp.linalg.solve(s, r[..., None])[..., 0])
        terms = (
            log_alpha
            - 0.5 * jnp.linalg.slogdet(s)[1]
            - 0.5 * jnp.linalg.slogdet(a)[1]
            + quadratic
            - offset / (2.0 * epsilon)
        )
        return jax.nn.logsumexp(terms)

    return jax.vmap(lambda point: -point / (1.0 - t) + epsilon * jax.grad(log_h)(point))(x)


@eqx.filter_jit
def both_drifts(benchmark, x, t):
    """The benchmark's drift at scalar t and at per-row t, and LightSB's."""
    expected = lightsb_drift(*benchmark.lightsb_parameters(), benchmark.epsilon, x, t)
    return benchmark.drift(x, t), benchmark.drift(x, jnp.full(x.shape[0], t)), expected


def test_drift_equals_the_lightsb_drift_of_the_mapped_parameters():
    with jax.enable_x64(True):
        benchmark = full_covariance_instance()
        x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)))
        for t in (0.0, 0.4, 0.9):
            drift, per_row, expected = both_drifts(benchmark, x, jnp.asarray(t))
            np.testing.assert_allclose(drift, expected, rtol=0, atol=1e-10)
            np.testing.assert_allclose(per_row, expected, rtol=0, atol=1e-10)


def test_y_moments_match_draws_of_p1(small_wide):
    num_draws = 10**6
    y = np.asarray(small_wide.sample_y(jax.random.key(3), num_draws), np.float64)
    mean, covariance = (
        np.asarray(part, np.float64)
        for part in small_wide.conditional_moments(small_wide.test_inputs)
    )
    y_mean = np.asarray(small_wide.y_mean, np.float64)
    # y_var's Rao–Blackwellised estimate averages f(x) = tr Σ*(x) + |m*(x) - E y|² over 10⁵
    # draws of P0; its standard error is sd(f)/√10⁵, with sd(f) estimated at the 1000 test
    # inputs (draws of P0). The direct estimate's is sd(|y - E y|²)/√n. Both errors add.
    f = np.trace(covariance, axis1=-2, axis2=-1) + np.sum((mean - y_mean) ** 2, -1)
    direct = np.sum((y - y.mean(0)) ** 2, -1)
    error = np.sqrt(f.var() / 100_000 + direct.var() / num_draws)
    assert abs(direct.mean() - float(small_wide.y_var)) < 4.0 * error
    # Means per coordinate: the same two errors, sd(m*_i)/√10⁵ and sd(y_i)/√n.
    mean_error = np.sqrt(mean.var(0) / 100_000 + y.var(0) / num_draws)
    assert np.max(np.abs(y.mean(0) - y_mean) / mean_error) < zscore_bound(small_wide.dim)


# ------------------------------------------------------------------ the generator


def test_generator_is_deterministic_and_shares_p0_across_epsilon(small, small_wide):
    again = eot_mixture_benchmark(dim=2, epsilon=0.1, seed=0)
    for a, b in zip(jax.tree.leaves(small), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    for name in ("input_weights", "input_means", "input_covariances", "test_inputs"):
        np.testing.assert_array_equal(getattr(small, name), getattr(small_wide, name))
    assert not np.array_equal(small.potential_weights, small_wide.potential_weights)
    other_seed = eot_mixture_benchmark(dim=2, epsilon=0.1, seed=1)
    assert not np.array_equal(small.input_weights, other_seed.input_weights)


def test_generator_follows_the_recipe(small, medium):
    for benchmark, scale in ((small, 0.5), (medium, 1.0)):  # c(0.1, 2) and c(1, 16)
        dim = benchmark.dim
        for means, grid in (
            (benchmark.input_means, [-2.0, 0.0, 2.0]),
            (benchmark.potential_means, [-2.0, -1.0, 0.0, 1.0, 2.0]),
        ):
            # Every coordinate is a permutation of the symmetric grid.
            np.testing.assert_array_equal(np.sort(np.asarray(means), axis=0).T, [grid] * dim)
        np.testing.assert_allclose(benchmark.input_covariances, [0.25 * np.eye(dim)] * 3)
        np.testing.assert_allclose(
            benchmark.potential_covariances, [(0.5 * scale) ** 2 * np.eye(dim)] * 5
        )
        np.testing.assert_allclose(float(benchmark.input_weights.sum()), 1.0, rtol=1e-6)
        np.testing.assert_allclose(float(benchmark.potential_weights.sum()), 1.0, rtol=1e-6)
        assert benchmark.test_inputs.shape == (1000, dim)
    # The test inputs are draws of P0: the mixture's mean, within 4 standard errors (the
    # variance of one coordinate of P0 is at most 0.25 + 2²).
    expected = np.asarray(medium.input_weights @ medium.input_means)
    error = np.sqrt(4.25 / 1000)
    assert np.max(np.abs(np.asarray(medium.test_inputs).mean(0) - expected)) < 4.0 * error


# ------------------------------------------------------------------ the metrics


def test_constant_mean_predictor_scores_100(small_wide):
    benchmark = small_wide
    y_mean = benchmark.y_mean

    def constant_moments(x):
        return jnp.broadcast_to(y_mean, x.shape), jnp.zeros((benchmark.dim, benchmark.dim))

    analytic = cbw_uvp_from_moments(constant_moments, benchmark)
    # Each test input contributes ½ f(x) = ½(tr Σ*(x) + |m*(x) - E y|²), whose mean over P0 is
    # ½ y_var (law of total variance): the score is 100 up to the Monte Carlo errors of the
    # mean of f over the 1000 test inputs and of y_var (the mean of f over 10⁵ draws of P0):
    # 100 sd(f) √(1/1000 + 1/10⁵) / y_var.
    mean, covariance = benchmark.conditional_moments(benchmark.test_inputs)
    f = np.trace(covariance, axis1=-2, axis2=-1) + np.sum((mean - y_mean) ** 2, -1)
    error = 100.0 * float(np.std(f)) * np.sqrt(1e-3 + 1e-5) / float(benchmark.y_var)
    assert abs(analytic - 100.0) < 4.0 * error

    def constant_draws(key, x, num_samples):
        return jnp.broadcast_to(y_mean, (num_samples, *x.shape))

    # Chunks of 256, the last one padded, as in the analytic variant.
    sampled = cbw_uvp(constant_draws, benchmark, jax.random.key(0), num_samples=10, chunk_size=256)
    assert sampled == pytest.approx(analytic, rel=1e-5)  # empirical covariance 0, mean exact
    # The marginal BW₂²-UVP of a point mass at E[P1]: exactly 100 against P1's moments.
    point_mass = np.broadcast_to(np.asarray(y_mean), (10, benchmark.dim))
    assert bw_uvp(point_mass, (benchmark.y_mean, benchmark.y_covariance)) == pytest.approx(100.0)


def test_exact_moments_score_zero_and_the_floor_is_the_notes_order(small, medium):
    # Exact moments: 0 up to float32 round-off in the BW term's cancellation (traces of order 1).
    assert cbw_uvp_from_moments(small.conditional_moments, small) == pytest.approx(0.0, abs=1e-4)
    # Notes §2.5 (two regenerated instances each): D=2, ε=0.1 → 0.007 %; D=16, ε=1 →
    # 0.10–0.11 %. Instances differ from seed to seed, so the check is the order of magnitude:
    # within a factor 3 of the table.
    floor = ground_truth_floor(small, jax.random.key(0))
    assert 0.007 / 3 < floor < 0.007 * 3
    floor = ground_truth_floor(medium, jax.random.key(0), num_test_inputs=100)
    assert 0.10 / 3 < floor < 0.11 * 3


def test_bures_wasserstein_closed_forms():
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        a, b = random_spd(rng, 4), random_spd(rng, 4)
        m, n = rng.normal(size=4), rng.normal(size=4)
        assert abs(float(bures_wasserstein(m, a, m, a))) < 1e-12
        # 1-D: ½(m̂ - m)² + ½(σ̂ - σ)².
        got = bures_wasserstein(np.ones(1), 4.0 * np.eye(1), np.zeros(1), np.eye(1))
        assert float(got) == pytest.approx(0.5 + 0.5, abs=1e-12)
        # Commuting (diagonal) covariances: ½|m̂ - m|² + ½ Σ (√a_i - √b_i)².
        diag_a, diag_b = rng.uniform(0.1, 3.0, 4), rng.uniform(0.1, 3.0, 4)
        expected = 0.5 * np.sum((m - n) ** 2) + 0.5 * np.sum(
            (np.sqrt(diag_a) - np.sqrt(diag_b)) ** 2
        )
        got = bures_wasserstein(m, np.diag(diag_a), n, np.diag(diag_b))
        assert float(got) == pytest.approx(expected, abs=1e-12)
        # General: the reference code's formula with scipy's sqrtm.
        root = scipy.linalg.sqrtm(a).real
        expected = (
            0.5 * np.sum((m - n) ** 2)
            + 0.5 * np.trace(a)
            + 0.5 * np.trace(b)
            - np.trace(scipy.linalg.sqrtm(root @ b @ root).real)
        )
        assert float(bures_wasserstein(m, a, n, b)) == pytest.approx(expected, abs=1e-10)
        batched = bures_wasserstein(np.stack([m, n]), np.stack([a, b]), m, a)
        assert batched.shape == (2,)
        assert float(batched[1]) == pytest.approx(float(bures_wasserstein(n, b, m, a)), abs=1e-12)


def test_gaussian_instance_matches_the_closed_form():
    with jax.enable_x64(True):
        benchmark = eot_gaussian_benchmark(dim=3, epsilon=0.5)
        assert isinstance(benchmark, GaussianEOT)
        bridge = benchmark.bridge
        mean0, cov0 = np.asarray(bridge.mean0), np.asarray(bridge.cov0)
        mean1, cov1 = np.asarray(bridge.mean1), np.asarray(bridge.cov1)
        assert np.linalg.cond(cov0) < 16.0 and np.linalg.cond(cov1) < 16.0
        # Notes §3: C = ½ Σ0^½ (4 Σ0^½ Σ1 Σ0^½ + ε² I)^½ Σ0^-½ − ε/2 I, conditional
        # N(μ1 + CᵀΣ0⁻¹(x − μ0), Σ1 − CᵀΣ0⁻¹C).
        epsilon = 0.5
        root0 = scipy.linalg.sqrtm(cov0).real
        middle = scipy.linalg.sqrtm(4.0 * root0 @ cov1 @ root0 + epsilon**2 * np.eye(3)).real
        cross = 0.5 * root0 @ middle @ np.linalg.inv(root0) - 0.5 * epsilon * np.eye(3)
        gain = cross.T @ np.linalg.inv(cov0)
        x = np.asarray(benchmark.test_inputs[:4])
        mean, covariance = benchmark.conditional_moments(x)
        np.testing.assert_allclose(mean, mean1 + (x - mean0) @ gain.T, rtol=0, atol=1e-9)
        np.testing.assert_allclose(covariance, [cov1 - gain @ cross] * 4, rtol=0, atol=1e-9)
        assert float(benchmark.y_var) == pytest.approx(np.trace(cov1), rel=1e-12)
        log_alpha, r, s = benchmark.lightsb_parameters()
        np.testing.assert_allclose(epsilon * s[0], cov1 - gain @ cross, rtol=0, atol=1e-9)
        np.testing.assert_allclose(r[0] + x @ s[0].T, mean, rtol=0, atol=1e-9)
        # The interface the metrics use, as for the mixtures (the floor runs sample_conditional).
        assert benchmark.sample_y(jax.random.key(1), 5).shape == (5, 3)
        assert benchmark.drift(benchmark.test_inputs[:2], 0.3).shape == (2, 3)
        assert cbw_uvp_from_moments(benchmark.conditional_moments, benchmark) < 1e-10
        floor = ground_truth_floor(benchmark, jax.random.key(0), num_test_inputs=50)
        assert 0.0 < floor < 1.0


# ------------------------------------------------------------------ bad input


def test_bad_input_raises_errors_naming_the_argument(small):
    with pytest.raises(ArgumentError, match="dim"):
        eot_mixture_benchmark(dim=3, epsilon=1.0)
    with pytest.raises(ArgumentError, match="epsilon"):
        eot_mixture_benchmark(dim=2, epsilon=0.5)
    with pytest.raises(ShapeError, match="x must have shape"):
        small.conditional_moments(jnp.zeros((4, 3)))
    with pytest.raises(ShapeError, match="x must have shape"):
        small.sample_conditional(jax.random.key(0), jnp.zeros(5), 2)
    with pytest.raises(ArgumentError, match="num_test_inputs"):
        cbw_uvp_from_moments(small.conditional_moments, small, num_test_inputs=1001)

    def diverged(key, x, num_samples):
        return jnp.full((num_samples, *x.shape), jnp.nan)

    with pytest.raises(DataError, match="sample_conditional"):
        cbw_uvp(diverged, small, jax.random.key(0), num_samples=4, num_test_inputs=10)

    def transposed(key, x, num_samples):
        return jnp.zeros((x.shape[0], num_samples, x.shape[1]))

    with pytest.raises(ShapeError, match="sample_conditional"):
        cbw_uvp(transposed, small, jax.random.key(0), num_samples=4, num_test_inputs=10)
    with pytest.raises(DataError, match="model_samples"):
        bw_uvp(np.array([[0.0, np.nan], [1.0, 2.0]]), (np.zeros(2), np.eye(2)))
    with pytest.raises(ShapeError, match="reference"):
        bw_uvp(np.zeros((5, 2)), (np.zeros(3), np.eye(3)))
    with pytest.raises(DataError, match="potential_weights"):
        mixture_eot(
            np.ones(1), np.zeros((1, 1)), np.eye(1)[None],
            -np.ones(1), np.zeros((1, 1)), np.eye(1)[None],
            1.0,
        )  # fmt: skip
    with pytest.raises(BayescoreError, match="epsilon"):
        eot_gaussian_benchmark(dim=2, epsilon=-1.0)
