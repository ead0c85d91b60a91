"""LightSB against exact answers: the Gaussian closed form, the EOT benchmark's mixture plan.

- With one component LightSB is exactly the Gaussian EOT plan (S = M, r = μ1 − Mμ0): the plan,
  its log density and the drift agree with :mod:`bayescore.inference.bridge.gaussian` to
  rounding (float64), and training on samples recovers M.
- The closed-form drift equals the reference code's formula differentiated by autodiff, and the
  benchmark's ground-truth drift of a Gaussian-mixture potential.
- Simulated and Brownian-bridge marginals have the closed-form moments; plan draws have the
  exact mixture moments (z-scores in Monte Carlo standard errors, Bonferroni-bounded).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import multivariate_normal

from bayescore.core.errors import ArgumentError, DataError, ShapeError
from bayescore.inference.bridge.gaussian import gaussian_bridge
from bayescore.inference.bridge.lightsb import LightSB, fit_lightsb, init_lightsb
from bayescore.metrics import covariance_zscores, mean_zscores, zscore_bound


def random_spd(rng, dim, jitter=0.5):
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + jitter * np.eye(dim)


def gaussian_problem(dim, seed, diagonal=False):
    rng = np.random.default_rng(seed)
    if diagonal:
        cov0, cov1 = np.diag(rng.uniform(0.5, 2.0, dim)), np.diag(rng.uniform(0.5, 2.0, dim))
    else:
        cov0, cov1 = random_spd(rng, dim), random_spd(rng, dim)
    return rng.normal(size=dim), cov0, rng.normal(size=dim), cov1


def mixture_model(seed, num_components=3, dim=2, epsilon=0.7, diagonal=False):
    rng = np.random.default_rng(seed)
    if diagonal:
        scales = rng.uniform(0.3, 1.5, (num_components, dim))
    else:
        scales = np.stack([random_spd(rng, dim, 0.3) for _ in range(num_components)])
    return LightSB.from_parameters(
        rng.normal(size=num_components),
        2.0 * rng.normal(size=(num_components, dim)),
        scales,
        epsilon,
    )


def test_one_component_model_of_a_gaussian_bridge_is_its_plan_and_drift():
    """Exact identities (float64): conditional moments, log density and drift at t ∈ [0, 1]."""
    with jax.enable_x64(True):
        for epsilon in (0.1, 10.0):
            bridge = gaussian_bridge(*gaussian_problem(4, seed=0), epsilon)
            model = LightSB.from_gaussian_bridge(bridge)
            x = np.random.default_rng(1).normal(size=(5, 4))
            y = np.random.default_rng(2).normal(size=(5, 4))
            mean, cov = model.conditional_moments(x)
            bridge_mean, bridge_cov = bridge.conditional(x)
            np.testing.assert_allclose(mean, bridge_mean, atol=1e-12)
            np.testing.assert_allclose(cov, np.broadcast_to(bridge_cov, cov.shape), atol=1e-12)
            np.testing.assert_allclose(model.log_prob(y, x), bridge.log_prob(y, x), atol=1e-10)
            for t in (0.0, 0.3, 0.9, 1.0):
                np.testing.assert_allclose(model.drift(x, t), bridge.drift(x, t), atol=1e-10)
            times = jnp.array([0.1, 0.2, 0.5, 0.7, 1.0])  # one time per row
            expected = np.stack([bridge.drift(x[i], times[i]) for i in range(5)])
            np.testing.assert_allclose(model.drift(x, times), expected, atol=1e-10)


@pytest.mark.parametrize("diagonal", [True, False])
def test_drift_equals_the_reference_formula_by_autodiff(diagonal):
    r"""g = −x/(1−t) + ε∇ log Σ_k α_k|S_k|^{-½}|A_k|^{-½}exp(½c_kᵀA_k⁻¹c_k − r_kᵀS_k⁻¹r_k/(2ε))
    with A_k = t/(ε(1−t)) I + (εS_k)⁻¹, c_k = x/(ε(1−t)) + (εS_k)⁻¹r_k (LightSB's get_drift)."""
    with jax.enable_x64(True):
        model = mixture_model(seed=3, num_components=3, dim=3, diagonal=diagonal)
        eps, eye = model.epsilon, jnp.eye(3)

        def reference(x, t):
            def log_h(x):
                def term(log_alpha, r, s):
                    a = t / (eps * (1 - t)) * eye + jnp.linalg.inv(eps * s)
                    c = x / (eps * (1 - t)) + jnp.linalg.solve(eps * s, r)
                    return (
                        log_alpha
                        - 0.5 * jnp.linalg.slogdet(s)[1]
                        - 0.5 * jnp.linalg.slogdet(a)[1]
                        + 0.5 * c @ jnp.linalg.solve(a, c)
                        - r @ jnp.linalg.solve(s, r) / (2 * eps)
                    )

                terms = jax.vmap(term)(model.log_alpha, model.means, model.scale_matrices)
                return jax.nn.logsumexp(terms)

            return -x / (1 - t) + eps * jax.grad(log_h)(x)

        x = jnp.asarray(np.random.default_rng(4).normal(size=(6, 3)))
        batched = jax.jit(jax.vmap(reference, in_axes=(0, None)))
        for t in (0.0, 0.3, 0.8):
            np.testing.assert_allclose(model.drift(x, t), batched(x, t), atol=1e-10)


def test_benchmark_ground_truth_is_a_lightsb_model():
    """The EOT benchmark's plan for the potential Σ p_k N(μ_k, Σ_k) (Gushchin et al. 2023):
    weights ∝ p_k N(x | μ_k, Σ_k + εI), components N(Λ_k(Σ_k⁻¹μ_k + x/ε), Λ_k),
    Λ_k = (Σ_k⁻¹ + I/ε)⁻¹, drift ε∇ log Σ p_k N(x | μ_k, Σ_k + ε(1−t)I); equal to the LightSB
    model with S_k = (εΣ_k⁻¹ + I)⁻¹, r_k = (I + Σ_k/ε)⁻¹μ_k,
    log α_k = log p_k + log N(μ_k | 0, Σ_k + εI) (float64)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        num, dim, eps = 4, 3, 0.7
        p = rng.dirichlet(np.ones(num))
        mu = 2 * rng.normal(size=(num, dim))
        sigma = np.stack([random_spd(rng, dim, 0.3) for _ in range(num)])
        eye = np.eye(dim)
        model = LightSB.from_parameters(
            np.log(p) + multivariate_normal.logpdf(mu, np.zeros(dim), sigma + eps * eye),
            np.linalg.solve(eye + sigma / eps, mu[..., None])[..., 0],
            np.linalg.inv(eps * np.linalg.inv(sigma) + eye),
            eps,
        )
        x = rng.normal(size=(6, dim))
        log_w = np.log(p) + multivariate_normal.logpdf(x[:, None], mu, sigma + eps * eye)
        log_w -= jax.nn.logsumexp(log_w, axis=-1, keepdims=True)
        np.testing.assert_allclose(model.component_log_weights(x), log_w, atol=1e-10)
        lam = np.linalg.inv(np.linalg.inv(sigma) + eye / eps)
        means = np.einsum(
            "kij,nkj->nki",
            lam,
            np.linalg.solve(sigma, mu[..., None])[None, ..., 0] + x[:, None] / eps,
        )
        component_means = model.component_means(x)
        np.testing.assert_allclose(component_means, means, atol=1e-10)
        np.testing.assert_allclose(eps * model.scale_matrices, lam, atol=1e-12)

        def log_gt(x, t):
            terms = multivariate_normal.logpdf(x, mu, sigma + eps * (1 - t) * eye)
            return jax.nn.logsumexp(np.log(p) + terms)

        gt_drift = jax.jit(jax.vmap(jax.grad(log_gt), in_axes=(0, None)))
        for t in (0.0, 0.5, 0.9, 1.0):
            np.testing.assert_allclose(model.drift(x, t), eps * gt_drift(x, t), atol=1e-10)


def test_polish_reaches_the_empirical_optimum_of_a_benchmark_instance():
    """On the EOT benchmark (D = 2, ε = 1, whose plan is a 5-component LightSB) a short Adam
    run (the reference's protocol) stops above the full-batch loss of the exact parameters;
    the L-BFGS polish must go below it (the empirical optimum of the same rows is at or
    below the truth's loss) and bring the exact-moment cBW₂²-UVP under the sampling
    protocol's floor (≈ 0.05 %, §2.5 of the notes): the error left is the estimation error
    of 2¹⁴ rows."""
    from bayescore.metrics.eot import cbw_uvp_from_moments, eot_mixture_benchmark

    instance = eot_mixture_benchmark(2, 1.0, seed=0)
    x0 = instance.sample_x(jax.random.key(1), 2**14)
    x1 = instance.sample_y(jax.random.key(2), 2**14)
    truth = LightSB.from_parameters(*instance.lightsb_parameters(), 1.0)
    settings = dict(
        epsilon=1.0,
        num_components=10,
        key=3,
        num_steps=500,
        s_init=1.0,
        learning_rate=3e-3,
        decay=False,  # the reference's protocol: constant step, last iterate
        average=0.0,
        final_batch_size=None,
        progress=False,
    )
    adam_only, _ = fit_lightsb(x0, x1, **settings)
    polished, losses = fit_lightsb(x0, x1, polish_steps=300, **settings)
    assert losses.shape == (800,)
    truth_loss = float(truth.loss(x0, x1))
    assert float(adam_only.loss(x0, x1)) > truth_loss
    assert float(polished.loss(x0, x1)) <= truth_loss
    score = cbw_uvp_from_moments(polished.conditional_moments, instance, num_test_inputs=200)
    assert score < 0.05


def test_averaging_and_decay_remove_the_minibatch_noise_of_a_constant_step():
    """K = 1, D = 4, ε = 0.1 between diagonal Gaussians (2¹⁷ draws each), 2000 Adam steps at
    step size 0.1. With a constant step the last iterate (the reference's protocol) is off
    the exact S = M by several % (7 % here: minibatch noise, not bias); the average of the
    last half's iterates (``average=0.5``), a cosine decay (``decay=True``) and the defaults
    (decay, average of the last quarter, 512-row minibatches in the second half) each cut
    that error by more than 5× (to 0.3–1.1 %) and the error of the shift r = μ1 − Mμ0 (5 %,
    to 1.2–2.2 %, near its sampling error) by more than 2×. The loss of every step is
    returned either way."""
    mean0, cov0, mean1, cov1 = gaussian_problem(4, seed=10, diagonal=True)
    bridge = gaussian_bridge(mean0, cov0, mean1, cov1, 0.1)
    matrix = np.asarray(bridge.conditional_matrix)
    shift = np.asarray(bridge.mean1 - matrix @ bridge.mean0)
    rng = np.random.default_rng(11)
    x0 = rng.multivariate_normal(mean0, cov0, 2**17).astype(np.float32)
    x1 = rng.multivariate_normal(mean1, cov1, 2**17).astype(np.float32)
    reference = dict(decay=False, average=0.0, final_batch_size=None)

    def errors(**kwargs):
        model, losses = fit_lightsb(
            x0,
            x1,
            epsilon=0.1,
            num_components=1,
            key=0,
            num_steps=2000,
            learning_rate=0.1,
            progress=False,
            **kwargs,
        )
        assert losses.shape == (2000,) and np.all(np.isfinite(losses))
        fitted = np.asarray(model.scale_matrices[0])
        return (
            np.linalg.norm(fitted - matrix) / np.linalg.norm(matrix),
            np.linalg.norm(model.means[0] - shift) / np.linalg.norm(shift),
        )

    last_scale, last_shift = errors(**reference)
    assert last_scale > 0.03
    for kwargs in ({**reference, "average": 0.5}, {**reference, "decay": True}, {}):
        scale_error, shift_error = errors(**kwargs)
        assert scale_error < last_scale / 5 and shift_error < last_shift / 2, kwargs


@pytest.mark.parametrize("diagonal", [True, False])
def test_fit_recovers_the_gaussian_conditional_matrix(diagonal):
    """K = 1, D = 4, 10⁵ samples of each Gaussian, ε = 1: ‖S − M‖_F / ‖M‖_F ≤ 5 % (the issue's
    bar). The diagonal family is fitted to diagonal Gaussians (M is then diagonal), the full
    family to full-covariance ones. Adam with a cosine decay from 3e-2 over 3000 steps of 512
    rows: the fitted S lands at 0.2 % (diagonal) and 0.7 % (full) of M; the sampling error
    alone (M of the samples' moments against the true M) is 0.5 % at these sizes."""
    mean0, cov0, mean1, cov1 = gaussian_problem(4, seed=10, diagonal=diagonal)
    bridge = gaussian_bridge(mean0, cov0, mean1, cov1, 1.0)
    rng = np.random.default_rng(11)
    x0 = rng.multivariate_normal(mean0, cov0, 100_000).astype(np.float32)
    x1 = rng.multivariate_normal(mean1, cov1, 100_000).astype(np.float32)
    num_steps = 3000
    model, losses = fit_lightsb(
        x0,
        x1,
        epsilon=1.0,
        num_components=1,
        key=0,
        num_steps=num_steps,
        batch_size=512,
        optimizer=optax.adam(optax.cosine_decay_schedule(3e-2, num_steps)),
        diagonal=diagonal,
        progress=False,
    )
    assert model.diagonal == diagonal and losses.shape == (num_steps,)
    matrix = np.asarray(bridge.conditional_matrix)
    fitted = np.asarray(model.scale_matrices[0])
    assert np.linalg.norm(fitted - matrix) / np.linalg.norm(matrix) <= 0.05
    shift = np.asarray(bridge.mean1 - matrix @ bridge.mean0)
    assert np.linalg.norm(model.means[0] - shift) / np.linalg.norm(shift) <= 0.05


def test_simulated_and_brownian_bridge_marginals_match_the_closed_form():
    """20 000 paths of the exact K = 1 model of a 3-d Gaussian bridge (ε = 1), Euler–Maruyama
    with 200 steps; moments at t ∈ {0.25, 0.5, 0.75} against N(μ_t, Σ_t). The exact covariance
    recursion of this linear Euler chain puts its bias below 0.0017 (entries up to 1.7); one
    MC standard error of a covariance entry is about √(2/20 000)·1.6 ≈ 0.016. The exact
    Brownian-bridge draws (sample_marginal) are checked the same way. 3 × (3 + 6) moments each,
    Bonferroni-bounded."""
    bridge = gaussian_bridge(*gaussian_problem(3, seed=5), 1.0)
    model = LightSB.from_gaussian_bridge(bridge)
    mean0, cov0 = np.asarray(bridge.mean0), np.asarray(bridge.cov0)
    start_key, path_key, bridge_key = jax.random.split(jax.random.key(0), 3)
    x0 = mean0 + jax.random.normal(start_key, (20_000, 3)) @ np.linalg.cholesky(cov0).T
    path = model.simulate(path_key, x0, num_steps=200)
    assert path.shape == (201, 20_000, 3)
    np.testing.assert_array_equal(path[0], x0)
    bound = zscore_bound(27)
    for index, t in ((50, 0.25), (100, 0.5), (150, 0.75)):
        mean_t, cov_t = bridge.marginal(t)
        for draws in (
            path[index],
            model.sample_marginal(jax.random.fold_in(bridge_key, index), x0, t),
        ):
            draws = np.asarray(draws)[None]
            assert np.abs(mean_zscores(draws, mean_t)).max() < bound
            assert np.abs(covariance_zscores(draws, mean_t, cov_t)).max() < bound


@pytest.mark.parametrize("diagonal", [True, False])
def test_plan_draws_have_the_exact_mixture_moments(diagonal):
    """20 000 draws of π_θ(·|x) at 3 points x (K = 3, D = 2): mean and covariance z-scores
    against conditional_moments; 3 × (2 + 3) moments, Bonferroni-bounded."""
    model = mixture_model(seed=6, diagonal=diagonal)
    x = jnp.asarray([[0.0, 0.0], [0.5, -0.3], [-0.4, 0.2]])
    draws = model.sample(jax.random.key(7), x, num_samples=20_000)
    assert draws.shape == (20_000, 3, 2)
    means, covs = model.conditional_moments(x)
    weights = np.exp(model.component_log_weights(x))
    assert np.all(weights.max(-1) < 0.999)  # every point mixes components
    bound = zscore_bound(15)
    for i in range(3):
        per_point = np.asarray(draws[:, i])[None]
        assert np.abs(mean_zscores(per_point, means[i])).max() < bound
        assert np.abs(covariance_zscores(per_point, means[i], covs[i])).max() < bound


def test_log_prob_is_normalised():
    """Trapezoid quadrature of π_θ(y|x) over a 1-d grid (K = 3) and a 2-d grid (K = 3, full):
    the integral is 1 up to the quadrature error (grid steps 0.01 and 0.1, below a fifth of
    the smallest component standard deviation, where the trapezoid rule's error on a
    Gaussian, ~exp(−2π²σ²/h²), is negligible; tails beyond 10 standard deviations)."""
    with jax.enable_x64(True):
        one_d = mixture_model(seed=8, dim=1, diagonal=True)
        grid = np.linspace(-30, 30, 6001)[:, None]
        for x in (-1.0, 0.0, 0.7):
            density = np.exp(one_d.log_prob(grid, np.array([x])))
            np.testing.assert_allclose(np.trapezoid(density, grid[:, 0]), 1.0, atol=1e-8)
        two_d = mixture_model(seed=9, dim=2)
        axis = np.linspace(-20, 20, 401)
        points = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1)
        density = np.exp(two_d.log_prob(points, np.array([0.3, -0.2])))
        integral = np.trapezoid(np.trapezoid(density, axis, axis=1), axis)
        np.testing.assert_allclose(integral, 1.0, atol=1e-6)
        # the loss is log c − log v on the batches: the identity at one point
        y, x = np.array([[0.2, 0.1]]), np.array([[-0.3, 0.4]])
        np.testing.assert_allclose(
            two_d.loss(x, y), two_d.log_normaliser(x)[0] - two_d.log_potential(y)[0], rtol=1e-12
        )


def test_init_follows_the_reference():
    rows = np.arange(20.0).reshape(10, 2)
    model = init_lightsb(3, rows, epsilon=0.5, num_components=4, diagonal=False, s_init=0.2)
    assert model.scale_parameter.shape == (4, 2, 2) and not model.diagonal
    np.testing.assert_allclose(
        model.scale_matrices, np.broadcast_to(0.2 * np.eye(2), (4, 2, 2)), rtol=1e-6
    )
    np.testing.assert_allclose(model.log_alpha, np.log(0.25), rtol=1e-6)
    np.testing.assert_allclose(model.scaled_log_alpha, 0.5 * np.log(0.25), rtol=1e-6)
    chosen = {tuple(row) for row in np.asarray(model.means)}
    assert len(chosen) == 4 and chosen <= {tuple(row) for row in rows}


def test_bad_arguments_raise_errors_that_name_them():
    x0, x1 = np.zeros((50, 2)), np.ones((40, 2))
    fit = lambda a, b, **kw: fit_lightsb(  # noqa: E731
        a,
        b,
        **{
            "epsilon": 1.0,
            "num_components": 2,
            "key": 0,
            "batch_size": 16,
            "progress": False,
            **kw,
        },
    )
    with pytest.raises(ShapeError, match="x0 and x1"):
        fit(x0, np.ones((40, 3)))
    with pytest.raises(ShapeError, match="x0"):
        fit(np.zeros(50), x1)
    bad = x1.copy()
    bad[7, 0] = np.nan
    with pytest.raises(DataError, match="x1 has NaN .* row 7"):
        fit(x0, bad)
    with pytest.raises(ArgumentError, match="num_components"):
        fit(x0, x1, num_components=0)
    with pytest.raises(ArgumentError, match="num_components=41"):
        fit(x0, x1, num_components=41)
    with pytest.raises(ArgumentError, match="epsilon"):
        fit(x0, x1, epsilon=0.0)
    with pytest.raises(ArgumentError, match="epsilon"):
        fit(x0, x1, epsilon=-1.0)
    with pytest.raises(ArgumentError, match="batch_size=64"):
        fit(x0, x1, batch_size=64)
    with pytest.raises(ArgumentError, match="num_steps"):
        fit(x0, x1, num_steps=0)
    for average in (1.0, -0.1):
        with pytest.raises(ArgumentError, match="average"):
            fit(x0, x1, average=average)
    with pytest.raises(ArgumentError, match="final_batch_size"):
        fit(x0, x1, final_batch_size=0)
    with pytest.raises(ArgumentError, match="learning_rate"):
        fit(x0, x1, learning_rate=-1.0)
    with pytest.raises(ShapeError, match="log_alpha"):
        LightSB.from_parameters(np.zeros(3), np.zeros((2, 2)), np.ones((2, 2)), 1.0)
    with pytest.raises(ShapeError, match="scale_matrices"):
        LightSB.from_parameters(np.zeros(2), np.zeros((2, 2)), np.ones((2, 3)), 1.0)
    with pytest.raises(DataError, match="scale_matrices"):
        LightSB.from_parameters(np.zeros(1), np.zeros((1, 2)), -np.eye(2)[None], 1.0)
    with pytest.raises(DataError, match="scale_matrices"):
        LightSB.from_parameters(np.zeros(1), np.zeros((1, 2)), np.zeros((1, 2)), 1.0)
