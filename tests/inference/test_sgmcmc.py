"""SG-MCMC: minibatch streams, estimators, exact stationary laws, optimizer limits, errors."""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from jax.flatten_util import ravel_pytree
from scipy.linalg import solve_discrete_lyapunov

import bayescore as bc
from bayescore.core.data import minibatch_indices, permute, target_batch
from bayescore.core.driver import as_key, run_keys
from bayescore.core.errors import ArgumentError, DiscreteLatentError, NumericalError
from bayescore.inference import sgmcmc
from bayescore.inference.sgmcmc.samplers import minibatch_noise_variance
from bayescore.metrics import covariance_zscores, mean_zscores
from tests.conftest import run_on_four_cpu_devices


def gaussian_mean_model(y, batch=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("data", y.shape[0], subsample_size=batch) as idx:
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y[idx])


def logistic_model(x, y, batch=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=x[idx] @ w + b), obs=y[idx])


def logistic_target(batch=50, n=1000, d=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-x @ np.array([1.0, -1.0, 0.5])))).astype(np.float32)
    return bc.Target.from_numpyro(logistic_model, x, y, batch=batch)


def sample_flat(method, target, **settings):
    result = bc.sample(method, target, progress=False, **settings)
    return np.asarray(
        jax.vmap(jax.vmap(lambda p: ravel_pytree(p)[0]))(result.positions), np.float64
    ), result


# ----------------------------------------------------------------------- minibatch stream


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 16, 17, 1000, 1009, 4099, 100_000])
def test_permute_is_a_bijection(n):
    values = np.asarray(permute(jax.random.key(n), jnp.arange(n), n))
    assert sorted(values.tolist()) == list(range(n))


@pytest.mark.parametrize("n", [6, 7, 11])  # 7, 11: products 8, 12 > n, so cycle walking
def test_permutations_differ_by_key_and_each_index_is_equally_likely(n):
    keys = 3000
    images = jax.jit(jax.vmap(lambda key: permute(key, jnp.arange(n), n)))(
        jax.random.split(jax.random.key(0), keys)
    )
    counts = np.zeros((n, n))
    for image in np.asarray(images):
        counts[np.arange(n), image] += 1
    # Each (position, value) cell is Binomial(keys, 1/n): all within 4.5 SDs.
    sd = np.sqrt(keys * (1 / n) * (1 - 1 / n))
    assert np.all(np.abs(counts - keys / n) < 4.5 * sd)


