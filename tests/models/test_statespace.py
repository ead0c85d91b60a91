"""State-space GPs against dense GP algebra with the same GPJax kernels, in float64.

Smoothed means, covariances and cross-covariances, the log marginal likelihood and its
gradient, and predictions between, on and beyond the grid points must equal dense Gaussian
conditioning to 1e-8 (round-off only: both are exact), for sequential and parallel passes.
"""

import gpjax as gpx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest

from bayescore.core.errors import ArgumentError, BayescoreError, DataError, ShapeError
from bayescore.models import statespace as ss

TOL = 1e-8
NUM_POINTS = 24


def _kernels():
    """Two components: a Matérn-3/2, and a sum Matérn-5/2 + Matérn-1/2."""
    return [
        gpx.kernels.Matern32(lengthscale=0.7, variance=1.3),
        gpx.kernels.Matern52(lengthscale=0.4, variance=0.8)
        + gpx.kernels.Matern12(lengthscale=2.0, variance=0.3),
    ]


def _problem(seed, num_outputs=2):
    rng = np.random.default_rng(seed)
    grid = np.sort(rng.uniform(0.0, 3.0, NUM_POINTS))
    y = rng.normal(size=(NUM_POINTS, num_outputs))
    factor = rng.normal(size=(NUM_POINTS, num_outputs, num_outputs))
    noise = 0.1 * factor @ factor.transpose(0, 2, 1) + 0.05 * np.eye(num_outputs)
    mask = rng.uniform(size=NUM_POINTS) > 0.25
    mask[0] = True
    return grid, y, noise, mask


def dense_covariance(kernels, a, b):
    """Prior covariance of R independent components at points a and b, point-major."""
    m = len(kernels)
    out = np.zeros((len(a) * m, len(b) * m))
    for r, kernel in enumerate(kernels):
        gram = kernel.cross_covariance(jnp.asarray(a)[:, None], jnp.asarray(b)[:, None])
        out[r::m, r::m] = np.asarray(gram)
    return out


class Dense:
    """Dense GP conditioning of R independent components on vector observations."""

    def __init__(self, kernels, grid, y, noise, mask):
        self.kernels, self.grid = kernels, grid
        self.num_outputs = len(kernels)
        observed = np.nonzero(mask)[0]
        m = self.num_outputs
        self.columns = np.concatenate([[s * m + r for r in range(m)] for s in observed])
        block = np.zeros((len(self.columns), len(self.columns)))
        for i, s in enumerate(observed):
            block[i * m : (i + 1) * m, i * m : (i + 1) * m] = noise[s]
        prior = self.covariance(grid, grid)[np.ix_(self.columns, self.columns)]
        self.system = prior + block
        self.y = y[observed].reshape(-1)
        self.alpha = np.linalg.solve(self.system, self.y)

    def covariance(self, a, b):
        return dense_covariance(self.kernels, a, b)

    def posterior(self, query):
        cross = self.covariance(query, self.grid)[:, self.columns]
        mean = cross @ self.alpha
        covariance = self.covariance(query, query) - cross @ np.linalg.solve(self.system, cross.T)
        return mean.reshape(len(query), -1), covariance

    def log_marginal_likelihood(self):
        _, log_det = np.linalg.slogdet(self.system)
        return -0.5 * (self.y @ self.alpha + log_det + len(self.y) * np.log(2 * np.pi))


def _blocks(covariance, num_outputs, offset=0):
    """Per-point (m, m) blocks of a dense (S m, S m) covariance, at lag ``offset``."""
    size = covariance.shape[0] // num_outputs - offset
    return np.stack(
        [
            covariance[
                s * num_outputs : (s + 1) * num_outputs,
                (s + offset) * num_outputs : (s + offset + 1) * num_outputs,
            ]
            for s in range(size)
        ]
    )


smooth = jax.jit(ss.smooth, static_argnames="parallel")
interpolate = jax.jit(ss.interpolate)


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
@pytest.mark.parametrize("seed", [0, 1])
def test_smoother_and_evidence_equal_dense_conditioning(parallel, seed):
    with jax.enable_x64(True):
        kernels = _kernels()
        grid, y, noise, mask = _problem(seed)
        sde = ss.state_space(kernels)
        posterior = smooth(sde, grid, ss.gaussian_observations(y, noise, mask), parallel=parallel)
        dense = Dense(kernels, grid, y, noise, mask)
        mean, covariance = dense.posterior(grid)
        smoothed = posterior.smoothed
        got_mean, got_covariance = ss.marginals(sde, smoothed.means, smoothed.covariances)
        observation = sde.observation
        cross = observation @ smoothed.cross_covariances() @ observation.T
        np.testing.assert_allclose(got_mean, mean, atol=TOL)
        np.testing.assert_allclose(got_covariance, _blocks(covariance, 2), atol=TOL)
        np.testing.assert_allclose(cross, _blocks(covariance, 2, offset=1), atol=TOL)
        assert abs(float(posterior.log_marginal_likelihood) - dense.log_marginal_likelihood()) < TOL


