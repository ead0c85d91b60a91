"""Target: log density against NumPyro, minibatch unbiasedness, spaces, metadata, init."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import initialize_model

import bayescore as bc
from bayescore.core.errors import InitializationError
from tests.conftest import SCHOOL_EFFECTS, SCHOOL_SIGMAS, eight_schools

rng = np.random.default_rng(0)


def linear_regression(x, y=None):
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ weights, sigma), obs=y)


def dirichlet_multinomial(counts):
    probs = numpyro.sample("probs", dist.Dirichlet(jnp.ones(counts.shape[-1])))
    with numpyro.plate("trial", counts.shape[0]):
        numpyro.sample("counts", dist.Multinomial(counts.sum(-1), probs), obs=counts)


def lkj_normal(y):
    dim = y.shape[-1]
    cholesky = numpyro.sample("cholesky", dist.LKJCholesky(dim, 2.0))
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0).expand([dim]).to_event(1))
    with numpyro.plate("obs_id", y.shape[0]):
        numpyro.sample(
            "y",
            dist.MultivariateNormal(jnp.zeros(dim), scale_tril=scale[:, None] * cholesky),
            obs=y,
        )


def beta_binomial(trials, successes):
    rate = numpyro.sample("rate", dist.Beta(2.0, 2.0))
    concentration = numpyro.sample("concentration", dist.Gamma(2.0, 0.1))
    with numpyro.plate("group", len(trials)):
        p = numpyro.sample("p", dist.Beta(rate * concentration, (1 - rate) * concentration))
        numpyro.sample("k", dist.Binomial(trials, p), obs=successes)


def subsampled_regression(x, y):
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    with numpyro.plate("data", x.shape[0], subsample_size=16) as idx:
        numpyro.sample("y", dist.Normal(x[idx] @ weights, sigma), obs=y[idx])


def full_regression(x, y):  # the same model as subsampled_regression without subsampling
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ weights, sigma), obs=y)


X = rng.normal(size=(64, 3)).astype(np.float32)
Y = (X @ np.array([1.0, -0.5, 0.25]) + 0.3 * rng.normal(size=64)).astype(np.float32)
MODELS = {
    "eight_schools": (eight_schools, (8, SCHOOL_SIGMAS), {"y": SCHOOL_EFFECTS}),
    "linear_regression": (linear_regression, (X,), {"y": Y}),
    "dirichlet_multinomial": (
        dirichlet_multinomial,
        (jnp.asarray(rng.multinomial(20, [0.2, 0.3, 0.5], size=5), jnp.float32),),
        {},
    ),
    "lkj_normal": (lkj_normal, (jnp.asarray(rng.normal(size=(10, 3)), jnp.float32),), {}),
    "beta_binomial": (
        beta_binomial,
        (jnp.array([10.0, 12.0, 8.0]), jnp.array([3.0, 7.0, 2.0])),
        {},
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logdensity_equals_negated_numpyro_potential_energy(name):
    model, args, kwargs = MODELS[name]
    target = bc.Target.from_numpyro(model, *args, **kwargs)
    info = initialize_model(jax.random.key(0), model, model_args=args, model_kwargs=kwargs)
    for seed in range(3):
        noise_key = jax.random.key(seed)
        params = jax.tree.map(
            lambda leaf, k=noise_key: leaf + jax.random.normal(k, leaf.shape), info.param_info.z
        )
        ours = target.logdensity(params)
        theirs = -info.potential_fn(params)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)
        grad = jax.grad(target.logdensity)(params)
        their_grad = jax.grad(lambda p: -info.potential_fn(p))(params)
        for site in grad:
            np.testing.assert_allclose(grad[site], their_grad[site], rtol=1e-4, atol=1e-5)


def test_subsampled_model_full_density_matches_unsubsampled_model():
    target = bc.Target.from_numpyro(subsampled_regression, X, Y)
    reference = bc.Target.from_numpyro(full_regression, X, Y)
    params = {"weights": jnp.array([0.5, 0.1, -0.2]), "sigma": jnp.array(0.3)}
    np.testing.assert_allclose(target.logdensity(params), reference.logdensity(params), rtol=1e-6)
    assert target.num_data == 64 and target.batch_size == 16
    everything = {"data": jnp.arange(64)}
    np.testing.assert_allclose(
        target.logdensity_subsample(params, everything), reference.logdensity(params), rtol=1e-6
    )


def test_minibatch_estimate_is_unbiased_for_density_and_gradient():
    target = bc.Target.from_numpyro(subsampled_regression, X, Y)
    params = {"weights": jnp.array([0.8, -0.3, 0.1]), "sigma": jnp.array(-0.5)}
    full = target.logdensity(params)
    full_grad = jax.grad(target.logdensity)(params)
    keys = jax.random.split(jax.random.key(3), 20_000)
    estimates = jax.vmap(lambda k: target.logdensity_estimate(params, k))(keys)
    grads = jax.vmap(lambda k: jax.grad(target.logdensity_estimate)(params, k))(keys)
    # Independent batches: the mean's standard error is std / sqrt(n); 4 SE bounds a false
    # alarm at about 6e-5 per check.
    standard_error = estimates.std() / np.sqrt(len(keys))
    assert abs(estimates.mean() - full) < 4 * standard_error
    assert standard_error > 0  # the estimate is random: it really subsamples
    for site in ("weights", "sigma"):
        mean = grads[site].mean(0)
        se = grads[site].std(0) / np.sqrt(len(keys))
        assert np.all(np.abs(mean - full_grad[site]) < 4 * se)


def test_logprior_includes_the_log_jacobian_and_leaves_the_likelihood_out():
    def model(y):
        scale = numpyro.sample("scale", dist.HalfNormal(2.0))
        numpyro.sample("y", dist.Normal(0.0, scale), obs=y)

    y = jnp.array([0.5, -1.0, 2.0])
    target = bc.Target.from_numpyro(model, y)
    u = jnp.asarray(0.3)
    scale = jnp.exp(u)
    prior = dist.HalfNormal(2.0).log_prob(scale) + u  # + log|d scale / du|
    likelihood = dist.Normal(0.0, scale).log_prob(y).sum()
    np.testing.assert_allclose(target.logprior({"scale": u}), prior, rtol=1e-6)
    np.testing.assert_allclose(
        target.logdensity({"scale": u}) - target.logprior({"scale": u}), likelihood, rtol=1e-6
    )


def test_subsample_indices_are_distinct_and_in_range():
    target = bc.Target.from_numpyro(subsampled_regression, X, Y)
    indices = np.asarray(target.subsample_indices(jax.random.key(0))["data"])
    assert indices.shape == (16,) and len(set(indices.tolist())) == 16
    assert indices.min() >= 0 and indices.max() < 64


def test_site_metadata_names_plates_and_unconstrained_shapes():
    target = bc.Target.from_numpyro(
        *MODELS["eight_schools"][:1], 8, SCHOOL_SIGMAS, y=SCHOOL_EFFECTS
    )
    dims = target.site_dims()
    assert dims["theta_tilde"] == ["school"] and dims["theta"] == ["school"]
    assert dims["obs"] == ["school"] and dims["mu"] == []
    assert target.site_coords()["school"] == list(range(8))
    assert target.dim == 10
    simplex = bc.Target.from_numpyro(dirichlet_multinomial, *MODELS["dirichlet_multinomial"][1])
    (probs,) = simplex.latent
    assert probs.shape == (3,) and probs.unconstrained_shape == (2,)
    assert simplex.site_dims()["counts"] == ["trial", "counts_dim_1"]


def test_tracing_for_shapes_draws_no_continuous_latent_and_falls_back_when_the_model_raises():
    seen = []

    def model(counts, picky=False):
        rate = numpyro.sample("rate", dist.Gamma(2.0, 1.0).expand([2]).to_event(1))
        probs = numpyro.sample("probs", dist.Dirichlet(jnp.ones(3)), sample_shape=(4,))
        switch = numpyro.sample("switch", dist.Bernoulli(0.5))  # discrete: drawn
        seen.append((rate, probs, switch))
        if picky and bool(jnp.all(rate == 1.0)):  # raises at the support point only
            raise ValueError("a model that cannot run at rate = 1")
        numpyro.sample("counts", dist.Poisson(rate.sum() * probs[0]), obs=counts)

    counts = jnp.array([1.0, 2.0, 0.0])
    target = bc.Target.from_numpyro(model, counts)
    rate, probs, switch = seen[0]
    # the image of zeros under biject_to(support): exp(0) = 1 and the simplex's centre, exact
    # up to float32 rounding in the stick-breaking transform (no Monte Carlo error: no draw)
    np.testing.assert_array_equal(rate, jnp.ones(2))
    np.testing.assert_allclose(probs, jnp.full((4, 3), 1 / 3), rtol=1e-6)
    assert switch.shape == ()
    shapes = {site.name: (site.shape, site.unconstrained_shape) for site in target.latent}
    assert shapes == {"rate": ((2,), (2,)), "probs": ((4, 3), (4, 2)), "switch": ((), ())}
    np.testing.assert_array_equal(target.observed_data()["counts"], counts)
    seen.clear()
    picky = bc.Target.from_numpyro(model, counts, picky=True)  # traced again with draws
    assert [site.name for site in picky.latent] == ["rate", "probs", "switch"]
    assert not bool(jnp.all(seen[-1][0] == 1.0))


def test_constrain_and_unconstrain_are_inverse():
    model, args, kwargs = MODELS["lkj_normal"]
    target = bc.Target.from_numpyro(model, *args, **kwargs)
    params = target.init(jax.random.key(1), num_chains=1)
    params = jax.tree.map(lambda leaf: leaf[0], params)
    constrained = target.constrain(params)
    np.testing.assert_allclose(
        jnp.diag(constrained["cholesky"] @ constrained["cholesky"].T), jnp.ones(3), rtol=1e-5
    )
    back = target.unconstrain(constrained)
    for site in params:
        np.testing.assert_allclose(back[site], params[site], rtol=1e-4, atol=1e-5)


def test_init_gives_finite_density_for_every_chain():
    model, args, kwargs = MODELS["beta_binomial"]
    target = bc.Target.from_numpyro(model, *args, **kwargs)
    params = target.init(jax.random.key(0), num_chains=7)
    assert params["p"].shape == (7, 3)
    assert np.all(np.isfinite(jax.vmap(target.logdensity)(params)))


def test_init_retries_non_finite_region():
    # Half of [-2, 2] has density zero: redraws find the other half.
    target = bc.Target.from_logdensity(
        lambda p: jnp.where(p["x"] > 1.0, -0.5 * p["x"] ** 2, -jnp.inf), {"x": 0.0}
    )
    params = target.init(jax.random.key(0), num_chains=16)
    assert np.all(np.asarray(params["x"]) > 1.0)


def test_init_names_the_site_with_impossible_data():
    def model(y):
        rate = numpyro.sample("rate", dist.Gamma(1.0, 1.0))
        numpyro.sample("waiting_time", dist.Exponential(rate), obs=y)

    target = bc.Target.from_numpyro(model, jnp.array([1.0, -2.0]))
    with pytest.raises(InitializationError, match="'waiting_time'"):
        target.init(jax.random.key(0), num_chains=2, max_tries=5)


def test_from_logdensity_with_bare_array():
    target = bc.Target.from_logdensity(lambda x: -0.5 * jnp.sum(x**2), jnp.zeros(4))
    assert [site.name for site in target.latent] == ["x"]
    assert target.init(jax.random.key(0), 3).shape == (3, 4)
    assert target.constrain(jnp.ones(4))["x"].shape == (4,)
