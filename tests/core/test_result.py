"""Result.to_arviz and bc.predict on eight schools with NUTS."""

import arviz as az
import jax
import numpy as np
import pytest

import bayescore as bc
from tests.conftest import SCHOOL_SIGMAS


@pytest.fixture(scope="module")
def schools_run():
    from tests.conftest import SCHOOL_EFFECTS, eight_schools

    target = bc.Target.from_numpyro(eight_schools, 8, SCHOOL_SIGMAS, y=SCHOOL_EFFECTS)
    result = bc.sample(
        bc.inference.nuts(target_acceptance_rate=0.9),
        target,
        num_samples=1000,
        num_warmup=1000,
        num_chains=4,
        key=jax.random.key(2024),
        progress=False,
    )
    return eight_schools, result


def test_eight_schools_converges_and_loo_is_finite(schools_run):
    _, result = schools_run
    tree = result.to_arviz()
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data"} <= set(tree.children)
    summary = az.summary(tree)
    assert (summary["r_hat"].astype(float) < 1.01).all(), summary
    loo = az.loo(tree)
    assert np.isfinite(float(loo.elpd))
    assert tree.posterior["theta"].dims == ("chain", "draw", "school")
    assert tree.log_likelihood["obs"].shape == (4, 1000, 8)
    np.testing.assert_array_equal(tree.observed_data["obs"].values[:2], [28.0, 8.0])
    for name in ("lp", "acceptance_rate", "step_size", "diverging", "n_steps"):
        assert tree.sample_stats[name].shape == (4, 1000), name


def test_log_likelihood_is_pointwise_normal_density(schools_run):
    _, result = schools_run
    tree = result.to_arviz()
    theta = tree.posterior["theta"].values
    y = tree.observed_data["obs"].values
    normaliser = np.log(SCHOOL_SIGMAS * np.sqrt(2 * np.pi))
    expected = -0.5 * ((y - theta) / SCHOOL_SIGMAS) ** 2 - normaliser
    np.testing.assert_allclose(tree.log_likelihood["obs"].values, expected, rtol=1e-4, atol=1e-4)


def test_predict_adds_posterior_predictive_centred_on_theta(schools_run):
    model, result = schools_run
    tree = bc.predict(model, result, key=5)
    predictive = tree.posterior_predictive["obs"].values
    assert predictive.shape == (4, 1000, 8)
    assert tree.posterior_predictive["obs"].dims == ("chain", "draw", "school")
    # y_rep - theta ~ N(0, sigma) independently per draw: the mean of 4000 differences is
    # within 4 standard errors sigma / sqrt(4000) of zero.
    difference = (predictive - tree.posterior["theta"].values).reshape(-1, 8)
    assert np.all(np.abs(difference.mean(0)) < 4 * SCHOOL_SIGMAS / np.sqrt(4000))
    assert not np.allclose(predictive[0, 0], tree.observed_data["obs"].values)


def test_to_arviz_accepts_coords_and_netcdf_round_trip(schools_run, tmp_path):
    _, result = schools_run
    names = [f"school {i}" for i in range(8)]
    tree = result.to_arviz(coords={"school": names})
    assert list(tree.posterior["school"].values) == names
    path = tmp_path / "posterior.nc"
    tree.to_netcdf(path, engine="h5netcdf")
    import xarray as xr

    back = xr.open_datatree(path, engine="h5netcdf")
    np.testing.assert_allclose(back.posterior["mu"].values, tree.posterior["mu"].values)
