"""bc.sample: BlackJAX kernels plug in, keys, thinning, progress, multi-device sharding."""

import textwrap

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

import bayescore as bc
from bayescore.core.kernel import Kernel
from bayescore.metrics import covariance_zscores, mean_zscores
from tests.conftest import run_on_four_cpu_devices

MEAN = np.array([1.0, -2.0])
COVARIANCE = np.array([[1.0, 0.6], [0.6, 2.0]])
PRECISION = np.linalg.inv(COVARIANCE)


def gaussian(params):
    centred = params["x"] - MEAN
    return -0.5 * centred @ PRECISION @ centred


TARGET = bc.Target.from_logdensity(gaussian, {"x": jnp.zeros(2)})


def test_blackjax_algorithm_plugs_in_unchanged_and_is_exact():
    mala = blackjax.mala(TARGET.logdensity, step_size=0.5)
    result = bc.sample(
        mala,
        TARGET,
        num_samples=4000,
        num_warmup=500,
        num_chains=4,
        key=jax.random.key(0),
        progress=False,
    )
    draws = np.asarray(result.positions["x"])
    assert draws.shape == (4, 4000, 2)
    # MALA is exact: moments within 4 ESS-based Monte Carlo standard errors.
    assert np.all(np.abs(mean_zscores(draws, MEAN)) < 4)
    assert np.all(np.abs(covariance_zscores(draws, MEAN, COVARIANCE)) < 4)
    assert set(result.stats) == {"lp", "acceptance_rate", "is_accepted", "nonfinite"}
    assert not result.stats["nonfinite"].any()
    assert 0.3 < float(result.stats["acceptance_rate"].mean()) < 1.0
    np.testing.assert_allclose(
        result.stats["lp"],
        jax.vmap(jax.vmap(TARGET.logdensity))(result.positions),
        rtol=1e-5,
        atol=1e-5,
    )


def test_hand_written_kernel_with_position_only_init():
    def init(position):
        return blackjax.mcmc.random_walk.RWState(position, TARGET.logdensity(position))

    def step(key, state):
        return blackjax.additive_step_random_walk(
            TARGET.logdensity, blackjax.mcmc.random_walk.normal(jnp.full(2, 1.5))
        ).step(key, state)

    result = bc.sample(
        Kernel(init, step),
        TARGET,
        num_samples=5000,
        num_warmup=500,
        num_chains=4,
        key=1,
        progress=False,
    )
    draws = np.asarray(result.positions["x"])
    assert np.all(np.abs(mean_zscores(draws, MEAN)) < 4)


def test_same_key_same_draws_and_different_key_different_draws():
    method = bc.inference.nuts()
    run = lambda key: bc.sample(
        method, TARGET, num_samples=50, num_warmup=50, num_chains=2, key=key, progress=False
    ).positions["x"]
    first, again, other = run(jax.random.key(3)), run(jax.random.key(3)), run(jax.random.key(4))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_thinning_keeps_num_samples_and_lowers_autocorrelation():
    mala = blackjax.mala(TARGET.logdensity, step_size=0.1)
    plain = bc.sample(
        mala, TARGET, num_samples=2000, num_warmup=200, num_chains=2, key=0, progress=False
    ).to_arviz()
    thinned = bc.sample(
        mala, TARGET, num_samples=2000, num_warmup=200, num_chains=2, key=0, thin=10, progress=False
    ).to_arviz()
    assert thinned.posterior.sizes["draw"] == 2000
    import arviz as az

    ess_plain = float(az.ess(plain).to_dataset()["x"].mean())
    ess_thinned = float(az.ess(thinned).to_dataset()["x"].mean())
    # With step 0.1 MALA is strongly autocorrelated; ten times as many transitions between
    # kept draws gives several times the ESS (a loose bound: ESS estimates vary by ~10%).
    assert ess_thinned > 3 * ess_plain


def test_progress_bar_reaches_total(capsys):
    bc.sample(
        bc.inference.nuts(),
        TARGET,
        num_samples=30,
        num_warmup=20,
        num_chains=2,
        key=0,
        progress=True,
    )
    err = capsys.readouterr().err
    assert "50/50" in err and "NUTS" in err


