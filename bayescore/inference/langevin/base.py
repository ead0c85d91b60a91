"""What the Langevin samplers share: states, infos, the flat log density, the MH coin."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc.mala import MALAState
from jax.flatten_util import ravel_pytree
from jaxtyping import Array

from bayescore.inference.adaptation import WindowAdapted
from bayescore.inference.langevin.preconditioner import Preconditioner, preconditioner

# Overdamped samplers keep BlackJAX's MALA state (position, logdensity, logdensity_grad), so a
# state moves between blackjax.mala and bayescore's kernels unchanged.
LangevinState = MALAState


class KineticState(NamedTuple):
    """Underdamped Langevin state: position, momentum (flattened), log density, gradient."""

    position: Any
    momentum: Array
    logdensity: Array
    logdensity_grad: Any


class LangevinInfo(NamedTuple):
    """Per-transition statistics (ArviZ ``sample_stats`` names).

    Attributes:
        acceptance_rate: Metropolis–Hastings acceptance probability of the move; for the
            unadjusted samplers the probability the move *would* have had, ``min(1, e^{-W})``
            with ``W`` the energy error (a measure of the discretisation error: 1 is exact).
        is_accepted: whether the move was taken (always true when unadjusted).
        diverging: the energy error exceeded ``divergence_threshold`` or is not finite.
        energy_error: ``W``, minus the log MH ratio (for the kinetic samplers the shadow work:
            the change of total energy not due to the friction-and-noise steps).
        step_size: the step size of the move.
        n_steps: gradient evaluations in the move.
    """

    acceptance_rate: Array
    is_accepted: Array
    diverging: Array
    energy_error: Array
    step_size: Array
    n_steps: Array


class LangevinMethod(WindowAdapted):
    """A :class:`WindowAdapted` whose parameters are a step size and a :class:`Preconditioner`."""

    def prepare(self, step_size: Array, inverse_mass_matrix: Array) -> tuple:
        return jnp.asarray(step_size), preconditioner(inverse_mass_matrix)


def flat_logdensity(target: Any, unravel: Any) -> Any:
    """``x ↦ (log π(x), ∇ log π(x))`` on the flattened position."""

    def value_and_grad(flat: Array) -> tuple[Array, Array]:
        value, grad = jax.value_and_grad(target.logdensity)(unravel(flat))
        return value, ravel_pytree(grad)[0]

    return value_and_grad


def initial_flat_state(target: Any, position: Any) -> LangevinState:
    """The overdamped state (log density and gradient evaluated) at ``position``."""
    value, grad = jax.value_and_grad(target.logdensity)(position)
    return LangevinState(position, value, grad)


def energy_statistics(
    energy_error: Array, divergence_threshold: float
) -> tuple[Array, Array, Array]:
    """``(acceptance_rate, diverging, energy_error)`` for an energy error ``W``.

    The acceptance probability is ``min(1, e^{-W})``; a non-finite ``W`` has probability 0,
    counts as a divergence and is reported as ``+inf``.
    """
    energy_error = jnp.where(jnp.isfinite(energy_error), energy_error, jnp.inf)
    acceptance_rate = jnp.minimum(1.0, jnp.exp(-energy_error))
    return acceptance_rate, energy_error > divergence_threshold, energy_error


def select(accept: Array, new: Any, old: Any) -> Any:
    """``new`` where ``accept`` else ``old``, leaf by leaf (a select: no branch under vmap)."""
    return jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, old)


__all__ = [
    "KineticState",
    "LangevinInfo",
    "LangevinMethod",
    "LangevinState",
    "Preconditioner",
    "flat_logdensity",
    "initial_flat_state",
    "energy_statistics",
    "select",
]