@pytest.mark.parametrize("num_shards", [1, 4])
def test_an_epoch_covers_every_index_once_and_epochs_differ(num_shards):
    key, n, b = jax.random.key(3), 40, 8
    epochs = [
        np.concatenate([np.asarray(minibatch_indices(key, t, n, b, num_shards)) for t in steps])
        for steps in (range(0, 5), range(5, 10))
    ]
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(n))
    assert not np.array_equal(epochs[0], epochs[1])
    if num_shards == 4:  # each shard draws b/4 of its own block of n/4 per step
        batch = np.asarray(minibatch_indices(key, 0, n, b, num_shards))
        assert [sorted(set(batch[i * 2 : i * 2 + 2] // 10)) for i in range(4)] == [
            [0],
            [1],
            [2],
            [3],
        ]


def test_minibatch_gradient_is_unbiased_over_an_epoch():
    target = logistic_target(batch=50, n=1000)
    params = {"w": jnp.array([0.3, -0.2, 0.1]), "b": jnp.array(0.2)}
    full = ravel_pytree(jax.grad(target.logdensity)(params))[0]
    key = jax.random.key(0)

    def grad_at(step):
        indices = target_batch(target, key, step)
        return ravel_pytree(jax.grad(target.logdensity_subsample)(params, indices))[0]

    grads = jax.vmap(grad_at)(jnp.arange(20))  # one epoch: 1000 / 50 batches
    np.testing.assert_allclose(grads.mean(axis=0), full, rtol=2e-5, atol=1e-3)
    assert float(jnp.std(grads[:, 0])) > 1.0  # the batches do differ


@pytest.mark.parametrize("num_shards", [1, 5])
def test_noise_variance_estimate_is_unbiased_for_the_batch_gradient_variance(num_shards):
    # Half the data per batch: the finite-population correction halves the variance.
    target = logistic_target(batch=100, n=200)
    params = {"w": jnp.array([0.3, -0.2, 0.1]), "b": jnp.array(0.2)}
    x, unravel = ravel_pytree(params)
    key = jax.random.key(1)

    def at(step):  # one batch of a fresh epoch: uniformly drawn, stratified by shard
        indices = target_batch(target, jax.random.fold_in(key, step), 0, num_shards)
        grad = ravel_pytree(jax.grad(target.logdensity_subsample)(params, indices))[0]
        return grad, minibatch_noise_variance(target, unravel, indices, num_shards)(x)

    grads, estimates = jax.vmap(at)(jnp.arange(4000))
    grads, estimates = np.asarray(grads, np.float64), np.asarray(estimates, np.float64)
    exact = grads.var(axis=0, ddof=1)  # the sampling variance of the estimate, by MC
    # MC error of the exact variance from 4000 draws (relative sd ~ sqrt(2/4000), more with
    # excess kurtosis); the mean of the estimates is far tighter.
    mcse = exact * np.sqrt((np.mean((grads - grads.mean(0)) ** 4, 0) / exact**2 - 1) / 4000)
    assert np.all(np.abs(estimates.mean(axis=0) - exact) < 4 * mcse + 1e-3 * exact)


# ------------------------------------------------------------------ exact stationary laws


def test_full_batch_sgld_with_decreasing_steps_matches_the_conjugate_posterior():
    rng = np.random.default_rng(1)
    y = jnp.asarray(rng.normal(1.5, 1.0, 100), jnp.float32)
    target = bc.Target.from_numpyro(gaussian_mean_model, y)
    precision = 100 + 1 / 100.0
    mean, variance = float(y.sum()) / precision, 1 / precision
    # h_t = 0.005 (100 + t)^-0.55: 7e-5 at the first draw, whose ULA bias h/(2 s²) ≈ 0.4 % of
    # the variance is far below its Monte Carlo error (~3 %).
    schedule = sgmcmc.polynomial_decay(0.005, 100.0, 0.55)
    draws, _ = sample_flat(
        bc.inference.sgld(schedule),
        target,
        num_samples=4000,
        num_warmup=2000,
        num_chains=256,
        key=0,
    )
    assert abs(mean_zscores(draws, [mean])[0]) < 4
    assert abs(covariance_zscores(draws, [mean], [[variance]])[0, 0]) < 4


def linear_gaussian(scale):
    return bc.Target.from_logdensity(lambda p: -0.5 * p["x"] ** 2 / scale**2, {"x": jnp.zeros(())})


@pytest.mark.parametrize("sampler", ["sgld", "sghmc"])
def test_stationary_variance_on_a_gaussian_solves_the_discrete_lyapunov_equation(sampler):
    """Full gradients on N(0, s²) make each update a linear AR(1); its exact stationary
    covariance solves Σ = A Σ Aᵀ + Q (the step's bias included)."""
    s, h, friction = 1.0, 0.2, 0.3
    target = linear_gaussian(s)
    if sampler == "sgld":
        method = bc.inference.sgld(h)
        a, q = np.array([[1 - h / s**2]]), np.array([[2 * h]])
    else:
        method = bc.inference.sghmc(h, friction=friction)
        # v' = (1-α) v - h x / s² + ξ√(2αh);  x' = x + v'.  State (x, v).
        a = np.array([[1 - h / s**2, 1 - friction], [-h / s**2, 1 - friction]])
        q = 2 * friction * h * np.ones((2, 2))
    exact = solve_discrete_lyapunov(a, q)[0, 0]
    draws, _ = sample_flat(method, target, num_samples=4000, num_warmup=1000, num_chains=64, key=1)
    assert abs(covariance_zscores(draws, [0.0], [[exact]])[0, 0]) < 4
    assert abs(exact - s**2) > 0.05  # the test can tell the biased law from the target


def test_sgnht_thermostat_finds_the_temperature_and_the_target():
    target = linear_gaussian(1.0)
    draws, result = sample_flat(
        bc.inference.sgnht(0.01),
        target,
        num_samples=20000,
        num_warmup=5000,
        num_chains=32,
        key=2,
        thin=5,
    )
    # At h = 0.01 the discretisation bias of the variance is O(h) ≈ 1 %, below the ~2 % MCSE.
    assert abs(mean_zscores(draws, [0.0])[0]) < 4
    assert abs(covariance_zscores(draws, [0.0], [[1.0]])[0, 0]) < 4


# ------------------------------------------------------------------ optimizer limits (T = 0)


@pytest.mark.parametrize("sampler", ["sgld", "sghmc", "psgld"])
def test_zero_temperature_is_the_matching_optax_optimizer(sampler):
    target = logistic_target(batch=50)
    h = 1e-3
    method, optimizer = {
        "sgld": (bc.inference.sgld(h, temperature=0.0), optax.sgd(h)),
        "sghmc": (bc.inference.sghmc(h, friction=0.1, temperature=0.0), optax.sgd(h, momentum=0.9)),
        "psgld": (
            bc.inference.psgld(h, alpha=0.9, epsilon=1e-5, temperature=0.0),
            optax.rmsprop(h, decay=0.9, eps=1e-5, eps_in_sqrt=False),
        ),
    }[sampler]
    start = {"w": jnp.array([0.1, 0.2, -0.1]), "b": jnp.array(0.0)}
    result = bc.sample(
        method,
        target,
        num_samples=30,
        num_warmup=0,
        num_chains=1,
        key=3,
        init_params=start,
        progress=False,
    )
    # Replay: same stream key (split from the chain's state key) and steps, optax ascent.
    kernel = method.kernel(target, ())
    state_key = run_keys(as_key(3), 1)[1][0]
    stream_key = kernel.init(start, state_key).stream_key
    x, unravel = ravel_pytree(start)
    opt_state = optimizer.init(x)
    for t in range(30):
        indices = target_batch(target, stream_key, t)
        grad = ravel_pytree(jax.grad(target.logdensity_subsample)(unravel(x), indices))[0]
        updates, opt_state = optimizer.update(-grad, opt_state, x)
        x = optax.apply_updates(x, updates)
    ours = ravel_pytree(jax.tree.map(lambda a: a[0, -1], result.positions))[0]
    np.testing.assert_allclose(ours, x, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- estimators


def test_control_variates_are_exact_at_the_centre_and_unbiased():
    target = logistic_target(batch=50)
    x0, unravel = ravel_pytree({"w": jnp.zeros(3), "b": jnp.zeros(())})
    # A decaying step: Adam at a constant 5e-2 stalls where its steps balance the curvature
    # (full gradient ~16 here, 6 % of the start's 261). NumPyro's own autodiff of the
    # Bernoulli at logits exactly 0 (the start) doubled that start gradient, which hid it.
    schedule = optax.cosine_decay_schedule(5e-2, 300)
    estimator = sgmcmc.ControlVariates(optax.adam(schedule), num_steps=300)
    centre, state = estimator.init(target, x0, unravel, jax.random.key(0))
    full = jax.grad(lambda x: target.logdensity(unravel(x)))
    np.testing.assert_allclose(state.grad, full(centre), rtol=1e-6)
    # Near the mode: the full gradient has shrunk twentyfold from the start.
    assert float(jnp.linalg.norm(full(centre))) < 0.05 * float(jnp.linalg.norm(full(x0)))
    key = jax.random.key(5)
    at_centre = estimator.estimate(
        target, unravel, centre, target_batch(target, key, 0), key, state
    )
    np.testing.assert_allclose(at_centre.grad, full(centre), rtol=1e-4, atol=1e-4)
    x = centre + 0.1
    grads = jax.vmap(
        lambda t: (
            estimator.estimate(target, unravel, x, target_batch(target, key, t), key, state).grad
        )
    )(jnp.arange(20))
    np.testing.assert_allclose(grads.mean(axis=0), full(x), rtol=1e-4, atol=2e-3)
    plain = jax.vmap(
        lambda t: jax.grad(
            lambda x: target.logdensity_subsample(unravel(x), target_batch(target, key, t))
        )(x)
    )(jnp.arange(20))
    assert np.all(np.std(grads, axis=0) < 0.5 * np.std(plain, axis=0))  # the point of it


def test_structured_with_one_group_is_plain_sgld_step_for_step():
    target = logistic_target(batch=50)
    settings = dict(num_samples=50, num_warmup=20, num_chains=2, key=4)
    plain, _ = sample_flat(bc.inference.sgld(1e-3), target, **settings)
    for groups in (1, [["w", "b"]]):
        one, result = sample_flat(
            bc.inference.sgld(1e-3, estimator=sgmcmc.Structured(groups=groups, buffer_size=10)),
            target,
            **settings,
        )
        np.testing.assert_allclose(one, plain, rtol=1e-6, atol=1e-7)
        assert int(result.stats["n_steps"][0, 0]) == 1


def test_structured_groups_follow_names_paths_and_counts():
    example = {"a": jnp.zeros(2), "b": {"c": jnp.zeros(3), "d": jnp.zeros(())}}
    ids = sgmcmc.Structured(groups=["b.c", ["a", "b.d"]]).group_ids(example)
    # ravel order: a (2), b.c (3), b.d (1)
    assert ids.tolist() == [1, 1, 0, 0, 0, 1]
    assert sgmcmc.Structured(groups=["a"]).group_ids(example).tolist() == [0, 0, 1, 1, 1, 1]
    assert sgmcmc.Structured(groups="sites").group_ids(example).tolist() == [0, 0, 1, 1, 1, 2]
    assert sorted(np.bincount(sgmcmc.Structured(groups=3).group_ids(example))) == [2, 2, 2]
    with pytest.raises(ArgumentError, match="names no parameter"):
        sgmcmc.Structured(groups=["nope"]).group_ids(example)


def mean_field_variances(precision, h):
    """Fixed point of v_k = (2h + h² Σ_j≠k Λ_kj² v_j) / (1 - (1 - h Λ_kk)²)."""
    diag = np.diag(precision)
    off = precision**2 - np.diag(diag**2)
    v = 1 / diag
    for _ in range(200):
        v = (2 * h + h**2 * off @ v) / (1 - (1 - h * diag) ** 2)
    return v


@pytest.mark.parametrize("dropout", [None, 1.0])
def test_structured_sgld_reaches_the_mean_field_fixed_point(dropout):
    # The Jacobi iteration of this precision contracts (spectral radius 0.55), so the buffer
    # means settle; with radius 1 (e.g. correlations 0.8, 0.3, 0.5) they drift without bound.
    covariance = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    precision = np.linalg.inv(covariance)
    mean = np.array([1.0, -1.0, 0.5])
    target = bc.Target.from_logdensity(
        lambda p: -0.5 * (p["x"] - mean) @ jnp.asarray(precision, jnp.float32) @ (p["x"] - mean),
        {"x": jnp.zeros(3)},
    )
    h = 0.02
    # The buffer spans the last 20,000 steps, all after burn-in, so its draws are stationary.
    estimator = sgmcmc.Structured(
        groups="coordinates", buffer_size=4000, thinning=5, dropout=dropout
    )
    draws, _ = sample_flat(
        bc.inference.sgld(h, estimator=estimator),
        target,
        num_samples=4000,
        num_warmup=25000,
        num_chains=16,
        key=6,
        thin=5,
    )
    if dropout == 1.0:  # every group current in every copy: plain SGLD, the full covariance
        expected = solve_discrete_lyapunov(np.eye(3) - h * precision, 2 * h * np.eye(3))
    else:
        expected = np.diag(mean_field_variances(precision, h))
    z = covariance_zscores(draws, mean, expected)
    assert np.all(np.abs(mean_zscores(draws, mean)) < 4)
    assert np.all(np.abs(z) < 4), z
    if dropout is None:  # mean field: far from the true marginal variances and correlations
        assert np.all(np.diag(expected) < np.diag(covariance) - 0.05)


# ------------------------------------------------------------------ schedules and stats


def test_cyclical_schedule_records_exploration_and_explores_without_noise():
    target = linear_gaussian(1.0)
    schedule = sgmcmc.cyclical(0.1, num_steps=40, num_cycles=2, exploration=0.5)
    result = bc.sample(
        bc.inference.sgld(schedule),
        target,
        num_samples=40,
        num_warmup=0,
        num_chains=1,
        key=0,
        init_params={"x": jnp.array(2.0)},
        progress=False,
    )
    exploring = np.asarray(result.stats["exploring"][0])
    assert exploring.tolist() == ([True] * 10 + [False] * 10) * 2
    steps = np.asarray(result.stats["step_size"][0])
    k = np.arange(40) % 20
    np.testing.assert_allclose(steps, 0.05 * (np.cos(np.pi * k / 20) + 1), rtol=1e-5)
    x = np.concatenate([[2.0], np.asarray(result.positions["x"][0])])
    np.testing.assert_allclose(x[1:11], x[:10] * (1 - steps[:10]), rtol=1e-5)  # gradient steps
    tree = result.to_arviz()
    assert {"step_size", "exploring", "lp_estimate", "n_steps", "diverging"} <= set(
        tree.sample_stats.data_vars
    )


def test_divergence_is_flagged():
    target = linear_gaussian(0.1)
    kwargs = dict(num_samples=50, num_warmup=0, num_chains=1, key=0, progress=False)
    with pytest.raises(NumericalError, match="chain 0 at sampling step"):
        bc.sample(bc.inference.sgld(1.0), target, **kwargs)  # the state overflows
    result = bc.sample(bc.inference.sgld(1.0), target, on_fault="restart_from_last_good", **kwargs)
    assert bool(result.stats["diverging"].any()) and bool(result.stats["nonfinite"].any())
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(result.positions))


# ----------------------------------------------------------------------- data-parallel

DATA_PARALLEL_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist, optax
    import bayescore as bc
    from bayescore.core.errors import ArgumentError
    from bayescore.inference import sgmcmc
    assert len(jax.devices()) == 4

    def model(x, y):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
        s = numpyro.sample("s", dist.HalfNormal(1.0))
        with numpyro.plate("data", len(y), subsample_size=16) as idx:
            numpyro.sample("y", dist.Normal(x[idx] @ w, s), obs=y[idx])

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = x @ np.array([1.0, -0.5, 0.2]) + 0.5 * rng.normal(size=400)
    target = bc.Target.from_numpyro(model, x.astype(np.float32), y.astype(np.float32))
    kwargs = dict(num_samples=100, num_warmup=50, num_chains=3, key=2, progress=False)
    methods = [
        bc.inference.sgld(1e-4, num_shards=4),
        bc.inference.sghmc(1e-5, estimate_noise=True, num_shards=8),
        bc.inference.psgld(1e-3, correction=True, num_shards=4),
        bc.inference.sgld(1e-4, num_shards=4,
                          estimator=sgmcmc.ControlVariates(optax.adam(1e-2), 100)),
        bc.inference.sgld(1e-4, num_shards=4,
                          estimator=sgmcmc.Structured(dropout=0.5, buffer_size=20)),
        bc.inference.mala(step_size=0.01, adapt_step_size=False, adapt_mass_matrix=False),
    ]
    for method in methods:
        single = bc.sample(method, target, **kwargs)
        sharded = bc.sample(method, target, devices=4, shard="data", **kwargs)
        for name in single.positions:
            np.testing.assert_allclose(single.positions[name], sharded.positions[name],
                                       rtol=1e-4, atol=1e-5, err_msg=f"{method} {name}")
        for name in single.stats:
            np.testing.assert_allclose(single.stats[name], sharded.stats[name],
                                       rtol=1e-4, atol=1e-4, err_msg=f"{method} {name}")
        assert np.std(np.asarray(single.positions["w"])[:, -50:]) > 0  # they do move

    # VI on minibatches: each device evaluates its block's rows of every step's minibatch.
    fit_kwargs = dict(num_steps=100, key=3, num_shards=4, progress=False)
    single = bc.fit(target, bc.inference.vi.mean_field(target), **fit_kwargs)
    sharded = bc.fit(target, bc.inference.vi.mean_field(target), devices=4, shard="data",
                     **fit_kwargs)
    np.testing.assert_allclose(single.history["loss"], sharded.history["loss"], rtol=1e-5)
    for one, two in zip(jax.tree.leaves(single.family), jax.tree.leaves(sharded.family)):
        if isinstance(one, jax.Array):
            np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)
    assert single.history["loss"][-20:].mean() < single.history["loss"][:20].mean()

    def fixed_size(x, y):  # the plate's size does not follow the data: refused
        w = numpyro.sample("w", dist.Normal(0, 1).expand([3]).to_event(1))
        with numpyro.plate("data", 400, subsample_size=16) as idx:
            numpyro.sample("y", dist.Normal(x[idx] @ w, 1.0), obs=y[idx])

    errors = [
        (bc.inference.sgld(1e-4, num_shards=2), target, "num_shards=2"),
        (bc.inference.sgld(1e-4, num_shards=4), bc.Target.from_numpyro(fixed_size, x, y),
         "size 400"),
    ]
    for method, bad_target, message in errors:
        try:
            bc.sample(method, bad_target, devices=4, shard="data", **kwargs)
        except ArgumentError as error:
            assert message in str(error), error
        else:
            raise AssertionError(f"no error for {message}")
    try:
        bc.fit(target, bc.inference.vi.mean_field(target), devices=4, **{**fit_kwargs,
                                                                        "num_shards": 2})
    except ArgumentError as error:
        assert "num_shards=2 of bc.fit" in str(error), error
    else:
        raise AssertionError("no error for bc.fit's num_shards=2")
    print("DATA-PARALLEL OK")
""")


def test_data_parallel_over_four_devices_equals_the_single_device_run():
    run_on_four_cpu_devices(DATA_PARALLEL_SCRIPT, "DATA-PARALLEL OK")


# ---------------------------------------------------------------------------- errors


def test_bad_input_raises_clear_errors():
    target = logistic_target(batch=50)
    with pytest.raises(ArgumentError, match="step_size"):
        bc.inference.sgld(-1.0)
    with pytest.raises(ArgumentError, match="friction"):
        bc.inference.sghmc(1e-3, friction=1.5)
    with pytest.raises(ArgumentError, match="temperature"):
        bc.inference.sgld(1e-3, temperature=-1.0)
    with pytest.raises(ArgumentError, match="estimator"):
        bc.inference.sgld(1e-3, estimator="cv")
    with pytest.raises(ArgumentError, match="num_shards=3"):
        bc.sample(
            bc.inference.sgld(1e-3, num_shards=3), target, num_samples=1, key=0, progress=False
        )
    with pytest.raises(ArgumentError, match="dropout"):
        sgmcmc.Structured(dropout=1.5)

    def discrete(y):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(z, 1.0), obs=y)

    with pytest.raises(DiscreteLatentError, match="z"):
        bc.sample(
            bc.inference.sgld(1e-3),
            bc.Target.from_numpyro(discrete, 1.0),
            num_samples=1,
            key=0,
            progress=False,
        )