def test_sequential_and_parallel_passes_agree():
    with jax.enable_x64(True):
        grid, y, noise, mask = _problem(3)
        sde = ss.state_space(_kernels())
        sites = ss.gaussian_observations(y, noise, mask)
        a = smooth(sde, grid, sites, parallel=False)
        b = smooth(sde, grid, sites, parallel=True)
        for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(left, right, atol=TOL, rtol=1e-9)


def test_interpolation_and_extrapolation_equal_dense_conditioning():
    with jax.enable_x64(True):
        kernels = _kernels()
        grid, y, noise, mask = _problem(4)
        sde = ss.state_space(kernels)
        posterior = smooth(sde, grid, ss.gaussian_observations(y, noise, mask))
        # left of the grid, on its first, an inner and its last point, between points,
        # beyond the right end, far away, and unsorted
        query = np.array(
            [-1.5, grid[0], grid[7], 0.5 * (grid[5] + grid[6]), grid[-1], grid[-1] + 0.4, 50.0]
        )
        query = np.concatenate([query, [0.3 * grid[2] + 0.7 * grid[3]]])
        mean, covariance = ss.marginals(sde, *interpolate(sde, posterior, query))
        dense_mean, dense_covariance = Dense(kernels, grid, y, noise, mask).posterior(query)
        np.testing.assert_allclose(mean, dense_mean, atol=TOL)
        np.testing.assert_allclose(covariance, _blocks(dense_covariance, 2), atol=TOL)


def test_shared_kernel_components_with_natural_sites_equal_dense_conditioning():
    # Natural (EP-message) sites with a singular precision at some points: the evidence is
    # log ∫ N(U | 0, K) Π exp(-½ UᵀΛU + ηᵀU) dU, computed densely in information form.
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        kernel = gpx.kernels.Matern32(lengthscale=0.5, variance=2.0)
        grid = np.sort(rng.uniform(0.0, 2.0, 12))
        factors = rng.normal(size=(12, 3, 2))  # rank-2 precisions of 3 components
        precision = factors @ factors.transpose(0, 2, 1)
        shift = np.einsum("sij,sj->si", factors, rng.normal(size=(12, 2)))  # in their range
        sde = ss.state_space(kernel, num_components=3)
        posterior = smooth(sde, grid, ss.natural_sites(precision, shift))
        prior_covariance = dense_covariance([kernel] * 3, grid, grid)
        site_precision = jsl.block_diag(*precision)
        posterior_covariance = np.linalg.inv(np.linalg.inv(prior_covariance) + site_precision)
        posterior_mean = posterior_covariance @ shift.reshape(-1)
        _, log_det = np.linalg.slogdet(np.eye(36) + prior_covariance @ site_precision)
        evidence = -0.5 * log_det + 0.5 * shift.reshape(-1) @ posterior_mean
        mean, covariance = ss.marginals(
            sde, posterior.smoothed.means, posterior.smoothed.covariances
        )
        np.testing.assert_allclose(mean.reshape(-1), posterior_mean, atol=1e-7)
        np.testing.assert_allclose(covariance, _blocks(posterior_covariance, 3), atol=1e-7)
        assert abs(float(posterior.log_marginal_likelihood) - evidence) < 1e-7


def test_evidence_gradient_equals_dense_gradient():
    with jax.enable_x64(True):
        rng = np.random.default_rng(6)
        grid = jnp.asarray(np.sort(rng.uniform(0.0, 2.0, 15)))
        y = jnp.asarray(rng.normal(size=15))
        sites = ss.gaussian_observations(y, jnp.full(15, 0.2))

        def state_space_evidence(log_lengthscale):
            kernel = gpx.kernels.Matern52(lengthscale=jnp.exp(log_lengthscale), variance=1.5)
            return ss.log_marginal_likelihood(ss.state_space(kernel), grid, sites)

        def dense_evidence(log_lengthscale):
            kernel = gpx.kernels.Matern52(lengthscale=jnp.exp(log_lengthscale), variance=1.5)
            gram = kernel.cross_covariance(grid[:, None], grid[:, None]) + 0.2 * jnp.eye(15)
            return jax.scipy.stats.multivariate_normal.logpdf(y, jnp.zeros(15), gram)

        value, grad = jax.jit(jax.value_and_grad(state_space_evidence))(jnp.log(0.3))
        dense_value, dense_grad = jax.value_and_grad(dense_evidence)(jnp.log(0.3))
        assert abs(float(value - dense_value)) < TOL
        assert abs(float(grad - dense_grad)) < 1e-7


