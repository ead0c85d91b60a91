"""The compiled tier of resample-move SMC: exact invariance of a move for a prefix measure
by enumeration, the evidence's unbiasedness and the posterior means against a Kalman
smoother, and the tier choice."""

import itertools
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from bayescore.core.errors import ArgumentError
from bayescore.inference import programs
from bayescore.inference.programs import compiled, compiled_mh
from bayescore.models import ho
from tests.programs import oracles
from tests.programs.test_compiled_mh import SEASON, WET, flip_rain, transition_matrix

LOGGER = "bayescore.inference.programs.compiled"
TOLERANCE = 1e-12
FIT = np.array([0.0, -0.5, -1.0])  # the season factor's log weight
LATE = np.array([0.3, 0.3, 0.8])  # P(late | season, no rain), halved by rain
SEEN = np.array([0.2, 0.9])  # P(seen | late, no rain), halved by rain


def staged_sprinkler():
    """The static sprinkler with three observed sites, so three stages of latents: (rain,
    sprinkler) | wet | (season) | season_fit | (late) | seen; every later site reads rain,
    so a move that weighs by a site outside its prefix is not invariant for the prefix."""
    rain = numpyro.sample("rain", dist.Bernoulli(0.3))
    sprinkler = numpyro.sample("sprinkler", dist.Bernoulli(jnp.where(rain == 1, 0.1, 0.4)))
    # NumPy constants: float64 under jax.enable_x64, so the enumeration is exact to 1e-12
    numpyro.sample("wet", dist.Bernoulli(jnp.asarray(WET)[rain, sprinkler]), obs=0)
    season = numpyro.sample("season", dist.Categorical(probs=jnp.asarray(SEASON)[sprinkler]))
    numpyro.factor("season_fit", jnp.asarray(FIT)[season] + 0.7 * rain * season)
    late = numpyro.sample("late", dist.Bernoulli(jnp.asarray(LATE)[season] / (1 + rain)))
    numpyro.sample("seen", dist.Bernoulli(jnp.asarray(SEEN)[late] / (1 + rain)), obs=1)
    return rain


SUPPORTS = {"rain": (0, 1), "sprinkler": (0, 1), "season": (0, 1, 2), "late": (0, 1)}


def prefix_density(state, stage):
    """γ_t of a prefix (rain, sprinkler[, season]) of the staged sprinkler, by hand."""
    rain, sprinkler = state[:2]
    density = (0.3 if rain else 0.7) * [[0.6, 0.4], [0.9, 0.1]][rain][sprinkler]
    density *= 1.0 - WET[rain, sprinkler]
    if stage >= 1:
        season = state[2]
        density *= SEASON[sprinkler, season] * math.exp(FIT[season] + 0.7 * rain * season)
    return density


def posterior_density(prefix):
    """The unnormalised posterior's marginal on a prefix: γ_2 summed over the later sites."""
    seasons = [prefix[2]] if len(prefix) > 2 else SUPPORTS["season"]
    total = 0.0
    for season in seasons:
        late = LATE[season] / (1 + prefix[0])
        seen = ((1.0 - late) * SEEN[0] + late * SEEN[1]) / (1 + prefix[0])
        total += prefix_density((*prefix[:2], season), 1) * seen
    return total


KERNELS = [
    programs.single_site(),
    programs.lazy(0.5),
    programs.restart(0.3, programs.lazy(0.4)),
    programs.site_kernel("rain", flip_rain),
]


@pytest.mark.parametrize("stage", [0, 1])
@pytest.mark.parametrize("kernel", KERNELS, ids=["single_site", "lazy", "restart", "site_kernel"])
def test_compiled_move_leaves_the_prefix_measure_invariant_exactly(kernel, stage):
    # gamma_t (t < T = 3) is stationary for one move to 1e-12, while the posterior's marginal
    # on the prefix is not: a move targeting the whole program would fail here.
    # jax.enable_x64 as a context reuses functions compiled without it (float32 constants,
    # errors of 1e-9 here after a float32 compiled chain of the same sites): start afresh
    jax.clear_caches()
    with jax.enable_x64(True):
        states, matrix, _ = transition_matrix(staged_sprinkler, SUPPORTS, kernel, stage)
        table = programs.enumerate(ho.from_model(staged_sprinkler))
    gamma = np.array([prefix_density(x, stage) for x in states])
    gamma /= gamma.sum()
    posterior = np.array([posterior_density(x) for x in states])
    posterior /= posterior.sum()
    rain = sum(p for x, p in zip(states, posterior, strict=True) if x[0] == 1)
    assert abs(rain - table.probability(lambda r: r == 1)) < TOLERANCE  # the hand densities
    assert np.allclose(matrix.sum(axis=1), 1.0, atol=TOLERANCE)
    assert np.abs(gamma @ matrix - gamma).max() < TOLERANCE
    assert np.abs(posterior @ matrix - posterior).max() > 1e-3
    assert np.trace(matrix) < len(states) - 0.5  # the move moves


