r"""Trace Metropolis–Hastings on programs: single-site regeneration from the prior.

A step picks one of the :math:`n` latent sites of the current trace :math:`x` uniformly, redraws
it from its prior (in the context of the other values), re-runs the program with every other
latent value replayed by address (sites not met before are drawn from their priors, sites no
longer met are dropped) and accepts the new trace :math:`x'` with probability

.. math::

    \alpha = \min\Big(1, \frac{e^{\ell(x')}}{e^{\ell(x)}}
        \prod_{a \in R} \frac{p'_a(x_a)}{p_a(x_a)} \, \frac{n}{n'}\Big),

with :math:`\ell` the log weight of the observed and factor sites and :math:`R` the replayed
sites other than the chosen one (their priors may change with their parents). The fresh and
dropped sites' priors cancel against the proposal; :math:`n/n'` is the dimension correction
of monad-bayes's ``mhTransWithBool`` (Ścibior et al., POPL 2018, Sec. 7; Wingate, Stuhlmüller,
Goodman, AISTATS 2011).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from bayescore.core.errors import (
    ArgumentError,
    InitializationError,
    ModelError,
    check_positive_int,
)
from bayescore.inference.programs.population import as_body
from bayescore.models.ho.measure import Measure, Random
from bayescore.models.ho.runtime import Frame, Site, run_frame


class SingleSite(NamedTuple):
    """The single-site prior-regeneration kernel (see the module docstring)."""


def single_site() -> SingleSite:
    """The kernel that regenerates one uniformly chosen latent site from its prior.

    Example:
        >>> single_site()
        SingleSite()
    """
    return SingleSite()


class Chain(NamedTuple):
    """Draws of trace MH.

    Attributes:
        values: the program's value after each step.
        log_weights: the log weight :math:`\\ell` of each state.
        accepted: whether each step's proposal was accepted.
        trace: the final trace.

    Example:
        >>> chain = Chain([1, 2], np.zeros(2), np.array([True, False]), {})
        >>> chain.acceptance_rate
        0.5
    """

    values: list
    log_weights: np.ndarray
    accepted: np.ndarray
    trace: dict[Any, Site]

    @property
    def acceptance_rate(self) -> float:
        return float(np.mean(self.accepted))


def latent_addresses(trace: dict[Any, Site]) -> list:
    """The addresses of a trace's latent sites; refuses sites MH cannot score.

    Example:
        >>> import numpyro.distributions as dist
        >>> latent_addresses({"x": Site(1, -0.7, False, dist.Bernoulli(0.5))})
        ['x']
    """
    latent = []
    for address, site in trace.items():
        if site.is_latent:
            if not getattr(site.distribution, "has_density", True):
                raise ModelError(
                    f"site {address!r} ({type(site.distribution).__name__}) has no density, so "
                    f"trace MH cannot score a move that keeps or changes it. Use "
                    f"resampler='multinomial' inside programs run by trace MH, or pmmh."
                )
            latent.append(address)
    return latent


def log_acceptance(
    old_trace: dict[Any, Site],
    old_log_weight: float,
    new_trace: dict[Any, Site],
    new_log_weight: float,
    replay: dict[Any, Any],
) -> float:
    r""":math:`\log` of the acceptance ratio in the module docstring (before the ``min``).

    Example:
        >>> import numpyro.distributions as dist
        >>> old = {"x": Site(0, -0.7, False, dist.Bernoulli(0.5))}
        >>> new = {"x": Site(1, -0.7, False, dist.Bernoulli(0.5))}
        >>> log_acceptance(old, -2.0, new, -1.0, {})
        1.0
    """
    old_latent = [a for a, site in old_trace.items() if site.is_latent]
    new_latent = [a for a, site in new_trace.items() if site.is_latent]
    reused = [a for a in new_latent if a in replay]
    return (
        new_log_weight
        - old_log_weight
        + sum(new_trace[a].log_prob - old_trace[a].log_prob for a in reused)
        + math.log(len(old_latent))
        - math.log(len(new_latent))
    )


def trace_mh(
    program: Measure | Random,
    num_steps: int,
    key: PRNGKeyArray,
    kernel: SingleSite | None = None,
    *,
    max_init_tries: int = 100,
) -> Chain:
    """Run ``num_steps`` steps of single-site trace MH from a draw of the prior.

    The chain starts at the first of ``max_init_tries`` prior runs with a finite log weight
    (a chain started at weight zero would reject forever, monad-bayes issue #121).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models import ho
        >>> def coin():
        ...     x = numpyro.sample("x", dist.Bernoulli(0.5))
        ...     numpyro.factor("w", 0.0 if x else -1.0)
        ...     return int(x)
        >>> chain = trace_mh(ho.from_model(coin), 20, jax.random.key(0))
        >>> len(chain.values), set(chain.values) <= {0, 1}
        (20, True)
    """
    num_steps = check_positive_int("num_steps", num_steps)
    max_init_tries = check_positive_int("max_init_tries", max_init_tries)
    kernel = single_site() if kernel is None else kernel
    if not isinstance(kernel, SingleSite):
        raise ArgumentError(
            f"kernel must be single_site(), found {type(kernel).__name__}: it is the only "
            f"trace-MH kernel so far. Pass kernel=single_site()."
        )
    body = as_body(program)
    affine = 1 if isinstance(program, Random) else 0
    init_key, step_key, choice_key = jax.random.split(key, 3)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(choice_key)).tolist())
    for attempt in range(max_init_tries):
        frame = Frame(key=jax.random.fold_in(init_key, attempt), affine=affine)
        value = run_frame(frame, body)
        if frame.log_weight > -math.inf:
            break
    else:
        raise InitializationError(
            f"all {max_init_tries} prior runs of the program had weight zero (log weight "
            f"-inf), so trace MH has no state to start from. Check the program's conditions, "
            f"or pass a larger max_init_tries."
        )
    values, log_weights, accepted = [], np.empty(num_steps), np.zeros(num_steps, dtype=bool)
    for step in range(num_steps):
        latent = latent_addresses(frame.trace)
        if latent:
            chosen = latent[rng.integers(len(latent))]
            replay = {a: frame.trace[a].value for a in latent if a != chosen}
            proposal = Frame(key=jax.random.fold_in(step_key, step), replay=replay, affine=affine)
            proposed_value = run_frame(proposal, body)
            log_ratio = log_acceptance(
                frame.trace, frame.log_weight, proposal.trace, proposal.log_weight, replay
            )
            if math.log(rng.uniform()) < log_ratio:
                frame, value, accepted[step] = proposal, proposed_value, True
        values.append(value)
        log_weights[step] = frame.log_weight
    return Chain(values, log_weights, accepted, frame.trace)
