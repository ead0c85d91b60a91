"""Exact answers by enumeration (reference notes, section 6), in float64 to 1e-12."""

import math

import jax
import numpyro.distributions as dist
import pytest

from bayescore.inference import programs
from bayescore.models import ho
from tests.programs import oracles

TOLERANCE = 1e-12
SPRINKLER_EVIDENCE = 0.5026
SPRINKLER_RAIN = 0.0546 / 0.5026  # 0.108635


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def probability_of_one(program):
    return programs.enumerate(program).probability(lambda value: value == 1)


def test_sprinkler_posterior_and_evidence():
    table = programs.enumerate(ho.from_model(oracles.sprinkler))
    assert abs(table.probability(lambda rain: rain == 1) - SPRINKLER_RAIN) < TOLERANCE
    assert abs(table.log_evidence - math.log(SPRINKLER_EVIDENCE)) < TOLERANCE


def test_control_flow_is_four_sevenths():
    assert abs(probability_of_one(ho.from_model(oracles.control_flow)) - 4 / 7) < TOLERANCE


def test_bus_weekend():
    weekend = 2 / 7 * math.exp(-3.0) * 3.0**4
    weekday = 5 / 7 * math.exp(-10.0) * 10.0**4
    exact = weekend / (weekend + weekday)
    assert abs(exact - 0.780369) < 1e-6
    assert abs(probability_of_one(ho.from_model(oracles.bus)) - exact) < TOLERANCE


def test_memoized_random_function_composes_with_itself():
    table = programs.enumerate(ho.from_model(oracles.memo_composition))
    assert abs(table.probability(lambda pair: pair[1] == 0) - 5 / 9) < TOLERANCE
    resampled = programs.enumerate(ho.from_model(oracles.memo_composition, memoized=False))
    assert abs(resampled.probability(lambda pair: pair[1] == 0) - 1 / 3) < TOLERANCE
    conditioned = programs.enumerate(ho.from_model(oracles.memo_composition, conditioned=True))
    assert abs(conditioned.probability(lambda pair: pair[0] == 0) - 3 / 5) < TOLERANCE
    assert abs(conditioned.log_evidence - math.log(5 / 9)) < TOLERANCE


def test_crp_number_of_tables():
    table = programs.enumerate(ho.Random.from_model(oracles.crp_tables, 4, 1.0))
    for tables, exact in zip([1, 2, 3, 4], [6 / 24, 11 / 24, 6 / 24, 1 / 24], strict=True):
        assert abs(table.probability(lambda k, t=tables: k == t) - exact) < TOLERANCE


@pytest.mark.parametrize(
    "transform",
    [
        lambda m: programs.collapse(programs.importance(m, 2)),
        lambda m: programs.collapse(programs.resample(programs.importance(m, 2), "multinomial")),
        lambda m: programs.collapse(programs.smc(m, 2, resampler="multinomial", ess_threshold=1.0)),
    ],
    ids=["importance", "resample", "smc"],
)
def test_transformers_preserve_the_sprinkler_measure(transform):
    table = programs.enumerate(transform(ho.from_model(oracles.sprinkler)))
    assert abs(table.probability(lambda rain: rain == 1) - SPRINKLER_RAIN) < TOLERANCE
    assert abs(table.log_evidence - math.log(SPRINKLER_EVIDENCE)) < TOLERANCE


def test_smc_preserves_memoized_functions_inside_particles():
    # each particle has its own memo table, rebuilt by replay at every stage
    program = ho.from_model(oracles.memo_composition, conditioned=True)
    table = programs.enumerate(
        programs.collapse(programs.smc(program, 2, resampler="multinomial", ess_threshold=1.0))
    )
    assert abs(table.probability(lambda pair: pair[0] == 0) - 3 / 5) < TOLERANCE
    assert abs(table.log_evidence - math.log(5 / 9)) < TOLERANCE


def test_smc_preserves_a_program_with_hard_conditions():
    program = programs.collapse(
        programs.smc(ho.from_model(oracles.control_flow), 2, resampler="multinomial")
    )
    assert abs(probability_of_one(program) - 4 / 7) < TOLERANCE


