"""The compiled tier of trace MH: exact invariance of its steps by enumeration, posterior
means within Monte Carlo error, agreement with the eager tier, and the tier choice."""

import itertools
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from bayescore.core.errors import ArgumentError, InitializationError
from bayescore.inference import programs
from bayescore.inference.programs import compiled, compiled_mh
from bayescore.metrics import mcse_mean, mean_zscores
from bayescore.models import ho
from tests.programs import oracles

LOGGER = "bayescore.inference.programs.compiled"
TOLERANCE = 1e-12
WET = np.array([[0.0, 0.9], [0.8, 0.98]])  # P(wet | rain, sprinkler), oracles.WET_PROBABILITY
SEASON = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])  # P(season | sprinkler)


def static_sprinkler():
    """The sprinkler with a third, three-valued site, written without Python control flow on
    random values: a static program whose later priors depend on earlier values."""
    rain = numpyro.sample("rain", dist.Bernoulli(0.3))
    sprinkler = numpyro.sample("sprinkler", dist.Bernoulli(jnp.where(rain == 1, 0.1, 0.4)))
    # NumPy constants: float64 under jax.enable_x64, so the enumeration is exact to 1e-12
    season = numpyro.sample("season", dist.Categorical(probs=jnp.asarray(SEASON)[sprinkler]))
    numpyro.sample("wet", dist.Bernoulli(jnp.asarray(WET)[rain, sprinkler]), obs=0)
    fit = jnp.asarray(np.array([0.0, -0.5, -1.0]))[season] + 0.7 * rain * season
    numpyro.factor("season_fit", fit)
    return rain


SUPPORTS = {"rain": (0, 1), "sprinkler": (0, 1), "season": (0, 1, 2)}


def flip_rain(key, value):
    """A deterministic involution on {0, 1}: q(x' | x) = q(x | x') = 1."""
    return 1 - value, 0.0, 0.0


def proposals(kernel, num_sites):
    """The kernel's law on ``(regenerate mask, probability, replay change)`` (test side)."""
    if isinstance(kernel, programs.SingleSite):
        return [
            (tuple(k == j for k in range(num_sites)), 1.0 / num_sites, None)
            for j in range(num_sites)
        ]
    if isinstance(kernel, programs.Lazy):
        masks = itertools.product((False, True), repeat=num_sites)
        return [
            (m, kernel.p ** sum(m) * (1 - kernel.p) ** (num_sites - sum(m)), None) for m in masks
        ]
    if isinstance(kernel, programs.Restart):
        inner = [(m, (1 - kernel.q) * p, c) for m, p, c in proposals(kernel.inner, num_sites)]
        return [((True,) * num_sites, kernel.q, None), *inner]
    return [((False,) * num_sites, 1.0, kernel)]  # a site kernel with a deterministic proposal