def test_prefix_proposals_redraw_only_the_prefix():
    body = ho.from_model(staged_sprinkler).body
    structure = compiled.analyse(body)
    latent = structure.latent_addresses
    state = compiled_mh.State(None, [1, 0, 2, 1], jnp.zeros(4), jnp.zeros(()))
    for stage, kernel in itertools.product((0, 1), KERNELS[:3]):
        eligible, _ = compiled_mh.prefix_masks(structure, stage)
        for seed in range(20):
            _, regenerate, correction = compiled_mh.propose(
                kernel, jax.random.key(seed), state, latent, eligible
            )
            assert not np.any(np.asarray(regenerate) & ~np.asarray(eligible))
            assert float(correction) == 0.0
    # a site kernel for a site after the prefix cannot move
    late = programs.site_kernel("late", flip_rain)
    eligible, _ = compiled_mh.prefix_masks(structure, 1)
    _, _, correction = compiled_mh.propose(late, jax.random.key(0), state, latent, eligible)
    assert float(correction) == -math.inf


# The Kalman state-space model of tests/programs/oracles.py with four observations.
YS = np.array([0.3, -0.5, 1.2, 0.8], dtype=np.float32)
NUM_RUNS, NUM_PARTICLES = 300, 16


@pytest.fixture(scope="module")
def kalman_runs():
    """Independent compiled rmsmc runs (resampling at every stage, two single-site moves):
    each run's Zhat / Z and its weighted means of x_t."""
    program = ho.from_model(oracles.linear_gaussian, YS)
    exact = oracles.kalman_log_evidence(YS.astype(float))
    ratios, means = [], []
    for seed in range(NUM_RUNS):
        population = programs.rmsmc(
            program,
            NUM_PARTICLES,
            jax.random.key(seed),
            num_moves=2,
            ess_threshold=1.0,
            tier="compiled",
        )
        ratios.append(math.exp(population.log_evidence - exact))
        latents = population.particles.latents
        draws = np.stack([np.asarray(latents[f"x{t}"]) for t in range(len(YS))], axis=-1)
        means.append(population.normalized_weights() @ draws)
    return np.array(ratios), np.array(means), population


def test_compiled_rmsmc_evidence_is_unbiased(kalman_runs):
    # Zhat / Z over independent runs has mean 1 (Del Moral 2004, the moves being
    # gamma_t-invariant): the mean of 300 runs' ratios is within 4 standard errors of 1.
    ratios, _, population = kalman_runs
    assert abs(ratios.mean() - 1.0) < 4 * ratios.std(ddof=1) / math.sqrt(len(ratios))
    assert population.particles is not None and population.num_particles == NUM_PARTICLES
    assert sorted(population.traces[0]) == sorted(
        [f"x{t}" for t in range(len(YS))] + [f"y{t}" for t in range(len(YS))]
    )


def test_compiled_rmsmc_posterior_means(kalman_runs):
    # Zhat_r * fhat_r is unbiased for Z * E[x_t | y] over runs r, so the ratio of the means
    # of Zhat_r fhat_r and Zhat_r is consistent for fixed N; within 4 of its delta-method
    # standard error over the 300 runs of the Kalman smoother's means.
    ratios, means, _ = kalman_runs
    estimate = (ratios[:, None] * means).sum(0) / ratios.sum()
    residuals = ratios[:, None] * (means - estimate) / ratios.mean()
    error = residuals.std(0, ddof=1) / math.sqrt(len(ratios))
    exact = oracles.kalman_smoother_means(YS.astype(float))
    assert np.all(np.abs(estimate - exact) < 4 * error), (estimate, exact, error)


def test_tier_choice_and_its_notice(caplog):
    static = ho.from_model(oracles.linear_gaussian, YS)
    dynamic = ho.from_model(oracles.sprinkler)  # int() of a random value

    def not_traceable(key, value):
        return value + 0.1, float(value), 0.0  # float() of a traced value

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert programs.rmsmc(static, 4, jax.random.key(0)).particles is not None
        assert caplog.records == []
        eager = programs.rmsmc(dynamic, 4, jax.random.key(0))
        assert eager.particles is None and set(eager.values) <= {0, 1}
        kernel = programs.site_kernel("x0", not_traceable)
        assert programs.rmsmc(static, 4, jax.random.key(0), kernel=kernel).particles is None
    first, second = caplog.records
    assert first.levelno == logging.INFO
    assert "rmsmc" in first.getMessage() and "sprinkler" in first.getMessage()
    assert "linear_gaussian" in second.getMessage()
    assert "ConcretizationTypeError" in second.getMessage()
    with pytest.raises(programs.DynamicProgramError, match="rmsmc.*sprinkler.*tier='auto'"):
        programs.rmsmc(dynamic, 4, jax.random.key(0), tier="compiled")
    assert programs.rmsmc(static, 4, jax.random.key(0), tier="eager").particles is None
    with pytest.raises(ArgumentError, match="tier"):
        programs.rmsmc(static, 4, jax.random.key(0), tier="jit")
    with pytest.raises(ArgumentError, match="needs a key"):
        programs.rmsmc(static, 4, tier="compiled")


def test_memoized_sites_run_in_the_eager_tier():
    def memoized():
        f = ho.mem("f", lambda x: numpyro.sample("y", dist.Normal(x, 1.0)))
        numpyro.sample("obs", dist.Normal(f(0.0), 1.0), obs=0.5)

    program = ho.from_model(memoized)
    with pytest.raises(programs.DynamicProgramError, match="memoized"):
        programs.rmsmc(program, 4, jax.random.key(0), tier="compiled")
    assert programs.rmsmc(program, 4, jax.random.key(0)).particles is None
