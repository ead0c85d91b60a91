r"""Sequential Monte Carlo on programs, suspending at every observed or factor site.

Stage :math:`t` runs each unfinished particle up to its :math:`(t+1)`-th observed site and
multiplies its weight by the new likelihood terms,

.. math::

    w_i \leftarrow w_i \, \frac{\gamma_{t+1}(x_i)}{\gamma_t(x_i)}, \qquad
    \gamma_t(x) = \prod_{s \le t} p(y_s \mid x),

then resamples when :math:`\mathrm{ESS} < \text{ess\_threshold} \cdot N`
(monad-bayes's ``smc`` = ``SequentialT`` over ``PopulationT``; Ścibior et al., POPL 2018,
Sec. 6). Eager tier: a particle is advanced by re-executing its program with its trace
replayed (values of its latent sites by address) and stopping at the next observed site, so
programs may have any Python control flow, memoized functions and a varying number of sites.
The cost is quadratic in the number of observed sites.

Particle ``i`` at stage ``t`` draws its new sites at ``("smc", t, i, ...)`` and the
resampling at stage ``t`` is the site ``("resample", t)``: without a key, ``smc`` is a
program that :func:`~bayescore.inference.programs.enumerate` can integrate exactly (with
``resampler="multinomial"``).

:func:`rmsmc` (resample-move, Gilks & Berzuini 2001; monad-bayes's ``rmsmc``) follows every
resampling with single-site trace-MH moves on each particle's prefix
(:mod:`~bayescore.inference.programs.trace_mh`), which leave :math:`\gamma_t` invariant. The
moves' own choices are sites too (``("move", t, i, j, "site")``, a categorical, and
``("move", t, i, j, "accept")``, a Bernoulli with the acceptance probability), so resample-move
is enumerable and its validity is checked exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import PRNGKeyArray

from bayescore.core.errors import check_positive_float, check_positive_int
from bayescore.inference.programs.population import (
    Population,
    ancestors,
    as_body,
    check_scheme,
    latent_values,
    run_program,
)
from bayescore.inference.programs.trace_mh import latent_addresses, log_acceptance
from bayescore.models.ho.measure import Measure, Random
from bayescore.models.ho.runtime import run_nested


class _Particle(NamedTuple):
    value: Any
    trace: dict
    prefix_weight: float  # log gamma_t of the prefix run so far
    num_observed: int
    finished: bool


def _advance(body: Callable, particle: _Particle, address: tuple) -> tuple[_Particle, float]:
    """Run a particle to its next observed site; return it and its log weight increment."""
    value, frame, suspended = run_nested(
        body,
        address,
        replay=latent_values(particle.trace),
        suspend_after=particle.num_observed + 1,
    )
    increment = frame.log_weight - particle.prefix_weight
    if particle.prefix_weight == -math.inf:  # a zero weight stays zero (no -inf + inf)
        increment = 0.0
    moved = _Particle(value, frame.trace, frame.log_weight, frame.num_observed, not suspended)
    return moved, increment


def _move(body: Callable, particle: _Particle, address: tuple) -> _Particle:
    """One single-site trace-MH move targeting the particle's prefix measure gamma_t."""
    latent = latent_addresses(particle.trace)
    if not latent:
        return particle
    index = numpyro.sample(
        address + ("site",), dist.Categorical(probs=jnp.ones(len(latent)) / len(latent))
    )
    chosen = latent[int(index)]
    replay = {a: particle.trace[a].value for a in latent if a != chosen}
    value, frame, suspended = run_nested(
        body,
        address,
        replay=replay,
        suspend_after=None if particle.finished else particle.num_observed,
    )
    log_ratio = log_acceptance(
        particle.trace, particle.prefix_weight, frame.trace, frame.log_weight, replay
    )
    probability = 1.0 if log_ratio >= 0.0 else math.exp(log_ratio)
    if not numpyro.sample(address + ("accept",), dist.Bernoulli(probs=probability)):
        return particle
    return _Particle(value, frame.trace, frame.log_weight, frame.num_observed, not suspended)


def _sequential(
    program: Any,
    num_particles: int,
    resampler: str | Callable,
    ess_threshold: float,
    num_moves: int,
) -> Measure[Population]:
    num_particles = check_positive_int("num_particles", num_particles)
    ess_threshold = check_positive_float("ess_threshold", ess_threshold, allow_zero=True)
    num_moves = check_positive_int("num_moves", num_moves, allow_zero=True)
    resampler = check_scheme(resampler)
    body = as_body(program)

    def run() -> Population:
        particles = [_Particle(None, {}, 0.0, 0, False)] * num_particles
        log_weights = np.zeros(num_particles)
        stage = 0
        while True:
            for i, particle in enumerate(particles):
                if not particle.finished:
                    particles[i], increment = _advance(body, particle, ("smc", stage, i))
                    log_weights[i] += increment
            population = Population(
                [p.value for p in particles], [p.trace for p in particles], log_weights
            )
            if all(p.finished for p in particles):
                return population
            if population.ess() < ess_threshold * num_particles:
                chosen = ancestors(population.normalized_weights(), resampler, ("resample", stage))
                log_weights = np.full(num_particles, population.log_evidence)
                particles = [particles[i] for i in chosen]
                for i in range(num_particles):
                    for move in range(num_moves):
                        particles[i] = _move(body, particles[i], ("move", stage, i, move))
            stage += 1

    return Measure(run)


def smc(
    program: Measure | Random,
    num_particles: int,
    key: PRNGKeyArray | None = None,
    *,
    resampler: str | Callable = "systematic",
    ess_threshold: float = 0.5,
) -> Population | Measure[Population]:
    """Sequential Monte Carlo with ``num_particles`` particles (see the module docstring).

    Args:
        program: the program (a Measure, or a Random, which has nothing to weight).
        num_particles: :math:`N`.
        key: run now and return the Population; without it, return the SMC program.
        resampler: a scheme name of :func:`~bayescore.inference.programs.resample`.
        ess_threshold: resample when the ESS falls below this fraction of :math:`N`
            (``1.0``: at every stage whose weights are not all equal).

    Returns:
        The final Population; ``exp(log_evidence)`` is an unbiased estimate of
        :math:`Z`.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models import ho
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal())
        ...     numpyro.sample("y1", dist.Normal(x, 1.0), obs=0.3)
        ...     numpyro.sample("y2", dist.Normal(x, 1.0), obs=0.1)
        ...     return x
        >>> population = smc(ho.from_model(model), 8, jax.random.key(0))
        >>> population.num_particles, sorted(population.traces[0])
        (8, ['x', 'y1', 'y2'])
    """
    return run_program(_sequential(program, num_particles, resampler, ess_threshold, 0), key)


def rmsmc(
    program: Measure | Random,
    num_particles: int,
    key: PRNGKeyArray | None = None,
    *,
    num_moves: int = 1,
    resampler: str | Callable = "systematic",
    ess_threshold: float = 0.5,
) -> Population | Measure[Population]:
    """Resample-move SMC: :func:`smc`, with ``num_moves`` single-site trace-MH moves on every
    particle after each resampling (see the module docstring).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models import ho
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal())
        ...     numpyro.sample("y1", dist.Normal(x, 1.0), obs=0.3)
        ...     numpyro.sample("y2", dist.Normal(x, 1.0), obs=0.1)
        ...     return x
        >>> population = rmsmc(ho.from_model(model), 4, jax.random.key(0), ess_threshold=1.0)
        >>> population.num_particles
        4
    """
    sequential = _sequential(program, num_particles, resampler, ess_threshold, num_moves)
    return run_program(sequential, key)
