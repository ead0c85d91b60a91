"""Flow distributions and their training, against exact answers.

- maximum likelihood with an affine flow is the Gaussian MLE (sample mean, 1/N covariance);
- reverse KL with an affine flow reaches the Gaussian target, and its loss reaches -log Z
  with zero variance (log q - log p̃ is constant at q = p);
- the smooth torus flow is a normalised density (periodic quadrature) that is periodic;
- as a NumPyro likelihood, prior (sampled by NUTS) and guide (SVI on a conjugate model).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import paramax
import pytest
from flowjax.bijections import Chain, Scan, TriangularAffine
from flowjax.distributions import StandardNormal, Transformed
from flowjax.experimental.numpyro import register_params

import bayescore as bc
from bayescore.core.errors import ArgumentError, DataError, InitializationError, ShapeError
from bayescore.models.flows import (
    fit_to_data,
    fit_to_density,
    masked_autoregressive_flow,
    planar_flow,
    radial_flow,
    smooth_flow,
    to_numpyro,
    unroll_layers,
)

COVARIANCE = jnp.array([[1.0, 0.6], [0.6, 0.5]])
MEAN = jnp.array([1.0, -2.0])


def affine_flow(dim=2):
    return Transformed(StandardNormal((dim,)), TriangularAffine(jnp.zeros(dim), jnp.eye(dim)))


def flow_moments(flow):
    bijection = flow.bijection
    loc = jnp.asarray(bijection.loc)
    factor = jax.jacfwd(bijection.transform)(jnp.zeros(loc.shape))
    return loc, factor @ factor.T


def test_maximum_likelihood_of_an_affine_flow_is_the_gaussian_mle():
    data = jax.random.multivariate_normal(jax.random.key(0), MEAN, COVARIANCE, (400,))
    flow, history = fit_to_data(
        jax.random.key(1),
        affine_flow(),
        data,
        optimizer=optax.adam(optax.exponential_decay(0.05, 3000, 0.01)),
        max_epochs=3000,
        batch_size=400,  # full batch: the optimum is the MLE itself
        val_prop=0.0,
        progress=False,
    )
    loc, covariance = flow_moments(flow)
    centred = data - data.mean(0)
    # Optimisation tolerance only (no Monte Carlo: the MLE is a function of the data).
    np.testing.assert_allclose(loc, data.mean(0), atol=2e-3)
    np.testing.assert_allclose(covariance, centred.T @ centred / len(data), atol=2e-3)
    assert history["train"].shape == (3000,) and np.isnan(history["val"]).all()
    expected_nll = -float(jnp.mean(flow.log_prob(data)))
    assert history["train"][-1] == pytest.approx(expected_nll, abs=1e-4)


def test_reverse_kl_reaches_the_gaussian_target_and_minus_log_z():
    precision = jnp.linalg.inv(COVARIANCE)

    def log_density(x):  # unnormalised: log Z = log(2π) + ½ log det Σ
        return -0.5 * (x - MEAN) @ precision @ (x - MEAN)

    log_z = float(jnp.log(2 * jnp.pi) + 0.5 * jnp.linalg.slogdet(COVARIANCE)[1])
    fits = {
        stl: fit_to_density(
            jax.random.key(0),
            affine_flow(),
            log_density,
            steps=3000,
            num_samples=64,
            optimizer=optax.adam(optax.exponential_decay(0.03, 3000, 0.1)),
            stick_the_landing=stl,
            progress=False,
        )
        for stl in (False, True)
    }
    # Sticking the landing: the gradient's variance vanishes at q = p (log q - log p̃ is
    # constant there and the score term is dropped), so the fit converges to optimisation
    # tolerance, and so does the loss, to -log Z.
    flow, history = fits[True]
    loc, covariance = flow_moments(flow)
    np.testing.assert_allclose(loc, MEAN, atol=1e-3)
    np.testing.assert_allclose(covariance, COVARIANCE, atol=1e-3)
    assert np.std(history["loss"][-100:]) < 1e-4
    assert history["loss"][-1] == pytest.approx(-log_z, abs=1e-4)
    # The plain reparameterisation gradient keeps its score-term noise at the optimum: the
    # parameters jitter around p, KL(q||p) = loss + log Z stays small and non-negative.
    _, history = fits[False]
    kl = history["loss"][-200:] + log_z
    assert 0.0 <= float(np.mean(kl)) < 0.02


def test_reverse_kl_takes_a_target_and_planar_radial_flows_fit_it():
    target = bc.Target.from_logdensity(
        lambda p: -0.5 * jnp.sum((p["a"] - 1.0) ** 2) - 0.5 * (p["b"] + 1.0) ** 2,
        {"a": jnp.zeros(1), "b": jnp.zeros(())},
    )
    log_z = float(jnp.log(2 * jnp.pi))
    for make in (planar_flow, radial_flow):
        flow = make(jax.random.key(0), base_dist=StandardNormal((2,)), flow_layers=4)
        flow, history = fit_to_density(
            jax.random.key(1), flow, target, steps=1500, learning_rate=1e-2, progress=False
        )
        # KL(q||p) = loss + log Z >= 0, and small after fitting a shift of N(0, I).
        kl = float(np.mean(history["loss"][-200:])) + log_z
        assert -0.01 < kl < 0.05, make.__name__
        x = flow.sample(jax.random.key(2), (20_000,))
        # 4 standard errors of a mean of 20 000 unit-variance draws, plus the KL's slack.
        np.testing.assert_allclose(x.mean(0), [1.0, -1.0], atol=4 / np.sqrt(20_000) + 0.05)


def test_early_stopping_returns_the_best_validation_epoch():
    data = jax.random.normal(jax.random.key(0), (60, 2))
    flow = masked_autoregressive_flow(
        jax.random.key(1), base_dist=StandardNormal((2,)), nn_width=64, flow_layers=4
    )
    _, history = fit_to_data(
        jax.random.key(2),
        flow,
        data,
        learning_rate=3e-2,
        max_epochs=400,
        max_patience=5,
        batch_size=10,
        val_prop=0.5,
        progress=False,
    )
    epochs = len(history["val"])
    assert epochs < 400  # a big flow on 30 points overfits, the validation loss turns up
    assert int(np.argmin(history["val"])) == epochs - 1 - 5


def test_conditional_flow_learns_a_conditional_mean():
    key_c, key_x = jax.random.split(jax.random.key(0))
    condition = jax.random.uniform(key_c, (4000, 1), minval=-1.0, maxval=1.0)
    data = 2.0 * condition + 0.3 * jax.random.normal(key_x, (4000, 1))
    flow = masked_autoregressive_flow(
        jax.random.key(1), base_dist=StandardNormal((1,)), cond_dim=1, flow_layers=2
    )
    flow, _ = fit_to_data(
        jax.random.key(2), flow, data, condition=condition, learning_rate=3e-3, progress=False
    )
    for c in (-0.5, 0.5):
        draws = flow.sample(jax.random.key(3), (4000,), condition=jnp.array([c]))
        # 5 standard errors of the mean of 4000 draws of scale 0.3, plus fitting slack.
        assert float(draws.mean()) == pytest.approx(2.0 * c, abs=5 * 0.3 / np.sqrt(4000) + 0.05)
        assert float(draws.std()) == pytest.approx(0.3, abs=0.05)


def scaled(flow, factor):
    """``flow`` with every trainable array times ``factor``: far from its near-identity start."""
    params, static = eqx.partition(
        flow, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )
    return eqx.combine(jax.tree.map(lambda a: factor * a, params), static)


def test_smooth_torus_flow_is_a_periodic_normalised_density():
    with jax.enable_x64(True):
        flow = smooth_flow(
            jax.random.key(0),
            2,
            circular=True,
            low=-jnp.pi,
            high=jnp.pi,
            flow_layers=2,
            num_components=3,
            nn_width=16,
        )
        flow = scaled(flow, 4.0)
        log_prob = eqx.filter_jit(lambda flow, x: flow.log_prob(x))
        # The rectangle rule on a periodic smooth integrand converges faster than any power.
        grid = jnp.linspace(-jnp.pi, jnp.pi, 161)[:-1]
        points = jnp.stack(jnp.meshgrid(grid, grid), -1).reshape(-1, 2)
        density = jnp.exp(log_prob(flow, points))
        integral = float(density.sum() * (2 * jnp.pi / 160) ** 2)
        assert integral == pytest.approx(1.0, abs=1e-6)
        assert float(density.max() / density.min()) > 2.0  # a shaped density, not uniform
        # Periodic in each angle: the same density at -π and at π.
        edge = jnp.linspace(-3.0, 3.0, 7)
        ends = jnp.full(7, jnp.pi)
        for axis in (0, 1):
            low = jnp.stack([-ends, edge][:: 1 - 2 * axis], 1)
            high = jnp.stack([ends, edge][:: 1 - 2 * axis], 1)
            np.testing.assert_allclose(log_prob(flow, low), log_prob(flow, high), atol=1e-9)
        x, log_q = eqx.filter_jit(lambda f, k: f.sample_and_log_prob(k, (200,)))(
            flow, jax.random.key(1)
        )
        assert bool(jnp.all((x >= -jnp.pi) & (x <= jnp.pi)))
        np.testing.assert_allclose(log_prob(flow, x), log_q, atol=1e-8)


def test_flow_as_a_numpyro_likelihood():
    flow = radial_flow(jax.random.key(0), base_dist=StandardNormal((2,)), flow_layers=3)
    data = jax.random.normal(jax.random.key(1), (25, 2))

    def model(data):
        numpyro.sample("x", to_numpyro(flow), obs=data)

    log_joint, _ = numpyro.infer.util.log_density(model, (data,), {}, {})
    assert float(log_joint) == pytest.approx(float(flow.log_prob(data).sum()), rel=1e-5)


def test_flow_as_a_numpyro_prior_sampled_by_nuts():
    flow = radial_flow(jax.random.key(3), base_dist=StandardNormal((2,)), flow_layers=3)
    flow = scaled(flow, 3.0)

    def model():
        numpyro.sample("z", to_numpyro(flow))

    result = bc.sample(
        bc.inference.nuts(),
        bc.Target.from_numpyro(model),
        num_samples=1000,
        num_warmup=500,
        num_chains=4,
        key=jax.random.key(0),
        progress=False,
    )
    import arviz as az

    posterior = result.to_arviz()
    draws = np.asarray(posterior.posterior["z"]).reshape(-1, 2)
    exact = np.asarray(flow.sample(jax.random.key(1), (200_000,)))
    mcse = np.asarray(az.mcse(posterior, var_names=["z"])["z"])
    # 4 Monte Carlo standard errors of the NUTS mean (the exact draws' error is ~100x smaller).
    np.testing.assert_array_less(np.abs(draws.mean(0) - exact.mean(0)), 4 * mcse)


def test_flow_as_a_numpyro_guide_recovers_a_conjugate_posterior():
    y = jnp.array([1.0, -0.5])

    def model():  # z ~ N(0, I), y ~ N(z, I): the posterior is N(y/2, I/2)
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Normal(z, 1.0).to_event(1), obs=y)

    def guide():
        numpyro.sample("z", to_numpyro(register_params("flow", affine_flow())))

    svi = numpyro.infer.SVI(
        model,
        guide,
        optax.adam(optax.exponential_decay(0.05, 4000, 0.01)),
        numpyro.infer.Trace_ELBO(num_particles=16),
    )
    params = svi.run(jax.random.key(0), 4000, progress_bar=False).params
    _, static = eqx.partition(affine_flow(), eqx.is_inexact_array)
    loc, covariance = flow_moments(paramax.unwrap(eqx.combine(params["flow"], static)))
    # ELBO gradient noise vanishes at the exact posterior (log q - log p is constant there).
    np.testing.assert_allclose(loc, y / 2, atol=0.02)
    np.testing.assert_allclose(covariance, 0.5 * np.eye(2), atol=0.02)


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (jnp.zeros(2), ShapeError, "one point"),
        (jnp.zeros((5, 3)), ShapeError, "(num_data, 2)"),
        (jnp.zeros((0, 2)), DataError, "empty"),
        (jnp.array([[0.0, 1.0], [jnp.nan, 0.0]]), DataError, "row 1"),
        ("abc", ArgumentError, "array"),
    ],
)
def test_fit_to_data_rejects_bad_data(data, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        fit_to_data(jax.random.key(0), affine_flow(), data, progress=False)


def test_fit_to_data_rejects_points_outside_the_torus_and_bad_arguments():
    flow = smooth_flow(jax.random.key(0), 2, circular=True, flow_layers=1, nn_width=8)
    with pytest.raises(DataError, match="row 2"):
        fit_to_data(jax.random.key(0), flow, jnp.array([[0.1, 0.2], [0.5, 0.5], [1.5, 0.2]]))
    with pytest.raises(ArgumentError, match="val_prop"):
        fit_to_data(jax.random.key(0), affine_flow(), jnp.zeros((5, 2)), val_prop=1.0)
    with pytest.raises(ArgumentError, match="condition"):
        fit_to_data(
            jax.random.key(0), affine_flow(), jnp.zeros((5, 2)), condition=jnp.zeros((5, 1))
        )
    with pytest.raises(ArgumentError, match="flowjax distribution"):
        fit_to_data(jax.random.key(0), "flow", jnp.zeros((5, 2)))


def test_fit_to_density_rejects_a_non_finite_start_and_mismatched_targets():
    def boxed(x):  # -inf outside the box: the initial flow puts mass there
        return jnp.where(jnp.all(jnp.abs(x) < 0.5), 0.0, -jnp.inf)

    with pytest.raises(InitializationError, match="log_density is -inf at the flow sample"):
        fit_to_density(jax.random.key(0), affine_flow(), boxed, steps=10, progress=False)
    target = bc.Target.from_logdensity(lambda p: -jnp.sum(p**2), jnp.zeros(3))
    with pytest.raises(ShapeError, match="3 unconstrained"):
        fit_to_density(jax.random.key(0), affine_flow(), target, steps=10, progress=False)
    with pytest.raises(ArgumentError, match="steps"):
        fit_to_density(jax.random.key(0), affine_flow(), boxed, steps=0)


def test_conditional_smooth_flow_on_the_circle_is_normalised_for_every_context():
    with jax.enable_x64(True):
        flow = scaled(
            smooth_flow(jax.random.key(0), 1, circular=True, cond_dim=2, flow_layers=2, nn_width=8),
            4.0,
        )
        log_prob = eqx.filter_jit(lambda flow, x, c: flow.log_prob(x, c))
        grid = (jnp.arange(400) / 400.0)[:, None]  # the periodic rectangle rule on [0, 1)
        densities = []
        for context in ([0.0, 0.0], [1.0, -2.0]):
            density = jnp.exp(log_prob(flow, grid, jnp.asarray(context)))
            assert float(density.mean()) == pytest.approx(1.0, abs=1e-8)
            densities.append(density)
        assert float(jnp.max(jnp.abs(densities[0] - densities[1]))) > 0.1  # it uses the context


@pytest.mark.parametrize("family", ["spline coupling", "bnaf"])
def test_flowjax_families_train_by_maximum_likelihood_to_the_oracle(family):
    from flowjax.bijections import RationalQuadraticSpline

    from bayescore.models.flows import block_neural_autoregressive_flow, coupling_flow

    key = jax.random.key(0)
    if family == "bnaf":
        flow = block_neural_autoregressive_flow(key, base_dist=StandardNormal((2,)))
    else:
        transformer = RationalQuadraticSpline(knots=6, interval=5.0)
        flow = coupling_flow(key, base_dist=StandardNormal((2,)), transformer=transformer)
    draws = jax.random.multivariate_normal(jax.random.key(1), MEAN, COVARIANCE, (8000,))
    train, test = draws[:4000], draws[4000:]
    # patience 20: with flowjax's default of 5 the noisy validation loss stopped the spline
    # flow after 17 epochs, short of its fit (gap 0.065 here; 0.033 after 39 epochs)
    flow, _ = fit_to_data(jax.random.key(2), flow, train, learning_rate=3e-3, max_epochs=100,
                          max_patience=20, progress=False)  # fmt: skip
    oracle = dist.MultivariateNormal(MEAN, COVARIANCE).log_prob(test)
    # The oracle's mean test log-likelihood has a standard error of sd(oracle)/√4000 ≈ 0.016;
    # a fitted flow falls short of it by its KL from the truth, which should be small.
    gap = float(jnp.mean(oracle) - jnp.mean(flow.log_prob(test)))
    assert -4 * float(jnp.std(oracle)) / np.sqrt(4000) < gap < 0.05


def test_inverse_autoregressive_flow_fits_by_reverse_kl():
    precision = jnp.linalg.inv(COVARIANCE)
    log_z = float(jnp.log(2 * jnp.pi) + 0.5 * jnp.linalg.slogdet(COVARIANCE)[1])
    iaf = masked_autoregressive_flow(
        jax.random.key(0), base_dist=StandardNormal((2,)), flow_layers=2, invert=False
    )
    _, history = fit_to_density(
        jax.random.key(1),
        iaf,
        lambda x: -0.5 * (x - MEAN) @ precision @ (x - MEAN),
        steps=1500,
        learning_rate=3e-3,
        progress=False,
    )
    kl = float(np.mean(history["loss"][-200:])) + log_z  # KL(q||p) ≥ 0, small after fitting
    assert -0.01 < kl < 0.03


def test_unrolled_layers_are_the_same_flow_and_long_stacks_stay_scanned():
    """``unroll_layers``: the Scan's layers as a Chain give the same draws, densities and
    parameter gradients; a Scan longer than ``max_layers`` is left as it is."""
    key = jax.random.key(0)
    flow = masked_autoregressive_flow(
        key, base_dist=StandardNormal((3,)), invert=False, flow_layers=3, nn_width=8
    )
    flow = paramax.unwrap(flow)
    unrolled = unroll_layers(flow)
    assert isinstance(unrolled.bijection, Chain) and len(unrolled.bijection.bijections) == 3
    draws, log_q = flow.sample_and_log_prob(jax.random.key(1), (5,))
    draws_u, log_q_u = unrolled.sample_and_log_prob(jax.random.key(1), (5,))
    np.testing.assert_allclose(np.asarray(draws_u), np.asarray(draws), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(log_q_u), np.asarray(log_q), rtol=1e-5, atol=1e-5)

    def mean_log_q(f, unroll):
        f = unroll_layers(f) if unroll else f
        return jnp.mean(f.sample_and_log_prob(jax.random.key(2), (4,))[1])

    grads = eqx.filter_grad(lambda f: mean_log_q(f, False))(flow)
    grads_u = eqx.filter_grad(lambda f: mean_log_q(f, True))(flow)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_u), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
    assert isinstance(unroll_layers(flow, max_layers=2).bijection, Scan)