@pytest.mark.parametrize(
    "kernel_type", [gpx.kernels.Matern12, gpx.kernels.Matern32, gpx.kernels.Matern52]
)
def test_closed_form_transition_equals_expm_and_lyapunov_holds(kernel_type):
    with jax.enable_x64(True):
        sde = ss.state_space(kernel_type(lengthscale=0.37, variance=1.7), num_components=2)
        gaps = jnp.array([0.0, 1e-4, 0.05, 0.4, 3.0, 40.0])
        transition, noise = sde.discretise(gaps)
        expected = jax.vmap(lambda gap: jsl.expm(sde.drift * gap))(gaps)
        np.testing.assert_allclose(transition, expected, atol=1e-12)
        stationary = sde.stationary_covariance
        np.testing.assert_allclose(
            noise, stationary - expected @ stationary @ expected.transpose(0, 2, 1), atol=1e-12
        )
        diffusion = sde.diffusion @ sde.spectral_density @ sde.diffusion.T
        lyapunov = sde.drift @ stationary + stationary @ sde.drift.T + diffusion
        np.testing.assert_allclose(lyapunov, 0.0, atol=1e-10)


def test_float32_matches_float64():
    grid, y, noise, mask = _problem(7)
    with jax.enable_x64(True):
        sites = ss.gaussian_observations(y, noise, mask)
        reference = jax.tree.map(np.asarray, smooth(ss.state_space(_kernels()), grid, sites))
    for parallel in (False, True):
        sde = ss.state_space(_kernels(), dtype=jnp.float32)
        sites = ss.gaussian_observations(y.astype(np.float32), noise.astype(np.float32), mask)
        posterior = smooth(sde, grid.astype(np.float32), sites, parallel=parallel)
        assert posterior.smoothed.means.dtype == jnp.float32
        np.testing.assert_allclose(posterior.smoothed.means, reference.smoothed.means, atol=2e-3)
        np.testing.assert_allclose(
            posterior.smoothed.covariances, reference.smoothed.covariances, atol=2e-3
        )
        evidence = float(posterior.log_marginal_likelihood)
        assert abs(evidence - float(reference.filtered.log_marginal_likelihood)) < 1e-2


def test_bad_inputs_raise_bayescore_errors_naming_the_argument():
    sde = ss.state_space(gpx.kernels.Matern32())
    grid = jnp.array([0.0, 1.0, 2.0])
    sites = ss.gaussian_observations(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ArgumentError, match="grid must be sorted ascending"):
        ss.smooth(sde, jnp.array([0.0, 2.0, 1.0]), sites)
    with pytest.raises(DataError, match="grid has NaN"):
        ss.smooth(sde, jnp.array([0.0, jnp.nan, 1.0]), sites)
    with pytest.raises(ShapeError, match="grid must be a non-empty 1-D"):
        ss.smooth(sde, jnp.zeros((3, 1)), sites)
    with pytest.raises(ShapeError, match="sites must have 4 points"):
        ss.smooth(sde, jnp.arange(4.0), sites)
    with pytest.raises(ShapeError, match="dimension 2"):
        ss.smooth(ss.state_space(gpx.kernels.Matern32(), 2), grid, sites)
    with pytest.raises(DataError, match="y has NaN"):
        ss.gaussian_observations(jnp.array([0.0, jnp.nan, 1.0]), jnp.ones(3))
    # a NaN where the mask marks the point missing is fine
    ss.gaussian_observations(
        jnp.array([0.0, jnp.nan, 1.0]), jnp.ones(3), jnp.array([True, False, True])
    )
    with pytest.raises(ShapeError, match="covariance must have shape"):
        ss.gaussian_observations(jnp.zeros((3, 2)), jnp.ones(3))
    with pytest.raises(ShapeError, match="mask must be a boolean"):
        ss.gaussian_observations(jnp.zeros(3), jnp.ones(3), jnp.ones(3))
    with pytest.raises(DataError, match="not positive definite"):
        ss.gaussian_observations(jnp.zeros(3), jnp.array([1.0, -1.0, 1.0]))
    with pytest.raises(ShapeError, match="precision must have shape"):
        ss.natural_sites(jnp.ones((3, 2, 2)), jnp.ones((3, 3)))
    with pytest.raises(ArgumentError, match="kernels must be"):
        ss.state_space(gpx.kernels.RBF())
    with pytest.raises(ArgumentError, match="num_components=3 but kernels has 2"):
        ss.state_space([gpx.kernels.Matern12()] * 2, num_components=3)
    with pytest.raises(ArgumentError, match="sde must be a StateSpace"):
        ss.smooth(gpx.kernels.Matern12(), grid, sites)
    posterior = smooth(sde, grid, sites)
    with pytest.raises(DataError, match="query has NaN"):
        ss.interpolate(sde, posterior, jnp.array([jnp.nan]))
    with pytest.raises(BayescoreError):
        ss.interpolate(sde, posterior, jnp.zeros((2, 2)))