def transition_matrix(model, supports, kernel, stage=None):
    """A compiled move's transition matrix, built from compiled runs (proposal probabilities:
    the redrawn sites' log priors in the new run) and the compiled acceptance ratio, with the
    unnormalised target density of each state.

    Without ``stage``: the whole program's chain on all its latent states, the target its
    posterior. With ``stage``: a resample-move step at that stage, on the states of the latent
    sites of stage <= ``stage`` (the later sites fixed at their largest value: a move replays
    them), accepted by the prefix ratio; the returned density is then of no use.
    """
    body = ho.from_model(model).body
    structure = compiled.analyse(body)
    latent = structure.latent_addresses
    prefix = None if stage is None else compiled_mh.prefix_masks(structure, stage)
    num_eligible = len(latent) if prefix is None else int(prefix[0].sum())
    states = list(itertools.product(*(supports[a] for a in latent[:num_eligible])))
    later = [max(supports[a]) for a in latent[num_eligible:]]

    @jax.jit
    def run(replay, regenerate, fresh):
        key = jax.random.key(0)
        return compiled_mh.run_regenerated(body, structure, key, replay, regenerate, fresh)[1]

    def as_arrays(values):
        return [jnp.asarray(v, jnp.int32) for v in values]

    keep = jnp.zeros(len(latent), bool)
    olds = [run(as_arrays(list(x) + later), keep, as_arrays(list(x) + later)) for x in states]
    density = np.array([math.exp(o.log_weight + o.log_priors.sum()) for o in olds])
    matrix = np.zeros((len(states), len(states)))
    for i, (x, old) in enumerate(zip(states, olds, strict=True)):
        full = list(x) + later
        for mask, probability, site_kernel in proposals(kernel, num_eligible):
            mask = mask + (False,) * (len(latent) - num_eligible)
            replay, correction = list(full), 0.0
            if site_kernel is not None:
                index = latent.index(site_kernel.address)
                replay[index], forward, backward = site_kernel.proposal(None, full[index])
                correction = backward - forward
            redrawn = [k for k, m in enumerate(mask) if m]
            for values in itertools.product(*(supports[latent[k]] for k in redrawn)):
                fresh = list(replay)
                for k, v in zip(redrawn, values, strict=True):
                    fresh[k] = v
                new = run(as_arrays(replay), jnp.array(mask), as_arrays(fresh))
                weight = probability * math.exp(sum(float(new.log_priors[k]) for k in redrawn))
                log_ratio = compiled_mh.log_acceptance(
                    old, new, jnp.array(mask), correction, prefix
                )
                accept = min(1.0, math.exp(min(float(log_ratio), 0.0)))
                moved = tuple(int(v) for v in new.latents)
                assert list(moved[num_eligible:]) == later  # the later sites are replayed
                matrix[i, states.index(moved[:num_eligible])] += weight * accept
                matrix[i, i] += weight * (1.0 - accept)
    return states, matrix, density


@pytest.mark.parametrize(
    "kernel",
    [
        programs.single_site(),
        programs.lazy(0.5),
        programs.restart(0.3, programs.lazy(0.4)),
        programs.site_kernel("rain", flip_rain),
    ],
    ids=["single_site", "lazy", "restart", "site_kernel"],
)
def test_compiled_step_leaves_the_posterior_invariant_exactly(kernel):
    # jax.enable_x64 as a context can reuse functions compiled without it (float32
    # constants, errors of 1e-9 after a float32 chain of the same program): start afresh
    jax.clear_caches()
    with jax.enable_x64(True):
        states, matrix, weights = transition_matrix(static_sprinkler, SUPPORTS, kernel)
        posterior = weights / weights.sum()
        exact = programs.enumerate(ho.from_model(static_sprinkler))
        rain = sum(p for x, p in zip(states, posterior, strict=True) if x[0] == 1)
        assert abs(rain - exact.probability(lambda r: r == 1)) < TOLERANCE
    assert np.allclose(matrix.sum(axis=1), 1.0, atol=TOLERANCE)
    assert np.abs(posterior @ matrix - posterior).max() < TOLERANCE
    assert np.trace(matrix) < len(states) - 1.0  # the kernel moves


def chained_normal():
    """a ~ N(0, 1), b ~ N(a, 1), 1.0 ~ N(b, 0.5²): posterior means 1/2.25 and 2/2.25."""
    a = numpyro.sample("a", dist.Normal())
    b = numpyro.sample("b", dist.Normal(a, 1.0))
    numpyro.sample("y", dist.Normal(b, 0.5), obs=1.0)
    return jnp.stack([a, b])