def test_progress_off_prints_nothing(capsys):
    bc.sample(
        bc.inference.nuts(),
        TARGET,
        num_samples=30,
        num_warmup=20,
        num_chains=2,
        key=0,
        progress=False,
    )
    assert capsys.readouterr().err == ""


def test_integer_seed_is_the_same_as_its_key():
    a = bc.sample(
        bc.inference.nuts(),
        TARGET,
        num_samples=20,
        num_warmup=20,
        num_chains=1,
        key=7,
        progress=False,
    ).positions["x"]
    b = bc.sample(
        bc.inference.nuts(),
        TARGET,
        num_samples=20,
        num_warmup=20,
        num_chains=1,
        key=jax.random.key(7),
        progress=False,
    ).positions["x"]
    np.testing.assert_array_equal(a, b)


MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import blackjax, jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist
    import bayescore as bc
    from bayescore.metrics import mean_zscores
    assert len(jax.devices()) == 4, jax.devices()

    def model(x, y):
        a = numpyro.sample("a", dist.Normal(0, 1))
        b = numpyro.sample("b", dist.Normal(0, 1))
        s = numpyro.sample("s", dist.HalfNormal(1))
        with numpyro.plate("data", len(y)):
            numpyro.sample("y", dist.Normal(a + b * x, s), obs=y)

    x = np.random.default_rng(0).normal(size=30).astype(np.float32)
    y = (1 + 2 * x + 0.3 * np.random.default_rng(1).normal(size=30)).astype(np.float32)
    target = bc.Target.from_numpyro(model, x, y)

    def same(single, sharded):
        for name in single.positions:
            np.testing.assert_allclose(single.positions[name], sharded.positions[name],
                                       rtol=1e-5, atol=1e-5)
        for name in single.stats:
            np.testing.assert_allclose(single.stats[name], sharded.stats[name], rtol=1e-5,
                                       atol=1e-5)

    kwargs = dict(num_chains=8, key=jax.random.key(0), progress=False)
    # A fixed kernel: the sharded run repeats the single-device run draw for draw.
    mala = blackjax.mala(target.logdensity, 0.05)
    # Sharded over every device, with a progress bar (NUTS below passes devices=4).
    single = bc.sample(mala, target, num_samples=300, num_warmup=100, **kwargs)
    sharded = bc.sample(mala, target, num_samples=300, num_warmup=100, devices="all",
                        **{**kwargs, "progress": True})
    assert len(sharded.positions["a"].sharding.device_set) == 4
    same(single, sharded)
    # NUTS without adaptation: identical too.
    nuts = bc.inference.nuts(step_size=0.1)
    single = bc.sample(nuts, target, num_samples=10, num_warmup=0, **kwargs)
    sharded = bc.sample(nuts, target, num_samples=10, num_warmup=0, devices=4, **kwargs)
    for name in single.positions:  # leapfrog trajectories amplify rounding: 1e-4, not 1e-5
        np.testing.assert_allclose(single.positions[name], sharded.positions[name], rtol=1e-4,
                                   atol=1e-4)
    # NUTS with adaptation: XLA rounds vectorised exp/log differently for 8 and 2 chains per
    # device, and adaptation amplifies 1-ulp differences, so compare in distribution: the
    # sharded posterior of the intercept and slope matches the single-device one within
    # 4 Monte Carlo standard errors of the difference of means.
    single = bc.sample(nuts, target, num_samples=500, num_warmup=300, **kwargs)
    sharded = bc.sample(nuts, target, num_samples=500, num_warmup=300, devices=4, **kwargs)
    assert len(sharded.positions["a"].sharding.device_set) == 4
    for name in ("a", "b"):
        one, two = np.asarray(single.positions[name]), np.asarray(sharded.positions[name])
        standard_error = np.hypot(mean_zscores(one, 0.0) ** -1 * one.mean(),
                                  mean_zscores(two, 0.0) ** -1 * two.mean())
        assert abs(one.mean() - two.mean()) < 4 * standard_error, name
    print("MULTI-DEVICE OK")
""")


def test_chains_sharded_over_four_devices_equal_single_device_run():
    run_on_four_cpu_devices(MULTI_DEVICE_SCRIPT, "MULTI-DEVICE OK")