@pytest.mark.parametrize("program", [oracles.varying_dimension, oracles.sprinkler])
def test_resample_move_kernels_leave_the_posterior_invariant(program):
    # One particle, resampled at every stage (ess_threshold > 1), then two single-site MH moves:
    # exact iff the move (with its n/n' dimension correction) is invariant for the prefix.
    moved = programs.collapse(
        programs.rmsmc(
            ho.from_model(program), 1, num_moves=2, resampler="multinomial", ess_threshold=2.0
        )
    )
    exact = programs.enumerate(ho.from_model(program))
    assert abs(probability_of_one(moved) - exact.probability(lambda x: x == 1)) < TOLERANCE
    assert abs(programs.enumerate(moved).log_evidence - exact.log_evidence) < TOLERANCE


def test_varying_dimension_oracle():
    exact = 0.4 * (0.7 * 0.9 + 0.3 * 0.3) / (0.4 * 0.72 + 0.6 * 0.5)
    assert abs(probability_of_one(ho.from_model(oracles.varying_dimension)) - exact) < TOLERANCE


def test_multinomial_resampling_keeps_expected_counts():
    population = programs.Population([0, 1, 2], [{}, {}, {}], [math.log(3.0), 0.0, -math.inf])
    counts = programs.resample(population, "multinomial").map(lambda p: p.values.count(0))
    table = programs.enumerate(counts)
    assert abs(table.expectation(lambda count: count) - 3 * 0.75) < TOLERANCE
    assert abs(table.log_evidence) < TOLERANCE  # resampling is normalised


def coin(p):
    return ho.Random.from_distribution(dist.Bernoulli(p), "coin").map(int).measure()


def weighted(x):
    return coin(1 / (2 + x)).bind(
        lambda y: ho.Measure.score(math.log(0.3 + 0.6 * y)).map(lambda _: x + y)
    )


def same_measure(left, right):
    left, right = programs.enumerate(left), programs.enumerate(right)
    assert left.as_dict().keys() == right.as_dict().keys()
    for value, probability in left.as_dict().items():
        assert abs(probability - right.as_dict()[value]) < TOLERANCE
    assert abs(left.log_evidence - right.log_evidence) < TOLERANCE


def test_monad_laws_hold_in_distribution():
    m = coin(0.35).bind(weighted)
    same_measure(ho.Measure.pure(1).bind(weighted), weighted(1))  # left identity
    same_measure(m.bind(ho.Measure.pure), m)  # right identity
    same_measure(  # associativity
        m.bind(weighted).bind(weighted), m.bind(lambda x: weighted(x).bind(weighted))
    )


def test_condition_and_map_by_enumeration():
    m = coin(0.5).bind(lambda x: coin(0.5).map(lambda y: x + y)).condition(lambda s: s >= 1)
    table = programs.enumerate(m)
    assert abs(table.probability(lambda s: s == 2) - 1 / 3) < TOLERANCE
    assert abs(table.log_evidence - math.log(0.75)) < TOLERANCE


def flip(key, value):
    """A deterministic, symmetric proposal for a binary site: q(1 - x | x) = 1."""
    return 1 - value, 0.0, 0.0


@pytest.mark.parametrize(
    "kernel",
    [
        programs.lazy(0.5),
        programs.restart(0.3, programs.lazy(0.5)),
        programs.site_kernel("x", flip),
    ],
    ids=["lazy", "restart", "site_kernel"],
)
def test_resample_move_with_any_kernel_leaves_the_posterior_invariant(kernel):
    # As above, with one move of each kernel: its proposals stop at the particle's last
    # observed site, so the kernel targets the prefix measure and the collapse stays exact.
    program = ho.from_model(oracles.varying_dimension)
    moved = programs.collapse(
        programs.rmsmc(
            program, 1, num_moves=1, kernel=kernel, resampler="multinomial", ess_threshold=2.0
        )
    )
    table = programs.enumerate(moved)
    exact = programs.enumerate(program)
    assert abs(table.probability(lambda x: x == 1) - exact.probability(lambda x: x == 1)) < (
        TOLERANCE
    )
    assert abs(table.log_evidence - exact.log_evidence) < TOLERANCE
