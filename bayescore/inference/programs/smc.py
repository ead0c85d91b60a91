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
The cost is quadratic in the number of observed sites. Compiled tier (static programs, with
a key, chosen by ``tier``): the same stages, vmapped over the particles and unrolled in one
compiled program (:mod:`~bayescore.inference.programs.compiled`).

Particle ``i`` at stage ``t`` draws its new sites at ``("smc", t, i, ...)`` and the
resampling at stage ``t`` is the site ``("resample", t)``: without a key, ``smc`` is a
program that :func:`~bayescore.inference.programs.enumerate` can integrate exactly (with
``resampler="multinomial"``).

:func:`rmsmc` (resample-move, Gilks & Berzuini 2001; monad-bayes's ``rmsmc``) follows every
resampling with moves of any trace-MH kernel on each particle's prefix
(:mod:`~bayescore.inference.programs.trace_mh`; proposals stop at the particle's last
observed site), which leave :math:`\gamma_t` invariant. The moves' own choices are sites too
(``("move", t, i, j, "site")``, ``("move", t, i, j, "accept")``, ...), so resample-move is
enumerable and its validity is checked exactly. Its compiled tier (static programs, with a
key) is :mod:`~bayescore.inference.programs.compiled_rmsmc`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import PRNGKeyArray

from bayescore.core.errors import check_positive_float, check_positive_int
from bayescore.inference.programs import compiled, compiled_rmsmc
from bayescore.inference.programs.population import (
    SCHEMES,
    Population,
    ancestors,
    as_body,
    check_program_tier,
    check_scheme,
    latent_values,
    run_program,
)
from bayescore.inference.programs.trace_mh import _check_kernel, _SiteChoices, _step, single_site
from bayescore.models.ho.measure import Measure, Random
from bayescore.models.ho.runtime import Frame, current_frame, run_nested


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


class _PrefixChoices(_SiteChoices):
    """A kernel's choices as sites; its proposals stop where the particle stopped, so the
    kernel targets the prefix measure :math:`\\gamma_t`."""

    def __init__(self, body: Callable, address: tuple, key: Any, suspend_after: int | None):
        super().__init__(body, address, key)
        self.suspend_after = suspend_after

    def run(self, name: str, replay: dict) -> tuple[Any, Frame]:
        value, frame, _ = run_nested(
            self.body, self.address + (name,), replay=replay, suspend_after=self.suspend_after
        )
        return value, frame


def _move(body: Callable, kernel: Any, particle: _Particle, address: tuple) -> _Particle:
    """One step of the trace-MH ``kernel`` targeting the particle's prefix measure gamma_t."""
    suspend_after = None if particle.finished else particle.num_observed
    root = current_frame(required="rmsmc")
    while root.parent is not None:
        root = root.parent
    choices = _PrefixChoices(body, address, root.key, suspend_after)
    state = Frame(trace=particle.trace, log_weight=particle.prefix_weight)
    (value, frame), _ = _step(kernel, (particle.value, state), choices)
    if frame is state:
        return particle
    suspended = suspend_after is not None and frame.num_observed >= suspend_after
    return _Particle(value, frame.trace, frame.log_weight, frame.num_observed, not suspended)


def _sequential(
    program: Any,
    num_particles: int,
    resampler: str | Callable,
    ess_threshold: float,
    num_moves: int,
    kernel: Any = None,
) -> Measure[Population]:
    num_particles = check_positive_int("num_particles", num_particles)
    ess_threshold = check_positive_float("ess_threshold", ess_threshold, allow_zero=True)
    num_moves = check_positive_int("num_moves", num_moves, allow_zero=True)
    resampler = check_scheme(resampler)
    kernel = _check_kernel(single_site() if kernel is None else kernel)
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
                        particles[i] = _move(body, kernel, particles[i], ("move", stage, i, move))
            stage += 1

    return Measure(run)


def smc(
    program: Measure | Random,
    num_particles: int,
    key: PRNGKeyArray | None = None,
    *,
    resampler: str | Callable = "systematic",
    ess_threshold: float = 0.5,
    tier: str = "auto",
) -> Population | Measure[Population]:
    """Sequential Monte Carlo with ``num_particles`` particles (see the module docstring).

    Args:
        program: the program (a Measure, or a Random, which has nothing to weight).
        num_particles: :math:`N`.
        key: run now and return the Population; without it, return the SMC program.
        resampler: a scheme name of :func:`~bayescore.inference.programs.resample`.
        ess_threshold: resample when the ESS falls below this fraction of :math:`N`
            (``1.0``: at every stage whose weights are not all equal).
        tier: ``"auto"`` runs a static program in the compiled tier (its particles vmapped,
            its stages unrolled in one compiled program,
            :mod:`~bayescore.inference.programs.compiled`) and any other program in the
            eager tier, logging why; ``"compiled"`` or ``"eager"`` forces one. Without a
            key the program is of the eager tier.

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
    if key is None:
        check_program_tier(tier, "smc")
    else:
        num_particles = check_positive_int("num_particles", num_particles)
        threshold = check_positive_float("ess_threshold", ess_threshold, allow_zero=True)
        scheme = check_scheme(resampler)
        body = as_body(program)
        outcome = compiled.attempt(
            tier,
            body,
            "smc",
            lambda _: compiled.smc_kernel(
                body, num_particles, SCHEMES.get(scheme, scheme), float(threshold)
            ),
            key,
        )
        if outcome is not None:
            return Population.from_particles(*outcome)
    return run_program(_sequential(program, num_particles, resampler, ess_threshold, 0), key)


def rmsmc(
    program: Measure | Random,
    num_particles: int,
    key: PRNGKeyArray | None = None,
    *,
    num_moves: int = 1,
    kernel: Any = None,
    resampler: str | Callable = "systematic",
    ess_threshold: float = 0.5,
    tier: str = "auto",
) -> Population | Measure[Population]:
    """Resample-move SMC: :func:`smc`, with ``num_moves`` steps of the trace-MH ``kernel``
    (default :func:`~bayescore.inference.programs.single_site`; any of ``lazy``,
    ``restart``, ``site_kernel``) on every particle after each resampling, each targeting
    the particle's prefix measure :math:`\\gamma_t` (see the module docstring).

    ``tier="auto"`` runs a static program in the compiled tier
    (:mod:`~bayescore.inference.programs.compiled_rmsmc`: the stages one ``lax.scan``, every
    particle a vector of all the latent sites, every move a regeneration proposal on the
    sites of stage :math:`\\le t` scored by one replayed run of the whole program, at a cost
    of :math:`O(T^2 N)`); a dynamic program, a site kernel whose proposal does not trace, or
    sites drawn inside ``ho.mem`` run in the eager tier, with one ``INFO`` notice naming the
    program and the reason. ``"compiled"`` forces the compiled tier (raising
    :class:`~bayescore.inference.programs.DynamicProgramError` where it cannot run),
    ``"eager"`` the eager one. Without a key the program is of the eager tier.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.inference import programs
        >>> from bayescore.models import ho
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal())
        ...     numpyro.sample("y1", dist.Normal(x, 1.0), obs=0.3)
        ...     numpyro.sample("y2", dist.Normal(x, 1.0), obs=0.1)
        ...     return x
        >>> population = rmsmc(ho.from_model(model), 4, jax.random.key(0), ess_threshold=1.0,
        ...                    kernel=programs.lazy(0.5))
        >>> population.num_particles, population.particles is not None
        (4, True)
        >>> eager = rmsmc(ho.from_model(model), 4, jax.random.key(0), tier="eager")
        >>> eager.particles is None
        True
    """
    if key is None:
        check_program_tier(tier, "rmsmc")
    else:
        num_particles = check_positive_int("num_particles", num_particles)
        threshold = check_positive_float("ess_threshold", ess_threshold, allow_zero=True)
        moves = check_positive_int("num_moves", num_moves, allow_zero=True)
        scheme = check_scheme(resampler)
        checked = _check_kernel(single_site() if kernel is None else kernel)
        body = as_body(program)
        outcome = compiled.attempt(
            tier,
            body,
            "rmsmc",
            lambda _: compiled_rmsmc.rmsmc_kernel(
                body, num_particles, SCHEMES.get(scheme, scheme), float(threshold), moves, checked
            ),
            key,
        )
        if outcome is not None:
            return Population.from_particles(*outcome)
    sequential = _sequential(program, num_particles, resampler, ess_threshold, num_moves, kernel)
    return run_program(sequential, key)
