"""Bad input raises a BayescoreError that names the argument or site."""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayescore as bc
from bayescore.core.errors import (
    ArgumentError,
    DataError,
    DiscreteLatentError,
    InitializationError,
    ShapeError,
)


def mixture(y):
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(2)))
    locs = numpyro.sample("locs", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    with numpyro.plate("data", len(y)):
        component = numpyro.sample("component", dist.Categorical(weights))
        numpyro.sample("y", dist.Normal(locs[component], 1.0), obs=y)


def test_discrete_latent_site_with_gradient_method():
    target = bc.Target.from_numpyro(mixture, jnp.array([-1.0, 0.5, 3.0]))
    assert target.discrete_sites == ("component",)
    with pytest.raises(DiscreteLatentError, match="'component'") as error:
        bc.sample(bc.inference.nuts(), target, num_samples=10, num_warmup=10, key=0, progress=False)
    assert isinstance(error.value, bc.BayescoreError)


def regression(x, y):
    w = numpyro.sample("w", dist.Normal(0, 1))
    with numpyro.plate("data", len(y)):
        numpyro.sample("y", dist.Normal(w * x, 1.0), obs=y)


def test_nan_in_observed_data_names_the_argument():
    y = np.array([0.1, np.nan, 0.3])
    with pytest.raises(DataError, match=r"`y`.*1 NaN/inf.*index \(1,\)"):
        bc.Target.from_numpyro(regression, np.ones(3), y)


def test_inf_in_covariate_names_the_keyword_argument():
    x = np.array([0.1, np.inf, 0.3])
    with pytest.raises(DataError, match="`x`"):
        bc.Target.from_numpyro(regression, x=x, y=np.ones(3))


def test_nan_in_observed_site_computed_inside_the_model():
    def model(data):
        w = numpyro.sample("w", dist.Normal(0, 1))
        numpyro.sample("log_y", dist.Normal(w, 1.0), obs=jnp.log(data))

    with pytest.raises(DataError, match="observed site 'log_y'"):
        bc.Target.from_numpyro(model, jnp.array([1.0, -1.0]))


def subsampled(y, size):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    with numpyro.plate("data", size, subsample_size=5):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=numpyro.subsample(y, event_dim=0))


def test_data_shorter_than_subsampled_plate():
    with pytest.raises(ShapeError, match=r"numpyro.plate\(data, 20"):
        bc.Target.from_numpyro(subsampled, jnp.zeros(12), 20)


def test_data_not_subsampled_inside_subsampled_plate():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("data", len(y), subsample_size=5):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(ShapeError, match="plate 'data'"):
        bc.Target.from_numpyro(model, jnp.zeros(12))


def test_subsample_size_larger_than_data():
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("data", len(y), subsample_size=50):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=numpyro.subsample(y, event_dim=0))

    with pytest.raises(ShapeError, match="subsample_size=50"):
        bc.Target.from_numpyro(model, jnp.zeros(12))


def test_non_finite_initial_density_from_init_params():
    def model(y):
        scale = numpyro.sample("scale", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(0.0, scale), obs=y)

    target = bc.Target.from_numpyro(model, jnp.array([0.3]))
    with pytest.raises(InitializationError, match="outside the support of site 'scale'"):
        bc.sample(
            bc.inference.nuts(),
            target,
            num_samples=5,
            num_warmup=5,
            num_chains=1,
            key=0,
            progress=False,
            init_params={"scale": -1.0},
        )


def test_non_finite_initial_density_everywhere():
    target = bc.Target.from_logdensity(lambda p: jnp.log(-jnp.abs(p["x"]) - 1), {"x": 0.0})
    with pytest.raises(InitializationError, match="no finite starting point"):
        bc.sample(
            blackjax.mala(target.logdensity, 0.1),
            target,
            num_samples=5,
            num_warmup=0,
            key=0,
            progress=False,
        )


def test_init_params_with_wrong_shape():
    target = bc.Target.from_numpyro(regression, jnp.ones(3), jnp.ones(3))
    with pytest.raises(ArgumentError, match="num_chains=4"):
        bc.sample(
            bc.inference.nuts(),
            target,
            num_samples=5,
            num_warmup=5,
            num_chains=4,
            key=0,
            progress=False,
            init_params={"w": jnp.zeros((3,))},
        )


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("num_samples", 0),
        ("num_chains", -1),
        ("num_warmup", -5),
        ("thin", 1.5),
        ("num_samples", True),
    ],
)
def test_invalid_sizes_name_the_argument(argument, value):
    target = bc.Target.from_logdensity(lambda p: -(p["x"] ** 2), {"x": 0.0})
    kwargs = {"num_samples": 5, "num_warmup": 5, "num_chains": 1, argument: value}
    with pytest.raises(ArgumentError, match=argument):
        bc.sample(bc.inference.nuts(), target, key=0, progress=False, **kwargs)


def test_invalid_key_method_and_target():
    target = bc.Target.from_logdensity(lambda p: -(p["x"] ** 2), {"x": 0.0})
    with pytest.raises(ArgumentError, match="key"):
        bc.sample(bc.inference.nuts(), target, key="seed", progress=False)
    with pytest.raises(ArgumentError, match="method"):
        bc.sample(42, target, key=0, progress=False)
    with pytest.raises(ArgumentError, match="target"):
        bc.sample(bc.inference.nuts(), lambda x: x, key=0, progress=False)
    with pytest.raises(ArgumentError, match="target_acceptance_rate"):
        bc.inference.nuts(target_acceptance_rate=1.5)


def test_devices_that_do_not_divide_the_chains():
    target = bc.Target.from_logdensity(lambda p: -(p["x"] ** 2), {"x": 0.0})
    with pytest.raises(ArgumentError, match="devices"):
        bc.sample(
            bc.inference.nuts(), target, key=0, progress=False, devices=len(jax.devices()) + 1
        )


def test_log_density_that_does_not_return_a_scalar():
    with pytest.raises(ShapeError, match="scalar"):
        bc.Target.from_logdensity(lambda p: -(p["x"] ** 2), {"x": jnp.zeros(3)})
