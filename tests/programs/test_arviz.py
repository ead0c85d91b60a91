"""The ArviZ adapter of higher-order programs: groups, dims, weights and evidence."""

import arviz_base
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

from bayescore.core.errors import ArgumentError
from bayescore.inference import programs
from bayescore.models import ho

GRID = [0.0, 0.5, 1.0]


def gp_with_clusters():
    scale = numpyro.sample("scale", dist.HalfNormal(1.0))
    f = ho.gp_fn("f", lambda x, y: float(scale) ** 2 * np.exp(-((x - y) ** 2)))
    numpyro.sample("y", dist.Normal(f(0.0), 0.5), obs=0.3)
    g = ho.dp("g", 1.0, dist.Normal())
    labels = [g.sample_index() for _ in range(4)]
    return {"f": f, "labels": labels}


def test_population_to_datatree():
    population = programs.importance(ho.from_model(gp_with_clusters), 12, jax.random.key(0))
    tree = programs.to_arviz(
        population,
        evaluate={"f": GRID},
        derived={"num_clusters": lambda value: len(set(value["labels"]))},
    )
    posterior = tree.posterior
    assert sorted(posterior.data_vars) == ["f", "num_clusters", "scale"]
    assert posterior["f"].dims == ("chain", "draw", "f_x")
    assert posterior["f"].shape == (1, 12, 3)
    assert np.allclose(posterior["f_x"].values, GRID)
    assert posterior["num_clusters"].values.min() >= 1
    stats = tree.sample_stats
    particles = stats["particle"].values[0]
    # each draw is a resampled particle: its pre-resampling weight and function are kept
    assert np.allclose(stats["log_weight"].values[0], population.log_weights[particles])
    first = population.values[particles[0]]["f"]
    assert np.allclose(posterior["f"].values[0, 0], [float(first(x)) for x in GRID])
    assert tree.attrs["log_evidence"] == pytest.approx(population.log_evidence)
    assert tree.attrs["num_particles"] == 12
    assert arviz_base.extract(tree, var_names="scale").shape == (12,)


@pytest.mark.parametrize("tier", ["eager", "compiled"])
def test_chain_to_datatree(tier):
    def model():
        slope = numpyro.sample("slope", dist.Normal())
        numpyro.sample("y", dist.Normal(slope, 0.5), obs=1.0)
        return lambda x: slope * x

    chain = programs.trace_mh(ho.from_model(model), 15, jax.random.key(1), tier=tier)
    tree = programs.to_arviz(chain, evaluate={"f": [2.0]}, derived={"f1": lambda f: f(1.0)})
    assert tree.posterior["f"].shape == (1, 15, 1)
    assert np.allclose(tree.posterior["f"].values[..., 0], 2.0 * tree.posterior["f1"].values)
    # the latent site itself, from the chain's latents
    assert np.allclose(tree.posterior["slope"].values, tree.posterior["f1"].values)
    assert tree.sample_stats["accepted"].values.mean() == pytest.approx(chain.acceptance_rate)


def test_bad_inputs_raise():
    with pytest.raises(ArgumentError, match="result"):
        programs.to_arviz([1, 2])
    population = programs.Population([1, 2], [{}, {}], np.zeros(2))
    with pytest.raises(ArgumentError, match="evaluate"):
        programs.to_arviz(population, evaluate={"f": GRID})


Y = np.array([0.5, -0.2, 1.0], dtype=np.float32)


def observed_mean():
    mu = numpyro.sample("mu", dist.Normal())
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=Y)
    numpyro.factor(("penalty", 0), -0.1 * mu**2)  # not a string address: not stored


@pytest.mark.parametrize("tier", ["eager", "compiled", "trace_mh_eager", "trace_mh_compiled"])
def test_log_likelihood_is_pointwise_per_draw(tier):
    program = ho.from_model(observed_mean)
    if tier.startswith("trace_mh"):
        result = programs.trace_mh(program, 10, jax.random.key(2), tier=tier.split("_")[-1])
        assert (result.particles is not None) == (tier == "trace_mh_compiled")
        accepted = programs.to_arviz(result).sample_stats["accepted"].values
        assert accepted.mean() == pytest.approx(result.acceptance_rate)
    else:
        result = programs.importance(program, 10, jax.random.key(2), tier=tier)
    tree = programs.to_arviz(result)
    assert sorted(tree.log_likelihood.data_vars) == ["y"]
    pointwise = tree.log_likelihood["y"].values
    assert pointwise.shape == (1, 10, 3)
    mu = tree.posterior["mu"].values[..., None]
    assert np.allclose(pointwise, stats.norm.logpdf(Y, mu, 1.0), atol=1e-5)
