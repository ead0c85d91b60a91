"""The compiled tier: tier choice and its notice, and SMC's evidence against a Kalman filter."""

import logging
import math

import blackjax.smc.resampling as resampling
import jax
import numpy as np
import pytest

from bayescore.core.errors import ArgumentError
from bayescore.inference import programs
from bayescore.inference.programs import compiled
from bayescore.models import ho
from bayescore.models.ho.runtime import Frame, run_frame
from tests.programs import oracles

LOGGER = "bayescore.inference.programs.compiled"


def test_tier_choice_and_its_notice(caplog):
    static = ho.from_model(oracles.vote, num_blocks=2)
    dynamic = ho.from_model(oracles.sprinkler)  # int() of a random value
    with caplog.at_level(logging.INFO, logger=LOGGER):
        compiled = programs.importance(static, 16, jax.random.key(0))
        assert caplog.records == []
        eager = programs.smc(dynamic, 16, jax.random.key(0))
    assert compiled.particles is not None and eager.particles is None
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert "smc" in record.getMessage() and "sprinkler" in record.getMessage()
    assert "ConcretizationTypeError" in record.getMessage()
    assert set(eager.values) <= {0, 1} and len(compiled.values) == 16
    with pytest.raises(programs.DynamicProgramError, match="sprinkler.*tier='auto'"):
        programs.importance(dynamic, 4, jax.random.key(0), tier="compiled")
    assert programs.importance(static, 4, jax.random.key(0), tier="eager").particles is None
    with pytest.raises(ArgumentError, match="needs a key"):
        programs.smc(static, 4, tier="compiled")
    with pytest.raises(ArgumentError, match="tier"):
        programs.smc(static, 4, jax.random.key(0), tier="jit")


T = 6
YS = np.array([0.3, -0.5, 1.2, 0.8, -0.2, 0.4], dtype=np.float32)
linear_gaussian, kalman_log_evidence = oracles.linear_gaussian, oracles.kalman_log_evidence


def test_compiled_smc_evidence_is_unbiased_for_the_kalman_filter_evidence():
    # Zhat / Z over independent runs has mean 1 (SMC's evidence is unbiased, Del Moral 2004):
    # the mean of 300 runs' ratios is within 4 standard errors (their sd / sqrt(300)) of 1.
    program = ho.from_model(linear_gaussian, YS)
    exact = kalman_log_evidence(YS.astype(float))
    ratios = []
    for seed in range(300):
        population = programs.smc(program, 32, jax.random.key(seed), tier="compiled")
        ratios.append(math.exp(population.log_evidence - exact))
    ratios = np.array(ratios)
    assert abs(ratios.mean() - 1.0) < 4 * ratios.std(ddof=1) / math.sqrt(len(ratios))
    assert population.particles is not None
    assert sorted(population.traces[0]) == sorted(
        [f"x{t}" for t in range(T)] + [f"y{t}" for t in range(T)]
    )


def test_compiled_importance_weights_match_the_eager_log_density():
    # Same program, same particle values: the compiled weights are the eager run's log weights.
    program = ho.from_model(linear_gaussian, YS)
    population = programs.importance(program, 8, jax.random.key(3), tier="compiled")
    for i in (0, 5):
        replay = {a: s.value for a, s in population.traces[i].items() if s.is_latent}
        frame = Frame(key=jax.random.key(0), replay=replay)
        run_frame(frame, program.body)
        assert abs(frame.log_weight - population.log_weights[i]) < 1e-4 * abs(frame.log_weight)
    assert population.values[0] is None  # what the program returns


def test_scanned_stages_equal_unrolled_stages(monkeypatch):
    # Stages 1..5 of the state-space model share a template, so they run as one lax.scan; the
    # same keys through the same stages unrolled give the same numbers (up to float rounding).
    body = ho.from_model(linear_gaussian, YS).body
    scanned = compiled.smc_kernel(body, 16, resampling.systematic, 0.5)
    particles, log_weights = scanned(jax.random.key(3))
    monkeypatch.setattr(
        compiled,
        "_plan",
        lambda structure, templates: [("stage", s) for s in range(structure.num_observed + 1)],
    )
    unrolled = compiled.smc_kernel.__wrapped__(body, 16, resampling.systematic, 0.5)
    particles_unrolled, log_weights_unrolled = unrolled(jax.random.key(3))
    assert np.allclose(log_weights, log_weights_unrolled, atol=1e-5)
    for address in particles.latents:
        difference = particles.latents[address] - particles_unrolled.latents[address]
        assert np.abs(difference).max() < 1e-5, (address, np.abs(difference).max())
