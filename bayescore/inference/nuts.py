"""The reference sampler: BlackJAX's NUTS with Stan's windowed adaptation, as a bayescore Method.

Multinomial, iterative No-U-Turn sampler (Hoffman & Gelman 2014; Betancourt 2017) from
``blackjax.nuts``; step size by dual averaging to ``target_acceptance_rate`` and a diagonal
or dense inverse mass matrix from Welford estimates in Stan's slow windows
(:mod:`bayescore.inference.adaptation`). Every chain adapts on its own, as in Stan.

Example:
    >>> import jax, jax.numpy as jnp
    >>> import bayescore as bc
    >>> target = bc.Target.from_logdensity(
    ...     lambda p: -0.5 * jnp.sum(p["x"] ** 2), {"x": jnp.zeros(2)})
    >>> result = bc.sample(bc.inference.nuts(), target, num_samples=200, num_warmup=200,
    ...                    num_chains=2, key=jax.random.key(0), progress=False)
    >>> result.positions["x"].shape
    (2, 200, 2)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import blackjax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from bayescore.inference.adaptation import AdaptedParameters, WindowAdapted
from bayescore.inference.checks import check_sampler_arguments

# Kept under its old name: NUTS's tuned parameters are the generic ones.
NUTSParameters = AdaptedParameters


class NUTSInfo(NamedTuple):
    """Per-transition statistics, named as ArviZ expects them in ``sample_stats``."""

    acceptance_rate: Array
    diverging: Array
    n_steps: Array
    tree_depth: Array
    energy: Array
    step_size: Array


class NUTS(WindowAdapted):
    """No-U-Turn sampler with windowed adaptation (see the module docstring).

    Attributes:
        step_size: initial step size (the fixed one with ``adapt_step_size=False``).
        adapt_step_size: dual-average the step size during warmup.
        adapt_mass_matrix: estimate the inverse mass matrix during warmup.
        dense_mass: adapt a dense inverse mass matrix instead of a diagonal one.
        inverse_mass_matrix: initial (or fixed) inverse mass matrix; ``None`` is the identity.
        target_acceptance_rate: dual averaging's target mean acceptance rate.
        max_num_doublings: maximal tree depth.
        divergence_threshold: energy error above which a transition counts as divergent.
    """

    step_size: float = 1.0
    adapt_step_size: bool = True
    adapt_mass_matrix: bool = True
    dense_mass: bool = False
    inverse_mass_matrix: Any = None
    target_acceptance_rate: float = 0.8
    max_num_doublings: int = 10
    divergence_threshold: float = 1000.0

    def init_chain(
        self, target: Any, position: Any, key: PRNGKeyArray | None, parameters: Any
    ) -> blackjax.mcmc.hmc.HMCState:
        return blackjax.nuts.init(position, target.logdensity)

    def transition(
        self, target: Any, key: PRNGKeyArray, state: Any, parameters: AdaptedParameters
    ) -> tuple[Any, NUTSInfo]:
        kernel = blackjax.nuts.build_kernel(divergence_threshold=self.divergence_threshold)
        state, info = kernel(
            key,
            state,
            target.logdensity,
            parameters.step_size,
            parameters.inverse_mass_matrix,
            max_num_doublings=self.max_num_doublings,
        )
        return state, NUTSInfo(
            info.acceptance_rate,
            info.is_divergent,
            info.num_integration_steps,
            info.num_trajectory_expansions,
            info.energy,
            jnp.asarray(parameters.step_size),
        )


def nuts(
    *,
    step_size: float = 1.0,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    dense_mass: bool = False,
    inverse_mass_matrix: Any = None,
    target_acceptance_rate: float = 0.8,
    max_num_doublings: int = 10,
    divergence_threshold: float = 1000.0,
) -> NUTS:
    """The reference NUTS sampler for ``bc.sample`` (BlackJAX kernel, Stan's warmup).

    Arguments are named as in ``numpyro.infer.NUTS``; see :class:`NUTS`.

    Raises:
        ArgumentError: a non-positive step size, a target acceptance rate outside (0, 1), a
            non-positive tree depth.

    Example:
        >>> import bayescore as bc
        >>> bc.inference.nuts(target_acceptance_rate=0.9).target_acceptance_rate
        0.9
    """
    from bayescore.core.errors import check_positive_int

    arguments = check_sampler_arguments(
        step_size=step_size,
        target_acceptance_rate=target_acceptance_rate,
        inverse_mass_matrix=inverse_mass_matrix,
        dense_mass=dense_mass,
        divergence_threshold=divergence_threshold,
    )
    return NUTS(
        adapt_step_size=bool(adapt_step_size),
        adapt_mass_matrix=bool(adapt_mass_matrix),
        max_num_doublings=check_positive_int("max_num_doublings", max_num_doublings),
        **arguments,
    )
