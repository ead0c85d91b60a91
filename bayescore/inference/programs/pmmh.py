r"""Particle marginal Metropolis–Hastings (Andrieu, Doucet & Holenstein 2010; monad-bayes's
``pmmh``): trace MH over the parameters :math:`\theta`, each state weighted by an SMC estimate
of the model's evidence,

.. math::

    \pi(\theta) \propto p(\theta)\, \mathbb{E}[\hat Z(\theta)] = p(\theta)\, p(y \mid \theta).

It is :func:`~bayescore.inference.programs.trace_mh` applied to the program
``θ ~ parameters; population = smc(model(θ), N, fresh key); score(Ẑ); return (θ,
population)``. The SMC runs with a key of its own (``numpyro.prng_key``), not as sites of the
MH trace: every proposal refreshes it and a rejected proposal keeps the current estimate,
which makes the chain pseudo-marginal.

Two tiers (``tier=``): when the parameters' program is static and ``model(θ)`` is static for
a *traced* :math:`θ`, the whole chain is compiled (one ``lax.scan`` of single-site MH steps,
each running the compiled SMC of ``model(θ)`` with :math:`θ` an input of it,
:func:`~bayescore.inference.programs.compiled_mh.pmmh_kernel`); otherwise trace MH runs an
eager SMC for each proposal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpyro
from jaxtyping import PRNGKeyArray

from bayescore.core.errors import check_positive_float, check_positive_int
from bayescore.inference.programs import compiled, compiled_mh
from bayescore.inference.programs.population import SCHEMES, as_body, check_scheme
from bayescore.inference.programs.smc import smc
from bayescore.inference.programs.trace_mh import Chain, trace_mh
from bayescore.models.ho.measure import Measure, Random, call

MAX_INIT_TRIES = 100  # trace_mh's default


def pmmh(
    parameters: Random | Measure,
    model: Callable[[Any], Measure],
    num_particles: int,
    num_steps: int,
    key: PRNGKeyArray,
    *,
    resampler: str | Callable = "systematic",
    ess_threshold: float = 0.5,
    tier: str = "auto",
) -> Chain:
    """Particle marginal MH (see the module docstring).

    Args:
        parameters: the prior of :math:`\\theta` (its sites are the ones MH moves).
        model: :math:`\\theta \\mapsto` the program whose evidence SMC estimates.
        num_particles: the SMC's particles.
        num_steps: MH steps.
        key: the run's key.
        resampler: the SMC's resampling scheme.
        ess_threshold: the SMC's resampling threshold.
        tier: ``"auto"`` compiles the whole chain when ``parameters`` is static and
            ``model(θ)`` static for a traced :math:`θ` (no Python control flow on θ or on
            random values), else runs the eager tier and logs why (one ``INFO`` notice);
            ``"compiled"`` raises
            :class:`~bayescore.inference.programs.DynamicProgramError` where that cannot
            run; ``"eager"`` forces the eager tier.

    Returns:
        A :class:`~bayescore.inference.programs.Chain` whose values are
        ``(theta, population)`` pairs.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models import ho
        >>> prior = ho.Random.from_distribution(dist.Normal(), "theta")
        >>> def model(theta):
        ...     def body():
        ...         x = numpyro.sample("x", dist.Normal(theta, 1.0))
        ...         numpyro.sample("y", dist.Normal(x, 1.0), obs=0.5)
        ...     return ho.from_model(body)
        >>> chain = pmmh(prior, model, 4, 5, jax.random.key(0))
        >>> theta, population = chain.values[0]
        >>> len(chain.values), population.num_particles
        (5, 4)
        >>> chain.particles is not None  # theta ~ N(0, 1) and model(theta) are static
        True
    """
    num_particles = check_positive_int("num_particles", num_particles)
    num_steps = check_positive_int("num_steps", num_steps)
    ess_threshold = check_positive_float("ess_threshold", ess_threshold, allow_zero=True)
    resampler = check_scheme(resampler)
    outcome = compiled.attempt(
        tier,
        as_body(parameters),
        "pmmh",
        lambda _: compiled_mh.pmmh_kernel(
            parameters,
            model,
            num_particles,
            SCHEMES.get(resampler, resampler),
            float(ess_threshold),
            num_steps,
            MAX_INIT_TRIES,
        ),
        key,
    )
    if outcome is not None:
        return outcome

    def body() -> tuple[Any, Any]:
        theta = call("parameters", parameters)
        population = smc(
            model(theta),
            num_particles,
            numpyro.prng_key(),
            resampler=resampler,
            ess_threshold=ess_threshold,
            tier="eager",  # a new program per theta: compiling each would cost more
        )
        numpyro.factor("log_evidence", population.log_evidence)
        return theta, population

    # the body runs an eager SMC per theta, which does not trace: the eager tier of trace MH
    return trace_mh(Measure(body), num_steps, key, max_init_tries=MAX_INIT_TRIES, tier="eager")