@pytest.mark.parametrize(
    "kernel",
    [
        programs.single_site(),
        programs.lazy(0.5),
        programs.restart(0.1, programs.site_kernel("b", programs.random_walk(0.8))),
    ],
    ids=["single_site", "lazy", "restart_site_kernel"],
)
def test_compiled_chain_posterior_means(kernel):
    chain = programs.trace_mh(
        ho.from_model(chained_normal), 6000, jax.random.key(11), kernel, tier="compiled"
    )
    assert chain.particles is not None
    draws = np.stack([chain.particles.latents["a"], chain.particles.latents["b"]], axis=-1)
    # ESS-based Monte Carlo standard errors of the chain (burn-in 500 steps dropped)
    z = mean_zscores(draws[None, 500:], np.array([1.0, 2.0]) / 2.25)
    assert np.all(np.abs(z) < 4), z
    assert 0.05 < chain.acceptance_rate < 1.0
    assert np.allclose(np.asarray(chain.values[-1]), draws[-1])


def test_compiled_and_eager_chains_agree_in_distribution():
    # P(rain | not wet) of the static sprinkler: each tier within 4 of its ESS-based MCSE of
    # the exact value, and the two tiers' means within 4 standard errors of their difference.
    program = ho.from_model(static_sprinkler)
    with jax.enable_x64(True):
        exact = programs.enumerate(program).probability(lambda r: r == 1)
    means, errors = [], []
    for tier in ("compiled", "eager"):
        chain = programs.trace_mh(program, 1500, jax.random.key(4), programs.lazy(0.5), tier=tier)
        assert (chain.particles is not None) == (tier == "compiled")
        draws = np.array(chain.values, dtype=float).reshape(1, -1, 1)
        assert abs(mean_zscores(draws, exact)[0]) < 4
        means.append(draws.mean())
        errors.append(mcse_mean(draws)[0])
    assert abs(means[0] - means[1]) < 4 * math.hypot(*errors)


def test_both_tiers_start_from_the_same_state():
    # a site kernel for a site the program lacks never moves: step 0 is the start
    never = programs.site_kernel("missing", flip_rain)
    program = ho.from_model(chained_normal)
    fast = programs.trace_mh(program, 3, jax.random.key(5), never, tier="compiled")
    slow = programs.trace_mh(program, 3, jax.random.key(5), never, tier="eager")
    assert not fast.accepted.any() and not slow.accepted.any()
    for name in ("a", "b"):
        assert np.allclose(fast.latents[2][name], slow.latents[2][name], atol=1e-6)
    assert fast.log_weights[0] == pytest.approx(slow.log_weights[0], rel=1e-5)
    assert sorted(fast.trace) == sorted(slow.trace) == ["a", "b", "y"]


def test_tier_choice_and_its_notice(caplog):
    static = ho.from_model(chained_normal)
    dynamic = ho.from_model(oracles.sprinkler)  # int() of a random value

    def not_traceable(key, value):
        return value + 0.1, float(value), 0.0  # float() of a traced value

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert programs.trace_mh(static, 5, jax.random.key(0)).particles is not None
        assert caplog.records == []
        assert programs.trace_mh(dynamic, 5, jax.random.key(0)).particles is None
        kernel = programs.site_kernel("a", not_traceable)
        assert programs.trace_mh(static, 5, jax.random.key(0), kernel).particles is None
    first, second = caplog.records
    assert "trace_mh" in first.getMessage() and "sprinkler" in first.getMessage()
    assert "chained_normal" in second.getMessage()
    assert "ConcretizationTypeError" in second.getMessage()
    with pytest.raises(programs.DynamicProgramError, match="sprinkler.*tier='auto'"):
        programs.trace_mh(dynamic, 5, jax.random.key(0), tier="compiled")
    assert programs.trace_mh(static, 5, jax.random.key(0), tier="eager").particles is None
    with pytest.raises(ArgumentError, match="tier"):
        programs.trace_mh(static, 5, jax.random.key(0), tier="jit")


def test_memoized_sites_run_in_the_eager_tier():
    def memoized():
        f = ho.mem("f", lambda x: numpyro.sample("y", dist.Normal(x, 1.0)))
        numpyro.sample("obs", dist.Normal(f(0.0), 1.0), obs=0.5)

    program = ho.from_model(memoized)
    assert isinstance(compiled.analyse(program.body), compiled.Structure)
    with pytest.raises(programs.DynamicProgramError, match="memoized"):
        programs.trace_mh(program, 5, jax.random.key(0), tier="compiled")
    assert programs.trace_mh(program, 5, jax.random.key(0)).particles is None


