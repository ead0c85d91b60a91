"""The closed-form EOT plan / Schrödinger bridge between Gaussians against exact identities.

Identities in float64 (``jax.enable_x64``): the conditional covariance identity
``Σ1 − CᵀΣ0⁻¹C = εM``, the 1-D formula, the ε → 0 and ε → ∞ limits, the stationarity of the
EOT objective at ``C``, the marginals' end points. Statistical checks (fixed seeds, z-scores in
Monte Carlo standard errors from ``bayescore.metrics``, Bonferroni-bounded by
``zscore_bound``): Euler–Maruyama with the exact drift reproduces ``Σ1`` and ``C``, draws of the
plan have its conditional moments.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from bayescore.core.errors import ArgumentError, DataError, ShapeError
from bayescore.inference.bridge.gaussian import GaussianBridge, gaussian_bridge
from bayescore.metrics import covariance_zscores, mean_zscores, zscore_bound


def random_gaussians(dim, seed):
    rng = np.random.default_rng(seed)

    def spd():
        a = rng.normal(size=(dim, dim))
        return a @ a.T / dim + 0.5 * np.eye(dim)

    return rng.normal(size=dim), spd(), rng.normal(size=dim), spd()


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 10.0])
def test_conditional_covariance_is_epsilon_m_and_m_is_symmetric_positive_definite(epsilon):
    with jax.enable_x64(True):
        mean0, cov0, mean1, cov1 = random_gaussians(4, seed=0)
        bridge = gaussian_bridge(mean0, cov0, mean1, cov1, epsilon)
        c, m = np.asarray(bridge.cross_covariance), np.asarray(bridge.conditional_matrix)
        np.testing.assert_allclose(cov1 - c.T @ np.linalg.solve(cov0, c), epsilon * m, atol=1e-10)
        np.testing.assert_allclose(m, m.T, atol=1e-12)
        np.testing.assert_allclose(m, c.T @ np.linalg.inv(cov0), atol=1e-10)
        assert np.linalg.eigvalsh(m).min() > 0.0
        # The reference's form of C (its matrix square roots by scipy's sqrtm).
        root0 = scipy.linalg.sqrtm(cov0).real
        d_epsilon = scipy.linalg.sqrtm(4 * root0 @ cov1 @ root0 + epsilon**2 * np.eye(4)).real
        expected = 0.5 * root0 @ d_epsilon @ np.linalg.inv(root0) - 0.5 * epsilon * np.eye(4)
        np.testing.assert_allclose(c, expected, atol=1e-10)


@pytest.mark.parametrize(("a", "b", "epsilon"), [(1.0, 1.0, 1.0), (4.0, 0.5, 0.1), (0.3, 2.0, 7.0)])
def test_one_dimensional_cross_covariance(a, b, epsilon):
    with jax.enable_x64(True):
        bridge = gaussian_bridge(np.zeros(1), [[a]], np.ones(1), [[b]], epsilon)
        expected = 0.5 * np.sqrt(4 * a * b + epsilon**2) - epsilon / 2
        np.testing.assert_allclose(bridge.cross_covariance[0, 0], expected, rtol=1e-12)


def test_limits_in_epsilon():
    """ε → 0: the OT cross-covariance Cov(X0, X1) = Σ0 T with the OT map
    T = Σ0^{-½}(Σ0^{½}Σ1Σ0^{½})^{½}Σ0^{-½}; so Cov(X1, X0) = Cᵀ = Σ0^{-½}(Σ0^{½}Σ1Σ0^{½})^{½}Σ0^{½}.
    ε → ∞: C → 0 like Σ0Σ1/ε (the first order of ½(√(4λ + ε²) − ε) = λ/ε − ...)."""
    with jax.enable_x64(True):
        mean0, cov0, mean1, cov1 = random_gaussians(3, seed=1)
        root0 = scipy.linalg.sqrtm(cov0).real
        inverse_root0 = np.linalg.inv(root0)
        middle = scipy.linalg.sqrtm(root0 @ cov1 @ root0).real
        small = gaussian_bridge(mean0, cov0, mean1, cov1, 1e-9)
        np.testing.assert_allclose(
            small.cross_covariance.T, inverse_root0 @ middle @ root0, atol=1e-7
        )
        np.testing.assert_allclose(
            small.cross_covariance, cov0 @ inverse_root0 @ middle @ inverse_root0, atol=1e-7
        )
        large = gaussian_bridge(mean0, cov0, mean1, cov1, 1e7)
        assert np.abs(np.asarray(large.cross_covariance)).max() < 1e-6
        np.testing.assert_allclose(1e7 * large.cross_covariance, cov0 @ cov1, rtol=1e-5)
        # and the value tends to the OT cost W2²/2 (½ for the cost ½‖x − y‖²)
        w2_half = 0.5 * (
            np.sum((mean0 - mean1) ** 2) + np.trace(cov0) + np.trace(cov1) - 2 * np.trace(middle)
        )
        np.testing.assert_allclose(small.cost(), w2_half, atol=1e-6)


def test_cross_covariance_is_stationary_for_the_eot_objective():
    """C minimises −tr C + (ε/2)(log det Σ1 − log det(Σ1 − CᵀΣ0⁻¹C)) (the ε·KL term of a
    Gaussian coupling), and cost() is that objective plus the C-free terms."""
    with jax.enable_x64(True):
        mean0, cov0, mean1, cov1 = random_gaussians(3, seed=2)
        epsilon = 0.7

        def value(c):
            conditional = cov1 - c.T @ jnp.linalg.solve(cov0, c)
            transport = 0.5 * (
                jnp.sum((mean0 - mean1) ** 2) + jnp.trace(cov0) + jnp.trace(cov1) - 2 * jnp.trace(c)
            )
            kl = jnp.linalg.slogdet(cov1)[1] - jnp.linalg.slogdet(conditional)[1]
            return transport + 0.5 * epsilon * kl

        bridge = gaussian_bridge(mean0, cov0, mean1, cov1, epsilon)
        c = bridge.cross_covariance
        np.testing.assert_allclose(jax.grad(value)(c), 0.0, atol=1e-10)
        np.testing.assert_allclose(bridge.cost(), value(c), rtol=1e-12)
        assert float(value(c + 0.05 * jnp.eye(3))) > float(value(c))


def test_marginals_at_the_end_points_and_the_drift_at_zero():
    with jax.enable_x64(True):
        mean0, cov0, mean1, cov1 = random_gaussians(3, seed=3)
        bridge = gaussian_bridge(mean0, cov0, mean1, cov1, 0.5)
        for t, mean, cov in ((0.0, mean0, cov0), (1.0, mean1, cov1)):
            got_mean, got_cov = bridge.marginal(t)
            np.testing.assert_allclose(got_mean, mean, atol=1e-12)
            np.testing.assert_allclose(got_cov, cov, atol=1e-12)
        x = np.random.default_rng(0).normal(size=(5, 3))
        conditional_mean, _ = bridge.conditional(x)
        np.testing.assert_allclose(bridge.drift(x, 0.0), conditional_mean - x, atol=1e-12)


def euler_maruyama(bridge, key, x0, num_steps):
    step_size = 1.0 / num_steps

    def step(x, n):
        noise = jax.random.normal(jax.random.fold_in(key, n), x.shape)
        x = x + bridge.drift(x, n * step_size) * step_size
        return x + jnp.sqrt(bridge.epsilon * step_size) * noise, None

    return jax.lax.scan(step, x0, jnp.arange(num_steps))[0]


def test_euler_maruyama_with_the_exact_drift_reproduces_the_plan():
    """Joint moments of (X0, X1) over 20 000 paths of 200 steps against [[Σ0, C], [Cᵀ, Σ1]].

    The exact covariance recursion of this linear Euler chain puts its bias at 200 steps below
    0.002 on Σ1 (entries up to 1.3) and below 1e-14 on C and the means; one MC standard error
    of a covariance entry is about √(2/20 000)·1.3 ≈ 0.013, so the z-scores are MC noise. The 6
    means and 21 distinct second moments are Bonferroni-bounded."""
    mean0, cov0, mean1, cov1 = random_gaussians(3, seed=0)
    bridge = gaussian_bridge(mean0, cov0, mean1, cov1, 1.0)
    key0, key1 = jax.random.split(jax.random.key(0))
    x0 = jnp.asarray(mean0 + jax.random.normal(key0, (20_000, 3)) @ np.linalg.cholesky(cov0).T)
    x1 = jax.jit(euler_maruyama, static_argnums=3)(bridge, key1, x0, 200)
    joint = np.concatenate([np.asarray(x0), np.asarray(x1)], axis=1)[None]
    c = np.asarray(bridge.cross_covariance)
    joint_cov = np.block([[cov0, c], [c.T, cov1]])
    assert np.abs(mean_zscores(joint, np.concatenate([mean0, mean1]))).max() < zscore_bound(6)
    z = covariance_zscores(joint, np.concatenate([mean0, mean1]), joint_cov)
    assert np.abs(z).max() < zscore_bound(21)


def test_sample_log_prob_and_from_samples():
    """10 000 draws of π(·|x) at one x: mean and covariance z-scores (2 + 3 moments)."""
    mean0, cov0, mean1, cov1 = random_gaussians(2, seed=4)
    bridge = gaussian_bridge(mean0, cov0, mean1, cov1, 0.3)
    x = jnp.asarray([0.5, -1.0])
    draws = bridge.sample(jax.random.key(1), jnp.broadcast_to(x, (10_000, 2)))
    mean, cov = bridge.conditional(x)
    assert np.abs(mean_zscores(draws[None], mean)).max() < zscore_bound(2)
    assert np.abs(covariance_zscores(draws[None], mean, cov)).max() < zscore_bound(3)
    with jax.enable_x64(True):
        bridge = gaussian_bridge(mean0, cov0, mean1, cov1, 0.3)
        y = np.random.default_rng(5).normal(size=(4, 2))
        mean, cov = bridge.conditional(np.zeros(2))
        expected = jax.scipy.stats.multivariate_normal.logpdf(y, mean, cov)
        np.testing.assert_allclose(bridge.log_prob(y, np.zeros(2)), expected, rtol=1e-12)
        rows0 = np.random.default_rng(6).normal(size=(50, 2))
        rows1 = 1.0 + 2.0 * np.random.default_rng(7).normal(size=(40, 2))
        baseline = GaussianBridge.from_samples(rows0, rows1, 0.3)
        np.testing.assert_allclose(baseline.mean1, rows1.mean(0), rtol=1e-12)
        np.testing.assert_allclose(baseline.cov0, np.cov(rows0, rowvar=False), rtol=1e-12)


def test_bad_arguments_raise_errors_that_name_them():
    eye = np.eye(2)
    with pytest.raises(ArgumentError, match="epsilon"):
        gaussian_bridge(np.zeros(2), eye, np.zeros(2), eye, 0.0)
    with pytest.raises(ShapeError, match="cov1"):
        gaussian_bridge(np.zeros(2), eye, np.zeros(2), np.eye(3), 1.0)
    with pytest.raises(ShapeError, match="mean0 and mean1"):
        gaussian_bridge(np.zeros(2), eye, np.zeros(3), np.eye(3), 1.0)
    with pytest.raises(DataError, match="cov0 must be positive definite"):
        gaussian_bridge(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), eye, 1.0)
    with pytest.raises(DataError, match="cov0 must be symmetric"):
        gaussian_bridge(np.zeros(2), [[1.0, 0.5], [0.0, 1.0]], np.zeros(2), eye, 1.0)
    with pytest.raises(DataError, match="mean1"):
        gaussian_bridge(np.zeros(2), eye, [np.nan, 0.0], eye, 1.0)
    rows = np.zeros((5, 2))
    rows[3, 1] = np.nan
    with pytest.raises(DataError, match="x1 has NaN .* row 3"):
        GaussianBridge.from_samples(np.ones((5, 2)), rows, 1.0)
    with pytest.raises(ShapeError, match="x0 and x1"):
        GaussianBridge.from_samples(np.ones((5, 2)), np.ones((5, 3)), 1.0)
