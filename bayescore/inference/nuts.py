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
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.errors import ArgumentError, check_positive_int
from bayescore.core.kernel import Kernel
from bayescore.inference.adaptation import WindowAdaptationState, window_adaptation


class NUTSInfo(NamedTuple):
    """Per-transition statistics, named as ArviZ expects them in ``sample_stats``."""

    acceptance_rate: Array
    diverging: Array
    n_steps: Array
    tree_depth: Array
    energy: Array
    step_size: Array


class NUTSParameters(NamedTuple):
    """What warmup tunes: the step size and the inverse mass matrix (flattened positions)."""

    step_size: Array
    inverse_mass_matrix: Array


class NUTSWarmupState(NamedTuple):
    """Chain state and adaptation state during warmup."""

    chain: blackjax.mcmc.hmc.HMCState
    adaptation: WindowAdaptationState

    @property
    def position(self) -> Any:
        return self.chain.position

    @property
    def logdensity(self) -> Array:
        return self.chain.logdensity


class NUTS(eqx.Module):
    """No-U-Turn sampler with windowed adaptation (see the module docstring).

    Attributes:
        initial_step_size: step size at the start of warmup.
        target_acceptance_rate: dual averaging's target mean acceptance rate.
        max_num_doublings: maximal tree depth.
        dense_mass: adapt a dense inverse mass matrix instead of a diagonal one.
        divergence_threshold: energy error above which a transition counts as divergent.
    """

    initial_step_size: float = 1.0
    target_acceptance_rate: float = 0.8
    max_num_doublings: int = 10
    dense_mass: bool = False
    divergence_threshold: float = 1000.0

    def _transition(self) -> Any:
        return blackjax.nuts.build_kernel(divergence_threshold=self.divergence_threshold)

    def _step(
        self,
        target: Any,
        key: PRNGKeyArray,
        state: Any,
        step_size: Array,
        inverse_mass_matrix: Array,
    ) -> tuple[Any, NUTSInfo]:
        state, info = self._transition()(
            key,
            state,
            target.logdensity,
            step_size,
            inverse_mass_matrix,
            max_num_doublings=self.max_num_doublings,
        )
        return state, NUTSInfo(
            info.acceptance_rate,
            info.is_divergent,
            info.num_integration_steps,
            info.num_trajectory_expansions,
            info.energy,
            jnp.asarray(step_size),
        )

    def warmup(self, target: Any, num_warmup: int) -> Kernel:
        init_adaptation, update_adaptation, _ = window_adaptation(
            num_warmup,
            dense_mass=self.dense_mass,
            target_acceptance_rate=self.target_acceptance_rate,
        )

        def init(position: Any, key: PRNGKeyArray | None = None) -> NUTSWarmupState:
            return NUTSWarmupState(
                blackjax.nuts.init(position, target.logdensity),
                init_adaptation(position, self.initial_step_size),
            )

        def step(key: PRNGKeyArray, state: NUTSWarmupState) -> tuple[NUTSWarmupState, NUTSInfo]:
            adaptation = state.adaptation
            chain, info = self._step(
                target, key, state.chain, adaptation.step_size, adaptation.inverse_mass_matrix
            )
            adaptation = update_adaptation(adaptation, chain.position, info.acceptance_rate)
            return NUTSWarmupState(chain, adaptation), info

        return Kernel(init, step)

    def tune(self, target: Any, warmup_state: NUTSWarmupState) -> tuple[NUTSParameters, Any]:
        _, _, final = window_adaptation(1, dense_mass=self.dense_mass)
        return NUTSParameters(*final(warmup_state.adaptation)), warmup_state.chain

    def kernel(self, target: Any, parameters: NUTSParameters) -> Kernel:
        def init(position: Any, key: PRNGKeyArray | None = None) -> Any:
            return blackjax.nuts.init(position, target.logdensity)

        def step(key: PRNGKeyArray, state: Any) -> tuple[Any, NUTSInfo]:
            return self._step(
                target, key, state, parameters.step_size, parameters.inverse_mass_matrix
            )

        return Kernel(init, step)


def nuts(
    *,
    initial_step_size: float = 1.0,
    target_acceptance_rate: float = 0.8,
    max_num_doublings: int = 10,
    dense_mass: bool = False,
    divergence_threshold: float = 1000.0,
) -> NUTS:
    """The reference NUTS sampler for ``bc.sample`` (BlackJAX kernel, Stan's warmup).

    Example:
        >>> import bayescore as bc
        >>> bc.inference.nuts(target_acceptance_rate=0.9).target_acceptance_rate
        0.9
    """
    if not 0.0 < target_acceptance_rate < 1.0:
        raise ArgumentError(
            f"target_acceptance_rate must lie in (0, 1), got {target_acceptance_rate}. "
            "0.8 is the usual choice; raise it towards 0.95 if there are divergences."
        )
    if not initial_step_size > 0.0:
        raise ArgumentError(f"initial_step_size must be positive, got {initial_step_size}.")
    check_positive_int("max_num_doublings", max_num_doublings)
    return NUTS(
        float(initial_step_size),
        float(target_acceptance_rate),
        int(max_num_doublings),
        bool(dense_mass),
        float(divergence_threshold),
    )