def test_compiled_chain_of_weight_zero_and_without_latents():
    with pytest.raises(InitializationError, match="max_init_tries"):
        programs.trace_mh(
            ho.Measure.score(-math.inf), 5, jax.random.key(0), max_init_tries=3, tier="compiled"
        )
    chain = programs.trace_mh(ho.Measure.score(-1.0), 4, jax.random.key(0), tier="compiled")
    assert not chain.accepted.any() and np.all(chain.log_weights == -1.0)


PMMH_YS = (1.0, 2.0)


def theta_prior():
    return numpyro.sample("theta", dist.Normal())


def latent_pairs(theta):
    """x_i ~ N(θ, 1), y_i ~ N(x_i, 1): p(y | θ) = Π N(y_i; θ, 2), so with θ ~ N(0, 1) the
    posterior of θ is N(Σ y / 4, 1/2)."""

    def body():
        for i, y in enumerate(PMMH_YS):
            x = numpyro.sample(f"x{i}", dist.Normal(theta, 1.0))
            numpyro.sample(f"y{i}", dist.Normal(x, 1.0), obs=y)

    return ho.from_model(body)


def test_compiled_pmmh_posterior_mean_and_its_evidence_estimates():
    chain = programs.pmmh(
        ho.Random.from_model(theta_prior),
        latent_pairs,
        8,
        4000,
        jax.random.key(21),
        tier="compiled",
    )
    assert chain.particles is not None
    thetas = np.asarray(chain.particles.latents[("parameters", "theta")], dtype=float)
    # ESS-based Monte Carlo standard error of the chain (burn-in 200 steps dropped)
    assert abs(mean_zscores(thetas[None, 200:, None], sum(PMMH_YS) / 4)[0]) < 4
    assert 0.05 < chain.acceptance_rate < 1.0
    # a state's log weight is its population's log evidence (rebuilt from its key)
    for step in (0, 1234, 3999):
        theta, population = chain.values[step]
        assert float(theta) == pytest.approx(thetas[step], rel=1e-6)
        assert population.log_evidence == pytest.approx(chain.log_weights[step], abs=1e-5)
        assert population.num_particles == 8


def test_pmmh_tier_choice(caplog):
    prior = ho.Random.from_model(theta_prior)

    def branching(theta):  # Python control flow on theta: static only for a concrete theta
        return latent_pairs(theta) if theta > 0 else latent_pairs(-theta)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert programs.pmmh(prior, latent_pairs, 4, 5, jax.random.key(0)).particles is not None
        assert caplog.records == []
        chain = programs.pmmh(prior, branching, 4, 5, jax.random.key(0))
        assert chain.particles is None and chain.values[0][1].num_particles == 4
    (record,) = caplog.records
    message = record.getMessage()
    assert (
        "pmmh" in message and "'test_pmmh_tier_choice.<locals>.branching' is not static" in message
    )
    assert "TracerBoolConversionError" in message
    parameter_prior = ho.Random.from_model(oracles.parameter_prior)  # int() of theta
    with pytest.raises(programs.DynamicProgramError, match="parameter_prior"):
        programs.pmmh(
            parameter_prior, oracles.parameter_model, 4, 5, jax.random.key(0), tier="compiled"
        )
    with pytest.raises(programs.DynamicProgramError, match="'parameter_model' is not static"):
        programs.pmmh(prior, oracles.parameter_model, 4, 5, jax.random.key(0), tier="compiled")
    assert (
        programs.pmmh(prior, latent_pairs, 4, 5, jax.random.key(0), tier="eager").particles is None
    )
    with pytest.raises(ArgumentError, match="tier"):
        programs.pmmh(prior, latent_pairs, 4, 5, jax.random.key(0), tier="jit")
