"""Bad programs and bad arguments raise BayescoreError subclasses that name the problem."""

import math

import jax
import numpyro
import numpyro.distributions as dist
import pytest

from bayescore.core.errors import ArgumentError, BayescoreError, InitializationError
from bayescore.inference import programs
from bayescore.models import ho
from tests.programs import oracles

KEY = jax.random.key(0)


def test_score_inside_a_random_raises():
    scored = ho.Random(lambda: numpyro.factor("w", -1.0))
    with pytest.raises(ho.ScoreInRandomError, match="'w'"):
        scored.draw(KEY)
    inside = ho.Measure(lambda: ho.call("prior", scored))
    with pytest.raises(BayescoreError, match=r"\('prior', 'w'\)"):
        inside.run(KEY)


def test_enumerate_refuses_a_continuous_site():
    with pytest.raises(programs.NotEnumerableError, match="'slope'.*Normal"):
        programs.enumerate(ho.from_model(oracles.regression))


def test_enumerate_refuses_non_multinomial_resampling():
    program = programs.collapse(
        programs.smc(ho.from_model(oracles.sprinkler), 2, ess_threshold=1.0)
    )
    with pytest.raises(programs.NotEnumerableError, match="multinomial"):
        programs.enumerate(program)


def test_enumerate_of_a_zero_measure_raises():
    with pytest.raises(BayescoreError, match="weight zero"):
        programs.enumerate(ho.Measure.score(-math.inf))


@pytest.mark.parametrize("num_particles", [0, -3, 2.5, True])
def test_bad_num_particles(num_particles):
    m = ho.from_model(oracles.sprinkler)
    with pytest.raises(ArgumentError, match="num_particles"):
        programs.importance(m, num_particles, KEY)
    with pytest.raises(ArgumentError, match="num_particles"):
        programs.smc(m, num_particles, KEY)


def test_unknown_resampling_scheme():
    population = programs.importance(ho.from_model(oracles.sprinkler), 2, KEY)
    with pytest.raises(ArgumentError, match="scheme.*'bogus'"):
        programs.resample(population, "bogus", KEY)
    with pytest.raises(ArgumentError, match="scheme"):
        programs.smc(ho.from_model(oracles.sprinkler), 2, KEY, resampler="bogus")
    with pytest.raises(ArgumentError, match="population"):
        programs.collapse([1, 2]).run(KEY)


def test_duplicate_address_and_primitives_outside_a_program():
    def twice():
        numpyro.sample("x", dist.Normal())
        numpyro.sample("x", dist.Normal())

    with pytest.raises(ho.AddressError, match="'x'.*twice"):
        ho.from_model(twice).run(KEY)
    with pytest.raises(ho.AddressError, match="ho.mem"):
        ho.mem("f", lambda x: x)


def test_trace_mh_on_a_program_of_weight_zero():
    with pytest.raises(InitializationError, match="max_init_tries"):
        programs.trace_mh(ho.Measure.score(-math.inf), 5, KEY, max_init_tries=3)
    with pytest.raises(ArgumentError, match="kernel"):
        programs.trace_mh(ho.from_model(oracles.sprinkler), 5, KEY, kernel="gibbs")


@pytest.mark.parametrize("scheme", ["systematic", "stratified", "residual", "multinomial"])
def test_every_scheme_preserves_total_weight(scheme):
    population = programs.Population(list(range(4)), [{}] * 4, [0.0, -math.inf, 0.0, 0.0])
    resampled = programs.resample(population, scheme, KEY)
    assert abs(resampled.log_evidence - population.log_evidence) < 1e-6
    assert 1 not in resampled.values
